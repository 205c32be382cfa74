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
mod tests {
    use super::*;
    use crate::flush_clock::{due_at, jittered};

    const MS: Duration = Duration::from_millis(1);

    /// A cadence of the default interval, the cell its batch stage publishes in, and
    /// the start of its first wait.
    fn with_due() -> (Arc<Due>, Cadence, Instant) {
        let due = Arc::new(Due::new());
        let c = Cadence::new(Duration::from_secs(1), due.clone());
        let t0 = c.since;
        (due, c, t0)
    }

    #[test]
    fn the_default_flush_interval_reads_every_quarter_or_tenth_second() {
        let c = Cadence::new(Duration::from_secs(1), Arc::new(Due::new()));
        assert_eq!((c.quiet, c.busy), (250 * MS, 100 * MS));
        let c = Cadence::new(Duration::from_secs(10), Arc::new(Due::new()));
        assert_eq!((c.quiet, c.busy), (250 * MS, 100 * MS), "capped");
        let c = Cadence::new(200 * MS, Arc::new(Due::new()));
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
        let mut c = Cadence::new(Duration::from_secs(1), Arc::new(Due::new()));
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

    /// 500 lines/s with a batch open and due in 900 ms: one read, `LEAD` before the
    /// deadline, instead of three more on the quiet cadence.
    #[test]
    fn a_quiet_app_is_read_just_before_the_open_batch_is_due() {
        let (due, mut c, t0) = with_due();
        due.set(Some(t0 + 250 * MS + 900 * MS));
        c.read(125);
        assert_eq!(c.wait(t0 + 250 * MS), 900 * MS - LEAD);
    }

    /// 1,500 lines/s is quiet (a call's worth takes a third of a second), but a call's
    /// worth gathers before the deadline: it is read then.
    #[test]
    fn a_call_s_worth_is_read_before_the_deadline() {
        let (due, mut c, t0) = with_due();
        due.set(Some(t0 + 250 * MS + 900 * MS));
        c.read(375);
        let wait = c.wait(t0 + 250 * MS);
        assert!(wait > 330 * MS && wait < 335 * MS, "{wait:?}");
    }

    /// No batch open, or one about to be cut: the quiet cadence. Once the cut
    /// publishes the next deadline, the wait goes on until just before it.
    #[test]
    fn a_near_or_missing_deadline_falls_back_to_the_quiet_cadence() {
        let (due, mut c, t0) = with_due();
        c.read(125);
        assert_eq!(c.wait(t0 + 250 * MS), 250 * MS, "no deadline");
        due.set(Some(t0 + 500 * MS + 60 * MS));
        c.read(125);
        assert_eq!(c.wait(t0 + 500 * MS), 60 * MS - LEAD, "due in 60 ms");
        due.set(Some(t0 + 800 * MS + 35 * MS));
        c.read(125);
        assert_eq!(c.wait(t0 + 800 * MS), 250 * MS, "due in 35 ms");
        assert_eq!(c.later(t0 + 900 * MS), None, "not cut yet");
        due.set(Some(t0 + 1_400 * MS));
        assert_eq!(
            c.later(t0 + 1_050 * MS),
            Some(t0 + 1_400 * MS - LEAD),
            "cut"
        );
    }

    /// A busy app is read every tenth of an interval whatever the deadline: reading
    /// several calls' worth at once makes calls overlap.
    #[test]
    fn a_busy_app_does_not_wait_for_the_deadline() {
        let (due, mut c, t0) = with_due();
        due.set(Some(t0 + 1_000 * MS));
        c.read(500);
        assert_eq!(c.wait(t0 + 100 * MS), 100 * MS);
        assert_eq!(c.later(t0 + 200 * MS), None);
    }

    /// The tail's cadence and the batch deadlines together, on a simulated clock (ms
    /// steps, reads taking no time): a steady writer's lines wait at most one
    /// interval plus `LEAD` from write to cut (the README's latency), and a quiet
    /// app is read about once per batch instead of every quarter interval.
    #[test]
    fn steady_lines_wait_at_most_an_interval_and_lead_with_one_read_per_batch() {
        let interval = Duration::from_secs(1);
        let ms = Duration::from_millis;
        for (every_ms, max_reads_per_s) in [(2u64, 1.6), (10, 1.6), (1, 4.0)] {
            let due = Arc::new(Due::new());
            let t0 = Instant::now();
            let mut cadence = Cadence::new(interval, due.clone());
            let (mut unread, mut open) = (Vec::new(), Vec::new());
            let (mut deadline, mut last_cut): (Option<Instant>, Option<Instant>) = (None, None);
            let mut jitter = jittered(interval);
            let (mut not_before, mut reads, mut worst) = (t0, 0u32, Duration::ZERO);
            for step in 0..60_000u64 {
                let t = t0 + ms(step);
                if step % every_ms == 0 {
                    unread.push(t);
                }
                // The tail: asleep until `not_before`, then reads what inotify reported.
                if t >= not_before {
                    match cadence.later(t) {
                        Some(later) if later > not_before => not_before = later,
                        _ if !unread.is_empty() => {
                            reads += 1;
                            if open.is_empty() {
                                deadline = Some(due_at(t, last_cut, jitter));
                            }
                            cadence.read(unread.len());
                            open.append(&mut unread);
                            not_before = t + cadence.wait(t);
                        }
                        _ => {}
                    }
                }
                // The batch stage: cut when due (or at 500 records), publish the next.
                if deadline.is_some_and(|d| d <= t) || open.len() >= 500 {
                    worst = worst.max(t - open[0]);
                    open.clear();
                    (deadline, last_cut, jitter) = (None, Some(t), jittered(interval));
                }
                due.set(deadline.or(last_cut.map(|c| c + jitter)));
            }
            let per_s = f64::from(reads) / 60.0;
            assert!(
                worst <= interval + LEAD,
                "1 line per {every_ms} ms: waited {worst:?}"
            );
            assert!(
                per_s <= max_reads_per_s,
                "1 line per {every_ms} ms: {per_s} reads/s"
            );
        }
    }
}
