//! The duplicate window over several files: one app per source, each writing its own
//! path (whole lines, lines in pieces, rename rotations), the real tail of every
//! source reading on the real ledger's room and shares, one lane per source (a batch
//! holds one source's lines; each stream answers on its own, and one source's stream
//! can be stuck — throttled — until a random step), the real `Checkpointer`, then a
//! kill and a real restart. The model's view of each file is what was handed on and
//! what the last durable checkpoint covers; nothing is read from the ledger but what
//! the contract fixes (the share: the window over the files open, at least
//! `MIN_SHARE`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use firetail::checkpoint::Checkpointer;
use firetail::metrics::Metrics;
use firetail::progress::{Gauges, Progress, Span};
use proptest::prelude::*;

use crate::follower_model::reader::Reader;
use crate::follower_model::world::{open_append, shm, SourceDef};

/// A file's smallest share of the window (docs/design.md#sources): the contract's.
pub const MIN_SHARE: u64 = 64 * 1024;

/// The sources: a burst writer (its stream the one stuck), a slow writer, another.
pub const SOURCES: usize = 3;

#[derive(Clone, Debug)]
pub enum Op {
    /// App `.0` writes `.1` whole lines (the rest of a half-written one first), each
    /// with a pad of up to `.2` bytes (within a quarter of the window).
    Write(usize, usize, u32),
    /// App `.0` writes the first part of a line.
    WritePart(usize, u32),
    /// App `.0`'s path is renamed; it finishes its line there, then reopens.
    Rotate(usize),
    Poll,
    /// Source `.0`'s lane cuts a batch of up to `.1` of its lines read, in order.
    Cut(usize, usize),
    /// One in-flight batch (picked by this number) is answered; the stuck stream's
    /// only once released.
    Complete(usize),
    Checkpoint,
    /// `kill -9` and a restart from the checkpoint on disk; the apps go on writing.
    Restart,
}

pub fn arb_op() -> impl Strategy<Value = Op> {
    let app = 0..SOURCES;
    prop_oneof![
        10 => (app.clone(), 1usize..40, 1u32..3000).prop_map(|(a, n, l)| Op::Write(a, n, l)),
        1 => (app.clone(), 1usize..3, any::<u32>()).prop_map(|(a, n, l)| Op::Write(a, n, l)),
        3 => (app.clone(), any::<u32>()).prop_map(|(a, l)| Op::WritePart(a, l)),
        1 => app.clone().prop_map(Op::Rotate),
        8 => Just(Op::Poll),
        6 => (app, 1usize..80).prop_map(|(a, n)| Op::Cut(a, n)),
        8 => any::<usize>().prop_map(Op::Complete),
        3 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
    ]
}

/// What one restart reads again, as firetail runs on after it.
#[derive(Default)]
pub struct Epoch {
    /// The lines the restart may read again: those a restart would read again when
    /// it happened, and the ones an earlier restart's epoch never got back to.
    pub predicted: HashSet<usize>,
    /// Every line handed on before the restart.
    before: HashSet<usize>,
    /// Every line Firehose had before the restart.
    accepted_before: HashSet<usize>,
    /// Lines read again that Firehose had: their bytes.
    pub resent_bytes: u64,
    /// Lines read again that the restart should not have read.
    pub unpredicted: Vec<usize>,
    /// Lines read again since the restart.
    reread: HashSet<usize>,
    /// [`Several::first_lines_ahead`] when the restart came.
    pub first_lines: u64,
}

/// A line handed on by the tail.
#[derive(Clone, Copy, Debug)]
pub struct Read {
    pub seq: usize,
    pub source: usize,
    pub file: u32,
    pub start: u64,
    pub end: u64,
}

/// One lane per source: each its own stream.
fn lanes() -> Vec<Vec<usize>> {
    (0..SOURCES).map(|s| vec![s]).collect()
}

fn seq_of(data: &[u8]) -> usize {
    let text = std::str::from_utf8(data).unwrap();
    let digits = text.strip_prefix("{\"seq\":").expect("a whole line");
    digits[..digits.find(',').unwrap()].parse().unwrap()
}

pub struct Several {
    _dir: tempfile::TempDir,
    checkpoint: PathBuf,
    sources: Vec<SourceDef>,
    pub window: u64,
    writers: Vec<std::fs::File>,
    /// Per app, the line it half wrote: its seq and the rest.
    partial: Vec<Option<(usize, String)>>,
    rotations: Vec<usize>,
    /// Each line's bytes (with its `\n`) and app, by seq.
    pub lens: Vec<u64>,
    pub app_of: Vec<usize>,
    reader: Reader,
    pub progress: Arc<Progress>,
    checkpointer: Checkpointer,
    /// Per source, read and not yet in a batch.
    queues: Vec<VecDeque<Read>>,
    /// Batches cut and not answered: (source, spans, lines).
    in_flight: Vec<(usize, Vec<Span>, Vec<Read>)>,
    /// Every line handed on, in order.
    pub handed: Vec<Read>,
    pub accepted: HashSet<usize>,
    /// The last checkpoint written: per key its offset; and the keys let go so far.
    durable: (HashMap<u32, u64>, HashSet<u32>),
    /// The stuck stream's source, while stuck.
    pub stuck: Option<usize>,
    /// Since the last restart.
    pub epoch: Epoch,
    /// Every restart's epoch, closed.
    pub epochs: Vec<Epoch>,
}

impl Several {
    pub fn new(window: u64, stuck: Option<usize>) -> Several {
        let dir = tempfile::tempdir_in(shm()).unwrap();
        let checkpoint = dir.path().join(".firetail-checkpoint.json");
        let sources: Vec<SourceDef> = ["burst", "slow", "other"]
            .iter()
            .map(|name| SourceDef {
                name: name.to_string(),
                path: dir.path().join(format!("{name}.log")),
            })
            .collect();
        let writers = sources.iter().map(|s| open_append(&s.path)).collect();
        let progress = Arc::new(Progress::new(window, Gauges::default()));
        let mut m = Several {
            reader: Reader::new(&sources, &lanes(), &checkpoint, &[], &progress),
            checkpointer: Checkpointer::new(&checkpoint, Arc::new(Metrics::default())),
            progress,
            _dir: dir,
            checkpoint,
            sources,
            window,
            writers,
            partial: vec![None; SOURCES],
            rotations: vec![0; SOURCES],
            lens: Vec::new(),
            app_of: Vec::new(),
            queues: vec![VecDeque::new(); SOURCES],
            in_flight: Vec::new(),
            handed: Vec::new(),
            accepted: HashSet::new(),
            durable: Default::default(),
            stuck,
            epoch: Epoch::default(),
            epochs: Vec::new(),
        };
        // firetail is up, with its first checkpoint, before the apps write.
        m.checkpoint();
        m
    }

    /// A new line's text: its pad within a quarter of the window.
    fn new_line(&mut self, app: usize, len: u32) -> String {
        let max_pad = self.window / 4 - 60;
        let pad = 1 + u64::from(len) % max_pad;
        let text = format!(
            "{{\"seq\":{},\"app\":{app},\"pad\":\"{}\"}}\n",
            self.lens.len(),
            "x".repeat(pad as usize)
        );
        self.lens.push(text.len() as u64);
        self.app_of.push(app);
        text
    }

    fn write_rest(&mut self, app: usize) {
        if let Some((_, rest)) = self.partial[app].take() {
            self.writers[app].write_all(rest.as_bytes()).unwrap();
        }
    }

    pub fn write(&mut self, app: usize, n: usize, len: u32) {
        self.write_rest(app);
        for i in 0..n {
            let text = self.new_line(app, len.wrapping_add(i as u32));
            self.writers[app].write_all(text.as_bytes()).unwrap();
        }
    }

    fn rotate(&mut self, app: usize) {
        self.rotations[app] += 1;
        let path = self.sources[app].path.clone();
        let to = path.with_extension(format!("log.{}", self.rotations[app]));
        std::fs::rename(&path, &to).unwrap();
        self.write_rest(app);
        self.writers[app] = open_append(&path);
    }

    pub fn poll(&mut self) {
        let mut out = Vec::new();
        self.reader.poll(&mut out);
        for l in out {
            let r = Read {
                seq: seq_of(&l.data),
                source: usize::from(l.source),
                file: l.file,
                start: l.start,
                end: l.end,
            };
            self.queues[r.source].push_back(r);
            self.handed.push(r);
            let e = &mut self.epoch;
            if e.before.contains(&r.seq) && e.reread.insert(r.seq) {
                if !e.predicted.contains(&r.seq) {
                    e.unpredicted.push(r.seq);
                }
                if e.accepted_before.contains(&r.seq) {
                    e.resent_bytes += r.end - r.start;
                }
            }
        }
    }

    fn cut(&mut self, source: usize, max: usize) {
        let n = max.min(self.queues[source].len());
        if n == 0 {
            return;
        }
        let lines: Vec<Read> = self.queues[source].drain(..n).collect();
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
        self.in_flight.push((source, spans, lines));
    }

    fn complete(&mut self, pick: usize) {
        let answerable: Vec<usize> = (0..self.in_flight.len())
            .filter(|&i| Some(self.in_flight[i].0) != self.stuck)
            .collect();
        if let Some(&i) = answerable.get(pick % answerable.len().max(1)) {
            let (_, spans, lines) = self.in_flight.swap_remove(i);
            self.progress.ack(&spans);
            self.accepted.extend(lines.iter().map(|l| l.seq));
        }
    }

    pub fn checkpoint(&mut self) {
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

    pub fn apply(&mut self, op: &Op) {
        match *op {
            Op::Write(a, n, len) => self.write(a, n, len),
            Op::WritePart(a, len) => {
                if self.partial[a].is_none() {
                    let text = self.new_line(a, len);
                    let (head, rest) = text.split_at(text.len() / 2);
                    self.writers[a].write_all(head.as_bytes()).unwrap();
                    self.partial[a] = Some((self.lens.len() - 1, rest.to_string()));
                }
            }
            Op::Rotate(a) => self.rotate(a),
            Op::Poll => self.poll(),
            Op::Cut(a, max) => self.cut(a, max),
            Op::Complete(pick) => self.complete(pick),
            Op::Checkpoint => self.checkpoint(),
            Op::Restart => self.restart(),
        }
    }

    /// The stuck stream is answered from now on.
    pub fn release(&mut self) {
        self.stuck = None;
    }

    /// The lines a restart now may read again (see [`Epoch::predicted`]).
    pub fn predicted(&self) -> HashSet<usize> {
        let carried = self.epoch.predicted.difference(&self.epoch.reread);
        let mut p = self.ahead().0;
        p.extend(carried);
        p
    }

    /// `kill -9` and a real restart from the checkpoint on disk, with the apps going
    /// on; what was read and not in a batch, and the batches in flight, are gone.
    fn restart(&mut self) {
        let mut before = std::mem::take(&mut self.epoch.before);
        before.extend(self.handed.iter().map(|l| l.seq));
        let next = Epoch {
            predicted: self.predicted(),
            before,
            accepted_before: self.accepted.clone(),
            first_lines: self.first_lines_ahead(),
            ..Epoch::default()
        };
        self.epochs.push(std::mem::replace(&mut self.epoch, next));
        let entries = self
            .checkpointer
            .try_load()
            .expect("the checkpoint is readable");
        self.progress = Arc::new(Progress::new(self.window, Gauges::default()));
        self.reader = Reader::new(
            &self.sources,
            &lanes(),
            &self.checkpoint,
            &entries,
            &self.progress,
        );
        self.queues.iter_mut().for_each(VecDeque::clear);
        self.in_flight.clear();
        self.handed.clear();
        self.durable = Default::default();
        // The writer writes as soon as files are opened.
        self.checkpoint();
    }

    /// Would a restart from the durable checkpoint read this line again?
    fn again(&self, l: &Read) -> bool {
        let (offsets, dropped) = &self.durable;
        match offsets.get(&l.file) {
            Some(o) => l.start >= *o,
            None => !dropped.contains(&l.file),
        }
    }

    /// Per file key, the bytes of the lines read that a restart would read again, and
    /// how many lines they are.
    pub fn ahead_per_file(&self) -> HashMap<u32, (u64, usize)> {
        let mut per: HashMap<u32, (u64, usize)> = HashMap::new();
        for l in self.handed.iter().filter(|l| self.again(l)) {
            let e = per.entry(l.file).or_default();
            e.0 += l.end - l.start;
            e.1 += 1;
        }
        per
    }

    /// The app's lines written whole and not handed on yet.
    pub fn unread(&self, app: usize) -> Vec<usize> {
        let handed: HashSet<usize> = self.handed.iter().map(|l| l.seq).collect();
        let half = self.partial[app].as_ref().map(|p| p.0);
        (0..self.lens.len())
            .filter(|s| self.app_of[*s] == app && !handed.contains(s) && Some(*s) != half)
            .collect()
    }

    /// The bytes of the app's lines read that a restart would read again.
    pub fn ahead_of_app(&self, app: usize) -> u64 {
        self.handed
            .iter()
            .filter(|l| l.source == app && self.again(l))
            .map(|l| l.end - l.start)
            .sum()
    }

    /// Per file, the bytes of the first line a restart would read again (see
    /// `BUG_A_LINE_IN_PROGRESS_PASSES_THE_WINDOW`).
    pub fn first_lines_ahead(&self) -> u64 {
        let mut files = HashSet::new();
        self.handed
            .iter()
            .filter(|l| self.again(l) && files.insert(l.file))
            .map(|l| l.end - l.start)
            .sum()
    }

    /// The lines read that a restart would read again: what the window bounds.
    pub fn ahead(&self) -> (HashSet<usize>, u64) {
        let again: Vec<&Read> = self.handed.iter().filter(|l| self.again(l)).collect();
        let bytes = again.iter().map(|l| l.end - l.start).sum();
        (again.iter().map(|l| l.seq).collect(), bytes)
    }

    /// A file's share now: the window over the files open, at least [`MIN_SHARE`].
    /// Nothing is finished here (no truncation, `--rotate-wait` far away), so every
    /// file the ledger holds is open.
    pub fn share(&self) -> u64 {
        let open = self.progress.snapshot().keys.len().max(1) as u64;
        (self.window / open).max(MIN_SHARE)
    }

    /// `kill -9`, then a restart from the checkpoint on disk (the apps finish their
    /// lines meanwhile): every line it reads, by seq.
    pub fn kill_and_restart(mut self) -> (Several, Vec<usize>) {
        for a in 0..SOURCES {
            self.write_rest(a);
        }
        let entries = Checkpointer::new(&self.checkpoint, Arc::new(Metrics::default()))
            .try_load()
            .expect("the checkpoint is readable");
        let progress = Arc::new(Progress::default());
        let mut r = Reader::new(
            &self.sources,
            &lanes(),
            &self.checkpoint,
            &entries,
            &progress,
        );
        let mut out = Vec::new();
        let mut steps = 0;
        while r.poll(&mut out) {
            steps += 1;
            assert!(steps < 100_000, "the restart never reached the end");
        }
        while r.finish(&mut out) {
            steps += 1;
            assert!(steps < 100_000, "the restart's drain never ended");
        }
        let seqs = out.iter().map(|l| seq_of(&l.data)).collect();
        (self, seqs)
    }
}
