//! A throttled stream holds up only its own lines: every call to one stream is
//! refused (ThrottlingException or a 503) while the other is healthy, with a backlog on
//! the throttled source larger than the whole duplicate window. And on one stream, a
//! file whose batch is stuck in retries cannot take the other files' room in the
//! window.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    distinct, family_fake, latency_bound, per_stream, percentiles, source_args, stream, Source,
    LONG,
};
use crate::support::eventually;
use crate::support::fake_firehose::{CallError, FakeFirehose, Faults, Outcome, RecordError};
use crate::support::firetail::{access_lines, append, aws_env, Firetail};

/// The smallest window firetail takes; the throttled source's backlog is twice it.
const WINDOW: &str = "--max-unacked-bytes=4MiB";
const BACKLOG_LINES: usize = 28_000;
/// The healthy source: a line every 100 ms for 6 s.
const WEB_LINES: usize = 60;
const WEB_EVERY: Duration = Duration::from_millis(100);
const FLUSH: Duration = Duration::from_secs(1);

#[test]
fn a_throttled_stream_does_not_delay_another_streams_lines() {
    let fake = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let bulk = dir.path().join("bulk.log");
    let web = dir.path().join("web.log");
    let (bulk_stream, web_stream) = (stream(&fake, "bulk"), stream(&fake, "web"));
    fake.set_stream_faults(
        &bulk_stream,
        Some(Faults {
            call_error_rate: 1.0,
            call_errors: vec![CallError::Throttling, CallError::ServiceUnavailable503],
            ..Faults::default()
        }),
    );
    let mut bulk_lines = access_lines("bulk", 0..BACKLOG_LINES);
    append(&bulk, &bulk_lines);
    let args = source_args(
        &[
            Source::new("bulk", &bulk, &bulk_stream),
            Source::new("web", &web, &web_stream),
        ],
        &[WINDOW, "--flush-interval=1s", "--call-timeout=10s"],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    let refused = |fake: &crate::support::fake_firehose::FakeFirehose| {
        fake.calls()
            .iter()
            .filter(|c| c.stream == bulk_stream && matches!(c.outcome, Outcome::Error { .. }))
            .count()
    };
    assert!(
        eventually(LONG, || refused(&fake) >= 3),
        "the throttled stream was never called\n{}",
        ft.dump()
    );

    // The healthy source writes slowly, the throttled one keeps growing meanwhile.
    let web_lines = slow_writer_within_the_promise("isolation", &fake, &web, &ft, |i| {
        if i % 10 == 0 {
            let more = access_lines("bulk", bulk_lines.len()..bulk_lines.len() + 200);
            append(&bulk, &more);
            bulk_lines.extend(more);
        }
    });
    println!(
        "sources isolation: throttled calls refused={}",
        refused(&fake)
    );
    assert!(
        fake.accepted_lines_of(&bulk_stream).is_empty(),
        "the throttled stream accepted lines: the scenario proves nothing"
    );

    // The throttled stream recovers: its whole backlog arrives.
    fake.set_stream_faults(&bulk_stream, None);
    let total = bulk_lines.len() + web_lines.len();
    assert!(
        eventually(LONG, || distinct(&fake) >= total),
        "{} of {total} lines arrived after the throttling stopped\n{}",
        distinct(&fake),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let figures = per_stream(
        "isolation",
        &fake,
        &[
            (bulk_stream.as_str(), &bulk_lines),
            (web_stream.as_str(), &web_lines),
        ],
        0,
        &ft,
    );
    for (s, f) in &figures {
        assert_eq!(
            f.duplicated, 0,
            "{s}: refused calls accept nothing, yet duplicates"
        );
    }
}

/// Writes [`WEB_LINES`] lines to `web`, one every [`WEB_EVERY`] (calling `between`
/// after each), waits for them and asserts each reached the fake within the latency
/// promise for a one-second flush interval, measured from the return of its write to
/// the fake's reading of the call that carried it; prints the figure. Returns them.
fn slow_writer_within_the_promise(
    name: &str,
    fake: &FakeFirehose,
    web: &Path,
    ft: &Firetail,
    mut between: impl FnMut(usize),
) -> Vec<String> {
    let web_lines = access_lines("web", 0..WEB_LINES);
    let mut written_at = Vec::new();
    for (i, line) in web_lines.iter().enumerate() {
        append(web, std::slice::from_ref(line));
        written_at.push(Instant::now());
        between(i);
        std::thread::sleep(WEB_EVERY);
    }
    let arrived = || -> HashMap<String, Instant> {
        fake.accepted_lines_by_stream()
            .into_iter()
            .map(|l| (l.line, l.received))
            .collect()
    };
    assert!(
        eventually(LONG, || {
            let got = arrived();
            web_lines.iter().all(|l| got.contains_key(l))
        }),
        "{name}: {} of the slow writer's {} lines arrived within {LONG:?}\n{}",
        {
            let got = arrived();
            web_lines.iter().filter(|l| got.contains_key(*l)).count()
        },
        web_lines.len(),
        ft.dump()
    );
    let arrived = arrived();
    let latencies: Vec<Duration> = web_lines
        .iter()
        .zip(&written_at)
        .map(|(l, at)| arrived[l].saturating_duration_since(*at))
        .collect();
    let (p50, p99, max) = percentiles(&latencies);
    let bound = latency_bound(FLUSH);
    println!(
        "sources {name}: slow writer's latency: p50={p50:.0}ms p99={p99:.0}ms max={max:.0}ms (bound {}ms)",
        bound.as_millis()
    );
    assert!(
        latencies.iter().all(|l| *l <= bound),
        "{name}: a line took {max:.0} ms, more than the promised {bound:?}\n{}",
        ft.dump()
    );
    web_lines
}

/// A record of `stuck.log` fails with `InternalFailure` in every call (not
/// throttling: the stream is healthy), so its batch pins that file's checkpoint while
/// the rest of its backlog is acknowledged and its reading stops at its share of the
/// window, far short of its backlog; `web.log`'s lines keep arriving within the latency
/// promise. Once the record is accepted, the whole backlog arrives.
///
/// `same_stream`: both files ship to one stream and both exist from the start (each
/// file's share is half the window). Otherwise `web.log` ships to another stream and
/// appears only once `stuck.log`, alone, has filled the window.
fn a_stuck_file_beside_a_slow_one(name: &str, same_stream: bool) {
    let fake = family_fake(Faults {
        fail_marker: Some((b"STUCK".to_vec(), RecordError::InternalFailure)),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (stuck, web) = (dir.path().join("stuck.log"), dir.path().join("web.log"));
    let stuck_stream = stream(&fake, "stuck");
    let web_stream = if same_stream {
        stuck_stream.clone()
    } else {
        stream(&fake, "web")
    };
    let mut stuck_lines = vec![r#"{"msg":"STUCK","seq":-1}"#.to_owned()];
    stuck_lines.extend(access_lines("stuck", 0..BACKLOG_LINES));
    append(&stuck, &stuck_lines);
    if same_stream {
        std::fs::File::create(&web).unwrap();
    }
    let args = source_args(
        &[
            Source::new("stuck", &stuck, &stuck_stream),
            Source::new("web", &web, &web_stream),
        ],
        &[WINDOW, "--flush-interval=1s", "--call-timeout=10s"],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    // The stuck file has read what it may: nothing more is accepted for a while.
    let mut last = usize::MAX;
    assert!(
        eventually(LONG, || {
            std::thread::sleep(Duration::from_secs(1));
            let now = fake.accepted_lines().len();
            std::mem::replace(&mut last, now) == now && now > 0
        }),
        "stuck.log never stopped at its share\n{}",
        ft.dump()
    );
    let stuck_shipped = last;
    let web_lines = slow_writer_within_the_promise(name, &fake, &web, &ft, |_| {});
    println!(
        "sources {name}: {stuck_shipped} of {} stuck.log lines shipped while its record was stuck",
        stuck_lines.len()
    );
    assert!(
        stuck_shipped < stuck_lines.len() / 2,
        "stuck.log was read far past the window while its record was stuck"
    );
    fake.update_faults(|f| f.fail_marker = None);
    let total = stuck_lines.len() + web_lines.len();
    assert!(
        eventually(LONG, || distinct(&fake) >= total),
        "{} of {total} lines arrived once the record was accepted\n{}",
        distinct(&fake),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let figures = if same_stream {
        let mut all = stuck_lines;
        all.extend(web_lines);
        per_stream(name, &fake, &[(stuck_stream.as_str(), &all)], 0, &ft)
    } else {
        per_stream(
            name,
            &fake,
            &[
                (stuck_stream.as_str(), &stuck_lines),
                (web_stream.as_str(), &web_lines),
            ],
            0,
            &ft,
        )
    };
    for (s, f) in &figures {
        assert_eq!(f.duplicated, 0, "{s}: a failed record is resent alone");
    }
}

#[test]
fn a_stuck_file_does_not_delay_another_file_of_the_same_stream() {
    a_stuck_file_beside_a_slow_one("stuck_file_same_stream", true);
}

#[test]
fn a_stuck_file_that_filled_the_window_does_not_starve_a_file_appearing_later() {
    a_stuck_file_beside_a_slow_one("stuck_file_then_new_file", false);
}
