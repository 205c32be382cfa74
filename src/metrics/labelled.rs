//! The series told apart by a label: per source (what happened to the lines of one
//! name's files) and per stream (each lane's own adaptive control). The counters of
//! each label value are made once, at start, and handed out as plain `Counter`s, so a
//! stage that bumps one does no label lookup (docs/design.md#observability).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::outcome::{CallOutcome, DeadLetterReason, SkipReason};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonSource {
    pub reason: &'static str,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeStream {
    pub outcome: &'static str,
    pub stream: String,
}

/// Where `x` stands in its enum's `ALL` (the order the per-reason counters are kept in).
fn index_of<T: PartialEq + Copy>(all: &[T], x: T) -> usize {
    all.iter()
        .position(|a| *a == x)
        .expect("an enum's ALL lists every value")
}

/// The line-level series of one source.
#[derive(Debug)]
pub struct SourceMetrics {
    pub name: String,
    pub lines_read: Counter,
    pub lines_shipped: Counter,
    pub invalid_json: Counter,
    pub files_opened: Counter,
    pub rotations: Counter,
    pub truncations: Counter,
    /// Files of the source open now.
    pub files_followed: Gauge,
    /// Files the source matches that are not followed: over `--max-files`.
    pub files_not_followed: Gauge,
    pub fields_app_kept: Counter,
    pub fields_not_object: Counter,
    /// In the order of `DeadLetterReason::ALL`.
    dead_lettered: Vec<Counter>,
    /// In the order of `SkipReason::ALL`.
    skipped: Vec<Counter>,
}

impl SourceMetrics {
    /// Counts `lines` lines written to the dead-letter file for `reason`.
    pub fn dead_letter(&self, reason: DeadLetterReason, lines: u64) {
        self.dead_lettered[index_of(&DeadLetterReason::ALL, reason)].inc_by(lines);
    }

    /// Lines dead-lettered for `reason` so far.
    pub fn dead_lettered(&self, reason: DeadLetterReason) -> u64 {
        self.dead_lettered[index_of(&DeadLetterReason::ALL, reason)].get()
    }

    /// Lines dead-lettered for any reason so far.
    pub fn dead_lettered_all(&self) -> u64 {
        self.dead_lettered.iter().map(Counter::get).sum()
    }

    pub fn skip(&self, reason: SkipReason) {
        self.skipped[index_of(&SkipReason::ALL, reason)].inc();
    }

    /// Lines skipped for `reason` so far.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[index_of(&SkipReason::ALL, reason)].get()
    }

    /// Lines skipped for any reason so far.
    pub fn skipped_all(&self) -> u64 {
        self.skipped.iter().map(Counter::get).sum()
    }
}

/// The control series of one stream (one lane's ship stage).
#[derive(Debug)]
pub struct StreamMetrics {
    pub name: String,
    pub in_flight: Gauge,
    pub in_flight_limit: Gauge,
    pub flush_interval_seconds: FloatGauge,
    pub send_rate_limit: FloatGauge,
    pub throttled: Counter,
    pub throttled_records: Counter,
    pub throttled_calls: Counter,
    pub records_retried: Counter,
    /// In the order of `CallOutcome::ALL`.
    calls: Vec<Counter>,
}

impl StreamMetrics {
    pub fn call(&self, outcome: CallOutcome) {
        self.calls[index_of(&CallOutcome::ALL, outcome)].inc();
    }

    /// PutRecordBatch calls with `outcome` so far.
    pub fn calls(&self, outcome: CallOutcome) -> u64 {
        self.calls[index_of(&CallOutcome::ALL, outcome)].get()
    }
}

/// The per-source families, as registered.
#[derive(Default)]
pub(super) struct SourceFamilies {
    lines_read: Family<SourceLabel, Counter>,
    lines_shipped: Family<SourceLabel, Counter>,
    invalid_json: Family<SourceLabel, Counter>,
    files_opened: Family<SourceLabel, Counter>,
    rotations: Family<SourceLabel, Counter>,
    truncations: Family<SourceLabel, Counter>,
    files_followed: Family<SourceLabel, Gauge>,
    files_not_followed: Family<SourceLabel, Gauge>,
    fields_app_kept: Family<SourceLabel, Counter>,
    fields_not_object: Family<SourceLabel, Counter>,
    dead_lettered: Family<ReasonSource, Counter>,
    skipped: Family<ReasonSource, Counter>,
}

impl SourceFamilies {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "lines_read",
            "Lines read from the log files (complete lines, including skipped ones)",
            self.lines_read.clone(),
        );
        r.register(
            "lines_shipped",
            "Lines accepted by Firehose",
            self.lines_shipped.clone(),
        );
        r.register(
            "dead_lettered",
            "Lines written to the dead-letter file, by reason",
            self.dead_lettered.clone(),
        );
        r.register(
            "lines_skipped",
            "Lines not shipped by design, by reason (Logger header, empty)",
            self.skipped.clone(),
        );
        r.register("invalid_json_lines", "Lines that are not valid JSON (shipped as they are, or dead-lettered with --invalid-json dead-letter)", self.invalid_json.clone());
        r.register(
            "files_opened",
            "Log files opened",
            self.files_opened.clone(),
        );
        r.register(
            "rotations",
            "Rename rotations followed",
            self.rotations.clone(),
        );
        r.register(
            "truncations",
            "Truncations (copytruncate) detected",
            self.truncations.clone(),
        );
        r.register(
            "files_followed",
            "Files of the source open now (the current file and rotated files still read)",
            self.files_followed.clone(),
        );
        r.register(
            "files_not_followed",
            "Files the source matches that are not followed because --max-files are open",
            self.files_not_followed.clone(),
        );
        r.register(
            "fields_app_kept",
            "Lines where a key the application wrote won over an added field of the same name",
            self.fields_app_kept.clone(),
        );
        r.register(
            "fields_not_object",
            "Lines shipped without the added fields: not a JSON object, or too large for a record with them",
            self.fields_not_object.clone(),
        );
    }

    /// The series of the source `name`, created at 0.
    pub(super) fn source(&self, name: &str) -> SourceMetrics {
        let label = SourceLabel {
            source: name.to_string(),
        };
        let by_reason = |family: &Family<ReasonSource, Counter>, reason: &'static str| {
            family
                .get_or_create(&ReasonSource {
                    reason,
                    source: name.to_string(),
                })
                .clone()
        };
        SourceMetrics {
            name: name.to_string(),
            lines_read: self.lines_read.get_or_create(&label).clone(),
            lines_shipped: self.lines_shipped.get_or_create(&label).clone(),
            invalid_json: self.invalid_json.get_or_create(&label).clone(),
            files_opened: self.files_opened.get_or_create(&label).clone(),
            rotations: self.rotations.get_or_create(&label).clone(),
            truncations: self.truncations.get_or_create(&label).clone(),
            files_followed: self.files_followed.get_or_create(&label).clone(),
            files_not_followed: self.files_not_followed.get_or_create(&label).clone(),
            fields_app_kept: self.fields_app_kept.get_or_create(&label).clone(),
            fields_not_object: self.fields_not_object.get_or_create(&label).clone(),
            dead_lettered: DeadLetterReason::ALL
                .iter()
                .map(|r| by_reason(&self.dead_lettered, r.as_str()))
                .collect(),
            skipped: SkipReason::ALL
                .iter()
                .map(|r| by_reason(&self.skipped, r.as_str()))
                .collect(),
        }
    }
}

/// The per-stream families, as registered.
#[derive(Default)]
pub(super) struct StreamFamilies {
    in_flight: Family<StreamLabel, Gauge>,
    in_flight_limit: Family<StreamLabel, Gauge>,
    flush_interval_seconds: Family<StreamLabel, FloatGauge>,
    send_rate_limit: Family<StreamLabel, FloatGauge>,
    throttled: Family<StreamLabel, Counter>,
    throttled_records: Family<StreamLabel, Counter>,
    throttled_calls: Family<StreamLabel, Counter>,
    records_retried: Family<StreamLabel, Counter>,
    calls: Family<OutcomeStream, Counter>,
}

impl StreamFamilies {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "put_record_batch_calls",
            "PutRecordBatch calls by outcome",
            self.calls.clone(),
        );
        r.register(
            "records_retried",
            "Records sent again after a failure (per-record or whole-call)",
            self.records_retried.clone(),
        );
        r.register("throttled", "Throttled answers: whole calls (ThrottlingException, LimitExceededException) plus records answered \"Slow down.\"", self.throttled.clone());
        r.register(
            "in_flight_calls",
            "PutRecordBatch calls under way",
            self.in_flight.clone(),
        );
        r.register(
            "in_flight_limit",
            "PutRecordBatch calls that may be under way now: --max-in-flight, or less while --adaptive backs off",
            self.in_flight_limit.clone(),
        );
        r.register(
            "flush_interval_seconds",
            "The flush interval in effect: --flush-interval, stretched up to 4x while --adaptive meets sustained throttling",
            self.flush_interval_seconds.clone(),
        );
        r.register(
            "send_rate_limit_records",
            "Records per second this pod may send to the stream while --adaptive meets throttling; 0 while unlimited",
            self.send_rate_limit.clone(),
        );
        r.register(
            "throttled_records",
            "Records answered \"Slow down.\" (ServiceUnavailableException) inside a 200",
            self.throttled_records.clone(),
        );
        r.register(
            "throttled_calls",
            "Whole calls answered with a throttling error (ThrottlingException, LimitExceededException, ServiceUnavailableException: over the stream's request quota, HTTP 429)",
            self.throttled_calls.clone(),
        );
    }

    /// The series of the stream `name`, created at 0.
    pub(super) fn stream(&self, name: &str) -> StreamMetrics {
        let label = StreamLabel {
            stream: name.to_string(),
        };
        StreamMetrics {
            name: name.to_string(),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            in_flight_limit: self.in_flight_limit.get_or_create(&label).clone(),
            flush_interval_seconds: self.flush_interval_seconds.get_or_create(&label).clone(),
            send_rate_limit: self.send_rate_limit.get_or_create(&label).clone(),
            throttled: self.throttled.get_or_create(&label).clone(),
            throttled_records: self.throttled_records.get_or_create(&label).clone(),
            throttled_calls: self.throttled_calls.get_or_create(&label).clone(),
            records_retried: self.records_retried.get_or_create(&label).clone(),
            calls: CallOutcome::ALL
                .iter()
                .map(|o| {
                    self.calls
                        .get_or_create(&OutcomeStream {
                            outcome: o.as_str(),
                            stream: name.to_string(),
                        })
                        .clone()
                })
                .collect(),
        }
    }
}
