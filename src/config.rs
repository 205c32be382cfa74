//! Command line and environment → one validated [`Config`].
//!
//! Every option is a flag and a `FIRETAIL_*` variable (DESIGN §8). clap parses the
//! command line into raw text; [`parse_from`] then looks each value up (flag, then
//! variable, then default — see `values::Given`) and validates it into a typed
//! [`Config`]; nothing downstream re-checks a flag. Every problem is a
//! [`ConfigError`] naming the flag, or the variable when the value came from the
//! environment, and `main` exits 2 on it. The environment is a lookup function so
//! tests parse from a map and never touch the process environment.

mod paths;
mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

use paths::{beside, check_log_path, check_writable_location};
pub use paths::{not_a_regular_file, parent_dir};
pub use values::{format_size, parse_bool, size as parse_size};
use values::{Given, Origin};

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
/// Also at least `--max-in-flight` × [`BATCH_CUT`], so the window never throttles
/// the configured concurrency.
pub const MAX_UNACKED_BYTES: RangeInclusive<u64> = (4 * MIB)..=(1024 * MIB);
/// At least one 1 MiB line plus its envelope; at most what an emptyDir should hold.
pub const DEAD_LETTER_MAX_BYTES: RangeInclusive<u64> = MIB..=(16 * 1024 * MIB);
pub const MAX_IN_FLIGHT: RangeInclusive<usize> = 1..=64;
/// Firehose's JSON de-aggregation (dynamic partitioning's multi-record deaggregation)
/// splits at most 500 records out of one; a larger pack would have to be split by hand.
pub const AGGREGATE_MAX_LINES: RangeInclusive<usize> = 1..=500;
/// The batch stage cuts a batch at 1 MiB (README, "Batching").
pub const BATCH_CUT: u64 = MIB;

/// `firetail --version`: which build this is, down to the commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FIRETAIL_COMMIT"),
    ", built ",
    env!("FIRETAIL_BUILD_DATE"),
    ")"
);

const AFTER_HELP: &str = "\
Every option can also be set by the FIRETAIL_* variable shown beside it; a flag wins
over its variable. Booleans accept true/false, 1/0, yes/no. Durations are written
500ms, 1s, 2m; sizes 512KiB, 16MiB, 1GiB.

AWS: a region is required (AWS_REGION, AWS_DEFAULT_REGION or the profile's region);
endpoint and credentials come from the standard AWS_* variables and chain (IRSA,
EKS Pod Identity). Log level: RUST_LOG (default info).

Signals: SIGTERM or SIGINT starts the drain, a second one ends it at once; SIGHUP is
logged and ignored.

Exit codes:
  0  drained: every line read was shipped, dead-lettered or skipped
  1  lines left undelivered when the drain ended, line counts that do not add up,
     or a fatal runtime error
  2  invalid configuration or usage (the message names the flag or variable)";

/// Ships a JSON-lines log file to Amazon Data Firehose and loses no line on shutdown.
#[derive(Parser, Debug, Clone)]
#[command(name = "firetail", version = VERSION, about, long_about = None, after_help = AFTER_HELP)]
pub struct Args {
    /// The JSON-lines file to follow (waited for if it does not exist yet). Required.
    #[arg(long, env = "FIRETAIL_PATH", value_name = "FILE")]
    path: Option<PathBuf>,

    /// The Firehose delivery stream to ship to. Required.
    #[arg(long, env = "FIRETAIL_STREAM", value_name = "NAME")]
    stream: Option<String>,

    /// The longest a read line waits before its batch is sent (10ms–10m).
    #[arg(
        long,
        env = "FIRETAIL_FLUSH_INTERVAL",
        default_value = "1s",
        value_name = "DURATION"
    )]
    flush_interval: String,

    /// Checkpoint file [default: .firetail-<file name>.json beside the file].
    #[arg(long, env = "FIRETAIL_CHECKPOINT", value_name = "FILE")]
    checkpoint: Option<PathBuf>,

    /// Dead-letter file for lines Firehose can never take [default: .firetail-<file name>.dead.jsonl beside the file].
    #[arg(long, env = "FIRETAIL_DEAD_LETTER", value_name = "FILE")]
    dead_letter: Option<PathBuf>,

    /// Where to write the drain report at exit, for Kubernetes' terminationMessagePath (`kubectl describe pod` shows it) [default: /dev/termination-log when it exists].
    #[arg(long, env = "FIRETAIL_TERMINATION_MESSAGE_PATH", value_name = "FILE")]
    termination_message_path: Option<PathBuf>,

    /// The longest the drain after SIGTERM may take (1s–1h).
    #[arg(
        long,
        env = "FIRETAIL_DRAIN_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    drain_timeout: String,

    /// During the drain, stop reading once the file was quiet this long (10ms–10m, below --drain-timeout).
    #[arg(
        long,
        env = "FIRETAIL_DRAIN_QUIET",
        default_value = "1s",
        value_name = "DURATION"
    )]
    drain_quiet: String,

    /// Where to start a file that has no checkpoint.
    #[arg(long, env = "FIRETAIL_READ_FROM", value_enum, default_value_t = ReadFrom::Beginning)]
    read_from: ReadFrom,

    /// Pack several consecutive JSON lines into one Firehose record (cuts the per-record bill).
    #[arg(long, env = "FIRETAIL_AGGREGATE", action = ArgAction::SetTrue)]
    aggregate: bool,

    /// With --aggregate, the most lines one record may hold (1–500): Firehose's JSON
    /// de-aggregation takes at most 500.
    #[arg(
        long,
        env = "FIRETAIL_AGGREGATE_MAX_LINES",
        default_value = "500",
        value_name = "N"
    )]
    aggregate_max_lines: String,

    /// What to do with a line that is not valid JSON.
    #[arg(long, env = "FIRETAIL_INVALID_JSON", value_enum, default_value_t = InvalidJson::Ship)]
    invalid_json: InvalidJson,

    /// Concurrent PutRecordBatch calls (1–64).
    // 4 by measurement (1M-line backlog over TLS to a local sink): 1 → 436k lines/s,
    // 2 → 629k, 4 → 648k, 8 → 649k with 2 MiB more RSS. Real Firehose answers in tens
    // of milliseconds, which 4 calls of 500 records still cover at ~40k lines/s.
    #[arg(
        long,
        env = "FIRETAIL_MAX_IN_FLIGHT",
        default_value = "4",
        value_name = "N"
    )]
    max_in_flight: String,

    /// Adapt to a throttled stream: the calls in flight (up to --max-in-flight), the send rate and the flush interval (up to 4×) follow Firehose's throttling; false keeps them fixed.
    #[arg(
        long,
        env = "FIRETAIL_ADAPTIVE",
        default_value = "true",
        value_name = "BOOL"
    )]
    adaptive: String,

    /// Address for /metrics, /healthz and /readyz ([::] is dual-stack; 0.0.0.0 where the host has no IPv6).
    #[arg(
        long,
        env = "FIRETAIL_METRICS_ADDR",
        default_value = "[::]:9797",
        value_name = "ADDR"
    )]
    metrics_addr: String,

    /// Log format.
    #[arg(long, env = "FIRETAIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,

    /// The longest one PutRecordBatch attempt may take before it is cut and retried (1s–5m).
    #[arg(
        long,
        env = "FIRETAIL_CALL_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    call_timeout: String,

    /// How long a rotated file read to its end stays open for late writers (1s–1h).
    #[arg(
        long,
        env = "FIRETAIL_ROTATE_WAIT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    rotate_wait: String,

    /// How far reading may run ahead of the checkpoint: the duplicate window (4MiB–1GiB, at least --max-in-flight × 1MiB).
    #[arg(
        long,
        env = "FIRETAIL_MAX_UNACKED_BYTES",
        default_value = "16MiB",
        value_name = "SIZE"
    )]
    max_unacked_bytes: String,

    /// Size at which the dead-letter file rotates to one .1 file (1MiB–16GiB).
    #[arg(
        long,
        env = "FIRETAIL_DEAD_LETTER_MAX_BYTES",
        default_value = "64MiB",
        value_name = "SIZE"
    )]
    dead_letter_max_bytes: String,
}

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
    let floor = max_in_flight as u64 * BATCH_CUT;
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
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Parses `extra` after `--path <dir>/access.log --stream s`, with `env` as the
    /// whole environment.
    fn parse_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let path = dir.join("access.log");
        let mut argv = vec![
            "firetail".to_string(),
            "--path".into(),
            path.display().to_string(),
            "--stream".into(),
            "s".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        parse_from(argv, &|k| env.get(k).cloned()).map_err(|e| match e {
            ParseError::Invalid(e) => e.to_string(),
            ParseError::Usage(e) => e.to_string(),
            ParseError::Help(h) => h,
        })
    }

    fn parse(dir: &Path, extra: &[&str]) -> Result<Config, String> {
        parse_env(dir, extra, &[])
    }

    #[test]
    fn defaults_follow_design() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(dir.path(), &[]).unwrap();
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.drain_quiet, Duration::from_secs(1));
        assert_eq!(c.max_in_flight, 4);
        assert_eq!(c.read_from, ReadFrom::Beginning);
        assert_eq!(c.invalid_json, InvalidJson::Ship);
        assert!(!c.aggregate);
        assert_eq!(c.aggregate_max_lines, 500);
        assert!(c.adaptive);
        assert_eq!(c.checkpoint, dir.path().join(".firetail-access.log.json"));
        assert_eq!(
            c.dead_letter,
            dir.path().join(".firetail-access.log.dead.jsonl")
        );
        assert_eq!(c.metrics_addr, "[::]:9797".parse().unwrap());
        assert_eq!(c.rotate_wait, Duration::from_secs(30));
        assert_eq!(c.max_unacked_bytes, 16 << 20);
        assert_eq!(c.dead_letter_max_bytes, 64 << 20);
    }

    #[test]
    fn a_termination_message_path_given_is_taken_from_the_flag_or_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("termination-log");
        let flag = ["--termination-message-path", file.to_str().unwrap()];
        let c = parse(dir.path(), &flag).unwrap();
        assert_eq!(c.termination_message.as_deref(), Some(file.as_path()));
        let env = [("FIRETAIL_TERMINATION_MESSAGE_PATH", file.to_str().unwrap())];
        let c = parse_env(dir.path(), &[], &env).unwrap();
        assert_eq!(c.termination_message.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn durations_are_humantime() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(
            dir.path(),
            &["--flush-interval", "250ms", "--drain-timeout", "2m"],
        )
        .unwrap();
        assert_eq!(c.flush_interval, Duration::from_millis(250));
        assert_eq!(c.drain_timeout, Duration::from_secs(120));
    }

    /// Each option with a value that is malformed, out of range, or in conflict.
    const BAD: &[(&str, &str)] = &[
        ("--flush-interval", "soon"),
        ("--flush-interval", "0s"),
        ("--flush-interval", "1000000000y"),
        ("--flush-interval", "11m"),
        ("--drain-timeout", "0s"),
        ("--drain-timeout", "2h"),
        ("--drain-quiet", "5ms"),
        ("--drain-quiet", "10s"),
        ("--call-timeout", "500ms"),
        ("--call-timeout", "6m"),
        ("--rotate-wait", "500ms"),
        ("--rotate-wait", "2h"),
        ("--max-unacked-bytes", "1MiB"),
        ("--max-unacked-bytes", "2GiB"),
        ("--max-unacked-bytes", "lots"),
        ("--dead-letter-max-bytes", "512KiB"),
        ("--dead-letter-max-bytes", "17GiB"),
        ("--max-in-flight", "0"),
        ("--max-in-flight", "65"),
        ("--max-in-flight", "four"),
        ("--adaptive", "maybe"),
        ("--aggregate-max-lines", "0"),
        ("--aggregate-max-lines", "501"),
        ("--read-from", "middle"),
        ("--invalid-json", "drop"),
        ("--log-format", "xml"),
        ("--metrics-addr", "nowhere"),
        ("--stream", "has space"),
    ];

    #[test]
    fn bad_values_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        for (flag, value) in BAD {
            let err = parse(dir.path(), &[flag, value]).unwrap_err();
            assert!(err.contains(flag), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn bad_values_from_the_environment_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        // --stream is on the command line of every case here; see below.
        for (flag, value) in BAD.iter().filter(|(f, _)| *f != "--stream") {
            let var = format!(
                "FIRETAIL_{}",
                flag.trim_start_matches("--")
                    .replace('-', "_")
                    .to_uppercase()
            );
            let err = parse_env(dir.path(), &[], &[(&var, value)]).unwrap_err();
            assert!(
                err.contains(&format!("invalid value for {var}")),
                "{var}={value}: {err}"
            );
        }
    }

    #[test]
    fn a_flag_wins_over_its_variable() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse_env(
            dir.path(),
            &["--flush-interval", "300ms"],
            &[("FIRETAIL_FLUSH_INTERVAL", "soon")],
        )
        .unwrap();
        assert_eq!(c.flush_interval, Duration::from_millis(300));
    }

    #[test]
    fn variables_fill_what_flags_leave_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let env: HashMap<String, OsString> = [
            ("FIRETAIL_PATH", log.as_os_str()),
            ("FIRETAIL_STREAM", "orders".as_ref()),
            ("FIRETAIL_READ_FROM", "END".as_ref()),
            ("FIRETAIL_MAX_IN_FLIGHT", "8".as_ref()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_os_string()))
        .collect();
        let c = parse_from(["firetail"], &|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.path, log);
        assert_eq!(c.stream, "orders");
        assert_eq!(c.read_from, ReadFrom::End);
        assert_eq!(c.max_in_flight, 8);
    }

    #[test]
    fn aggregate_accepts_every_boolean_spelling() {
        let dir = tempfile::tempdir().unwrap();
        for (v, want) in [
            ("1", true),
            ("yes", true),
            ("TRUE", true),
            ("0", false),
            ("no", false),
        ] {
            let c = parse_env(dir.path(), &[], &[("FIRETAIL_AGGREGATE", v)]).unwrap();
            assert_eq!(c.aggregate, want, "{v}");
        }
        assert!(
            !parse_env(dir.path(), &[], &[("FIRETAIL_AGGREGATE", "")])
                .unwrap()
                .aggregate
        );
        let err = parse_env(dir.path(), &[], &[("FIRETAIL_AGGREGATE", "sometimes")]).unwrap_err();
        assert!(err.contains("FIRETAIL_AGGREGATE"), "{err}");
        assert!(parse(dir.path(), &["--aggregate"]).unwrap().aggregate);
    }

    #[test]
    fn drain_quiet_must_be_shorter_than_drain_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let err = parse(
            dir.path(),
            &["--drain-quiet", "5s", "--drain-timeout", "5s"],
        )
        .unwrap_err();
        assert!(
            err.contains("--drain-quiet") && err.contains("--drain-timeout"),
            "{err}"
        );
        assert!(parse(
            dir.path(),
            &["--drain-quiet", "4s", "--drain-timeout", "5s"]
        )
        .is_ok());
    }

    #[test]
    fn the_duplicate_window_covers_every_call_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let err = parse(
            dir.path(),
            &["--max-in-flight", "16", "--max-unacked-bytes", "8MiB"],
        )
        .unwrap_err();
        assert!(
            err.contains("--max-unacked-bytes") && err.contains("16MiB"),
            "{err}"
        );
        let c = parse(
            dir.path(),
            &["--max-in-flight", "16", "--max-unacked-bytes", "16MiB"],
        )
        .unwrap();
        assert_eq!(c.max_unacked_bytes, 16 << 20);
    }

    #[test]
    fn missing_required_values_say_what_to_set() {
        let err = parse_from(["firetail", "--stream", "s"], &|_| None).unwrap_err();
        let ParseError::Invalid(e) = err else {
            panic!("{err:?}")
        };
        assert_eq!(e.name, "--path");
        assert!(e.problem.contains("FIRETAIL_PATH"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log").into_os_string();
        let env = |k: &str| match k {
            "FIRETAIL_STREAM" => Some(OsString::from("has space")),
            "FIRETAIL_PATH" => Some(log.clone()),
            _ => None,
        };
        let Err(ParseError::Invalid(e)) = parse_from(["firetail"], &env) else {
            panic!("a bad stream name from the environment was accepted")
        };
        assert_eq!(e.name, "FIRETAIL_STREAM");
    }

    #[test]
    fn help_lists_exit_codes_and_variables() {
        let Err(ParseError::Help(help)) = parse_from(["firetail", "--help"], &|_| None) else {
            panic!("--help is not help")
        };
        for want in [
            "Exit codes:",
            "FIRETAIL_FLUSH_INTERVAL",
            "FIRETAIL_AGGREGATE",
            "SIGHUP",
            "4MiB–1GiB",
        ] {
            assert!(help.contains(want), "{want} missing from:\n{help}");
        }
    }

    #[test]
    fn stream_name_is_checked() {
        let o = Origin::Flag("--stream".into());
        assert!(check_stream_name("orders-access_log.v2", &o).is_ok());
        assert_eq!(check_stream_name("", &o).unwrap_err().name, "--stream");
        assert!(check_stream_name("has space", &o).is_err());
        assert!(check_stream_name(&"x".repeat(65), &o).is_err());
    }
}
