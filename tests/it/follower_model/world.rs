//! The world of the follower model: real files in a temporary directory, the app's
//! one `O_APPEND` descriptor, and what the model knows each file's content holds, as
//! pieces of the lines written — a line is whole in a content, or cut by a rotation
//! into a head (in the content the descriptor pointed at when the app wrote the first
//! part) and a tail (in the one it pointed at when it wrote the rest).

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
use firetail::tail::{FollowSettings as Settings, Follower, Line};

/// Which bytes of a written line a content holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Whole,
    /// Up to the cut (the app's first write), no newline.
    Head,
    /// From the cut, with the newline (the app's second write, into another content).
    Tail,
}

/// A line (index into `written`) or a piece of it.
pub type Piece = (usize, Part);

/// A line the app wrote, and where a partial write of it stopped.
pub struct Written {
    pub text: String,
    pub cut: usize,
}

/// A file's content as the model knows it.
pub struct MFile {
    pub pieces: Vec<Piece>,
    /// firetail has (or had) it open: a full poll passed while it existed.
    pub opened: bool,
}

pub struct World {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub checkpoint: PathBuf,
    writer: std::fs::File,
    /// The model file the app's descriptor writes into.
    writer_file: usize,
    /// Model files by real path.
    at: HashMap<PathBuf, usize>,
    pub files: Vec<MFile>,
    /// The line whose first part is written and whose rest is not.
    partial: Option<usize>,
    pub written: Vec<Written>,
    /// Pieces of contents destroyed by a truncation (they existed, so may come out).
    pub history: Vec<Piece>,
    /// Files deleted while firetail held them open: readable only until it goes down.
    held_deleted: Vec<usize>,
    /// Pieces no follower can recover (they may still come out, if read in time).
    pub unrecoverable: HashSet<Piece>,
    follower: Option<Follower>,
    progress: Arc<Progress>,
    /// Every line the follower handed on, in order (a restart's repeats included).
    pub lines_out: Vec<Line>,
    pub emitted: Vec<String>,
    unacked: Vec<Line>,
    /// Every line read since firetail last started (what a restart may read again).
    read_since_up: Vec<Line>,
    /// The last checkpoint written: per key its offset; and the keys let go since
    /// firetail last started.
    last_checkpoint: (HashMap<u32, u64>, HashSet<u32>),
    pub may_duplicate: HashSet<String>,
}

fn settings(path: &Path) -> Settings {
    Settings {
        path: path.to_path_buf(),
        read_from: ReadFrom::Beginning,
        // Nothing retires by time inside a test case: late writers are never cut off.
        rotate_wait: Duration::from_secs(3600),
        own_files: vec![path.with_file_name(".firetail-access.log.json")],
        source: 0,
        source_name: "default".to_string(),
    }
}

fn new_follower(path: &Path, entries: &[FileEntry]) -> (Follower, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let follower = Follower::new(
        &settings(path),
        entries,
        progress.clone(),
        Arc::new(Metrics::default()),
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

/// A tmpfs when there is one: the checkpoint's and the dead-letter file's fsyncs cost
/// nothing there, and a case's wall time is its CPU time.
pub fn shm() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        Path::new("/tmp")
    }
}

fn sibling(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

pub fn text_of(l: &Line) -> String {
    String::from_utf8_lossy(l.data.strip_suffix(b"\n").unwrap()).into_owned()
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir_in(shm()).unwrap();
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
                pieces: Vec::new(),
                opened: false,
            }],
            path,
            checkpoint,
            partial: None,
            written: Vec::new(),
            history: Vec::new(),
            held_deleted: Vec::new(),
            unrecoverable: HashSet::new(),
            follower: Some(follower),
            progress,
            lines_out: Vec::new(),
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

    /// The text of a piece: its seq is on both sides of any cut (in `seq` and `end`),
    /// so every piece's text is unique, and no piece is valid JSON but a whole line.
    pub fn piece_text(&self, (i, part): Piece) -> &str {
        let w = &self.written[i];
        match part {
            Part::Whole => &w.text,
            Part::Head => &w.text[..w.cut],
            Part::Tail => &w.text[w.cut..],
        }
    }

    /// A new line with a pad of `len` bytes (at least 2), cut `cut` of the way into
    /// the pad: the first part ends and the rest starts with at least one pad byte.
    fn new_line(&mut self, len: usize, cut: f64) -> usize {
        let seq = self.written.len() + 1;
        let len = len.max(2);
        let head = format!("{{\"seq\":{seq},\"pad\":\"");
        let text = format!("{head}{}\",\"end\":{seq}}}", "x".repeat(len));
        let into_pad = ((len as f64 * cut) as usize).clamp(1, len - 1);
        self.written.push(Written {
            cut: head.len() + into_pad,
            text,
        });
        self.written.len() - 1
    }

    fn append(&mut self, bytes: &[u8], piece: Piece) {
        self.writer.write_all(bytes).unwrap();
        self.files[self.writer_file].pieces.push(piece);
    }

    /// A whole line; or, while one is half written, its rest.
    pub fn write_line(&mut self, len: usize) {
        if self.partial.is_some() {
            return self.write_rest();
        }
        let i = self.new_line(len, 0.5);
        let bytes = format!("{}\n", self.written[i].text);
        self.append(bytes.as_bytes(), (i, Part::Whole));
    }

    /// The first part of a line (a writer flushing a buffer mid-line); nothing while
    /// another line is half written.
    pub fn write_partial(&mut self, len: usize, cut: f64) {
        if self.partial.is_some() {
            return;
        }
        let i = self.new_line(len, cut);
        let w = &self.written[i];
        let bytes = w.text.as_bytes()[..w.cut].to_vec();
        self.append(&bytes, (i, Part::Head));
        self.partial = Some(i);
    }

    /// The rest of the half-written line, through the descriptor as it is now: into
    /// the same content (renamed or not) it completes the line; into another (the app
    /// reopened, or logrotate truncated and `O_APPEND` put it at offset 0) it is a
    /// tail, and the head stays a fragment where it is.
    fn write_rest(&mut self) {
        let Some(i) = self.partial.take() else {
            return;
        };
        let w = &self.written[i];
        let bytes = format!("{}\n", &w.text[w.cut..]);
        self.writer.write_all(bytes.as_bytes()).unwrap();
        let pieces = &mut self.files[self.writer_file].pieces;
        match pieces.last_mut() {
            Some(last) if *last == (i, Part::Head) => last.1 = Part::Whole,
            _ => pieces.push((i, Part::Tail)),
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

    /// Rename rotation, also in the middle of a line: the app's descriptor still
    /// points at the renamed file.
    pub fn rename_rotate(&mut self) {
        if !self.path.exists() {
            return;
        }
        self.shift();
        let path = self.path.clone();
        self.rename(&path, &sibling(&path, 0));
    }

    /// The app reopens the path (also in the middle of a line: a buffered writer
    /// reopened on a signal flushes the rest into the new file).
    pub fn reopen(&mut self) {
        if !self.at.contains_key(&self.path) {
            self.files.push(MFile {
                pieces: Vec::new(),
                opened: false,
            });
            self.at.insert(self.path.clone(), self.files.len() - 1);
        }
        self.writer = open_append(&self.path);
        self.writer_file = self.at[&self.path];
    }

    /// copytruncate, also in the middle of a line: copy, `window` writes (the first
    /// finishes a half-written line, inside the doomed content), truncate. The rest of
    /// a line still half written after that lands at offset 0 of the truncated file.
    pub fn copy_truncate(&mut self, window: usize, keep_copy: bool) {
        let Some(&id) = self.at.get(&self.path) else {
            return;
        };
        if self.writer_file != id {
            return;
        }
        self.shift();
        let copy = sibling(&self.path, 0);
        std::fs::copy(&self.path, &copy).unwrap();
        self.files.push(MFile {
            pieces: self.files[id].pieces.clone(),
            opened: false,
        });
        let copy_id = self.files.len() - 1;
        self.at.insert(copy.clone(), copy_id);
        for _ in 0..window {
            self.write_line(30);
        }
        if !keep_copy {
            self.delete(&copy);
        } else if !self.any_emitted(&self.files[copy_id].pieces) {
            // A content truncated before firetail read a byte of it leaves the handle
            // at offset 0 with a size of 0: nothing shows the truncation, and only the
            // periodic sibling scan (every few seconds, no clock here) or a rotation
            // finds the copy — a kill, or the copy's deletion, before that loses it
            // (docs/how-it-works.md#what-can-be-lost-and-why, 5). Lenient when firetail
            // read only a head it holds back, and when no checkpoint followed the copy.
            let copied = self.files[copy_id].pieces.clone();
            self.unrecoverable.extend(copied);
        }
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let gone = std::mem::take(&mut self.files[id].pieces);
        self.destroyed(gone, false);
    }

    fn any_emitted(&self, pieces: &[Piece]) -> bool {
        let emitted: HashSet<&str> = self.emitted.iter().map(String::as_str).collect();
        pieces.iter().any(|p| emitted.contains(self.piece_text(*p)))
    }

    /// Pieces whose content was destroyed: unrecoverable unless firetail already
    /// emitted them, holds them in an open file, or another file still has them.
    fn destroyed(&mut self, pieces: Vec<Piece>, held_open: bool) {
        self.history.extend(pieces.iter().copied());
        if held_open {
            return;
        }
        let emitted: HashSet<&str> = self.emitted.iter().map(String::as_str).collect();
        let elsewhere: HashSet<Piece> = self
            .at
            .values()
            .flat_map(|f| self.files[*f].pieces.iter().copied())
            .collect();
        let lost: Vec<Piece> = pieces
            .into_iter()
            .filter(|p| !emitted.contains(self.piece_text(*p)) && !elsewhere.contains(p))
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
        let pieces = self.files[id].pieces.clone();
        self.destroyed(pieces, held);
    }

    pub fn delete_oldest(&mut self) {
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
            self.lines_out.push(l.clone());
            self.unacked.push(l);
        }
    }

    pub fn poll(&mut self) -> bool {
        let Some(f) = self.follower.as_mut() else {
            return false;
        };
        let mut out = Vec::new();
        let more = f.poll(&mut out).unwrap();
        self.take(out);
        more
    }

    pub fn poll_all(&mut self) {
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
    pub fn ack(&mut self, seed: u64) {
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
    pub fn write_checkpoint(&mut self) {
        if self.follower.is_none() {
            return;
        }
        let snap = self.progress.snapshot();
        Checkpointer::new(&self.checkpoint, Arc::new(Metrics::default()))
            .write(&self.progress)
            .unwrap();
        let offsets = snap
            .keys
            .iter()
            .zip(&snap.entries)
            .map(|(k, e)| (*k, e.offset));
        // A key let go stays let go (keys are never reused within a process).
        self.last_checkpoint.0 = offsets.collect();
        self.last_checkpoint.1.extend(snap.dropped);
    }

    /// `kill -9`: a restart reads again every line at or after its file's offset in the
    /// last checkpoint written (acknowledged out of order after a gap, not at all, or
    /// after that write), and every line of a file opened after it.
    pub fn down(&mut self) {
        if self.follower.take().is_none() {
            return;
        }
        for id in std::mem::take(&mut self.held_deleted) {
            let pieces = self.files[id].pieces.clone();
            self.destroyed(pieces, false);
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

    pub fn up(&mut self) {
        if self.follower.is_some() {
            return;
        }
        let entries = Checkpointer::new(&self.checkpoint, Arc::new(Metrics::default()))
            .try_load()
            .unwrap();
        let (follower, progress) = new_follower(&self.path, &entries);
        self.follower = Some(follower);
        self.progress = progress;
        self.last_checkpoint = Default::default();
        // The writer writes as soon as files are opened (Progress::open wakes it).
        self.write_checkpoint();
    }

    /// The app stops (finishing its line wherever its descriptor points); firetail is
    /// up and drains.
    pub fn finish(&mut self) {
        self.write_rest();
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

    /// Every piece any content ever held: what may come out.
    pub fn all_pieces(&self) -> HashSet<Piece> {
        let held = self.files.iter().flat_map(|f| f.pieces.iter().copied());
        held.chain(self.history.iter().copied()).collect()
    }
}
