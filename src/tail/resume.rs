//! resume: a restart from the checkpoint's entries.
//!
//! Each checkpointed file is looked for by identity among the path, its rotated
//! siblings and the path it was last seen at; a file whose inode now holds other
//! content (copytruncate while firetail was down) is looked for as a copy (same first
//! bytes, at least the checkpointed offset long). Then every sibling newer than the
//! checkpointed files — newer than a gone one's last modification time too — is read
//! from 0, oldest first, and the file at the path last. A checkpointed file that is
//! gone is a WARN with what is known of what it may have held.

use std::io;
use std::os::unix::fs::MetadataExt;

use super::discovery::{mtime_ns, AtPath, Candidate};
use super::follower::{Current, Follower, StartAt};
use crate::progress::FileEntry;

/// A candidate chosen to be read, from `offset`.
struct Planned {
    candidate: Candidate,
    offset: u64,
}

impl Follower {
    pub(super) fn resume(&mut self, entries: &[FileEntry]) -> io::Result<()> {
        let mut candidates = self.scope.scan()?;
        for e in entries {
            if let Ok(meta) = std::fs::metadata(&e.path) {
                let c = Candidate {
                    path: e.path.clone(),
                    meta,
                };
                if c.meta.is_file() && !candidates.iter().any(|o| o.inode() == c.inode()) {
                    candidates.push(c);
                }
            }
        }
        let mut plan: Vec<Planned> = Vec::new();
        let mut newer_than: Vec<(i64, i64, i64, String)> = Vec::new();
        // Every sibling modified after a checkpointed file was last seen is one firetail
        // has not read (a copy made of content it never saw, a file rotated while it was
        // down), unless it is one of the checkpointed files itself.
        let gone_mtimes: Vec<u64> = entries.iter().filter_map(|e| e.mtime_ns).collect();
        for entry in entries {
            match self.locate(entry, &candidates)? {
                Some(i) => {
                    newer_than.push(candidates[i].rotation_order());
                    match plan
                        .iter_mut()
                        .find(|p| p.candidate.inode() == candidates[i].inode())
                    {
                        // Two entries on one file: the lower offset, duplicates rather
                        // than loss.
                        Some(p) => p.offset = p.offset.min(entry.offset),
                        None => plan.push(Planned {
                            candidate: candidates[i].clone(),
                            offset: entry.offset,
                        }),
                    }
                }
                None => {
                    self.metrics.checkpointed_files_missing.inc();
                    match entry.mtime_ns {
                        Some(m) => {
                            tracing::warn!(file = %entry.path.display(), offset = entry.offset, mtime_ns = m, "Checkpointed file is gone (deleted while firetail was down): lines it held after this offset, if any, cannot be shipped. Shipping every sibling modified after it, oldest first.");
                        }
                        None => {
                            tracing::warn!(file = %entry.path.display(), offset = entry.offset, "Checkpointed file is gone (deleted while firetail was down): lines it held after this offset, if any, cannot be shipped; the checkpoint holds no modification time, so siblings newer than it cannot be told and are not shipped.")
                        }
                    }
                }
            }
        }
        let oldest = newer_than.into_iter().min();
        let oldest_gone = gone_mtimes.into_iter().min();
        for c in &candidates {
            if plan.iter().any(|p| p.candidate.inode() == c.inode()) {
                continue;
            }
            let newer = oldest.as_ref().is_some_and(|o| c.rotation_order() > *o)
                || oldest_gone.is_some_and(|m| mtime_ns(&c.meta) >= m)
                || c.path == self.scope.path();
            if newer {
                plan.push(Planned {
                    candidate: c.clone(),
                    offset: 0,
                });
            } else {
                self.remember(&c.meta);
            }
        }
        self.open_plan(plan)
    }

    /// Which candidate holds the checkpointed file (by identity, or as its copy).
    fn locate(&mut self, entry: &FileEntry, candidates: &[Candidate]) -> io::Result<Option<usize>> {
        let id = entry.identity.clone();
        if let Some(i) = candidates.iter().position(|c| {
            (c.meta.dev(), c.meta.ino()) == (id.dev, id.ino) && c.meta.len() >= entry.offset
        }) {
            if let Some((file, meta)) = self.open_candidate(&candidates[i]) {
                if id.matches(&file, &meta)? {
                    return Ok(Some(i));
                }
            }
        }
        // Its inode holds other content, or is gone: copytruncate while firetail was
        // down leaves the content in a copy.
        let Some((_, _, path)) = self.find_copy(&id, entry.offset)? else {
            return Ok(None);
        };
        tracing::info!(file = %entry.path.display(), copy = %path.display(), offset = entry.offset, "Checkpointed file was truncated while firetail was down; finishing it from its copy.");
        Ok(candidates.iter().position(|c| c.path == path))
    }

    /// Opens the plan: rotated files oldest first, then the file at the path.
    fn open_plan(&mut self, mut plan: Vec<Planned>) -> io::Result<()> {
        plan.sort_by_key(|p| p.candidate.rotation_order());
        let at_path = plan
            .iter()
            .position(|p| p.candidate.path == self.scope.path());
        let current = at_path.map(|i| plan.remove(i));
        for p in plan {
            let Some((file, meta)) = self.open_candidate(&p.candidate) else {
                tracing::warn!(file = %p.candidate.path.display(), "A file to resume moved while firetail opened it; it is looked for again by the next scan.");
                continue;
            };
            let offset = p.offset.min(meta.len());
            let h = self.track(file, &meta, &p.candidate.path, offset)?;
            tracing::info!(file = %p.candidate.path.display(), offset, "Resuming a file rotated while firetail was down.");
            self.rotated.push_back(h);
        }
        self.current = Current::Waiting(StartAt::Beginning);
        if let Some(p) = current {
            if let Ok(AtPath::Regular(_)) = self.scope.look() {
                if let Some((file, meta)) = self.open_logged(&p.candidate.path) {
                    let offset = if meta.ino() == p.candidate.meta.ino() {
                        p.offset.min(meta.len())
                    } else {
                        0
                    };
                    let h = self.track(file, &meta, &p.candidate.path, offset)?;
                    tracing::info!(file = %p.candidate.path.display(), offset, "Following file.");
                    self.current = Current::Open(h);
                }
            }
        }
        Ok(())
    }
}
