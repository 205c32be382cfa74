//! Answers that are not Firehose's JSON, and failures that are never silent —
//! the built binary against the fake Firehose.
//!
//! A proxy in front of Firehose (nginx, an egress gateway) answers with its own pages:
//! HTML 413 for a body over its limit, HTML or empty 5xx and 429, and sometimes a 200
//! firetail cannot match to its records. None of them may wedge shipping or lose a
//! line. A pipeline task that fails is an ERROR naming it and exit 1, even when it
//! fails during the drain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Fault, Faults, RawAnswer};
use crate::support::firetail::{access_lines, append, aws_env, base_args, Firetail};
use crate::support::skip::skip_or_fail;
use crate::support::sorted;

const LONG: Duration = Duration::from_secs(90);

fn log_path(dir: &Path) -> PathBuf {
    dir.join("access.log")
}

/// The default dead-letter file beside `log`, parsed entry by entry.
fn dead_letters(log: &Path) -> Vec<serde_json::Value> {
    let path = log.with_file_name(".firetail-access.log.dead.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a dead-letter entry is JSON"))
        .collect()
}

/// Every log line is one line, and the SDK's debug dump stays at DEBUG.
fn assert_one_line_logs(ft: &Firetail) {
    for v in ft.logs() {
        let text = v.to_string();
        assert!(
            v.get("raw").is_none(),
            "a log line that is not JSON: {text}"
        );
        for (k, field) in v.as_object().into_iter().flatten() {
            let s = field.as_str().unwrap_or("");
            assert!(!s.contains('\n'), "field {k} spans lines: {text}");
        }
        assert!(
            !text.contains("DispatchFailure") && !text.contains("ResponseError {"),
            "an SDK debug dump above DEBUG: {text}"
        );
    }
}

/// A JSON line of about `size` bytes (without its `\n`), tagged.
fn big_line(tag: &str, size: usize) -> String {
    let head = format!(r#"{{"tag":"{tag}","pad":""#);
    format!("{head}{}\"}}", "x".repeat(size - head.len() - 2))
}

/// A proxy with a 256 KiB body limit answers nginx's HTML 413 to every call over it:
/// firetail splits calls until they pass, so every line is delivered, and the one
/// record that is too large on its own (it would pass Firehose's 1,000 KiB limit, but
/// not the proxy) goes to the dead-letter file with reason `too_large_for_endpoint`
/// and an ERROR that names the proxy limit.
#[test]
fn html_413_from_a_proxy_splits_calls_and_dead_letters_a_single_oversize_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(dir.path());
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            proxy_body_limit: Some(256 * 1024),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let mut lines = access_lines("proxy", 0..3000);
    // Fits through the proxy alone (base64 ≈ 200 KB)…
    lines.insert(1000, big_line("fits-alone", 150_000));
    // …and does not (base64 ≈ 400 KB), though Firehose would take it.
    let too_large = big_line("too-large", 300_000);
    lines.insert(2000, too_large.clone());
    append(&log, &lines);

    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let expected = lines.len() as u64 - 1;
    assert!(
        fake.wait_for_lines(expected, LONG),
        "delivered {} of {expected}; logs:\n{}",
        fake.lines_accepted(),
        ft.dump()
    );
    let error = ft
        .wait_log(LONG, |v| {
            v["level"] == "ERROR" && v["reason"] == "too_large_for_endpoint"
        })
        .unwrap_or_else(|| panic!("no ERROR for the oversize record; logs:\n{}", ft.dump()));
    assert_eq!(error["status"], 413, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("proxy"),
        "{error}"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "logs:\n{}", ft.dump());

    let mut want: Vec<String> = lines.iter().filter(|l| **l != too_large).cloned().collect();
    want = sorted(want);
    assert_eq!(
        sorted(fake.accepted_lines()),
        want,
        "every other line, once"
    );
    let dead = dead_letters(&log);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "too_large_for_endpoint");
    assert_eq!(dead[0]["line"], too_large.as_str());
    let report = ft.report();
    assert_eq!(
        report["dead_lettered_too_large_for_endpoint"], 1,
        "{report}"
    );
    assert_eq!(report["undelivered"], 0, "{report}");
    assert!(fake.counters().proxy_413 > 0);
    assert_one_line_logs(&ft);
}

/// HTML and empty 5xx and 429 answers are retried; a 200 that cannot be matched to
/// the records (they were taken) makes firetail resend the call and count possible
/// duplicates. Nothing is lost and shipping never wedges.
#[test]
fn html_and_empty_errors_retry_and_an_unmatched_200_resends() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(dir.path());
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![
            Fault::Raw(RawAnswer::html(
                502,
                "<html><body>502 Bad Gateway</body></html>",
            )),
            Fault::Raw(RawAnswer::empty(503)),
            Fault::Raw(RawAnswer::html(429, "<html>Too Many Requests</html>")),
            Fault::Raw(RawAnswer::empty(504)),
            Fault::AcceptThen(RawAnswer::unmatched_200()),
            Fault::AcceptThen(RawAnswer::html(200, "<html>hello from a portal</html>")),
        ],
        ..FakeConfig::default()
    });
    let lines = access_lines("raw", 0..400);
    append(&log, &lines);
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    assert!(
        fake.wait_until(LONG, |c| c.lines_accepted >= 400 && c.calls >= 7)
            && fake.script_len() == 0,
        "logs:\n{}",
        ft.dump()
    );
    let mut unique = fake.accepted_lines();
    unique.sort();
    unique.dedup();
    assert_eq!(unique, sorted(lines.clone()), "every line arrived");
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "logs:\n{}", ft.dump());
    let report = ft.report();
    let resent = fake.duplicate_lines().len() as u64;
    assert!(resent > 0, "the unmatched 200s took their records");
    assert!(
        report["duplicates_possible"].as_u64().unwrap() >= resent,
        "every duplicate was counted as possible: {report}, {resent} resent"
    );
    let warned: Vec<u64> = ft
        .logs()
        .iter()
        .filter(|v| v["level"] == "WARN")
        .filter_map(|v| v["status"].as_u64())
        .collect();
    // WARNs are rate-limited (one a second sums up the rest), so at least the first
    // is there, with its status as a field.
    assert!(
        !warned.is_empty() && warned.iter().all(|s| [502, 503, 429, 504, 200].contains(s)),
        "WARN statuses: {warned:?}; logs:\n{}",
        ft.dump()
    );
    assert_one_line_logs(&ft);
}

/// A small ext4 file system on a loop device, for a real I/O error: `shutdown` makes
/// every read of it fail with EIO (`EXT4_IOC_SHUTDOWN`, what ext4 does itself after a
/// disk error). Unmounted on drop.
struct Ext4 {
    dir: tempfile::TempDir,
}

impl Ext4 {
    fn mount() -> Option<Ext4> {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 * 1024 * 1024)
            .unwrap();
        // Each step's failure, with what the tool said, or None when it worked.
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| match std::process::Command::new(cmd)
            .args(args)
            .output()
        {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "{cmd} {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run {cmd}: {e}")),
        };
        let failed =
            run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), image.as_ref()]).or_else(|| {
                run(
                    "mount",
                    &["-o".as_ref(), "loop".as_ref(), image.as_ref(), mnt.as_ref()],
                )
            });
        if let Some(failed) = failed {
            skip_or_fail(&format!(
                "cannot mount an ext4 image (needs root with CAP_SYS_ADMIN, a loop device and mkfs.ext4): {failed}"
            ));
            return None;
        }
        Some(Ext4 { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Shuts the file system down without flushing its log: from now on every read
    /// and write on it is EIO, as after a failed disk.
    fn shutdown(&self) {
        // EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32); EXT4_GOING_FLAGS_NOLOGFLUSH = 2.
        const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
        let dir = std::fs::File::open(self.path()).unwrap();
        let flags: u32 = 2;
        // SAFETY: a valid fd and a pointer to a u32 the ioctl only reads.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&dir),
                EXT4_IOC_SHUTDOWN as _,
                &flags,
            )
        };
        assert_eq!(
            rc,
            0,
            "EXT4_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.path())
            .status();
    }
}

/// The tail fails during the drain (the disk under the log file fails: every read is
/// EIO): an ERROR naming the task, `failed_task` in the drain report, exit 1 — and
/// what was read before is still delivered.
#[test]
fn a_tail_failure_during_the_drain_is_an_error_and_exit_1() {
    let Some(fs) = Ext4::mount() else { return };
    let log = fs.path().join("access.log");
    // The checkpoint and dead-letter files live on a healthy disk: only the tail fails.
    let state = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::start(FakeConfig::default());
    let lines = access_lines("tailfail", 0..500);
    append(&log, &lines);
    let mut args = base_args(&log, &fake.stream_name());
    // A long quiet period keeps the tail looking at the file during the drain.
    args.retain(|a| !a.starts_with("--drain-quiet="));
    args.push("--drain-quiet=10s".into());
    args.push(format!(
        "--checkpoint={}",
        state.path().join("cp.json").display()
    ));
    args.push(format!(
        "--dead-letter={}",
        state.path().join("dead.jsonl").display()
    ));
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_lines(500, LONG), "logs:\n{}", ft.dump());
    ft.term();
    ft.wait_message(
        "Drain started: reading every file to its end, then shipping the rest.",
        LONG,
    );
    fs.shutdown();

    assert_eq!(ft.exit_code(LONG), 1, "logs:\n{}", ft.dump());
    let error = ft
        .wait_log(Duration::from_secs(1), |v| {
            v["level"] == "ERROR" && v["task"] == "tail"
        })
        .unwrap_or_else(|| panic!("no ERROR naming the tail; logs:\n{}", ft.dump()));
    assert!(
        error["error"].as_str().unwrap().contains("os error 5"),
        "the ERROR carries the I/O error: {error}"
    );
    let report = ft.report();
    assert_eq!(report["failed_task"], "tail", "{report}");
    assert_eq!(report["drain_end"], "error", "{report}");
    assert_eq!(
        sorted(fake.accepted_lines()),
        sorted(lines),
        "nothing read was lost"
    );
}
