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
