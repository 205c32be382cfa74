//! siblings: the follower's side of discovery — which siblings it already follows or
//! let go, which it adopts (files rotated while it was behind, late writes to a file
//! let go), and logrotate's copy of a truncated file, from which the truncated content
//! is finished. Siblings are `stat`ed; only the few that can matter are opened, one at
//! a time, and only while the name still holds the inode the scan saw.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use super::discovery::{self, mtime_ns, Candidate};
use super::follower::{Current, Follower, Known};
use super::handle::Handle;
use crate::log_throttle::LogThrottle;
use crate::progress::{FileKey, Identity};

/// The WARN for opens that find no descriptor free, process-wide.
static FD_EXHAUSTED: std::sync::LazyLock<LogThrottle> =
    std::sync::LazyLock::new(|| LogThrottle::new(std::time::Duration::from_secs(5)));

impl Follower {
    pub(super) fn remember(&mut self, meta: &Metadata) {
        self.remember_read(meta, None);
    }

    pub(super) fn remember_read(&mut self, meta: &Metadata, read_to: Option<(Identity, u64)>) {
        self.known.insert(
            (
                std::os::unix::fs::MetadataExt::dev(meta),
                std::os::unix::fs::MetadataExt::ino(meta),
            ),
            Known {
                size: meta.len(),
                mtime_ns: mtime_ns(meta),
                read_to,
            },
        );
    }

    /// Opens a regular file without blocking; a failure is a WARN and a retry.
    pub(super) fn open_logged(&mut self, path: &Path) -> Option<(File, Metadata)> {
        match discovery::open_regular(path) {
            Ok(Ok(fm)) => Some(fm),
            Ok(Err(kind)) => {
                if path == self.path() {
                    self.set_path_error(Some(kind));
                }
                None
            }
            Err(e) => {
                self.open_failed(path, &e);
                None
            }
        }
    }

    /// Opens a candidate found by a scan, only if the name still holds the inode the
    /// scan saw: a rename between the `stat` and the `open` (a storm of shifts) would
    /// otherwise hand over another file — maybe one already followed.
    pub(super) fn open_candidate(&mut self, c: &Candidate) -> Option<(File, Metadata)> {
        let (file, meta) = self.open_logged(&c.path)?;
        if (meta.dev(), meta.ino()) != c.inode() {
            self.rescan = true;
            return None;
        }
        Some((file, meta))
    }

    pub(super) fn open_failed(&mut self, path: &Path, e: &io::Error) {
        self.rescan = true;
        if e.kind() == io::ErrorKind::NotFound {
            return; // renamed or deleted since the stat: the next scan finds it
        }
        self.metrics.file_open_failures.inc();
        if discovery::is_fd_exhaustion(e) {
            // Every follower of every glob meets it at once: one line a few seconds.
            if let Some(times) = FD_EXHAUSTED.note(1) {
                tracing::warn!(file = %path.display(), error = %e, failures_since_last = times, "No file descriptor free to open a log file; retrying.");
            }
        } else {
            tracing::warn!(file = %path.display(), error = %e, "Cannot open a log file; retrying.");
        }
    }

    pub(super) fn tracked(&self, inode: (u64, u64)) -> Option<&Handle> {
        let cur = match &self.current {
            Current::Open(h) => Some(h),
            Current::Waiting(_) => None,
        };
        self.rotated
            .iter()
            .chain(cur)
            .find(|h| (h.identity.dev, h.identity.ino) == inode)
    }

    /// The (device, inode) of every file open now.
    pub(super) fn open_inodes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let cur = match &self.current {
            Current::Open(h) => Some(h),
            Current::Waiting(_) => None,
        };
        self.rotated
            .iter()
            .chain(cur)
            .map(|h| (h.identity.dev, h.identity.ino))
    }

    /// Siblings nobody told us about are files rotated while we were behind: they are
    /// read from 0, oldest first, after the files already open. A sibling that is a copy
    /// of an open file (copytruncate in progress) is left for the truncation to find.
    pub(super) fn adopt_unknown_siblings(&mut self) -> io::Result<()> {
        self.rescan = false;
        self.last_scan = Instant::now();
        let mut candidates = match self.scope.scan() {
            Ok(c) => c,
            Err(e) => {
                if !discovery::is_fd_exhaustion(&e) {
                    tracing::warn!(file = %self.path().display(), error = %e, "Cannot list the log directory; retrying.");
                } else if let Some(times) = FD_EXHAUSTED.note(1) {
                    tracing::warn!(file = %self.path().display(), error = %e, failures_since_last = times, "No file descriptor free to list the log directory; retrying.");
                }
                self.rescan = true;
                return Ok(());
            }
        };
        candidates.retain(|c| c.path != self.path());
        candidates.sort_by_key(Candidate::rotation_order);
        for c in candidates {
            if let Some(h) = self.tracked(c.inode()) {
                if h.path != c.path {
                    let key = h.key;
                    self.progress.set_path(key, &c.path);
                    self.handle_mut(key).path = c.path.clone();
                }
                continue;
            }
            // Being read by another follower (of this source's glob, or another's).
            if self.progress.follows(c.inode()) {
                continue;
            }
            let known = self.known.get(&c.inode()).cloned();
            if known
                .as_ref()
                .is_some_and(|k| k.size == c.meta.len() && k.mtime_ns == mtime_ns(&c.meta))
            {
                continue;
            }
            let Some((file, meta)) = self.open_candidate(&c) else {
                continue;
            };
            if self.is_copy_of_open_file(&file, &meta)? {
                self.remember(&meta);
                continue;
            }
            // A file let go that got more bytes (a late writer): the same content, read
            // on from where reading stopped. Anything else is a file never read.
            let offset = match known.and_then(|k| k.read_to) {
                Some((id, at)) if meta.len() >= at && id.matches(&file, &meta)? => at,
                _ => 0,
            };
            match self.track(file, &meta, &c.path, offset) {
                Ok(h) => {
                    if offset > 0 {
                        tracing::info!(file = %c.path.display(), offset, "A rotated file already let go got more lines from a late writer; reading them.");
                    } else {
                        tracing::info!(file = %c.path.display(), inode = meta.ino(), "Found a file rotated while firetail was behind; reading it from offset 0.");
                    }
                    self.rotated.push_back(h);
                }
                Err(e) => self.open_failed(&c.path, &e),
            }
        }
        Ok(())
    }

    pub(super) fn handle_mut(&mut self, key: FileKey) -> &mut Handle {
        if let Current::Open(h) = &mut self.current {
            if h.key == key {
                return h;
            }
        }
        self.rotated
            .iter_mut()
            .find(|h| h.key == key)
            .expect("tracked key")
    }

    pub(super) fn is_copy_of_open_file(&self, file: &File, meta: &Metadata) -> io::Result<bool> {
        let cur = match &self.current {
            Current::Open(h) => Some(h),
            Current::Waiting(_) => None,
        };
        for h in self.rotated.iter().chain(cur) {
            if h.identity.is_copy(file, meta, 0)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// logrotate's copy of a file identified by `id`, holding at least `offset` bytes:
    /// another inode that starts the same. Siblings are stat'ed; only those long enough
    /// are opened, one at a time, newest first (the copy was just made).
    pub(super) fn find_copy(
        &mut self,
        id: &Identity,
        offset: u64,
    ) -> io::Result<Option<(File, Metadata, PathBuf)>> {
        if id.fp_len == 0 {
            return Ok(None);
        }
        let mut candidates = self.scope.scan()?;
        candidates.retain(|c| {
            c.meta.len() >= offset.max(id.fp_len)
                && (c.meta.dev(), c.meta.ino()) != (id.dev, id.ino)
                && self.tracked(c.inode()).is_none()
        });
        candidates.sort_by_key(|c| std::cmp::Reverse(c.rotation_order()));
        let failures = self.metrics.file_open_failures.get();
        for c in candidates {
            let Some((file, meta)) = self.open_candidate(&c) else {
                continue;
            };
            if id.is_copy(&file, &meta, offset)? {
                return Ok(Some((file, meta, c.path)));
            }
        }
        // A sibling that could not be opened may be the copy: not "no copy" yet.
        if self.metrics.file_open_failures.get() != failures {
            return Err(io::Error::other("a sibling could not be opened"));
        }
        Ok(None)
    }

    /// copytruncate: the content `old` was reading is gone from its inode. Returns the
    /// handle that finishes that content from logrotate's copy, when the copy is found —
    /// under the same key, since it is the same content at the same offsets, only
    /// through another descriptor — and the handle that reads the truncated file's new
    /// content from 0 under a new key. Gives `old` back, untouched, when the siblings
    /// cannot be looked at now (no descriptor free): the next poll tries again.
    #[allow(clippy::type_complexity)]
    pub(super) fn truncated(
        &mut self,
        mut old: Handle,
    ) -> io::Result<Result<(Option<Handle>, Handle), Handle>> {
        // Siblings nobody saw (the copy of a content truncated twice between two looks)
        // are looked for at the next poll, like after a rotation.
        self.rescan = true;
        let resume = old.line_offset();
        let found = match self.find_copy(&old.identity, resume) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(file = %old.path.display(), error = %e, "File truncated, and its siblings cannot be looked at for its copy now; retrying.");
                return Ok(Err(old));
            }
        };
        self.metrics.source(self.source).truncations.inc();
        let truncated_path = old.path.clone();
        let (copy, truncated_file) = match found {
            Some((file, meta, path)) => {
                tracing::warn!(file = %old.path.display(), copy = %path.display(), offset = resume, "File truncated (copytruncate); reading the rest from its copy, then the file again from offset 0. Lines written between the copy and the truncate cannot be recovered.");
                // The partial line, if any, is whole in the copy: read again from there.
                let truncated = old.continue_in(file, &meta, &path, resume, &self.progress)?;
                (Some(old), truncated)
            }
            None => {
                let size = self.progress.size_of(old.key);
                tracing::warn!(file = %old.path.display(), offset = resume, size_last_seen = size, lost_bytes = size.saturating_sub(resume), "File truncated and no copy of it found (compressed or deleted before it was read?); bytes after this offset could not be read and are lost. Reading the file again from offset 0.");
                self.progress.finish(old.key, resume);
                (None, old.file)
            }
        };
        let meta = truncated_file.metadata()?;
        let fresh = self.track(truncated_file, &meta, &truncated_path, 0)?;
        Ok(Ok((copy, fresh)))
    }
}
