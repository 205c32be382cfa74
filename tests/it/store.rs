//! The checkpoint's and the dead-letter file's disk
//! misbehaves under the built binary — really: a small tmpfs filled to the last page
//! (ENOSPC) and remounted read-only (EROFS), a checkpoint made unreadable with mode
//! 000 for a firetail run as root without the capabilities that bypass file modes
//! (EACCES), and `/dev/full`. Each test asserts what users keep: every line
//! delivered or dead-lettered exactly once, nothing re-shipped after a `kill -9`, the
//! checkpoint never past a line that is not safely somewhere, one ERROR per episode.
//!
//! Mounting needs root with CAP_SYS_ADMIN; where a tmpfs cannot be mounted the tests
//! that need one fail under CI and are reported as skipped elsewhere
//! (`support::skip`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
use crate::support::firetail::{access_lines, append, aws_env, base_args, http_get, Firetail};
use crate::support::skip::skip_or_fail;

const LONG: Duration = Duration::from_secs(60);

// ===== helpers ======================================================================

/// A tmpfs of a few hundred KiB in a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                skip_or_fail(&format!(
                    "cannot mount a tmpfs (needs root with CAP_SYS_ADMIN): mount {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip_or_fail(&format!("cannot run mount to make a tmpfs: {e}"));
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,<opts>`; retried while busy (a write may hold a file open for
    /// a moment).
    fn remount(&self, opts: &str) {
        let ok = eventually(Duration::from_secs(20), || {
            Command::new("mount")
                .args(["-o", &format!("remount,{opts}")])
                .arg(self.path())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ok, "remount {opts}");
    }

    /// Fills the file system to its last byte with `filler`.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Any byte left in the last page goes too.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// `args` with `flag` set to `value`, replacing the value `base_args` gave it.
fn set(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let prefix = format!("{flag}=");
    args.retain(|a| !a.starts_with(&prefix));
    args.push(format!("{prefix}{value}"));
    args
}

fn message(v: &serde_json::Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

fn logs_with(ft: &Firetail, level: &str, text: &str) -> Vec<serde_json::Value> {
    ft.logs()
        .into_iter()
        .filter(|v| v["level"] == level && message(v).contains(text))
        .collect()
}

fn wait_log(ft: &Firetail, level: &str, text: &str) -> serde_json::Value {
    ft.wait_log(LONG, |v| v["level"] == level && message(v).contains(text))
        .unwrap_or_else(|| panic!("no {level} with {text:?}; logs:\n{}", ft.dump()))
}

/// The offset of the first file in the checkpoint, if there is a readable one.
fn checkpoint_offset(path: &Path) -> Option<u64> {
    let text = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v["files"][0]["offset"].as_u64()
}

/// One sample of the Prometheus text, 0 when absent.
fn metric(addr: &str, series: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics");
    crate::support::firetail::sample(&text, series).map_or(0, |v| v as u64)
}

/// Every entry of a dead-letter file, parsed one line at a time (a torn or glued entry
/// fails the test).
fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "a torn last entry"
    );
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "not a whole entry ({e}): {}",
                    String::from_utf8_lossy(&l[..l.len().min(200)])
                )
            })
        })
        .collect()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// A line that is not JSON and needs pages of its own in the dead-letter file.
fn not_json(tag: usize, len: usize) -> String {
    let mut line = format!("not json {tag} ");
    line.extend(std::iter::repeat_n('z', len));
    line
}

// ===== the dead-letter file ========================================================

/// The dead-letter disk is full when a bad line arrives: the
/// line waits (one ERROR), the checkpoint does not pass it, nothing is torn; once
/// there is room it is written once and everything after it is delivered.
#[test]
fn a_full_dead_letter_disk_holds_the_line_until_there_is_room() {
    let Some(disk) = Tmpfs::mount("256k") else {
        return;
    };
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join("cp.json");
    let dead = disk.path().join("dead.jsonl");
    let before = access_lines("before", 0..100);
    let bad = not_json(1, 20_000);
    let after = access_lines("after", 0..100);
    append(&log, &before);
    let bad_offset = file_size(&log);
    append(&log, std::slice::from_ref(&bad));
    append(&log, &after);
    let filler = disk.fill();

    let mut args = set(
        base_args(&log, &fake.stream_name()),
        "--invalid-json",
        "dead-letter",
    );
    args.push(format!("--dead-letter={}", dead.display()));
    args.push(format!("--checkpoint={}", checkpoint.display()));
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let error = wait_log(&ft, "ERROR", "Cannot write the dead-letter file");
    assert!(
        error.to_string().contains("os error 28"),
        "ENOSPC named: {error}"
    );
    // Retries come and go (100 ms, doubling); the checkpoint never passes the line.
    for _ in 0..20 {
        if let Some(offset) = checkpoint_offset(&checkpoint) {
            assert!(
                offset <= bad_offset,
                "checkpoint at {offset} passed the stuck line at {bad_offset}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dead_letters(&dead).is_empty(), "nothing torn into the file");
    let after_lines: Vec<String> = fake.accepted_lines();
    assert!(
        !after_lines
            .iter()
            .any(|l| l.contains("\"request_id\":\"after-")),
        "nothing after the stuck line is shipped before it"
    );

    std::fs::remove_file(filler).unwrap();
    assert!(
        fake.wait_for_lines(200, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    wait_log(&ft, "INFO", "The dead-letter file takes entries again");
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    let entries = dead_letters(&dead);
    assert_eq!(entries.len(), 1, "written exactly once: {entries:?}");
    assert_eq!(entries[0]["offset"], bad_offset);
    assert_eq!(entries[0]["line"], bad.as_str());
    assert_eq!(fake.duplicate_lines(), Vec::<String>::new());
    assert_eq!(
        logs_with(&ft, "ERROR", "Cannot write the dead-letter file").len(),
        1,
        "one ERROR per episode"
    );
    let report = ft.report();
    assert_eq!(report["dead_lettered_invalid_json"], 1);
    assert_eq!(report["undelivered"], 0);
    assert_eq!(checkpoint_offset(&checkpoint), Some(file_size(&log)));
}

/// `/dev/full` refuses every write with ENOSPC, forever: the line is never lost
/// silently — the drain ends at its deadline with exit 1, the line counted as
/// undelivered, and the checkpoint still before it for a restart to ship.
#[test]
fn a_dead_letter_file_that_never_takes_the_line_ends_the_drain_undelivered() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join("cp.json");
    append(&log, &access_lines("ok", 0..50));
    let bad_offset = file_size(&log);
    append(&log, &[not_json(1, 100)]);

    let mut args = set(
        base_args(&log, &fake.stream_name()),
        "--invalid-json",
        "dead-letter",
    );
    args = set(args, "--drain-timeout", "3s");
    args.push("--dead-letter=/dev/full".into());
    args.push(format!("--checkpoint={}", checkpoint.display()));
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    wait_log(&ft, "ERROR", "Cannot write the dead-letter file");
    ft.term();
    assert_eq!(ft.exit_code(LONG), 1, "{}", ft.dump());
    let report = ft.report();
    assert_eq!(report["drain_end"], "deadline");
    assert!(report["undelivered"].as_u64().unwrap() >= 1, "{report}");
    // The line never reached a batch's span: the ledger counts it read, unregistered.
    assert!(report.get("count_mismatch").is_none(), "{report}");
    assert_eq!(report["dead_lettered_invalid_json"], 0);
    let offset = checkpoint_offset(&checkpoint).unwrap_or(0);
    assert!(
        offset <= bad_offset,
        "checkpoint {offset} passed the line at {bad_offset}"
    );
    assert_eq!(
        logs_with(&ft, "ERROR", "Cannot write the dead-letter file").len(),
        1
    );
}

/// `--dead-letter-max-bytes`: the file rotates to one `.1`; what an older `.1` held is
/// dropped with an ERROR that counts it, and the counter agrees. Every bad line is
/// either in the two files, in order, or counted as dropped.
#[test]
fn the_dead_letter_file_rotates_and_counts_what_it_drops() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let dead = dir.path().join("dead.jsonl");
    let mut offsets = Vec::new();
    for i in 0..30 {
        append(&log, &access_lines(&format!("ok{i}"), 0..3));
        offsets.push(file_size(&log));
        append(&log, &[not_json(i, 100_000)]);
    }
    let mut args = set(
        base_args(&log, &fake.stream_name()),
        "--invalid-json",
        "dead-letter",
    );
    args.push(format!("--dead-letter={}", dead.display()));
    args.push("--dead-letter-max-bytes=1MiB".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(
        fake.wait_for_lines(90, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    let addr = ft.metrics_addr();
    assert!(eventually(LONG, || metric(
        &addr,
        "firetail_dead_lettered_total{reason=\"invalid_json\"}"
    ) == 30));
    let dropped_metric = metric(&addr, "firetail_dead_letter_entries_dropped_total");
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    let mut kept: Vec<u64> = dead_letters(&with_suffix(&dead, ".1"))
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    kept.extend(
        dead_letters(&dead)
            .iter()
            .map(|e| e["offset"].as_u64().unwrap()),
    );
    let dropped = offsets.len() - kept.len();
    assert!(
        dropped > 0,
        "30 entries of ~100 KB must overflow two 1 MiB files"
    );
    assert_eq!(
        kept,
        offsets[dropped..],
        "the newest entries are kept, in order"
    );
    assert_eq!(dropped_metric, dropped as u64);
    let logged: u64 = logs_with(&ft, "ERROR", "the older rotated file was dropped")
        .iter()
        .map(|v| v["entries_dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(
        logged, dropped as u64,
        "each drop is an ERROR with its count"
    );
    assert!(file_size(&dead) <= 1024 * 1024);
    assert!(file_size(&with_suffix(&dead, ".1")) <= 1024 * 1024);
}

// ===== the checkpoint ===============================================================

/// The checkpoint's disk fills, goes read-only while full, comes
/// back read-write but still full, then has room — and no line is acknowledged after
/// it heals. The checkpoint must catch up on its own: a `kill -9` then re-ships
/// nothing.
#[test]
fn the_checkpoint_catches_up_after_its_disk_heals_without_new_lines() {
    let Some(disk) = Tmpfs::mount("256k") else {
        return;
    };
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let checkpoint = disk.path().join("cp.json");
    append(&log, &access_lines("first", 0..500));
    let mut args = base_args(&log, &fake.stream_name());
    args.push(format!("--checkpoint={}", checkpoint.display()));
    let env = aws_env(&fake.endpoint());
    let mut ft = Firetail::start(&args, &env);
    let addr = ft.metrics_addr();
    assert!(fake.wait_for_lines(500, LONG));
    let first = file_size(&log);
    assert!(eventually(LONG, || checkpoint_offset(&checkpoint) == Some(first)));

    let filler = disk.fill();
    append(&log, &access_lines("second", 0..500));
    assert!(fake.wait_for_lines(1000, LONG));
    let error = wait_log(&ft, "ERROR", "Cannot write the checkpoint");
    assert!(
        error.to_string().contains("os error 28"),
        "ENOSPC named: {error}"
    );
    disk.remount("ro");
    let failures = metric(&addr, "firetail_checkpoint_write_failures_total");
    assert!(
        eventually(LONG, || metric(
            &addr,
            "firetail_checkpoint_write_failures_total"
        ) > failures),
        "retried while read-only"
    );
    disk.remount("rw");
    let failures = metric(&addr, "firetail_checkpoint_write_failures_total");
    assert!(
        eventually(LONG, || metric(
            &addr,
            "firetail_checkpoint_write_failures_total"
        ) > failures),
        "retried while full"
    );
    assert_eq!(
        checkpoint_offset(&checkpoint),
        Some(first),
        "stale while failing"
    );

    std::fs::remove_file(filler).unwrap();
    let second = file_size(&log);
    assert!(
        eventually(LONG, || checkpoint_offset(&checkpoint) == Some(second)),
        "the checkpoint did not catch up: {:?}\n{}",
        checkpoint_offset(&checkpoint),
        ft.dump()
    );
    wait_log(&ft, "INFO", "Checkpoint writes work again");
    assert_eq!(
        logs_with(&ft, "ERROR", "Cannot write the checkpoint").len(),
        1,
        "one ERROR per episode"
    );

    ft.kill9();
    let mut ft = Firetail::start(&args, &env);
    append(&log, &access_lines("third", 0..10));
    assert!(
        fake.wait_for_lines(1010, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(
        fake.duplicate_lines(),
        Vec::<String>::new(),
        "nothing re-shipped after kill -9"
    );
    assert_eq!(fake.lines_accepted(), 1010);
}

/// An unreadable checkpoint (EACCES: mode 000, firetail run as root without
/// CAP_DAC_OVERRIDE) is not corruption: ERROR naming the file and the errno, `/readyz`
/// 503, nothing read from the log, the file neither moved nor overwritten. Once
/// readable, firetail resumes from it — a version 1 checkpoint, migrated on read — and
/// ships only what came after it.
#[test]
fn an_unreadable_checkpoint_is_waited_for_and_resumed_from() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join("cp.json");
    append(&log, &access_lines("first", 0..100));
    let mut args = base_args(&log, &fake.stream_name());
    args.push(format!("--checkpoint={}", checkpoint.display()));
    let env = aws_env(&fake.endpoint());
    let mut ft = Firetail::start(&args, &env);
    assert!(fake.wait_for_lines(100, LONG));
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    // Today's checkpoint as the previous release wrote it: version 1, no mtime.
    let mut cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    cp["version"] = 1.into();
    cp["files"][0].as_object_mut().unwrap().remove("mtime_ns");
    std::fs::write(&checkpoint, serde_json::to_vec(&cp).unwrap()).unwrap();
    let v1 = std::fs::read(&checkpoint).unwrap();
    append(&log, &access_lines("second", 0..200));
    set_mode(&checkpoint, 0o000);

    // Root reads any file whatever its mode: run firetail without the capabilities
    // that allow it (a non-root runner is refused by the mode alone).
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let no_dac: &[&str] = if root {
        &[
            "setpriv",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
        ]
    } else {
        &[]
    };
    // The start-up line (with the address) comes after the checkpoint: fix the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let args = set(args, "--metrics-addr", &addr);
    let mut ft = Firetail::start_via(no_dac, &args, &env);
    let error = wait_log(&ft, "ERROR", "Cannot read the checkpoint");
    assert_eq!(error["file"], checkpoint.display().to_string(), "{error}");
    assert!(
        error.to_string().contains("os error 13"),
        "EACCES named: {error}"
    );
    assert_eq!(http_get(&addr, "/readyz").0, 503);
    // Several read attempts pass (100 ms, doubling); nothing is read meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fake.lines_accepted(),
        100,
        "must not read the log from scratch"
    );
    assert_eq!(http_get(&addr, "/readyz").0, 503);

    set_mode(&checkpoint, 0o644);
    assert_eq!(
        std::fs::read(&checkpoint).unwrap(),
        v1,
        "never overwritten while unreadable"
    );
    wait_log(&ft, "INFO", "Checkpoint readable again");
    assert!(
        fake.wait_for_lines(300, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    assert!(eventually(LONG, || http_get(&addr, "/readyz").0 == 200));
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(
        fake.duplicate_lines(),
        Vec::<String>::new(),
        "resumed from the checkpoint"
    );
    assert_eq!(fake.lines_accepted(), 300);
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".corrupt-")
        })
        .count();
    assert_eq!(aside, 0, "never moved aside");
    assert_eq!(
        logs_with(&ft, "ERROR", "Cannot read the checkpoint").len(),
        1
    );

    // SIGTERM while the checkpoint cannot be read: no drain can start, so firetail
    // says so and exits 1 (the pod would otherwise hang until SIGKILL); nothing was
    // read, the checkpoint is untouched, and a later start ships the rest.
    append(&log, &access_lines("third", 0..50));
    set_mode(&checkpoint, 0o000);
    let before = std::fs::read(&checkpoint).ok();
    let mut ft = Firetail::start_via(no_dac, &args, &env);
    wait_log(&ft, "ERROR", "Cannot read the checkpoint");
    ft.term();
    assert_eq!(ft.exit_code(LONG), 1, "{}", ft.dump());
    let fatal = wait_log(&ft, "ERROR", "firetail stopped on a fatal error");
    assert!(
        fatal["error"]
            .as_str()
            .unwrap()
            .contains("SIGTERM arrived while the checkpoint could not be read"),
        "{fatal}"
    );
    assert_eq!(fake.lines_accepted(), 300, "nothing read while unreadable");
    set_mode(&checkpoint, 0o644);
    assert_eq!(
        std::fs::read(&checkpoint).ok(),
        before,
        "checkpoint untouched"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
