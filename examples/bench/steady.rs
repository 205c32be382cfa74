//! Scenarios 2 and 3 in one process: a steady writer (a warm-up, then the measured
//! window), then idle after catching up.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::child::Child;
use crate::scenarios::{agg_label, billable_from_metrics, log_tail, run_dir, start_agent, stop};
use crate::BILLING_INCREMENT;
use crate::{fluentbit, latency, say, secs, Agent, Ctx, Mode, Row, Scenario, Sink};

/// Lines caught up on before an idle window that follows no steady one.
const CATCH_UP_LINES: usize = 10_000;

pub fn steady_idle(
    ctx: &Ctx,
    agent: Agent,
    mode: Mode,
    rate: usize,
    steady: bool,
    idle: bool,
) -> Vec<Row> {
    announce(ctx, agent, mode, rate, steady, idle);
    let mut rows = Vec::new();
    let dir = run_dir(ctx);
    let logs: Vec<PathBuf> = match mode.files {
        0 | 1 => vec![dir.path().join("access.log")],
        n => (0..n)
            .map(|i| dir.path().join(format!("access-{i}.log")))
            .collect(),
    };
    for log in &logs {
        std::fs::File::create(log).expect("create the log");
    }
    // The sink keeps scenario 2's records for the latency of each line.
    let (sink, mut child, ready_ms, mut agent_notes) =
        start_agent(ctx, agent, mode, &logs, &dir, steady);

    let written = if steady {
        let row = window(ctx, agent, mode, rate, &logs, &sink, &child);
        let written = row.lines as usize;
        rows.push(row);
        written
    } else {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&logs[0])
            .expect("open the log");
        file.write_all(ctx.lines.slice(0, CATCH_UP_LINES))
            .expect("append");
        sink.fake
            .wait_for_lines(CATCH_UP_LINES as u64, Duration::from_secs(60));
        CATCH_UP_LINES
    };
    if idle {
        rows.push(idle_window(ctx, mode, &sink, &child, written));
    }
    if agent == Agent::FluentBit {
        agent_notes.push(fluentbit::process_tree(child.pid));
    }
    let exit = stop(&mut child);
    for row in &mut rows {
        row.agent = agent;
        row.ready_ms = ready_ms;
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

fn announce(ctx: &Ctx, agent: Agent, mode: Mode, rate: usize, steady: bool, idle: bool) {
    let seconds = ctx.opts.steady_seconds;
    let idle_s = ctx.opts.idle_seconds;
    let (which, what) = match (steady, idle) {
        (true, true) => (
            "s 2+3",
            format!("{rate} lines/s for {seconds}s, then idle {idle_s}s"),
        ),
        (true, false) => (" 2", format!("{rate} lines/s for {seconds}s")),
        _ => (
            " 3",
            format!("catch up on {CATCH_UP_LINES} lines, then idle {idle_s}s"),
        ),
    };
    say(format!(
        "{}, scenario{which} {}{}: {what}",
        agent.label(),
        mode.transport(),
        agg_label(mode)
    ));
}

/// What the writer and the samplers saw.
struct Written {
    /// The first measured tick's start, and the end of the last write.
    from: Instant,
    to: Instant,
    /// When each tick's write returned.
    at: Vec<Instant>,
    /// VmRSS every 500 ms of the window.
    rss: Vec<u64>,
    /// The agent's and the sink's CPU when the window opened.
    cpu0: Duration,
    sink0: Duration,
}

/// `per_tick` lines every 10 ms for the warm-up and the window, from another thread,
/// spread evenly over `logs` (each tick writes a share to each file); the window's CPU
/// and RSS are read here.
fn write_paced(
    ctx: &Ctx,
    logs: &[PathBuf],
    per_tick: usize,
    warm_ticks: usize,
    ticks: usize,
    sink: &Sink,
    child: &Child,
) -> Written {
    // Per tick, per file: the byte range of its share of the tick's lines.
    let n = logs.len();
    let slices: Vec<Vec<(usize, usize)>> = (0..warm_ticks + ticks)
        .map(|k| {
            (0..n)
                .map(|f| {
                    let line = |f: usize| k * per_tick + f * per_tick / n;
                    (ctx.lines.start_of(line(f)), ctx.lines.start_of(line(f + 1)))
                })
                .collect()
        })
        .collect();
    let data = &ctx.lines.data;
    let (measured_from, sent) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let open = |log| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(log)
                    .expect("open the log")
            };
            let mut files: Vec<std::fs::File> = logs.iter().map(open).collect();
            let start = Instant::now();
            let mut measured = start;
            let mut at = Vec::with_capacity(slices.len());
            for (k, shares) in slices.iter().enumerate() {
                let due = start + Duration::from_millis(10 * k as u64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if k == warm_ticks {
                    measured = Instant::now();
                    let _ = measured_from.send(());
                }
                for (file, &(a, b)) in files.iter_mut().zip(shares) {
                    file.write_all(&data[a..b]).expect("append");
                }
                at.push(Instant::now());
            }
            (measured, Instant::now(), at)
        });
        // The window opens when the writer starts its first measured tick.
        let _ = sent.recv();
        let (cpu0, sink0) = (child.cpu(), sink.cpu());
        let mut rss = Vec::new();
        while !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(500));
            rss.extend(child.status_kib("VmRSS"));
        }
        let (from, to, at) = writer.join().expect("writer thread");
        Written {
            from,
            to,
            at,
            rss,
            cpu0,
            sink0,
        }
    })
}

/// Scenario 2: the warm-up, the measured window, and the catching up after it.
fn window(
    ctx: &Ctx,
    agent: Agent,
    mode: Mode,
    rate: usize,
    logs: &[PathBuf],
    sink: &Sink,
    child: &Child,
) -> Row {
    let mut row = Row::new(Scenario::Steady, mode);
    row.offered = rate;
    let per_tick = (rate / 100).max(1);
    let warm_ticks = ctx.opts.warmup_seconds as usize * 100;
    let ticks = ctx.opts.steady_seconds as usize * 100;
    let (warm, total) = (per_tick * warm_ticks, per_tick * ticks);
    let cpu_spawned = child.cpu();
    let w = write_paced(ctx, logs, per_tick, warm_ticks, ticks, sink, child);
    let cpu1 = child.cpu();
    let hwm = child.status_kib("VmHWM");
    let caught = sink
        .fake
        .wait_for_lines((warm + total) as u64, Duration::from_secs(60));
    let t_caught = Instant::now();
    let cpu2 = child.cpu();
    row.sink_cpu_s = Some(secs(sink.cpu() - w.sink0));
    row.firetail_cpu_s = Some(secs(cpu2 - w.cpu0));
    if !caught {
        row.notes.push(format!(
            "only {} of {} lines arrived",
            sink.fake.lines_accepted(),
            warm + total
        ));
    }
    row.lines = sink.fake.lines_accepted();
    let span = secs(w.to - w.from);
    row.lines_per_s = Some(total as f64 / span);
    row.cpu_pct = Some(secs(cpu1 - w.cpu0) / span * 100.0);
    // The lines of the window; the warm-up's last lines still in flight at its start
    // are shipped inside it, so this errs high.
    row.cpu_per_m = Some(secs(cpu2 - w.cpu0) / total.max(1) as f64 * 1e6);
    row.peak_rss_kib = hwm;
    if warm > 0 {
        row.notes.push(format!(
            "warm-up: {}s at the same rate first, {:.0} ms of CPU (not in the window)",
            ctx.opts.warmup_seconds,
            secs(w.cpu0 - cpu_spawned) * 1e3
        ));
    }
    if !w.rss.is_empty() {
        let mean = w.rss.iter().sum::<u64>() / w.rss.len() as u64;
        row.notes
            .push(format!("mean RSS {:.1} MiB", mean as f64 / 1024.0));
    }
    row.notes.push(format!(
        "caught up {:.2}s after the last write",
        secs(t_caught - w.to)
    ));
    row.latency_ms = latency::percentiles(
        &sink.fake,
        &latency::Writes {
            per_tick,
            first_measured: warm_ticks,
            at: w.at,
        },
    );
    counters(&mut row, agent, sink, child);
    row
}

/// Calls, records, bytes and billable bytes of a steady run.
fn counters(row: &mut Row, agent: Agent, sink: &Sink, child: &Child) {
    let c = sink.fake.counters();
    row.calls = c.calls;
    row.records = c.records_accepted;
    row.raw_bytes = c.bytes_accepted;
    row.billable_bytes = match agent {
        Agent::Firetail => billable_from_metrics(child, row.lines),
        // One record per line, and every line is far below the 5 KiB increment.
        _ => Some(row.records * BILLING_INCREMENT),
    };
    if agent == Agent::FluentBit && row.records != row.lines {
        row.notes
            .push(format!("{} records for {} lines", row.records, row.lines));
    }
}

/// Scenario 3: the agent's CPU over the idle window, after things settle.
fn idle_window(ctx: &Ctx, mode: Mode, sink: &Sink, child: &Child, written: usize) -> Row {
    let mut row = Row::new(Scenario::Idle, mode);
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
    row
}
