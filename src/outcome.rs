//! outcome: the closed sets of what becomes of a line, a call and the drain.
//!
//! Each is an enum with `ALL` and `as_str()`: the string is a metric label, a log
//! field, a dead-letter entry's `reason` and a drain report's field, so it is spelled
//! once, here. `ALL` lets the metrics create every series at 0 from the start, and the
//! report sum every reason without a list of its own.

use serde::Serialize;

/// Why a line went to the dead-letter file (`firetail_dead_lettered_total{reason}`,
/// the entry's `reason`, the report's `dead_lettered_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Over Firehose's record limit (the batch stage).
    Oversize,
    /// Not JSON, with `--invalid-json dead-letter` (the batch stage).
    InvalidJson,
    /// Firehose refused the record alone with `InvalidArgumentException` (ship).
    Rejected,
    /// A single record answered HTTP 413, which Firehose itself does not answer for a
    /// record within its limit: a proxy's body limit on the way (ship).
    TooLargeForEndpoint,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 4] = [
        DeadLetterReason::Oversize,
        DeadLetterReason::InvalidJson,
        DeadLetterReason::Rejected,
        DeadLetterReason::TooLargeForEndpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Oversize => "oversize",
            DeadLetterReason::InvalidJson => "invalid_json",
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::TooLargeForEndpoint => "too_large_for_endpoint",
        }
    }
}

/// Why a line is not shipped by design (`firetail_lines_skipped_total{reason}`, the
/// report's `skipped_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Ruby's `Logger` header line.
    Header,
    /// Nothing but whitespace.
    Empty,
}

impl SkipReason {
    pub const ALL: [SkipReason; 2] = [SkipReason::Header, SkipReason::Empty];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Header => "header",
            SkipReason::Empty => "empty",
        }
    }
}

/// How one `PutRecordBatch` call ended (`firetail_put_record_batch_calls_total{outcome}`
/// and the retry WARN's `outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Every record accepted.
    Ok,
    /// Some records failed inside a 200; exactly those are sent again.
    Partial,
    /// A whole-call throttling error (or HTTP 429).
    Throttled,
    /// `ServiceUnavailableException` or an internal failure.
    Unavailable,
    /// Another 5xx.
    ServerError,
    Timeout,
    /// The connection failed or was cut.
    Network,
    /// A 2xx that cannot be matched to the records.
    BadResponse,
    /// `InvalidArgumentException`: the call is split.
    Invalid,
    /// HTTP 413: the call is split.
    TooLarge,
    /// Needs an operator (stream, access, credentials, endpoint).
    ConfigError,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 11] = [
        CallOutcome::Ok,
        CallOutcome::Partial,
        CallOutcome::Throttled,
        CallOutcome::Unavailable,
        CallOutcome::ServerError,
        CallOutcome::Timeout,
        CallOutcome::Network,
        CallOutcome::BadResponse,
        CallOutcome::Invalid,
        CallOutcome::TooLarge,
        CallOutcome::ConfigError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Partial => "partial",
            CallOutcome::Throttled => "throttled",
            CallOutcome::Unavailable => "unavailable",
            CallOutcome::ServerError => "server_error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Network => "network",
            CallOutcome::BadResponse => "bad_response",
            CallOutcome::Invalid => "invalid",
            CallOutcome::TooLarge => "too_large",
            CallOutcome::ConfigError => "config_error",
        }
    }
}

/// How the drain ended (the report's `drain_end`, the termination message). Only
/// `Drained` can mean exit 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainEnd {
    /// The ship stage ended after every stage before it flushed.
    Drained,
    /// `--drain-timeout` passed first.
    Deadline,
    /// A second SIGTERM or SIGINT ended it at once.
    SecondSignal,
    /// A pipeline task failed.
    Error,
}

impl DrainEnd {
    pub const ALL: [DrainEnd; 4] = [
        DrainEnd::Drained,
        DrainEnd::Deadline,
        DrainEnd::SecondSignal,
        DrainEnd::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DrainEnd::Drained => "drained",
            DrainEnd::Deadline => "deadline",
            DrainEnd::SecondSignal => "second_signal",
            DrainEnd::Error => "error",
        }
    }
}

impl std::fmt::Display for DrainEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialised drain end is the same string the log and the message carry.
    #[test]
    fn the_drain_end_serialises_as_its_name() {
        for end in DrainEnd::ALL {
            let json = serde_json::to_value(end).unwrap();
            assert_eq!(json, end.as_str());
        }
    }

    /// Each set's names are distinct: a label value stands for one variant only.
    #[test]
    fn names_are_distinct_within_each_set() {
        fn distinct(names: Vec<&str>) -> bool {
            let set: std::collections::HashSet<_> = names.iter().collect();
            set.len() == names.len()
        }
        assert!(distinct(DeadLetterReason::ALL.map(|r| r.as_str()).to_vec()));
        assert!(distinct(SkipReason::ALL.map(|r| r.as_str()).to_vec()));
        assert!(distinct(CallOutcome::ALL.map(|o| o.as_str()).to_vec()));
        assert!(distinct(DrainEnd::ALL.map(|e| e.as_str()).to_vec()));
    }
}
