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
use release::{firetail_binary, loadavg};
#[allow(dead_code)]
#[path = "../tests/it/support/fake_firehose.rs"]
mod fake_firehose;
#[path = "bench/lines.rs"]
mod lines;
#[path = "bench/tls.rs"]
mod tls;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;

use child::{thread_cpu, Child};
use fake_firehose::{FakeConfig, FakeFirehose, DEFAULT_STREAM};
use fluentbit::FluentBit;
use lines::Lines;

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
}

impl Mode {
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

fn firetail_args(log: &Path, aggregate: bool) -> Vec<String> {
    let mut args = vec![
        format!("--path={}", log.display()),
        format!("--stream={DEFAULT_STREAM}"),
        "--metrics-addr=127.0.0.1:0".to_owned(),
    ];
    if aggregate {
        args.push("--aggregate".to_owned());
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
        let mode = Mode {
            tls: true,
            aggregate: false,
        };
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
        for &aggregate in &modes_agg {
            rows.extend(run_mode(&ctx, Mode { tls, aggregate }, &scenarios));
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

/// Fluent Bit, when the plan has a run for it (scenario 2 or 3 over TLS without
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

// ===== scenarios ======================================================================

/// Scenario 1: the whole backlog is on disk before the agent starts.
fn backlog(ctx: &Ctx, agent: Agent, mode: Mode, perf: Option<&Path>) -> Row {
    let n = ctx.opts.backlog_lines;
    say(format!(
        "{}, scenario 1, {}{}: {n}-line backlog",
        agent.label(),
        mode.transport(),
        agg_label(mode)
    ));
    let mut row = Row::new(Scenario::Backlog, mode);
    let dir = run_dir(ctx);
    let log = dir.path().join("access.log");
    std::fs::write(&log, ctx.lines.slice(0, n)).expect("write the backlog");
    // The sink's threads are new, so their CPU so far is all this run's.
    let (sink, mut child, ready_ms, notes) = start_agent(ctx, agent, mode, &log, &dir, false);
    row.ready_ms = ready_ms;
    row.notes.extend(notes);
    let perf = perf.map(|out| start_perf(child.pid, out));
    let all = sink.fake.wait_for_lines(n as u64, Duration::from_secs(300));
    let elapsed = child.started.elapsed();
    row.sink_cpu_s = Some(secs(sink.cpu()));
    row.firetail_cpu_s = Some(secs(child.cpu()));
    if mode.tls {
        row.notes.push(format!(
            "of the sink's CPU, the TLS proxy used {:.2} s",
            secs(thread_cpu(tls::PROXY_THREAD))
        ));
    }
    if let Some(perf) = perf {
        stop_perf(perf);
    }
    if !all {
        row.notes.push(format!(
            "only {} of {n} lines arrived",
            sink.fake.lines_accepted()
        ));
    }
    row.lines = sink.fake.lines_accepted();
    row.lines_per_s = Some(row.lines as f64 / secs(elapsed));
    row.billable_bytes = match agent {
        Agent::Firetail => billable_from_metrics(&child, row.lines),
        _ => Some(sink.fake.records_accepted() * BILLING_INCREMENT),
    };
    if agent == Agent::FluentBit {
        row.notes.push(fluentbit::process_tree(child.pid));
    }
    let exit = stop(&mut child);
    finish(&mut row, &sink, &child, &exit);
    row.agent = agent;
    row.cpu_per_m = Some(secs(exit.cpu()) / row.lines.max(1) as f64 * 1e6);
    row.peak_rss_kib = Some(exit.peak_rss_kib);
    row
}

/// Scenario 4: a followed file gets `drain_lines` lines at once, then SIGTERM.
fn drain(ctx: &Ctx, mode: Mode) -> Row {
    let n = ctx.opts.drain_lines;
    say(format!(
        "scenario 4, {}{}: SIGTERM with a {n}-line backlog",
        mode.transport(),
        agg_label(mode)
    ));
    let mut row = Row::new(Scenario::Drain, mode);
    let dir = run_dir(ctx);
    let log = dir.path().join("access.log");
    std::fs::File::create(&log).expect("create the log");
    // The process ends with the drain, so billable bytes come from the kept records.
    let sink = Sink::start(ctx, mode.tls, true);
    let mut child = Child::spawn(
        &ctx.bin,
        &firetail_args(&log, mode.aggregate),
        &sink.env(ctx),
    );
    row.ready_ms = child
        .wait_ready(Duration::from_secs(30))
        .map(|d| d.as_secs_f64() * 1e3);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open the log");
    file.write_all(ctx.lines.slice(0, n))
        .expect("append the backlog");
    drop(file);
    let term = Instant::now();
    child.signal(libc::SIGTERM);
    let exit = child.wait(Duration::from_secs(60));
    row.drain_s = Some(secs(exit.at - term));
    row.lines = sink.fake.lines_accepted();
    if row.lines != n as u64 {
        row.notes
            .push(format!("{} of {n} lines delivered", row.lines));
    }
    let dups = sink.fake.duplicate_lines().len();
    if dups > 0 {
        row.notes.push(format!("{dups} duplicate lines"));
    }
    row.billable_bytes = Some(
        sink.fake
            .accepted()
            .iter()
            .map(|r| (r.len() as u64).div_ceil(BILLING_INCREMENT).max(1) * BILLING_INCREMENT)
            .sum(),
    );
    if let Some(report) = child.log_message("Drain report.") {
        if report["lines_read"].as_u64() != Some(n as u64) {
            row.notes
                .push(format!("drain report: lines_read {}", report["lines_read"]));
        }
    }
    finish(&mut row, &sink, &child, &exit);
    row.cpu_per_m = Some(secs(exit.cpu()) / row.lines.max(1) as f64 * 1e6);
    row.peak_rss_kib = Some(exit.peak_rss_kib);
    row
}

/// Scenarios 2 and 3 in one process: a steady writer, then idle after catching up.
fn steady_idle(
    ctx: &Ctx,
    agent: Agent,
    mode: Mode,
    rate: usize,
    steady: bool,
    idle: bool,
) -> Vec<Row> {
    let seconds = ctx.opts.steady_seconds;
    say(format!(
        "{}, scenario{} {}{}: {}",
        agent.label(),
        if steady && idle {
            "s 2+3"
        } else if steady {
            " 2"
        } else {
            " 3"
        },
        mode.transport(),
        agg_label(mode),
        match (steady, idle) {
            (true, true) => format!(
                "{rate} lines/s for {seconds}s, then idle {}s",
                ctx.opts.idle_seconds
            ),
            (true, false) => format!("{rate} lines/s for {seconds}s"),
            _ => format!(
                "catch up on 10,000 lines, then idle {}s",
                ctx.opts.idle_seconds
            ),
        }
    ));
    let mut rows = Vec::new();
    let dir = run_dir(ctx);
    let log = dir.path().join("access.log");
    std::fs::File::create(&log).expect("create the log");
    // The sink keeps scenario 2's records for the latency of each line.
    let (sink, mut child, ready_ms, mut agent_notes) =
        start_agent(ctx, agent, mode, &log, &dir, steady);

    let mut written = 0usize;
    if steady {
        let mut row = Row::new(Scenario::Steady, mode);
        row.offered = rate;
        row.ready_ms = ready_ms;
        let per_tick = (rate / 100).max(1);
        let warm_ticks = ctx.opts.warmup_seconds as usize * 100;
        let ticks = seconds as usize * 100;
        let warm = per_tick * warm_ticks;
        let total = per_tick * ticks;
        let cpu_spawned = child.cpu();
        let slices: Vec<(usize, usize)> = (0..warm_ticks + ticks)
            .map(|k| {
                (
                    ctx.lines.start_of(k * per_tick),
                    ctx.lines.start_of((k + 1) * per_tick),
                )
            })
            .collect();
        let data = &ctx.lines.data;
        let (measured_from, sent) = std::sync::mpsc::channel::<()>();
        let (t_start, t_end, written_at, rss, cpu0, sink0) = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("open the log");
                let start = Instant::now();
                let mut measured = start;
                let mut written_at = Vec::with_capacity(slices.len());
                for (k, &(a, b)) in slices.iter().enumerate() {
                    let due = start + Duration::from_millis(10 * k as u64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if k == warm_ticks {
                        measured = Instant::now();
                        let _ = measured_from.send(());
                    }
                    file.write_all(&data[a..b]).expect("append");
                    written_at.push(Instant::now());
                }
                (measured, Instant::now(), written_at)
            });
            // The window opens when the writer starts its first measured tick.
            let _ = sent.recv();
            let cpu0 = child.cpu();
            let sink0 = sink.cpu();
            let mut rss = Vec::new();
            while !writer.is_finished() {
                std::thread::sleep(Duration::from_millis(500));
                rss.extend(child.status_kib("VmRSS"));
            }
            let (a, b, written_at) = writer.join().expect("writer thread");
            (a, b, written_at, rss, cpu0, sink0)
        });
        let cpu1 = child.cpu();
        let hwm = child.status_kib("VmHWM");
        let caught = sink
            .fake
            .wait_for_lines((warm + total) as u64, Duration::from_secs(60));
        let t_caught = Instant::now();
        let cpu2 = child.cpu();
        row.sink_cpu_s = Some(secs(sink.cpu() - sink0));
        row.firetail_cpu_s = Some(secs(cpu2 - cpu0));
        if !caught {
            row.notes.push(format!(
                "only {} of {} lines arrived",
                sink.fake.lines_accepted(),
                warm + total
            ));
        }
        row.lines = sink.fake.lines_accepted();
        row.latency_ms = latency::percentiles(
            &sink.fake,
            &latency::Writes {
                per_tick,
                first_measured: warm_ticks,
                at: written_at,
            },
        );
        row.lines_per_s = Some(total as f64 / secs(t_end - t_start));
        row.cpu_pct = Some(secs(cpu1 - cpu0) / secs(t_end - t_start) * 100.0);
        // The lines of the window; the warm-up's last lines still in flight at its start
        // are shipped inside it, so this errs high.
        row.cpu_per_m = Some(secs(cpu2 - cpu0) / total.max(1) as f64 * 1e6);
        row.peak_rss_kib = hwm;
        if warm > 0 {
            row.notes.push(format!(
                "warm-up: {}s at the same rate first, {:.0} ms of CPU (not in the window)",
                ctx.opts.warmup_seconds,
                secs(cpu0 - cpu_spawned) * 1e3
            ));
        }
        if !rss.is_empty() {
            let mean = rss.iter().sum::<u64>() / rss.len() as u64;
            row.notes
                .push(format!("mean RSS {:.1} MiB", mean as f64 / 1024.0));
        }
        row.notes.push(format!(
            "caught up {:.2}s after the last write",
            secs(t_caught - t_end)
        ));
        let c = sink.fake.counters();
        row.calls = c.calls;
        row.records = c.records_accepted;
        row.raw_bytes = c.bytes_accepted;
        row.billable_bytes = match agent {
            Agent::Firetail => billable_from_metrics(&child, row.lines),
            // One record per line, and every line is far below the 5 KiB increment.
            _ => Some(row.records * BILLING_INCREMENT),
        };
        if agent == Agent::FluentBit && row.records != row.lines {
            row.notes
                .push(format!("{} records for {} lines", row.records, row.lines));
        }
        written = total;
        rows.push(row);
    } else if idle {
        let n = 10_000;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open the log");
        file.write_all(ctx.lines.slice(0, n)).expect("append");
        sink.fake.wait_for_lines(n as u64, Duration::from_secs(60));
        written = n;
    }

    if idle {
        let mut row = Row::new(Scenario::Idle, mode);
        row.ready_ms = ready_ms;
        // Let the last flush, acknowledgement and checkpoint write settle first.
        std::thread::sleep(Duration::from_secs(2));
        let calls0 = sink.fake.counters().calls;
        let cpu0 = child.cpu();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(ctx.opts.idle_seconds));
        let cpu = child.cpu() - cpu0;
        let wall = t0.elapsed();
        row.idle_ms_per_min = Some(secs(cpu) * 1e3 / secs(wall) * 60.0);
        row.cpu_pct = Some(secs(cpu) / secs(wall) * 100.0);
        row.firetail_cpu_s = Some(secs(cpu));
        row.calls = sink.fake.counters().calls - calls0;
        row.lines = 0;
        row.notes.push(format!(
            "{:.1} ms CPU over {:.0}s idle after {written} lines",
            secs(cpu) * 1e3,
            secs(wall)
        ));
        rows.push(row);
    }
    if agent == Agent::FluentBit {
        agent_notes.push(fluentbit::process_tree(child.pid));
    }
    let exit = stop(&mut child);
    for row in &mut rows {
        row.agent = agent;
        row.notes.extend(agent_notes.iter().cloned());
        row.exit = exit.code;
        if row.scenario == Scenario::Idle {
            row.peak_rss_kib = Some(exit.peak_rss_kib);
        }
        if exit.code != Some(0) {
            row.notes.push(log_tail(&child));
        }
    }
    rows
}

/// The sink and the agent on `log`, started: firetail until `/readyz` answers 200
/// (its ready time), Fluent Bit until its tail input has opened the DB (said in a note:
/// it has no readiness endpoint).
fn start_agent(
    ctx: &Ctx,
    agent: Agent,
    mode: Mode,
    log: &Path,
    dir: &tempfile::TempDir,
    store: bool,
) -> (Sink, Child, Option<f64>, Vec<String>) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match (agent, ctx.fluent_bit.as_ref()) {
        (Agent::FluentBit, Some(fluent_bit)) => {
            let sink = Sink::start_for_fluent_bit(ctx, fluent_bit, store);
            let child = fluent_bit.spawn(log, dir.path(), DEFAULT_STREAM, &ctx.certs.ca_file);
            let note = match fluentbit::wait_started(&child, dir.path(), Duration::from_secs(30)) {
                Some(d) => format!("tail input open {:.0} ms after spawn", ms(d)),
                None => "tail input not open after 30 s".to_owned(),
            };
            (sink, child, None, vec![note])
        }
        (Agent::FluentBit, None) => unreachable!("Fluent Bit runs only when it was found"),
        (Agent::Floor, _) => unreachable!("the floor has a driver of its own"),
        (Agent::Firetail, _) => {
            let sink = Sink::start(ctx, mode.tls, store);
            let args = firetail_args(log, mode.aggregate);
            let mut child = Child::spawn(&ctx.bin, &args, &sink.env(ctx));
            let ready = child.wait_ready(Duration::from_secs(30)).map(ms);
            (sink, child, ready, Vec::new())
        }
    }
}

fn agg_label(mode: Mode) -> &'static str {
    if mode.aggregate {
        " --aggregate"
    } else {
        ""
    }
}

fn run_dir(ctx: &Ctx) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(ctx.tmp.path())
        .expect("run dir")
}

/// Billable bytes as firetail counts them, once it has acknowledged every line.
fn billable_from_metrics(child: &Child, lines: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = child.metrics();
        let shipped = m
            .get("firetail_lines_shipped_total")
            .copied()
            .unwrap_or(0.0);
        if shipped as u64 >= lines || Instant::now() >= deadline {
            return m.get("firetail_billable_bytes_total").map(|v| *v as u64);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM and wait for the exit (the drain has nothing left to do).
fn stop(child: &mut Child) -> child::Exit {
    child.signal(libc::SIGTERM);
    child.wait(Duration::from_secs(30))
}

/// Sink counters, exit code and any trouble into the row.
fn finish(row: &mut Row, sink: &Sink, child: &Child, exit: &child::Exit) {
    let c = sink.fake.counters();
    row.calls = c.calls;
    row.records = c.records_accepted;
    row.raw_bytes = c.bytes_accepted;
    row.exit = exit.code;
    if c.calls != c.calls_accepted {
        row.notes.push(format!(
            "{} calls not fully accepted",
            c.calls - c.calls_accepted
        ));
    }
    if exit.code != Some(0) {
        row.notes.push(log_tail(child));
    }
}

fn log_tail(child: &Child) -> String {
    let logs = child.logs();
    let tail: Vec<&str> = logs.iter().rev().take(3).map(String::as_str).collect();
    format!("log tail: {}", tail.join(" | "))
}

struct Perf {
    child: std::process::Child,
}

fn start_perf(pid: i32, out: &Path) -> Perf {
    let child = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("perf record (apt-get install linux-perf)");
    Perf { child }
}

fn stop_perf(mut perf: Perf) {
    // SAFETY: SIGINT to our own perf child, which then writes its data file.
    unsafe { libc::kill(perf.child.id() as i32, libc::SIGINT) };
    let _ = perf.child.wait();
}
