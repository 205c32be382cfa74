//! The blocking core of the dead-letter file: whole entries only, group-committed
//! fsyncs, a torn tail repaired before anything is appended, and rotation to one `.1`.
//! Runs on blocking threads only, under one lock, so a write never races a sync.
//!
//! Entries since the last successful fsync are kept (their data is shared with the
//! batch, not copied) until the next one succeeds: a failed fsync may have dropped
//! them from the page cache (Linux marks such pages clean), so the file is cut back
//! to the last synced entry and they are written again. [`SYNC_AFTER_BYTES`] bounds
//! what is kept.

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::entry::Pending;
use crate::metrics::Metrics;
use crate::store::{Store, StoreFile};

/// Unsynced dead-letter data that forces a sync before more is written (1 MiB: a
/// batch's worth of small invalid lines syncs once; a huge line syncs alone).
pub const SYNC_AFTER_BYTES: usize = 1024 * 1024;

/// Entries are streamed to the file through a buffer this big.
const WRITE_BUFFER: usize = 64 * 1024;

pub struct Writer {
    path: PathBuf,
    rotated: PathBuf,
    max_bytes: u64,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    file: Option<Box<dyn StoreFile>>,
    /// End of the last whole entry written (what the file's length must be).
    written: u64,
    /// End of the last entry known durable.
    synced: u64,
    /// Entries between `synced` and `written`, oldest first.
    unsynced: Vec<Pending>,
    unsynced_bytes: usize,
    /// An fsync failed: the entries after `synced` must be written again.
    rewrite: bool,
}

impl Writer {
    pub fn new(
        path: &Path,
        max_bytes: u64,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        Writer {
            path: path.to_path_buf(),
            rotated: PathBuf::from(rotated),
            max_bytes,
            store,
            metrics,
            file: None,
            written: 0,
            synced: 0,
            unsynced: Vec::new(),
            unsynced_bytes: 0,
            rewrite: false,
        }
    }

    /// Appends one whole entry, or nothing (the error says why). True when enough is
    /// unsynced that the caller should [`Writer::sync`] now.
    pub fn write(&mut self, entry: Pending) -> io::Result<bool> {
        let len = entry.encoded_len();
        self.prepare()?;
        if self.written > 0 && self.written + len > self.max_bytes {
            self.sync()?;
            self.rotate()?;
            self.prepare()?;
        }
        self.append(&entry, len)?;
        self.unsynced_bytes += entry.data.len();
        self.unsynced.push(entry);
        Ok(self.unsynced_bytes >= SYNC_AFTER_BYTES)
    }

    /// Makes every entry written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced.is_empty() && !self.rewrite {
            return Ok(());
        }
        let file = self.prepare()?;
        if let Err(e) = file.sync() {
            self.rewrite = true;
            return Err(e);
        }
        self.synced = self.written;
        self.unsynced.clear();
        self.unsynced_bytes = 0;
        Ok(())
    }

    /// Opens the file if needed and brings it back to `written`: cuts a torn tail
    /// left by a failed write, and writes again what a failed fsync may have lost.
    fn prepare(&mut self) -> io::Result<&mut Box<dyn StoreFile>> {
        if self.file.is_none() {
            self.open()?;
        }
        let file = self.file.as_mut().expect("opened above");
        let size = file.size()?;
        if size > self.written {
            file.set_len(self.written)?;
        } else if size < self.written {
            tracing::warn!(dead_letter = %self.path.display(), expected = self.written, size, "The dead-letter file was cut short by something else; writing its unsynced entries again.");
            self.synced = self.synced.min(size);
            self.written = size;
            self.rewrite = true;
        }
        if self.rewrite {
            file.set_len(self.synced)?;
            self.written = self.synced;
            for i in 0..self.unsynced.len() {
                let entry = self.unsynced[i].clone();
                self.append(&entry, entry.encoded_len())?;
            }
            self.rewrite = false;
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Opens (or creates) the file, dropping a torn entry that a crash left at its
    /// end: its line was never acknowledged, so it is read and dead-lettered again.
    fn open(&mut self) -> io::Result<()> {
        let mut file = self.store.append(&self.path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open the dead-letter file {}: {e}",
                    self.path.display()
                ),
            )
        })?;
        let size = file.size()?;
        let whole = end_of_last_line(&*file, size)?;
        if whole < size {
            file.set_len(whole)?;
            tracing::warn!(dead_letter = %self.path.display(), bytes = size - whole, "Dropped a torn entry at the end of the dead-letter file, left by a crash; its line was never acknowledged and is dead-lettered again.");
        }
        self.file = Some(file);
        self.written = whole;
        self.synced = whole;
        Ok(())
    }

    /// Streams one entry to the file; on any error cuts the file back to `written`.
    fn append(&mut self, entry: &Pending, len: u64) -> io::Result<()> {
        let file = self.file.as_mut().expect("prepared");
        let mut w = BufWriter::with_capacity(WRITE_BUFFER, &mut **file);
        let result = entry.encode_to(&mut w).and_then(|()| w.flush());
        // Dropping a BufWriter flushes it: after an error, take the rest back instead.
        let _ = w.into_parts();
        match result {
            Ok(()) => {
                self.written += len;
                Ok(())
            }
            Err(e) => {
                // If this fails too, `prepare` cuts the tail before the next write.
                let _ = file.set_len(self.written);
                Err(e)
            }
        }
    }

    /// The file is full: it becomes the one `.1` file (an older `.1` is dropped, its
    /// entries counted) and a new file starts. Called with everything synced.
    fn rotate(&mut self) -> io::Result<()> {
        let dropped = match self.store.open_read(&self.rotated) {
            Ok(r) => Some(count_lines(r)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        self.store.rename(&self.path, &self.rotated)?;
        self.file = None;
        let _ = self.store.sync_dir(crate::config::parent_dir(&self.path));
        match dropped {
            Some(entries) => {
                self.metrics.dead_letter_entries_dropped.inc_by(entries);
                tracing::error!(dead_letter = %self.path.display(), rotated_to = %self.rotated.display(), entries_dropped = entries, max_bytes = self.max_bytes, "The dead-letter file reached --dead-letter-max-bytes and rotated; the older rotated file was dropped with its entries.");
            }
            None => {
                tracing::warn!(dead_letter = %self.path.display(), rotated_to = %self.rotated.display(), max_bytes = self.max_bytes, "The dead-letter file reached --dead-letter-max-bytes and rotated.");
            }
        }
        Ok(())
    }
}

/// The offset just after the file's last `\n` (0 when it has none): read backwards in
/// small chunks, so a huge torn entry costs no memory.
fn end_of_last_line(file: &dyn StoreFile, size: u64) -> io::Result<u64> {
    let mut buf = vec![0; WRITE_BUFFER];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        read_exact_at(file, chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn read_exact_at(file: &dyn StoreFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Entries in a dead-letter file: its lines, counted while streaming through it.
fn count_lines(mut r: Box<dyn Read + Send>) -> io::Result<u64> {
    let mut buf = vec![0; WRITE_BUFFER];
    let mut lines = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(lines),
            Ok(n) => lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
