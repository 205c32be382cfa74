//! progress: the ledger every stage shares — what was read, registered, acknowledged
//! and made durable, per file. It sits below tail, batch, ship and checkpoint, so no
//! two stages import each other (tail → batch → ship → checkpoint, one direction).
//!
//! - The tail opens files here ([`Progress::open`]), moves their read offset, and
//!   waits for room in the duplicate window before it reads more.
//! - The batch stage registers the [`Span`]s of a batch when it cuts it.
//! - The ship stage acknowledges spans once every line in them is accepted by Firehose
//!   or safely in the dead-letter file.
//! - The checkpoint writer takes a [`Snapshot`], writes it, and reports it durable.
//!
//! # The duplicate window
//!
//! A restart after `kill -9` re-ships everything after the offsets of the last
//! *durable* checkpoint. Reading may run ahead of those offsets by at most `window`
//! bytes (`--max-unacked-bytes`), summed over files: when one batch is stuck in retries
//! the tail stops reading instead of letting the other call slots ship megabytes that a
//! restart would ship again. So the bytes a restart can re-send are at most `window`,
//! whatever the order acknowledgements arrive in. The file on disk is the buffer:
//! bytes acknowledged behind a stuck batch cost no memory. Each file has a share of the
//! window ([`Progress::room_for`]), so a file bursting, or stuck behind a throttled
//! stream, leaves the others room; the shares never loosen the bound (`window`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A file followed by this process (a new key for every file and every truncation).
/// Keys grow in the order files were written, so the ledger's order is the rotation
/// order.
pub type FileKey = u32;

/// A file's identity: (device, inode) plus a fingerprint of its first bytes
/// (docs/design.md#files-and-lines). The fingerprint tells a re-created file, or a
/// reused inode, from the one in the checkpoint; its length is part of it, so a short file is never "refreshed".
/// Reading a file's identity is the tail's business (`tail::identity`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    /// How many leading bytes the fingerprint covers (fewer than the fingerprint's
    /// full length while the file was shorter).
    pub fp_len: u64,
    pub fp_hash: u64,
}

/// A contiguous byte range of one file whose lines travel together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub file: FileKey,
    pub start: u64,
    pub end: u64,
    /// The lines in the range, for the ledger's own count of what is settled.
    pub lines: u64,
}

/// The line of files one follower follows: the path it watches (a literal path, or one
/// path a glob matched) and the source it belongs to. Rotated files stay in their
/// chain; the checkpoint forgets a chain's finished files oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    pub source: Arc<str>,
    pub followed: Arc<Path>,
}

impl Default for Chain {
    /// The one source of the single-file flags, following nothing in particular (unit
    /// tests of the ledger).
    fn default() -> Chain {
        Chain::new("", Path::new(""))
    }
}

impl Chain {
    pub fn new(source: &str, followed: &Path) -> Chain {
        Chain {
            source: source.into(),
            followed: followed.into(),
        }
    }
}

/// One file as the checkpoint records it. How it is written to disk is the
/// checkpoint's business (`checkpoint::format`, one private type per version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// The source the file belongs to, by name.
    pub source: String,
    /// The path its follower follows (see [`Chain`]).
    pub followed: PathBuf,
    /// Where the file was when last seen (it follows the file through renames).
    pub path: PathBuf,
    pub identity: Identity,
    /// Every line before this offset is acknowledged.
    pub offset: u64,
    /// The file's modification time when last seen, in nanoseconds since the epoch:
    /// when the file is gone at restart, siblings newer than this are the ones to ship.
    pub mtime_ns: Option<u64>,
}

/// The gauges the ledger keeps current as reads and acknowledgements happen.
#[derive(Clone, Default)]
pub struct Gauges {
    /// `firetail_unacked_bytes`: read, not yet covered by a durable checkpoint.
    pub unacked: Gauge,
    /// `firetail_lag_bytes`: the files' ends minus their durable checkpoint offsets.
    pub lag: Gauge,
}

/// The checkpoint's content at one moment, and the offsets it makes durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: Vec<FileEntry>,
    /// Per file in `entries` (same order), its key.
    pub keys: Vec<FileKey>,
    /// Files dropped from the checkpoint because they are finished and fully
    /// acknowledged: once this snapshot is durable they need no re-reading.
    pub dropped: Vec<FileKey>,
}

/// Lines as the ledger counts them, apart from the counters of outcomes: settled
/// record by record where a stage learns it, registered and acknowledged by the spans
/// that carry them. The drain report takes its `undelivered` from here and checks it
/// against those counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineTally {
    /// Lines done with: each skipped or dead-lettered line as the batch stage classes
    /// it, each record's lines as the ship stage learns its call's answer.
    pub settled: u64,
    /// Lines in every span registered (when its batch was cut).
    pub registered: u64,
    /// Lines in every span acknowledged, once per acknowledgement.
    pub acknowledged: u64,
    /// Lines in the spans registered and not (yet) acknowledged.
    pub pending: u64,
}

struct FileProgress {
    chain: Chain,
    path: PathBuf,
    identity: Identity,
    mtime_ns: Option<u64>,
    /// The file's size as last seen by the tail.
    size: u64,
    /// End of the last registered span (or the start offset).
    registered_end: u64,
    /// Registered, not yet acknowledged spans: start → (end, lines, when registered).
    pending: BTreeMap<u64, (u64, u64, Instant)>,
    /// How far the tail has read: the end of the last line it handed on.
    read_offset: u64,
    /// Bytes of a line in progress the tail has read past `read_offset`: in no batch
    /// yet, but ahead of the checkpoint once the line ends.
    held: u64,
    /// The offset in the last durable checkpoint.
    durable: u64,
    /// Set once the tail will read no more of this file (rotated away, truncated).
    finished: bool,
}

impl FileProgress {
    /// Every line before this offset is acknowledged.
    fn committed(&self) -> u64 {
        self.pending
            .first_key_value()
            .map_or(self.registered_end, |(s, _)| *s)
    }

    fn done(&self) -> bool {
        self.finished && self.pending.is_empty() && self.committed() >= self.read_offset
    }

    fn entry(&self) -> FileEntry {
        FileEntry {
            source: self.chain.source.to_string(),
            followed: self.chain.followed.to_path_buf(),
            path: self.path.clone(),
            identity: self.identity.clone(),
            offset: self.committed(),
            mtime_ns: self.mtime_ns,
        }
    }
}

/// What the pipeline has read, registered, acknowledged and made durable, per file.
pub struct Progress {
    files: Mutex<Files>,
    /// Woken when the checkpoint's content may have changed: the checkpoint writer
    /// sleeps on it, so an idle sidecar does not wake to find nothing changed.
    changed: Notify,
    /// Woken when the duplicate window has room again: the tail sleeps on it.
    room: Notify,
    /// `--max-unacked-bytes`.
    window: u64,
    gauges: Gauges,
    /// Lines settled, registered and acknowledged so far (see [`LineTally`]).
    settled_lines: AtomicU64,
    registered_lines: AtomicU64,
    acknowledged_lines: AtomicU64,
    /// The next [`FileKey`]: keys are unique across every follower of every source.
    next_key: AtomicU32,
    /// See [`Progress::expect_newcomers`].
    newcomers: AtomicBool,
}

impl Default for Progress {
    /// A ledger with a window too large to matter (unit tests, the follower model).
    fn default() -> Self {
        Progress::new(u64::MAX, Gauges::default())
    }
}

impl Progress {
    pub fn new(window: u64, gauges: Gauges) -> Progress {
        Progress {
            files: Mutex::new(Files::default()),
            changed: Notify::new(),
            room: Notify::new(),
            window,
            gauges,
            settled_lines: AtomicU64::new(0),
            registered_lines: AtomicU64::new(0),
            acknowledged_lines: AtomicU64::new(0),
            next_key: AtomicU32::new(0),
            newcomers: AtomicBool::new(false),
        }
    }

    /// Files may appear that belong to no chain open now (several sources, or a glob):
    /// one share of the window is kept free for the next, so that files already open —
    /// one stuck behind a throttled stream above all — never hold all of it.
    pub fn expect_newcomers(self) -> Progress {
        self.newcomers.store(true, Ordering::Relaxed);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        // A panic while holding the lock aborts the process (panic = "abort"), so the
        // ledger is never seen half-updated.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self, files: &Files) {
        let t = files.totals();
        self.gauges.unacked.set(t.ahead as i64);
        self.gauges.lag.set(t.lag as i64);
    }

    /// A key for a file the tail is about to open; keys grow in the order files are
    /// opened.
    pub fn new_key(&self) -> FileKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// A file the tail starts reading at `offset`: nothing before it will be read.
    pub fn open(&self, key: FileKey, chain: &Chain, identity: &Identity, path: &Path, offset: u64) {
        self.lock().insert(
            key,
            FileProgress {
                chain: chain.clone(),
                path: path.to_path_buf(),
                identity: identity.clone(),
                mtime_ns: None,
                size: offset,
                registered_end: offset,
                pending: BTreeMap::new(),
                read_offset: offset,
                held: 0,
                durable: offset,
                finished: false,
            },
        );
        self.changed.notify_one();
    }

    /// The file's fingerprint grew (it was shorter than the fingerprint when opened).
    pub fn set_identity(&self, key: FileKey, identity: &Identity) {
        self.lock().update(key, |f| f.identity = identity.clone());
    }

    /// The file was renamed: the checkpoint names it where it is now.
    pub fn set_path(&self, key: FileKey, path: &Path) {
        self.lock().update(key, |f| f.path = path.to_path_buf());
        self.changed.notify_one();
    }

    /// The file's size and modification time (nanoseconds since the epoch) as the
    /// tail last saw them (`fstat` of its handle).
    pub fn seen(&self, key: FileKey, size: u64, mtime_ns: u64) {
        let mut files = self.lock();
        files.update(key, |f| {
            f.size = size;
            f.mtime_ns = Some(mtime_ns);
        });
        self.update_gauges(&files);
    }

    /// The tail has read this file up to `offset`.
    pub fn read_to(&self, key: FileKey, offset: u64) {
        self.read_to_holding(key, offset, 0);
    }

    /// The tail has handed on this file's lines up to `offset`, and holds `held` bytes
    /// of the line in progress after it.
    pub fn read_to_holding(&self, key: FileKey, offset: u64, held: u64) {
        let mut files = self.lock();
        files.update(key, |f| {
            f.read_offset = offset;
            f.held = held;
        });
        self.update_gauges(&files);
    }

    /// The tail will read no more of this file; once all of it is acknowledged it
    /// leaves the checkpoint.
    pub fn finish(&self, key: FileKey, end: u64) {
        let mut files = self.lock();
        files.update(key, |f| {
            f.read_offset = end;
            f.held = 0;
            f.finished = true;
        });
        self.update_gauges(&files);
        drop(files);
        self.changed.notify_one();
        // One file fewer shares the window: the others' shares grow.
        self.room.notify_waiters();
    }

    /// Called in file order when a batch is cut, before it can be acknowledged.
    pub fn register(&self, spans: &[Span]) {
        let now = Instant::now();
        let mut files = self.lock();
        for s in spans {
            self.registered_lines.fetch_add(s.lines, Ordering::Relaxed);
            files.update(s.file, |f| {
                f.pending.insert(s.start, (s.end, s.lines, now));
                f.registered_end = f.registered_end.max(s.end);
            });
        }
    }

    /// Every line in `spans` is accepted by Firehose or in the dead-letter file.
    pub fn ack(&self, spans: &[Span]) {
        let mut files = self.lock();
        for s in spans {
            // Counted as given, not as found pending: a span acknowledged twice then
            // shows as more acknowledged than registered and pending together.
            self.acknowledged_lines
                .fetch_add(s.lines, Ordering::Relaxed);
            files.update(s.file, |f| {
                f.pending.remove(&s.start);
            });
        }
        self.update_gauges(&files);
        self.changed.notify_one();
    }

    /// `lines` are done with — shipped, dead-lettered or skipped — though the spans
    /// holding them may wait for other lines before they are acknowledged.
    pub fn settled(&self, lines: u64) {
        self.settled_lines.fetch_add(lines, Ordering::Relaxed);
    }

    /// Waits until the checkpoint's content may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// The file's size as the tail last saw it (0 for an unknown key).
    pub fn size_of(&self, key: FileKey) -> u64 {
        self.lock().get(&key).map_or(0, |f| f.size)
    }

    /// True when a file with this (device, inode) is being read by some follower, of
    /// any source: a sibling scan must leave it to that follower.
    pub fn follows(&self, (dev, ino): (u64, u64)) -> bool {
        self.lock()
            .values()
            .any(|f| !f.finished && f.identity.dev == dev && f.identity.ino == ino)
    }

    pub fn path_of(&self, key: FileKey) -> PathBuf {
        self.lock()
            .get(&key)
            .map(|f| f.path.clone())
            .unwrap_or_default()
    }

    /// The checkpoint's content now. Files that are finished and fully acknowledged
    /// are left out, oldest first and only while every older one of their chain is
    /// left out too: a done file newer than a pending one of its chain stays, so a
    /// restart knows not to read it again. Chains are independent: one source's
    /// pending file keeps no other chain's finished files. Changes nothing.
    pub fn snapshot(&self) -> Snapshot {
        let files = self.lock();
        let mut snap = Snapshot::default();
        let mut leading_done: HashMap<&Chain, bool> = HashMap::new();
        for (key, f) in files.iter() {
            let leading_done = leading_done.entry(&f.chain).or_insert(true);
            *leading_done &= f.done();
            if *leading_done {
                snap.dropped.push(*key);
            } else {
                snap.entries.push(f.entry());
                snap.keys.push(*key);
            }
        }
        snap
    }

    /// The checkpoint entries now (see [`Progress::snapshot`]).
    pub fn entries(&self) -> Vec<FileEntry> {
        self.snapshot().entries
    }

    /// `snap` is durable on disk: its offsets bound what a restart re-sends, and the
    /// files it dropped are forgotten. Frees room in the duplicate window.
    pub fn persisted(&self, snap: &Snapshot) {
        let mut files = self.lock();
        for key in &snap.dropped {
            files.remove(key);
        }
        for (key, entry) in snap.keys.iter().zip(&snap.entries) {
            files.update(*key, |f| f.durable = f.durable.max(entry.offset));
        }
        self.update_gauges(&files);
        drop(files);
        self.room.notify_waiters();
    }

    /// How long the oldest registered, unacknowledged batch has waited.
    pub fn oldest_unacked_age(&self) -> Option<std::time::Duration> {
        let files = self.lock();
        files
            .values()
            .flat_map(|f| f.pending.values().map(|(_, _, at)| *at))
            .min()
            .map(|at| at.elapsed())
    }

    /// The ledger's count of lines, for the drain report.
    pub fn line_tally(&self) -> LineTally {
        let files = self.lock();
        LineTally {
            settled: self.settled_lines.load(Ordering::Relaxed),
            registered: self.registered_lines.load(Ordering::Relaxed),
            acknowledged: self.acknowledged_lines.load(Ordering::Relaxed),
            pending: files
                .values()
                .flat_map(|f| f.pending.values().map(|(_, lines, _)| *lines))
                .sum(),
        }
    }
}

mod files;
#[cfg(test)]
mod tests;
mod view;
mod window;

use files::Files;
pub use view::{SourceLedger, Unacknowledged};
pub use window::MIN_SHARE;
