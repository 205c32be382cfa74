//! Restarts in the world as it is — the checkpointed file shifted out or
//! copytruncated while firetail was down, thousands of siblings under a low soft
//! open-files limit, and `--read-from end` killed before the first acknowledgement —
//! with the built binary, the fake Firehose, and the real tools (see `rotation.rs`).
//!
//! Each test prints one line, `files <name>: written=N delivered=N lost=N
//! duplicated=N`.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::files::{
    compare, count_messages, fake_with, logger_shift, start_firetail, term_and_exit_0, App, LONG,
};
use crate::rotation::{
    args_with, figures, lines_on_disk, logrotate, old_siblings, ruby_line, ruby_logger,
};
use crate::support::eventually;
use crate::support::fake_firehose::Faults;
use crate::support::firetail::{access_lines, append, aws_env, base_args, Firetail};

#[test]
fn restart_after_the_checkpointed_file_was_shifted_out_ships_the_newer_ones() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = start_firetail(&fake, &log);
    assert!(ruby_logger(&log, 3, 1_000_000, 50, "before", 0.0)
        .wait()
        .unwrap()
        .success());
    assert!(fake.wait_for_lines(50, LONG), "{}", ft.dump());
    term_and_exit_0(&mut ft);
    // While firetail is down the app shifts its log with shift_age 3 (access.log, .0,
    // .1): the checkpointed file is shifted out and deleted by Logger.
    std::thread::sleep(Duration::from_millis(20));
    assert!(ruby_logger(&log, 3, 2_000, 40, "down", 0.0)
        .wait()
        .unwrap()
        .success());
    let on_disk = lines_on_disk(&log, "down");
    assert!(
        !lines_on_disk(&log, "before").iter().any(|_| true),
        "the checkpointed file is gone"
    );
    let mut ft = start_firetail(&fake, &log);
    assert!(
        eventually(LONG, || count_messages(&ft, "Checkpointed file is gone")
            == 1),
        "the restart says the checkpointed file is gone\n{}",
        ft.dump()
    );
    assert!(ruby_logger(&log, 3, 1_000_000, 50, "after", 0.0)
        .wait()
        .unwrap()
        .success());
    let mut written: Vec<String> = (0..50).map(|i| ruby_line("before", i)).collect();
    written.extend(on_disk.iter().cloned());
    written.extend((0..50).map(|i| ruby_line("after", i)));
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    // Lines Logger wrote into files it deleted while firetail was down are beyond
    // anyone; everything still on disk arrives.
    let deleted_while_down = 40 - on_disk.len();
    let d = compare(&written, &fake.accepted_lines());
    println!(
        "files restart_after_shift_out: written={} delivered={} lost={} duplicated={} (deleted by Logger while down, never readable: {deleted_while_down})",
        written.len() + deleted_while_down,
        written.len() - d.missing_count,
        d.missing_count,
        d.duplicates
    );
    assert_eq!(
        (d.missing_count, d.unexpected_count, d.duplicates),
        (0, 0, 0),
        "{d:?}\n{}",
        ft.dump()
    );
}

#[test]
fn read_from_end_then_kill_9_before_the_first_acknowledgement_loses_nothing() {
    // Every call fails: nothing is acknowledged before the kill.
    let fake = fake_with(Faults {
        call_error_rate: 1.0,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join(".firetail-access.log.json");
    let old = access_lines("old", 0..100);
    append(&log, &old);
    let args = args_with(&log, &fake, &["--read-from=end"]);
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    assert!(
        eventually(LONG, || checkpoint.exists()),
        "the checkpoint is written when the file is opened"
    );
    let new = access_lines("new", 0..100);
    append(&log, &new);
    assert!(
        fake.wait_for_calls(2, LONG),
        "firetail read the new lines and tried to ship them"
    );
    assert_eq!(fake.lines_accepted(), 0);
    ft.kill9();
    fake.set_faults(Faults::default());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_lines(100, LONG), "{}", ft.dump());
    term_and_exit_0(&mut ft);
    let dups = figures("read_from_end_kill_9", &new, &fake, &ft, 0);
    assert_eq!(dups, 0);
}

#[test]
fn restart_beside_3000_siblings_with_a_soft_limit_of_1024_loses_nothing() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = start_firetail(&fake, &log);
    let mut app = App::open(&log, "limit", true);
    app.write_lines(500);
    assert!(fake.wait_for_lines(500, LONG), "{}", ft.dump());
    term_and_exit_0(&mut ft);
    // While firetail is down: more lines, a Logger shift, 3,000 year-old siblings.
    app.write_lines(500);
    logger_shift(&mut app, 10);
    app.write_lines(1000);
    old_siblings(&log, 3000);
    let args = base_args(&log, &fake.stream_name());
    let mut ft = Limited::start(
        &args,
        &aws_env(&fake.endpoint()),
        dir.path().join("stderr.jsonl"),
    );
    assert!(
        eventually(LONG, || ft.message("Open-files limit.").is_some()),
        "no limit logged"
    );
    let limit = ft.message("Open-files limit.").unwrap();
    assert_eq!(
        (limit["soft_before"].as_u64(), limit["soft"].as_u64()),
        (Some(1024), Some(hard_limit())),
        "{limit}"
    );
    let written = app.written.clone();
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{:?}",
        ft.logs()
    );
    // An unreadable descriptor table proves nothing: it fails the test, never counts 0.
    let fd_dir = format!("/proc/{}/fd", ft.child.id());
    let fds = std::fs::read_dir(&fd_dir)
        .unwrap_or_else(|e| panic!("cannot count firetail's descriptors in {fd_dir}: {e}"))
        .count();
    assert!(fds < 200, "{fds} descriptors open: siblings are held open");
    // SAFETY: kill(2) on our own child (prlimit execs firetail in place).
    assert_eq!(
        unsafe { libc::kill(ft.child.id() as i32, libc::SIGTERM) },
        0
    );
    let status = ft.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{:?}", ft.logs());
    assert!(
        ft.message("No file descriptor free").is_none(),
        "EMFILE with the raised limit"
    );
    let d = compare(&written, &fake.accepted_lines());
    println!(
        "files restart_beside_3000_siblings_prlimit: written={} delivered={} lost={} duplicated={} (descriptors open: {fds})",
        written.len(),
        written.len() - d.missing_count,
        d.missing_count,
        d.duplicates
    );
    assert_eq!(
        (d.missing_count, d.unexpected_count, d.duplicates),
        (0, 0, 0),
        "{d:?}"
    );
}

/// copytruncate while firetail was down (logrotate's cron runs during a restart): the
/// checkpointed content is finished from logrotate's copy, then the truncated file is
/// read from 0.
#[test]
fn restart_after_a_copytruncate_while_down_finishes_the_copy() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let logs = tempfile::tempdir_in(dir.path()).unwrap();
    let mut ft = start_firetail(&fake, &log);
    let mut app = App::open(&log, "ctdown", false);
    app.write_lines(500);
    assert!(fake.wait_for_lines(500, LONG), "{}", ft.dump());
    let size = std::fs::metadata(&log).unwrap().len();
    let checkpoint = dir.path().join(".firetail-access.log.json");
    assert!(
        eventually(LONG, || crate::files::checkpoint_offsets(&checkpoint)
            .contains(&size)),
        "the checkpoint reached the end of the file"
    );
    ft.kill9();
    // Down: more lines, then logrotate copytruncate (the app idle around it), more lines.
    app.write_lines(700);
    logrotate(
        logs.path(),
        &log,
        "copytruncate\nrotate 5\nnocompress\nmissingok",
    );
    app.write_lines(300);
    let mut ft = start_firetail(&fake, &log);
    let written = app.written.clone();
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    assert_eq!(
        count_messages(
            &ft,
            "Checkpointed file was truncated while firetail was down"
        ),
        1,
        "{}",
        ft.dump()
    );
    // A kill -9 may re-send what was in flight; nothing is lost or invented.
    let dups = figures(
        "restart_after_copytruncate_while_down",
        &written,
        &fake,
        &ft,
        0,
    );
    assert!(
        dups <= 500,
        "{dups} duplicates: more than was shipped before the kill"
    );
}

/// firetail under `prlimit --nofile=1024:HARD` (the usual soft limit, a higher hard
/// one: 65,536, or this machine's hard limit when lower — raising a hard limit needs
/// CAP_SYS_RESOURCE, which a container may lack), with its stderr in a file.
struct Limited {
    child: std::process::Child,
    stderr: PathBuf,
}

impl Limited {
    fn start(args: &[String], env: &[(String, String)], stderr: PathBuf) -> Limited {
        let child = Command::new("prlimit")
            .arg(format!("--nofile=1024:{}", hard_limit()))
            .arg("--")
            .arg(crate::support::firetail::binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("prlimit is installed (util-linux)");
        Limited { child, stderr }
    }

    fn logs(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn message(&self, prefix: &str) -> Option<serde_json::Value> {
        self.logs()
            .into_iter()
            .find(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
    }
}

/// The hard open-files limit the child gets: 65,536, or ours when lower.
fn hard_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_max.min(65_536)
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
