//! The world of the follower model: real files in one temporary directory, one app per
//! followed path (each with its one `O_APPEND` descriptor and its own way of naming
//! rotated files), and what the model knows each file's content holds, as pieces of
//! the lines written — a line is whole in a content, or cut by a rotation into a head
//! (in the content the descriptor pointed at when the app wrote the first part) and a
//! tail (in the one it pointed at when it wrote the rest). firetail's side (reading,
//! acknowledging, checkpoints, kills and restarts) is in `reader.rs`.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use firetail::handover::SourceId;
use firetail::progress::Progress;
use firetail::tail::Line;

use super::reader::Reader;

mod rotation;

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
    /// The app that wrote it (index into `apps`).
    pub app: usize,
}

/// A file's content as the model knows it.
pub struct MFile {
    pub pieces: Vec<Piece>,
    /// firetail has (or had) it open: a full poll passed while it existed.
    pub opened: bool,
}

/// How an app's rotated files are named (logrotate's default, `dateext`, and either
/// with `extension .log`, which keeps the extension last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `access.log.0`, `.1`, … shifted at every rotation.
    Numbered,
    /// `access.log-20261207NNNN`, never shifted.
    Dated,
    /// `job-a.0.log`, `.1.log`, … shifted.
    NumberedExt,
    /// `app-20261207NNNN.log`, never shifted.
    DatedExt,
}

/// A source as configured: a name and a literal path or a glob.
#[derive(Clone, Debug)]
pub struct SourceDef {
    pub name: String,
    pub path: PathBuf,
}

/// One app writing one followed path.
pub struct App {
    pub path: PathBuf,
    pub source: SourceId,
    pub naming: Naming,
    /// The next dated suffix.
    dated: usize,
    /// The app stopped for good (a job that ended).
    ended: bool,
    /// firetail has had its path's file open (a full poll passed while it existed).
    pub seen: bool,
    /// Seen, and a checkpoint written since: its chain has an entry to resume from.
    pub anchored: bool,
    /// None until the app first opens its path, and once it ended.
    writer: Option<std::fs::File>,
    /// The model file the app's descriptor writes into.
    writer_file: usize,
    /// The line whose first part is written and whose rest is not.
    partial: Option<usize>,
}

pub struct World {
    pub(super) dir: tempfile::TempDir,
    pub checkpoint: PathBuf,
    pub sources: Vec<SourceDef>,
    /// The sources of each lane (one stream each), by index.
    pub lanes: Vec<Vec<usize>>,
    pub apps: Vec<App>,
    /// The app the file-system actions act on (see [`World::select`]).
    cur: usize,
    /// Model files by real path.
    pub(super) at: HashMap<PathBuf, usize>,
    pub files: Vec<MFile>,
    pub written: Vec<Written>,
    /// Pieces of contents destroyed by a truncation (they existed, so may come out).
    pub history: Vec<Piece>,
    /// Files deleted while firetail held them open: readable only until it goes down.
    pub(super) held_deleted: Vec<usize>,
    /// Pieces no follower can recover (they may still come out, if read in time).
    pub unrecoverable: HashSet<Piece>,
    pub(super) reader: Option<Reader>,
    pub(super) progress: std::sync::Arc<Progress>,
    /// Every line the follower handed on, in order (a restart's repeats included).
    pub lines_out: Vec<Line>,
    pub emitted: Vec<String>,
    /// Per line out, the run (firetail start) that read it.
    pub runs: Vec<usize>,
    pub(super) run: usize,
    pub(super) unacked: Vec<Line>,
    /// Every line read since firetail last started (what a restart may read again).
    pub(super) read_since_up: Vec<Line>,
    /// The last checkpoint written: per key its offset; and the keys let go since
    /// firetail last started.
    pub(super) last_checkpoint: (HashMap<u32, u64>, HashSet<u32>),
    pub may_duplicate: HashSet<String>,
}

pub(crate) fn open_append(path: &Path) -> std::fs::File {
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

pub fn text_of(l: &Line) -> String {
    String::from_utf8_lossy(l.data.strip_suffix(b"\n").unwrap()).into_owned()
}

impl World {
    /// One source, `default`, one app writing `access.log`, rotated by number.
    pub fn new() -> World {
        World::with(
            &[("default", "access.log")],
            &[&[0]],
            &[(0, "access.log", Naming::Numbered)],
        )
    }

    /// The sources (name, path or glob in the directory), the lanes (the sources of
    /// each stream) and the apps writing at first (source, file name, naming);
    /// firetail is up before the apps write (the startup probe gates them), and so it
    /// has each app's first line open.
    pub fn with(
        sources: &[(&str, &str)],
        lanes: &[&[usize]],
        apps: &[(SourceId, &str, Naming)],
    ) -> World {
        let dir = tempfile::tempdir_in(shm()).unwrap();
        let checkpoint = dir.path().join(".firetail-checkpoint.json");
        let sources: Vec<SourceDef> = sources
            .iter()
            .map(|(name, path)| SourceDef {
                name: name.to_string(),
                path: dir.path().join(path),
            })
            .collect();
        let mut w = World {
            checkpoint,
            sources,
            lanes: lanes.iter().map(|l| l.to_vec()).collect(),
            apps: Vec::new(),
            cur: 0,
            at: HashMap::new(),
            files: Vec::new(),
            written: Vec::new(),
            history: Vec::new(),
            held_deleted: Vec::new(),
            unrecoverable: HashSet::new(),
            reader: None,
            progress: Default::default(),
            lines_out: Vec::new(),
            emitted: Vec::new(),
            runs: Vec::new(),
            run: 0,
            unacked: Vec::new(),
            read_since_up: Vec::new(),
            last_checkpoint: Default::default(),
            may_duplicate: HashSet::new(),
            dir,
        };
        w.start_reader(&[]);
        for (source, name, naming) in apps {
            let a = w.spawn(*source, name, *naming).expect("a new app");
            w.select(a);
            w.write_line(20);
        }
        w.select(0);
        w.poll_all();
        w.write_checkpoint();
        w
    }

    /// Starts an app writing `name` in the directory for `source`; None when an app
    /// still writes there.
    pub fn spawn(&mut self, source: SourceId, name: &str, naming: Naming) -> Option<usize> {
        let path = self.dir.path().join(name);
        if self
            .apps
            .iter()
            .any(|a| a.path == path && a.writer.is_some())
        {
            return None;
        }
        self.apps.push(App {
            path,
            source,
            naming,
            dated: 0,
            ended: false,
            seen: false,
            anchored: false,
            writer: None,
            writer_file: 0,
            partial: None,
        });
        let a = self.apps.len() - 1;
        let cur = std::mem::replace(&mut self.cur, a);
        self.reopen();
        self.cur = cur;
        Some(a)
    }

    /// True once the app ended: nothing it did touches its path's files any more.
    pub fn ended(&self, app: usize) -> bool {
        self.apps[app].ended
    }

    /// Every file's modification time set to one instant, as a coarse filesystem
    /// clock leaves files written within one tick.
    pub fn same_mtimes(&self) {
        let t = std::time::SystemTime::now();
        for path in self.at.keys() {
            let f = OpenOptions::new().write(true).open(path).unwrap();
            f.set_modified(t).unwrap();
        }
    }

    /// The app the next file-system actions act on.
    pub fn select(&mut self, app: usize) {
        self.cur = app;
    }

    fn app(&self) -> &App {
        &self.apps[self.cur]
    }

    fn app_mut(&mut self) -> &mut App {
        &mut self.apps[self.cur]
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
            app: self.cur,
        });
        self.written.len() - 1
    }

    fn append(&mut self, bytes: &[u8], piece: Piece) {
        let app = &mut self.apps[self.cur];
        app.writer.as_mut().unwrap().write_all(bytes).unwrap();
        self.files[app.writer_file].pieces.push(piece);
    }

    /// A whole line; or, while one is half written, its rest.
    pub fn write_line(&mut self, len: usize) {
        if self.app().writer.is_none() {
            return;
        }
        if self.app().partial.is_some() {
            return self.write_rest();
        }
        let i = self.new_line(len, 0.5);
        let bytes = format!("{}\n", self.written[i].text);
        self.append(bytes.as_bytes(), (i, Part::Whole));
    }

    /// The first part of a line (a writer flushing a buffer mid-line); nothing while
    /// another line is half written.
    pub fn write_partial(&mut self, len: usize, cut: f64) {
        if self.app().partial.is_some() || self.app().writer.is_none() {
            return;
        }
        let i = self.new_line(len, cut);
        let w = &self.written[i];
        let bytes = w.text.as_bytes()[..w.cut].to_vec();
        self.append(&bytes, (i, Part::Head));
        self.app_mut().partial = Some(i);
    }

    /// The rest of the half-written line, through the descriptor as it is now: into
    /// the same content (renamed or not) it completes the line; into another (the app
    /// reopened, or logrotate truncated and `O_APPEND` put it at offset 0) it is a
    /// tail, and the head stays a fragment where it is.
    pub(super) fn write_rest(&mut self) {
        let Some(i) = self.app_mut().partial.take() else {
            return;
        };
        let w = &self.written[i];
        let bytes = format!("{}\n", &w.text[w.cut..]);
        let app = &mut self.apps[self.cur];
        app.writer
            .as_mut()
            .unwrap()
            .write_all(bytes.as_bytes())
            .unwrap();
        let pieces = &mut self.files[app.writer_file].pieces;
        match pieces.last_mut() {
            Some(last) if *last == (i, Part::Head) => last.1 = Part::Whole,
            _ => pieces.push((i, Part::Tail)),
        }
    }

    /// Every app stops, finishing its line wherever its descriptor points.
    pub(super) fn apps_stop(&mut self) {
        for a in 0..self.apps.len() {
            self.cur = a;
            if self.app().writer.is_some() {
                self.write_rest();
            }
        }
        self.cur = 0;
    }

    /// Every piece any content ever held: what may come out.
    pub fn all_pieces(&self) -> HashSet<Piece> {
        let held = self.files.iter().flat_map(|f| f.pieces.iter().copied());
        held.chain(self.history.iter().copied()).collect()
    }
}
