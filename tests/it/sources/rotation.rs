//! Two sources rotated by two different tools at once, while Firehose is slow enough
//! that firetail is behind at every rotation: Ruby's `Logger` (two processes shifting
//! one file) on one source, logrotate `copytruncate` (the app paused around it, so the
//! copytruncate window of the loss list is empty) on the other.

use std::time::Duration;

use super::{distinct, family_fake, per_stream, source_args, stream, tools_present, Source, LONG};
use crate::files::{count_messages, App, Writer};
use crate::rotation::{lines_on_disk, logrotate, ruby_line, ruby_logger};
use crate::support::eventually;
use crate::support::fake_firehose::Faults;
use crate::support::firetail::{aws_env, Firetail};

/// Lines each Ruby process writes, and its shift size: ~230-byte lines, a shift every
/// ~20 lines, ~100 shifts in all; `shift_age` 150 so Logger deletes nothing.
const RUBY_LINES: usize = 1000;
const SHIFT_SIZE: usize = 4_300;

#[test]
fn logger_and_copytruncate_sources_behind_at_every_rotation_lose_nothing() {
    if !tools_present(&["ruby", "logrotate"]) {
        return;
    }
    // One call at a time per stream, 500 ms each, a fifth of the records "Slow down.":
    // each stream ships at most ~800 lines/s while its writers write more.
    let fake = family_fake(Faults {
        latency: Duration::from_millis(500),
        record_slow_down_rate: 0.2,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.log");
    let web = dir.path().join("web.log");
    let state = tempfile::tempdir().unwrap();
    let (jobs_stream, web_stream) = (stream(&fake, "jobs"), stream(&fake, "web"));
    let args = source_args(
        &[
            Source::new("jobs", &jobs, &jobs_stream),
            Source::new("web", &web, &web_stream),
        ],
        &["--max-in-flight=1", "--call-timeout=10s"],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);

    let started = std::time::Instant::now();
    let mut rubies: Vec<_> = (0..2)
        .map(|p| {
            ruby_logger(
                &jobs,
                150,
                SHIFT_SIZE,
                RUBY_LINES,
                &format!("jobs{p}"),
                0.002,
            )
        })
        .collect();
    let mut writer = Writer::start(App::open(&web, "web", false));
    let mut web_behind = Vec::new();
    for _ in 0..3 {
        writer.write_more(2000);
        writer.paused(|app| {
            let shipped = fake.accepted_lines_of(&web_stream).len();
            web_behind.push(app.written.len().saturating_sub(shipped));
            logrotate(
                state.path(),
                &web,
                "copytruncate\nrotate 100\nnocompress\nmissingok",
            );
        });
    }
    writer.write_more(1000);
    let (web_written, _) = writer.stop();
    for r in &mut rubies {
        assert!(r.wait().unwrap().success(), "a Ruby Logger process failed");
    }
    let jobs_written: Vec<String> = (0..2)
        .flat_map(|p| (0..RUBY_LINES).map(move |i| ruby_line(&format!("jobs{p}"), i)))
        .collect();
    // Logger shifted ~100 times while the jobs stream shipped at most ~400 lines/s:
    // firetail was behind throughout, so behind at every shift.
    let jobs_behind = jobs_written.len() - fake.accepted_lines_of(&jobs_stream).len();
    let mut on_disk = lines_on_disk(&jobs, "jobs");
    on_disk.sort();
    let mut expected = jobs_written.clone();
    expected.sort();
    assert_eq!(on_disk, expected, "Ruby's Logger itself kept every line");
    println!("sources two_rotations: web behind at each copytruncate {web_behind:?}, jobs behind when Logger finished {jobs_behind}");
    assert!(
        web_behind.iter().all(|b| *b > 500),
        "firetail was not behind at every copytruncate: {web_behind:?}"
    );
    assert!(
        jobs_behind > 500,
        "firetail kept up with Logger ({jobs_behind} lines behind at its end)"
    );

    let writing = started.elapsed();
    fake.set_faults(Faults::default());
    let total = jobs_written.len() + web_written.len();
    assert!(
        eventually(LONG, || distinct(&fake) >= total),
        "{} of {total} lines arrived\n{}",
        distinct(&fake),
        ft.dump()
    );
    println!(
        "sources two_rotations: writing took {writing:?}, catching up {:?}",
        started.elapsed() - writing
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let figures = per_stream(
        "two_rotations",
        &fake,
        &[
            (jobs_stream.as_str(), &jobs_written),
            (web_stream.as_str(), &web_written),
        ],
        0,
        &ft,
    );
    for (s, f) in &figures {
        assert_eq!(
            f.duplicated,
            0,
            "{s}: no kill, no timeout, yet duplicates\n{}",
            ft.dump()
        );
    }
    assert!(
        count_messages(&ft, "File truncated (copytruncate)") >= 1,
        "{}",
        ft.dump()
    );
}
