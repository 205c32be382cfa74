//! cadence: how soon the tail reads again while the app writes.
//!
//! An app writes line by line and inotify reports every write: reading on each would
//! wake the pipeline hundreds of times a second, each wake-up paying checks, a
//! hand-over and a thread switch (~40 a second, measured, cost more than the lines
//! themselves). So writes gather between reads, for a time that depends on
//! the rate:
//! - a quiet app (most pods of a fleet) is read at most every quarter of
//!   `--flush-interval` (250 ms at most): at 500 lines/s, ten reads a second with
//!   their checks and wake-ups were about half of firetail's CPU;
//! - a busy one, whose lines would fill a whole call (500 lines) in that time, is
//!   read every tenth (100 ms at most): gathering longer saves little there (the
//!   calls are cut by count anyway) but reads several calls' worth at once, whose
//!   calls then overlap, each holding its request body and TLS buffers (+1 MiB of
//!   peak RSS measured at 5,000 lines/s).
//!
//! A quiet app's lines gather longer still while a batch is open: lines read before
//! that batch is due only wait in it, so the tail reads once, [`LEAD`] before the
//! deadline the batch stage publishes in [`Due`] (one read per call instead of four:
//! 0.29 → 0.25 % of a core at 500 lines/s in the bench). It reads sooner when a
//! call's worth would gather first at the rate of the last wait. The first write after a quiet
//! spell is read at once, and with no batch open a line waits at most a quarter of
//! an interval before it is read.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::firehose::MAX_BATCH_RECORDS;
use crate::flush_clock::{Due, LEAD};

/// The longest a quiet app's lines wait before they are read.
const QUIET_MAX: Duration = Duration::from_millis(250);
/// The longest a busy app's lines wait before they are read.
const BUSY_MAX: Duration = Duration::from_millis(100);
/// A read closer than this to the last one is not worth a wake-up of its own: the
/// batch is about to be cut, and its next deadline is published then.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// The read cadence of one tail.
#[derive(Debug)]
pub struct Cadence {
    quiet: Duration,
    busy: Duration,
    /// Lines read since `since`, the start of the last wait.
    lines: usize,
    since: Instant,
    /// When a call's worth of lines gathers at the rate of the last wait; `None`
    /// while the app is busy (its reads do not wait for deadlines).
    full_by: Option<Instant>,
    due: Arc<Due>,
}

impl Cadence {
    /// The cadences of `--flush-interval`: a quarter of it (at most 250 ms) while the
    /// app is quiet, a tenth (at most 100 ms) while it is busy; a quiet app's reads
    /// wait for the deadline in `due` while a batch is open.
    pub fn new(flush_interval: Duration, due: Arc<Due>) -> Cadence {
        Cadence {
            quiet: (flush_interval / 4).min(QUIET_MAX),
            busy: (flush_interval / 10).min(BUSY_MAX),
            lines: 0,
            since: Instant::now(),
            full_by: None,
            due,
        }
    }

    /// Counts lines read in this wake-up.
    pub fn read(&mut self, lines: usize) {
        self.lines += lines;
    }

    /// The wake-up is done (the file is read to its end): how long writes gather
    /// before the next read, from the rate since the last wait.
    pub fn wait(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.since);
        let busy = is_busy(self.lines, elapsed, self.quiet);
        self.full_by = (!busy)
            .then(|| now + elapsed.mul_f64(MAX_BATCH_RECORDS as f64 / self.lines.max(1) as f64));
        self.lines = 0;
        self.since = now;
        if busy {
            self.busy
        } else {
            self.later(now).map_or(self.quiet, |t| t - now)
        }
    }

    /// For a quiet app: a read later than `now` that loses nothing, just before the
    /// published deadline (and before a call's worth gathers); `None` when that
    /// deadline is passed or closer than [`MIN_WAIT`], or there is none.
    /// The tail asks again after each wait: a cut meanwhile publishes the next deadline.
    pub fn later(&self, now: Instant) -> Option<Instant> {
        let at = self.due.get()?.checked_sub(LEAD)?.min(self.full_by?);
        (at >= now + MIN_WAIT).then_some(at)
    }
}

/// True when `lines` read over `elapsed` means a full call's worth
/// ([`MAX_BATCH_RECORDS`]) per `quiet`.
fn is_busy(lines: usize, elapsed: Duration, quiet: Duration) -> bool {
    lines > 0
        && lines as f64 * quiet.as_secs_f64() >= MAX_BATCH_RECORDS as f64 * elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests;
