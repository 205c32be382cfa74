//! A model-based property test of the follower, in the spirit of Vector's
//! `file_watcher/tests`: random sequences of file-system actions and of reads, run
//! against real files, with none of the old idealising preconditions — firetail may be
//! far behind when a file is truncated (with logrotate's copy kept, or compressed away
//! at once), the app keeps writing into a renamed file until it reopens, many renames
//! happen between two polls, files are shorter than the fingerprint, acknowledgements
//! come in any order, and firetail is killed at any point and restarts from whatever
//! checkpoint was last written, however stale (also one whose file was deleted while it
//! was down).
//!
//! The model knows exactly which lines no follower can recover: those the app wrote
//! between logrotate's copy and its truncate; those of a truncated file not yet read
//! when no copy of it is left; those of a file deleted before firetail had it open (it
//! has every file open once a full poll has passed, or while it is down). Every other
//! line must come out; nothing may be invented or spliced; a line comes out twice only
//! when it was read but not acknowledged when firetail restarted.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use firetail::checkpoint::Checkpointer;
use firetail::config::ReadFrom;
use firetail::health::Health;
use firetail::metrics::Metrics;
use firetail::progress::{FileEntry, Progress, Span};
use firetail::tail::{Follower, Line, TailSettings as Settings};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    WriteLine(usize),
    WritePartial(usize),
    /// Rename rotation (`access.log` → `.0`, older ones shifted); the app goes on
    /// writing into the renamed file until [`Op::Reopen`].
    RenameRotate,
    Reopen,
    /// copytruncate: copy, `window` lines written after the copy, truncate; the copy
    /// kept, or removed at once (`compress` without `delaycompress`).
    CopyTruncate {
        window: usize,
        keep_copy: bool,
    },
    /// The oldest rotated file is deleted (Logger's `shift_age`, logrotate `rotate N`).
    DeleteOldest,
    Poll,
    PollAll,
    /// Acknowledge the read lines in an order given by the seed (some may stay).
    Ack(u64),
    /// The checkpoint writer writes what is acknowledged now.
    Checkpoint,
    /// `kill -9`: firetail stops (its last checkpoint, maybe stale, is what a restart
    /// sees); file actions go on until [`Op::Up`].
    Down,
    Up,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (1usize..400).prop_map(Op::WriteLine),
        4 => (2usize..300).prop_map(Op::WritePartial),
        5 => Just(Op::RenameRotate),
        4 => Just(Op::Reopen),
        3 => (0usize..3, any::<bool>()).prop_map(|(window, keep_copy)| Op::CopyTruncate { window, keep_copy }),
        2 => Just(Op::DeleteOldest),
        10 => Just(Op::Poll),
        4 => Just(Op::PollAll),
        6 => any::<u64>().prop_map(Op::Ack),
        4 => Just(Op::Checkpoint),
        2 => Just(Op::Down),
        2 => Just(Op::Up),
    ]
}

/// A file as the model knows it: which lines (indices into `written`) it holds.
struct MFile {
    lines: Vec<usize>,
    /// firetail has (or had) it open: a full poll passed while it existed.
    opened: bool,
}

struct World {
    _dir: tempfile::TempDir,
    path: PathBuf,
    checkpoint: PathBuf,
    writer: std::fs::File,
    /// The model file the app's handle writes into.
    writer_file: usize,
    /// Model files by real path.
    at: HashMap<PathBuf, usize>,
    files: Vec<MFile>,
    partial: Option<(String, usize)>,
    written: Vec<String>,
    /// Files deleted while firetail held them open: readable only until it goes down.
    held_deleted: Vec<usize>,
    /// Lines no follower can recover (they may still come out, if read in time).
    unrecoverable: HashSet<usize>,
    follower: Option<Follower>,
    progress: Arc<Progress>,
    emitted: Vec<String>,
    unacked: Vec<Line>,
    /// Every line read since firetail last started (what a restart may read again).
    read_since_up: Vec<Line>,
    /// The last checkpoint written: per key its offset, and the keys it let go.
    last_checkpoint: (HashMap<u32, u64>, HashSet<u32>),
    may_duplicate: HashSet<String>,
}

fn settings(path: &Path) -> Settings {
    Settings {
        path: path.to_path_buf(),
        read_from: ReadFrom::Beginning,
        // Nothing retires by time inside a test case: late writers are never cut off.
        rotate_wait: Duration::from_secs(3600),
        own_files: vec![path.with_file_name(".firetail-access.log.json")],
    }
}

fn new_follower(path: &Path, entries: &[FileEntry]) -> (Follower, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let follower = Follower::new(
        &settings(path),
        entries,
        progress.clone(),
        Arc::new(Metrics::new()),
        Arc::new(Health::default()),
    )
    .unwrap();
    (follower, progress)
}

fn open_append(path: &Path) -> std::fs::File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn sibling(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn text_of(l: &Line) -> String {
    String::from_utf8_lossy(l.data.strip_suffix(b"\n").unwrap()).into_owned()
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let checkpoint = dir.path().join(".firetail-access.log.json");
        let (follower, progress) = new_follower(&path, &[]);
        let writer = open_append(&path);
        let mut w = World {
            _dir: dir,
            writer,
            writer_file: 0,
            at: HashMap::from([(path.clone(), 0)]),
            files: vec![MFile {
                lines: Vec::new(),
                opened: false,
            }],
            path,
            checkpoint,
            partial: None,
            written: Vec::new(),
            held_deleted: Vec::new(),
            unrecoverable: HashSet::new(),
            follower: Some(follower),
            progress,
            emitted: Vec::new(),
            unacked: Vec::new(),
            read_since_up: Vec::new(),
            last_checkpoint: Default::default(),
            may_duplicate: HashSet::new(),
        };
        // firetail is up before the app writes (the startup probe gates the app).
        w.write_line(20);
        w.poll_all();
        w.write_checkpoint();
        w
    }

    fn next_text(&mut self, len: usize) -> String {
        format!(
            "{{\"seq\":{},\"pad\":\"{}\"}}",
            self.written.len() + 1,
            "x".repeat(len)
        )
    }

    fn write_line(&mut self, len: usize) {
        let (text, from) = match self.partial.take() {
            Some((text, done)) => (text, done),
            None => (self.next_text(len), 0),
        };
        self.writer
            .write_all(format!("{}\n", &text[from..]).as_bytes())
            .unwrap();
        self.written.push(text);
        self.files[self.writer_file]
            .lines
            .push(self.written.len() - 1);
    }

    fn write_partial(&mut self, len: usize) {
        if self.partial.is_none() {
            let text = self.next_text(len);
            let half = text.len() / 2;
            self.writer.write_all(&text.as_bytes()[..half]).unwrap();
            self.partial = Some((text, half));
        }
    }

    fn rename(&mut self, from: &Path, to: &Path) {
        std::fs::rename(from, to).unwrap();
        let id = self.at.remove(from).unwrap();
        self.at.insert(to.to_path_buf(), id);
    }

    /// `.n` → `.n+1` for every rotated file, newest last.
    fn shift(&mut self) {
        let mut n = 0;
        while sibling(&self.path, n).exists() {
            n += 1;
        }
        for n in (0..n).rev() {
            self.rename(&sibling(&self.path, n), &sibling(&self.path, n + 1));
        }
    }

    fn rename_rotate(&mut self) {
        // Logger writes whole lines; a line is never cut by its own rotation.
        if self.partial.is_some() || !self.path.exists() {
            return;
        }
        self.shift();
        let path = self.path.clone();
        self.rename(&path, &sibling(&path, 0));
    }

    fn reopen(&mut self) {
        if self.partial.is_some() {
            return;
        }
        if !self.at.contains_key(&self.path) {
            self.files.push(MFile {
                lines: Vec::new(),
                opened: false,
            });
            self.at.insert(self.path.clone(), self.files.len() - 1);
        }
        self.writer = open_append(&self.path);
        self.writer_file = self.at[&self.path];
    }

    fn copy_truncate(&mut self, window: usize, keep_copy: bool) {
        let Some(&id) = self.at.get(&self.path) else {
            return;
        };
        if self.partial.is_some() || self.writer_file != id {
            return;
        }
        self.shift();
        let copy = sibling(&self.path, 0);
        std::fs::copy(&self.path, &copy).unwrap();
        self.files.push(MFile {
            lines: self.files[id].lines.clone(),
            opened: false,
        });
        self.at.insert(copy.clone(), self.files.len() - 1);
        for _ in 0..window {
            self.write_line(30);
            self.unrecoverable.insert(self.written.len() - 1);
        }
        if !keep_copy {
            self.delete(&copy);
        } else {
            // A content truncated before firetail read a byte of it leaves the handle
            // at offset 0 with a size of 0: nothing shows the truncation, and only the
            // periodic sibling scan (every few seconds, no clock here) or a rotation
            // finds the copy — a kill before that loses it.
            let emitted: HashSet<&String> = self.emitted.iter().collect();
            if !self.files[id]
                .lines
                .iter()
                .any(|i| emitted.contains(&self.written[*i]))
            {
                self.unrecoverable
                    .extend(self.files[id].lines.iter().copied());
            }
        }
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let gone = std::mem::take(&mut self.files[id].lines);
        self.destroyed(gone, false);
    }

    /// Lines whose content was destroyed: unrecoverable unless firetail already
    /// emitted them, holds them in an open file, or another file still has them.
    fn destroyed(&mut self, lines: Vec<usize>, held_open: bool) {
        if held_open {
            return;
        }
        let emitted: HashSet<&String> = self.emitted.iter().collect();
        let elsewhere: HashSet<usize> = self
            .at
            .values()
            .flat_map(|f| self.files[*f].lines.iter().copied())
            .collect();
        let lost: Vec<usize> = lines
            .into_iter()
            .filter(|i| !emitted.contains(&self.written[*i]) && !elsewhere.contains(i))
            .collect();
        self.unrecoverable.extend(lost);
    }

    fn delete(&mut self, path: &Path) {
        std::fs::remove_file(path).unwrap();
        let id = self.at.remove(path).unwrap();
        let held = self.files[id].opened && self.follower.is_some();
        if held {
            self.held_deleted.push(id);
        }
        let lines = self.files[id].lines.clone();
        self.destroyed(lines, held);
    }

    fn delete_oldest(&mut self) {
        let mut n = 0;
        while sibling(&self.path, n).exists() {
            n += 1;
        }
        if n == 0 {
            return;
        }
        let oldest = sibling(&self.path, n - 1);
        if self.at.get(&oldest) == Some(&self.writer_file) {
            return; // the app still writes there
        }
        self.delete(&oldest);
    }

    fn take(&mut self, out: Vec<Line>) {
        for l in out {
            self.emitted.push(text_of(&l));
            self.read_since_up.push(l.clone());
            self.unacked.push(l);
        }
    }

    fn poll(&mut self) -> bool {
        let Some(f) = self.follower.as_mut() else {
            return false;
        };
        let mut out = Vec::new();
        let more = f.poll(&mut out).unwrap();
        self.take(out);
        more
    }

    fn poll_all(&mut self) {
        if self.follower.is_none() {
            return;
        }
        for _ in 0..10_000 {
            if !self.poll() {
                for f in self.at.values() {
                    self.files[*f].opened = true;
                }
                return;
            }
        }
        panic!("the follower never reached the end of its files");
    }

    /// The pipeline registers what was read, in file order, and acknowledges it in an
    /// order of the seed's choosing; about a third stays unacknowledged.
    fn ack(&mut self, seed: u64) {
        let spans: Vec<Span> = self
            .unacked
            .iter()
            .map(|l| Span {
                file: l.file,
                start: l.start,
                end: l.end,
                lines: 1,
            })
            .collect();
        self.progress.register(&spans);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut order: Vec<usize> = (0..spans.len()).collect();
        rng.shuffle(&mut order);
        let keep = order.len() / 3;
        let acked: Vec<Span> = order[keep..].iter().map(|i| spans[*i]).collect();
        self.progress.ack(&acked);
        let mut left = Vec::new();
        for (i, l) in std::mem::take(&mut self.unacked).into_iter().enumerate() {
            if order[..keep].contains(&i) {
                left.push(l);
            }
        }
        self.unacked = left;
    }

    /// The checkpoint writer's turn: what is acknowledged now becomes durable.
    fn write_checkpoint(&mut self) {
        if self.follower.is_none() {
            return;
        }
        let snap = self.progress.snapshot();
        Checkpointer::new(&self.checkpoint, Arc::new(Metrics::new()))
            .write(&self.progress)
            .unwrap();
        let offsets = snap
            .keys
            .iter()
            .zip(&snap.entries)
            .map(|(k, e)| (*k, e.offset));
        self.last_checkpoint = (offsets.collect(), snap.dropped.into_iter().collect());
    }

    /// `kill -9`: a restart reads again every line at or after its file's offset in the
    /// last checkpoint written (acknowledged out of order after a gap, not at all, or
    /// after that write), and every line of a file opened after it.
    fn down(&mut self) {
        if self.follower.take().is_none() {
            return;
        }
        for id in std::mem::take(&mut self.held_deleted) {
            let lines = self.files[id].lines.clone();
            self.destroyed(lines, false);
        }
        let (offsets, dropped) = &self.last_checkpoint;
        for l in self.read_since_up.drain(..) {
            let again = match offsets.get(&l.file) {
                Some(o) => l.start >= *o,
                None => !dropped.contains(&l.file),
            };
            if again {
                self.may_duplicate.insert(text_of(&l));
            }
        }
        self.unacked.clear();
    }

    fn up(&mut self) {
        if self.follower.is_some() {
            return;
        }
        let entries = Checkpointer::new(&self.checkpoint, Arc::new(Metrics::new()))
            .try_load()
            .unwrap();
        let (follower, progress) = new_follower(&self.path, &entries);
        self.follower = Some(follower);
        self.progress = progress;
        // The writer writes as soon as files are opened (Progress::open wakes it).
        self.write_checkpoint();
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::WriteLine(n) => self.write_line(*n),
            Op::WritePartial(n) => self.write_partial(*n),
            Op::RenameRotate => self.rename_rotate(),
            Op::Reopen => self.reopen(),
            Op::CopyTruncate { window, keep_copy } => self.copy_truncate(*window, *keep_copy),
            Op::DeleteOldest => self.delete_oldest(),
            Op::Poll => {
                self.poll();
            }
            Op::PollAll => self.poll_all(),
            Op::Ack(seed) => self.ack(*seed),
            Op::Checkpoint => self.write_checkpoint(),
            Op::Down => self.down(),
            Op::Up => self.up(),
        }
    }

    /// The app stops (finishing its line); firetail is up and drains.
    fn finish(&mut self) {
        if self.partial.is_some() {
            self.write_line(0);
        }
        self.up();
        self.poll_all();
        let f = self.follower.as_mut().unwrap();
        let mut out = Vec::new();
        let mut steps = 0;
        while f.finish(&mut out).unwrap() {
            steps += 1;
            assert!(steps < 10_000, "the drain never finished");
        }
        self.take(out);
    }
}

fn check(w: &World) -> Result<(), TestCaseError> {
    let index: HashMap<&String, usize> =
        w.written.iter().enumerate().map(|(i, l)| (l, i)).collect();
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for e in &w.emitted {
        prop_assert!(index.contains_key(e), "invented or spliced line: {e:?}");
        *counts.entry(e).or_default() += 1;
    }
    for (i, line) in w.written.iter().enumerate() {
        prop_assert!(
            counts.contains_key(line) || w.unrecoverable.contains(&i),
            "lost line {i} (recoverable): {line:?}"
        );
    }
    for (line, n) in counts {
        prop_assert!(
            n == 1 || w.may_duplicate.contains(line),
            "line emitted {n} times without a restart to explain it: {line:?}"
        );
    }
    Ok(())
}

proptest! {
    // Beside the unit tests' regressions: one folder for the crate.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/it/follower_model.txt",
            ),
        )),
        ..ProptestConfig::with_cases(160)
    })]

    #[test]
    fn every_recoverable_line_once_nothing_invented(ops in prop::collection::vec(arb_op(), 1..80)) {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
        }
        w.finish();
        check(&w)?;
    }
}

/// Pinned: many rename rotations between two polls (Firehose down, the channel full)
/// with the app reopening each time; no generation skipped.
#[test]
fn many_renames_between_two_polls_lose_nothing() {
    let mut w = World::new();
    for _ in 0..12 {
        w.write_line(50);
        w.rename_rotate();
        w.write_line(50); // a late write into the renamed file
        w.reopen();
    }
    w.write_line(50);
    w.finish();
    check(&w).unwrap();
    assert!(w.unrecoverable.is_empty());
    assert_eq!(w.emitted.len(), w.written.len());
}

/// Pinned: copytruncate while far behind (nothing of the file read yet), the copy kept:
/// the copy is finished from the offset, then the truncated file from 0 — only the
/// window's lines are lost.
#[test]
fn copytruncate_while_behind_reads_the_rest_from_the_copy() {
    let mut w = World::new();
    for _ in 0..40 {
        w.write_line(100);
    }
    w.copy_truncate(2, true);
    w.write_line(5);
    w.finish();
    check(&w).unwrap();
    assert_eq!(w.unrecoverable.len(), 2, "the copy window only");
    assert_eq!(w.emitted.len(), w.written.len() - 2);
}

/// Pinned: a file shorter than the fingerprint, truncated and written again past the
/// old offset before firetail looks: the new content is read from 0, not spliced.
#[test]
fn a_short_file_truncated_and_regrown_is_new_content() {
    let mut w = World::new();
    w.copy_truncate(0, false);
    for _ in 0..3 {
        w.write_line(60);
    }
    w.finish();
    check(&w).unwrap();
    assert_eq!(w.emitted.len(), w.written.len());
}

/// Pinned: the checkpointed file shifted out and deleted while firetail was down; the
/// newer siblings and the current file are shipped.
#[test]
fn restart_after_the_checkpointed_file_was_deleted_ships_the_newer_ones() {
    let mut w = World::new();
    w.write_line(40);
    w.poll_all();
    w.ack(1);
    w.down();
    w.write_line(40);
    w.rename_rotate();
    w.reopen();
    w.write_line(40);
    w.rename_rotate();
    w.reopen();
    w.write_line(40);
    // .1 is the checkpointed one: gone.
    std::thread::sleep(Duration::from_millis(20));
    w.delete_oldest();
    w.finish();
    check(&w).unwrap();
}

/// Pinned: a copy made while firetail was down of content it never saw (the file was
/// empty when it was checkpointed) is newer than the checkpoint, so it is shipped.
#[test]
fn a_copy_of_unseen_content_made_while_down_is_shipped() {
    let mut w = World::new();
    w.copy_truncate(0, false);
    w.poll();
    w.ack(298107941316);
    w.write_line(23);
    w.copy_truncate(0, true);
    w.down();
    eprintln!("{}", std::fs::read_to_string(&w.checkpoint).unwrap());
    w.write_line(135);
    w.finish();
    check(&w).unwrap();
}
