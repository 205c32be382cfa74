//! cadence: how soon the tail reads again while the app writes.
//!
//! An app writes line by line and inotify reports every write: reading on each would
//! wake the pipeline hundreds of times a second, each wake-up paying checks, a
//! hand-over and a thread switch (issue 15 measured ~40 a second costing more than
//! the lines themselves). So writes gather between reads, for a time that depends on
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
//! Either way a line waits at most a quarter of an interval before it is read; the
//! first write after a quiet spell is read at once.

use std::time::Duration;

use tokio::time::Instant;

/// The longest a quiet app's lines wait before they are read.
const QUIET_MAX: Duration = Duration::from_millis(250);
/// The longest a busy app's lines wait before they are read.
const BUSY_MAX: Duration = Duration::from_millis(100);
/// A full `PutRecordBatch` call's worth of lines: an app that writes this many in a
/// quiet cadence's time is busy.
const FULL_CALL_LINES: usize = 500;

/// The read cadence of one tail.
#[derive(Debug)]
pub struct Cadence {
    quiet: Duration,
    busy: Duration,
    /// Lines read since `since`, the start of the last wait.
    lines: usize,
    since: Instant,
}

impl Cadence {
    /// The cadences of `--flush-interval`: a quarter of it (at most 250 ms) while the
    /// app is quiet, a tenth (at most 100 ms) while it is busy.
    pub fn new(flush_interval: Duration) -> Cadence {
        Cadence {
            quiet: (flush_interval / 4).min(QUIET_MAX),
            busy: (flush_interval / 10).min(BUSY_MAX),
            lines: 0,
            since: Instant::now(),
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
        self.lines = 0;
        self.since = now;
        if busy {
            self.busy
        } else {
            self.quiet
        }
    }
}

/// True when `lines` read over `elapsed` means a full call's worth per `quiet`.
fn is_busy(lines: usize, elapsed: Duration, quiet: Duration) -> bool {
    lines > 0
        && lines as f64 * quiet.as_secs_f64() >= FULL_CALL_LINES as f64 * elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_default_flush_interval_reads_every_quarter_or_tenth_second() {
        let c = Cadence::new(Duration::from_secs(1));
        assert_eq!((c.quiet, c.busy), (250 * MS, 100 * MS));
        let c = Cadence::new(Duration::from_secs(10));
        assert_eq!((c.quiet, c.busy), (250 * MS, 100 * MS), "capped");
        let c = Cadence::new(200 * MS);
        assert_eq!((c.quiet, c.busy), (50 * MS, 20 * MS));
    }

    /// 5,000 lines/s fills a call in 100 ms; 500 lines/s takes a second. The
    /// threshold sits at 2,000 lines/s with the default interval.
    #[test]
    fn a_rate_that_fills_a_call_per_quiet_wait_is_busy() {
        let quiet = 250 * MS;
        assert!(is_busy(500, 100 * MS, quiet), "5,000 lines/s");
        assert!(is_busy(1_250, 250 * MS, quiet), "5,000 lines/s read late");
        assert!(!is_busy(125, 250 * MS, quiet), "500 lines/s");
        assert!(!is_busy(199, 100 * MS, quiet), "1,990 lines/s");
        assert!(is_busy(200, 100 * MS, quiet), "2,000 lines/s");
        assert!(!is_busy(0, Duration::ZERO, quiet), "nothing read");
    }

    #[test]
    fn the_wait_follows_the_rate_since_the_last_wait() {
        let mut c = Cadence::new(Duration::from_secs(1));
        let t0 = c.since;
        c.read(125);
        assert_eq!(c.wait(t0 + 250 * MS), 250 * MS, "500 lines/s is quiet");
        c.read(1_000);
        c.read(250);
        assert_eq!(c.wait(t0 + 500 * MS), 100 * MS, "5,000 lines/s is busy");
        c.read(500);
        assert_eq!(c.wait(t0 + 600 * MS), 100 * MS, "and stays busy");
        c.read(600);
        assert_eq!(
            c.wait(t0 + 10_600 * MS),
            250 * MS,
            "a burst after a quiet spell is a low rate"
        );
    }
}
