//! Command line and environment → one validated [`Config`].
//!
//! Every option is a flag and a `FIRETAIL_*` variable (docs/design.md#command-line).
//! clap parses the command line into raw text (`args`); [`parse_from`] then looks
//! each value up (flag, then variable, then default — see `values::Given`) and
//! validates it into a typed [`Config`]; nothing downstream re-checks a flag. Every
//! problem is a [`ConfigError`] naming the flag, or the variable when the value came
//! from the environment, and `main` exits 2 on it. The environment is a lookup function so
//! tests parse from a map and never touch the process environment.

mod args;
mod fields;
mod paths;
mod sources;
mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, ValueEnum};

pub use args::{Args, VERSION};
use paths::side_files;
pub use paths::{not_a_regular_file, parent_dir};
pub use sources::{SourceConfig, DEFAULT_SOURCE, MATCH};
use values::Given;
pub use values::{format_size, parse_bool, size as parse_size};

use crate::firehose::{BATCH_BYTES, MAX_DEAGGREGATED_RECORDS};

/// Firehose caps a stream name at 64 characters of `[a-zA-Z0-9_.-]` (API reference,
/// `DeliveryStreamName`); checking here turns a typo into exit 2 instead of a
/// `ResourceNotFoundException` loop.
const STREAM_NAME_MAX: usize = 64;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const MIB: u64 = 1 << 20;

/// Every range below keeps a value where it still means something and where adding it
/// to a clock reading cannot overflow (`1000000000y` used to panic in `Instant`).
/// Firehose itself buffers for up to 900 s, so waiting longer than 10 min to send a
/// line helps nothing.
pub const FLUSH_INTERVAL: RangeInclusive<Duration> = ms(10)..=secs(600);
/// A pod's grace period is what bounds the drain in practice; an hour covers any.
pub const DRAIN_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(3600);
/// Must also stay below `--drain-timeout`, or every drain would end at the deadline.
pub const DRAIN_QUIET: RangeInclusive<Duration> = ms(10)..=secs(600);
/// Below 1 s a healthy call over a slow link would be cut; above 5 min a hung
/// connection holds an in-flight slot for longer than any grace period.
pub const CALL_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(300);
pub const ROTATE_WAIT: RangeInclusive<Duration> = secs(1)..=secs(3600);
/// Also at least `--max-in-flight` × the batch cut ([`BATCH_BYTES`], 1 MiB:
/// docs/design.md#firehose-rules), so the window never throttles the configured
/// concurrency.
pub const MAX_UNACKED_BYTES: RangeInclusive<u64> = (4 * MIB)..=(1024 * MIB);
/// At least one 1 MiB line plus its envelope; at most what an emptyDir should hold.
pub const DEAD_LETTER_MAX_BYTES: RangeInclusive<u64> = MIB..=(16 * 1024 * MIB);
pub const MAX_IN_FLIGHT: RangeInclusive<usize> = 1..=64;
/// Firehose's JSON de-aggregation (dynamic partitioning's multi-record deaggregation)
/// splits at most 500 records out of one; a larger pack would have to be split by hand.
pub const AGGREGATE_MAX_LINES: RangeInclusive<usize> = 1..=MAX_DEAGGREGATED_RECORDS;
/// Files followed at once over all sources, each an open descriptor: the floor keeps
/// one, the ceiling stays far below any descriptor limit firetail raises itself to.
pub const MAX_FILES: RangeInclusive<usize> = 1..=65536;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    End,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvalidJson {
    Ship,
    DeadLetter,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl ReadFrom {
    /// The value as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Beginning => "beginning",
            ReadFrom::End => "end",
        }
    }
}

impl InvalidJson {
    /// The value as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            InvalidJson::Ship => "ship",
            InvalidJson::DeadLetter => "dead-letter",
        }
    }
}

/// The validated configuration. Every field is known good.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// At least one; a single `--path`/`--stream` is one named [`DEFAULT_SOURCE`].
    pub sources: Vec<SourceConfig>,
    /// Added to every JSON object line, in the order given.
    pub add_fields: Vec<(String, String)>,
    /// Adds `"KEY":"<source name>"` to every JSON object line.
    pub source_field: Option<String>,
    /// Adds `"KEY":"<path the file was opened at>"` to every JSON object line.
    pub file_field: Option<String>,
    pub max_files: usize,
    #[serde(with = "humantime_serde_compat")]
    pub flush_interval: Duration,
    pub checkpoint: PathBuf,
    pub dead_letter: PathBuf,
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub drain_quiet: Duration,
    pub read_from: ReadFrom,
    pub aggregate: bool,
    pub aggregate_max_lines: usize,
    pub invalid_json: InvalidJson,
    pub max_in_flight: usize,
    pub adaptive: bool,
    pub metrics_addr: SocketAddr,
    pub log_format: LogFormat,
    #[serde(with = "humantime_serde_compat")]
    pub call_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub rotate_wait: Duration,
    pub max_unacked_bytes: u64,
    pub dead_letter_max_bytes: u64,
    /// Where the drain report goes at exit; `None` outside Kubernetes.
    pub termination_message: Option<PathBuf>,
}

/// A configuration problem: which flag or variable, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {problem}")]
pub struct ConfigError {
    /// `--flag`, or `FIRETAIL_*` when the value came from the environment.
    pub name: String,
    pub problem: String,
}

/// Why parsing did not produce a [`Config`].
#[derive(Debug)]
pub enum ParseError {
    /// `--help`: the text to print on stdout, exit 0.
    Help(String),
    /// clap's own answer: `--version` (exit 0) or a usage error (exit 2).
    Usage(clap::Error),
    /// A value that is wrong (exit 2).
    Invalid(ConfigError),
}

impl From<ConfigError> for ParseError {
    fn from(e: ConfigError) -> Self {
        ParseError::Invalid(e)
    }
}

/// Parses `argv` with `env` as the environment: the one entry point, used by `main`
/// with the process's arguments and environment and by tests with a map.
pub fn parse_from<I, T>(
    argv: I,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // Arg::env reads the process environment as the command is built; switch that
    // off for parsing (the variables come from `env`), keep it for the help text.
    let full = Args::command().mut_args(|a| a.hide_env_values(true));
    let quiet = full.clone().mut_args(|a| a.env(None::<&'static str>));
    let matches = match quiet.try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            return Err(ParseError::Help(full.clone().render_help().to_string()))
        }
        Err(e) => return Err(ParseError::Usage(e)),
    };
    Ok(validate(&Given::new(&full, matches, env))?)
}

/// Every value that clap cannot check alone, and the defaults that depend on the
/// sources.
fn validate(given: &Given) -> Result<Config, ConfigError> {
    let sources = sources::from_given(given)?;
    let (max_in_flight, _) = given.parsed("max_in_flight", |s| values::count(s, &MAX_IN_FLIGHT))?;
    let (checkpoint, dead_letter) = side_files(given, &sources)?;
    let fields = fields::from_given(given)?;
    let dur = |id: &str, range: &RangeInclusive<Duration>| {
        given.parsed(id, |s| values::duration(s, range))
    };
    let (drain_timeout, _) = dur("drain_timeout", &DRAIN_TIMEOUT)?;
    let (drain_quiet, quiet_origin) = dur("drain_quiet", &DRAIN_QUIET)?;
    if drain_quiet >= drain_timeout {
        return Err(quiet_origin.bad(format!(
            "{} is not shorter than --drain-timeout ({}): every drain would end at the deadline",
            humantime::format_duration(drain_quiet),
            humantime::format_duration(drain_timeout)
        )));
    }
    let (max_unacked_bytes, unacked_origin) = given.parsed("max_unacked_bytes", |s| {
        values::size_within(s, &MAX_UNACKED_BYTES)
    })?;
    let floor = max_in_flight as u64 * BATCH_BYTES as u64;
    if max_unacked_bytes < floor {
        return Err(unacked_origin.bad(format!(
            "{} is below --max-in-flight ({max_in_flight}) × the 1MiB batch cut = {}; the window would throttle the calls in flight",
            format_size(max_unacked_bytes),
            format_size(floor)
        )));
    }
    Ok(Config {
        sources,
        add_fields: fields.add,
        source_field: fields.source,
        file_field: fields.file,
        max_files: given
            .parsed("max_files", |s| values::count(s, &MAX_FILES))?
            .0,
        flush_interval: dur("flush_interval", &FLUSH_INTERVAL)?.0,
        checkpoint,
        dead_letter,
        drain_timeout,
        drain_quiet,
        read_from: given.parsed("read_from", values::choice)?.0,
        aggregate: given.switch("aggregate")?,
        aggregate_max_lines: given
            .parsed("aggregate_max_lines", |s| {
                values::count(s, &AGGREGATE_MAX_LINES)
            })?
            .0,
        invalid_json: given.parsed("invalid_json", values::choice)?.0,
        max_in_flight,
        adaptive: given.parsed("adaptive", parse_bool)?.0,
        metrics_addr: given.parsed("metrics_addr", parse_addr)?.0,
        log_format: given.parsed("log_format", values::choice)?.0,
        call_timeout: dur("call_timeout", &CALL_TIMEOUT)?.0,
        rotate_wait: dur("rotate_wait", &ROTATE_WAIT)?.0,
        max_unacked_bytes,
        dead_letter_max_bytes: given
            .parsed("dead_letter_max_bytes", |s| {
                values::size_within(s, &DEAD_LETTER_MAX_BYTES)
            })?
            .0,
        termination_message: termination_message(given),
    })
}

/// Kubernetes' default `terminationMessagePath`. The kubelet mounts a file there, so it
/// exists in every container; elsewhere nothing is written unless a path is given.
const TERMINATION_LOG: &str = "/dev/termination-log";

fn termination_message(given: &Given) -> Option<PathBuf> {
    given
        .path("termination_message_path")
        .map(|(p, _)| p)
        .or_else(|| {
            Path::new(TERMINATION_LOG)
                .is_file()
                .then(|| TERMINATION_LOG.into())
        })
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address:port such as 0.0.0.0:9797 or [::]:9797"))
}

/// Firehose's rule for a stream name, as the sentence saying how `name` breaks it.
fn stream_problem(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > STREAM_NAME_MAX {
        return Err("is longer than 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; a stream name has only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// Serialises durations as humantime strings in the start-up log line.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests;
