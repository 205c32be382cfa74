//! health: the probes' view of the agent — what `/readyz` answers from. Set by the
//! stages (the tail follows, the ship stage meets a configuration error, the checkpoint
//! cannot be read, the drain started); read by the metrics listener
//! (docs/design.md#observability).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The probes' view of the agent.
#[derive(Default)]
pub struct Health {
    /// The tail stage watches the path (the file is open, or waited for).
    pub following: Arc<AtomicBool>,
    /// SIGTERM arrived.
    pub draining: AtomicBool,
    /// Firehose answered with a configuration error (stream missing, access denied,
    /// no credentials) and delivery is blocked until it is fixed.
    pub config_error: AtomicBool,
    /// The path is not a regular file (a FIFO, socket, device or directory appeared).
    pub path_error: AtomicBool,
    /// The checkpoint cannot be read (EACCES, EIO): starting would re-ship or skip.
    pub checkpoint_unreadable: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.following.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && !self.config_error.load(Ordering::Relaxed)
            && !self.path_error.load(Ordering::Relaxed)
            && !self.checkpoint_unreadable.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_following_and_no_drain_or_config_error() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.following.store(true, Ordering::Relaxed);
        assert!(h.is_ready());
        h.config_error.store(true, Ordering::Relaxed);
        assert!(!h.is_ready());
        h.config_error.store(false, Ordering::Relaxed);
        h.draining.store(true, Ordering::Relaxed);
        assert!(!h.is_ready());
    }
}
