//! at_path: what is at the followed path — a new inode is a rotation, nothing a rename
//! or a deletion, something not a regular file a problem for readiness — and opening
//! the file there as the current one.

use std::io;
use std::os::unix::fs::MetadataExt;

use super::{Current, Follower, StartAt};
use crate::tail::discovery::AtPath;

impl Follower {
    /// Looks at the path: a new inode is a rotation, a missing path a rename or a
    /// deletion, something not a regular file an ERROR (and not ready) until a regular
    /// file is back. Opens the file at the path when there is a new one.
    pub(super) fn look_at_path(&mut self) -> io::Result<()> {
        let at_path = match self.scope.look() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(file = %self.path().display(), error = %e, "Cannot stat the log path; retrying.");
                return Ok(());
            }
        };
        self.path_missing = matches!(at_path, AtPath::Missing);
        match at_path {
            AtPath::Missing => {
                self.set_path_error(None);
                // While nothing is at the path, files may come and be renamed away
                // between two looks: every look scans the siblings.
                if self.leave_path("File moved or deleted; finishing it and waiting for a new one.")
                {
                    // Renamed, not deleted: a rotation, seen before the new file came.
                    let moved = self.rotated.back().and_then(|h| h.file.metadata().ok());
                    if moved.is_some_and(|m| m.nlink() > 0) {
                        self.metrics.source(self.source).rotations.inc();
                    }
                }
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
                        self.metrics.source(self.source).rotations.inc();
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
    pub(super) fn leave_path(&mut self, msg: &'static str) -> bool {
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

    pub(in crate::tail) fn set_path_error(&self, kind: Option<&'static str>) {
        let was = self.health.set_problem(
            &self.chain.source,
            self.path(),
            kind.map(|k| format!("is {k}, not a regular file")),
        );
        match kind {
            Some(kind) if !was => {
                tracing::error!(source = %self.chain.source, file = %self.path().display(), kind, "The log path is not a regular file; not reading it, and not ready, until a regular file is back.")
            }
            None if was => {
                tracing::info!(source = %self.chain.source, file = %self.path().display(), "The log path is a regular file again.")
            }
            _ => {}
        }
    }

    /// Opens the file at the path as the current one (a file already followed, a
    /// re-pointed symlink pointing back, keeps its place and offset).
    pub(super) fn open_current(&mut self) {
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
