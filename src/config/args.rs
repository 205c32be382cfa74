//! args: the command line as clap parses it — raw text, every option a flag and a
//! `FIRETAIL_*` variable, and the help a person reads. Validation is the parent
//! module's ([`super::parse_from`]): nothing here is trusted yet.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use super::{InvalidJson, LogFormat, ReadFrom};

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
    /// The JSON-lines file to follow (waited for if it does not exist yet), or a pattern such as /var/log/app/worker-*.log (wildcards in the file name only). Required unless --source is given.
    #[arg(long, env = "FIRETAIL_PATH", value_name = "FILE")]
    path: Option<PathBuf>,

    /// The Firehose delivery stream to ship to. Required unless --source is given.
    #[arg(long, env = "FIRETAIL_STREAM", value_name = "NAME")]
    stream: Option<String>,

    /// One source of several, instead of --path and --stream; repeat it for each: name=web,path=/var/log/app/access.log,stream=web-logs. The name is [a-z0-9][a-z0-9_-]{0,31} and unique; the path is absolute, a file or a pattern (wildcards in the file name only); no file may be followed by two sources. The variable takes one spec a line.
    #[arg(long, env = "FIRETAIL_SOURCES", value_name = "SPEC")]
    source: Vec<String>,

    /// Add "KEY":"VALUE" to every JSON object line shipped (repeatable; the variable is comma-separated). A key the line already has keeps the line's value.
    #[arg(long, env = "FIRETAIL_ADD_FIELDS", value_name = "KEY=VALUE")]
    add_field: Vec<String>,

    /// Add "KEY":"<source name>" to every JSON object line shipped.
    #[arg(long, env = "FIRETAIL_SOURCE_FIELD", value_name = "KEY")]
    source_field: Option<String>,

    /// Add "KEY":"<path of the file>" to every JSON object line shipped.
    #[arg(long, env = "FIRETAIL_FILE_FIELD", value_name = "KEY")]
    file_field: Option<String>,

    /// The most files followed at once over all sources, each an open descriptor (1–65536).
    #[arg(
        long,
        env = "FIRETAIL_MAX_FILES",
        default_value = "1024",
        value_name = "N"
    )]
    max_files: String,

    /// The longest a read line waits before its batch is sent (10ms–10m).
    #[arg(
        long,
        env = "FIRETAIL_FLUSH_INTERVAL",
        default_value = "1s",
        value_name = "DURATION"
    )]
    flush_interval: String,

    /// Checkpoint file [default: .firetail-<file name>.json beside the (first source's) file; .firetail-<source name>.json for a pattern].
    #[arg(long, env = "FIRETAIL_CHECKPOINT", value_name = "FILE")]
    checkpoint: Option<PathBuf>,

    /// Dead-letter file for lines Firehose can never take [default: .firetail-<file name>.dead.jsonl beside the (first source's) file; .firetail-<source name>.dead.jsonl for a pattern].
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
