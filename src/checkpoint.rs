//! checkpoint: acknowledgements → the checkpoint file.
//!
//! Input: the [`Progress`] ledger, where the ship stage acknowledges spans once Firehose
//! accepted (or the dead-letter file took) every line in them. Output: a small
//! versioned JSON file, per file followed: its source and chain, identity, last path,
//! offset below which every line is acknowledged, and modification time. The file's
//! schema is this module's own (`format`: a private type per version); on start each
//! entry is placed in a configured source ([`migrate`]).
//!
//! Guarantees (docs/design.md#guarantees, docs/design.md#checkpoint):
//! - At-least-once: an offset is written only after every line before it was
//!   acknowledged, so a restart after a crash or `kill -9` re-ships at most the
//!   duplicate window.
//! - Atomic: temp file, fsync, rename, fsync of the directory; a leftover temp file
//!   from an interrupted write is considered on start; unchanged state is not rewritten.
//! - A disk that fails does not stop the writer ([`writer`]): it retries on a timer
//!   and catches up once the disk heals, whether or not new acknowledgements arrive.
//! - Three outcomes at start, never confused: *missing* (start per `--read-from`),
//!   *corrupt* (moved aside for inspection, ERROR, start per `--read-from`) and
//!   *unreadable* (EACCES, EIO: ERROR, not ready, read again with backoff; the file is
//!   never moved or overwritten, and reading the log does not start meanwhile).

mod format;
mod migrate;
mod writer;

pub use format::VERSION;
pub use migrate::migrate;
pub use writer::{run, WRITE_INTERVAL};

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::health::Health;
use crate::metrics::Metrics;
use crate::progress::{FileEntry, Progress};
use crate::store::{Disk, Store};
use crate::wait::Backoff;

/// Reads and writes the checkpoint file.
#[derive(Clone)]
pub struct Checkpointer {
    path: PathBuf,
    tmp: PathBuf,
    last_written: Option<Vec<u8>>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    /// The configured sources (name, path or glob) entries are placed in on load;
    /// None: entries are returned as the file holds them.
    sources: Option<Vec<(String, PathBuf)>>,
}

/// The checkpoint (or its temp file) exists but cannot be read: resuming without it
/// would re-ship everything or skip lines, so firetail waits for it instead.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the checkpoint {}: {error}", path.display())]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: io::Error,
}

/// What one read of a checkpoint file found.
enum Found {
    Ok(Vec<FileEntry>, SystemTime),
    Missing,
    Corrupt(String),
    Unreadable(io::Error),
}

impl Checkpointer {
    pub fn new(path: &Path, metrics: Arc<Metrics>) -> Checkpointer {
        Checkpointer::with_store(path, metrics, Disk::shared())
    }

    pub fn with_store(path: &Path, metrics: Arc<Metrics>, store: Arc<dyn Store>) -> Checkpointer {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        Checkpointer {
            path: path.to_path_buf(),
            tmp: PathBuf::from(tmp),
            last_written: None,
            metrics,
            store,
            sources: None,
        }
    }

    /// Loads place each entry in one of these sources (name, path or glob; in the
    /// configuration's order), dropping with a WARN those none follows ([`migrate`]).
    pub fn with_sources<S: AsRef<str>, P: AsRef<Path>>(
        mut self,
        sources: &[(S, P)],
    ) -> Checkpointer {
        let sources = sources
            .iter()
            .map(|(n, p)| (n.as_ref().to_string(), p.as_ref().to_path_buf()))
            .collect();
        self.sources = Some(sources);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the entries to resume from, reading again with backoff while the
    /// checkpoint is unreadable (ERROR once, `/readyz` false meanwhile, INFO once it
    /// reads). Reads run on a blocking thread: a hung disk does not stop the probes.
    pub async fn load_retrying(&mut self, health: &Health) -> Vec<FileEntry> {
        let mut backoff = Backoff::new();
        let mut failing = false;
        loop {
            let mut attempt = self.clone();
            let result = tokio::task::spawn_blocking(move || attempt.try_load())
                .await
                .expect("reading the checkpoint does not panic");
            match result {
                Ok(entries) => {
                    if failing {
                        tracing::info!(file = %self.path.display(), "Checkpoint readable again; resuming from it.");
                    }
                    health.checkpoint_unreadable.store(false, Ordering::Relaxed);
                    return entries;
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(file = %e.path.display(), error = %e.error, "Cannot read the checkpoint; not reading the log until it can be read (it is left in place, never overwritten). Retrying with backoff.");
                        failing = true;
                    }
                    health.checkpoint_unreadable.store(true, Ordering::Relaxed);
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    /// One attempt at [`Checkpointer::load_retrying`]: the entries to resume from
    /// (empty when missing or corrupt — a corrupt file is moved aside and the reason
    /// logged at ERROR), placed in the sources when given
    /// ([`Checkpointer::with_sources`]); or why the checkpoint cannot be read.
    pub fn try_load(&mut self) -> Result<Vec<FileEntry>, Unreadable> {
        let entries = self.try_load_as_written()?;
        Ok(match &self.sources {
            Some(sources) => migrate(entries, sources),
            None => entries,
        })
    }

    fn try_load_as_written(&mut self) -> Result<Vec<FileEntry>, Unreadable> {
        let main = self.read_readable(&self.path)?;
        let tmp = self.read_readable(&self.tmp)?;
        if let Found::Corrupt(e) = &tmp {
            tracing::warn!(file = %self.tmp.display(), error = %e, "Ignoring an incomplete temporary checkpoint left by an interrupted write.");
        }
        let newer_tmp = match (&main, &tmp) {
            (Found::Ok(_, m), Found::Ok(_, t)) => t >= m,
            (_, Found::Ok(..)) => true,
            _ => false,
        };
        let _ = self.store.remove(&self.tmp);
        if let (true, Found::Ok(files, _)) = (newer_tmp, tmp) {
            tracing::info!(file = %self.tmp.display(), "Resuming from the temporary checkpoint of an interrupted write; it is newer than the checkpoint.");
            return Ok(files);
        }
        Ok(match main {
            Found::Ok(files, _) => files,
            Found::Corrupt(e) => {
                self.set_aside(&e);
                Vec::new()
            }
            Found::Missing | Found::Unreadable(_) => Vec::new(),
        })
    }

    /// [`Checkpointer::read`], with "unreadable" as the error.
    fn read_readable(&self, path: &Path) -> Result<Found, Unreadable> {
        match self.read(path) {
            Found::Unreadable(error) => Err(Unreadable {
                path: path.to_path_buf(),
                error,
            }),
            read => Ok(read),
        }
    }

    fn read(&self, path: &Path) -> Found {
        match self.store.read(path) {
            Ok((bytes, mtime)) => match format::decode(&bytes) {
                Ok(files) => Found::Ok(files, mtime),
                Err(e) => Found::Corrupt(e),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Found::Missing,
            Err(e) => Found::Unreadable(e),
        }
    }

    /// Moves a corrupt checkpoint aside, kept for inspection.
    fn set_aside(&self, why: &str) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(format!(".corrupt-{secs}"));
        let aside = PathBuf::from(aside);
        self.metrics.checkpoint_corrupt.inc();
        if let Err(e) = self.store.rename(&self.path, &aside) {
            tracing::error!(file = %self.path.display(), error = %e, "Cannot move the corrupt checkpoint aside; it will be overwritten by the next checkpoint.");
        }
        tracing::error!(
            file = %self.path.display(),
            moved_to = %aside.display(),
            error = %why,
            "Checkpoint corrupt; moved aside for inspection. Starting per --read-from: lines already shipped may be shipped again."
        );
    }

    /// Writes the checkpoint if its content changed, and tells `progress` what is now
    /// durable. True when it wrote. A failure is counted in
    /// `firetail_checkpoint_write_failures_total`; the caller retries.
    pub fn write(&mut self, progress: &Progress) -> io::Result<bool> {
        let snap = progress.snapshot();
        let bytes = format::encode(&snap.entries);
        if self.last_written.as_deref() == Some(&bytes) {
            progress.persisted(&snap);
            return Ok(false);
        }
        if let Err(e) = self.replace(&bytes) {
            self.metrics.checkpoint_write_failures.inc();
            return Err(e);
        }
        self.last_written = Some(bytes);
        progress.persisted(&snap);
        self.metrics.checkpoint_writes.inc();
        Ok(true)
    }

    /// Temp file, fsync, rename over the checkpoint, fsync of the directory (the rename
    /// is durable only then).
    fn replace(&self, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.store.create(&self.tmp)?;
        f.write_all(bytes)?;
        f.sync()?;
        drop(f);
        self.store.rename(&self.tmp, &self.path)?;
        self.store.sync_dir(crate::config::parent_dir(&self.path))
    }
}

#[cfg(test)]
mod tests;
