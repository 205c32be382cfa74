//! The duplicate window as a model: the real `Follower` reads real files (in a tmpfs)
//! on the real budget the ledger gives it — no clamping here — while the app writes
//! lines whole or in pieces (the window's edge falls inside a line in progress) and
//! rotates by rename, a late worker still appending to the renamed file (the window is
//! one bound summed over files); the batch stage cuts batches of the lines read,
//! Firehose answers them in any order with one stuck until a random step, and the real
//! `Checkpointer` writes when told. After every step, the lines read that a restart
//! would read again (at or after their file's offset in the last durable checkpoint,
//! or in a file opened since) hold at most the window's bytes; at the end firetail is
//! killed and really restarted from that checkpoint: what it sends again that Firehose
//! already had is at most the window, and nothing is lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use firetail::checkpoint::Checkpointer;
use firetail::config::ReadFrom;
use firetail::health::Health;
use firetail::metrics::Metrics;
use firetail::progress::{FileEntry, Gauges, Progress, Span};
use firetail::tail::{FollowSettings as Settings, Follower, Line};
use proptest::prelude::*;

#[derive(Clone, Debug)]
pub enum Op {
    /// The app writes this many whole lines (the rest of a half-written one first), each
    /// with a pad of up to the given length (within a quarter of the window, as
    /// `--max-unacked-bytes` is at least four records).
    Write(usize, u32),
    /// The app writes the first part of a line (a buffer flushed mid-line).
    WritePart(u32),
    /// Rename rotation: the app finishes its line through the renamed file (its
    /// descriptor points there), then reopens the path.
    Rotate,
    /// Another worker, not reopened yet, appends a whole line to the last renamed file.
    LateWrite(u32),
    /// The tail polls: the real `Follower`, on the room the ledger gives it.
    Poll,
    /// The batch stage cuts a batch of up to this many of the lines read, in order.
    Cut(usize),
    /// Firehose answers one in-flight batch (picked by this number): the stuck one only
    /// once released.
    Complete(usize),
    /// The checkpoint writer writes (and so frees room).
    Checkpoint,
}

pub fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..40, 1u32..600).prop_map(|(n, len)| Op::Write(n, len)),
        1 => (1usize..4, any::<u32>()).prop_map(|(n, len)| Op::Write(n, len)),
        3 => any::<u32>().prop_map(Op::WritePart),
        1 => Just(Op::Rotate),
        2 => any::<u32>().prop_map(Op::LateWrite),
        8 => Just(Op::Poll),
        5 => (1usize..60).prop_map(Op::Cut),
        6 => any::<usize>().prop_map(Op::Complete),
        2 => Just(Op::Checkpoint),
    ]
}

/// A line handed on by the tail.
#[derive(Clone, Copy, Debug)]
struct Read {
    seq: usize,
    file: u32,
    start: u64,
    end: u64,
}

/// A tmpfs when there is one: the checkpoint's fsyncs cost nothing there.
fn shm() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        Path::new("/tmp")
    }
}

fn settings(path: &Path) -> Settings {
    Settings {
        path: path.to_path_buf(),
        read_from: ReadFrom::Beginning,
        rotate_wait: Duration::from_secs(3600),
        own_files: vec![path.with_file_name("cp.json")],
        source: 0,
        source_name: "default".to_string(),
    }
}

fn follower(path: &Path, entries: &[FileEntry], progress: Arc<Progress>) -> Follower {
    let (m, h) = (Arc::new(Metrics::default()), Arc::new(Health::default()));
    Follower::new(&settings(path), entries, progress, m, h).unwrap()
}

fn open_append(path: &Path) -> std::fs::File {
    let mut o = OpenOptions::new();
    o.create(true).append(true).open(path).unwrap()
}

fn seq_of(l: &Line) -> usize {
    let text = std::str::from_utf8(&l.data).unwrap();
    let digits = text.strip_prefix("{\"seq\":").expect("a whole line");
    digits[..digits.find(',').unwrap()].parse().unwrap()
}

pub struct Model {
    _dir: tempfile::TempDir,
    path: PathBuf,
    checkpoint: PathBuf,
    pub window: u64,
    writer: std::fs::File,
    /// The rest of the line the app half wrote.
    partial: Option<String>,
    /// A late worker's descriptor: the file before the last rotation.
    late: Option<std::fs::File>,
    /// Each line's bytes (with its `\n`), by seq.
    pub lens: Vec<u64>,
    rotations: usize,
    follower: Follower,
    progress: Arc<Progress>,
    checkpointer: Checkpointer,
    /// Read, not yet in a batch.
    queue: VecDeque<Read>,
    /// Batches cut and not answered: (cut order, spans, lines).
    in_flight: Vec<(usize, Vec<Span>, Vec<Read>)>,
    cuts: usize,
    /// Every line handed on, in order.
    handed: Vec<Read>,
    /// Every line handed on before this index is covered by the durable checkpoint.
    covered: usize,
    pub accepted: HashSet<usize>,
    /// The last checkpoint written: per key its offset; and the keys let go so far.
    durable: (HashMap<u32, u64>, HashSet<u32>),
}

impl Model {
    pub fn new(window: u64) -> Model {
        let dir = tempfile::tempdir_in(shm()).unwrap();
        let path = dir.path().join("access.log");
        let checkpoint = dir.path().join("cp.json");
        let writer = open_append(&path);
        let progress = Arc::new(Progress::new(window, Gauges::default()));
        let mut m = Model {
            follower: follower(&path, &[], progress.clone()),
            checkpointer: Checkpointer::new(&checkpoint, Arc::new(Metrics::default())),
            progress,
            _dir: dir,
            path,
            checkpoint,
            window,
            writer,
            partial: None,
            late: None,
            lens: Vec::new(),
            rotations: 0,
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            cuts: 0,
            handed: Vec::new(),
            covered: 0,
            accepted: HashSet::new(),
            durable: Default::default(),
        };
        // firetail is up, with its first checkpoint, before the app writes.
        m.checkpoint();
        m
    }

    /// A new line's text: its pad within a quarter of the window.
    fn new_line(&mut self, len: u32) -> String {
        let max_pad = self.window / 4 - 40;
        let pad = 1 + u64::from(len) % max_pad;
        let text = format!(
            "{{\"seq\":{},\"pad\":\"{}\"}}\n",
            self.lens.len(),
            "x".repeat(pad as usize)
        );
        self.lens.push(text.len() as u64);
        text
    }

    fn write_rest(&mut self) {
        if let Some(rest) = self.partial.take() {
            self.writer.write_all(rest.as_bytes()).unwrap();
        }
    }

    fn rotate(&mut self) {
        self.rotations += 1;
        let to = self.path.with_extension(format!("log.{}", self.rotations));
        std::fs::rename(&self.path, &to).unwrap();
        self.write_rest();
        let old = std::mem::replace(&mut self.writer, open_append(&self.path));
        self.late = Some(old);
    }

    fn poll(&mut self) {
        let mut out = Vec::new();
        self.follower.poll(&mut out).unwrap();
        for l in out {
            let r = Read {
                seq: seq_of(&l),
                file: l.file,
                start: l.start,
                end: l.end,
            };
            self.queue.push_back(r);
            self.handed.push(r);
        }
    }

    fn cut(&mut self, max: usize) {
        let n = max.min(self.queue.len());
        if n == 0 {
            return;
        }
        let lines: Vec<Read> = self.queue.drain(..n).collect();
        let mut spans: Vec<Span> = Vec::new();
        for l in &lines {
            match spans.last_mut() {
                Some(s) if s.file == l.file && s.end == l.start => {
                    s.end = l.end;
                    s.lines += 1;
                }
                _ => spans.push(Span {
                    file: l.file,
                    start: l.start,
                    end: l.end,
                    lines: 1,
                }),
            }
        }
        self.progress.register(&spans);
        self.in_flight.push((self.cuts, spans, lines));
        self.cuts += 1;
    }

    fn complete(&mut self, pick: usize, stuck: usize, released: bool) {
        let answerable: Vec<usize> = (0..self.in_flight.len())
            .filter(|&i| released || self.in_flight[i].0 != stuck)
            .collect();
        if let Some(&i) = answerable.get(pick % answerable.len().max(1)) {
            let (_, spans, lines) = self.in_flight.swap_remove(i);
            self.progress.ack(&spans);
            self.accepted.extend(lines.iter().map(|l| l.seq));
        }
    }

    fn checkpoint(&mut self) {
        let snap = self.progress.snapshot();
        self.checkpointer
            .write(&self.progress)
            .expect("checkpoint write");
        let offsets = snap
            .keys
            .iter()
            .zip(&snap.entries)
            .map(|(k, e)| (*k, e.offset));
        // A key let go stays let go (keys are never reused within a process).
        self.durable.0 = offsets.collect();
        self.durable.1.extend(snap.dropped);
    }

    pub fn apply(&mut self, op: &Op, stuck: usize, released: bool) {
        match *op {
            Op::Write(n, len) => {
                self.write_rest();
                for i in 0..n {
                    let text = self.new_line(len.wrapping_add(i as u32));
                    self.writer.write_all(text.as_bytes()).unwrap();
                }
            }
            Op::WritePart(len) => {
                if self.partial.is_none() {
                    let text = self.new_line(len);
                    let (head, rest) = text.split_at(text.len() / 2);
                    self.writer.write_all(head.as_bytes()).unwrap();
                    self.partial = Some(rest.to_string());
                }
            }
            Op::Rotate => self.rotate(),
            Op::LateWrite(len) => {
                if self.late.is_some() {
                    let text = self.new_line(len);
                    let late = self.late.as_mut().expect("checked");
                    late.write_all(text.as_bytes()).unwrap();
                }
            }
            Op::Poll => self.poll(),
            Op::Cut(max) => self.cut(max),
            Op::Complete(pick) => self.complete(pick, stuck, released),
            Op::Checkpoint => self.checkpoint(),
        }
    }

    /// Every line written was handed on.
    pub fn all_read(&self) -> bool {
        self.handed.len() == self.lens.len()
    }

    /// Would a restart from the durable checkpoint read this line again?
    fn again(&self, l: &Read) -> bool {
        let (offsets, dropped) = &self.durable;
        match offsets.get(&l.file) {
            Some(o) => l.start >= *o,
            None => !dropped.contains(&l.file),
        }
    }

    /// The lines read that a restart would read again: what the window bounds.
    pub fn ahead(&self) -> (HashSet<usize>, u64) {
        let again: Vec<&Read> = self.handed.iter().filter(|l| self.again(l)).collect();
        let bytes = again.iter().map(|l| l.end - l.start).sum();
        (again.iter().map(|l| l.seq).collect(), bytes)
    }

    /// Per file, the bytes of the first line a restart would read again: what a file
    /// with nothing of its own ahead may now read past the window's room (see
    /// `BUG_A_LINE_IN_PROGRESS_PASSES_THE_WINDOW`).
    pub fn first_lines_ahead(&self) -> u64 {
        let mut files = HashSet::new();
        self.handed
            .iter()
            .filter(|l| self.again(l) && files.insert(l.file))
            .map(|l| l.end - l.start)
            .sum()
    }

    /// The bytes of [`Model::ahead`], looked at only from the first line not yet covered
    /// by the durable checkpoint (what is covered stays covered).
    pub fn ahead_bytes(&mut self) -> u64 {
        while self.covered < self.handed.len() && !self.again(&self.handed[self.covered]) {
            self.covered += 1;
        }
        self.handed[self.covered..]
            .iter()
            .filter(|l| self.again(l))
            .map(|l| l.end - l.start)
            .sum()
    }

    /// `kill -9`, then a restart from the checkpoint on disk (the app finishes its line
    /// meanwhile): every line it reads, by seq.
    pub fn kill_and_restart(mut self) -> (Model, Vec<usize>) {
        self.write_rest();
        let entries = Checkpointer::new(&self.checkpoint, Arc::new(Metrics::default()))
            .try_load()
            .expect("the checkpoint is readable");
        let mut f = follower(&self.path, &entries, Arc::new(Progress::default()));
        let mut out = Vec::new();
        let mut steps = 0;
        while f.poll(&mut out).unwrap() {
            steps += 1;
            assert!(steps < 100_000, "the restart never reached the end");
        }
        while f.finish(&mut out).unwrap() {
            steps += 1;
            assert!(steps < 100_000, "the restart's drain never ended");
        }
        let seqs = out.iter().map(seq_of).collect();
        (self, seqs)
    }
}
