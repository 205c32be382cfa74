//! health: the probes' view of the agent — what `/readyz` answers from. Set by the
//! stages (the tail follows, the ship stage meets a configuration error, the checkpoint
//! cannot be read, the drain started); read by the metrics listener
//! (docs/design.md#observability).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The probes' view of the agent.
#[derive(Default)]
pub struct Health {
    /// Per lane, whether its tail watches its paths (the files are open, or waited
    /// for): ready once every lane's does.
    lanes: Mutex<Vec<Arc<AtomicBool>>>,
    /// SIGTERM arrived.
    pub draining: AtomicBool,
    /// Firehose answered with a configuration error (stream missing, access denied,
    /// no credentials) and delivery is blocked until it is fixed.
    pub config_error: AtomicBool,
    /// Per source and followed path, why its file cannot be read now (a FIFO, socket,
    /// device or directory appeared at the path): not ready while any is set.
    problems: Mutex<BTreeMap<(String, PathBuf), String>>,
    /// The checkpoint cannot be read (EACCES, EIO): starting would re-ship or skip.
    pub checkpoint_unreadable: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.following()
            && !self.draining.load(Ordering::Relaxed)
            && !self.config_error.load(Ordering::Relaxed)
            && self.lock().is_empty()
            && !self.checkpoint_unreadable.load(Ordering::Relaxed)
    }

    /// A lane's flag, set by its tail once it watches its paths.
    pub fn lane(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(flag.clone());
        flag
    }

    /// Every lane's tail watches its paths (and there is at least one lane).
    pub fn following(&self) -> bool {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        !lanes.is_empty() && lanes.iter().all(|f| f.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, PathBuf), String>> {
        self.problems.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (or, with `None`, clears) why `source`'s file at `path` cannot be read: a
    /// phrase that follows the path in `/readyz` ("is a directory, not a regular file").
    /// Returns whether the path had a problem before, so the caller logs changes only.
    pub fn set_problem(&self, source: &str, path: &Path, problem: Option<String>) -> bool {
        let key = (source.to_string(), path.to_path_buf());
        let mut problems = self.lock();
        match problem {
            Some(p) => problems.insert(key, p).is_some(),
            None => problems.remove(&key).is_some(),
        }
    }

    /// Every problem now, as `source`, path, why.
    pub fn problems(&self) -> Vec<(String, PathBuf, String)> {
        self.lock()
            .iter()
            .map(|((s, p), why)| (s.clone(), p.clone(), why.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_following_and_no_drain_or_config_error() {
        let h = Health::default();
        assert!(!h.is_ready());
        let (a, b) = (h.lane(), h.lane());
        a.store(true, Ordering::Relaxed);
        assert!(!h.is_ready(), "one lane of two follows");
        b.store(true, Ordering::Relaxed);
        assert!(h.is_ready());
        h.config_error.store(true, Ordering::Relaxed);
        assert!(!h.is_ready());
        h.config_error.store(false, Ordering::Relaxed);
        h.draining.store(true, Ordering::Relaxed);
        assert!(!h.is_ready());
    }
}
