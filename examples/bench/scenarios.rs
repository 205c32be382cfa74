//! Scenarios 1 (backlog) and 4 (drain), and what every scenario shares: starting an
//! agent on its sink, stopping it, and the row's counters.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::{self, thread_cpu, Child};
use crate::fake_firehose::DEFAULT_STREAM;
use crate::{
    firetail_args, fluentbit, say, secs, tls, Agent, Ctx, Mode, Row, Scenario, Sink,
    BILLING_INCREMENT,
};

/// Scenario 1: the whole backlog is on disk before the agent starts.
pub fn backlog(ctx: &Ctx, agent: Agent, mode: Mode, perf: Option<&Path>) -> Row {
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
    let backlog = ctx.lines.slice(0, n);
    let written = if mode.app_fields {
        crate::sources::with_fields_written(backlog)
    } else {
        backlog.to_vec()
    };
    std::fs::write(&log, written).expect("write the backlog");
    // The sink's threads are new, so their CPU so far is all this run's.
    let logs = [log];
    let (sink, mut child, ready_ms, notes) = start_agent(ctx, agent, mode, &logs, &dir, false);
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
pub fn drain(ctx: &Ctx, mode: Mode) -> Row {
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
        &firetail_args(std::slice::from_ref(&log), mode),
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

/// The sink and the agent on `logs` (Fluent Bit: one), started: firetail until `/readyz` answers 200
/// (its ready time), Fluent Bit until its tail input has opened the DB (said in a note:
/// it has no readiness endpoint).
pub fn start_agent(
    ctx: &Ctx,
    agent: Agent,
    mode: Mode,
    logs: &[PathBuf],
    dir: &tempfile::TempDir,
    store: bool,
) -> (Sink, Child, Option<f64>, Vec<String>) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match (agent, ctx.fluent_bit.as_ref()) {
        (Agent::FluentBit, Some(fluent_bit)) => {
            let sink = Sink::start_for_fluent_bit(ctx, fluent_bit, store);
            let child = fluent_bit.spawn(&logs[0], dir.path(), DEFAULT_STREAM, &ctx.certs.ca_file);
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
            let args = firetail_args(logs, mode);
            let mut child = Child::spawn(&ctx.bin, &args, &sink.env(ctx));
            let ready = child.wait_ready(Duration::from_secs(30)).map(ms);
            (sink, child, ready, Vec::new())
        }
    }
}

/// The mode as the progress messages name it after the transport.
pub fn agg_label(mode: Mode) -> String {
    let agg = if mode.aggregate { " --aggregate" } else { "" };
    format!("{agg}{}", mode.variant())
}

pub fn run_dir(ctx: &Ctx) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(ctx.tmp.path())
        .expect("run dir")
}

/// Billable bytes as firetail counts them, once it has acknowledged every line.
pub fn billable_from_metrics(child: &Child, lines: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = child.metrics();
        // Summed over the series' labels (`source`): line series are per source.
        let sum = |name: &str| {
            m.iter()
                .filter(|(k, _)| k.split('{').next() == Some(name))
                .map(|(_, v)| *v)
                .reduce(|a, b| a + b)
        };
        let shipped = sum("firetail_lines_shipped_total").unwrap_or(0.0);
        if shipped as u64 >= lines || Instant::now() >= deadline {
            return sum("firetail_billable_bytes_total").map(|v| v as u64);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM and wait for the exit (the drain has nothing left to do).
pub fn stop(child: &mut Child) -> child::Exit {
    child.signal(libc::SIGTERM);
    child.wait(Duration::from_secs(30))
}

/// Sink counters, exit code and any trouble into the row.
pub fn finish(row: &mut Row, sink: &Sink, child: &Child, exit: &child::Exit) {
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

pub fn log_tail(child: &Child) -> String {
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
