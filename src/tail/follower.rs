//! follower: one path followed through rotations, truncations and restarts, as a set
//! of open [`Handle`]s.
//!
//! The file at the path is the *current* one; files rotated away are kept open in
//! rotation order, oldest first, and read before it. The path is only used to discover
//! files (a new inode there is a rotation; a missing path is a rename or a deletion);
//! a file, once open, is read through its handle until it is retired:
//! - a rotated file is retired only when read to its end and then unchanged for
//!   `--rotate-wait` (late writers: several workers reopen at different times), or
//!   deleted and unchanged for a short grace (nobody can find it again by name); in a
//!   drain, when read to its end. At most [`MAX_FINISHED_OPEN`] finished files stay
//!   open; the oldest finished is retired first, with a WARN and a metric. A file not
//!   read to its end is never retired;
//! - a truncation (copytruncate) reads the rest from logrotate's copy, found among the
//!   siblings by its first bytes and a length ≥ the offset, then the truncated file
//!   from 0, through the same descriptor, under a new key;
//! - a new inode at the path makes every sibling the follower does not know a file
//!   rotated while it was behind (many renames between two polls): read from 0,
//!   oldest first, before the new file.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::discovery::{AtPath, Scope};
use super::handle::{Handle, Phase, Read};
use crate::config::ReadFrom;
use crate::handover::Line;
use crate::handover::SourceId;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::progress::{Chain, FileEntry, FileKey, Identity, Progress};

/// Finished rotated files kept open for late writers: more than any rotation scheme
/// produces within `--rotate-wait`, far below the open-files limit.
pub const MAX_FINISHED_OPEN: usize = 64;

/// A deleted file read to its end is retired once unchanged this long (or
/// `--rotate-wait`, if shorter): an app may still be finishing a write through its own
/// handle, but nobody can open it again.
const DELETED_GRACE: Duration = Duration::from_secs(1);

/// What the follower needs to know besides the ledger.
#[derive(Debug, Clone)]
pub struct TailSettings {
    pub path: PathBuf,
    pub read_from: ReadFrom,
    pub rotate_wait: Duration,
    /// firetail's own files (checkpoint, dead-letter): never shipped, whatever their
    /// names; files named like them plus a suffix (`.tmp`, `.1`) neither.
    pub own_files: Vec<PathBuf>,
    /// The source the path belongs to, and its name.
    pub source: SourceId,
    pub source_name: String,
}

/// Where the next file at the path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    /// Its end: `--read-from end`, for the file present at start with no checkpoint.
    End,
}

/// The file at the path.
// One per follower: boxing the handle would save nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Current {
    /// None yet (missing, or not a regular file): the next one starts here.
    Waiting(StartAt),
    Open(Handle),
}

/// A file deliberately not shipped (present before any checkpoint, or retired), as
/// last seen: a sibling that still looks like this needs no second look.
#[derive(Debug, Clone)]
pub(super) struct Known {
    pub size: u64,
    pub mtime_ns: u64,
    /// For a file that was read and let go: its identity and where reading stopped,
    /// so bytes a late writer adds afterwards are read from there, not from 0.
    pub read_to: Option<(Identity, u64)>,
}

/// Follows one path through rotations, truncations and restarts.
pub struct Follower {
    pub(super) scope: Scope,
    pub(super) rotate_wait: Duration,
    pub(super) progress: Arc<Progress>,
    pub(super) metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// The source and the path this follower follows, stamped on every file it opens.
    chain: Chain,
    source: SourceId,
    pub(super) current: Current,
    /// Files rotated away, oldest first.
    pub(super) rotated: VecDeque<Handle>,
    pub(super) known: HashMap<(u64, u64), Known>,
    /// Bytes read so far (the drain's quiet period restarts on any of them).
    bytes_read: u64,
    /// A scan missed something (a rename raced it, no descriptor was free), or a
    /// truncation happened: look again.
    pub(super) rescan: bool,
    /// When the siblings were last scanned (see [`SCAN_EVERY`]).
    pub(super) last_scan: Instant,
    /// The drain's last scan is done.
    drain_scanned: bool,
}

/// Siblings are also scanned this often without a rotation to prompt it: a copy made of
/// content firetail had not read yet, when the truncation left the size at the offset,
/// shows nowhere else. A few `stat`s per sibling every few seconds.
pub(super) const SCAN_EVERY: Duration = Duration::from_secs(5);

impl Follower {
    /// Starts following: from the checkpoint's entries when there are any; else the
    /// file at the path now per `read_from`, and every sibling present now is old.
    pub fn new(
        settings: &TailSettings,
        checkpoint: &[FileEntry],
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> io::Result<Follower> {
        let mut f = Follower {
            scope: Scope::new(&settings.path, &settings.own_files),
            rotate_wait: settings.rotate_wait,
            progress,
            metrics,
            health,
            chain: Chain::new(&settings.source_name, &settings.path),
            source: settings.source,
            current: Current::Waiting(StartAt::Beginning),
            rotated: VecDeque::new(),
            known: HashMap::new(),
            bytes_read: 0,
            rescan: false,
            last_scan: Instant::now(),
            drain_scanned: false,
        };
        if checkpoint.is_empty() {
            for c in f.scope.scan()? {
                if c.path != f.scope.path() {
                    f.remember(&c.meta);
                }
            }
            let start = match settings.read_from {
                ReadFrom::Beginning => StartAt::Beginning,
                ReadFrom::End => StartAt::End,
            };
            f.current = Current::Waiting(start);
            f.look_at_path()?;
        } else {
            f.resume(checkpoint)?;
        }
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        self.scope.path()
    }

    /// The directories to watch (the path's, and its symlink target's).
    pub fn watch_dirs(&self) -> Vec<(PathBuf, String)> {
        self.scope.dirs()
    }

    /// True while rotated files are open (their `--rotate-wait` needs a timer).
    pub fn has_rotated(&self) -> bool {
        !self.rotated.is_empty()
    }

    /// How long until the periodic sibling scan is due: the slow poll wakes no later,
    /// so the scan keeps its period, not the period plus a poll.
    pub fn scan_due_in(&self) -> Duration {
        SCAN_EVERY.saturating_sub(self.last_scan.elapsed())
    }

    /// Bytes read so far, partial lines included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Opens a handle at `offset` under the next key.
    pub(super) fn track(
        &mut self,
        file: File,
        meta: &Metadata,
        path: &Path,
        offset: u64,
    ) -> io::Result<Handle> {
        let key = self.progress.new_key();
        let h = Handle::open(
            (key, self.source),
            &self.chain,
            file,
            meta,
            path,
            offset,
            &self.progress,
        )?;
        self.metrics.files_opened.inc();
        Ok(h)
    }

    /// Reads what is available, up to a budget. True when there may be more at once
    /// (call again); false when every file is at its end.
    pub fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        // No room in the duplicate window: nothing is read, so no read below can be
        // mistaken for the end of a file.
        if self.progress.room() == 0 {
            return Ok(true);
        }
        self.look_at_path()?;
        if self.rescan || self.last_scan.elapsed() >= SCAN_EVERY {
            self.adopt_unknown_siblings()?;
        }
        if self.read_once(out, true)? {
            return Ok(true);
        }
        self.retire_done(out, false);
        Ok(false)
    }

    /// One read of the first file (oldest first) with bytes. True when it read, hit a
    /// full window or a truncation (call again). With `settle`, a read of the current
    /// file that took every byte it held counts as its end: the next wake-up reads on,
    /// rather than a second round of checks now (half the system calls of a wake-up
    /// at a steady rate). Rotated files are always read until a read finds their end,
    /// which is what starts their `--rotate-wait`.
    fn read_once(&mut self, out: &mut Vec<Line>, settle: bool) -> io::Result<bool> {
        for i in 0..self.rotated.len() {
            let budget = self.progress.room();
            match self.rotated[i].read(&self.progress, budget, out)? {
                Read::AtEnd => continue,
                Read::Data(n) | Read::ToEnd(n) => self.bytes_read += n as u64,
                Read::WindowFull => {}
                Read::Truncated => {
                    let old = self.rotated.remove(i).expect("index in range");
                    match self.truncated(old)? {
                        Ok((copy, fresh)) => {
                            self.rotated.insert(i, fresh);
                            if let Some(c) = copy {
                                self.rotated.insert(i, c);
                            }
                        }
                        Err(old) => {
                            self.rotated.insert(i, old);
                            return Ok(false);
                        }
                    }
                }
            }
            return Ok(true);
        }
        let Current::Open(cur) = &mut self.current else {
            return Ok(false);
        };
        match cur.read(&self.progress, self.progress.room(), out)? {
            Read::AtEnd => return Ok(false),
            Read::Data(n) => self.bytes_read += n as u64,
            Read::ToEnd(n) => {
                self.bytes_read += n as u64;
                return Ok(!settle);
            }
            Read::WindowFull => {}
            Read::Truncated => {
                let Current::Open(old) =
                    std::mem::replace(&mut self.current, Current::Waiting(StartAt::Beginning))
                else {
                    unreachable!("current is open")
                };
                match self.truncated(old)? {
                    Ok((copy, fresh)) => {
                        self.rotated.extend(copy);
                        self.current = Current::Open(fresh);
                    }
                    Err(old) => {
                        self.current = Current::Open(old);
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Drain end, one bounded step at a time (like [`Follower::poll`]): every open file
    /// is read to its end first; then partial last lines are handed on (with `\n`) and
    /// rotated files retired. True while there is more to do.
    pub fn finish(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        if !self.drain_scanned {
            self.drain_scanned = true;
            self.look_at_path()?;
            self.adopt_unknown_siblings()?;
        }
        if self.progress.room() == 0 || self.read_once(out, false)? {
            return Ok(true);
        }
        self.retire_done(out, true);
        if let Current::Open(cur) = &mut self.current {
            // Not `Progress::finish`: the file stays in the checkpoint, so a restart
            // goes on from here rather than taking it for a new file.
            cur.framer.finish(cur.key, out);
            self.progress.read_to(cur.key, cur.framer.read_offset());
        }
        Ok(false)
    }

    /// Retires rotated files that are done (all of them, in a drain, once each is read
    /// to its end), then the oldest finished ones beyond [`MAX_FINISHED_OPEN`].
    fn retire_done(&mut self, out: &mut Vec<Line>, draining: bool) {
        let deleted_wait = self.rotate_wait.min(DELETED_GRACE);
        let mut i = 0;
        while i < self.rotated.len() {
            let h = &self.rotated[i];
            let done = h.at_end()
                && (draining
                    || h.quiet_for(self.rotate_wait)
                    || (h.deleted && h.quiet_for(deleted_wait)));
            if done {
                let h = self.rotated.remove(i).expect("index in range");
                self.retire(h, out, "Finished reading rotated file.");
            } else {
                i += 1;
            }
        }
        self.evict_beyond_cap(out);
    }

    /// More than [`MAX_FINISHED_OPEN`] finished files open: the oldest finished ones are
    /// let go early (one WARN per round, with the count, and a metric). Bytes a late
    /// writer adds to them later are found by the next sibling scan, not at once.
    fn evict_beyond_cap(&mut self, out: &mut Vec<Line>) {
        let finished = self.rotated.iter().filter(|h| h.at_end()).count();
        if finished <= MAX_FINISHED_OPEN {
            return;
        }
        let mut ends: Vec<(Instant, FileKey)> = self
            .rotated
            .iter()
            .filter_map(|h| match h.phase {
                Phase::AtEnd { since, .. } => Some((since, h.key)),
                Phase::Reading => None,
            })
            .collect();
        ends.sort();
        let evict: Vec<FileKey> = ends[..finished - MAX_FINISHED_OPEN]
            .iter()
            .map(|e| e.1)
            .collect();
        let oldest = self
            .rotated
            .iter()
            .find(|h| h.key == evict[0])
            .map(|h| h.path.clone());
        tracing::warn!(oldest = ?oldest, closed = evict.len(), open_finished = finished, limit = MAX_FINISHED_OPEN, "Too many finished rotated files open; closing the oldest finished ones before --rotate-wait.");
        for key in evict {
            let i = self
                .rotated
                .iter()
                .position(|h| h.key == key)
                .expect("listed above");
            let h = self.rotated.remove(i).expect("index in range");
            self.metrics.rotated_files_evicted.inc();
            self.retire(h, out, "Closed rotated file early.");
        }
    }

    fn retire(&mut self, mut h: Handle, out: &mut Vec<Line>, msg: &'static str) {
        h.finish(&self.progress, out);
        if !h.deleted {
            if let Ok(meta) = h.file.metadata() {
                self.remember_read(&meta, Some((h.identity.clone(), h.framer.read_offset())));
            }
        }
        tracing::info!(file = %h.path.display(), inode = h.identity.ino, end_offset = h.framer.read_offset(), deleted = h.deleted, "{msg}");
    }

    /// Looks at the path: a new inode is a rotation, a missing path a rename or a
    /// deletion, something not a regular file an ERROR (and not ready) until a regular
    /// file is back. Opens the file at the path when there is a new one.
    fn look_at_path(&mut self) -> io::Result<()> {
        let at_path = match self.scope.look() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(file = %self.path().display(), error = %e, "Cannot stat the log path; retrying.");
                return Ok(());
            }
        };
        match at_path {
            AtPath::Missing => {
                self.set_path_error(None);
                // While nothing is at the path, files may come and be renamed away
                // between two looks: every look scans the siblings.
                self.leave_path("File moved or deleted; finishing it and waiting for a new one.");
                self.adopt_unknown_siblings()?;
            }
            AtPath::NotRegular(kind) => {
                self.set_path_error(Some(kind));
                self.leave_path(
                    "The path is no longer a regular file; finishing the file that was there.",
                );
            }
            AtPath::Regular(meta) => {
                self.set_path_error(None);
                match &self.current {
                    Current::Open(h) if h.identity.same_inode(&meta) => {}
                    Current::Open(_) => {
                        self.metrics.rotations.inc();
                        self.leave_path("Rotation followed; finishing the old file, then reading the new one from offset 0.");
                        self.adopt_unknown_siblings()?;
                        self.open_current();
                    }
                    Current::Waiting(_) => {
                        self.adopt_unknown_siblings()?;
                        self.open_current();
                    }
                }
            }
        }
        Ok(())
    }

    /// The current file left the path: finish it as a rotated file. True if one did.
    fn leave_path(&mut self, msg: &'static str) -> bool {
        match std::mem::replace(&mut self.current, Current::Waiting(StartAt::Beginning)) {
            Current::Open(h) => {
                tracing::info!(file = %h.path.display(), inode = h.identity.ino, read_offset = h.framer.read_offset(), "{msg}");
                self.rotated.push_back(h);
                true
            }
            // Nothing was open: whatever comes to the path next is new, read from 0
            // (also under --read-from end, which is for the file present at start).
            Current::Waiting(_) => false,
        }
    }

    pub(super) fn set_path_error(&self, kind: Option<&'static str>) {
        let was =
            self.health
                .set_problem(&self.chain.source, self.path(), kind.map(str::to_string));
        match kind {
            Some(kind) if !was => {
                tracing::error!(file = %self.path().display(), kind, "The log path is not a regular file; not reading it, and not ready, until a regular file is back.")
            }
            None if was => {
                tracing::info!(file = %self.path().display(), "The log path is a regular file again.")
            }
            _ => {}
        }
    }

    /// Opens the file at the path as the current one (a file already followed, a
    /// re-pointed symlink pointing back, keeps its place and offset).
    fn open_current(&mut self) {
        let path = self.path().to_path_buf();
        let Some((file, meta)) = self.open_logged(&path) else {
            return;
        };
        if let Some(i) = self
            .rotated
            .iter()
            .position(|h| h.identity.same_inode(&meta))
        {
            let h = self.rotated.remove(i).expect("index in range");
            self.current = Current::Open(h);
            return;
        }
        let Current::Waiting(start) = self.current else {
            return;
        };
        let offset = match start {
            StartAt::Beginning => 0,
            StartAt::End => meta.len(),
        };
        match self.track(file, &meta, &path, offset) {
            Ok(h) => {
                tracing::info!(file = %path.display(), inode = meta.ino(), offset, "Following file.");
                self.current = Current::Open(h);
            }
            Err(e) => self.open_failed(&path, &e),
        }
    }
}

#[cfg(test)]
mod tests;
