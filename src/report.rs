//! The drain report: what happened to every line, logged once at exit, and the exit
//! code it implies (docs/design.md#shutdown-and-drain, docs/design.md#command-line).

use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::outcome::{DeadLetterReason, DrainEnd, SkipReason};
use crate::progress::{Progress, Unacknowledged};

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
    pub undelivered: u64,
    pub duplicates_possible: u64,
    pub checkpoint_offset: Option<u64>,
    pub drain_seconds: f64,
    /// How the drain ended: `drained`, `deadline`, `second_signal`, `error`.
    pub drain_end: DrainEnd,
    /// The pipeline tasks that failed (`tail`, `batch`, `ship`, `checkpoint`), comma
    /// separated; absent when none did. Any failure means exit 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_task: Option<String>,
    /// What each failed task's error was, `task: error` joined by `; `.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_error: Option<String>,
    #[serde(skip)]
    pub unacknowledged: Vec<Unacknowledged>,
}

impl Report {
    /// 0 when every line read was shipped, dead-lettered or skipped and no task
    /// failed, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.undelivered == 0
            && self.drain_end == DrainEnd::Drained
            && self.failed_task.is_none()
        {
            0
        } else {
            1
        }
    }
}

/// Lines that reached their end: shipped, dead-lettered or skipped.
pub fn settled(m: &Metrics) -> u64 {
    m.lines_shipped.get()
        + DeadLetterReason::ALL
            .iter()
            .map(|r| m.dead_lettered(*r))
            .sum::<u64>()
        + SkipReason::ALL.iter().map(|r| m.skipped(*r)).sum::<u64>()
}

/// The report as the counters and the ledger stand now.
pub fn report(m: &Metrics, progress: &Progress, drain: Duration, drain_end: DrainEnd) -> Report {
    Report {
        lines_read: m.lines_read.get(),
        lines_shipped: m.lines_shipped.get(),
        records_shipped: m.records_shipped.get(),
        dead_lettered_oversize: m.dead_lettered(DeadLetterReason::Oversize),
        dead_lettered_invalid_json: m.dead_lettered(DeadLetterReason::InvalidJson),
        dead_lettered_rejected: m.dead_lettered(DeadLetterReason::Rejected),
        dead_lettered_too_large_for_endpoint: m
            .dead_lettered(DeadLetterReason::TooLargeForEndpoint),
        skipped_header: m.skipped(SkipReason::Header),
        skipped_empty: m.skipped(SkipReason::Empty),
        undelivered: m.lines_read.get().saturating_sub(settled(m)),
        duplicates_possible: m.duplicates_possible.get(),
        checkpoint_offset: progress.current_offset(),
        drain_seconds: drain.as_secs_f64(),
        drain_end,
        failed_task: None,
        failed_error: None,
        unacknowledged: progress.unacknowledged(),
    }
}

/// The drain report (one INFO line a chaos test can assert on), and an ERROR first
/// when lines were left undelivered.
pub fn log_report(metrics: &Metrics, report: &Report) {
    metrics.drain_seconds.set(report.drain_seconds);
    metrics.undelivered_lines.set(report.undelivered as i64);
    if report.undelivered > 0 {
        tracing::error!(
            undelivered = report.undelivered,
            unacknowledged = %serde_json::to_string(&report.unacknowledged).unwrap_or_default(),
            drain_end = report.drain_end.as_str(),
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
        drain_end = report.drain_end.as_str(),
        failed_task = report.failed_task.as_deref(),
        failed_error = report.failed_error.as_deref(),
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
        "firetail exit {exit_code}: drain {}, {} lines read, {} shipped, {} undelivered{}\n",
        report.drain_end,
        report.lines_read,
        report.lines_shipped,
        report.undelivered,
        report
            .failed_task
            .as_deref()
            .map(|t| format!(", failed task: {t}"))
            .unwrap_or_default()
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
        let mut r = report(&m, &p, Duration::ZERO, DrainEnd::Drained);
        assert_eq!(r.exit_code(), 0);
        r.failed_task = Some("tail".into());
        assert_eq!(r.exit_code(), 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["failed_task"], "tail");
        r.failed_task = None;
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("failed_task").is_none(), "absent when none failed");
    }

    /// The kubelet keeps 4,096 bytes of a termination message: the line a person
    /// reads comes first and survives however long the report's error text is.
    #[test]
    fn the_termination_message_fits_the_kubelets_limit_and_leads_with_the_outcome() {
        let m = Metrics::new();
        let p = Progress::default();
        let mut r = report(&m, &p, Duration::ZERO, DrainEnd::Error);
        r.failed_task = Some("tail".into());
        r.failed_error = Some("é".repeat(10_000));
        let text = termination_message(&r, 1);
        assert!(text.len() <= TERMINATION_MESSAGE_MAX, "{}", text.len());
        assert!(text.starts_with(
            "firetail exit 1: drain error, 0 lines read, 0 shipped, 0 undelivered, failed task: tail\n"
        ));
    }
}
