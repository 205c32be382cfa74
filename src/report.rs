//! The drain report: what happened to every line, logged once at exit, and the exit
//! code it implies (docs/design.md#shutdown-and-drain, #observability).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use crate::metrics::{Metrics, Reason};
use crate::progress::{LineTally, Progress, Unacknowledged};
use crate::ship::TOO_LARGE_FOR_ENDPOINT;

/// Dead-letter reasons, each a field of the report.
const DEAD_LETTER_REASONS: [&str; 4] = [
    "oversize",
    "invalid_json",
    "rejected",
    TOO_LARGE_FOR_ENDPOINT,
];

/// What happened to every line, logged once at exit.
#[derive(Debug, Serialize)]
pub struct Report {
    pub lines_read: u64,
    pub lines_shipped: u64,
    pub records_shipped: u64,
    pub dead_lettered_oversize: u64,
    pub dead_lettered_invalid_json: u64,
    pub dead_lettered_rejected: u64,
    pub dead_lettered_too_large_for_endpoint: u64,
    pub skipped_header: u64,
    pub skipped_empty: u64,
    /// From the ledger, not from the counters above: lines read that no stage settled
    /// — never registered in a batch's span, or registered and never shipped,
    /// dead-lettered or skipped.
    pub undelivered: u64,
    pub duplicates_possible: u64,
    pub checkpoint_offset: Option<u64>,
    pub drain_seconds: f64,
    /// How the drain ended: `drained`, `deadline`, `second_signal`, `error`.
    pub drain_end: &'static str,
    /// The pipeline tasks that failed (`tail`, `batch`, `ship`, `checkpoint`), comma
    /// separated; absent when none did. Any failure means exit 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_task: Option<String>,
    /// What each failed task's error was, `task: error` joined by `; `.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_error: Option<String>,
    /// Set when read ≠ shipped + dead-lettered + skipped + undelivered, or the ledger's
    /// own books do not balance: a line counted twice or lost from a count. Exit 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_mismatch: Option<String>,
    #[serde(skip)]
    pub ledger: LineTally,
    #[serde(skip)]
    pub unacknowledged: Vec<Unacknowledged>,
}

impl Report {
    /// 0 when every line read was shipped, dead-lettered or skipped, the counts add
    /// up and no task failed, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.undelivered == 0
            && self.drain_end == "drained"
            && self.failed_task.is_none()
            && self.count_mismatch.is_none()
        {
            0
        } else {
            1
        }
    }

    fn dead_lettered(&self) -> u64 {
        self.dead_lettered_oversize
            + self.dead_lettered_invalid_json
            + self.dead_lettered_rejected
            + self.dead_lettered_too_large_for_endpoint
    }

    fn skipped(&self) -> u64 {
        self.skipped_header + self.skipped_empty
    }

    /// The README's identity, read = shipped + dead-lettered + skipped + undelivered,
    /// with `undelivered` counted by the ledger; and the ledger's own books: each span
    /// registered is acknowledged once or still pending, and only after its lines were
    /// settled. `None` when all hold.
    fn check_counts(&self) -> Option<String> {
        let LineTally {
            settled,
            registered,
            acknowledged,
            pending,
        } = self.ledger;
        let accounted =
            self.lines_shipped + self.dead_lettered() + self.skipped() + self.undelivered;
        if accounted == self.lines_read
            && settled <= self.lines_read
            && registered == acknowledged + pending
            && acknowledged <= settled
        {
            return None;
        }
        Some(format!(
            "{} lines read, but {} shipped + {} dead-lettered + {} skipped + {} undelivered = {accounted}; the ledger settled {settled}, registered {registered}, acknowledged {acknowledged}, has {pending} pending",
            self.lines_read,
            self.lines_shipped,
            self.dead_lettered(),
            self.skipped(),
            self.undelivered,
        ))
    }
}

fn reason(f: &Family<Reason, Counter>, reason: &'static str) -> u64 {
    f.get_or_create(&Reason { reason }).get()
}

/// Lines that reached their end: shipped, dead-lettered or skipped.
pub fn settled(m: &Metrics) -> u64 {
    m.lines_shipped.get()
        + DEAD_LETTER_REASONS
            .iter()
            .map(|r| reason(&m.dead_lettered, r))
            .sum::<u64>()
        + ["header", "empty"]
            .iter()
            .map(|r| reason(&m.skipped, r))
            .sum::<u64>()
}

/// The report as the counters and the ledger stand now.
pub fn report(
    m: &Metrics,
    progress: &Progress,
    drain: Duration,
    drain_end: &'static str,
) -> Report {
    let ledger = progress.line_tally();
    let lines_read = m.lines_read.get();
    let mut report = Report {
        lines_read,
        lines_shipped: m.lines_shipped.get(),
        records_shipped: m.records_shipped.get(),
        dead_lettered_oversize: reason(&m.dead_lettered, "oversize"),
        dead_lettered_invalid_json: reason(&m.dead_lettered, "invalid_json"),
        dead_lettered_rejected: reason(&m.dead_lettered, "rejected"),
        dead_lettered_too_large_for_endpoint: reason(&m.dead_lettered, TOO_LARGE_FOR_ENDPOINT),
        skipped_header: reason(&m.skipped, "header"),
        skipped_empty: reason(&m.skipped, "empty"),
        undelivered: lines_read.saturating_sub(ledger.settled),
        duplicates_possible: m.duplicates_possible.get(),
        checkpoint_offset: progress.current_offset(),
        drain_seconds: drain.as_secs_f64(),
        drain_end,
        failed_task: None,
        failed_error: None,
        count_mismatch: None,
        ledger,
        unacknowledged: progress.unacknowledged(),
    };
    report.count_mismatch = report.check_counts();
    report
}

/// The drain report (one INFO line a chaos test can assert on), and an ERROR first
/// when lines were left undelivered.
pub fn log_report(metrics: &Metrics, report: &Report) {
    metrics.drain_seconds.set(report.drain_seconds);
    metrics.undelivered_lines.set(report.undelivered as i64);
    if let Some(mismatch) = &report.count_mismatch {
        tracing::error!(
            lines_read = report.lines_read,
            lines_shipped = report.lines_shipped,
            dead_lettered = report.dead_lettered(),
            skipped = report.skipped(),
            undelivered = report.undelivered,
            ledger_settled = report.ledger.settled,
            ledger_registered = report.ledger.registered,
            ledger_acknowledged = report.ledger.acknowledged,
            ledger_pending = report.ledger.pending,
            mismatch = %mismatch,
            "Line counts do not add up (read = shipped + dead-lettered + skipped + undelivered): a line was counted twice or dropped from a count, so the report cannot be trusted; exiting 1."
        );
    }
    if report.undelivered > 0 {
        tracing::error!(
            undelivered = report.undelivered,
            unacknowledged = %serde_json::to_string(&report.unacknowledged).unwrap_or_default(),
            drain_end = report.drain_end,
            failed_task = report.failed_task.as_deref(),
            "Lines left undelivered; they stay unacknowledged in the checkpoint and a restart on it ships them."
        );
    }
    tracing::info!(
        lines_read = report.lines_read,
        lines_shipped = report.lines_shipped,
        records_shipped = report.records_shipped,
        dead_lettered_oversize = report.dead_lettered_oversize,
        dead_lettered_invalid_json = report.dead_lettered_invalid_json,
        dead_lettered_rejected = report.dead_lettered_rejected,
        dead_lettered_too_large_for_endpoint = report.dead_lettered_too_large_for_endpoint,
        skipped_header = report.skipped_header,
        skipped_empty = report.skipped_empty,
        undelivered = report.undelivered,
        duplicates_possible = report.duplicates_possible,
        checkpoint_offset = report.checkpoint_offset,
        drain_seconds = report.drain_seconds,
        drain_end = report.drain_end,
        failed_task = report.failed_task.as_deref(),
        failed_error = report.failed_error.as_deref(),
        count_mismatch = report.count_mismatch.as_deref(),
        "Drain report."
    );
}

/// The kubelet keeps at most this much of a termination message.
const TERMINATION_MESSAGE_MAX: usize = 4096;

/// The termination message: one line a person reads in `kubectl describe pod`, then
/// the drain report as JSON. A gauge set just before exit is almost never scraped, so
/// this (and the container's exit code, which kube-state-metrics exports) is how an
/// alert learns that a drain left lines undelivered.
pub fn termination_message(report: &Report, exit_code: u8) -> String {
    let head = format!(
        "firetail exit {exit_code}: drain {}, {} lines read, {} shipped, {} undelivered{}{}\n",
        report.drain_end,
        report.lines_read,
        report.lines_shipped,
        report.undelivered,
        report
            .failed_task
            .as_deref()
            .map(|t| format!(", failed task: {t}"))
            .unwrap_or_default(),
        if report.count_mismatch.is_some() {
            ", counts do not add up"
        } else {
            ""
        }
    );
    let mut text = head + &serde_json::to_string(report).unwrap_or_default();
    if text.len() > TERMINATION_MESSAGE_MAX {
        let mut cut = TERMINATION_MESSAGE_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Writes `message` to the termination-message file, if there is one. A failure is a
/// WARN: the drain report is in the log too.
pub fn write_termination_message(path: Option<&std::path::Path>, message: &str) {
    let Some(path) = path else { return };
    if let Err(e) = std::fs::write(path, message) {
        tracing::warn!(file = %path.display(), error = %e, "Cannot write the termination message; the drain report is in the log.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_task_means_exit_1_even_when_everything_was_delivered() {
        let m = Metrics::new();
        let p = Progress::default();
        let mut r = report(&m, &p, Duration::ZERO, "drained");
        assert_eq!(r.exit_code(), 0);
        r.failed_task = Some("tail".into());
        assert_eq!(r.exit_code(), 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["failed_task"], "tail");
        r.failed_task = None;
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("failed_task").is_none(), "absent when none failed");
    }

    /// A ledger for one file with `read` lines read, and the outcome counters.
    fn books(read: u64) -> (Metrics, Progress) {
        let m = Metrics::new();
        m.lines_read.inc_by(read);
        let p = Progress::default();
        let id = crate::progress::Identity {
            dev: 1,
            ino: 2,
            fp_len: 0,
            fp_hash: 0,
        };
        p.open(0, &id, std::path::Path::new("/log"), 0);
        (m, p)
    }

    /// Ten lines at `start` (lines of 10 bytes).
    fn ten(start: u64) -> crate::progress::Span {
        crate::progress::Span {
            file: 0,
            start: start * 10,
            end: (start + 10) * 10,
            lines: 10,
        }
    }

    /// `lines` settled as `outcome`, counted by the stage (the outcome counters) and
    /// by the ledger, as the pipeline does.
    fn settle(m: &Metrics, p: &Progress, outcome: &str, lines: u64) {
        match outcome {
            "shipped" => m.lines_shipped.inc_by(lines),
            "skipped" => m
                .skipped
                .get_or_create(&Reason { reason: "empty" })
                .inc_by(lines),
            _ => m
                .dead_lettered
                .get_or_create(&Reason { reason: "oversize" })
                .inc_by(lines),
        };
        p.settled(lines);
    }

    /// The log lines `f` emits, as JSON.
    fn logged(f: impl FnOnce()) -> Vec<serde_json::Value> {
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The ERROR for counts that do not add up, with its figures, and the exit code.
    fn mismatch_error(m: &Metrics, p: &Progress) -> (serde_json::Value, u8) {
        let r = report(m, p, Duration::ZERO, "drained");
        let logs = logged(|| log_report(m, &r));
        let error = logs
            .into_iter()
            .find(|v| v["level"] == "ERROR" && v.get("ledger_registered").is_some())
            .unwrap_or_else(|| panic!("no ERROR for {r:?}"));
        assert!(r.count_mismatch.is_some());
        (error, r.exit_code())
    }

    /// Undelivered is what the ledger never saw settled — here a batch half shipped
    /// when the deadline came, and lines never registered — and the identity holds.
    #[test]
    fn undelivered_is_counted_by_the_ledger_and_the_identity_holds() {
        let (m, p) = books(40);
        p.register(&[ten(0), ten(10), ten(20)]);
        // ten(0): 7 shipped, 3 skipped; ten(20): 10 dead-lettered; both acknowledged.
        settle(&m, &p, "shipped", 7);
        settle(&m, &p, "skipped", 3);
        settle(&m, &p, "dead_lettered", 10);
        p.ack(&[ten(0), ten(20)]);
        // ten(10): 4 of its lines shipped, 6 still waiting; 30..40 never registered.
        settle(&m, &p, "shipped", 4);
        let r = report(&m, &p, Duration::ZERO, "deadline");
        assert_eq!((r.undelivered, &r.count_mismatch), (16, &None), "{r:?}");
        assert_eq!(r.exit_code(), 1, "lines left undelivered");
        let logs = logged(|| log_report(&m, &r));
        assert!(logs.iter().all(|v| v.get("ledger_registered").is_none()));
        settle(&m, &p, "shipped", 6);
        p.ack(&[ten(10)]);
        let r = report(&m, &p, Duration::ZERO, "deadline");
        assert_eq!((r.undelivered, &r.count_mismatch), (10, &None), "{r:?}");
    }

    /// A batch's lines counted shipped twice: the old `read − settled` gave 0
    /// undelivered and exit 0 here; the ledger's count shows the sum exceeds what was
    /// read.
    #[test]
    fn a_batch_counted_shipped_twice_is_an_error_naming_the_figures_and_exit_1() {
        let (m, p) = books(20);
        p.register(&[ten(0), ten(10)]);
        settle(&m, &p, "shipped", 10);
        p.ack(&[ten(0)]);
        m.lines_shipped.inc_by(10);
        let (error, code) = mismatch_error(&m, &p);
        assert_eq!(code, 1);
        assert_eq!(
            [
                &error["lines_read"],
                &error["lines_shipped"],
                &error["dead_lettered"],
                &error["skipped"],
                &error["undelivered"],
            ],
            [20, 20, 0, 0, 10]
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("Line counts do not add up"),
            "{message}"
        );
    }

    /// A span acknowledged twice (here in place of another): the identity alone still
    /// adds up, the ledger's books do not.
    #[test]
    fn a_span_acknowledged_twice_is_an_error_and_exit_1() {
        let (m, p) = books(20);
        p.register(&[ten(0), ten(10)]);
        settle(&m, &p, "shipped", 10);
        p.ack(&[ten(0)]);
        p.ack(&[ten(0)]);
        let (error, code) = mismatch_error(&m, &p);
        assert_eq!(code, 1);
        assert_eq!(
            [
                &error["ledger_registered"],
                &error["ledger_acknowledged"],
                &error["ledger_pending"],
            ],
            [20, 20, 10]
        );
    }

    /// A record settled twice by the ship stage: the ledger's count runs past what was
    /// read, which no saturation at 0 undelivered may hide.
    #[test]
    fn a_record_settled_twice_in_the_ledger_is_an_error_and_exit_1() {
        let (m, p) = books(10);
        p.register(&[ten(0)]);
        settle(&m, &p, "shipped", 10);
        p.settled(10);
        p.ack(&[ten(0)]);
        let (error, code) = mismatch_error(&m, &p);
        assert_eq!((error["ledger_settled"].as_u64(), code), (Some(20), 1));
    }

    /// A span acknowledged before its lines were settled: more acknowledged than
    /// settled.
    #[test]
    fn a_span_acknowledged_before_its_lines_settled_is_an_error_and_exit_1() {
        let (m, p) = books(10);
        p.register(&[ten(0)]);
        p.ack(&[ten(0)]);
        let (error, code) = mismatch_error(&m, &p);
        assert_eq!((error["ledger_acknowledged"].as_u64(), code), (Some(10), 1));
        assert_eq!(error["undelivered"], 10);
    }

    /// The kubelet keeps 4,096 bytes of a termination message: the line a person
    /// reads comes first and survives however long the report's error text is.
    #[test]
    fn the_termination_message_fits_the_kubelets_limit_and_leads_with_the_outcome() {
        let m = Metrics::new();
        let p = Progress::default();
        let mut r = report(&m, &p, Duration::ZERO, "error");
        r.failed_task = Some("tail".into());
        r.failed_error = Some("é".repeat(10_000));
        let text = termination_message(&r, 1);
        assert!(text.len() <= TERMINATION_MESSAGE_MAX, "{}", text.len());
        assert!(text.starts_with(
            "firetail exit 1: drain error, 0 lines read, 0 shipped, 0 undelivered, failed task: tail\n"
        ));
    }
}
