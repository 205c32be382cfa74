//! let_go: followers with nothing left to do are dropped, and what they read and let
//! go is remembered by identity for as long as it is in the directory, so a glob
//! matching it later does not ship it again.

use std::path::PathBuf;

use super::Tail;
use crate::config::parent_dir;
use crate::tail::follower::Known;

/// A file read and let go by a follower since dropped (or not shipped by it): a glob
/// matching it later must not ship it again.
pub(super) struct LetGo {
    pub(super) dir: PathBuf,
    pub(super) known: Known,
}

impl Tail {
    /// Drops the glob followers with nothing left to do: what they let go is kept (a
    /// glob matching it later does not ship it again), their path's problem cleared.
    pub(super) fn drop_done(&mut self) {
        let mut i = 0;
        while i < self.followers.len() {
            let f = &self.followers[i];
            let source = &self.sources[f.source];
            if source.glob.is_none() || !f.follower.is_done() {
                i += 1;
                continue;
            }
            let f = self.followers.remove(i);
            if i < self.next {
                self.next -= 1;
            }
            let path = f.follower.path().to_path_buf();
            self.health.set_problem(&source.spec.name, &path, None);
            self.bytes_dropped += f.follower.bytes_read();
            let dir = parent_dir(&path).to_path_buf();
            for (inode, known) in f.follower.known {
                self.let_go.insert(
                    inode,
                    LetGo {
                        dir: dir.clone(),
                        known,
                    },
                );
            }
            tracing::info!(source = %source.spec.name, file = %path.display(), "Nothing at the path and every file there read and let go; no longer following it.");
        }
        if self.next >= self.followers.len() {
            self.next = 0;
        }
    }
}
