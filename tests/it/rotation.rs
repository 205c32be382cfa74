//! Files in the world as it is — the built binary and the fake Firehose under
//! continuous writing, rotated by the real tools (Debian's `logrotate` with a generated
//! config and state file, Ruby's `Logger` in real `ruby` processes), FIFOs,
//! directories and symlinks at the path, firetail's own files named like siblings, and
//! the drain's quiet period. Restarts are in `restarts.rs`.
//!
//! Each test prints one line, `files <name>: written=N delivered=N lost=N
//! duplicated=N`, the figures the closing note of the issue quotes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::files::{
    compare, count_messages, fake_with, logger_shift, start_firetail, term_and_exit_0, App, Writer,
    LONG,
};
use crate::support::eventually;
use crate::support::fake_firehose::{FakeFirehose, Faults};
use crate::support::firetail::{access_lines, append, aws_env, base_args, http_get, Firetail};

/// Prints the figures and asserts nothing was invented and nothing lost beyond
/// `may_lose` (lines no shipper can read); returns the duplicates.
pub(crate) fn figures(
    name: &str,
    written: &[String],
    fake: &FakeFirehose,
    ft: &Firetail,
    may_lose: usize,
) -> usize {
    let d = compare(written, &fake.accepted_lines());
    println!(
        "files {name}: written={} delivered={} lost={} duplicated={}",
        written.len(),
        written.len() - d.missing_count,
        d.missing_count,
        d.duplicates
    );
    assert_eq!(
        d.unexpected_count,
        0,
        "invented or foreign lines: {:?}\n{}",
        d.unexpected,
        ft.dump()
    );
    assert!(
        d.missing_count <= may_lose,
        "{} lines lost (at most {may_lose} allowed): {:?}\n{}",
        d.missing_count,
        d.missing,
        ft.dump()
    );
    d.duplicates
}

pub(crate) fn logrotate(dir: &Path, log: &Path, directives: &str) {
    let conf = dir.join("logrotate.conf");
    std::fs::write(&conf, format!("{} {{\n{directives}\n}}\n", log.display())).unwrap();
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate is installed (scripts/system-deps.sh)");
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn args_with(log: &Path, fake: &FakeFirehose, extra: &[&str]) -> Vec<String> {
    let mut args = base_args(log, &fake.stream_name());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn logrotate_copytruncate_while_firehose_throttles_loses_nothing() {
    // 500 ms per call, one call at a time, a fifth of the records "Slow down.": firetail
    // ships under 1,000 lines/s while the app writes up to 2,000: it falls far behind.
    let fake = fake_with(Faults {
        latency: Duration::from_millis(500),
        record_slow_down_rate: 0.2,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let logs = tempfile::tempdir_in(dir.path()).unwrap();
    let mut ft = Firetail::start(
        &args_with(&log, &fake, &["--max-in-flight=1"]),
        &aws_env(&fake.endpoint()),
    );
    ft.wait_message("firetail started.", LONG);
    let mut writer = Writer::start(App::open(&log, "copytrunc", false));
    let mut behind = Vec::new();
    for _ in 0..3 {
        writer.write_more(2500);
        // The app waits while logrotate copies and truncates: nothing can fall in the
        // window, so every line lost would be firetail's.
        writer.paused(|app| {
            behind.push(
                app.written.len() as u64 - fake.lines_accepted().min(app.written.len() as u64),
            );
            logrotate(
                logs.path(),
                &log,
                "copytruncate\nrotate 100\nnocompress\nmissingok",
            );
        });
    }
    writer.write_more(1000);
    let (written, _) = writer.stop();
    assert!(
        behind.iter().any(|b| *b > 1000),
        "firetail was never far behind: {behind:?}"
    );
    fake.update_faults(|f| f.latency = Duration::ZERO);
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    let dups = figures("copytruncate_throttled", &written, &fake, &ft, 0);
    assert_eq!(
        dups, 0,
        "a copytruncate with an empty window needs no re-read"
    );
    // A copy made before firetail read a byte of the truncated content is found by the
    // sibling scan rather than by a truncation, so not every run needs to show one.
    assert!(
        count_messages(&ft, "File truncated (copytruncate)") >= 1,
        "{}",
        ft.dump()
    );
}

#[test]
fn four_writers_reopening_two_seconds_after_a_rename_lose_nothing() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let logs = tempfile::tempdir_in(dir.path()).unwrap();
    let mut ft = start_firetail(&fake, &log);
    // Four workers, each with its own O_APPEND handle (Puma/Unicorn).
    let mut writers: Vec<Writer> = (0..4)
        .map(|i| Writer::start_paced(App::open(&log, &format!("worker{i}"), false), 2))
        .collect();
    for _ in 0..3 {
        writers[0].write_more(500);
        logrotate(
            logs.path(),
            &log,
            "create\nrotate 10\nnocompress\nmissingok",
        );
        // One worker reopens at once, the others 2 s later, writing into the renamed
        // file meanwhile.
        writers[0].paused(|app| app.reopen(false));
        std::thread::sleep(Duration::from_secs(2));
        for w in &writers[1..] {
            w.paused(|app| app.reopen(false));
        }
    }
    writers[0].write_more(500);
    let mut written = Vec::new();
    for w in &mut writers {
        written.extend(w.stop().0);
    }
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    let dups = figures("four_writers_late_reopen", &written, &fake, &ft, 0);
    assert_eq!(dups, 0);
}

/// `ruby` with its `Logger`: `count` JSON lines tagged `tag`, `shift_age`/`shift_size`
/// rotation, `pause` seconds between lines.
pub(crate) fn ruby_logger(
    log: &Path,
    shift_age: usize,
    shift_size: usize,
    count: usize,
    tag: &str,
    pause: f64,
) -> std::process::Child {
    let script = r##"
require 'logger'
path, age, size, count, tag, pause = ARGV
l = Logger.new(path, Integer(age), Integer(size))
l.formatter = proc { |_s, _t, _p, msg| msg + "\n" }
Integer(count).times do |i|
  l.info(%Q({"tag":"#{tag}","i":#{i},"pad":"#{'x' * 180}"}))
  sleep(Float(pause)) if Float(pause) > 0
end
l.close
"##;
    Command::new("ruby")
        .arg("-e")
        .arg(script)
        .args([
            log.display().to_string(),
            shift_age.to_string(),
            shift_size.to_string(),
            count.to_string(),
            tag.to_string(),
            pause.to_string(),
        ])
        .spawn()
        .expect("ruby is installed (scripts/system-deps.sh)")
}

pub(crate) fn ruby_line(tag: &str, i: usize) -> String {
    format!(r#"{{"tag":"{tag}","i":{i},"pad":"{}"}}"#, "x".repeat(180))
}

/// The lines of every file beside `log` named like it (the ground truth of what the
/// app's files hold now), without Logger headers.
pub(crate) fn lines_on_disk(log: &Path, tag_prefix: &str) -> Vec<String> {
    let dir = log.parent().unwrap();
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if !e.file_name().to_string_lossy().starts_with(&name) || !e.file_type().unwrap().is_file()
        {
            continue;
        }
        for l in std::fs::read_to_string(e.path())
            .unwrap_or_default()
            .lines()
        {
            if l.contains(&format!(r#""tag":"{tag_prefix}"#)) {
                out.push(l.to_string());
            }
        }
    }
    out
}

/// Year-old dateext siblings (`access.log-20251203-N`), which must never be shipped.
pub(crate) fn old_siblings(log: &Path, n: usize) {
    let year_ago = SystemTime::now() - Duration::from_secs(365 * 86_400);
    for i in 0..n {
        let p = PathBuf::from(format!("{}-20251203-{i}", log.display()));
        let mut f = File::create(&p).unwrap();
        writeln!(f, r#"{{"tag":"old-sibling","i":{i}}}"#).unwrap();
        f.set_modified(year_ago).unwrap();
    }
}

#[test]
fn a_storm_of_100_logger_shifts_beside_3000_old_siblings_loses_nothing() {
    let fake = fake_with(Faults {
        latency: Duration::from_millis(200),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    old_siblings(&log, 3000);
    let mut ft = start_firetail(&fake, &log);
    // Two Ruby processes shifting one file: ~230-byte lines, a shift every ~20 lines, shift_age 150 so Logger deletes nothing.
    let started = std::time::Instant::now();
    let mut rubies: Vec<_> = (0..2)
        .map(|p| ruby_logger(&log, 150, 4_300, 1000, &format!("storm{p}"), 0.002))
        .collect();
    for r in &mut rubies {
        assert!(r.wait().unwrap().success());
    }
    let took = started.elapsed();
    let written: Vec<String> = (0..2)
        .flat_map(|p| (0..1000).map(move |i| ruby_line(&format!("storm{p}"), i)))
        .collect();
    let mut on_disk = lines_on_disk(&log, "storm");
    on_disk.sort();
    let mut expected = written.clone();
    expected.sort();
    assert_eq!(on_disk, expected, "Ruby's Logger itself kept every line");
    let shifts = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            n.strip_prefix("access.log.")
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .count();
    println!("files logger_storm: {shifts} shifts in {took:?}");
    assert!(shifts >= 60, "only {shifts} Logger shifts");
    fake.update_faults(|f| f.latency = Duration::ZERO);
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    let dups = figures("logger_storm_beside_3000_siblings", &written, &fake, &ft, 0);
    assert_eq!(dups, 0, "no file read twice\n{}", ft.dump());
}

#[test]
fn own_files_named_like_siblings_are_never_shipped() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let ckpt = dir.path().join("access.log.ckpt");
    let dead = dir.path().join("access.log.dead");
    let args = args_with(
        &log,
        &fake,
        &[
            &format!("--checkpoint={}", ckpt.display()),
            &format!("--dead-letter={}", dead.display()),
        ],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    // All of these appear after the start, as firetail's own writes and logrotate's
    // `compress` would: none is a file present before, which is never shipped anyway.
    std::fs::write(&dead, "{\"tag\":\"dead-letter entry\"}\n").unwrap();
    let dead_1 = dir.path().join("access.log.dead.1");
    std::fs::write(dead_1, "{\"tag\":\"old dead-letter\"}\n").unwrap();
    // A compressed sibling is never read, even if it is text.
    let gz = dir.path().join("access.log.9.gz");
    std::fs::write(gz, "{\"tag\":\"compressed sibling\"}\n").unwrap();
    let mut writer = Writer::start(App::open(&log, "own", true));
    for _ in 0..3 {
        writer.write_more(400);
        // Rotations make firetail look at every sibling.
        writer.paused(|app| logger_shift(app, 10));
    }
    writer.write_more(400);
    let (written, _) = writer.stop();
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    assert!(
        ckpt.exists(),
        "the checkpoint was written under its sibling-like name"
    );
    let dups = figures("own_files_like_siblings", &written, &fake, &ft, 0);
    assert_eq!(dups, 0);
}

#[test]
fn a_fifo_or_a_directory_at_the_path_is_an_error_and_not_ready_and_never_blocks() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = start_firetail(&fake, &log);
    let addr = ft.metrics_addr();
    let mut written = access_lines("fifo", 0..200);
    append(&log, &written);
    assert!(fake.wait_for_lines(200, LONG), "{}", ft.dump());
    for (i, kind) in ["fifo", "dir"].into_iter().enumerate() {
        std::fs::rename(&log, dir.path().join(format!("access.log.{i}"))).unwrap();
        if kind == "fifo" {
            let c = std::ffi::CString::new(log.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo(3) with a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        } else {
            std::fs::create_dir(&log).unwrap();
        }
        assert!(
            eventually(LONG, || count_messages(
                &ft,
                "The log path is not a regular file"
            ) > i),
            "no ERROR for a {kind} at the path\n{}",
            ft.dump()
        );
        assert!(
            eventually(LONG, || http_get(&addr, "/readyz").0 == 503),
            "ready with a {kind} at the path"
        );
        assert_eq!(
            http_get(&addr, "/healthz").0,
            200,
            "the runtime answers with a {kind} at the path"
        );
        if kind == "fifo" {
            std::fs::remove_file(&log).unwrap();
        } else {
            std::fs::remove_dir(&log).unwrap();
        }
        let more = access_lines(kind, 0..100);
        append(&log, &more);
        written.extend(more);
        assert!(
            fake.wait_for_lines(written.len() as u64, LONG),
            "{}",
            ft.dump()
        );
        assert!(
            eventually(LONG, || http_get(&addr, "/readyz").0 == 200),
            "ready again"
        );
    }
    term_and_exit_0(&mut ft);
    let dups = figures("fifo_and_directory_at_path", &written, &fake, &ft, 0);
    assert_eq!(dups, 0);
}

#[test]
fn a_repointed_symlink_is_a_rotation() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let log = dir.path().join("access.log");
    std::os::unix::fs::symlink(data.join("a.log"), &log).unwrap();
    let mut a = Writer::start(App::open(&data.join("a.log"), "link-a", false));
    let mut ft = start_firetail(&fake, &log);
    a.write_more(1000);
    assert!(
        fake.wait_for_lines(500, LONG),
        "lines arrive through the target's directory\n{}",
        ft.dump()
    );
    // Re-point the link atomically (ln -sfn): a new file behind the same path.
    let mut b = Writer::start(App::open(&data.join("b.log"), "link-b", false));
    let tmp = dir.path().join("access.log.tmp-link");
    std::os::unix::fs::symlink(data.join("b.log"), &tmp).unwrap();
    std::fs::rename(&tmp, &log).unwrap();
    // The old target keeps getting lines for a moment (a late writer).
    a.write_more(500);
    let mut written = a.stop().0;
    b.write_more(1000);
    written.extend(b.stop().0);
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    let dups = figures("repointed_symlink", &written, &fake, &ft, 0);
    assert_eq!(dups, 0);
}

/// The drain's quiet period restarts on every byte read, a partial
/// line's too: a line written slowly during the drain arrives whole, not cut in two.
#[test]
fn the_drain_quiet_period_restarts_on_bytes_of_a_partial_line() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut args = base_args(&log, &fake.stream_name());
    args.retain(|a| !a.starts_with("--drain-quiet"));
    args.push("--drain-quiet=700ms".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    let first = access_lines("quiet", 0..10);
    append(&log, &first);
    assert!(fake.wait_for_lines(10, LONG), "{}", ft.dump());
    ft.term();
    ft.wait_message(
        "Drain started: reading every file to its end, then shipping the rest.",
        LONG,
    );
    let slow = access_lines("slow", 0..1).remove(0);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    // 6 pieces 300 ms apart: 1.5 s in all, each gap below the quiet period.
    for piece in slow.as_bytes().chunks(slow.len().div_ceil(6)) {
        f.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    f.write_all(b"\n").unwrap();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let mut written = first;
    written.push(slow);
    let dups = figures("drain_quiet_partial_line", &written, &fake, &ft, 0);
    assert_eq!(dups, 0);
}

/// What docs/how-it-works.md says can be lost with `copytruncate` + `compress` without
/// `delaycompress`: logrotate compresses the copy at once, so the part firetail had
/// not read yet may exist only in the `.gz`. At most that part is lost — a contiguous
/// run of lines just before the truncation — with one WARN; every other line arrives.
///
/// Whether anything is lost in the field depends on a race firetail does not control:
/// it may open logrotate's copy (inotify tells it at once) before gzip replaces it.
/// The test makes firetail lose that race every time: it is stopped (SIGSTOP, as a
/// starved or descheduled process would be) before a burst it has not read, and
/// continued only once logrotate has copied, truncated, compressed and removed the
/// copy.
#[test]
fn copytruncate_with_compress_loses_at_most_the_unread_part_of_the_copy() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let logs = tempfile::tempdir_in(dir.path()).unwrap();
    let mut ft = Firetail::start(&args_with(&log, &fake, &[]), &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    let mut writer = Writer::start(App::open(&log, "compress", false));
    writer.write_more(1000);
    let before = writer.paused(|app| {
        stop_and_wait(ft.pid());
        app.write_lines(2_000);
        logrotate(
            logs.path(),
            &log,
            "copytruncate\nrotate 5\ncompress\nmissingok",
        );
        assert!(
            !logs_of_rotation(&log).iter().any(|n| n.ends_with(".1")),
            "logrotate left its uncompressed copy"
        );
        ft.signal(libc::SIGCONT);
        // The app writes again only once firetail has seen the truncation: new lines
        // first would let the file grow past firetail's offset before it looks.
        let seen = ft.wait_log(LONG, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("File truncated and no copy of it found"))
        });
        assert!(seen.is_some(), "no WARN for the lost part\n{}", ft.dump());
        app.written.len()
    });
    writer.write_more(1000);
    let (written, _) = writer.stop();
    assert!(
        eventually(LONG, || {
            compare(&written, &fake.accepted_lines()).missing_count
                == compare(&written[..before], &fake.accepted_lines()).missing_count
        }),
        "the lines after the truncation arrive\n{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    let d = compare(&written, &fake.accepted_lines());
    let accepted: std::collections::HashSet<String> = fake.accepted_lines().into_iter().collect();
    let lost: Vec<usize> = (0..written.len())
        .filter(|i| !accepted.contains(&written[*i]))
        .collect();
    println!(
        "files copytruncate_compress_no_delaycompress: written={} delivered={} lost={} duplicated={} (lost: the unread part of a copy compressed at once)",
        written.len(),
        written.len() - lost.len(),
        lost.len(),
        d.duplicates
    );
    assert_eq!(d.unexpected_count, 0, "{d:?}");
    // The burst written while firetail was stopped was never read: it is lost, with
    // whatever firetail had not read before it, and nothing else.
    assert!(
        lost.len() >= 2_000,
        "{} lost: the burst firetail never read was only in the .gz",
        lost.len()
    );
    assert_eq!(
        lost,
        (lost[0]..before).collect::<Vec<_>>(),
        "exactly a run of lines ending at the truncation is lost"
    );
    assert_eq!(
        count_messages(&ft, "File truncated and no copy of it found"),
        1,
        "{}",
        ft.dump()
    );
}

/// The names beside `log` that start with its name (logrotate's copies).
fn logs_of_rotation(log: &Path) -> Vec<String> {
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&name) && *n != name)
        .collect()
}

/// SIGSTOP to `pid`, then waits until every one of its threads is stopped: the signal
/// is only queued when kill(2) returns.
fn stop_and_wait(pid: i32) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP");
    let stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/task: {e}"))
            .all(|task| {
                let stat =
                    std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
                // The state follows the command name's closing parenthesis.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            })
    };
    assert!(eventually(LONG, stopped), "firetail never stopped");
}
