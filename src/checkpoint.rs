//! checkpoint: acknowledgements → the checkpoint file.
//!
//! Input: [`Span`]s registered by the batch stage when it cuts a batch and acknowledged
//! by the ship stage once Firehose accepted (or the dead-letter file took) every line in
//! them. Output: a small versioned JSON file, per file followed: identity, last path,
//! and the highest offset below which every line is acknowledged.
//!
//! Guarantees (DESIGN §3, §7):
//! - At-least-once: an offset is written only after every line before it was
//!   acknowledged, so a restart after a crash or `kill -9` re-ships at most what was in
//!   flight.
//! - Atomic: temp file, fsync, rename, fsync of the directory; a leftover temp file
//!   from an interrupted write is considered on start; unchanged state is not rewritten.
//! - Cheap: written at most every [`WRITE_INTERVAL`] while acknowledgements advance,
//!   and at exit — never an fsync per batch.
//! - A corrupt checkpoint is moved aside (kept for inspection) and reported; never a crash.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;
use crate::tail::{FileKey, Identity};

/// "At most every few hundred milliseconds" (DESIGN §7): bounds duplicates after a
/// crash to ~this much traffic plus what was in flight, at ≤ 4 fsyncs a second (off
/// the runtime thread; measured at well under 0.1% of a core). 500 ms doubled the
/// duplicates of the kill -9 test for no measurable CPU.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(250);

const VERSION: u32 = 1;

/// A contiguous byte range of one file whose lines travel together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub file: FileKey,
    pub start: u64,
    pub end: u64,
}

/// One file in the checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Where the file was when last seen (it may have been rotated since).
    pub path: PathBuf,
    pub dev: u64,
    pub inode: u64,
    /// Bytes covered by `fingerprint` (FNV-1a of the first bytes, hex).
    pub fingerprint_len: u64,
    pub fingerprint: String,
    /// Every line before this offset is acknowledged.
    pub offset: u64,
}

impl FileEntry {
    pub fn identity(&self) -> Identity {
        Identity {
            dev: self.dev,
            ino: self.inode,
            fp_len: self.fingerprint_len,
            fp_hash: u64::from_str_radix(&self.fingerprint, 16).unwrap_or(0),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileEntry>,
}

/// What the pipeline has read, registered and acknowledged, per file. Shared by the
/// tail (opens, reads), batch (registers), ship (acknowledges) and this stage (writes).
#[derive(Default)]
pub struct Progress {
    files: Mutex<BTreeMap<FileKey, FileProgress>>,
    /// Woken when acknowledgements advance: the checkpoint writer sleeps on it, so an
    /// idle sidecar does not wake to find nothing changed.
    advanced: tokio::sync::Notify,
    /// `firetail_lag_bytes`, kept current as reads and acknowledgements happen.
    lag: Gauge,
}

struct FileProgress {
    path: PathBuf,
    identity: Identity,
    /// End of the last registered span (or the start offset).
    registered_end: u64,
    /// Registered, not yet acknowledged spans: start → end.
    pending: BTreeMap<u64, u64>,
    /// How far the tail has read.
    read_offset: u64,
    /// Set once the tail will read no more of this file (rotated away, truncated).
    finished: bool,
}

impl FileProgress {
    fn committed(&self) -> u64 {
        self.pending
            .first_key_value()
            .map_or(self.registered_end, |(s, _)| *s)
    }
}

/// One file with bytes read but not acknowledged, for the drain report.
#[derive(Debug, Clone, Serialize)]
pub struct Unacknowledged {
    pub path: PathBuf,
    pub from_offset: u64,
    pub to_offset: u64,
}

impl Progress {
    /// Progress that keeps `lag` (the `firetail_lag_bytes` gauge) current.
    pub fn with_lag_gauge(lag: Gauge) -> Progress {
        Progress {
            lag,
            ..Progress::default()
        }
    }

    fn update_lag(&self, files: &BTreeMap<FileKey, FileProgress>) {
        let lag: u64 = files
            .values()
            .map(|f| f.read_offset.saturating_sub(f.committed()))
            .sum();
        self.lag.set(lag as i64);
    }

    pub fn open(&self, key: FileKey, identity: &Identity, path: &Path, offset: u64) {
        self.files.lock().unwrap().insert(
            key,
            FileProgress {
                path: path.to_path_buf(),
                identity: identity.clone(),
                registered_end: offset,
                pending: BTreeMap::new(),
                read_offset: offset,
                finished: false,
            },
        );
    }

    pub fn set_identity(&self, key: FileKey, identity: &Identity) {
        if let Some(f) = self.files.lock().unwrap().get_mut(&key) {
            f.identity = identity.clone();
        }
    }

    pub fn read_to(&self, key: FileKey, offset: u64) {
        let mut files = self.files.lock().unwrap();
        if let Some(f) = files.get_mut(&key) {
            f.read_offset = offset;
        }
        self.update_lag(&files);
    }

    /// The tail will read no more of this file; once all of it is acknowledged it
    /// leaves the checkpoint.
    pub fn finish(&self, key: FileKey, end: u64) {
        if let Some(f) = self.files.lock().unwrap().get_mut(&key) {
            f.read_offset = end;
            f.finished = true;
        }
    }

    /// Called in file order when a batch is cut, before it can be acknowledged.
    pub fn register(&self, spans: &[Span]) {
        let mut files = self.files.lock().unwrap();
        for s in spans {
            if let Some(f) = files.get_mut(&s.file) {
                f.pending.insert(s.start, s.end);
                f.registered_end = f.registered_end.max(s.end);
            }
        }
    }

    pub fn ack(&self, spans: &[Span]) {
        let mut files = self.files.lock().unwrap();
        for s in spans {
            if let Some(f) = files.get_mut(&s.file) {
                f.pending.remove(&s.start);
            }
        }
        self.update_lag(&files);
        self.advanced.notify_one();
    }

    pub fn path_of(&self, key: FileKey) -> PathBuf {
        self.files
            .lock()
            .unwrap()
            .get(&key)
            .map(|f| f.path.clone())
            .unwrap_or_default()
    }

    /// The checkpoint's content now. Drops files that are finished and fully
    /// acknowledged, oldest first and only while every older one is dropped too: a done
    /// file newer than a pending one stays, so a restart knows it need not read it again.
    pub fn entries(&self) -> Vec<FileEntry> {
        let mut files = self.files.lock().unwrap();
        while let Some(entry) = files.first_entry() {
            let f = entry.get();
            if !(f.finished && f.pending.is_empty() && f.committed() >= f.read_offset) {
                break;
            }
            entry.remove();
        }
        files
            .values()
            .map(|f| FileEntry {
                path: f.path.clone(),
                dev: f.identity.dev,
                inode: f.identity.ino,
                fingerprint_len: f.identity.fp_len,
                fingerprint: format!("{:016x}", f.identity.fp_hash),
                offset: f.committed(),
            })
            .collect()
    }

    /// Per file, the offset range read but not acknowledged.
    pub fn unacknowledged(&self) -> Vec<Unacknowledged> {
        let files = self.files.lock().unwrap();
        files
            .values()
            .filter(|f| f.read_offset > f.committed())
            .map(|f| Unacknowledged {
                path: f.path.clone(),
                from_offset: f.committed(),
                to_offset: f.read_offset,
            })
            .collect()
    }

    /// The committed offset of the newest file (the one at the path), for the report.
    pub fn current_offset(&self) -> Option<u64> {
        let files = self.files.lock().unwrap();
        files.values().next_back().map(FileProgress::committed)
    }
}

/// Reads and writes the checkpoint file.
pub struct Checkpointer {
    path: PathBuf,
    tmp: PathBuf,
    last_written: Option<Vec<u8>>,
    metrics: Arc<Metrics>,
}

impl Checkpointer {
    pub fn new(path: &Path, metrics: Arc<Metrics>) -> Checkpointer {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        Checkpointer {
            path: path.to_path_buf(),
            tmp: PathBuf::from(tmp),
            last_written: None,
            metrics,
        }
    }

    /// Loads the entries to resume from. Empty when there is no checkpoint, or when it
    /// is corrupt — then it is moved aside and the reason logged at ERROR.
    pub fn load(&mut self) -> Vec<FileEntry> {
        let main = read_checkpoint(&self.path);
        let tmp = read_checkpoint(&self.tmp);
        let newer_tmp = match (&main, &tmp) {
            (_, Read::Missing) | (_, Read::Corrupt(_)) => false,
            (Read::Ok(_, m), Read::Ok(_, t)) => t >= m,
            (_, Read::Ok(..)) => true,
        };
        if let Read::Corrupt(e) = &tmp {
            tracing::warn!(file = %self.tmp.display(), error = %e, "Ignoring an incomplete temporary checkpoint left by an interrupted write.");
        }
        let _ = std::fs::remove_file(&self.tmp);
        if newer_tmp {
            if let Read::Ok(c, _) = tmp {
                tracing::info!(file = %self.tmp.display(), "Resuming from the temporary checkpoint of an interrupted write; it is newer than the checkpoint.");
                return c.files;
            }
        }
        match main {
            Read::Ok(c, _) => c.files,
            Read::Missing => Vec::new(),
            Read::Corrupt(e) => {
                let aside = self.move_aside();
                self.metrics.checkpoint_corrupt.inc();
                tracing::error!(
                    file = %self.path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "Checkpoint unreadable; moved aside for inspection. Starting per --read-from: lines already shipped may be shipped again."
                );
                Vec::new()
            }
        }
    }

    fn move_aside(&self) -> PathBuf {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(format!(".corrupt-{secs}"));
        let aside = PathBuf::from(aside);
        if let Err(e) = std::fs::rename(&self.path, &aside) {
            tracing::error!(file = %self.path.display(), error = %e, "Cannot move the corrupt checkpoint aside.");
        }
        aside
    }

    /// Writes the checkpoint if its content changed. True when it wrote.
    pub fn write(&mut self, progress: &Progress) -> io::Result<bool> {
        let content = CheckpointFile {
            version: VERSION,
            files: progress.entries(),
        };
        let bytes = serde_json::to_vec_pretty(&content).map_err(io::Error::other)?;
        if self.last_written.as_deref() == Some(&bytes) {
            return Ok(false);
        }
        {
            let mut f = std::fs::File::create(&self.tmp)?;
            f.write_all(&bytes)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&self.tmp, &self.path)?;
        // The rename is durable only once the directory is synced.
        std::fs::File::open(crate::config::parent_dir(&self.path))?.sync_all()?;
        self.last_written = Some(bytes);
        self.metrics.checkpoint_writes.inc();
        Ok(true)
    }
}

enum Read {
    Ok(CheckpointFile, SystemTime),
    Missing,
    Corrupt(String),
}

fn read_checkpoint(path: &Path) -> Read {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Read::Missing,
        Err(e) => return Read::Corrupt(e.to_string()),
    };
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    match serde_json::from_slice::<CheckpointFile>(&bytes) {
        Ok(c) if c.version == VERSION => Read::Ok(c, mtime),
        Ok(c) => Read::Corrupt(format!(
            "version {} is not the version this firetail writes ({VERSION})",
            c.version
        )),
        Err(e) => Read::Corrupt(e.to_string()),
    }
}

/// Writes the checkpoint when acknowledgements advance, at most every
/// [`WRITE_INTERVAL`], until `stop` turns true; then hands the writer back for the
/// final checkpoint. Sleeps while nothing is acknowledged.
pub async fn run(
    mut cp: Checkpointer,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Checkpointer {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = progress.advanced.notified() => {}
            _ = stop.changed() => return cp,
        }
        // fsync waits on the disk: not on the runtime thread, which ships meanwhile.
        let shared = progress.clone();
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = cp.write(&shared);
            (cp, result)
        })
        .await
        .expect("the checkpoint write does not panic");
        cp = back;
        match result {
            Ok(_) if failing => {
                failing = false;
                tracing::info!(file = %cp.path.display(), "Checkpoint writes work again.");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::error!(file = %cp.path.display(), error = %e, "Cannot write the checkpoint; shipping goes on, but a restart now would ship lines again.");
            }
            Err(_) => {}
        }
        // Acknowledgements that arrive meanwhile leave a permit: the next write covers
        // them once the interval has passed.
        tokio::select! {
            _ = tokio::time::sleep(WRITE_INTERVAL) => {}
            _ = stop.changed() => return cp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            dev: 1,
            ino: 2,
            fp_len: 3,
            fp_hash: 0xabc,
        }
    }

    fn span(start: u64, end: u64) -> Span {
        Span {
            file: 0,
            start,
            end,
        }
    }

    #[test]
    fn offset_advances_only_over_contiguous_acks() {
        let p = Progress::default();
        p.open(0, &id(), Path::new("/x"), 0);
        p.register(&[span(0, 10), span(10, 20), span(20, 30)]);
        p.ack(&[span(10, 20)]);
        assert_eq!(
            p.entries()[0].offset,
            0,
            "an ack after a gap must not move the offset"
        );
        p.ack(&[span(0, 10)]);
        assert_eq!(p.entries()[0].offset, 20);
        p.ack(&[span(20, 30)]);
        assert_eq!(p.entries()[0].offset, 30);
    }

    #[test]
    fn finished_files_leave_once_fully_acknowledged() {
        let p = Progress::default();
        p.open(0, &id(), Path::new("/old"), 0);
        p.register(&[span(0, 10)]);
        p.finish(0, 10);
        assert_eq!(p.entries().len(), 1);
        p.ack(&[span(0, 10)]);
        assert!(p.entries().is_empty());
    }

    #[test]
    fn write_is_atomic_and_skips_unchanged_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let metrics = Arc::new(Metrics::new());
        let p = Progress::default();
        p.open(0, &id(), Path::new("/x"), 5);
        let mut cp = Checkpointer::new(&path, metrics.clone());
        assert!(cp.write(&p).unwrap());
        assert!(
            !cp.write(&p).unwrap(),
            "unchanged state must not be rewritten"
        );
        assert!(!dir.path().join("cp.json.tmp").exists());
        let mut again = Checkpointer::new(&path, metrics);
        let entries = again.load();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].offset, 5);
        assert_eq!(entries[0].identity(), id());
    }

    #[test]
    fn corrupt_checkpoint_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, b"{\"version\": 1, \"fil").unwrap();
        let mut cp = Checkpointer::new(&path, Arc::new(Metrics::new()));
        assert!(cp.load().is_empty());
        assert!(!path.exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("cp.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "the bad file is kept for inspection");
    }

    #[test]
    fn a_complete_leftover_temp_file_wins_over_an_older_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let metrics = Arc::new(Metrics::new());
        let p = Progress::default();
        p.open(0, &id(), Path::new("/x"), 5);
        Checkpointer::new(&path, metrics.clone()).write(&p).unwrap();
        // An interrupted write: the temp file was synced but never renamed.
        let newer = CheckpointFile {
            version: VERSION,
            files: vec![FileEntry {
                offset: 9,
                ..p.entries()[0].clone()
            }],
        };
        std::fs::write(
            dir.path().join("cp.json.tmp"),
            serde_json::to_vec(&newer).unwrap(),
        )
        .unwrap();
        let entries = Checkpointer::new(&path, metrics).load();
        assert_eq!(entries[0].offset, 9);
    }

    #[test]
    fn an_incomplete_leftover_temp_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let metrics = Arc::new(Metrics::new());
        let p = Progress::default();
        p.open(0, &id(), Path::new("/x"), 5);
        Checkpointer::new(&path, metrics.clone()).write(&p).unwrap();
        std::fs::write(dir.path().join("cp.json.tmp"), b"{\"vers").unwrap();
        let entries = Checkpointer::new(&path, metrics).load();
        assert_eq!(entries[0].offset, 5);
        assert!(!dir.path().join("cp.json.tmp").exists());
    }
}
