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
mod paths;
mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, ValueEnum};

pub use args::{Args, VERSION};
use paths::{beside, check_log_path, check_writable_location};
pub use paths::{not_a_regular_file, parent_dir};
pub use values::{format_size, parse_bool, size as parse_size};
use values::{Given, Origin};

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
    pub path: PathBuf,
    pub stream: String,
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

/// Every value that clap cannot check alone, and the defaults that depend on `--path`.
fn validate(given: &Given) -> Result<Config, ConfigError> {
    let stream = required(given, "stream", "--stream", "FIRETAIL_STREAM")?;
    check_stream_name(&stream.0, &stream.1)?;
    let (path, path_origin) = given
        .path("path")
        .ok_or_else(|| missing("--path", "FIRETAIL_PATH"))?;
    let path = check_log_path(&path, &path_origin)?;
    let (max_in_flight, _) = given.parsed("max_in_flight", |s| values::count(s, &MAX_IN_FLIGHT))?;
    let (checkpoint, dead_letter) = side_files(given, &path)?;
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
        path,
        stream: stream.0,
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

fn missing(flag: &str, var: &str) -> ConfigError {
    ConfigError {
        name: flag.to_string(),
        problem: format!("is required (give {flag} or set {var})"),
    }
}

fn required(
    given: &Given,
    id: &str,
    flag: &str,
    var: &str,
) -> Result<(String, Origin), ConfigError> {
    given.text(id)?.ok_or_else(|| missing(flag, var))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address:port such as 0.0.0.0:9797 or [::]:9797"))
}

/// The checkpoint and dead-letter paths (defaults beside the log file), each proven
/// writable, and all three files different.
fn side_files(given: &Given, path: &Path) -> Result<(PathBuf, PathBuf), ConfigError> {
    let pick = |id: &str, flag: &str, suffix: &str| match given.path(id) {
        Some(p) => p,
        None => (
            beside(path, ".firetail-", suffix),
            Origin::Flag(flag.to_string()),
        ),
    };
    let (checkpoint, cp_origin) = pick("checkpoint", "--checkpoint", ".json");
    check_writable_location(&cp_origin, &checkpoint)?;
    let (dead_letter, dl_origin) = pick("dead_letter", "--dead-letter", ".dead.jsonl");
    check_writable_location(&dl_origin, &dead_letter)?;
    if checkpoint == dead_letter || checkpoint == path || dead_letter == path {
        return Err(cp_origin.bad(
            "the log file, the checkpoint and the dead-letter file must be three different files",
        ));
    }
    Ok((checkpoint, dead_letter))
}

fn check_stream_name(name: &str, origin: &Origin) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(origin.bad("must not be empty"));
    }
    if name.len() > STREAM_NAME_MAX {
        return Err(origin.bad("is longer than 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(origin.bad(format!(
            "{name:?} contains {c:?}; a stream name has only letters, digits, '_', '.' and '-'"
        )));
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
