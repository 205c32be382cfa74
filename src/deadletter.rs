//! The dead-letter file: lines Firehose can never take
//! (docs/design.md#files-and-lines).
//!
//! JSON lines `{"time", "file", "offset", "reason", "size", "line"}`; the line is a
//! string when it is UTF-8, else base64 with `"line_base64": true`, and
//! `"line_cut": true` when only its first bytes are kept. Reasons
//! ([`DeadLetterReason`]): `oversize` (over 1,024,000 bytes), `invalid_json` (with
//! `--invalid-json dead-letter`), `rejected` (Firehose refused the record alone with
//! `InvalidArgumentException`), `too_large_for_endpoint` (a single record answered
//! HTTP 413).
//!
//! Guarantees:
//! - An entry is in the file whole or not at all: a failed or short write is cut back
//!   to the last whole entry before anything else is appended, so the file always
//!   parses entry by entry.
//! - A line counts as delivered only once its entry is synced ([`DeadLetter::sync`]
//!   before its span is acknowledged): a full or failing disk holds the line, and the
//!   checkpoint behind it, while firetail retries with backoff (ERROR once, INFO when
//!   it works again). Nothing is torn or lost.
//! - All file work (open, write, fsync, rotation) runs on blocking threads: a slow or
//!   failing disk never stops the runtime thread, which ships meanwhile.
//! - Bounded: past `--dead-letter-max-bytes` the file rotates to one `.1`; dropping an
//!   older `.1` is an ERROR with the number of entries dropped, and counted. The JSON
//!   of an entry is streamed, never built in memory.

mod entry;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::outcome::DeadLetterReason;
use crate::store::{Disk, Store};
use crate::wait::Backoff;
use entry::Pending;
use writer::Writer;

/// Appends entries to the dead-letter file, opened on first use.
pub struct DeadLetter {
    path: PathBuf,
    writer: Arc<Mutex<Writer>>,
    log: LogThrottle,
    /// An entry was written since the last [`DeadLetter::sync`] began: without one,
    /// a sync (asked for before every batch) costs nothing, not a blocking thread's
    /// wake-up (ten a second at 5,000 lines/s).
    dirty: AtomicBool,
}

impl DeadLetter {
    pub fn new(path: &Path, max_bytes: u64, metrics: Arc<Metrics>) -> DeadLetter {
        DeadLetter::with_store(path, max_bytes, metrics, Disk::shared())
    }

    pub fn with_store(
        path: &Path,
        max_bytes: u64,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
    ) -> DeadLetter {
        DeadLetter {
            path: path.to_path_buf(),
            writer: Arc::new(Mutex::new(Writer::new(path, max_bytes, store, metrics))),
            log: LogThrottle::new(std::time::Duration::from_secs(1)),
            dirty: AtomicBool::new(false),
        }
    }

    /// Writes one line (or a record holding several), retrying with backoff while the
    /// disk refuses. Call [`DeadLetter::sync`] before the line's span can be
    /// acknowledged: a full disk delays the checkpoint instead of losing the line.
    pub async fn write_retrying(
        &self,
        file: &Path,
        offset: u64,
        reason: DeadLetterReason,
        data: &Bytes,
        size: u64,
    ) {
        let entry = Pending {
            time: SystemTime::now(),
            file: file.to_path_buf(),
            offset,
            reason,
            data: data.clone(),
            size,
        };
        let sync_now = self
            .retrying("write", move |w| w.write(entry.clone()))
            .await;
        // After the write: a sync that starts from now on covers it.
        self.dirty.store(true, Ordering::SeqCst);
        if let Some(lines) = self.log.note(1) {
            tracing::warn!(
                file = %file.display(),
                offset,
                size,
                reason = reason.as_str(),
                lines,
                dead_letter = %self.path.display(),
                "Lines written to the dead-letter file (this one's file, offset, size and reason; `lines` counts all since the last such log line)."
            );
        }
        if sync_now {
            self.sync().await;
        }
    }

    /// Makes the entries written so far durable (one fsync for a batch of dead letters,
    /// not one per line), retrying with backoff while the disk refuses.
    pub async fn sync(&self) {
        // Cleared before the sync starts: an entry written meanwhile sets it again.
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        self.retrying("sync", Writer::sync).await;
    }

    /// Runs `op` on a blocking thread until it succeeds.
    async fn retrying<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl Fn(&mut Writer) -> std::io::Result<T> + Send + Sync + 'static,
    ) -> T {
        let op = Arc::new(op);
        let mut backoff = Backoff::new();
        let mut failing = false;
        loop {
            let (writer, op) = (self.writer.clone(), op.clone());
            let result = tokio::task::spawn_blocking(move || {
                op(&mut writer.lock().unwrap_or_else(|e| e.into_inner()))
            })
            .await
            .expect("dead-letter file work does not panic");
            match result {
                Ok(t) => {
                    if failing {
                        tracing::info!(dead_letter = %self.path.display(), "The dead-letter file takes entries again.");
                    }
                    return t;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(dead_letter = %self.path.display(), operation = what, error = %e, "Cannot write the dead-letter file; retrying with backoff. The line waits, and the checkpoint cannot advance past it until it is written and synced.");
                }
                Err(_) => {}
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
}

#[cfg(test)]
mod tests;
