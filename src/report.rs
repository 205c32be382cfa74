//! The drain report: what happened to every line, logged once at exit, and the exit
//! code it implies (docs/design.md#shutdown-and-drain, #observability).

use std::time::Duration;

use serde::Serialize;

use crate::metrics::{Metrics, SourceMetrics};
use crate::outcome::{DeadLetterReason, DrainEnd, SkipReason};
use crate::progress::{LineTally, Progress, Unacknowledged};

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
    /// The same figures per source, from each source's counters.
    pub sources: Vec<SourceReport>,
    /// The acknowledged offset of the one file followed; absent with several paths.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// Set when read ≠ shipped + dead-lettered + skipped + undelivered, or the ledger's
    /// own books do not balance: a line counted twice or lost from a count. Exit 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_mismatch: Option<String>,
    #[serde(skip)]
    pub ledger: LineTally,
    #[serde(skip)]
    pub unacknowledged: Vec<Unacknowledged>,
}

/// What happened to the lines of one source.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SourceReport {
    pub source: String,
    pub lines_read: u64,
    pub lines_shipped: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Read − shipped − dead-lettered − skipped, from this source's counters (the
    /// ledger does not keep its books per source; the total's `undelivered` is its).
    pub undelivered: u64,
}

impl SourceReport {
    fn of(s: &SourceMetrics) -> SourceReport {
        let lines_read = s.lines_read.get();
        let (lines_shipped, dead_lettered, skipped) = (
            s.lines_shipped.get(),
            s.dead_lettered_all(),
            s.skipped_all(),
        );
        SourceReport {
            source: s.name.clone(),
            lines_read,
            lines_shipped,
            dead_lettered,
            skipped,
            undelivered: lines_read.saturating_sub(lines_shipped + dead_lettered + skipped),
        }
    }

    /// One short line for a person: `source web: 10 read, 9 shipped, …`.
    fn line(&self) -> String {
        format!(
            "source {}: {} read, {} shipped, {} dead-lettered, {} skipped, {} undelivered\n",
            self.source,
            self.lines_read,
            self.lines_shipped,
            self.dead_lettered,
            self.skipped,
            self.undelivered
        )
    }
}

impl Report {
    /// 0 when every line read was shipped, dead-lettered or skipped, the counts add
    /// up and no task failed, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.undelivered == 0
            && self.drain_end == DrainEnd::Drained
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

/// Lines that reached their end: shipped, dead-lettered or skipped.
pub fn settled(m: &Metrics) -> u64 {
    m.total_lines_shipped()
        + DeadLetterReason::ALL
            .iter()
            .map(|r| m.dead_lettered(*r))
            .sum::<u64>()
        + SkipReason::ALL.iter().map(|r| m.skipped(*r)).sum::<u64>()
}

/// The report as the counters and the ledger stand now.
pub fn report(m: &Metrics, progress: &Progress, drain: Duration, drain_end: DrainEnd) -> Report {
    let ledger = progress.line_tally();
    let lines_read = m.total_lines_read();
    let mut report = Report {
        lines_read,
        lines_shipped: m.total_lines_shipped(),
        records_shipped: m.records_shipped.get(),
        dead_lettered_oversize: m.dead_lettered(DeadLetterReason::Oversize),
        dead_lettered_invalid_json: m.dead_lettered(DeadLetterReason::InvalidJson),
        dead_lettered_rejected: m.dead_lettered(DeadLetterReason::Rejected),
        dead_lettered_too_large_for_endpoint: m
            .dead_lettered(DeadLetterReason::TooLargeForEndpoint),
        skipped_header: m.skipped(SkipReason::Header),
        skipped_empty: m.skipped(SkipReason::Empty),
        undelivered: lines_read.saturating_sub(ledger.settled),
        duplicates_possible: m.duplicates_possible.get(),
        sources: m.sources().iter().map(SourceReport::of).collect(),
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
            sources_undelivered = %report.sources.iter().filter(|s| s.undelivered > 0).map(|s| format!("{}={}", s.source, s.undelivered)).collect::<Vec<_>>().join(","),
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
        sources = %serde_json::to_string(&report.sources).unwrap_or_default(),
        checkpoint_offset = report.checkpoint_offset,
        drain_seconds = report.drain_seconds,
        drain_end = report.drain_end.as_str(),
        failed_task = report.failed_task.as_deref(),
        failed_error = report.failed_error.as_deref(),
        count_mismatch = report.count_mismatch.as_deref(),
        "Drain report."
    );
}

/// The kubelet keeps at most this much of a termination message.
const TERMINATION_MESSAGE_MAX: usize = 4096;

/// Room for the per-source lines of the termination message; the rest is for the
/// first line and the totals as JSON.
const SOURCE_LINES_MAX: usize = 2048;

/// The termination message: one line a person reads in `kubectl describe pod`, a short
/// line per source (as many as fit, then "… and N more sources"), then the drain
/// report's totals as JSON on the last line. A gauge set just before exit is almost
/// never scraped, so this (and the container's exit code, which kube-state-metrics
/// exports) is how an alert learns that a drain left lines undelivered.
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
    let mut json = serde_json::to_value(report).unwrap_or_default();
    if let Some(totals) = json.as_object_mut() {
        // Listed line by line above, within the size limit.
        totals.remove("sources");
    }
    let mut text = head + &source_lines(&report.sources) + &json.to_string();
    if text.len() > TERMINATION_MESSAGE_MAX {
        let mut cut = TERMINATION_MESSAGE_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// A line per source while they fit in [`SOURCE_LINES_MAX`], then how many more.
fn source_lines(sources: &[SourceReport]) -> String {
    let mut out = String::new();
    for (i, source) in sources.iter().enumerate() {
        let line = source.line();
        let left = sources.len() - i;
        let more = format!(
            "… and {left} more {}\n",
            if left == 1 { "source" } else { "sources" }
        );
        // Room is kept for the "more" line while another source follows.
        let reserve = if left == 1 { 0 } else { more.len() };
        if out.len() + line.len() + reserve > SOURCE_LINES_MAX {
            out.push_str(&more);
            break;
        }
        out.push_str(&line);
    }
    out
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
mod tests;
