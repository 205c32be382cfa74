//! The firetail benchmark (docs/performance.md): the release binary as a child process
//! against the fake Firehose, measured with the OS's own accounting.
//!
//! ```text
//! cargo run --release --example bench -- [--scenario N ...] [--tls|--plain|--both] [--write-readme]
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
//!    is noted apart); CPU % of a core and RSS;
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
//! records the sink kept (scenario 4, which ends with the process). Nothing is
//! asserted: targets are reported as met or not. The whole run takes about 4.5 minutes
//! on 2 cores, and Fluent Bit adds about 2.
//!
//! Fluent Bit 1.8.15 runs scenarios 2 and 3 beside firetail, over TLS and without
//! `--aggregate` (its peer): the same lines, the same sink behind the same kind of TLS
//! proxy, the same accounting, one row per agent (`bench/fluentbit.rs`; build it with
//! `scripts/fluent-bit.sh`, or pass `--fluent-bit PATH`; `--no-fluent-bit` skips it).
//!
//! `--perf FILE` runs only scenario 1 over TLS with `perf record -e cpu-clock
//! --call-graph dwarf` attached to firetail (Debian: `apt-get install linux-perf`);
//! then e.g. `perf report -i FILE --no-children --sort sym`.

#[path = "bench/child.rs"]
mod child;
#[path = "bench/fluentbit.rs"]
mod fluentbit;
#[path = "shared/release.rs"]
mod release;
use release::{command_output, firetail_binary, loadavg};
#[allow(dead_code)]
#[path = "../tests/it/support/fake_firehose.rs"]
mod fake_firehose;
#[path = "bench/lines.rs"]
mod lines;
#[path = "bench/tls.rs"]
mod tls;

use std::fmt::Write as _;
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
const README_START: &str = "<!-- bench:start -->";
const README_END: &str = "<!-- bench:end -->";

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
    /// Replace the text between the bench markers in README.md with the results.
    #[arg(long)]
    write_readme: bool,
    /// The README that --write-readme rewrites.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))]
    readme: PathBuf,
    /// Profile scenario 1 over TLS (without --aggregate) with `perf record` attached to
    /// firetail, writing FILE; runs only that.
    #[arg(long, value_name = "FILE")]
    perf: Option<PathBuf>,
    /// Use this firetail binary instead of building target/release/firetail.
    #[arg(long, value_name = "PATH")]
    firetail: Option<PathBuf>,
    /// The Fluent Bit binary to run beside firetail in scenarios 2 and 3 (default: the
    /// output of scripts/fluent-bit.sh, when it is there).
    #[arg(long, value_name = "PATH", conflicts_with = "no_fluent_bit")]
    fluent_bit: Option<PathBuf>,
    /// Run firetail only.
    #[arg(long)]
    no_fluent_bit: bool,
}

/// The agent measured in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agent {
    Firetail,
    FluentBit,
}

impl Agent {
    fn label(self) -> &'static str {
        match self {
            Agent::Firetail => "firetail",
            Agent::FluentBit => "Fluent Bit 1.8.15",
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
    fn start_for_fluent_bit(ctx: &Ctx, fluent_bit: &FluentBit) -> Sink {
        let fake = FakeFirehose::start(FakeConfig {
            store: false,
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
    let opts = Opts::parse();
    let (transports, modes_agg, scenarios) = plan(&opts);
    let fluent_bit = find_fluent_bit(&opts, &transports, &modes_agg, &scenarios);
    let bin = firetail_binary(opts.firetail.as_deref(), |m| say(m));
    let machine = machine();
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
    };

    if let Some(out) = ctx.opts.perf.clone() {
        let mode = Mode {
            tls: true,
            aggregate: false,
        };
        let row = backlog(&ctx, mode, Some(&out));
        print!(
            "{}",
            table(&[row], &ctx, &machine, &load_before, &loadavg(), 0.0)
        );
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
            let mode = Mode { tls, aggregate };
            if scenarios.contains(&Scenario::Backlog) {
                rows.push(backlog(&ctx, mode, None));
            }
            if scenarios.contains(&Scenario::Drain) {
                rows.push(drain(&ctx, mode));
            }
            let steady = scenarios.contains(&Scenario::Steady);
            // With both transports, idle runs over TLS only (no calls are made).
            let idle = scenarios.contains(&Scenario::Idle) && (tls || transports.len() == 1);
            // Fluent Bit runs beside firetail over TLS without --aggregate, its peer.
            let mut agents = vec![Agent::Firetail];
            if ctx.fluent_bit.is_some() && tls && !aggregate {
                agents.push(Agent::FluentBit);
            }
            for &agent in &agents {
                let rate = ctx.opts.steady_rate;
                if steady || idle {
                    rows.extend(steady_idle(&ctx, agent, mode, rate, steady, idle));
                }
                if steady && ctx.opts.quiet_rate > 0 {
                    let quiet = ctx.opts.quiet_rate;
                    rows.extend(steady_idle(&ctx, agent, mode, quiet, true, false));
                }
            }
        }
    }
    let wall = secs(started.elapsed());
    let load_after = loadavg();
    let text = table(&rows, &ctx, &machine, &load_before, &load_after, wall);
    print!("{text}");
    if ctx.opts.write_readme {
        write_readme(&ctx.opts.readme, &text);
    }
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
    let wanted = transports.contains(&true)
        && modes_agg.contains(&false)
        && (scenarios.contains(&Scenario::Steady) || scenarios.contains(&Scenario::Idle));
    if opts.no_fluent_bit || opts.perf.is_some() || !wanted {
        return None;
    }
    match FluentBit::find(opts.fluent_bit.as_deref()) {
        Ok(found) => {
            say(format!(
                "Fluent Bit: {}; its sink listens on {}",
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

/// Scenario 1: the whole backlog is on disk before firetail starts.
fn backlog(ctx: &Ctx, mode: Mode, perf: Option<&Path>) -> Row {
    let n = ctx.opts.backlog_lines;
    say(format!(
        "scenario 1, {}{}: {n}-line backlog",
        mode.transport(),
        agg_label(mode)
    ));
    let mut row = Row::new(Scenario::Backlog, mode);
    let dir = run_dir(ctx);
    let log = dir.path().join("access.log");
    std::fs::write(&log, ctx.lines.slice(0, n)).expect("write the backlog");
    let sink = Sink::start(ctx, mode.tls, false);
    let sink_cpu0 = sink.cpu();
    let proxy_cpu0 = thread_cpu(tls::PROXY_THREAD);
    let mut child = Child::spawn(
        &ctx.bin,
        &firetail_args(&log, mode.aggregate),
        &sink.env(ctx),
    );
    let perf = perf.map(|out| start_perf(child.pid, out));
    row.ready_ms = child
        .wait_ready(Duration::from_secs(30))
        .map(|d| d.as_secs_f64() * 1e3);
    let all = sink.fake.wait_for_lines(n as u64, Duration::from_secs(300));
    let elapsed = child.started.elapsed();
    row.sink_cpu_s = Some(secs(sink.cpu() - sink_cpu0));
    row.firetail_cpu_s = Some(secs(child.cpu()));
    if mode.tls {
        row.notes.push(format!(
            "of the sink's CPU, the TLS proxy used {:.2} s",
            secs(thread_cpu(tls::PROXY_THREAD) - proxy_cpu0)
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
    row.billable_bytes = billable_from_metrics(&child, row.lines);
    let exit = stop(&mut child);
    finish(&mut row, &sink, &child, &exit);
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
    let (sink, mut child, ready_ms, mut agent_notes) = start_agent(ctx, agent, mode, &log, &dir);

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
        let (t_start, t_end, rss, cpu0, sink0) = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("open the log");
                let start = Instant::now();
                let mut measured = start;
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
                }
                (measured, Instant::now())
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
            let (a, b) = writer.join().expect("writer thread");
            (a, b, rss, cpu0, sink0)
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
            Agent::FluentBit => Some(row.records * BILLING_INCREMENT),
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
) -> (Sink, Child, Option<f64>, Vec<String>) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match (agent, ctx.fluent_bit.as_ref()) {
        (Agent::FluentBit, Some(fluent_bit)) => {
            let sink = Sink::start_for_fluent_bit(ctx, fluent_bit);
            let child = fluent_bit.spawn(log, dir.path(), DEFAULT_STREAM, &ctx.certs.ca_file);
            let note = match fluentbit::wait_started(&child, dir.path(), Duration::from_secs(30)) {
                Some(d) => format!("tail input open {:.0} ms after spawn", ms(d)),
                None => "tail input not open after 30 s".to_owned(),
            };
            (sink, child, None, vec![note])
        }
        (Agent::FluentBit, None) => unreachable!("Fluent Bit runs only when it was found"),
        (Agent::Firetail, _) => {
            let sink = Sink::start(ctx, mode.tls, false);
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

// ===== machine and report ==============================================================

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mem_gib = child::status_kib("/proc/meminfo", "MemTotal").unwrap_or(0) as f64 / 1048576.0;
    format!("nproc {nproc} × {model}, {mem_gib:.0} GiB RAM, Linux {kernel}")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn table(
    rows: &[Row],
    ctx: &Ctx,
    machine: &str,
    load_before: &str,
    load_after: &str,
    wall: f64,
) -> String {
    let mut t = String::new();
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty =
        !command_output("git", &["status", "--porcelain", "--", "src", "Cargo.toml"]).is_empty();
    let rustc = command_output("rustc", &["--version"]);
    let avg = ctx.lines.bytes(ctx.lines.len()) as f64 / ctx.lines.len() as f64;
    let _ = writeln!(t, "Measured with `cargo run --release --example bench` on: {machine}; {rustc}; firetail at {commit}{}.", if dirty { " (with local changes)" } else { "" });
    let _ = writeln!(t, "Load average (1, 5, 15 min) before: {load_before}; after: {load_after}; the bench took {wall:.0} s.");
    let _ = writeln!(t);
    let _ = writeln!(t, "Lines: unique JSON access-log lines of {avg:.0} bytes on average. Sink: the fake Firehose of the tests (`tests/it/support/fake_firehose.rs`, records not kept), in the bench process and sharing the cores with firetail; over TLS through a rustls proxy on loopback, its CA trusted with `SSL_CERT_FILE`. firetail flags: `--path --stream --metrics-addr 127.0.0.1:0`, plus `--aggregate` where marked; everything else default (`--flush-interval 1s`, `--drain-quiet 1s`, `--drain-timeout 10s`, `--max-in-flight 4`).");
    let _ = writeln!(t);
    if rows.iter().any(|r| r.agent == Agent::FluentBit) {
        let _ = writeln!(t, "Fluent Bit 1.8.15 (built by `scripts/fluent-bit.sh` from the npm package `fluent-bit` 0.0.3's source: release build, only the `tail` input and the `kinesis_firehose` output, no jemalloc) runs scenarios 2 and 3 beside firetail over TLS, on the same lines and the same fake behind the same kind of proxy (on port 443 of a loopback address of its own: its Firehose output connects to no other port). Its configuration (`examples/bench/fluentbit.rs`): `Flush 1`; `tail` with a `DB`, `Read_from_Head On` and `Parser json` (so that it sends each line's JSON, not an escaped string); the `kinesis_firehose` output with `endpoint`, `tls.ca_file` and fake keys in the environment; one record per line, as firetail without `--aggregate`; everything else default. It is one process, measured as firetail is.");
        let _ = writeln!(t);
    }
    let _ = writeln!(t, "| Agent | Scenario | Transport | --aggregate | Lines | Lines/s | CPU-s per M lines | CPU % of a core | Peak RSS MiB | Calls | Records | Billable MiB | Billable / raw | Ready ms | Drain s | Idle CPU ms/min | Exit |");
    let _ = writeln!(
        t,
        "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.agent.label(),
            r.scenario.label(),
            if r.tls { "TLS" } else { "HTTP" },
            if r.aggregate { "yes" } else { "no" },
            thousands(r.lines),
            r.lines_per_s.map_or("—".into(), |v| thousands(v as u64)),
            opt(r.cpu_per_m, 2),
            opt(r.cpu_pct, 2),
            opt(r.peak_rss_kib.map(mib), 1),
            thousands(r.calls),
            thousands(r.records),
            opt(r.billable_bytes.map(|b| b as f64 / 1048576.0), 1),
            opt(r.ratio(), 2),
            opt(r.ready_ms, 0),
            opt(r.drain_s, 2),
            opt(r.idle_ms_per_min, 1),
            r.exit.map_or("—".into(), |c| c.to_string()),
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "Lines/s: from spawning the agent until the sink holds every line (scenario 1; with `--aggregate` this includes the last, partial record waiting `--flush-interval`, 1 s); the offered rate in scenario 2 (5,000 and, in a process of its own, 500 lines/s). CPU: user + system time of the agent's process from `wait4` (scenarios 1 and 4, whole life), or its CPU clock over the window (2: while writing the measured 30 s, which follow a warm-up at the same rate whose CPU is noted apart, and per M lines of that window until caught up; 3: the idle window). Peak RSS: `VmHWM` from `/proc`, sampled every 10 ms until exit (1, 3, 4) or at the end of the writing (2); `ru_maxrss` is not used because Linux counts the parent's RSS at the fork in it. Billable: each record rounded up to 5 KiB.");
    let notes: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let mut n = r.notes.clone();
            if let (Some(s), Some(f)) = (r.sink_cpu_s, r.firetail_cpu_s) {
                if r.scenario == Scenario::Backlog {
                    n.insert(
                        0,
                        format!("sink CPU {s:.2} s vs firetail {f:.2} s (until caught up)"),
                    );
                }
            }
            (!n.is_empty()).then(|| {
                format!(
                    "- {}, {}{} {}{}: {}",
                    r.agent.label(),
                    r.scenario.label(),
                    if r.offered > 0 {
                        format!(" {} lines/s", thousands(r.offered as u64))
                    } else {
                        String::new()
                    },
                    if r.tls { "TLS" } else { "HTTP" },
                    if r.aggregate { " --aggregate" } else { "" },
                    n.join("; ")
                )
            })
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(t);
        for n in notes {
            let _ = writeln!(t, "{n}");
        }
    }
    let _ = writeln!(t);
    t.push_str(&targets(rows));
    t
}

/// The issue's targets against firetail's TLS figures (reported, never asserted), with
/// Fluent Bit's figures from the same run beside the per-pod cost ones.
fn targets(all: &[Row]) -> String {
    let rows: Vec<Row> = all
        .iter()
        .filter(|r| r.agent == Agent::Firetail)
        .cloned()
        .collect();
    let find = |s: Scenario, tls: bool, agg: bool| {
        rows.iter()
            .find(|r| r.scenario == s && r.tls == tls && r.aggregate == agg)
    };
    let mut t = String::new();
    let _ = writeln!(t, "| Target (TLS, defaults) | Goal | Measured | Met |");
    let _ = writeln!(t, "|---|--:|--:|---|");
    let mut line =
        |name: &str, goal: &str, value: Option<f64>, digits: usize, ok: &dyn Fn(f64) -> bool| {
            if let Some(v) = value {
                let shown = if digits == 0 {
                    thousands(v.round() as u64)
                } else {
                    format!("{v:.digits$}")
                };
                let _ = writeln!(
                    t,
                    "| {name} | {goal} | {shown} | {} |",
                    if ok(v) { "yes" } else { "**no**" }
                );
            }
        };
    let s1 = find(Scenario::Backlog, true, false);
    line(
        "1: CPU-s per million lines",
        "≤ 1.2",
        s1.and_then(|r| r.cpu_per_m),
        2,
        &|v| v <= 1.2,
    );
    line(
        "1: lines/s (sink on the same 2 cores)",
        "≥ 340,000",
        s1.and_then(|r| r.lines_per_s),
        0,
        &|v| v >= 340_000.0,
    );
    line(
        "1: peak RSS MiB",
        "≤ 16",
        s1.and_then(|r| r.peak_rss_kib.map(mib)),
        1,
        &|v| v <= 16.0,
    );
    let steady_at = |rate: usize| {
        rows.iter()
            .find(|r| r.scenario == Scenario::Steady && r.tls && !r.aggregate && r.offered == rate)
    };
    line(
        "2: CPU % of a core at 5,000 lines/s",
        "≤ 1",
        steady_at(5000).and_then(|r| r.cpu_pct),
        2,
        &|v| v <= 1.0,
    );
    line(
        "2: CPU % of a core at 500 lines/s",
        "≤ 0.3",
        steady_at(500).and_then(|r| r.cpu_pct),
        2,
        &|v| v <= 0.3,
    );
    let s2 = find(Scenario::Steady, true, false);
    line(
        "2: peak RSS MiB (any steady rate)",
        "≤ 12",
        rows.iter()
            .filter(|r| r.scenario == Scenario::Steady && r.tls && !r.aggregate)
            .filter_map(|r| r.peak_rss_kib.map(mib))
            .reduce(f64::max)
            .filter(|_| s2.is_some()),
        1,
        &|v| v <= 12.0,
    );
    let s3 = find(Scenario::Idle, true, false);
    line(
        "3: idle CPU ms per minute",
        "≤ 5",
        s3.and_then(|r| r.idle_ms_per_min),
        1,
        &|v| v <= 5.0,
    );
    let s4 = find(Scenario::Drain, true, false);
    line(
        "4: SIGTERM to exit 0, all delivered (s)",
        "≤ 1.5",
        s4.and_then(|r| {
            if r.exit == Some(0) && r.notes.is_empty() {
                r.drain_s
            } else {
                None
            }
        }),
        2,
        &|v| v <= 1.5,
    );
    let ready: Vec<f64> = rows
        .iter()
        .filter(|r| r.tls)
        .filter_map(|r| r.ready_ms)
        .collect();
    if !ready.is_empty() {
        let worst = ready.iter().cloned().fold(0.0, f64::max);
        line(
            "start-up to /readyz 200 ms (worst run)",
            "≤ 100",
            Some(worst),
            0,
            &|v| v <= 100.0,
        );
    }
    let agg = find(Scenario::Backlog, true, true).or_else(|| find(Scenario::Drain, true, true));
    line(
        "billable / raw with --aggregate",
        "≤ 1.01",
        agg.and_then(Row::ratio),
        3,
        &|v| v <= 1.01,
    );
    let plain = find(Scenario::Backlog, true, false).or_else(|| find(Scenario::Drain, true, false));
    if let Some(v) = plain.and_then(Row::ratio) {
        let _ = writeln!(
            t,
            "| billable / raw without --aggregate (expected ~17) | — | {v:.1} | — |"
        );
    }
    t.push_str(&fluent_bit_beside(all));
    t
}

/// Fluent Bit's per-pod cost figures, reported beside the targets with no goal of
/// their own.
fn fluent_bit_beside(rows: &[Row]) -> String {
    let mut t = String::new();
    let fb = |s: Scenario, rate: usize| {
        rows.iter().find(|r| {
            r.agent == Agent::FluentBit && r.scenario == s && (rate == 0 || r.offered == rate)
        })
    };
    let mut line = |name: &str, value: Option<f64>, digits: usize| {
        if let Some(v) = value {
            let _ = writeln!(
                t,
                "| {name}, Fluent Bit 1.8.15 in the same run | — | {v:.digits$} | — |"
            );
        }
    };
    line(
        "2: CPU % of a core at 5,000 lines/s",
        fb(Scenario::Steady, 5000).and_then(|r| r.cpu_pct),
        2,
    );
    line(
        "2: CPU % of a core at 500 lines/s",
        fb(Scenario::Steady, 500).and_then(|r| r.cpu_pct),
        2,
    );
    line(
        "2: peak RSS MiB (any steady rate)",
        rows.iter()
            .filter(|r| r.agent == Agent::FluentBit && r.scenario == Scenario::Steady)
            .filter_map(|r| r.peak_rss_kib.map(mib))
            .reduce(f64::max),
        1,
    );
    line(
        "3: idle CPU ms per minute",
        fb(Scenario::Idle, 0).and_then(|r| r.idle_ms_per_min),
        1,
    );
    t
}

fn write_readme(path: &Path, text: &str) {
    let Ok(readme) = std::fs::read_to_string(path) else {
        say(format!(
            "{} not found; results printed only",
            path.display()
        ));
        return;
    };
    let (Some(a), Some(b)) = (readme.find(README_START), readme.find(README_END)) else {
        say("README.md has no bench markers; results printed only");
        return;
    };
    if b < a {
        say("README.md bench markers are out of order; results printed only");
        return;
    }
    let updated = format!("{}{README_START}\n{text}{}", &readme[..a], &readme[b..]);
    std::fs::write(path, updated).expect("write the README");
    say(format!("{} updated", path.display()));
}
