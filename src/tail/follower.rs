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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::discovery::Scope;
use super::handle::{Handle, Read};
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

/// What the follower of one path needs to know besides the ledger.
#[derive(Debug, Clone)]
pub struct FollowSettings {
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
// One per follower, replaced only when a file comes or goes: a box would buy nothing.
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
    pub(super) source: SourceId,
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
    /// Nothing was at the path at the last look.
    pub(super) path_missing: bool,
    /// The files the last poll or drain step could not read for want of room in their
    /// share of the duplicate window.
    blocked: Vec<FileKey>,
}

/// What one read of a follower's files came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It read, or met a truncation: call again.
    More,
    /// Every file is at its end.
    End,
    /// The file to read next has no room in its share of the window (see `blocked`).
    Blocked,
}

/// Siblings are also scanned this often without a rotation to prompt it: a copy made of
/// content firetail had not read yet, when the truncation left the size at the offset,
/// shows nowhere else. A few `stat`s per sibling every few seconds.
pub(super) const SCAN_EVERY: Duration = Duration::from_secs(5);

impl Follower {
    /// Starts following: from the checkpoint's entries when there are any; else the
    /// file at the path now per `read_from`, and every sibling present now is old.
    pub fn new(
        settings: &FollowSettings,
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
            path_missing: false,
            blocked: Vec::new(),
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

    /// A follower of a path first seen while firetail runs: the siblings it took for
    /// files older than firetail were rotated since it started, before the path was
    /// listed, and are read from 0 at the next poll — except those open in another
    /// follower (`open`) or read and let go (`known`, kept as they were).
    pub(in crate::tail) fn siblings_are_new(
        &mut self,
        open: &std::collections::HashSet<(u64, u64)>,
        known: Vec<((u64, u64), Known)>,
    ) {
        self.known.retain(|inode, _| open.contains(inode));
        self.known.extend(known);
        self.rescan = true;
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
        self.metrics.source(self.source).files_opened.inc();
        Ok(h)
    }

    /// Reads what is available, up to a budget. True when there may be more at once
    /// (call again); false when every file is at its end, or the file to read next
    /// has no room in its share of the duplicate window ([`Follower::blocked`]).
    pub fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        self.blocked.clear();
        // No room for any open file: nothing is read, so no read below can be
        // mistaken for the end of a file.
        if self.all_full() {
            return Ok(false);
        }
        self.look_at_path()?;
        if self.rescan || self.last_scan.elapsed() >= SCAN_EVERY {
            self.adopt_unknown_siblings()?;
        }
        match self.read_once(out, true)? {
            Step::More => return Ok(true),
            Step::Blocked => return Ok(false),
            Step::End => {}
        }
        self.retire_done(out, false);
        Ok(false)
    }

    /// True when files are open and none has room in its share of the window; then
    /// they are all [`Follower::blocked`].
    fn all_full(&mut self) -> bool {
        let keys = self.keys();
        if keys.is_empty() || keys.iter().any(|k| self.progress.room_for(*k) > 0) {
            return false;
        }
        self.blocked = keys;
        true
    }

    /// The files the last poll or drain step could not read for want of room in their
    /// share of the duplicate window: waiting for room for one of them
    /// ([`Progress::wait_for_room_for`]) is waiting for this follower to read again.
    pub fn blocked(&self) -> &[FileKey] {
        &self.blocked
    }

    /// The keys of the files open now, oldest first.
    pub fn keys(&self) -> Vec<FileKey> {
        let cur = match &self.current {
            Current::Open(h) => Some(h.key),
            Current::Waiting(_) => None,
        };
        self.rotated.iter().map(|h| h.key).chain(cur).collect()
    }

    /// Files open now (descriptors held), rotated ones included.
    pub fn open_files(&self) -> usize {
        self.rotated.len() + usize::from(matches!(self.current, Current::Open(_)))
    }

    /// True when the follower has nothing left to do until a file comes to the path:
    /// nothing there at the last look, and every file it read is read and let go.
    pub fn is_done(&self) -> bool {
        self.path_missing && self.rotated.is_empty() && matches!(self.current, Current::Waiting(_))
    }

    /// One read of a rotated file (`Some(index)`) or the current one, on the file's
    /// share of the window.
    fn read_file(&mut self, i: Option<usize>, out: &mut Vec<Line>) -> io::Result<Read> {
        let h = match i {
            Some(i) => &mut self.rotated[i],
            None => match &mut self.current {
                Current::Open(h) => h,
                Current::Waiting(_) => return Ok(Read::AtEnd),
            },
        };
        let budget = self.progress.room_for(h.key);
        let read = h.read(&self.progress, budget, out)?;
        if read == Read::WindowFull {
            self.blocked.push(h.key);
        }
        Ok(read)
    }

    /// One read of the first file (oldest first) with bytes: More when it read or met
    /// a truncation (call again). With `settle`, a read of the current
    /// file that took every byte it held counts as its end: the next wake-up reads on,
    /// rather than a second round of checks now (half the system calls of a wake-up
    /// at a steady rate). Rotated files are always read until a read finds their end,
    /// which is what starts their `--rotate-wait`.
    fn read_once(&mut self, out: &mut Vec<Line>, settle: bool) -> io::Result<Step> {
        for i in 0..self.rotated.len() {
            match self.read_file(Some(i), out)? {
                Read::AtEnd => continue,
                Read::Data(n) | Read::ToEnd(n) => self.bytes_read += n as u64,
                Read::WindowFull => return Ok(Step::Blocked),
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
                            return Ok(Step::End);
                        }
                    }
                }
            }
            return Ok(Step::More);
        }
        match self.read_file(None, out)? {
            Read::AtEnd => return Ok(Step::End),
            Read::Data(n) => self.bytes_read += n as u64,
            Read::ToEnd(n) => {
                self.bytes_read += n as u64;
                return Ok(if settle { Step::End } else { Step::More });
            }
            Read::WindowFull => return Ok(Step::Blocked),
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
                        return Ok(Step::End);
                    }
                }
            }
        }
        Ok(Step::More)
    }

    /// Drain end, one bounded step at a time (like [`Follower::poll`]): every open file
    /// is read to its end first; then partial last lines are handed on (with `\n`) and
    /// rotated files retired. True while there is more to do.
    pub fn finish(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        self.blocked.clear();
        if !self.drain_scanned {
            self.drain_scanned = true;
            self.look_at_path()?;
            self.adopt_unknown_siblings()?;
        }
        // A full share is not the end: the caller waits for room ([`Follower::blocked`]).
        if self.all_full() || self.read_once(out, false)? != Step::End {
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
}

mod at_path;
mod retire;
#[cfg(test)]
mod tests;
