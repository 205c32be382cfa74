//! flush_clock: when a batch is due, shared by the tail (which reads just before it)
//! and the batch stage (which cuts at it), below both so neither imports the other.
//!
//! - [`Pace`]: the flush interval in effect — `--flush-interval`, stretched by the
//!   ship stage's adaptive control under sustained throttling.
//! - [`jittered`]: each batch's draw from the last fifth of that interval, so pods
//!   started together drift apart instead of calling Firehose in lockstep.
//! - [`due_at`]: when a batch that opened at a given moment is due.
//! - [`Due`] and [`LEAD`]: the open batch's deadline as the batch stage publishes it,
//!   and how long before it the tail reads a quiet app.
//!
//! The why of each number is in docs/design.md#pipeline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long before the open batch is due the tail reads: time for the read and the
/// hand-over to the batch stage on a loaded node. A batch that opens this late still
/// goes at its deadline ([`due_at`]).
pub const LEAD: Duration = Duration::from_millis(30);

/// The flush interval in effect: set by the ship stage's adaptive control, read by the
/// batch stage whenever a batch starts.
#[derive(Debug)]
pub struct Pace {
    nanos: AtomicU64,
}

impl Pace {
    pub fn new(flush_interval: Duration) -> Pace {
        let pace = Pace {
            nanos: AtomicU64::new(0),
        };
        pace.set(flush_interval);
        pace
    }

    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    pub fn set(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

/// A batch's flush deadline: between 80 % and 100 % of the flush interval, drawn per
/// batch. Never later than the interval, so `--flush-interval` stays a promise.
///
/// Why so wide: a stream's quota is counted per second, first come first served, so
/// a pod whose calls keep arriving early in the second is never throttled, and pods
/// started together by a rollout arrive together. A deadline drawn from the last
/// tenth alone left such a pod's moment in the second where it was for half a
/// minute (a period of about a second once the read cadence is added), and those
/// pods took their whole offer while the others were cut; drawn from the last fifth,
/// every pod's moment wanders through the second within seconds, and each meets the
/// quota's end in turn (the window model in `ship/control/tests.rs`).
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - 0.2 * fastrand::f64())
}

/// When a batch that opened at `started` is due: `jitter` (a draw of [`jittered`])
/// after the last cut while lines keep coming, else after its own start; never more
/// than `jitter` after its start. A batch that opens less than [`LEAD`] after the
/// deadline is due at once: its lines are the ones the tail read for that deadline
/// (it reads a quiet app just before it), late by a slow read.
///
/// Why from the last cut: the tail reads on a cadence (every quarter interval for
/// a quiet app), so a batch opens at one of a few moments of a second that repeat
/// every second. Counted from its opening, a pod's deadlines fell in the same fifth
/// of the quota's second for as long as it ran (the window model in
/// `ship/control/tests.rs`: Jain 0.82 in a rollout). Counted from the last cut, a
/// steady pod's calls are a renewal process of mean 0.9 interval, whose moment in
/// the second wanders through all of it within seconds.
pub fn due_at(started: Instant, last_cut: Option<Instant>, jitter: Duration) -> Instant {
    match last_cut {
        Some(cut) if started < cut + jitter + LEAD => (cut + jitter).max(started),
        _ => started + jitter,
    }
}

/// When the batch that lines read now would join is due: set by the batch stage
/// (the open batch's deadline, or after a cut the next one), read by the tail. The tail
/// knows nothing of the stages after it; this cell is its side of the hand-over.
#[derive(Debug)]
pub struct Due {
    base: Instant,
    /// Nanoseconds after `base`; 0: none.
    nanos: AtomicU64,
}

impl Due {
    pub fn new() -> Due {
        Due {
            base: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    pub fn set(&self, at: Option<Instant>) {
        let nanos = at.map_or(0, |t| {
            let d = t.saturating_duration_since(self.base).as_nanos();
            u64::try_from(d).unwrap_or(u64::MAX).max(1)
        });
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<Instant> {
        match self.nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }
}

impl Default for Due {
    fn default() -> Due {
        Due::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The README's promise: a deadline is drawn between 80 % and 100 % of the
    /// interval, never past it, and spread over that fifth.
    #[test]
    fn flush_deadlines_are_drawn_within_the_last_fifth_of_the_interval() {
        let d = Duration::from_secs(1);
        let draws: Vec<Duration> = (0..1000).map(|_| jittered(d)).collect();
        assert!(draws.iter().all(|j| *j <= d && *j >= d.mul_f64(0.8)));
        let spread = *draws.iter().max().unwrap() - *draws.iter().min().unwrap();
        assert!(spread > Duration::from_millis(150), "{spread:?}");
    }

    /// A line never waits longer than the draw, and a steady stream's deadlines are
    /// spaced by the draw itself, not by when the tail happened to read.
    #[test]
    fn a_deadline_counts_from_the_last_cut_while_lines_keep_coming() {
        let t0 = Instant::now();
        let j = Duration::from_millis(850);
        let ms = Duration::from_millis;
        assert_eq!(due_at(t0, None, j), t0 + j);
        // Opened 200 ms after the last cut: due 850 ms after the cut.
        assert_eq!(due_at(t0 + ms(200), Some(t0), j), t0 + j);
        // Opened after the draw had passed: 850 ms after its own start.
        assert_eq!(due_at(t0 + ms(900), Some(t0), j), t0 + ms(900) + j);
        for open in [0, 100, 849, 850, 870, 2000] {
            let d = due_at(t0 + ms(open), Some(t0), j);
            assert!(d >= t0 + ms(open));
            assert!(d - (t0 + ms(open)) <= j);
        }
    }

    /// The tail reads a quiet app `LEAD` before the deadline; lines that reach the
    /// batch stage a little after it (a slow read) go at once, not a whole draw later.
    #[test]
    fn a_batch_that_opens_just_after_its_deadline_goes_at_once() {
        let t0 = Instant::now();
        let j = Duration::from_millis(850);
        let late = t0 + j + LEAD / 2;
        assert_eq!(due_at(late, Some(t0), j), late);
        let later = t0 + j + LEAD;
        assert_eq!(
            due_at(later, Some(t0), j),
            later + j,
            "a new spell of writes"
        );
    }

    #[test]
    fn due_keeps_an_instant_or_none() {
        let due = Due::new();
        assert_eq!(due.get(), None);
        let t = Instant::now() + 700 * MS;
        due.set(Some(t));
        let got = due.get().unwrap();
        assert!(
            got <= t && t - got < Duration::from_micros(1),
            "{got:?} {t:?}"
        );
        due.set(None);
        assert_eq!(due.get(), None);
    }
}
