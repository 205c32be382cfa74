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

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::progress::{FileEntry, Progress};

/// "At most every few hundred milliseconds" (DESIGN §7): bounds duplicates after a
/// crash to ~this much traffic plus what was in flight, at ≤ 4 fsyncs a second (off
/// the runtime thread; measured at well under 0.1% of a core). 500 ms doubled the
/// duplicates of the kill -9 test for no measurable CPU.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(250);

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileEntry>,
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
        let snap = progress.snapshot();
        let content = CheckpointFile {
            version: VERSION,
            files: snap.entries.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&content).map_err(io::Error::other)?;
        if self.last_written.as_deref() == Some(&bytes) {
            progress.persisted(&snap);
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
        progress.persisted(&snap);
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
            _ = progress.changed() => {}
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
    use crate::progress::Identity;

    fn id() -> Identity {
        Identity {
            dev: 1,
            ino: 2,
            fp_len: 3,
            fp_hash: 0xabc,
        }
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
