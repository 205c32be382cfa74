//! tail: the log file on disk → [`Line`]s, complete lines only, in file order.
//!
//! Input: the path of one JSON-lines file (and, on restart, the checkpoint's entries).
//! Output: `Vec<Line>` chunks on a bounded channel to the batch stage. A slow Firehose
//! fills that channel and stops the reader: the file on disk is the buffer.
//!
//! Guarantees (DESIGN §5):
//! - Only complete lines leave; a partial last line waits for its `\n`, except at the
//!   very end (drain, or a rotated file being retired), where it leaves with a `\n`
//!   appended rather than being lost.
//! - Rename rotation (Ruby `Logger`, logrotate `create`): the old file is read to its
//!   end with no timer, and retired only once the writer has provably moved on (the new
//!   file has bytes), then the new file is read from 0. A deleted file is no proof: the
//!   app may still write through its open handle, so it is read until a new file has
//!   bytes or the drain ends.
//! - copytruncate: a size below the read offset starts the file again at 0.
//! - Restart: the checkpointed file is found by identity among its rotated siblings,
//!   its rest is read, then every newer sibling, then the current file.
//!
//! [`Follower`] is plain synchronous code (property-tested against a model in
//! `tests`); [`run`] is the thin async shell that wakes it on inotify events (through
//! `notify`, watching the parent directory) and on a slow poll.

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::config::{parent_dir, ReadFrom};
use crate::metrics::Metrics;
use crate::progress::{FileEntry, FileKey, Identity, Progress};

/// Firehose's per-record limit: 1,000 KiB of data (Firehose quotas page). A line
/// (with its `\n`) above this can never be a record.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// How much of an oversize line is kept for the dead-letter file. Bounds memory
/// whatever the writer does (a 1 GiB line without a newline must not be 1 GiB of RSS).
pub const KEEP_OVERSIZE_BYTES: usize = 4 * 1024 * 1024;

/// One `read(2)` per this many bytes: a backlog costs a syscall per ~200 lines, and
/// the buffer stays below glibc's mmap threshold (128 KiB), so it is recycled from the
/// heap rather than mapped and zeroed by the kernel each time. A read buffer lives as
/// long as any of its lines is in flight.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes read per `poll` before control returns to the async shell, so a huge
/// backlog is handed downstream (and back-pressured) in steps of about a batch.
const POLL_BUDGET: usize = 256 * 1024;

/// A file's identity: the first bytes' hash tells a re-created file (or a reused
/// inode) from the one in the checkpoint.
pub const FINGERPRINT_LEN: u64 = 256;

/// The slow poll behind inotify: catches what events miss (an overflowed event queue,
/// a filesystem that sends none). Every second without inotify; every five with it,
/// where it is only a safety net — an idle sidecar in every pod should cost nothing.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
const POLL_INTERVAL_WITH_INOTIFY: Duration = Duration::from_secs(5);

/// How long a wake-up waits for more writes before reading (see `run`).
const SETTLE: Duration = Duration::from_millis(25);

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub file: FileKey,
    /// File offset of the line's first byte.
    pub start: u64,
    /// File offset just after the line (after its `\n`, if the file has one).
    pub end: u64,
    /// The line with its trailing `\n` (appended when the file ended without one);
    /// for an oversize line, only its first [`KEEP_OVERSIZE_BYTES`].
    pub data: Bytes,
    /// Size of the whole line with its `\n`; differs from `data.len()` only when oversize
    /// and cut.
    pub size: u64,
}

impl Line {
    /// True when the line can never be a Firehose record.
    pub fn is_oversize(&self) -> bool {
        self.size > MAX_RECORD_BYTES as u64
    }
}

impl Identity {
    /// Reads the identity of an open file.
    pub fn of(file: &File) -> io::Result<Identity> {
        let meta = file.metadata()?;
        let fp_len = meta.len().min(FINGERPRINT_LEN);
        let fp_hash = fingerprint(file, fp_len)?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            fp_len,
            fp_hash,
        })
    }

    /// True when `file` (with `meta`) is the file this identity was taken from.
    pub fn matches(&self, file: &File, meta: &Metadata) -> io::Result<bool> {
        if meta.dev() != self.dev || meta.ino() != self.ino || meta.len() < self.fp_len {
            return Ok(false);
        }
        Ok(fingerprint(file, self.fp_len)? == self.fp_hash)
    }
}

/// FNV-1a over the first `len` bytes: stable across versions and platforms (the
/// checkpoint outlives the binary), and a few lines instead of a dependency.
fn fingerprint(file: &File, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

/// Splits a byte stream into lines without copying them: each [`Line::data`] is a
/// slice of the read buffer it arrived in.
#[derive(Debug)]
pub struct Framer {
    /// Bytes read but not yet part of a complete line.
    buf: BytesMut,
    /// File offset of `buf[0]`.
    offset: u64,
    /// How much of `buf` is known to hold no `\n` (so a long partial line is not
    /// scanned again on every read).
    scanned: usize,
    /// An oversize line in progress past [`KEEP_OVERSIZE_BYTES`]: its start, what was
    /// kept of it, and how many bytes were dropped after that.
    oversize: Option<(u64, Bytes, u64)>,
}

impl Framer {
    pub fn new(offset: u64) -> Framer {
        Framer {
            buf: BytesMut::new(),
            offset,
            scanned: 0,
            oversize: None,
        }
    }

    /// Offset just after the bytes read so far (the file position).
    pub fn read_offset(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Offset of the first byte not yet part of an emitted line.
    pub fn line_offset(&self) -> u64 {
        self.oversize.as_ref().map_or(self.offset, |o| o.0)
    }

    /// One `read` from `r`; appends the complete lines found. Returns the bytes read
    /// (0 at end of file).
    pub fn read_from(
        &mut self,
        r: &mut impl Read,
        key: FileKey,
        out: &mut Vec<Line>,
        want: usize,
    ) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + want.clamp(1, READ_CHUNK), 0);
        let n = loop {
            match r.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        self.frame(key, out);
        Ok(n)
    }

    /// Appends `data` as if read from the file (the framing tests feed it this way).
    pub fn push(&mut self, data: &[u8], key: FileKey, out: &mut Vec<Line>) {
        self.buf.extend_from_slice(data);
        self.frame(key, out);
    }

    fn frame(&mut self, key: FileKey, out: &mut Vec<Line>) {
        while let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let take = self.scanned + i + 1;
            let data = self.buf.split_to(take).freeze();
            let end = self.offset + take as u64;
            self.offset = end;
            self.scanned = 0;
            out.push(match self.oversize.take() {
                None => Line {
                    file: key,
                    start: end - take as u64,
                    end,
                    size: take as u64,
                    data,
                },
                Some((start, kept, _dropped)) => Line {
                    file: key,
                    start,
                    end,
                    size: end - start,
                    data: kept,
                },
            });
        }
        self.scanned = self.buf.len();
        self.bound_partial();
    }

    /// Keeps the first [`KEEP_OVERSIZE_BYTES`] of a line that has no end in sight and
    /// drops the rest, remembering its true size.
    fn bound_partial(&mut self) {
        if self.oversize.is_some() {
            let n = self.buf.len() as u64;
            self.buf.clear();
            self.offset += n;
            self.scanned = 0;
            if let Some(o) = self.oversize.as_mut() {
                o.2 += n;
            }
        } else if self.buf.len() > KEEP_OVERSIZE_BYTES {
            let start = self.offset;
            let kept = self.buf.split_to(KEEP_OVERSIZE_BYTES).freeze();
            let dropped = self.buf.len() as u64;
            self.buf.clear();
            self.offset = start + KEEP_OVERSIZE_BYTES as u64 + dropped;
            self.scanned = 0;
            self.oversize = Some((start, kept, dropped));
        }
    }

    /// Emits the partial last line, if any, with a `\n` appended: the file will get no
    /// more bytes that we will read.
    pub fn finish(&mut self, key: FileKey, out: &mut Vec<Line>) {
        let partial = self.buf.split();
        let end = self.offset + partial.len() as u64;
        self.scanned = 0;
        match self.oversize.take() {
            Some((start, kept, _)) => out.push(Line {
                file: key,
                start,
                end,
                size: end - start + 1,
                data: kept,
            }),
            None if !partial.is_empty() => {
                let mut data = partial;
                data.extend_from_slice(b"\n");
                out.push(Line {
                    file: key,
                    start: self.offset,
                    end,
                    size: data.len() as u64,
                    data: data.freeze(),
                });
            }
            None => {}
        }
        self.offset = end;
    }
}

/// A file being read.
struct Tracked {
    key: FileKey,
    file: File,
    identity: Identity,
    path: PathBuf,
    framer: Framer,
}

impl Tracked {
    /// Starts reading an open file at `offset` (`None`: at its end, for --read-from end).
    fn new(mut file: File, path: &Path, key: FileKey, offset: Option<u64>) -> io::Result<Tracked> {
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is a directory, not a log file",
                path.display()
            )));
        }
        let identity = Identity::of(&file)?;
        let offset = offset.unwrap_or(meta.len());
        file.seek(SeekFrom::Start(offset))?;
        Ok(Tracked {
            key,
            file,
            identity,
            path: path.to_path_buf(),
            framer: Framer::new(offset),
        })
    }

    /// Reads up to [`POLL_BUDGET`] bytes; returns how many.
    fn read(&mut self, progress: &Progress, out: &mut Vec<Line>) -> io::Result<usize> {
        self.read_up_to(progress, out, progress.room())
    }

    /// Reads up to `budget` bytes (and at most [`POLL_BUDGET`]); returns how many.
    fn read_up_to(
        &mut self,
        progress: &Progress,
        out: &mut Vec<Line>,
        budget: u64,
    ) -> io::Result<usize> {
        // Read what the file holds now, no more: a small append costs a small buffer
        // (not a fresh 128 KiB one, which glibc would mmap and the kernel zero), and
        // the end of the file costs no read(2) that returns 0.
        let size = self.file.metadata()?.len();
        // Never past the duplicate window (DESIGN §7): what is read ahead of the
        // durable checkpoint is what a restart would send again.
        let budget = budget.min(POLL_BUDGET as u64) as usize;
        let available = (size.saturating_sub(self.framer.read_offset()) as usize).min(budget);
        let mut total = 0;
        while total < available {
            let n = self
                .framer
                .read_from(&mut self.file, self.key, out, available - total)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        if total > 0 {
            if self.identity.fp_len < FINGERPRINT_LEN {
                self.identity = Identity::of(&self.file)?;
                progress.set_identity(self.key, &self.identity);
            }
            progress.read_to(self.key, self.framer.read_offset());
        }
        Ok(total)
    }

    /// False when the file's first bytes changed under us: truncated and written past
    /// our offset again before we looked (a size check alone would miss it).
    fn still_same_start(&self, len: u64) -> io::Result<bool> {
        match self.identity.fp_len {
            0 => Ok(true),
            n if len < n => Ok(false),
            n => Ok(fingerprint(&self.file, n)? == self.identity.fp_hash),
        }
    }

    fn has_bytes(&self) -> bool {
        self.file.metadata().map(|m| m.len() > 0).unwrap_or(false)
    }
}

/// Follows one path through rotations, truncations and restarts.
pub struct Follower {
    path: PathBuf,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    next_key: FileKey,
    /// The file at `path`, once it exists.
    current: Option<Tracked>,
    /// Older files still being finished, oldest first.
    rotated: VecDeque<Tracked>,
    /// Where to start the first file when there is no checkpoint: `None` = the end.
    first_offset: Option<Option<u64>>,
    /// The last file that was at the path, with its modification time, until the next
    /// file at the path is opened.
    last_current: Option<(Identity, (i64, i64))>,
    /// Files recently finished: never taken for a missed rotation (modification times
    /// tie within the clock's granularity, so order alone cannot rule them out).
    retired: VecDeque<Identity>,
}

/// How many finished files [`Follower`] remembers; more than any rotation scheme keeps
/// uncompressed beside the file.
const RETIRED_MEMORY: usize = 32;

impl Follower {
    /// Starts following `path`: from the checkpoint's entries when there are any, else
    /// per `read_from` for a file that exists now (a file that appears later is new and
    /// read from 0).
    pub fn new(
        path: &Path,
        read_from: ReadFrom,
        checkpoint: &[FileEntry],
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Follower> {
        let mut f = Follower {
            path: path.to_path_buf(),
            progress,
            metrics,
            next_key: 0,
            current: None,
            rotated: VecDeque::new(),
            first_offset: Some(match read_from {
                ReadFrom::Beginning => Some(0),
                ReadFrom::End => None,
            }),
            last_current: None,
            retired: VecDeque::new(),
        };
        if !checkpoint.is_empty() {
            f.resume(checkpoint)?;
        }
        Ok(f)
    }

    fn track(&mut self, path: &Path, offset: Option<u64>) -> io::Result<Tracked> {
        self.track_file(File::open(path)?, path, offset)
    }

    /// Tracks a file already open (so a rename between looking and opening cannot
    /// swap it for another).
    fn track_file(&mut self, file: File, path: &Path, offset: Option<u64>) -> io::Result<Tracked> {
        let t = Tracked::new(file, path, self.next_key, offset)?;
        self.next_key += 1;
        self.progress
            .open(t.key, &t.identity, &t.path, t.framer.line_offset());
        self.metrics.files_opened.inc();
        Ok(t)
    }

    /// Reads what is available, up to a budget. Returns true when it stopped because of
    /// the budget (call again at once), false when every file is at its end.
    pub fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        // No room in the duplicate window: nothing is read, so a read of 0 below always
        // means the end of a file, never a full window.
        if self.progress.room() == 0 {
            return Ok(true);
        }
        if self.poll_rotated(out)? {
            return Ok(true);
        }
        if self.current.is_none() && !self.open_current()? {
            return Ok(false);
        }
        let Some(cur) = self.current.as_mut() else {
            return Ok(false);
        };
        if cur.read(&self.progress, out)? > 0 {
            return Ok(true);
        }
        self.check_path(out)
    }

    /// Finishes rotated files, oldest first. True when it read bytes.
    fn poll_rotated(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        while let Some(old) = self.rotated.front_mut() {
            if old.read(&self.progress, out)? > 0 {
                return Ok(true);
            }
            // The writer has moved on once the new file has bytes (Logger and logrotate
            // write the old file to its end before that). Not when the old file was
            // deleted: the app may still be writing through its open handle.
            let moved_on = self.current.as_ref().is_some_and(Tracked::has_bytes)
                || (self.current.is_none()
                    && std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0));
            if !moved_on {
                return Ok(false);
            }
            // Read once more: bytes may have landed between the read above and the check.
            if old.read(&self.progress, out)? > 0 {
                return Ok(true);
            }
            let mut old = self.rotated.pop_front().expect("front exists");
            self.retire(&mut old, out);
        }
        Ok(false)
    }

    fn retire(&mut self, old: &mut Tracked, out: &mut Vec<Line>) {
        old.framer.finish(old.key, out);
        self.progress.finish(old.key, old.framer.read_offset());
        // An empty fingerprint would match any file that reuses the inode.
        if old.identity.fp_len > 0 {
            if self.retired.len() == RETIRED_MEMORY {
                self.retired.pop_front();
            }
            self.retired.push_back(old.identity.clone());
        }
        tracing::info!(
            file = %old.path.display(),
            end_offset = old.framer.read_offset(),
            "Finished reading rotated file."
        );
    }

    /// Opens the file at the path if it exists. True when it is open.
    fn open_current(&mut self) -> io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A file that did not exist when we started is read from its beginning
                // when it appears, whatever --read-from says: all of it is new.
                self.first_offset = Some(Some(0));
                return Ok(false);
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot open {}: {e}", self.path.display()),
                ))
            }
        };
        // Opened first, then look: a rotation racing with the open shows up as a missed
        // sibling rather than being skipped. Missed files are tracked before the new
        // current one, so keys (and the checkpoint's order) follow the rotation order.
        if let Some(last) = self.last_current.take() {
            let meta = file.metadata()?;
            let missed = self.missed_rotations(&last, (meta.dev(), meta.ino()))?;
            self.rotated.extend(missed);
        }
        let offset = self.first_offset.take().unwrap_or(Some(0));
        let path = self.path.clone();
        let t = self.track_file(file, &path, offset)?;
        tracing::info!(file = %self.path.display(), offset = t.framer.read_offset(), "Following file.");
        self.current = Some(t);
        Ok(true)
    }

    /// At the end of the current file: has the path been rotated, deleted or truncated?
    /// True when there may be more to read at once.
    fn check_path(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        let cur = self.current.as_mut().expect("current is open");
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Renamed away (logrotate before `create`) or deleted: finish it from the
                // open handle, then wait for a new file at the path.
                tracing::info!(file = %self.path.display(), "File moved or deleted; finishing it and waiting for a new one.");
                self.move_current_to_rotated()?;
                Ok(true)
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot stat {}: {e}", self.path.display()),
            )),
            Ok(meta) if meta.dev() != cur.identity.dev || meta.ino() != cur.identity.ino => {
                self.metrics.rotations.inc();
                tracing::info!(file = %self.path.display(), old_end_offset = cur.framer.read_offset(), "Rotation followed; finishing the old file, then reading the new one from offset 0.");
                self.move_current_to_rotated()?;
                self.first_offset = Some(Some(0));
                Ok(true)
            }
            Ok(meta)
                if meta.len() < cur.framer.read_offset()
                    || !cur.still_same_start(meta.len())? =>
            {
                self.truncated(out)?;
                Ok(true)
            }
            Ok(_) => Ok(false),
        }
    }

    /// Several rotations while we were behind (Firehose down, a slow pipeline): files
    /// rotated after the last file we had at the path, that we never opened, are now
    /// among the siblings. Returns them opened at 0, oldest first, to be read after it.
    fn missed_rotations(
        &mut self,
        last: &(Identity, (i64, i64)),
        opening: (u64, u64),
    ) -> io::Result<Vec<Tracked>> {
        let candidates = self.candidates()?;
        let same = |c: &Candidate, id: &Identity| c.meta.dev() == id.dev && c.meta.ino() == id.ino;
        let last_order = match candidates.iter().find(|c| same(c, &last.0)) {
            Some(c) => rotation_order(c),
            // Deleted: only its last write time is known.
            None => (last.1 .0, last.1 .1, 0, String::new()),
        };
        let mut missed: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.path != self.path && rotation_order(c) > last_order)
            .filter(|c| (c.meta.dev(), c.meta.ino()) != opening)
            .filter(|c| {
                !self
                    .rotated
                    .iter()
                    .chain(self.current.iter())
                    .any(|t| same(c, &t.identity))
            })
            .filter(|c| {
                !self
                    .retired
                    .iter()
                    .any(|id| id.matches(&c.file, &c.meta).unwrap_or(false))
            })
            .collect();
        missed.sort_by_key(|c| rotation_order(c));
        let mut opened = Vec::new();
        for c in missed {
            tracing::info!(file = %c.path.display(), "Found a file rotated while firetail was behind; reading it from offset 0.");
            opened.push(self.track(&c.path, Some(0))?);
        }
        Ok(opened)
    }

    /// The current file leaves the path (rotated, moved, deleted): finish it as a
    /// rotated file and remember it, to find files rotated after it that we missed.
    fn move_current_to_rotated(&mut self) -> io::Result<()> {
        let old = self.current.take().expect("current is open");
        let m = old.file.metadata()?;
        self.last_current = Some((old.identity.clone(), (m.mtime(), m.mtime_nsec())));
        self.rotated.push_back(old);
        Ok(())
    }

    /// copytruncate: the file shrank below what we read, or its first bytes changed.
    /// If logrotate's copy is among the siblings, the lines we had not read yet are
    /// read from the copy; only what was written between the copy and the truncate is
    /// gone for everyone. Then the file is read again from 0 under a new key.
    fn truncated(&mut self, out: &mut Vec<Line>) -> io::Result<()> {
        let mut old = self.current.take().expect("current is open");
        self.metrics.truncations.inc();
        let resume_at = old.framer.line_offset();
        match self.find_copy(&old, resume_at)? {
            Some(copy) => {
                // The partial line, if any, is whole in the copy: read it from there.
                self.progress.finish(old.key, resume_at);
                let t = self.track(&copy, Some(resume_at))?;
                tracing::warn!(file = %self.path.display(), copy = %copy.display(), offset = resume_at, "File truncated (copytruncate); reading the rest from its copy, then the file again from offset 0. Lines written between the copy and the truncate cannot be recovered.");
                self.rotated.push_back(t);
            }
            None => {
                old.framer.finish(old.key, out);
                self.progress.finish(old.key, old.framer.read_offset());
                tracing::warn!(
                    file = %self.path.display(),
                    read_offset = old.framer.read_offset(),
                    "File truncated (copytruncate) and no copy found; reading it again from offset 0. Lines written between the copy and the truncate cannot be recovered."
                );
            }
        }
        let path = self.path.clone();
        self.current = Some(self.track(&path, Some(0))?);
        Ok(())
    }

    /// A sibling that starts like `old` did and holds at least `offset` bytes: the copy
    /// copytruncate made.
    fn find_copy(&self, old: &Tracked, offset: u64) -> io::Result<Option<PathBuf>> {
        let id = &old.identity;
        if id.fp_len == 0 {
            return Ok(None);
        }
        Ok(self
            .candidates()?
            .into_iter()
            .filter(|c| c.path != self.path && c.meta.len() >= offset.max(id.fp_len))
            .find(|c| fingerprint(&c.file, id.fp_len).ok() == Some(id.fp_hash))
            .map(|c| c.path))
    }
}

/// A file that may be the checkpointed one: the path itself or a rotated sibling.
struct Candidate {
    path: PathBuf,
    file: File,
    meta: Metadata,
}

impl Follower {
    /// Restart: place every checkpointed file that still exists (found by identity at
    /// the path or among its rotated siblings), every sibling rotated after the oldest of
    /// them, and the file at the path, in the order the writer wrote them.
    fn resume(&mut self, entries: &[FileEntry]) -> io::Result<()> {
        let candidates = self.candidates()?;
        // Where several entries land on one file, the lowest offset wins: duplicates
        // rather than loss.
        let mut found: Vec<(usize, u64)> = Vec::new();
        for entry in entries {
            let id = entry.identity();
            let by_identity = candidates
                .iter()
                .position(|c| id.matches(&c.file, &c.meta).unwrap_or(false));
            // copytruncate while firetail was down: the file's content now lives in a
            // copy with another inode but the same first bytes.
            let by_copy = || {
                (id.fp_len > 0).then(|| {
                    candidates.iter().position(|c| {
                        c.meta.len() >= entry.offset.max(id.fp_len)
                            && fingerprint(&c.file, id.fp_len).ok() == Some(id.fp_hash)
                    })
                })?
            };
            match by_identity.or_else(by_copy) {
                Some(i) => match found.iter_mut().find(|(j, _)| *j == i) {
                    Some(f) => f.1 = f.1.min(entry.offset),
                    None => found.push((i, entry.offset)),
                },
                None => {
                    self.metrics.checkpointed_files_missing.inc();
                    tracing::error!(
                        file = %entry.path.display(),
                        offset = entry.offset,
                        "Checkpointed file not found at the path or among its rotated siblings; its lines after this offset, if any, cannot be shipped."
                    );
                }
            }
        }
        let at_path = candidates.iter().position(|c| c.path == self.path);
        let oldest_rotated = found
            .iter()
            .filter(|(i, _)| Some(*i) != at_path)
            .map(|(i, _)| rotation_order(&candidates[*i]))
            .min();
        let mut rotated: Vec<(usize, u64)> = found
            .iter()
            .copied()
            .filter(|(i, _)| Some(*i) != at_path)
            .collect();
        if let Some(oldest) = oldest_rotated {
            for (i, c) in candidates.iter().enumerate() {
                let newer = rotation_order(c) > oldest;
                if newer && Some(i) != at_path && !found.iter().any(|(j, _)| *j == i) {
                    rotated.push((i, 0));
                }
            }
        }
        rotated.sort_by_key(|(i, _)| rotation_order(&candidates[*i]));
        for (i, offset) in rotated {
            let c = &candidates[i];
            let offset = checked_offset(c, offset);
            let t = self.track_file(c.file.try_clone()?, &c.path, Some(offset))?;
            tracing::info!(file = %c.path.display(), offset, "Resuming a file rotated while firetail was down.");
            self.rotated.push_back(t);
        }
        // The file at the path: its checkpointed offset, or 0 when it is newer than the
        // checkpoint (it appeared while firetail was down). Opened now, from the handle
        // looked at, so a rotation before the first read cannot put another file there.
        self.first_offset = Some(Some(0));
        if let Some(i) = at_path {
            let c = &candidates[i];
            let offset = found
                .iter()
                .find(|(j, _)| *j == i)
                .map_or(0, |(_, o)| checked_offset(c, *o));
            let t = self.track_file(c.file.try_clone()?, &c.path, Some(offset))?;
            tracing::info!(file = %c.path.display(), offset, "Following file.");
            self.first_offset = None;
            self.current = Some(t);
        }
        Ok(())
    }

    /// The path and its rotated siblings (`access.log.0`, `access.log.1`,
    /// `access.log-20261126`), not compressed ones: we cannot read those.
    fn candidates(&self) -> io::Result<Vec<Candidate>> {
        let dir = parent_dir(&self.path);
        let name = self
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let is_path = file_name == name;
            let is_sibling = (file_name.starts_with(&format!("{name}."))
                || file_name.starts_with(&format!("{name}-")))
                && !is_compressed(&file_name);
            if !is_path && !is_sibling {
                continue;
            }
            let path = if is_path {
                self.path.clone()
            } else {
                dir.join(&file_name)
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            if meta.is_file() {
                out.push(Candidate { path, file, meta });
            }
        }
        Ok(out)
    }

    /// Drain end: every file will get no more bytes that we will read. Emits partial last
    /// lines (with `\n` appended) and retires rotated files.
    pub fn finish(&mut self, out: &mut Vec<Line>) -> io::Result<()> {
        while let Some(mut old) = self.rotated.pop_front() {
            while old.read_up_to(&self.progress, out, u64::MAX)? > 0 {}
            self.retire(&mut old, out);
        }
        if let Some(cur) = self.current.as_mut() {
            while cur.read_up_to(&self.progress, out, u64::MAX)? > 0 {}
            cur.framer.finish(cur.key, out);
            self.progress.read_to(cur.key, cur.framer.read_offset());
        }
        Ok(())
    }
}

/// Older first: by modification time (the last write), then by the rotation suffix
/// (`access.log.1` is older than `access.log.0`; `-20261125` older than `-20261126`).
fn rotation_order(c: &Candidate) -> (i64, i64, i64, String) {
    let name = c.path.file_name().unwrap_or_default().to_string_lossy();
    let numeric = name
        .rsplit('.')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .map_or(0, |n| -n);
    (
        c.meta.mtime(),
        c.meta.mtime_nsec(),
        numeric,
        name.into_owned(),
    )
}

fn is_compressed(name: &str) -> bool {
    [".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".z", ".Z"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// A checkpointed offset beyond the file's size means it was truncated while we were
/// down: start again at 0 and say so.
fn checked_offset(c: &Candidate, offset: u64) -> u64 {
    if offset > c.meta.len() {
        tracing::warn!(file = %c.path.display(), offset, size = c.meta.len(), "Checkpointed offset is past the end of the file (truncated while firetail was down); reading it from offset 0.");
        0
    } else {
        offset
    }
}

/// The async shell: polls the follower whenever inotify says the directory changed
/// (or the slow poll fires), sends lines downstream, and on drain reads to the end,
/// waits for `quiet` without new bytes, finishes partial lines and returns — dropping
/// the sender, which is how the batch stage learns the input has ended.
pub async fn run(
    mut follower: Follower,
    tx: mpsc::Sender<Vec<Line>>,
    mut drain: watch::Receiver<bool>,
    quiet: Duration,
    following: Arc<std::sync::atomic::AtomicBool>,
) -> io::Result<()> {
    let wake = Arc::new(Notify::new());
    let watcher = watch_dir(&follower.path, wake.clone());
    let poll_every = if watcher.is_some() {
        POLL_INTERVAL_WITH_INOTIFY
    } else {
        POLL_INTERVAL
    };
    let metrics = follower.metrics.clone();
    let mut last_bytes: Option<Instant> = None;
    let mut drain_seen: Option<Instant> = None;
    let progress = follower.progress.clone();
    loop {
        // The duplicate window is full: wait for a durable checkpoint to free room.
        progress.wait_for_room().await;
        let mut lines = Vec::new();
        let more = follower.poll(&mut lines)?;
        // Ready once the path is watched and the first look is done — the file itself
        // may not exist yet: in a pod the app creates it only after this probe passes.
        following.store(true, std::sync::atomic::Ordering::Relaxed);
        if !lines.is_empty() {
            last_bytes = Some(Instant::now());
            metrics.lines_read.inc_by(lines.len() as u64);
            if tx.send(lines).await.is_err() {
                return Ok(());
            }
        }
        if more {
            tokio::task::yield_now().await;
            continue;
        }
        let draining = *drain.borrow();
        if draining {
            // The quiet period starts at the drain signal or at the last byte read,
            // whichever is later — also when the signal came while a send was held up
            // by back-pressure.
            let seen = *drain_seen.get_or_insert_with(Instant::now);
            let since = last_bytes.map_or(seen, |t| t.max(seen));
            let quiet_until = since + quiet;
            if Instant::now() >= quiet_until {
                let mut lines = Vec::new();
                follower.finish(&mut lines)?;
                metrics.lines_read.inc_by(lines.len() as u64);
                if !lines.is_empty() {
                    let _ = tx.send(lines).await;
                }
                tracing::info!("Drain: the file was quiet for the quiet period; reading stopped.");
                return Ok(());
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(quiet_until.min(Instant::now() + poll_every)) => {}
            }
        } else {
            tokio::select! {
                _ = wake.notified() => {
                    // An app writes line by line: let a burst of writes (and their
                    // inotify events) gather and read them in one go, rather than wake
                    // the pipeline per write. Far below --flush-interval; not in a drain.
                    tokio::select! {
                        _ = tokio::time::sleep(SETTLE) => {}
                        _ = drain.changed() => {}
                    }
                }
                _ = tokio::time::sleep(poll_every) => {}
                _ = drain.changed() => {}
            }
        }
    }
}

/// inotify on the parent directory (the file itself may not exist yet, and rotation
/// replaces it). Only events about the log file and its rotated siblings wake the tail:
/// the app's other files, and firetail's own checkpoint and dead-letter writes beside
/// it, do not. Failure is not fatal: the slow poll still finds everything.
fn watch_dir(path: &Path, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = parent_dir(path).to_path_buf();
    let name = path.file_name().unwrap_or_default().to_os_string();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let ours = event.paths.is_empty()
            || event.need_rescan()
            || event.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| n.as_encoded_bytes().starts_with(name.as_encoded_bytes()))
            });
        if ours {
            wake.notify_one();
        }
    };
    let dir = dir.as_path();
    let result = notify::recommended_watcher(handler)
        .and_then(|mut w| w.watch(dir, notify::RecursiveMode::NonRecursive).map(|_| w));
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch the directory with inotify; falling back to polling every second.");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_all(chunks: &[&[u8]]) -> (Vec<Line>, Framer) {
        let mut f = Framer::new(0);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, 7, &mut out);
        }
        (out, f)
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let (out, mut f) = frame_all(&[b"{\"a\":1}\n{\"b\"", b":2"]);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], b"{\"a\":1}\n");
        assert_eq!((out[0].start, out[0].end), (0, 8));
        assert_eq!(f.line_offset(), 8);
        let mut more = Vec::new();
        f.push(b"}\n", 7, &mut more);
        assert_eq!(&more[0].data[..], b"{\"b\":2}\n");
        assert_eq!((more[0].start, more[0].end), (8, 16));
    }

    #[test]
    fn finish_ships_the_partial_line_with_a_newline_appended() {
        let (_, mut f) = frame_all(&[b"abc"]);
        let mut out = Vec::new();
        f.finish(0, &mut out);
        assert_eq!(&out[0].data[..], b"abc\n");
        assert_eq!((out[0].start, out[0].end, out[0].size), (0, 3, 4));
        let mut none = Vec::new();
        f.finish(0, &mut none);
        assert!(none.is_empty(), "nothing left to finish");
    }

    #[test]
    fn a_huge_line_keeps_its_first_bytes_and_its_true_size() {
        let mut f = Framer::new(0);
        let mut out = Vec::new();
        let block = vec![b'x'; 1024 * 1024];
        for _ in 0..6 {
            f.push(&block, 0, &mut out);
        }
        f.push(b"\nnext\n", 0, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_oversize());
        assert_eq!(out[0].data.len(), KEEP_OVERSIZE_BYTES);
        assert_eq!(out[0].size, 6 * 1024 * 1024 + 1);
        assert_eq!(
            (out[1].start, &out[1].data[..]),
            (6 * 1024 * 1024 + 1, &b"next\n"[..])
        );
    }

    proptest! {
        /// However the bytes arrive (any split into reads), the framer emits exactly
        /// the complete lines, in order, with contiguous offsets, and keeps the rest.
        #[test]
        fn any_chunking_yields_the_same_lines(
            lines in prop::collection::vec(prop::collection::vec(b'a'..=b'z', 0..300), 0..60),
            tail in prop::collection::vec(b'a'..=b'z', 0..50),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let mut stream: Vec<u8> = Vec::new();
            for l in &lines {
                stream.extend_from_slice(l);
                stream.push(b'\n');
            }
            let complete = stream.len();
            stream.extend_from_slice(&tail);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let (out, f) = frame_all(&chunks);
            prop_assert_eq!(out.len(), lines.len());
            let mut offset = 0u64;
            for (line, want) in out.iter().zip(&lines) {
                prop_assert_eq!(line.start, offset);
                prop_assert_eq!(&line.data[..line.data.len() - 1], &want[..]);
                prop_assert_eq!(line.end - line.start, line.data.len() as u64);
                offset = line.end;
            }
            prop_assert_eq!(offset, complete as u64);
            prop_assert_eq!(f.line_offset(), complete as u64);
            prop_assert_eq!(f.read_offset(), stream.len() as u64);
        }
    }
}
