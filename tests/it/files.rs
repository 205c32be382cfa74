//! Files that rotate, restart and die — the follower's mechanisms
//! (`src/tail/`, model-tested in `follower_model.rs`) end to end, with the built
//! binary, real renames, truncates and deletions, real SIGTERM and SIGKILL, and the
//! fake Firehose.
//!
//! The application is a [`Writer`]: a thread that appends unique access-log lines
//! through one open handle in append mode, as Ruby's `Logger` does, each burst in two
//! `write(2)`s cut inside a line (so firetail meets partial lines), until stopped.
//! Rotations are done the way the real tools do them:
//! - [`logger_shift`]: Ruby `Logger::LogDevice#shift_log_age` (rename, `.0` newest, a
//!   header line at the top of each new file);
//! - [`logrotate_create`]: logrotate's default `create` (rename, `.1` newest, a new
//!   empty file, the app reopens);
//! - [`copytruncate`]: logrotate `copytruncate` (copy to `.1`, truncate in place, the app
//!   keeps its handle).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Faults};
use crate::support::firetail::{access_lines, aws_env, base_args, Firetail};

pub(crate) const LONG: Duration = Duration::from_secs(60);

/// The writer's pace: this many lines per burst, one burst every [`WRITE_EVERY`].
const LINES_PER_WRITE: usize = 10;
/// 10 lines every 5 ms: at most 2,000 lines/s (a sleep never wakes early, so the real
/// rate is at most this), ~500 KB/s of realistic access-log lines.
const WRITE_EVERY: Duration = Duration::from_millis(5);
/// The upper bound of the writer's rate, in lines per second.
const MAX_LINES_PER_SEC: usize = LINES_PER_WRITE * 1000 / WRITE_EVERY.as_millis() as usize;

/// Ruby Logger's first line of a new file (`LogDevice#add_log_header`:
/// `"# Logfile created on %s by %s\n" % [Time.now.to_s, Logger::ProgName]`).
const LOGGER_HEADER: &str = "# Logfile created on 2026-11-26 17:00:00 +0000 by logger.rb/v1.6.0";

/// The application side of the log file: its open handle and everything it wrote.
pub(crate) struct App {
    pub(crate) path: PathBuf,
    file: File,
    tag: String,
    /// Every line written, in order, without headers.
    pub(crate) written: Vec<String>,
    /// Logger header lines written.
    headers: usize,
}

pub(crate) fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

impl App {
    /// Opens (creating it if needed) the log at `path` for appending; with `header`, a
    /// new file starts with Logger's header line, as `Logger.new(path)` does.
    pub(crate) fn open(path: &Path, tag: &str, header: bool) -> App {
        let mut app = App {
            path: path.to_path_buf(),
            file: open_append(path),
            tag: tag.to_string(),
            written: Vec::new(),
            headers: 0,
        };
        app.header_if_new(header);
        app
    }

    /// Opens the path again (a new file once the old one was renamed or deleted).
    pub(crate) fn reopen(&mut self, header: bool) {
        self.file = open_append(&self.path);
        self.header_if_new(header);
    }

    fn header_if_new(&mut self, header: bool) {
        if header && self.file.metadata().unwrap().len() == 0 {
            self.file
                .write_all(format!("{LOGGER_HEADER}\n").as_bytes())
                .unwrap();
            self.headers += 1;
        }
    }

    /// Appends `n` unique lines in two writes cut inside a line.
    pub(crate) fn write_lines(&mut self, n: usize) {
        let first = self.written.len();
        let lines = access_lines(&self.tag, first..first + n);
        let mut buf = String::new();
        for l in &lines {
            buf.push_str(l);
            buf.push('\n');
        }
        let (a, b) = buf.as_bytes().split_at(buf.len() / 2);
        self.file.write_all(a).unwrap();
        self.file.write_all(b).unwrap();
        self.written.extend(lines);
    }

    pub(crate) fn sibling(&self, n: usize) -> PathBuf {
        let mut s = self.path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }
}

/// Ruby's `Logger::LogDevice#shift_log_age`: `.i` → `.i+1` for i from `shift_age - 3`
/// down to 0 (renaming over the oldest drops it), close, `access.log` → `access.log.0`,
/// then `create_logfile`: a new file whose first line is the header.
pub(crate) fn logger_shift(app: &mut App, shift_age: usize) {
    for i in (0..=shift_age - 3).rev() {
        if app.sibling(i).exists() {
            std::fs::rename(app.sibling(i), app.sibling(i + 1)).unwrap();
        }
    }
    std::fs::rename(&app.path, app.sibling(0)).unwrap();
    app.reopen(true);
}

/// logrotate's default `create` with `rotate keep`: the oldest kept file is removed,
/// `.i` → `.i+1`, `access.log` → `access.log.1`, a new empty `access.log` is created,
/// and `postrotate` makes the app reopen its log.
fn logrotate_create(app: &mut App, keep: usize) {
    let _ = std::fs::remove_file(app.sibling(keep));
    for i in (1..keep).rev() {
        if app.sibling(i).exists() {
            std::fs::rename(app.sibling(i), app.sibling(i + 1)).unwrap();
        }
    }
    std::fs::rename(&app.path, app.sibling(1)).unwrap();
    File::create(&app.path).unwrap();
    app.reopen(false);
}

/// logrotate `copytruncate`: copy the log to `.1`, then truncate it to 0 in place. The
/// app keeps its handle; it is in append mode, so its next write lands at offset 0.
fn copytruncate(app: &App) {
    std::fs::copy(&app.path, app.sibling(1)).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&app.path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// The application writing continuously on a thread of its own until stopped. A test
/// acts between two bursts (rotate, truncate) through [`Writer::paused`].
pub(crate) struct Writer {
    app: Arc<Mutex<App>>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(app: App) -> Writer {
        Writer::start_paced(app, LINES_PER_WRITE)
    }

    /// Like [`Writer::start`], `lines` lines per burst (several writers share a rate).
    pub(crate) fn start_paced(app: App, lines: usize) -> Writer {
        let app = Arc::new(Mutex::new(app));
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (app, stop, count) = (app.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut app = app.lock().unwrap();
                        app.write_lines(lines);
                        count.store(app.written.len(), Ordering::Relaxed);
                    }
                    std::thread::sleep(WRITE_EVERY);
                }
            })
        };
        Writer {
            app,
            stop,
            count,
            thread: Some(thread),
        }
    }

    /// Runs `f` between two bursts: the writer waits until it returns.
    pub(crate) fn paused<R>(&self, f: impl FnOnce(&mut App) -> R) -> R {
        let mut app = self.app.lock().unwrap();
        let r = f(&mut app);
        self.count.store(app.written.len(), Ordering::Relaxed);
        r
    }

    /// Lines written so far.
    pub(crate) fn written(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `more` lines were written after now; returns the new count.
    pub(crate) fn write_more(&self, more: usize) -> usize {
        let target = self.written() + more;
        assert!(
            eventually(LONG, || self.written() >= target),
            "the writer never reached {target} lines"
        );
        self.written()
    }

    /// Stops the thread; returns every line written and the number of headers.
    pub(crate) fn stop(&mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the writer thread panicked");
        }
        self.paused(|app| (app.written.clone(), app.headers))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What arrived compared with what was written, as multisets.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    /// Written, never accepted (at most a few shown).
    pub(crate) missing: Vec<String>,
    pub(crate) missing_count: usize,
    /// Accepted, never written: invented or corrupted lines.
    pub(crate) unexpected: Vec<String>,
    pub(crate) unexpected_count: usize,
    /// Accepted copies beyond the first of a written line.
    pub(crate) duplicates: usize,
}

pub(crate) fn compare(written: &[String], accepted: &[String]) -> Delivery {
    let mut left: HashMap<&str, usize> = HashMap::new();
    for l in written {
        *left.entry(l.as_str()).or_default() += 1;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut d = Delivery::default();
    for l in accepted {
        match left.get_mut(l.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            Some(_) => d.duplicates += 1,
            None => {
                d.unexpected_count += 1;
                if d.unexpected.len() < 5 {
                    d.unexpected.push(l.clone());
                }
            }
        }
        seen.insert(l.as_str());
    }
    for l in written {
        if !seen.contains(l.as_str()) {
            d.missing_count += 1;
            if d.missing.len() < 5 {
                d.missing.push(l.clone());
            }
        }
    }
    d
}

/// Every written line accepted exactly once, nothing else.
fn assert_exactly_once(fake: &FakeFirehose, written: &[String], ft: &Firetail) {
    let d = compare(written, &fake.accepted_lines());
    assert!(
        d.missing_count == 0 && d.unexpected_count == 0 && d.duplicates == 0,
        "{} lines written: {d:?}\nfiretail logs:\n{}",
        written.len(),
        ft.dump()
    );
}

/// Every written line accepted at least once, nothing else; returns the duplicates.
fn assert_at_least_once(fake: &FakeFirehose, written: &[String], ft: &Firetail) -> usize {
    let d = compare(written, &fake.accepted_lines());
    assert!(
        d.missing_count == 0 && d.unexpected_count == 0,
        "{} lines written: {d:?}\nfiretail logs:\n{}",
        written.len(),
        ft.dump()
    );
    d.duplicates
}

/// Distinct lines the fake accepted.
pub(crate) fn distinct_accepted(fake: &FakeFirehose) -> usize {
    fake.accepted_lines()
        .into_iter()
        .collect::<HashSet<_>>()
        .len()
}

/// Waits until the fake accepted `n` distinct lines.
fn wait_distinct(fake: &FakeFirehose, n: usize, ft: &Firetail) {
    assert!(
        eventually(LONG, || distinct_accepted(fake) >= n),
        "fewer than {n} distinct lines arrived ({}); logs:\n{}",
        distinct_accepted(fake),
        ft.dump()
    );
}

pub(crate) fn count_messages(ft: &Firetail, prefix: &str) -> usize {
    ft.logs()
        .iter()
        .filter(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .count()
}

/// The acknowledged offsets in the checkpoint file (empty when it is missing or holds
/// no file yet).
pub(crate) fn checkpoint_offsets(checkpoint: &Path) -> Vec<u64> {
    let Ok(bytes) = std::fs::read(checkpoint) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    v["files"]
        .as_array()
        .map(|files| files.iter().filter_map(|f| f["offset"].as_u64()).collect())
        .unwrap_or_default()
}

pub(crate) fn fake_with(faults: Faults) -> FakeFirehose {
    FakeFirehose::start(FakeConfig {
        faults,
        ..FakeConfig::default()
    })
}

pub(crate) fn start_firetail(fake: &FakeFirehose, log: &Path) -> Firetail {
    let ft = Firetail::start(
        &base_args(log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    ft.wait_message("firetail started.", LONG);
    ft
}

pub(crate) fn term_and_exit_0(ft: &mut Firetail) {
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
}

#[test]
fn logger_rotation_five_times_under_continuous_writing_loses_nothing() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // firetail first, as in the pod (the startup probe gates the app).
    let mut ft = start_firetail(&fake, &log);
    let mut writer = Writer::start(App::open(&log, "logger", true));
    // shift_age 4 keeps access.log.0 to .2: from the 4th rotation on, each shift drops
    // the oldest file, as Logger does.
    let mut before_previous = 0;
    for _ in 0..5 {
        writer.write_more(600);
        // Rotate only once everything written before the previous rotation arrived, so
        // the rotations happen while firetail follows (not all found at the end) and no
        // file is dropped by the shift before firetail could read it.
        assert!(
            fake.wait_for_lines(before_previous as u64, LONG),
            "{}",
            ft.dump()
        );
        before_previous = writer.paused(|app| {
            let n = app.written.len();
            logger_shift(app, 4);
            n
        });
    }
    writer.write_more(600);
    let (written, headers) = writer.stop();
    assert_eq!(
        headers, 6,
        "the first file and five new ones start with a header"
    );
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    assert_exactly_once(&fake, &written, &ft);
    let report = ft.report();
    assert_eq!(report["skipped_header"], headers, "{report}");
    assert_eq!(report["undelivered"], 0, "{report}");
    assert_eq!(
        count_messages(&ft, "Finished reading rotated file."),
        5,
        "each rotated file is finished exactly once; logs:\n{}",
        ft.dump()
    );
}

#[test]
fn logrotate_copytruncate_with_the_writer_paused_loses_nothing() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = start_firetail(&fake, &log);
    let mut writer = Writer::start(App::open(&log, "copytruncate", false));
    writer.write_more(2000);
    assert!(fake.wait_for_lines(500, LONG), "{}", ft.dump());
    // The writer waits while logrotate copies and truncates (the window in which
    // copytruncate loses lines for everyone is kept empty on purpose).
    writer.paused(|app| copytruncate(app));
    writer.write_more(2000);
    let (written, _) = writer.stop();
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    assert_exactly_once(&fake, &written, &ft);
    assert_eq!(
        count_messages(&ft, "File truncated (copytruncate)"),
        1,
        "the truncation was seen once; logs:\n{}",
        ft.dump()
    );
}

#[test]
fn rotations_while_firehose_fails_every_call_lose_nothing() {
    let fake = fake_with(Faults {
        call_error_rate: 1.0,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = start_firetail(&fake, &log);
    let mut app = App::open(&log, "failing", false);
    // 20,000 lines (~5 MB) in the first file: more than the pipeline holds in memory
    // (a few ≤ 512 KiB line chunks, a batch being cut, one waiting, four calls of 500
    // retrying), so the reader stops inside it and both rotations happen behind it.
    app.write_lines(20_000);
    assert!(
        eventually(LONG, || fake.counters().calls_error >= 1),
        "firetail never called; logs:\n{}",
        ft.dump()
    );
    logrotate_create(&mut app, 5);
    app.write_lines(4000);
    logrotate_create(&mut app, 5);
    app.write_lines(4000);
    // Still failing after both rotations: nothing shipped, everything piled up.
    let errors = fake.counters().calls_error;
    assert!(
        eventually(LONG, || fake.counters().calls_error >= errors + 8),
        "firetail stopped calling; logs:\n{}",
        ft.dump()
    );
    assert_eq!(fake.lines_accepted(), 0);
    fake.set_faults(Faults::default());
    assert!(
        fake.wait_for_lines(app.written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    assert_exactly_once(&fake, &app.written, &ft);
    // All three files were read to their ends: the two rotated ones were finished
    // (the middle one whether it was seen at the path or found among the siblings,
    // which depends on when the reader got to look).
    assert_eq!(
        count_messages(&ft, "Finished reading rotated file."),
        2,
        "logs:\n{}",
        ft.dump()
    );
}

#[test]
fn kill_9_three_times_under_continuous_writing_loses_nothing() {
    const MAX_IN_FLIGHT: usize = 4;
    const KILLS: usize = 3;
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut args = base_args(&log, &fake.stream_name());
    args.push(format!("--max-in-flight={MAX_IN_FLIGHT}"));
    let env = aws_env(&fake.endpoint());

    // Duplicates a kill -9 can cause: lines Firehose accepted that the checkpoint on
    // disk does not cover yet. Fault-free, that is at most
    // - the calls in flight, accepted but whose answer never came back:
    //   --max-in-flight × 500 records (one line a record without --aggregate);
    // - as much again acknowledged beyond an earlier call still in flight (the offset
    //   cannot pass a gap; with calls answered in milliseconds, a gap spans at most
    //   one round of the slots);
    // - one batch of 500 being cut and handed over as the kill lands;
    // - what was acknowledged since the last checkpoint write: writes come every
    //   500 ms at most, and the test kills only after firetail has caught up (below), so acks
    //   come at the writer's rate; 1 s of it covers the interval plus an fsync and
    //   scheduling on a loaded 2-core machine.
    const PER_KILL: usize = 2 * MAX_IN_FLIGHT * 500 + 500 + MAX_LINES_PER_SEC;
    // A restart that ignored the checkpoint would resend all of this and more, beyond
    // the bound: the assertion below can fail.
    const BEFORE_FIRST_KILL: usize = PER_KILL;

    let mut ft = Firetail::start(&args, &env);
    ft.wait_message("firetail started.", LONG);
    let mut writer = Writer::start(App::open(&log, "kill9", false));
    writer.write_more(BEFORE_FIRST_KILL);
    // Accepted lines (duplicates included) at each kill.
    let mut at_kill = Vec::new();
    for _ in 0..KILLS {
        // Caught up: everything written before now arrived (the catch-up burst after
        // a restart is over) ...
        let target = writer.written();
        wait_distinct(&fake, target, &ft);
        let resent = {
            let accepted = fake.accepted_lines();
            accepted.len() - accepted.iter().collect::<HashSet<_>>().len()
        };
        // ... and a further second of writing arrived too, so the burst was followed
        // by checkpoint writes and acks now come at the writer's rate. Woken by the
        // fake's answer, the kill lands right after an acknowledgement, before the
        // checkpoint can have caught up with it unless its tick falls in between: the
        // bad case, not the average one.
        let target = writer.write_more(MAX_LINES_PER_SEC);
        assert!(
            fake.wait_for_lines((target + resent) as u64, LONG),
            "{}",
            ft.dump()
        );
        ft.kill9();
        assert!(ft.wait_timeout(Duration::ZERO).is_some(), "still running");
        at_kill.push(fake.lines_accepted() as usize);
        ft = Firetail::start(&args, &env);
        ft.wait_message("firetail started.", LONG);
        writer.write_more(2 * MAX_LINES_PER_SEC);
    }
    let (written, _) = writer.stop();
    assert!(
        eventually(LONG, || distinct_accepted(&fake) >= written.len()),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);

    let duplicates = assert_at_least_once(&fake, &written, &ft);
    // Duplicates each restart caused: lines accepted after kill i that had been
    // accepted before it.
    let accepted = fake.accepted_lines();
    let mut per_kill = Vec::new();
    for (i, &start) in at_kill.iter().enumerate() {
        let end = at_kill.get(i + 1).copied().unwrap_or(accepted.len());
        let before: HashSet<&String> = accepted[..start].iter().collect();
        per_kill.push(
            accepted[start..end]
                .iter()
                .filter(|l| before.contains(l))
                .count(),
        );
    }
    eprintln!(
        "kill9: lines={} duplicates={duplicates} ratio={:.4}",
        written.len(),
        duplicates as f64 / written.len() as f64
    );
    eprintln!("kill9: duplicates per restart={per_kill:?}, bound per restart={PER_KILL}");
    for (i, d) in per_kill.iter().enumerate() {
        assert!(
            *d <= PER_KILL,
            "restart {} resent {d} lines, more than can be in flight ({PER_KILL})",
            i + 1
        );
    }
    assert!(duplicates <= KILLS * PER_KILL);
}

/// Firetail ships a file and stops; while it is down the file gets more lines and is
/// rotated twice (Logger style); the restart ships the rest of the checkpointed file,
/// then the newer ones.
fn restart_after_two_rotations_while_down(kill9: bool) {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join(".firetail-access.log.json");
    let mut app = App::open(&log, if kill9 { "down9" } else { "down" }, true);
    app.write_lines(3000);

    let mut ft = start_firetail(&fake, &log);
    assert!(fake.wait_for_lines(1, LONG), "{}", ft.dump());
    if kill9 {
        // The checkpoint must name the file, or nothing says where to resume.
        assert!(
            eventually(LONG, || checkpoint_offsets(&checkpoint)
                .iter()
                .any(|o| *o > 0)),
            "no checkpoint with an offset; logs:\n{}",
            ft.dump()
        );
        ft.kill9();
    } else {
        term_and_exit_0(&mut ft);
        assert_eq!(ft.report()["skipped_header"], 1);
    }
    let before_stop = fake.accepted_lines();

    app.write_lines(1000);
    logger_shift(&mut app, 5);
    app.write_lines(1000);
    logger_shift(&mut app, 5);
    app.write_lines(1000);
    assert!(app.sibling(1).exists() && app.sibling(0).exists());

    let mut ft = start_firetail(&fake, &log);
    assert!(
        eventually(LONG, || distinct_accepted(&fake) >= app.written.len()),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    // The checkpointed file, found at access.log.1, and the one rotated after it.
    assert_eq!(
        count_messages(&ft, "Resuming a file rotated while firetail was down."),
        2,
        "logs:\n{}",
        ft.dump()
    );
    if kill9 {
        assert_at_least_once(&fake, &app.written, &ft);
        // Only lines accepted before the kill can come again.
        let before: HashSet<String> = before_stop.into_iter().collect();
        let resent_new: Vec<String> = fake
            .duplicate_lines()
            .into_iter()
            .filter(|l| !before.contains(l))
            .collect();
        assert_eq!(resent_new, Vec::<String>::new());
    } else {
        assert_exactly_once(&fake, &app.written, &ft);
        assert_eq!(
            fake.duplicate_lines(),
            Vec::<String>::new(),
            "acknowledged lines were sent again"
        );
        assert_eq!(
            ft.report()["skipped_header"],
            2,
            "the two new files' headers"
        );
    }
}

#[test]
fn restart_after_two_rotations_while_down_after_sigterm_resends_nothing() {
    restart_after_two_rotations_while_down(false);
}

#[test]
fn restart_after_two_rotations_while_down_after_kill_9_loses_nothing() {
    restart_after_two_rotations_while_down(true);
}

#[test]
fn a_deleted_file_is_finished_from_the_open_handle_then_the_new_one_followed() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = start_firetail(&fake, &log);
    let mut writer = Writer::start(App::open(&log, "deleted", false));
    writer.write_more(1000);
    assert!(fake.wait_for_lines(500, LONG), "{}", ft.dump());
    // Deleted with nothing replacing it: the app goes on writing through its handle.
    std::fs::remove_file(&log).unwrap();
    ft.wait_message(
        "File moved or deleted; finishing it and waiting for a new one.",
        LONG,
    );
    writer.write_more(1000);
    // Then the app reopens its log: a new file at the path.
    writer.paused(|app| app.reopen(false));
    writer.write_more(1000);
    let (written, _) = writer.stop();
    assert!(
        fake.wait_for_lines(written.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    term_and_exit_0(&mut ft);
    assert_exactly_once(&fake, &written, &ft);
}

#[test]
fn a_corrupt_checkpoint_is_moved_aside_and_the_file_shipped_from_the_beginning() {
    let fake = fake_with(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join(".firetail-access.log.json");
    let mut app = App::open(&log, "corrupt", false);
    app.write_lines(1000);
    std::fs::write(&checkpoint, b"{\"version\": 1, \"files\": [{\"pa").unwrap();

    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let error = ft.wait_log(LONG, |v| {
        v["level"] == "ERROR" && v["file"].as_str() == checkpoint.to_str()
    });
    assert!(
        error.is_some(),
        "no ERROR naming the checkpoint; logs:\n{}",
        ft.dump()
    );
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".firetail-access.log.json.corrupt-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the bad checkpoint is kept aside: {aside:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(&aside[0])).unwrap(),
        b"{\"version\": 1, \"files\": [{\"pa"
    );
    // --read-from defaults to the beginning.
    assert!(fake.wait_for_lines(1000, LONG), "{}", ft.dump());
    term_and_exit_0(&mut ft);
    assert_exactly_once(&fake, &app.written, &ft);
    assert!(
        !checkpoint_offsets(&checkpoint).is_empty(),
        "a good checkpoint replaced the corrupt one"
    );
}
