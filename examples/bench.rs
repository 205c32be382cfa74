//! The firetail benchmark (docs/performance.md): the release binary as a child process
//! against the fake Firehose, measured with the OS's own accounting, beside Fluent Bit
//! and beside the SDK's floor.
//!
//! ```text
//! cargo run --release --example bench -- [--scenario N ...] [--tls|--plain|--both] [--write-doc]
//! ```
//!
//! It builds `target/release/firetail` first (`cargo build --release --bin firetail`),
//! then runs, for each transport (TLS through a loopback proxy with a throw-away CA
//! trusted via `SSL_CERT_FILE`, and plain HTTP) and with and without `--aggregate`:
//!
//! 1. backlog: a 1,000,000-line file (~300-byte JSON lines) written before firetail
//!    starts; lines/s from spawn until the sink holds every line.
//! 2. steady: 5,000 lines/s (50 lines every 10 ms) for 30 s, after 5 s at the same
//!    rate that are not measured (the first call's TLS handshake and set-up; their CPU
//!    is noted apart); CPU % of a core, RSS, and each line's latency from its write to
//!    the sink's acceptance (p50, p99);
//!    then, in a process of its own, the same at 500 lines/s (5 lines every 10 ms): a
//!    quiet pod, as most pods of a fleet are.
//! 3. idle: the same process, 60 s after catching up; CPU time used.
//! 4. drain: 100,000 lines appended to a followed file, then SIGTERM at once; seconds
//!    until exit 0 with every line in the sink.
//!
//! `--scenario 5` means "with `--aggregate` too": `--scenario 1 --scenario 5` runs
//! scenario 1 both ways, `--scenario 5` alone runs 1–4 with `--aggregate` only; no
//! `--scenario` runs everything. With both transports, scenario 3 runs over TLS only
//! (an idle firetail makes no calls); `--plain --scenario 3` measures it over HTTP.
//!
//! Figures come from the OS: `wait4`'s rusage (user + sys CPU) at exit, the process
//! CPU clock (`clock_getcpuclockid`) for windows while it runs, and `VmHWM` / `VmRSS`
//! from `/proc/<pid>/status` for memory (not `ru_maxrss`, which on Linux includes the
//! parent's RSS at the fork: see `bench/child.rs`). Calls, records and bytes come from
//! the sink; billable bytes from firetail's `/metrics` (scenarios 1–3) or from the
//! records the sink kept (scenario 4, which ends with the process). Latency: the sink
//! keeps the records of scenario 2 and the time it had read each call; each line
//! carries its `seq`, and the writer notes when each of its writes returned
//! (`bench/latency.rs`). Nothing is asserted: targets are reported as met or not.
//!
//! Over TLS without `--aggregate`, two more rows run beside firetail's, one process
//! each, measured the same way:
//! - Fluent Bit (scenarios 1–3): a release build kept outside the repository, found in
//!   `../shared/peers/` beside the checkout or given with `--fluent-bit PATH`, its
//!   version named beside every figure (`bench/fluentbit.rs`; `--no-fluent-bit` skips
//!   it);
//! - the SDK's floor (scenarios 1 and 2): the same `PutRecordBatch` calls of 500
//!   pre-built records through aws-sdk-firehose alone, with firetail's client
//!   settings (`bench/floor.rs`; `--no-floor` skips it), so that firetail's CPU per line
//!   reads as a multiple of what the mandated SDK itself costs.
//!
//! The whole run takes about 12 minutes on 2 cores. `--write-doc` puts the results
//! between the bench-table markers of docs/performance.md, with the commit, the
//! versions, the load average before and after, and the command.
//!
//! `--fields-cost` runs only scenario 1 without and then with three `--add-field`s;
//! `--four-files` only scenario 2 into one file and then spread over four, each its own
//! `--source` (`bench/sources.rs`): pairs run back to back, summed up beside the
//! comparison and left out of it and of the targets.
//!
//! `--perf FILE` runs only scenario 1 over TLS with `perf record -e cpu-clock
//! --call-graph dwarf` attached to firetail (Debian: `apt-get install linux-perf`);
//! then e.g. `perf report -i FILE --no-children --sort sym`.

#[path = "bench/child.rs"]
mod child;
#[path = "bench/floor.rs"]
mod floor;
#[path = "bench/fluentbit.rs"]
mod fluentbit;
#[path = "bench/latency.rs"]
mod latency;
#[path = "shared/release.rs"]
mod release;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/report_compare.rs"]
mod report_compare;
#[path = "bench/scenarios.rs"]
mod scenarios;
#[path = "bench/sources.rs"]
mod sources;
#[path = "bench/steady.rs"]
mod steady;
use release::{firetail_binary, loadavg};
#[allow(dead_code)]
#[path = "../tests/it/support/fake_firehose.rs"]
mod fake_firehose;
#[path = "bench/lines.rs"]
mod lines;
#[path = "bench/tls.rs"]
mod tls;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use child::thread_cpu;
use fake_firehose::{FakeConfig, FakeFirehose, DEFAULT_STREAM};
use fluentbit::FluentBit;
use lines::Lines;
use scenarios::{backlog, drain, finish, run_dir};
use steady::steady_idle;

const BILLING_INCREMENT: u64 = 5120;

/// The firetail benchmark: the release binary against a fake Firehose.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Opts {
    /// Scenario to run (repeatable): 1 backlog, 2 steady, 3 idle, 4 drain, 5 = with
    /// --aggregate too. Default: all.
    #[arg(long = "scenario", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    scenarios: Vec<u8>,
    /// TLS only (through the proxy, CA trusted via SSL_CERT_FILE).
    #[arg(long, conflicts_with_all = ["plain", "both"])]
    tls: bool,
    /// Plain HTTP only.
    #[arg(long, conflicts_with = "both")]
    plain: bool,
    /// TLS and plain HTTP (the default).
    #[arg(long)]
    both: bool,
    /// Lines in the scenario 1 backlog.
    #[arg(long, default_value_t = 1_000_000)]
    backlog_lines: usize,
    /// Lines per second in scenario 2.
    #[arg(long, default_value_t = 5000)]
    steady_rate: usize,
    /// Lines per second in scenario 2's quiet run (0: none).
    #[arg(long, default_value_t = 500)]
    quiet_rate: usize,
    /// Seconds of scenario 2.
    #[arg(long, default_value_t = 30)]
    steady_seconds: u64,
    /// Seconds of scenario 2 written at the same rate before the measured window: the
    /// first call's TLS handshake and each agent's set-up on its first lines are one-off
    /// costs, reported apart (0: none).
    #[arg(long, default_value_t = 5)]
    warmup_seconds: u64,
    /// Seconds of scenario 3 (the README figures use 60).
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Lines appended just before SIGTERM in scenario 4.
    #[arg(long, default_value_t = 100_000)]
    drain_lines: usize,
    /// Replace the text between the bench-table markers of docs/performance.md with
    /// the results.
    #[arg(long)]
    write_doc: bool,
    /// The page that --write-doc rewrites.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/performance.md"))]
    doc: PathBuf,
    /// Profile scenario 1 over TLS (without --aggregate) with `perf record` attached to
    /// firetail, writing FILE; runs only that.
    #[arg(long, value_name = "FILE")]
    perf: Option<PathBuf>,
    /// Use this firetail binary instead of building target/release/firetail.
    #[arg(long, value_name = "PATH")]
    firetail: Option<PathBuf>,
    /// The Fluent Bit to run beside firetail in scenarios 1-3: its binary, or a
    /// `fluent-bit-<version>-linux-amd64.gz` to unpack into the target dir (default:
    /// the newest such file in ../shared/peers/ beside the checkout).
    #[arg(long, value_name = "PATH", conflicts_with = "no_fluent_bit")]
    fluent_bit: Option<PathBuf>,
    /// Leave Fluent Bit out.
    #[arg(long)]
    no_fluent_bit: bool,
    /// Leave the SDK's floor out.
    #[arg(long)]
    no_floor: bool,
    /// Only the cost of added fields: scenario 1 without, then with three
    /// `--add-field`s (firetail only).
    #[arg(long)]
    fields_cost: bool,
    /// Only one file against four: scenario 2 at --steady-rate in one file, then spread
    /// over four files (four `--source`s to one stream), firetail only.
    #[arg(long)]
    four_files: bool,
}

/// The agent measured in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agent {
    Firetail,
    FluentBit,
    /// aws-sdk-firehose alone, making firetail's calls (`bench/floor.rs`).
    Floor,
}

impl Agent {
    fn label(self) -> String {
        match self {
            Agent::Firetail => "firetail".into(),
            Agent::FluentBit => fluentbit::label(),
            Agent::Floor => format!("SDK floor ({})", floor::sdk_version()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Backlog,
    Steady,
    Idle,
    Drain,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Backlog => "1 backlog",
            Scenario::Steady => "2 steady",
            Scenario::Idle => "3 idle",
            Scenario::Drain => "4 drain",
        }
    }
}

/// One line of the results table.
#[derive(Clone, Debug)]
struct Row {
    agent: Agent,
    scenario: Scenario,
    tls: bool,
    aggregate: bool,
    lines: u64,
    /// The writer's rate (scenario 2), lines per second; 0 elsewhere.
    offered: usize,
    lines_per_s: Option<f64>,
    cpu_per_m: Option<f64>,
    cpu_pct: Option<f64>,
    peak_rss_kib: Option<u64>,
    calls: u64,
    records: u64,
    raw_bytes: u64,
    billable_bytes: Option<u64>,
    ready_ms: Option<f64>,
    drain_s: Option<f64>,
    idle_ms_per_min: Option<f64>,
    /// A line's write to the sink's acceptance, milliseconds: p50, p99 (scenario 2).
    latency_ms: Option<(f64, f64)>,
    /// CPU of the sink (fake + TLS proxy threads) over the same window as firetail's.
    sink_cpu_s: Option<f64>,
    firetail_cpu_s: Option<f64>,
    exit: Option<i32>,
    notes: Vec<String>,
    /// How the run differs from its scenario's usual one ([`Mode::variant`]).
    variant: String,
}

impl Row {
    fn new(scenario: Scenario, mode: Mode) -> Row {
        Row {
            agent: Agent::Firetail,
            scenario,
            tls: mode.tls,
            aggregate: mode.aggregate,
            lines: 0,
            offered: 0,
            lines_per_s: None,
            cpu_per_m: None,
            cpu_pct: None,
            peak_rss_kib: None,
            calls: 0,
            records: 0,
            raw_bytes: 0,
            billable_bytes: None,
            ready_ms: None,
            drain_s: None,
            idle_ms_per_min: None,
            latency_ms: None,
            sink_cpu_s: None,
            firetail_cpu_s: None,
            exit: None,
            notes: Vec::new(),
            variant: mode.variant(),
        }
    }

    fn ratio(&self) -> Option<f64> {
        let b = self.billable_bytes?;
        (self.raw_bytes > 0).then(|| b as f64 / self.raw_bytes as f64)
    }
}

#[derive(Clone, Copy, Debug)]
struct Mode {
    tls: bool,
    aggregate: bool,
    /// The sources rows (`bench/sources.rs`): three `--add-field`s, and how many files
    /// the lines are spread over (1 but there).
    fields: bool,
    /// The control for `fields`: the lines hold the same fields, written by the app.
    app_fields: bool,
    files: usize,
}

impl Mode {
    fn new(tls: bool, aggregate: bool) -> Mode {
        Mode {
            tls,
            aggregate,
            fields: false,
            app_fields: false,
            files: 1,
        }
    }

    /// How the row differs from its scenario's usual run ("" for none).
    fn variant(self) -> String {
        let mut v = String::new();
        if self.fields {
            v.push_str(", 3 added fields");
        }
        if self.app_fields {
            v.push_str(", the 3 fields in the lines");
        }
        if self.files > 1 {
            v.push_str(&format!(", {} files", self.files));
        }
        v
    }

    fn transport(self) -> &'static str {
        if self.tls {
            "TLS"
        } else {
            "HTTP"
        }
    }
}

/// What every run shares.
struct Ctx {
    bin: PathBuf,
    fluent_bit: Option<FluentBit>,
    lines: Lines,
    certs: tls::Certs,
    tmp: tempfile::TempDir,
    opts: Opts,
    /// The arguments the bench was run with, for the page.
    command: Vec<String>,
}

/// The fake Firehose, behind the TLS proxy or not.
struct Sink {
    fake: FakeFirehose,
    proxy: Option<tls::Proxy>,
}

impl Sink {
    fn start(ctx: &Ctx, tls: bool, store: bool) -> Sink {
        let fake = FakeFirehose::start(FakeConfig {
            store,
            ..FakeConfig::default()
        });
        let proxy = tls.then(|| tls::Proxy::start(&ctx.certs, fake.addr()));
        Sink { fake, proxy }
    }

    /// The same fake behind the same kind of proxy, on Fluent Bit's address and port.
    fn start_for_fluent_bit(ctx: &Ctx, fluent_bit: &FluentBit, store: bool) -> Sink {
        let fake = FakeFirehose::start(FakeConfig {
            store,
            ..FakeConfig::default()
        });
        let proxy = tls::Proxy::start_at(&ctx.certs, fluent_bit.sink_addr(), fake.addr());
        Sink {
            fake,
            proxy: Some(proxy),
        }
    }

    fn env(&self, ctx: &Ctx) -> Vec<(String, String)> {
        let endpoint = match &self.proxy {
            Some(p) => format!("https://{}", p.addr),
            None => self.fake.endpoint(),
        };
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if self.proxy.is_some() {
            env.push((
                "SSL_CERT_FILE".into(),
                ctx.certs.ca_file.display().to_string(),
            ));
        }
        env
    }

    /// CPU used so far by the fake's and the proxy's threads.
    fn cpu(&self) -> Duration {
        thread_cpu("fake-firehose") + thread_cpu(tls::PROXY_THREAD)
    }
}

/// firetail's flags for `logs` (one: `--path`; several: a `--source` each, all to the
/// one stream) in `mode`.
fn firetail_args(logs: &[PathBuf], mode: Mode) -> Vec<String> {
    let mut args = match logs {
        [log] => vec![
            format!("--path={}", log.display()),
            format!("--stream={DEFAULT_STREAM}"),
        ],
        _ => sources::source_args(logs),
    };
    args.push("--metrics-addr=127.0.0.1:0".to_owned());
    if mode.aggregate {
        args.push("--aggregate".to_owned());
    }
    if mode.fields {
        args.extend(sources::FIELDS.iter().map(|f| f.to_string()));
    }
    args
}

fn say(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(floor::DRIVER_ARG) {
        std::process::exit(floor::driver(&args[1..]));
    }
    let opts = Opts::parse();
    let (transports, modes_agg, scenarios) = plan(&opts);
    let fluent_bit = find_fluent_bit(&opts, &transports, &modes_agg, &scenarios);
    let bin = firetail_binary(opts.firetail.as_deref(), |m| say(m));
    let machine = report::machine();
    let load_before = loadavg();
    say(format!("machine: {machine}; load average {load_before}"));

    let max_lines = opts
        .backlog_lines
        .max(opts.drain_lines)
        .max(opts.steady_rate * (opts.steady_seconds + opts.warmup_seconds) as usize)
        .max(10_000);
    let t = Instant::now();
    let lines = Lines::generate(max_lines);
    say(format!(
        "generated {} lines ({:.0} bytes each on average) in {:.1}s",
        lines.len(),
        lines.bytes(lines.len()) as f64 / lines.len() as f64,
        secs(t.elapsed())
    ));
    let tmp = tempfile::Builder::new()
        .prefix("firetail-bench-")
        .tempdir()
        .expect("temp dir");
    let fb_ips: Vec<_> = fluent_bit.iter().map(|f| f.ip).collect();
    let certs = tls::Certs::make(tmp.path(), &fb_ips);
    let ctx = Ctx {
        bin,
        fluent_bit,
        lines,
        certs,
        tmp,
        opts,
        command: args,
    };

    if let Some(out) = ctx.opts.perf.clone() {
        let mode = Mode::new(true, false);
        let row = backlog(&ctx, Agent::Firetail, mode, Some(&out));
        let run = report::Run::new(&ctx, &machine, &load_before, 0.0);
        print!("{}", report::table(&[row], &run));
        say(format!(
            "profile written to {}; e.g. perf report -i {} --no-children --sort sym",
            out.display(),
            out.display()
        ));
        return;
    }

    let started = Instant::now();
    let mut rows = Vec::new();
    for &tls in &transports {
        if ctx.opts.fields_cost || ctx.opts.four_files {
            rows.extend(sources::rows(&ctx, tls));
            continue;
        }
        for &aggregate in &modes_agg {
            rows.extend(run_mode(&ctx, Mode::new(tls, aggregate), &scenarios));
        }
    }
    let run = report::Run::new(&ctx, &machine, &load_before, secs(started.elapsed()));
    let text = report::table(&rows, &run);
    print!("{text}");
    if ctx.opts.write_doc {
        report::write_doc(&ctx.opts.doc, &text);
    }
}

/// Every run of one transport and aggregate mode: firetail's, and over TLS without
/// `--aggregate` its peers' (Fluent Bit's and the SDK floor's), scenario by scenario.
fn run_mode(ctx: &Ctx, mode: Mode, scenarios: &[Scenario]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut agents = vec![Agent::Firetail];
    if mode.tls && !mode.aggregate {
        if ctx.fluent_bit.is_some() {
            agents.push(Agent::FluentBit);
        }
        if !ctx.opts.no_floor {
            agents.push(Agent::Floor);
        }
    }
    if scenarios.contains(&Scenario::Backlog) {
        for &agent in &agents {
            rows.push(match agent {
                Agent::Floor => floor::backlog(ctx, mode),
                _ => backlog(ctx, agent, mode, None),
            });
        }
    }
    if scenarios.contains(&Scenario::Drain) {
        rows.push(drain(ctx, mode));
    }
    let steady = scenarios.contains(&Scenario::Steady);
    // With both transports, idle runs over TLS only (no calls are made).
    let idle = scenarios.contains(&Scenario::Idle) && (mode.tls || ctx.opts.plain);
    let mut rates = vec![ctx.opts.steady_rate];
    if ctx.opts.quiet_rate > 0 {
        rates.push(ctx.opts.quiet_rate);
    }
    for &agent in &agents {
        for (k, &rate) in rates.iter().enumerate() {
            // Idle follows the first rate only; the floor has no file to follow.
            let idle_here = idle && k == 0 && agent != Agent::Floor;
            match agent {
                Agent::Floor if steady => rows.push(floor::steady(ctx, mode, rate)),
                Agent::Floor => {}
                _ if steady || idle_here => {
                    rows.extend(steady_idle(ctx, agent, mode, rate, steady, idle_here))
                }
                _ => {}
            }
        }
    }
    rows
}

/// Fluent Bit, when the plan has a run for it (scenario 1, 2 or 3 over TLS without
/// --aggregate): a missing default binary is said and skipped; a missing `--fluent-bit`
/// is an error.
fn find_fluent_bit(
    opts: &Opts,
    transports: &[bool],
    modes_agg: &[bool],
    scenarios: &[Scenario],
) -> Option<FluentBit> {
    let wanted =
        transports.contains(&true) && modes_agg.contains(&false) && scenarios != [Scenario::Drain];
    if opts.no_fluent_bit || opts.perf.is_some() || !wanted {
        return None;
    }
    match FluentBit::find(opts.fluent_bit.as_deref()) {
        Ok(found) => {
            say(format!(
                "{}: {}; its sink listens on {}",
                fluentbit::label(),
                found.bin.display(),
                found.sink_addr()
            ));
            Some(found)
        }
        Err(e) if opts.fluent_bit.is_some() => {
            say(format!("error: {e}"));
            std::process::exit(2);
        }
        Err(e) => {
            say(format!("{e}; running firetail only"));
            None
        }
    }
}

/// Transports, aggregate modes and scenarios from the flags.
fn plan(opts: &Opts) -> (Vec<bool>, Vec<bool>, Vec<Scenario>) {
    let transports = if opts.tls {
        vec![true]
    } else if opts.plain {
        vec![false]
    } else {
        vec![true, false]
    };
    let mut scenarios: Vec<Scenario> = opts
        .scenarios
        .iter()
        .filter_map(|n| match n {
            1 => Some(Scenario::Backlog),
            2 => Some(Scenario::Steady),
            3 => Some(Scenario::Idle),
            4 => Some(Scenario::Drain),
            _ => None,
        })
        .collect();
    let with_aggregate = opts.scenarios.is_empty() || opts.scenarios.contains(&5);
    let only_aggregate = !opts.scenarios.is_empty() && scenarios.is_empty();
    if scenarios.is_empty() {
        scenarios = vec![
            Scenario::Backlog,
            Scenario::Steady,
            Scenario::Idle,
            Scenario::Drain,
        ];
    }
    let modes = if only_aggregate {
        vec![true]
    } else if with_aggregate {
        vec![false, true]
    } else {
        vec![false]
    };
    (transports, modes, scenarios)
}
