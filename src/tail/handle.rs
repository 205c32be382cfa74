//! handle: one open file — check, read, hand over lines.
//!
//! A [`Handle`] is a file followed through the descriptor it was opened with, never
//! through its path, until the follower retires it. Each read is bracketed by checks
//! (docs/design.md#files-and-lines): `fstat` before it (a size below the offset is a truncation, seen before
//! any byte is read; the first bytes are compared too, since a file truncated and
//! written again past the offset while we waited has a size that looks fine), and the
//! same checks after it, before its lines are handed on — so a read never straddles a
//! truncation and bytes of two contents are never joined into one line.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use super::discovery::mtime_ns;
use super::framing::Framer;
use crate::handover::{Line, SourceId};
use crate::progress::{Chain, FileKey, Identity, Progress};

/// Bytes read per call before control returns to the async shell, so a huge backlog
/// is handed downstream (and back-pressured) in steps of about a batch.
pub const POLL_BUDGET: usize = 256 * 1024;

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Bytes were read (and their complete lines handed on); there may be more.
    Data(usize),
    /// Bytes were read, every byte the file held at the check before the read: the
    /// caller need not come back before the file changes (a second read at once would
    /// only find the end, at the price of another round of checks).
    ToEnd(usize),
    /// Nothing more in the file now.
    AtEnd,
    /// The content this handle was reading is gone (truncated, maybe written again):
    /// nothing was read; the follower decides where the rest is.
    Truncated,
    /// The duplicate window is full: nothing was read, and this says nothing about
    /// the end of the file.
    WindowFull,
}

/// Where a handle stands, for retiring rotated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Bytes may be left to read.
    Reading,
    /// Read to its end; unchanged (size and modification time) since `since`.
    AtEnd {
        since: Instant,
        size: u64,
        mtime_ns: u64,
    },
}

/// One file being read.
#[derive(Debug)]
pub struct Handle {
    pub key: FileKey,
    pub file: File,
    pub identity: Identity,
    /// Where the file was last seen (it follows the file through renames).
    pub path: PathBuf,
    pub framer: Framer,
    pub phase: Phase,
    /// No name links to it any more (`nlink` 0 at the last `fstat`).
    pub deleted: bool,
}

impl Handle {
    /// Takes the file's identity (once) and starts reading it at `offset`; the ledger
    /// learns of it (with `--read-from end` this is what gets the first checkpoint
    /// written before anything is acknowledged).
    // Each is a different thing the handle and the ledger need at once; a struct of
    // them would exist only for this call.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        (key, source): (FileKey, SourceId),
        chain: &Chain,
        file: File,
        meta: &Metadata,
        path: &Path,
        offset: u64,
        progress: &Progress,
    ) -> io::Result<Handle> {
        let identity = Identity::of(&file, meta)?;
        progress.open(key, chain, &identity, path, offset);
        progress.seen(key, meta.len(), mtime_ns(meta));
        Ok(Handle {
            key,
            file,
            identity,
            path: path.to_path_buf(),
            framer: Framer::new(offset).with_source(source),
            phase: Phase::Reading,
            deleted: false,
        })
    }

    /// The same content goes on in another file (logrotate's copy of it): read it
    /// from there, from `offset` on, under the same key. Returns the descriptor it
    /// read through until now (the truncated file, read again as new content).
    pub fn continue_in(
        &mut self,
        file: File,
        meta: &Metadata,
        path: &Path,
        offset: u64,
        progress: &Progress,
    ) -> io::Result<File> {
        self.identity = Identity::of(&file, meta)?;
        let before = std::mem::replace(&mut self.file, file);
        self.path = path.to_path_buf();
        self.framer = Framer::new(offset).with_source(self.framer.source);
        self.phase = Phase::Reading;
        progress.set_identity(self.key, &self.identity);
        progress.set_path(self.key, path);
        progress.read_to(self.key, offset);
        Ok(before)
    }

    /// Offset of the first byte not yet part of a handed-on line.
    pub fn line_offset(&self) -> u64 {
        self.framer.line_offset()
    }

    /// True once read to its end.
    pub fn at_end(&self) -> bool {
        matches!(self.phase, Phase::AtEnd { .. })
    }

    /// `fstat` of the handle, recorded in the ledger. Returns the metadata and whether
    /// the content is still the one being read.
    fn check(&mut self, progress: &Progress) -> io::Result<(Metadata, bool)> {
        let meta = self.file.metadata()?;
        progress.seen(self.key, meta.len(), mtime_ns(&meta));
        self.deleted = meta.nlink() == 0;
        let same = meta.len() >= self.framer.read_offset()
            && self.identity.starts_like(&self.file, meta.len())?;
        Ok((meta, same))
    }

    /// Reads up to `budget` bytes (at most [`POLL_BUDGET`]) of what the file holds now.
    pub fn read(
        &mut self,
        progress: &Progress,
        budget: u64,
        out: &mut Vec<Line>,
    ) -> io::Result<Read> {
        if budget == 0 {
            return Ok(Read::WindowFull);
        }
        let (meta, same) = self.check(progress)?;
        if !same {
            return Ok(Read::Truncated);
        }
        let at = self.framer.read_offset();
        // Only the line in progress would be ahead of the durable checkpoint: it is read
        // to its end however long, and no further. So is a line already longer than the
        // whole window when it is all its own file holds ahead: it could never fit, and
        // waiting until no file had anything ahead would wait on a busy neighbour for
        // ever. Otherwise the ledger's room already counts it, so the window holds once
        // it ends.
        let in_progress = at - self.framer.line_offset();
        let one_line = in_progress > 0
            && (progress.read_ahead() == 0
                || (in_progress >= progress.window() && progress.read_ahead_of(self.key) == 0));
        let budget = if one_line { POLL_BUDGET as u64 } else { budget };
        let want = (meta.len() - at).min(budget).min(POLL_BUDGET as u64) as usize;
        if want == 0 {
            self.reached_end(&meta);
            return Ok(Read::AtEnd);
        }
        let mut total = 0;
        while total < want {
            let n = self.framer.fill(&self.file, want - total)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        // fstat-then-read races with a truncation: look again before handing on.
        let (_, same) = self.check(progress)?;
        if !same {
            self.framer.unfill(total);
            return Ok(Read::Truncated);
        }
        if one_line {
            if let Some(i) = memchr::memchr(b'\n', self.framer.filled(total)) {
                self.framer.unfill(total - i - 1);
                total = i + 1;
            }
        }
        if self.identity.extend(at, self.framer.filled(total)) {
            progress.set_identity(self.key, &self.identity);
        }
        self.framer.frame(self.key, out);
        // Up to the last complete line; the bytes of the line in progress after it are
        // in no batch yet, but count against the window (see `Progress::room`).
        let line_offset = self.framer.line_offset();
        let held = self.framer.read_offset() - line_offset;
        progress.read_to_holding(self.key, line_offset, held);
        self.phase = Phase::Reading;
        let available = meta.len() - at;
        Ok(if total == 0 {
            Read::AtEnd
        } else if total as u64 == available {
            Read::ToEnd(total)
        } else {
            Read::Data(total)
        })
    }

    fn reached_end(&mut self, meta: &Metadata) {
        let (size, mtime) = (meta.len(), mtime_ns(meta));
        match self.phase {
            Phase::AtEnd {
                size: s,
                mtime_ns: m,
                ..
            } if s == size && m == mtime => {}
            _ => {
                self.phase = Phase::AtEnd {
                    since: Instant::now(),
                    size,
                    mtime_ns: mtime,
                }
            }
        }
    }

    /// True when read to its end and unchanged for `wait`.
    pub fn quiet_for(&self, wait: std::time::Duration) -> bool {
        matches!(self.phase, Phase::AtEnd { since, .. } if since.elapsed() >= wait)
    }

    /// The file will get no more bytes that we will read: hand on its partial last
    /// line (with `\n` appended) and tell the ledger.
    pub fn finish(&mut self, progress: &Progress, out: &mut Vec<Line>) {
        self.framer.finish(self.key, out);
        progress.finish(self.key, self.framer.read_offset());
    }
}
