//! counts: files open and files left out, per source and over every lane — what
//! `--max-files` bounds and what the `files_followed` / `files_not_followed` gauges
//! show.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{SourceSpec, Tail};
use crate::handover::SourceId;

/// Per source of this tail, files followed (open) and matched but not followed (over
/// `--max-files`): the values of `firetail_files_followed` and
/// `firetail_files_not_followed`, for the metrics to read.
#[derive(Debug, Default)]
pub struct FileCounts {
    pub sources: Vec<SourceId>,
    pub followed: Vec<AtomicU64>,
    pub not_followed: Vec<AtomicU64>,
}

impl FileCounts {
    pub(super) fn new(sources: &[SourceSpec]) -> FileCounts {
        FileCounts {
            sources: sources.iter().map(|s| s.id).collect(),
            followed: sources.iter().map(|_| AtomicU64::new(0)).collect(),
            not_followed: sources.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// (followed, not followed) for `source`, if it is one of this tail's.
    pub fn get(&self, source: SourceId) -> Option<(u64, u64)> {
        let i = self.sources.iter().position(|s| *s == source)?;
        Some((
            self.followed[i].load(Ordering::Relaxed),
            self.not_followed[i].load(Ordering::Relaxed),
        ))
    }
}

impl Tail {
    /// True when files open over every lane reach `--max-files`: no new path is
    /// followed (rotated files of the paths followed are never refused).
    pub(super) fn at_cap(&self) -> bool {
        let others = self
            .open_total
            .load(Ordering::Relaxed)
            .saturating_sub(self.published);
        others + self.open_files() >= self.max_files
    }

    /// Tells the other lanes how many files this tail has open.
    pub(super) fn publish_open_files(&mut self) {
        let now = self.open_files();
        if now > self.published {
            self.open_total
                .fetch_add(now - self.published, Ordering::Relaxed);
        } else {
            self.open_total
                .fetch_sub(self.published - now, Ordering::Relaxed);
        }
        self.published = now;
    }

    pub(super) fn update_counts(&mut self) {
        self.publish_open_files();
        for (i, source) in self.sources.iter().enumerate() {
            let followed: usize = self
                .followers
                .iter()
                .filter(|f| f.source == i)
                .map(|f| f.follower.open_files())
                .sum();
            let waiting = self.not_followed.values().filter(|s| **s == i).count();
            self.counts.followed[i].store(followed as u64, Ordering::Relaxed);
            self.counts.not_followed[i].store(waiting as u64, Ordering::Relaxed);
            if let Some(m) = self.metrics.sources().get(usize::from(source.spec.id)) {
                m.files_followed.set(followed as i64);
                m.files_not_followed.set(waiting as i64);
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.open_total.fetch_sub(self.published, Ordering::Relaxed);
    }
}
