//! The tail of one lane over several sources (docs/design.md#sources): the real `Tail`
//! reading real files — literal paths and globs, files coming and going, logrotate's
//! `dateext` forms, `--max-files`, fairness between a burst and a trickle, a restart
//! from the checkpoint's entries.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firetail::config::ReadFrom;
use firetail::health::Health;
use firetail::metrics::Metrics;
use firetail::progress::{FileEntry, Progress, Span};
use firetail::tail::{Line, SourceSpec, Tail, TailSettings};

fn settings(sources: &[&Path], max_files: usize, read_from: ReadFrom) -> TailSettings {
    TailSettings {
        sources: sources
            .iter()
            .enumerate()
            .map(|(i, p)| SourceSpec {
                id: i as u16,
                name: format!("s{i}"),
                path: p.to_path_buf(),
            })
            .collect(),
        read_from,
        rotate_wait: Duration::ZERO,
        own_files: Vec::new(),
        max_files,
        others: Vec::new(),
        open_files: Arc::default(),
    }
}

fn start(s: TailSettings, entries: &[FileEntry]) -> (Tail, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    // Series for every source id this tail may stamp (a lane's ids need not start at 0).
    let ids = s
        .sources
        .iter()
        .chain(&s.others)
        .map(|s| s.id)
        .max()
        .unwrap_or(0);
    let names: Vec<String> = (0..=ids).map(|i| format!("s{i}")).collect();
    let m = Arc::new(Metrics::new(&names, &["stream".to_string()]));
    let h = Arc::new(Health::default());
    (
        Tail::new(s, entries, progress.clone(), m, h).unwrap(),
        progress,
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn text(l: &Line) -> String {
    String::from_utf8(l.data.to_vec()).unwrap()
}

/// Polls until the tail says it is at the end of every file.
fn poll_all(t: &mut Tail) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        if !t.poll(&mut out).unwrap() {
            return out.iter().map(text).collect();
        }
    }
    panic!("the tail never reached the end of its files");
}

/// Each line once: a count per line.
fn counted(lines: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(l.clone()).or_default() += 1;
    }
    m
}

/// Registers and acknowledges every line, as the later stages do once shipped.
fn ack(progress: &Progress, lines: &[Line]) {
    let spans: Vec<Span> = lines
        .iter()
        .map(|l| Span {
            file: l.file,
            start: l.start,
            end: l.end,
            lines: 1,
        })
        .collect();
    progress.register(&spans);
    progress.ack(&spans);
    progress.persisted(&progress.snapshot());
}

#[test]
fn a_glob_follows_a_file_created_while_running_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "a1\n");
    let (mut t, _) = start(
        settings(&[&dir.path().join("*.log")], 100, ReadFrom::Beginning),
        &[],
    );
    assert_eq!(poll_all(&mut t), ["a1\n"]);
    append(&dir.path().join("b.log"), "b1\nb2\n");
    append(&dir.path().join("b.txt"), "not matched\n");
    t.discover_soon();
    assert_eq!(poll_all(&mut t), ["b1\n", "b2\n"]);
}

/// The async shell picks a new file up on inotify's word, well before the periodic
/// scan (every 5 s) would.
#[tokio::test]
async fn a_new_file_is_picked_up_on_inotify_before_the_periodic_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = start(
        settings(&[&dir.path().join("*.log")], 100, ReadFrom::Beginning),
        &[],
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let (_drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let due = Arc::new(firetail::flush_clock::Due::new());
    let cadence = firetail::tail::Cadence::new(Duration::from_secs(1), due);
    let following = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = tokio::spawn(firetail::tail::run(
        t,
        tx,
        drain_rx,
        Duration::from_millis(100),
        cadence,
        following.clone(),
    ));
    while !following.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Past the first wake-up's scan, and the watch in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&dir.path().join("new.log"), "hello\n");
    let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("the new file's line within 3 s: inotify, not the 5 s scan")
        .unwrap();
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), ["hello\n"]);
    run.abort();
}

/// While one file keeps the tail reading without a pause (the shell looks at no
/// inotify event then), a new file is still found by listing, every second — well
/// before the periodic scan (5 s).
#[test]
fn a_new_file_is_found_while_another_keeps_the_tail_busy() {
    let dir = tempfile::tempdir().unwrap();
    // A sparse GiB: far more than a second of reading, and no disk.
    let busy = std::fs::File::create(dir.path().join("busy.log")).unwrap();
    busy.set_len(1 << 30).unwrap();
    let (mut t, _) = start(
        settings(&[&dir.path().join("*.log")], 100, ReadFrom::Beginning),
        &[],
    );
    let started = std::time::Instant::now();
    append(&dir.path().join("new.log"), "new\n");
    let mut out = Vec::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the new file was not found while the tail was busy"
        );
        out.clear();
        assert!(
            t.poll(&mut out).unwrap(),
            "the busy file keeps the tail reading"
        );
        if out.iter().any(|l| l.data.as_ref() == b"new\n") {
            break;
        }
    }
}

/// logrotate with `dateext`, `extension .log` and `copytruncate` makes
/// `app-20261207.log` of `app.log`: the glob matches both, yet every line leaves once —
/// the copy is `app.log`'s, where its unread lines are finished from.
#[test]
fn a_dateext_copy_the_glob_matches_is_read_once_and_finishes_the_truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.log");
    append(&app, "1\n2\n");
    let (mut t, _) = start(
        settings(&[&dir.path().join("*.log")], 100, ReadFrom::Beginning),
        &[],
    );
    let mut lines = poll_all(&mut t);
    // Written, not read yet, when logrotate copies and truncates.
    append(&app, "3\n4\n");
    std::fs::copy(&app, dir.path().join("app-20261207.log")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&app, "5\n");
    t.discover_soon();
    lines.extend(poll_all(&mut t));
    t.discover_soon();
    lines.extend(poll_all(&mut t));
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, ["1\n", "2\n", "3\n", "4\n", "5\n"], "got {lines:?}");
}

/// The same with the real logrotate: `dateext`, `extension .log`, `copytruncate`.
#[test]
fn real_logrotate_dateext_copytruncate_under_a_glob_ships_every_line_once() {
    real_logrotate_dateext_copytruncate("*.log");
}

/// And for a literal path: the copy is found among its siblings by that name too.
#[test]
fn real_logrotate_dateext_copytruncate_of_a_literal_path_ships_every_line_once() {
    real_logrotate_dateext_copytruncate("app.log");
}

fn real_logrotate_dateext_copytruncate(source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.log");
    append(&app, "1\n2\n");
    let (mut t, _) = start(
        settings(&[&dir.path().join(source)], 100, ReadFrom::Beginning),
        &[],
    );
    let mut lines = poll_all(&mut t);
    append(&app, "3\n4\n");
    crate::rotation::logrotate(
        dir.path(),
        &app,
        "copytruncate\ndateext\ndateformat -%Y%m%d\nextension .log\nrotate 5",
    );
    let rotated: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("app-") && n.ends_with(".log"))
        .collect();
    assert_eq!(
        rotated.len(),
        1,
        "logrotate made one dateext copy: {rotated:?}"
    );
    append(&app, "5\n");
    for _ in 0..3 {
        t.discover_soon();
        lines.extend(poll_all(&mut t));
    }
    assert_eq!(
        counted(&lines),
        counted(&["1\n", "2\n", "3\n", "4\n", "5\n"].map(String::from))
    );
}

#[test]
fn a_dateext_rename_the_glob_matches_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.log");
    append(&app, "1\n");
    let (mut t, _) = start(
        settings(&[&dir.path().join("app*.log")], 100, ReadFrom::Beginning),
        &[],
    );
    let mut lines = poll_all(&mut t);
    append(&app, "2\n");
    std::fs::rename(&app, dir.path().join("app-20261207.log")).unwrap();
    append(&app, "3\n");
    for _ in 0..3 {
        t.discover_soon();
        lines.extend(poll_all(&mut t));
    }
    assert_eq!(
        counted(&lines),
        counted(&["1\n", "2\n", "3\n"].map(String::from))
    );
}

#[test]
fn another_apps_log_named_like_a_dateext_rotation_is_followed_too() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("app.log"), "app\n");
    append(&dir.path().join("app-worker.log"), "worker\n");
    append(&dir.path().join("app.log.1"), "rotated before start\n");
    let (mut t, _) = start(
        settings(&[&dir.path().join("app*")], 100, ReadFrom::Beginning),
        &[],
    );
    let mut lines = poll_all(&mut t);
    lines.sort();
    assert_eq!(lines, ["app\n", "worker\n"]);
}

/// Two names of one file (a hard link), both matched: the file is followed once.
#[test]
fn two_names_of_one_file_are_one_file() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "once\n");
    std::fs::hard_link(dir.path().join("a.log"), dir.path().join("b.log")).unwrap();
    let (mut t, _) = start(
        settings(&[&dir.path().join("*.log")], 100, ReadFrom::Beginning),
        &[],
    );
    let mut lines = poll_all(&mut t);
    t.discover_soon();
    lines.extend(poll_all(&mut t));
    assert_eq!(lines, ["once\n"]);
}

/// A burst in one file delays another file's lines by one poll at most, and a poll
/// hands on about one budget, not one per file.
#[test]
fn a_burst_in_one_file_delays_another_by_one_poll_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let (burst, slow) = (dir.path().join("burst.log"), dir.path().join("slow.log"));
    let line = format!("{}\n", "b".repeat(999));
    append(&burst, &line.repeat(8 * 1024));
    append(&slow, "");
    let (mut t, _) = start(settings(&[&burst, &slow], 100, ReadFrom::Beginning), &[]);
    let mut slow_seen = Vec::new();
    for round in 0..20 {
        append(&slow, &format!("slow {round}\n"));
        let mut out = Vec::new();
        let more = t.poll(&mut out).unwrap();
        assert!(more, "the burst has more after round {round}");
        let bytes: u64 = out.iter().map(|l| l.size).sum();
        assert!(
            bytes <= 2 * firetail::tail::POLL_BUDGET as u64,
            "one poll read {bytes} bytes"
        );
        slow_seen.extend(out.iter().map(text).filter(|l| l.starts_with("slow")));
        let due: Vec<String> = (0..round).map(|r| format!("slow {r}\n")).collect();
        assert!(
            due.iter().all(|d| slow_seen.contains(d)),
            "round {round}: the slow file's lines written before the last poll are all read: {slow_seen:?}"
        );
    }
}

/// A subscriber writing into a buffer, to read what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `--max-files`: 200 files match, 150 are followed, the WARN names the first one left
/// out, the count says 50; once files are deleted and let go the rest are followed,
/// and every line of every file leaves once.
#[test]
fn max_files_caps_open_files_and_follows_the_rest_once_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = |i: usize| dir.path().join(format!("f{i:03}.log"));
    for i in 0..200 {
        append(&path(i), &format!("line of {i}\n"));
    }
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let metrics = Arc::new(Metrics::new(&["s0".to_string()], &["stream".to_string()]));
    let s = settings(&[&dir.path().join("*.log")], 150, ReadFrom::Beginning);
    let (p, h) = (Arc::new(Progress::default()), Arc::new(Health::default()));
    let mut t = Tail::new(s, &[], p, metrics.clone(), h).unwrap();
    let mut lines = poll_all(&mut t);
    assert_eq!(t.open_files(), 150);
    assert_eq!(t.counts().get(0), Some((150, 50)));
    let gauges = |m: &Metrics| {
        let s = m.source(0);
        (s.files_followed.get(), s.files_not_followed.get())
    };
    assert_eq!(gauges(&metrics), (150, 50));
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let warn = logged
        .lines()
        .find(|l| l.contains("--max-files"))
        .expect("a WARN about --max-files");
    assert!(
        warn.contains("WARN") && warn.contains("f150.log") && warn.contains("not_followed=50"),
        "{warn}"
    );
    for i in 0..60 {
        std::fs::remove_file(path(i)).unwrap();
    }
    for _ in 0..3 {
        lines.extend(poll_all(&mut t));
    }
    assert_eq!(t.open_files(), 140);
    assert_eq!(t.counts().get(0), Some((140, 0)));
    assert_eq!(gauges(&metrics), (140, 0));
    let expected: Vec<String> = (0..200).map(|i| format!("line of {i}\n")).collect();
    assert_eq!(counted(&lines), counted(&expected));
}

/// A glob's file deleted and read to its end: its follower goes (memory stays bounded
/// over files coming and going), and a file at that name later is a new one, read from
/// its start.
#[test]
fn a_deleted_glob_file_is_let_go_and_its_name_later_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, "old\n");
    let (mut t, _) = start(
        settings(&[&dir.path().join("*.log")], 100, ReadFrom::Beginning),
        &[],
    );
    let mut lines = poll_all(&mut t);
    std::fs::remove_file(&a).unwrap();
    lines.extend(poll_all(&mut t));
    lines.extend(poll_all(&mut t));
    assert_eq!(t.open_files(), 0);
    assert_eq!(t.followers(), 0, "the follower of a gone file is dropped");
    append(&a, "new\n");
    t.discover_soon();
    lines.extend(poll_all(&mut t));
    assert_eq!(lines, ["old\n", "new\n"]);
}

/// A restart resumes every file of a glob at its checkpointed offset, and reads a file
/// created while firetail was down from its start, even under `--read-from end`.
#[test]
fn a_restart_resumes_each_file_of_a_glob_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let glob: PathBuf = dir.path().join("*.log");
    append(&dir.path().join("a.log"), "a1\n");
    append(&dir.path().join("b.log"), "b1\n");
    let (mut t, progress) = start(settings(&[&glob], 100, ReadFrom::Beginning), &[]);
    let mut out = Vec::new();
    while t.poll(&mut out).unwrap() {}
    assert_eq!(out.len(), 2);
    ack(&progress, &out);
    let entries = progress.entries();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.source == "s0" && e.offset == 3));
    drop(t);
    append(&dir.path().join("a.log"), "a2\n");
    append(&dir.path().join("b.log"), "b2\n");
    append(&dir.path().join("c.log"), "c1\n");
    let (mut t, _) = start(settings(&[&glob], 100, ReadFrom::End), &entries);
    let mut lines = poll_all(&mut t);
    lines.sort();
    assert_eq!(lines, ["a2\n", "b2\n", "c1\n"]);
}

/// A restart resumes every checkpointed file, even beyond `--max-files` (one left out
/// would leave the checkpoint, and be read again from 0 after the next restart); a new
/// file waits while the limit is exceeded.
#[test]
fn a_restart_resumes_every_checkpointed_file_beyond_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let glob: PathBuf = dir.path().join("*.log");
    let path = |n: &str| dir.path().join(format!("{n}.log"));
    for n in ["a", "b", "c"] {
        append(&path(n), &format!("{n}1\n"));
    }
    let (mut t, progress) = start(settings(&[&glob], 100, ReadFrom::Beginning), &[]);
    let mut out = Vec::new();
    while t.poll(&mut out).unwrap() {}
    ack(&progress, &out);
    let entries = progress.entries();
    drop(t);
    for n in ["a", "b", "c"] {
        append(&path(n), &format!("{n}2\n"));
    }
    append(&path("d"), "d1\n");
    let (mut t, _) = start(settings(&[&glob], 2, ReadFrom::Beginning), &entries);
    let mut lines = poll_all(&mut t);
    lines.sort();
    assert_eq!(lines, ["a2\n", "b2\n", "c2\n"]);
    assert_eq!(t.counts().get(0), Some((3, 1)));
}

/// On a first start, `--read-from end` skips what every matched file holds.
#[test]
fn a_first_start_reads_every_matched_file_per_read_from() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "before\n");
    append(&dir.path().join("b.log"), "before\n");
    let (mut t, _) = start(
        settings(&[&dir.path().join("*.log")], 100, ReadFrom::End),
        &[],
    );
    assert!(poll_all(&mut t).is_empty());
    append(&dir.path().join("a.log"), "after\n");
    assert_eq!(poll_all(&mut t), ["after\n"]);
}

/// A new file two globs match is followed by the first source in the configuration's
/// order — of this lane or another — and only by it.
#[test]
fn a_file_two_globs_match_is_followed_by_the_first_source_only() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a*.log"), dir.path().join("*.log"));
    let (mut one_lane, _) = start(settings(&[&first, &second], 100, ReadFrom::Beginning), &[]);
    let mut other = settings(&[&second], 100, ReadFrom::Beginning);
    other.sources[0].id = 1;
    other.others = settings(&[&first], 100, ReadFrom::Beginning).sources;
    let (mut other_lane, _) = start(other, &[]);
    append(&dir.path().join("ab.log"), "both\n");
    append(&dir.path().join("c.log"), "second only\n");
    let polled = |t: &mut Tail| {
        t.discover_soon();
        let mut out = Vec::new();
        while t.poll(&mut out).unwrap() {}
        let mut got: Vec<(u16, String)> = out.iter().map(|l| (l.source, text(l))).collect();
        got.sort();
        got
    };
    let both = (0, "both\n".to_string());
    let second_only = (1, "second only\n".to_string());
    assert_eq!(polled(&mut one_lane), [both, second_only.clone()]);
    assert_eq!(polled(&mut other_lane), [second_only]);
}

/// A file whose share of the duplicate window is full is not "more to read at once":
/// the poll says it is blocked (the shell waits for room for it) instead of spinning,
/// and reads on once the checkpoint frees room.
#[test]
fn a_full_share_of_the_window_blocks_the_file_and_room_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    let line = format!("{}\n", "x".repeat(99));
    append(&log, &line.repeat(10_000));
    let progress = Arc::new(Progress::new(64 * 1024, Default::default()));
    let (m, h) = (Arc::new(Metrics::default()), Arc::new(Health::default()));
    let s = settings(&[&log], 100, ReadFrom::Beginning);
    let mut t = Tail::new(s, &[], progress.clone(), m, h).unwrap();
    let mut out = Vec::new();
    let mut polls = 0;
    while t.poll(&mut out).unwrap() {
        polls += 1;
        assert!(polls < 100, "a full window made the tail spin");
    }
    let read: u64 = out.iter().map(|l| l.size).sum();
    assert!(read <= 64 * 1024, "read {read} bytes past a 64 KiB window");
    assert_eq!(t.blocked(), t.keys(), "the one file waits for room");
    ack(&progress, &out);
    let mut more = Vec::new();
    while t.poll(&mut more).unwrap() {}
    assert!(
        !more.is_empty(),
        "room from the checkpoint lets the file be read on"
    );
    assert_eq!(more[0].start, out.last().unwrap().end);
}

/// Two lanes share one window: a file of one lane that fills its share waits, and a
/// file of the other lane is read meanwhile, to its end.
#[test]
fn a_file_that_fills_its_share_does_not_stop_another_lanes_file() {
    let dir = tempfile::tempdir().unwrap();
    let (busy, quiet) = (dir.path().join("busy.log"), dir.path().join("quiet.log"));
    let line = format!("{}\n", "x".repeat(99));
    append(&busy, &line.repeat(20_000));
    append(&quiet, &line.repeat(500));
    let progress = Arc::new(Progress::new(256 * 1024, Default::default()));
    let lane = |path: &Path, id: u16| {
        let mut s = settings(&[path], 100, ReadFrom::Beginning);
        s.sources[0].id = id;
        let names = ["s0".to_string(), "s1".to_string()];
        let m = Arc::new(Metrics::new(&names, &["stream".to_string()]));
        let h = Arc::new(Health::default());
        Tail::new(s, &[], progress.clone(), m, h).unwrap()
    };
    let (mut busy_lane, mut quiet_lane) = (lane(&busy, 0), lane(&quiet, 1));
    let mut busy_lines = Vec::new();
    for _ in 0..100 {
        if !busy_lane.poll(&mut busy_lines).unwrap() {
            break;
        }
    }
    assert!(
        !busy_lane.blocked().is_empty(),
        "the busy file filled its share"
    );
    let mut quiet_lines = Vec::new();
    for _ in 0..100 {
        if !quiet_lane.poll(&mut quiet_lines).unwrap() {
            break;
        }
    }
    assert_eq!(
        quiet_lines.len(),
        500,
        "the other lane's file is read to its end"
    );
    assert!(quiet_lane.blocked().is_empty());
}

// ===== the built binary ==============================================================

/// The built binary with one glob source: files present at start, and one created
/// while it runs, are shipped once each; the drain reads every file to its end and
/// says how many it finished.
#[test]
fn the_binary_ships_every_file_a_glob_matches_and_drains_them_all() {
    use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
    use crate::support::firetail::{access_lines, aws_env, base_args, Firetail};
    const LONG: Duration = Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::start(FakeConfig::default());
    let worker = |n: usize| dir.path().join(format!("worker-{n}.log"));
    let mut written = Vec::new();
    for n in 1..=2 {
        let lines = access_lines(&format!("w{n}"), 0..200);
        crate::support::firetail::append(&worker(n), &lines);
        written.extend(lines);
    }
    let mut args: Vec<String> = base_args(&worker(0), "unused")
        .into_iter()
        .filter(|a| !a.starts_with("--path=") && !a.starts_with("--stream="))
        .collect();
    args.push(format!(
        "--source=name=workers,path={},stream={}",
        dir.path().join("worker-*.log").display(),
        fake.stream_name()
    ));
    args.push("--read-from=beginning".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(
        crate::support::eventually(LONG, || fake.lines_accepted() == 400),
        "the files present at start; logs:\n{}",
        ft.dump()
    );
    let late = access_lines("w3", 0..200);
    crate::support::firetail::append(&worker(3), &late);
    written.extend(late);
    assert!(
        crate::support::eventually(LONG, || fake.lines_accepted() == 600),
        "the file created while running; logs:\n{}",
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "logs:\n{}", ft.dump());
    let mut accepted = fake.accepted_lines();
    accepted.sort();
    written.sort();
    assert_eq!(accepted, written, "every line once");
    let drained = ft
        .logs()
        .into_iter()
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Drain: the files were quiet"))
        })
        .expect("the drain's line");
    assert_eq!(drained["files"], 3, "{drained}");
}

// ===== open-files limits, in a child process (a limit is the whole process's) =======

const CHILD: &str = "tail_sources::child_follows_200_files_under_the_limit_it_was_given";

/// Runs [`child_follows_200_files_under_the_limit_it_was_given`] in a child process
/// whose open-files limit is `soft`/`hard`, and checks it ran and passed.
fn in_child_with_nofile(mode: &str, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        CHILD,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("FIRETAIL_TEST_NOFILE", mode);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
}

/// The hard limit on open files this process may keep: a child may not get more.
fn hard_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_max
}

/// 200 files matched at once, a soft limit of 64: firetail raises it to the hard one
/// and follows every file.
#[test]
fn two_hundred_files_under_a_low_soft_limit_are_all_followed() {
    let hard = hard_nofile().min(4096);
    assert!(hard >= 512, "the hard open-files limit here is {hard}");
    in_child_with_nofile("soft", 64, hard);
}

/// 200 files matched at once, a hard limit of 64: the files that cannot be opened
/// wait (the open-failure path, EMFILE) and are read once descriptors are free —
/// never lost, never a panic.
#[test]
fn files_over_a_low_hard_limit_wait_and_are_read_once_descriptors_free() {
    in_child_with_nofile("hard", 64, 64);
}

#[test]
#[ignore = "run in a child process with a low open-files limit by the two tests above"]
fn child_follows_200_files_under_the_limit_it_was_given() {
    let mode = std::env::var("FIRETAIL_TEST_NOFILE").expect("run by its parent test");
    firetail::tail::raise_nofile_limit();
    let dir = tempfile::tempdir().unwrap();
    let path = |i: usize| dir.path().join(format!("f{i:03}.log"));
    for i in 0..200 {
        append(&path(i), &format!("line of {i}\n"));
    }
    let (mut t, _) = start(
        settings(&[&dir.path().join("*.log")], 1024, ReadFrom::Beginning),
        &[],
    );
    let mut lines = poll_all(&mut t);
    let expected: Vec<String> = (0..200).map(|i| format!("line of {i}\n")).collect();
    if mode == "soft" {
        assert_eq!(t.open_files(), 200);
        assert_eq!(counted(&lines), counted(&expected));
        return;
    }
    assert!(t.open_files() < 200, "the hard limit of 64 was never met");
    // The app deletes the files read; their descriptors free, the rest are opened.
    for _ in 0..100 {
        for l in &lines {
            let i: usize = l.trim().trim_start_matches("line of ").parse().unwrap();
            let _ = std::fs::remove_file(path(i));
        }
        t.discover_soon();
        lines.extend(poll_all(&mut t));
        if lines.len() >= 200 {
            break;
        }
    }
    assert_eq!(counted(&lines), counted(&expected));
}
