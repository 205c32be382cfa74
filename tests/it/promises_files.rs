//! README promises about files without a test of their own (see `promises.rs`): a
//! rotated file let go after `--rotate-wait`, and the two loss-list items about
//! siblings — late lines in a file let go, and a truncated copy never read — each
//! against the built binary and the fake Firehose.

use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
use crate::support::firetail::{
    access_lines, append, aws_env, base_args, counter, scrape, set, Firetail,
};
use crate::support::sorted;

const LONG: Duration = Duration::from_secs(60);

/// Rename rotation: the old file "is let go only when it was read to its end and then
/// unchanged for `--rotate-wait`", and what can be lost, item 4: "Bytes written to a
/// rotated file after it was let go". With `--rotate-wait=1s`: the rotated file is let
/// go no sooner than 1 s after the rotation; a late writer's lines appended after that
/// are not lost while the file keeps a sibling's name: the periodic sibling scan reads
/// them from where reading stopped, within one scan period and a margin, each once.
#[test]
fn a_rotated_file_is_let_go_after_rotate_wait_and_late_lines_are_found_by_the_scan() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let args = set(base_args(&log, &fake.stream_name()), "--rotate-wait", "1s");
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();
    let before = access_lines("before", 0..100);
    append(&log, &before);
    assert!(fake.wait_for_lines(100, LONG), "{}", ft.dump());
    std::fs::rename(&log, &rotated).unwrap();
    let renamed = Instant::now();
    let after = access_lines("after", 0..100);
    append(&log, &after);
    let let_go = ft.wait_message("Finished reading rotated file.", LONG);
    let held = renamed.elapsed();
    assert!(
        held >= Duration::from_secs(1),
        "let go {held:?} after the rotation, before --rotate-wait"
    );
    assert!(
        let_go["file"].as_str().unwrap().ends_with("access.log.1"),
        "{let_go}"
    );
    assert_eq!(let_go["deleted"], false, "{let_go}");
    assert!(fake.wait_for_lines(200, LONG), "{}", ft.dump());

    let late = access_lines("late", 0..50);
    append(&rotated, &late);
    let written = Instant::now();
    assert!(
        fake.wait_for_lines(250, Duration::from_secs(8)),
        "late lines not shipped within 8 s:\n{}",
        ft.dump()
    );
    eprintln!(
        "late lines shipped {:?} after they were written",
        written.elapsed()
    );
    ft.wait_message(
        "A rotated file already let go got more lines from a late writer; reading them.",
        Duration::from_secs(1),
    );
    assert_eq!(counter(&scrape(&addr), "firetail_rotations_total"), 1.0);
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert!(fake.duplicates().is_empty(), "a line was shipped twice");
    let all: Vec<String> = [before, after, late].concat();
    assert_eq!(sorted(fake.accepted_lines()), sorted(all));
}

/// What can be lost, item 5: "A content truncated before firetail read a single byte
/// of it is seen only by the periodic sibling scan (every 5 s) or the next rotation."
/// firetail follows an empty file; while it is stopped (SIGSTOP, so it provably reads
/// nothing), the app writes 300 lines, logrotate copies them to `access.log.1` and
/// truncates the file back to empty. Resumed, firetail sees no truncation (size and
/// offset are both 0) and no rotation; the periodic scan finds the copy and ships it,
/// within one scan period and a margin, although the log stays quiet (the tail's
/// safety poll used to wake only every 10 s then, so the scan came after 10 s).
#[test]
fn the_periodic_sibling_scan_finds_an_unread_truncated_copy() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, b"").unwrap();
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let addr = ft.metrics_addr();
    ft.wait_message("Following file.", LONG);
    let lines = access_lines("unread", 0..300);
    ft.signal(libc::SIGSTOP);
    append(&log, &lines);
    std::fs::copy(&log, dir.path().join("access.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    ft.signal(libc::SIGCONT);
    let resumed = Instant::now();
    assert!(
        fake.wait_for_lines(lines.len() as u64, Duration::from_secs(8)),
        "the copy was not shipped within 8 s of resuming:\n{}",
        ft.dump()
    );
    eprintln!("unread copy shipped {:?} after resuming", resumed.elapsed());
    let found = ft.wait_message(
        "Found a file rotated while firetail was behind; reading it from offset 0.",
        Duration::from_secs(1),
    );
    assert!(
        found["file"].as_str().unwrap().ends_with("access.log.1"),
        "{found}"
    );
    let text = scrape(&addr);
    assert_eq!(counter(&text, "firetail_rotations_total"), 0.0, "{text}");
    assert_eq!(counter(&text, "firetail_truncations_total"), 0.0, "{text}");
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(fake.accepted_lines()), sorted(lines));
}

/// What can be lost, item 5, its second half: "a crash before that [scan]". The same
/// unread copy as above, but firetail is killed (SIGKILL) before it resumes. The copy
/// was modified after the checkpoint last saw the file, so the restart reads it as a
/// file rotated while firetail was down: its lines are shipped, with the ones the app
/// writes next — the README said they were lost.
#[test]
fn a_crash_before_the_scan_and_a_restart_ships_the_unread_copy() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, b"").unwrap();
    let args = base_args(&log, &fake.stream_name());
    let env = aws_env(&fake.endpoint());
    let mut ft = Firetail::start(&args, &env);
    ft.wait_message("Following file.", LONG);
    let checkpoint = dir.path().join(".firetail-access.log.json");
    assert!(
        eventually(LONG, || checkpoint.exists()),
        "no checkpoint:\n{}",
        ft.dump()
    );
    ft.signal(libc::SIGSTOP);
    let unread = access_lines("unread", 0..300);
    append(&log, &unread);
    std::fs::copy(&log, dir.path().join("access.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    ft.kill9();
    assert_eq!(fake.counters().calls, 0);

    let mut ft = Firetail::start(&args, &env);
    let next = access_lines("next", 0..100);
    append(&log, &next);
    assert!(fake.wait_for_lines(400, LONG), "{}", ft.dump());
    let resumed = ft.wait_message(
        "Resuming a file rotated while firetail was down.",
        Duration::from_secs(1),
    );
    assert!(
        resumed["file"].as_str().unwrap().ends_with("access.log.1"),
        "{resumed}"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert!(fake.duplicates().is_empty(), "a line was shipped twice");
    let n = fake.accepted_lines().len();
    assert_eq!(
        sorted(fake.accepted_lines()),
        sorted([unread, next].concat()),
        "{n} lines"
    );
}
