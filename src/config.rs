//! Command line and environment → one validated [`Config`].
//!
//! Every option is a flag and a `FIRETAIL_*` variable (DESIGN §8). Raw arguments are
//! parsed by clap into [`Args`], then [`Args::validate`] turns them into a typed
//! [`Config`]; nothing downstream re-checks a flag. Every problem is reported as a
//! [`ConfigError`] that names the flag, and `main` exits 2 on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Firehose caps a stream name at 64 characters of `[a-zA-Z0-9_.-]` (API reference,
/// `DeliveryStreamName`); checking here turns a typo into exit 2 instead of a
/// `ResourceNotFoundException` loop.
const STREAM_NAME_MAX: usize = 64;

/// Ships a JSON-lines log file to Amazon Data Firehose and loses no line on shutdown.
///
/// Region, endpoint and credentials come from the standard AWS variables and chain
/// (AWS_REGION, AWS_ENDPOINT_URL, IRSA, EKS Pod Identity). Log level: RUST_LOG.
/// Exit codes: 0 drained; 1 lines left undelivered or a fatal error; 2 bad configuration.
#[derive(Parser, Debug, Clone)]
#[command(name = "firetail", version, about, long_about = None)]
pub struct Args {
    /// The JSON-lines file to follow (waited for if it does not exist yet).
    #[arg(long, env = "FIRETAIL_PATH", value_name = "FILE")]
    pub path: PathBuf,

    /// The Firehose delivery stream to ship to.
    #[arg(long, env = "FIRETAIL_STREAM", value_name = "NAME")]
    pub stream: String,

    /// The longest a read line waits before its batch is sent.
    #[arg(long, env = "FIRETAIL_FLUSH_INTERVAL", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub flush_interval: Duration,

    /// Checkpoint file [default: .firetail-<file name>.json beside the file].
    #[arg(long, env = "FIRETAIL_CHECKPOINT", value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Dead-letter file for lines Firehose can never take [default: .firetail-<file name>.dead.jsonl beside the file].
    #[arg(long, env = "FIRETAIL_DEAD_LETTER", value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    /// The longest the drain after SIGTERM may take.
    #[arg(long, env = "FIRETAIL_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// During the drain, stop reading once the file was quiet this long.
    #[arg(long, env = "FIRETAIL_DRAIN_QUIET", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_quiet: Duration,

    /// Where to start a file that has no checkpoint.
    #[arg(long, env = "FIRETAIL_READ_FROM", value_enum, default_value_t = ReadFrom::Beginning)]
    pub read_from: ReadFrom,

    /// Pack several consecutive JSON lines into one Firehose record (cuts the per-record bill).
    #[arg(long, env = "FIRETAIL_AGGREGATE", default_value_t = false)]
    pub aggregate: bool,

    /// What to do with a line that is not valid JSON.
    #[arg(long, env = "FIRETAIL_INVALID_JSON", value_enum, default_value_t = InvalidJson::Ship)]
    pub invalid_json: InvalidJson,

    /// Concurrent PutRecordBatch calls.
    // 4 by measurement (1M-line backlog over TLS to a local sink): 1 → 436k lines/s,
    // 2 → 629k, 4 → 648k, 8 → 649k with 2 MiB more RSS. Real Firehose answers in tens
    // of milliseconds, which 4 calls of 500 records still cover at ~40k lines/s.
    #[arg(
        long,
        env = "FIRETAIL_MAX_IN_FLIGHT",
        default_value_t = 4,
        value_name = "N"
    )]
    pub max_in_flight: usize,

    /// Address for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "FIRETAIL_METRICS_ADDR",
        default_value = "0.0.0.0:9797",
        value_name = "ADDR"
    )]
    pub metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "FIRETAIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// The longest one PutRecordBatch attempt may take before it is cut and retried.
    #[arg(long, env = "FIRETAIL_CALL_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub call_timeout: Duration,

    /// How long a rotated file read to its end stays open for late writers (1s–1h).
    #[arg(long, env = "FIRETAIL_ROTATE_WAIT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub rotate_wait: Duration,

    /// How far reading may run ahead of the checkpoint: the duplicate window (4MiB–1GiB).
    #[arg(long, env = "FIRETAIL_MAX_UNACKED_BYTES", default_value = "16MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_unacked_bytes: u64,

    /// Size at which the dead-letter file rotates to one `.1` file.
    #[arg(long, env = "FIRETAIL_DEAD_LETTER_MAX_BYTES", default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    pub dead_letter_max_bytes: u64,
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
    pub invalid_json: InvalidJson,
    pub max_in_flight: usize,
    pub metrics_addr: SocketAddr,
    pub log_format: LogFormat,
    #[serde(with = "humantime_serde_compat")]
    pub call_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub rotate_wait: Duration,
    pub max_unacked_bytes: u64,
    pub dead_letter_max_bytes: u64,
}

/// A configuration problem: which flag, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {flag}: {problem}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub problem: String,
}

fn bad(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        problem: problem.into(),
    }
}

/// Parses a humantime duration (`500ms`, `1s`, `2m`); zero is rejected because every
/// duration here is a wait that must make progress.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (expected a duration such as 500ms, 1s or 2m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Parses a size: a number of bytes with an optional unit (`KiB`, `MiB`, `GiB`, or
/// `KB`, `MB`, `GB` for powers of ten): `16MiB`, `4194304`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 16MiB, 512KiB or 4194304)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "unknown unit {u:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

impl Args {
    /// Checks every value that clap cannot check alone and resolves the defaults that
    /// depend on `--path`.
    pub fn validate(self) -> Result<Config, ConfigError> {
        check_stream_name(&self.stream)?;
        let path = check_log_path(&self.path)?;
        if !(1..=64).contains(&self.max_in_flight) {
            return Err(bad("--max-in-flight", "must be between 1 and 64"));
        }
        let checkpoint = self
            .checkpoint
            .unwrap_or_else(|| beside(&path, ".firetail-", ".json"));
        check_writable_location("--checkpoint", &checkpoint)?;
        let dead_letter = self
            .dead_letter
            .unwrap_or_else(|| beside(&path, ".firetail-", ".dead.jsonl"));
        check_writable_location("--dead-letter", &dead_letter)?;
        if checkpoint == dead_letter || checkpoint == path || dead_letter == path {
            return Err(bad(
                "--checkpoint",
                "the log file, the checkpoint and the dead-letter file must be three different files",
            ));
        }
        Ok(Config {
            path,
            stream: self.stream,
            flush_interval: self.flush_interval,
            checkpoint,
            dead_letter,
            drain_timeout: self.drain_timeout,
            drain_quiet: self.drain_quiet,
            read_from: self.read_from,
            aggregate: self.aggregate,
            invalid_json: self.invalid_json,
            max_in_flight: self.max_in_flight,
            metrics_addr: self.metrics_addr,
            log_format: self.log_format,
            call_timeout: self.call_timeout,
            rotate_wait: self.rotate_wait,
            max_unacked_bytes: self.max_unacked_bytes,
            dead_letter_max_bytes: self.dead_letter_max_bytes,
        })
    }
}

fn check_stream_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(bad("--stream", "must not be empty"));
    }
    if name.len() > STREAM_NAME_MAX {
        return Err(bad("--stream", "is longer than 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(bad(
            "--stream",
            format!(
                "{name:?} contains {c:?}; a stream name has only letters, digits, '_', '.' and '-'"
            ),
        ));
    }
    Ok(())
}

/// The file itself may not exist yet (it is waited for), but its directory must, and
/// the path must not name a directory.
fn check_log_path(path: &Path) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(bad("--path", "must not be empty"));
    }
    if path.file_name().is_none() {
        return Err(bad(
            "--path",
            format!("{} does not name a file", path.display()),
        ));
    }
    if path.is_dir() {
        return Err(bad(
            "--path",
            format!(
                "{} is a directory; give the log file inside it",
                path.display()
            ),
        ));
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(bad(
            "--path",
            format!("the directory {} does not exist", dir.display()),
        ));
    }
    Ok(path.to_path_buf())
}

/// `.firetail-<file name><suffix>` in the log file's directory.
fn beside(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    parent_dir(path).join(format!("{prefix}{name}{suffix}"))
}

/// The directory a relative bare file name lives in is the current one.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Proves the location is writable now by creating and removing a probe file beside it,
/// so an unwritable emptyDir is exit 2 at start rather than data at risk at the first
/// checkpoint or dead letter.
fn check_writable_location(flag: &'static str, file: &Path) -> Result<(), ConfigError> {
    if file.is_dir() {
        return Err(bad(
            flag,
            format!("{} is a directory; give a file path", file.display()),
        ));
    }
    let dir = parent_dir(file);
    if !dir.is_dir() {
        return Err(bad(
            flag,
            format!("the directory {} does not exist", dir.display()),
        ));
    }
    let probe = dir.join(format!(".firetail-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(bad(flag, format!("cannot write in {}: {e}", dir.display()))),
    }
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
    use super::*;

    fn parse(dir: &Path, extra: &[&str]) -> Result<Config, String> {
        let path = dir.join("access.log");
        let mut argv = vec![
            "firetail".to_string(),
            "--path".into(),
            path.display().to_string(),
            "--stream".into(),
            "s".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        args.validate().map_err(|e| e.to_string())
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
        assert_eq!(c.checkpoint, dir.path().join(".firetail-access.log.json"));
        assert_eq!(
            c.dead_letter,
            dir.path().join(".firetail-access.log.dead.jsonl")
        );
        assert_eq!(c.metrics_addr, "0.0.0.0:9797".parse().unwrap());
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

    #[test]
    fn bad_values_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&[&str], &str)] = &[
            (&["--flush-interval", "soon"], "--flush-interval"),
            (&["--drain-timeout", "0s"], "--drain-timeout"),
            (&["--max-in-flight", "0"], "--max-in-flight"),
            (&["--read-from", "middle"], "--read-from"),
            (&["--log-format", "xml"], "--log-format"),
            (&["--metrics-addr", "nowhere"], "--metrics-addr"),
        ];
        for (extra, flag) in cases {
            let err = parse(dir.path(), extra).unwrap_err();
            assert!(err.contains(flag), "{extra:?}: {err}");
        }
    }

    #[test]
    fn stream_name_is_checked() {
        assert!(check_stream_name("orders-access_log.v2").is_ok());
        assert_eq!(check_stream_name("").unwrap_err().flag, "--stream");
        assert!(check_stream_name("has space").is_err());
        assert!(check_stream_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn a_directory_is_not_a_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_log_path(dir.path()).unwrap_err();
        assert_eq!(err.flag, "--path");
        assert!(err.problem.contains("is a directory"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_an_error_but_a_missing_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_log_path(&dir.path().join("later.log")).is_ok());
        let err = check_log_path(&dir.path().join("nope/access.log")).unwrap_err();
        assert!(err.problem.contains("does not exist"), "{err}");
    }
}
