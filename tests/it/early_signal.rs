//! SIGTERM at any moment from exec on: the built binary drains and exits 0 with a drain
//! report, or exits 2 when its configuration is bad — never dies of the signal
//! (docs/design.md#shutdown-and-drain). The signals are blocked from before `main`
//! until their handlers exist, so nothing here waits for the handler before
//! signalling; only the moments before the Rust runtime's set-up (exec, the dynamic
//! loader), which no program can cover, are left out.
//!
//! The built binary against the fake Firehose; real signals; thread masks read from
//! /proc/PID/task/*/status.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
use crate::support::firetail::{access_lines, append, aws_env, base_args, Firetail};

const LONG: Duration = Duration::from_secs(60);
const SPAWNS: usize = 100;
/// Children alive at once: enough to finish in seconds, few enough for two cores.
const AT_ONCE: usize = 4;
/// Every tenth spawn has a bad flag.
const BAD_EVERY: usize = 10;
/// Fixed, so a failure names a spawn that the next run repeats (as far as the
/// scheduler lets it).
const SEED: u64 = 0x5167_7e24;
const LINES: usize = 10;

/// One spawn: when its SIGTERM goes, and whether its configuration is bad.
#[derive(Debug, Clone, Copy)]
struct Case {
    index: usize,
    delay: Duration,
    bad_flag: bool,
}

/// What one spawn did.
struct Outcome {
    case: Case,
    code: i32,
    /// The drawn moment came before the runtime's set-up began; the SIGTERM waited.
    before_setup: bool,
    /// The SIGTERM went before the handler existed (its bit not yet in SigCgt).
    before_handler: bool,
}

/// A signal mask of `pid`'s main thread from /proc/PID/status: `SigCgt:` (signals
/// with a handler) or `SigBlk:` (blocked).
fn mask(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    mask_in(&status, field)
}

fn mask_in(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    u64::from_str_radix(line[field.len()..].trim(), 16).ok()
}

/// The Rust runtime's set-up has begun: it ignores SIGPIPE (the child starts with
/// SIGPIPE at its default: std's spawn resets it), after the ELF initialisers, one of
/// which blocks SIGTERM. Before them — the kernel finishing exec, the dynamic loader —
/// no program can hold a signal back: the promise starts here. A process that has
/// exited counts as begun.
fn setup_has_begun(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let sigpipe_ignored = mask_in(&status, "SigIgn:").is_some_and(|m| m & bit(libc::SIGPIPE) != 0);
    let exited = status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'));
    sigpipe_ignored || exited
}

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Spawns firetail for `case`, sends SIGTERM `case.delay` after exec (spawn returns
/// once the exec succeeded) or, if the Rust runtime's set-up has not begun by then,
/// the moment it has;
/// and checks how it ended.
fn run_case(case: Case, dir: &Path, fake: &FakeFirehose) -> Outcome {
    let log = dir.join(format!("spawn-{:03}.log", case.index));
    append(&log, &access_lines(&format!("s{}", case.index), 0..LINES));
    let mut args: Vec<String> = base_args(&log, &fake.stream_name())
        .into_iter()
        .map(|a| match a.starts_with("--drain-quiet=") {
            true => "--drain-quiet=20ms".into(),
            false => a,
        })
        .collect();
    if case.bad_flag {
        args.push("--max-in-flight=four".into());
    }
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    std::thread::sleep(case.delay);
    let before_setup = !setup_has_begun(ft.pid());
    let deadline = Instant::now() + LONG;
    while !setup_has_begun(ft.pid()) {
        assert!(
            Instant::now() < deadline,
            "{case:?}: the runtime set-up never began"
        );
        std::thread::yield_now();
    }
    let before_handler = mask(ft.pid(), "SigCgt:").is_some_and(|m| m & bit(libc::SIGTERM) == 0);
    ft.term();
    let status = ft
        .wait_timeout(LONG)
        .unwrap_or_else(|| panic!("{case:?}: no exit within {LONG:?}:\n{}", ft.dump()));
    assert_eq!(
        status.signal(),
        None,
        "{case:?}: killed by the signal (sent before the handler: {before_handler}):\n{}",
        ft.dump()
    );
    let code = status.code().expect("an exit code when not killed");
    if case.bad_flag {
        assert_eq!(code, 2, "{case:?}:\n{}", ft.dump());
        let named = ft.logs().iter().any(|v| {
            v["raw"]
                .as_str()
                .is_some_and(|l| l.contains("invalid value") && l.contains("--max-in-flight"))
        });
        assert!(
            named,
            "{case:?}: no message naming the flag:\n{}",
            ft.dump()
        );
    } else {
        assert_eq!(code, 0, "{case:?}:\n{}", ft.dump());
        let report = ft.report();
        assert_eq!(report["drain_end"], "drained", "{case:?}: {report}");
        assert_eq!(report["undelivered"], 0, "{case:?}: {report}");
        // What the file held before start is shipped, however early the signal came.
        assert_eq!(report["lines_shipped"], LINES, "{case:?}: {report}");
    }
    Outcome {
        case,
        code,
        before_setup,
        before_handler,
    }
}

#[test]
fn sigterm_at_a_random_moment_after_exec_drains_or_exits_2_never_kills() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let cases: Vec<Case> = (0..SPAWNS)
        .map(|index| Case {
            index,
            delay: Duration::from_micros(rng.u64(0..=10_000)),
            bad_flag: index % BAD_EVERY == 3,
        })
        .collect();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..AT_ONCE {
            s.spawn(|| loop {
                let Some(&case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let outcome = run_case(case, dir.path(), &fake);
                outcomes.lock().unwrap().push(outcome);
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    assert_eq!(outcomes.len(), SPAWNS, "a spawn's check failed (above)");
    let count = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let (zero, two) = (count(&|o| o.code == 0), count(&|o| o.code == 2));
    assert_eq!(zero, count(&|o| !o.case.bad_flag));
    assert_eq!(two, SPAWNS / BAD_EVERY);
    eprintln!(
        "early SIGTERM: {SPAWNS} spawns (seed {SEED:#x}), {zero} exited 0 with a drain report, \
         {two} exited 2 on a bad flag, none killed; {} signalled before the SIGTERM \
         handler existed; {} drawn before the runtime's set-up and sent as it began; {:.1}s",
        count(&|o| o.before_handler),
        count(&|o| o.before_setup),
        started.elapsed().as_secs_f64()
    );
}

/// The signal mask of every thread of `pid`: (thread id, SigBlk).
fn blocked_per_thread(pid: i32) -> Vec<(String, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("SigBlk:"))?;
            let mask = u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).ok()?;
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let id = t.file_name().to_string_lossy().into_owned();
            Some((format!("{id} {}", name.trim()), mask))
        })
        .collect()
}

/// Blocking the signals early must not leave them blocked: a thread created before
/// the unblock would keep them blocked for good. Once started, no thread blocks
/// SIGTERM, SIGINT or SIGHUP.
#[test]
fn once_started_no_thread_keeps_the_stop_signals_blocked() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("mask", 0..100);
    append(&log, &lines);
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    ft.wait_message("firetail started.", LONG);
    let stop = bit(libc::SIGTERM) | bit(libc::SIGINT) | bit(libc::SIGHUP);
    // glibc blocks every signal for a moment while it creates a thread, so a reading
    // can catch the creating thread so; a thread that inherited the early block keeps
    // it for good, and this never holds.
    let mut threads = Vec::new();
    let clear = eventually(Duration::from_secs(10), || {
        threads = blocked_per_thread(ft.pid());
        !threads.is_empty() && threads.iter().all(|(_, mask)| mask & stop == 0)
    });
    assert!(
        clear,
        "a thread blocks SIGTERM, SIGINT or SIGHUP: {threads:x?}"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(ft.report()["lines_shipped"], lines.len());
}
