//! metrics: what operators see — Prometheus series, `/healthz`, `/readyz`.
//!
//! Every stage holds an `Arc<Metrics>` and bumps its own series; [`serve`] (in
//! `server.rs`, with the protections that keep the port from hurting shipping) answers
//! `/metrics` (Prometheus text, through `prometheus-client`'s encoder), `/healthz`
//! (the process is alive) and `/readyz` (following the file, not draining, no
//! configuration error blocking delivery: [`crate::health::Health`]) on
//! `--metrics-addr` (docs/design.md#observability). The label values come from
//! [`crate::outcome`].

mod server;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::outcome::{CallOutcome, DeadLetterReason, SkipReason};
pub use server::{bind, serve, serve_with, Limits};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

impl Outcome {
    fn of(outcome: CallOutcome) -> Outcome {
        Outcome {
            outcome: outcome.as_str(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

impl Reason {
    fn dead_letter(reason: DeadLetterReason) -> Reason {
        Reason {
            reason: reason.as_str(),
        }
    }

    fn skip(reason: SkipReason) -> Reason {
        Reason {
            reason: reason.as_str(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
}

/// The age of the oldest unacknowledged batch, `None` when none waits.
type AgeSource = Box<dyn Fn() -> Option<Duration> + Send + Sync>;

/// Every series firetail exports. Names get the `firetail_` prefix at registration;
/// counters get `_total` from the encoder.
pub struct Metrics {
    registry: Registry,
    pub lines_read: Counter,
    pub lines_shipped: Counter,
    pub records_shipped: Counter,
    pub bytes_shipped: Counter,
    pub billable_bytes: Counter,
    pub calls: Family<Outcome, Counter>,
    pub records_retried: Counter,
    pub throttled: Counter,
    pub duplicates_possible: Counter,
    pub dead_lettered: Family<Reason, Counter>,
    pub skipped: Family<Reason, Counter>,
    pub invalid_json: Counter,
    pub in_flight: Gauge,
    pub in_flight_limit: Gauge,
    pub flush_interval_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub send_rate_limit: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub lag_bytes: Gauge,
    pub checkpoint_writes: Counter,
    pub checkpoint_corrupt: Counter,
    pub checkpointed_files_missing: Counter,
    pub files_opened: Counter,
    pub rotations: Counter,
    pub truncations: Counter,
    pub call_seconds: Histogram,
    pub drain_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub undelivered_lines: Gauge,
    pub billable_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub unacked_bytes: Gauge,
    pub oldest_unacked_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Where `oldest_unacked_age` is read at each scrape (see [`Metrics::sample_age`]).
    age_source: std::sync::OnceLock<AgeSource>,
    pub throttled_records: Counter,
    pub throttled_calls: Counter,
    pub checkpoint_write_failures: Counter,
    pub dead_letter_entries_dropped: Counter,
    pub rotated_files_evicted: Counter,
    pub file_open_failures: Counter,
    pub metrics_connections_rejected: Counter,
    pub build_info: Family<BuildInfo, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("firetail");
        let m = Metrics {
            lines_read: Counter::default(),
            lines_shipped: Counter::default(),
            records_shipped: Counter::default(),
            bytes_shipped: Counter::default(),
            billable_bytes: Counter::default(),
            calls: Family::default(),
            records_retried: Counter::default(),
            throttled: Counter::default(),
            duplicates_possible: Counter::default(),
            dead_lettered: Family::default(),
            skipped: Family::default(),
            invalid_json: Counter::default(),
            in_flight: Gauge::default(),
            in_flight_limit: Gauge::default(),
            flush_interval_seconds: Gauge::default(),
            send_rate_limit: Gauge::default(),
            lag_bytes: Gauge::default(),
            checkpoint_writes: Counter::default(),
            checkpoint_corrupt: Counter::default(),
            checkpointed_files_missing: Counter::default(),
            files_opened: Counter::default(),
            rotations: Counter::default(),
            truncations: Counter::default(),
            // 5 ms … ~40 s: a healthy call is tens of milliseconds, a hung one hits the
            // call timeout.
            call_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            drain_seconds: Gauge::default(),
            undelivered_lines: Gauge::default(),
            billable_ratio: Gauge::default(),
            unacked_bytes: Gauge::default(),
            oldest_unacked_age: Gauge::default(),
            age_source: std::sync::OnceLock::new(),
            throttled_records: Counter::default(),
            throttled_calls: Counter::default(),
            checkpoint_write_failures: Counter::default(),
            dead_letter_entries_dropped: Counter::default(),
            rotated_files_evicted: Counter::default(),
            file_open_failures: Counter::default(),
            metrics_connections_rejected: Counter::default(),
            build_info: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "lines_read",
            "Lines read from the log files (complete lines, including skipped ones)",
            m.lines_read.clone(),
        );
        r.register(
            "lines_shipped",
            "Lines accepted by Firehose",
            m.lines_shipped.clone(),
        );
        r.register(
            "records_shipped",
            "Firehose records accepted (a record holds one line, or several with --aggregate)",
            m.records_shipped.clone(),
        );
        r.register(
            "bytes_shipped",
            "Record data bytes accepted by Firehose",
            m.bytes_shipped.clone(),
        );
        r.register("billable_bytes", "Bytes Firehose bills for ingestion: every accepted record rounded up to 5 KB (5,120 bytes)", m.billable_bytes.clone());
        r.register(
            "put_record_batch_calls",
            "PutRecordBatch calls by outcome",
            m.calls.clone(),
        );
        r.register(
            "records_retried",
            "Records sent again after a failure (per-record or whole-call)",
            m.records_retried.clone(),
        );
        r.register("throttled", "Throttled answers: whole calls (ThrottlingException, LimitExceededException) plus records answered \"Slow down.\"", m.throttled.clone());
        r.register("duplicates_possible", "Records sent again after an answer that never came (timeout, reset): Firehose may hold them twice", m.duplicates_possible.clone());
        r.register(
            "dead_lettered",
            "Lines written to the dead-letter file, by reason",
            m.dead_lettered.clone(),
        );
        r.register(
            "lines_skipped",
            "Lines not shipped by design, by reason (Logger header, empty)",
            m.skipped.clone(),
        );
        r.register("invalid_json_lines", "Lines that are not valid JSON (shipped as they are, or dead-lettered with --invalid-json dead-letter)", m.invalid_json.clone());
        r.register(
            "in_flight_calls",
            "PutRecordBatch calls under way",
            m.in_flight.clone(),
        );
        r.register(
            "in_flight_limit",
            "PutRecordBatch calls that may be under way now: --max-in-flight, or less while --adaptive backs off",
            m.in_flight_limit.clone(),
        );
        r.register(
            "flush_interval_seconds",
            "The flush interval in effect: --flush-interval, stretched up to 4x while --adaptive meets sustained throttling",
            m.flush_interval_seconds.clone(),
        );
        r.register(
            "send_rate_limit_records",
            "Records per second this pod may send while --adaptive meets throttling; 0 while unlimited",
            m.send_rate_limit.clone(),
        );
        r.register(
            "lag_bytes",
            "Bytes of the followed files not yet covered by the checkpoint: file ends minus checkpointed offsets",
            m.lag_bytes.clone(),
        );
        r.register(
            "unacked_bytes",
            "Bytes read but not yet covered by a durable checkpoint (bounded by --max-unacked-bytes: the duplicate window)",
            m.unacked_bytes.clone(),
        );
        r.register(
            "oldest_unacked_age_seconds",
            "Age of the oldest batch cut but not yet acknowledged (0 when none waits)",
            m.oldest_unacked_age.clone(),
        );
        r.register(
            "throttled_records",
            "Records answered \"Slow down.\" (ServiceUnavailableException) inside a 200",
            m.throttled_records.clone(),
        );
        r.register(
            "throttled_calls",
            "Whole calls answered with a throttling error (ThrottlingException, LimitExceededException, ServiceUnavailableException: over the stream's request quota, HTTP 429)",
            m.throttled_calls.clone(),
        );
        r.register(
            "checkpoint_write_failures",
            "Checkpoint writes that failed (retried on a timer)",
            m.checkpoint_write_failures.clone(),
        );
        r.register(
            "dead_letter_entries_dropped",
            "Dead-letter entries dropped when the dead-letter file rotated over an older .1",
            m.dead_letter_entries_dropped.clone(),
        );
        r.register(
            "rotated_files_evicted",
            "Finished rotated files closed early because more than 64 were open for late writers",
            m.rotated_files_evicted.clone(),
        );
        r.register(
            "file_open_failures",
            "Failures to open or stat a log file other than its absence (EMFILE, EACCES), retried",
            m.file_open_failures.clone(),
        );
        r.register(
            "metrics_connections_rejected",
            "Connections to the metrics port refused because the connection cap was reached",
            m.metrics_connections_rejected.clone(),
        );
        r.register(
            "checkpoint_writes",
            "Checkpoint files written",
            m.checkpoint_writes.clone(),
        );
        r.register(
            "checkpoint_corrupt",
            "Checkpoint files found unreadable at start (moved aside)",
            m.checkpoint_corrupt.clone(),
        );
        r.register(
            "checkpointed_files_missing",
            "Checkpointed files not found at restart (their unshipped lines, if any, are lost)",
            m.checkpointed_files_missing.clone(),
        );
        r.register("files_opened", "Log files opened", m.files_opened.clone());
        r.register(
            "rotations",
            "Rename rotations followed",
            m.rotations.clone(),
        );
        r.register(
            "truncations",
            "Truncations (copytruncate) detected",
            m.truncations.clone(),
        );
        r.register(
            "put_record_batch_duration_seconds",
            "Latency of one PutRecordBatch attempt",
            m.call_seconds.clone(),
        );
        r.register(
            "drain_duration_seconds",
            "How long the drain after SIGTERM took (set at its end)",
            m.drain_seconds.clone(),
        );
        r.register("billable_ratio", "Billable bytes over bytes shipped: what the 5 KB rounding costs (~17 for 300-byte lines one per record; near 1 with --aggregate)", m.billable_ratio.clone());
        r.register("undelivered_lines", "Lines read but neither shipped nor dead-lettered when the drain ended (set at its end)", m.undelivered_lines.clone());
        r.register(
            "build_info",
            "Always 1; the labels name the running build (version, git commit)",
            m.build_info.clone(),
        );
        m.start_at_zero();
        Metrics { registry, ..m }
    }

    /// Creates every labelled series at 0 and sets the build info.
    fn start_at_zero(&self) {
        for outcome in CallOutcome::ALL {
            let _ = self.calls.get_or_create(&Outcome::of(outcome));
        }
        for reason in DeadLetterReason::ALL {
            let _ = self
                .dead_lettered
                .get_or_create(&Reason::dead_letter(reason));
        }
        for reason in SkipReason::ALL {
            let _ = self.skipped.get_or_create(&Reason::skip(reason));
        }
        let build = BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("FIRETAIL_COMMIT"),
        };
        self.build_info.get_or_create(&build).set(1);
    }

    pub fn call(&self, outcome: CallOutcome) {
        self.calls.get_or_create(&Outcome::of(outcome)).inc();
    }

    /// Counts `lines` lines written to the dead-letter file for `reason`.
    pub fn dead_letter(&self, reason: DeadLetterReason, lines: u64) {
        self.dead_lettered
            .get_or_create(&Reason::dead_letter(reason))
            .inc_by(lines);
    }

    /// Lines dead-lettered for `reason` so far.
    pub fn dead_lettered(&self, reason: DeadLetterReason) -> u64 {
        self.dead_lettered
            .get_or_create(&Reason::dead_letter(reason))
            .get()
    }

    pub fn skip(&self, reason: SkipReason) {
        self.skipped.get_or_create(&Reason::skip(reason)).inc();
    }

    /// Lines skipped for `reason` so far.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get_or_create(&Reason::skip(reason)).get()
    }

    /// Reads `firetail_oldest_unacked_age_seconds` from `source` at each scrape. The
    /// age grows while nothing happens, so it cannot be set by events; a timer that
    /// set it every second woke the runtime thread once a second whenever anything
    /// was unacknowledged, which at a steady rate is always. Only the
    /// first source counts.
    pub fn sample_age(&self, source: impl Fn() -> Option<Duration> + Send + Sync + 'static) {
        let _ = self.age_source.set(Box::new(source));
    }

    /// Every series in OpenMetrics text (what `prometheus-client` encodes).
    pub fn encode(&self) -> String {
        if let Some(age) = self.age_source.get() {
            self.oldest_unacked_age
                .set(age().map_or(0.0, |a| a.as_secs_f64()));
        }
        let shipped = self.bytes_shipped.get();
        if shipped > 0 {
            self.billable_ratio
                .set(self.billable_bytes.get() as f64 / shipped as f64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Every series in the Prometheus text format 0.0.4, for scrapers that do not ask
    /// for OpenMetrics.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }
}

/// Rewrites OpenMetrics text as text format 0.0.4. The samples are the same; what
/// differs is that a 0.0.4 counter's HELP and TYPE carry the sample's own name
/// (`x_total`, where OpenMetrics names the family `x`), and that 0.0.4 has no
/// `# UNIT` and no `# EOF`.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line).trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
