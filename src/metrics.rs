//! metrics: what operators see — Prometheus series, `/healthz`, `/readyz`.
//!
//! Every stage holds an `Arc<Metrics>` and bumps its own series; [`serve`] (in
//! `server.rs`, with the protections that keep the port from hurting shipping) answers
//! `/metrics` (Prometheus text, through `prometheus-client`'s encoder), `/healthz`
//! (the process is alive) and `/readyz` (following the file, not draining, no
//! configuration error blocking delivery: [`crate::health::Health`]) on
//! `--metrics-addr` (docs/design.md#observability). The label values come from
//! [`crate::outcome`], and from the configuration: what happens to lines is counted
//! per source ([`Metrics::source`]), what the adaptive control does per stream
//! ([`Metrics::stream`]); the rest is the pod's. A file path is never a label: a glob
//! matches any number of files over a pod's life.

mod labelled;
mod server;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::handover::SourceId;
use crate::outcome::{DeadLetterReason, SkipReason};
use labelled::{SourceFamilies, StreamFamilies};
pub use labelled::{SourceMetrics, StreamMetrics};
pub use server::{bind, serve, serve_with, Limits};

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
    /// Indexed by `SourceId`.
    sources: Vec<SourceMetrics>,
    /// Indexed by lane (one per distinct stream).
    streams: Vec<StreamMetrics>,
    pub records_shipped: Counter,
    pub bytes_shipped: Counter,
    pub billable_bytes: Counter,
    pub duplicates_possible: Counter,
    pub lag_bytes: Gauge,
    pub checkpoint_writes: Counter,
    pub checkpoint_corrupt: Counter,
    pub checkpointed_files_missing: Counter,
    pub call_seconds: Histogram,
    pub drain_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub undelivered_lines: Gauge,
    pub billable_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub unacked_bytes: Gauge,
    pub oldest_unacked_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Where `oldest_unacked_age` is read at each scrape (see [`Metrics::sample_age`]).
    age_source: std::sync::OnceLock<AgeSource>,
    pub checkpoint_write_failures: Counter,
    pub dead_letter_entries_dropped: Counter,
    pub rotated_files_evicted: Counter,
    pub file_open_failures: Counter,
    pub metrics_connections_rejected: Counter,
    pub build_info: Family<BuildInfo, Gauge>,
}

/// One source and one stream, both named `default`: what tests and the one-path form use.
impl Default for Metrics {
    fn default() -> Self {
        let default = ["default".to_string()];
        Self::new(&default, &default)
    }
}

impl Metrics {
    /// The series of `sources` (in `SourceId` order) and `streams` (in lane order),
    /// every labelled one created at 0.
    pub fn new(sources: &[String], streams: &[String]) -> Metrics {
        let mut registry = Registry::with_prefix("firetail");
        let source_families = SourceFamilies::default();
        let stream_families = StreamFamilies::default();
        source_families.register(&mut registry);
        stream_families.register(&mut registry);
        let m = Metrics {
            sources: sources.iter().map(|n| source_families.source(n)).collect(),
            streams: streams.iter().map(|n| stream_families.stream(n)).collect(),
            records_shipped: Counter::default(),
            bytes_shipped: Counter::default(),
            billable_bytes: Counter::default(),
            duplicates_possible: Counter::default(),
            lag_bytes: Gauge::default(),
            checkpoint_writes: Counter::default(),
            checkpoint_corrupt: Counter::default(),
            checkpointed_files_missing: Counter::default(),
            // 5 ms … ~40 s: a healthy call is tens of milliseconds, a hung one hits the
            // call timeout.
            call_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            drain_seconds: Gauge::default(),
            undelivered_lines: Gauge::default(),
            billable_ratio: Gauge::default(),
            unacked_bytes: Gauge::default(),
            oldest_unacked_age: Gauge::default(),
            age_source: std::sync::OnceLock::new(),
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
        r.register("duplicates_possible", "Records sent again after an answer that never came (timeout, reset): Firehose may hold them twice", m.duplicates_possible.clone());
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

    /// The series of `config`'s sources, and of each stream they name once, in the
    /// order they first name it (the pipeline's lanes find theirs by name).
    pub fn for_config(config: &crate::config::Config) -> Metrics {
        let sources: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
        let mut streams: Vec<String> = Vec::new();
        for s in &config.sources {
            if !streams.contains(&s.stream) {
                streams.push(s.stream.clone());
            }
        }
        Metrics::new(&sources, &streams)
    }

    /// Sets the build info (the labelled series were created with their source or
    /// stream).
    fn start_at_zero(&self) {
        let build = BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("FIRETAIL_COMMIT"),
        };
        self.build_info.get_or_create(&build).set(1);
    }

    /// The series of source `id`: its index in the configured sources.
    pub fn source(&self, id: SourceId) -> &SourceMetrics {
        &self.sources[usize::from(id)]
    }

    /// Every source's series, in `SourceId` order.
    pub fn sources(&self) -> &[SourceMetrics] {
        &self.sources
    }

    /// The series of lane `i`'s stream.
    pub fn stream(&self, i: usize) -> &StreamMetrics {
        &self.streams[i]
    }

    /// Every stream's series, in lane order.
    pub fn streams(&self) -> &[StreamMetrics] {
        &self.streams
    }

    fn sum(&self, count: impl Fn(&SourceMetrics) -> u64) -> u64 {
        self.sources.iter().map(count).sum()
    }

    /// Lines read from every source.
    pub fn total_lines_read(&self) -> u64 {
        self.sum(|s| s.lines_read.get())
    }

    /// Lines shipped from every source.
    pub fn total_lines_shipped(&self) -> u64 {
        self.sum(|s| s.lines_shipped.get())
    }

    /// Invalid JSON lines from every source.
    pub fn total_invalid_json(&self) -> u64 {
        self.sum(|s| s.invalid_json.get())
    }

    /// Lines dead-lettered for `reason`, over every source.
    pub fn dead_lettered(&self, reason: DeadLetterReason) -> u64 {
        self.sum(|s| s.dead_lettered(reason))
    }

    /// Lines skipped for `reason`, over every source.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.sum(|s| s.skipped(reason))
    }

    /// Counts `lines` (each line's source, one at a time) in the counter `pick` chooses,
    /// one add per run of lines of one source.
    pub fn count_by_source(
        &self,
        lines: impl IntoIterator<Item = (SourceId, u64)>,
        pick: impl Fn(&SourceMetrics) -> &Counter,
    ) {
        let mut run: Option<(SourceId, u64)> = None;
        for (source, n) in lines {
            match &mut run {
                Some((s, total)) if *s == source => *total += n,
                _ => {
                    if let Some((s, total)) = run.replace((source, n)) {
                        pick(self.source(s)).inc_by(total);
                    }
                }
            }
        }
        if let Some((s, total)) = run {
            pick(self.source(s)).inc_by(total);
        }
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
