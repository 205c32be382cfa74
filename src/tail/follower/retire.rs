//! retire: letting rotated files go — once read to their end and quiet for
//! `--rotate-wait` (a deleted one after a short grace; all of them in a drain), and the
//! oldest finished ones early beyond [`MAX_FINISHED_OPEN`].

use tokio::time::Instant;

use super::{Follower, DELETED_GRACE, MAX_FINISHED_OPEN};
use crate::handover::Line;
use crate::progress::FileKey;
use crate::tail::handle::{Handle, Phase};

impl Follower {
    /// Retires rotated files that are done (all of them, in a drain, once each is read
    /// to its end), then the oldest finished ones beyond [`MAX_FINISHED_OPEN`].
    pub(super) fn retire_done(&mut self, out: &mut Vec<Line>, draining: bool) {
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

    pub(super) fn retire(&mut self, mut h: Handle, out: &mut Vec<Line>, msg: &'static str) {
        h.finish(&self.progress, out);
        if !h.deleted {
            if let Ok(meta) = h.file.metadata() {
                self.remember_read(&meta, Some((h.identity.clone(), h.framer.read_offset())));
            }
        }
        tracing::info!(file = %h.path.display(), inode = h.identity.ino, end_offset = h.framer.read_offset(), deleted = h.deleted, "{msg}");
    }
}
