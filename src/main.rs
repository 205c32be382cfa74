//! The `firetail` binary: signals, configuration, logging, the Firehose client — then
//! the agent. Exit codes are decided here and only here: 0 drained, 1 lines left
//! undelivered, counts that do not add up or a fatal error, 2 bad configuration.

use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use firetail::config::{Config, LogFormat, ParseError};
use firetail::health::Health;
use firetail::metrics::Metrics;

/// The region lookup may ask EC2 instance metadata, which off EC2 (or with an IMDSv2
/// hop limit of 1 from a pod) answers only after its own timeouts and retries; past
/// this, firetail exits 2 and says what to set rather than hang at start.
const REGION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Blocks SIGTERM, SIGINT and SIGHUP before `main` — before even the Rust runtime's
/// own set-up (stack guard, SIGPIPE, arguments) — from the ELF initialisers, where
/// std captures the arguments too: from here on a SIGTERM waits, pending, for its
/// handler (`shutdown::install`, the runtime's first act) instead of killing firetail.
/// Only the kernel's exec and the dynamic loader come before it.
#[used]
#[link_section = ".init_array"]
static BLOCK_STOP_SIGNALS: extern "C" fn() = block_stop_signals;

/// The errno if the early block failed, for `main` to say so (nothing can print yet).
static BLOCK_ERRNO: AtomicI32 = AtomicI32::new(0);

extern "C" fn block_stop_signals() {
    if let Err(e) = firetail::shutdown::block() {
        BLOCK_ERRNO.store(e.raw_os_error().unwrap_or(-1), Ordering::Relaxed);
    }
}

fn main() -> ExitCode {
    match BLOCK_ERRNO.load(Ordering::Relaxed) {
        0 => {}
        errno => eprintln!(
            "firetail: cannot block SIGTERM/SIGINT/SIGHUP until their handlers exist (an early one kills it): {}",
            std::io::Error::from_raw_os_error(errno)
        ),
    }
    // One runtime thread, chosen by measurement (`cargo run --release --example
    // bench`, 1M-line backlog over TLS): two workers shipped no faster (658k vs 648k
    // lines/s) and cost 18% more CPU per line, 3 MiB more RSS, and half again as much
    // CPU at 5,000 lines/s (2.8% vs 1.9% of a core) — a sidecar pays for every wake-up.
    // Built first, because the signal handlers need it.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("firetail: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    ExitCode::from(runtime.block_on(run()))
}

/// The phases, in order: signals, configuration, logging, region, listener, client,
/// agent.
async fn run() -> u8 {
    // First of all: the handlers, then the signals held back since before `main` let
    // through; from here on a SIGTERM is kept and drains, however early it came.
    let signals = match firetail::shutdown::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("firetail: cannot install the SIGTERM/SIGINT/SIGHUP handlers: {e}");
            return 1;
        }
    };
    let config = match configure() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let listener = match firetail::metrics::bind(config.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "firetail: invalid value for --metrics-addr: cannot listen on {}: {e}",
                config.metrics_addr
            );
            return 2;
        }
    };
    // The probes answer from now on: /healthz 200, /readyz 503 until the path is watched.
    let metrics = Arc::new(Metrics::for_config(&config));
    let health = Arc::new(Health::default());
    let addr = listener.local_addr().unwrap_or(config.metrics_addr);
    tokio::spawn(firetail::metrics::serve(
        listener,
        metrics.clone(),
        health.clone(),
    ));
    // Before the subscriber exists, so the SDK's own lookup warnings stay out of the
    // one-line error; after the listener, so the probes answer (503) while it runs.
    if let Err(problem) = check_region().await {
        eprintln!("firetail: {problem}");
        return 2;
    }
    init_tracing(config.log_format);
    let client = firetail::ship::client(config.call_timeout).await;
    let observed = firetail::Observed {
        metrics,
        health,
        addr,
    };
    let termination = config.termination_message.clone();
    let (code, message) = match firetail::run(config, client, observed, signals).await {
        Ok(report) => {
            let code = report.exit_code();
            (code, firetail::report::termination_message(&report, code))
        }
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "firetail stopped on a fatal error."
            );
            (1, format!("firetail exit 1: fatal error: {e:#}"))
        }
    };
    firetail::report::write_termination_message(termination.as_deref(), &message);
    code
}

/// The validated configuration, or the exit code after printing help, the version or
/// the problem.
fn configure() -> Result<Config, u8> {
    match firetail::config::parse_from(std::env::args_os(), &|k| std::env::var_os(k)) {
        Ok(config) => Ok(config),
        Err(ParseError::Help(text)) => {
            print!("{text}");
            Err(0)
        }
        Err(ParseError::Usage(e)) => {
            // --version is not an error.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            Err(code)
        }
        Err(ParseError::Invalid(e)) => {
            eprintln!("firetail: {e}");
            Err(2)
        }
    }
}

/// Without a region the client signs nothing and every call fails until the pod is
/// fixed: that is a configuration error (exit 2), found before anything starts.
async fn check_region() -> Result<(), String> {
    let chain = aws_config::meta::region::RegionProviderChain::default_provider();
    let what_to_set = "set AWS_REGION (or AWS_DEFAULT_REGION, or `region` in the AWS profile)";
    match tokio::time::timeout(REGION_LOOKUP_TIMEOUT, chain.region()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("no AWS region: {what_to_set}")),
        Err(_) => Err(format!(
            "no AWS region: looking it up in EC2 instance metadata took longer than {}s; {what_to_set}",
            REGION_LOOKUP_TIMEOUT.as_secs()
        )),
    }
}

/// JSON (default) or text logs on stderr; the level comes from RUST_LOG (default info):
/// a level, or `target=level` pairs separated by commas (`info,aws_smithy_runtime=debug`).
/// Parsed with `filter::Targets` rather than `EnvFilter`, whose span and field
/// directives a sidecar has no use for and whose regex engine was 0.45 MB of the
/// binary's 9.3 MB of code, most of which stays mapped in every pod. A
/// RUST_LOG that does not parse is a WARN naming it, and the level stays `info`.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = Targets::new().with_default(LevelFilter::INFO);
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (default, Some((v, e))),
        },
        _ => (default, None),
    };
    // The builder's own filter would stop at INFO: `filter` decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish()
            .with(filter)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(filter)
            .init(),
    }
    if let Some((value, error)) = bad {
        tracing::warn!(rust_log = %value, error = %error, "RUST_LOG does not parse (a level, or target=level pairs separated by commas); logging at info.");
    }
}
