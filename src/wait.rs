//! wait: how firetail waits — between retries ([`Backoff`]) and until a moment that
//! may not exist ([`sleep_until_opt`]).

use std::time::Duration;

use tokio::time::Instant;

/// Waits between retries: 100 ms, doubling per failed attempt, up to a cap.
///
/// Two ways to draw from it, for two kinds of failure:
/// - a local disk ([`Backoff::next_wait`]): the full step, capped at 5 s — quick to
///   notice a disk that healed, without spinning on one that did not; one process
///   waits on it, so there is nothing to spread;
/// - a shared service ([`Backoff::next_jittered`], [`Backoff::hold_jittered`]): full
///   jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"), which spreads
///   the retries of many pods sharing one stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backoff {
    /// Failed attempts so far: the step.
    attempt: u32,
}

impl Backoff {
    /// The first step; each failed attempt doubles it.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// The cap of [`Backoff::next_wait`].
    pub const CAP: Duration = Duration::from_secs(5);

    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// A backoff that already failed `attempt` times in a row.
    pub fn at(attempt: u32) -> Backoff {
        Backoff { attempt }
    }

    /// Failed attempts so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The current step's whole wait, at most `cap`.
    fn ceiling(&self, cap: Duration) -> Duration {
        Self::FIRST
            .saturating_mul(1 << self.attempt.min(16))
            .min(cap)
    }

    /// The wait before the next attempt, without jitter; each call doubles the next.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.ceiling(Self::CAP);
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// A jittered wait, one step longer than the last (up to `cap`).
    pub fn next_jittered(&mut self, cap: Duration) -> Duration {
        let wait = self.hold_jittered(cap);
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// A jittered wait at the current step, without escalating.
    pub fn hold_jittered(&self, cap: Duration) -> Duration {
        self.ceiling(cap).mul_f64(fastrand::f64())
    }
}

/// Sleeps until `t`, or forever when there is none: a `select!` branch that only
/// fires when a deadline exists.
pub async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_backoff_doubles_from_100ms_to_its_5s_cap() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..9).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn a_jittered_backoff_grows_and_stays_under_its_cap() {
        let cap = Duration::from_secs(5);
        let mut b = Backoff::default();
        for _ in 0..40 {
            assert!(b.next_jittered(cap) <= cap);
        }
        // Full jitter draws from [0, ceiling]; the ceiling reached the cap by now.
        let max = (0..200).map(|_| b.next_jittered(cap)).max().unwrap();
        assert!(max > cap / 2, "{max:?}");
        // Holding does not escalate.
        let fresh = Backoff::default();
        assert!((0..50).all(|_| fresh.hold_jittered(cap) <= Backoff::FIRST));
    }
}
