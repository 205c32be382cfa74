//! The bench's report: what was measured where, the comparison of firetail with Fluent
//! Bit and the SDK's floor, every row, the notes and the targets; and the page it is
//! written into (docs/performance.md, between the bench-table markers).

use std::fmt::Write as _;
use std::path::Path;

use crate::release::{command_output, loadavg};
use crate::{Agent, Ctx, Row, Scenario};

const DOC_START: &str = "<!-- bench-table:start -->";
const DOC_END: &str = "<!-- bench-table:end -->";

/// What the whole run shares, for the page's first lines.
pub struct Run {
    machine: String,
    load_before: String,
    load_after: String,
    wall: f64,
    command: String,
    avg_line: f64,
    steady_seconds: u64,
    warmup_seconds: u64,
}

impl Run {
    /// Reads the load average after the run, now.
    pub fn new(ctx: &Ctx, machine: &str, load_before: &str, wall: f64) -> Run {
        let mut command = "cargo run --release --example bench".to_owned();
        if !ctx.command.is_empty() {
            command.push_str(" -- ");
            command.push_str(&ctx.command.join(" "));
        }
        Run {
            machine: machine.to_owned(),
            load_before: load_before.to_owned(),
            load_after: loadavg(),
            wall,
            command,
            avg_line: ctx.lines.bytes(ctx.lines.len()) as f64 / ctx.lines.len() as f64,
            steady_seconds: ctx.opts.steady_seconds,
            warmup_seconds: ctx.opts.warmup_seconds,
        }
    }

    /// A sentence when the 1-minute load average was at or above the core count at
    /// either end: other work shared the cores.
    fn load_warning(&self) -> Option<String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let first = |l: &str| l.split_whitespace().next()?.parse::<f64>().ok();
        let high = [&self.load_before, &self.load_after]
            .iter()
            .filter_map(|l| first(l))
            .any(|l| l >= cores);
        high.then(|| {
            format!(
                "**The load average was at or above the {cores:.0} cores**: other work \
                 shared the machine, so these figures are approximate (CPU per line counts \
                 each agent's own CPU time and suffers least; lines/s and latency most)."
            )
        })
    }
}

pub fn machine() -> String {
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
    let mem_gib =
        crate::child::status_kib("/proc/meminfo", "MemTotal").unwrap_or(0) as f64 / 1048576.0;
    format!("nproc {nproc} × {model}, {mem_gib:.0} GiB RAM, Linux {kernel}")
}

pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
}

pub fn thousands(n: u64) -> String {
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

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn latency(r: &Row) -> String {
    r.latency_ms
        .map_or("—".into(), |(p50, p99)| format!("{p50:.0} / {p99:.0}"))
}

/// The whole report: where and how, the comparison, every row, notes, targets.
pub fn table(rows: &[Row], run: &Run) -> String {
    // The comparison and the targets read each scenario's usual run only.
    let usual: Vec<Row> = rows
        .iter()
        .filter(|r| r.variant.is_empty())
        .cloned()
        .collect();
    let mut t = header(rows, run);
    t.push_str(&crate::report_compare::comparison(&usual));
    t.push_str(&crate::sources::summary(rows));
    t.push_str(&all_rows(rows, run));
    t.push_str(&notes(rows));
    let _ = writeln!(t);
    t.push_str(&crate::report_compare::targets(&usual));
    t
}

fn header(rows: &[Row], run: &Run) -> String {
    let mut t = String::new();
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty =
        !command_output("git", &["status", "--porcelain", "--", "src", "Cargo.toml"]).is_empty();
    let rustc = command_output("rustc", &["--version"]);
    let has = |a: Agent| rows.iter().any(|r| r.agent == a);
    let _ = writeln!(
        t,
        "Measured with `{}` on: {}; {rustc}; firetail at {commit}{}.",
        run.command,
        run.machine,
        if dirty { " (with local changes)" } else { "" }
    );
    let _ = writeln!(
        t,
        "Load average (1, 5, 15 min) before: {}; after: {}; the bench took {:.0} s.",
        run.load_before, run.load_after, run.wall
    );
    if let Some(w) = run.load_warning() {
        let _ = writeln!(t, "{w}");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "Lines: unique JSON access-log lines of {:.0} bytes on average. Sink: the fake Firehose of the tests (`tests/it/support/fake_firehose.rs`), in the bench process and sharing the cores with the agent; over TLS through a rustls proxy on loopback, its CA trusted with `SSL_CERT_FILE`. firetail flags: `--path --stream --metrics-addr 127.0.0.1:0`, plus `--aggregate` where marked; everything else default (`--flush-interval 1s`, `--drain-quiet 1s`, `--drain-timeout 10s`, `--max-in-flight 4`).", run.avg_line);
    let _ = writeln!(t);
    if has(Agent::FluentBit) {
        let _ = writeln!(t, "{} (as its `--version` names itself; a release build kept outside the repository: see \"Fluent Bit beside firetail\" below) runs scenarios 1–3 beside firetail over TLS, on the same lines and the same fake behind the same kind of proxy (on port 443 of a loopback address of its own: its Firehose output connects to no other port). Its configuration (`examples/bench/fluentbit.rs`): `Flush 1`; `tail` with a `DB`, `Read_from_Head On` and `Parser json` (so that it sends each line's JSON, not an escaped string); the `kinesis_firehose` output with `endpoint`, `tls.ca_file` and fake keys in the environment; one record per line, as firetail without `--aggregate`; everything else default. It is one process, measured as firetail is.", Agent::FluentBit.label());
        let _ = writeln!(t);
    }
    if has(Agent::Floor) {
        let _ = writeln!(t, "{}: the floor of any shipper that must use the SDK. The same `PutRecordBatch` calls of 500 records (the same lines, one record per line; at 500 lines/s one call a second, at 5,000 ten) through the SDK alone, with firetail's client (`firetail::ship::client`: its timeouts, SDK retries off) on one runtime thread, 4 calls in flight at most, from lines read and cut into batches before its CPU is counted (`examples/bench/floor.rs`). Same sink, proxy, environment and accounting; one process.", Agent::Floor.label());
        let _ = writeln!(t);
    }
    t
}

fn all_rows(rows: &[Row], run: &Run) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "Every run:");
    let _ = writeln!(t);
    let _ = writeln!(t, "| Agent | Scenario | Transport | --aggregate | Lines | Lines/s | CPU-s per M lines | CPU % of a core | Peak RSS MiB | Latency p50 / p99 ms | Calls | Records | Billable MiB | Billable / raw | Ready ms | Drain s | Idle CPU ms/min | Exit |");
    let _ = writeln!(
        t,
        "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.agent.label(),
            r.scenario.label(),
            r.variant,
            if r.tls { "TLS" } else { "HTTP" },
            if r.aggregate { "yes" } else { "no" },
            thousands(r.lines),
            r.lines_per_s.map_or("—".into(), |v| thousands(v as u64)),
            opt(r.cpu_per_m, 2),
            opt(r.cpu_pct, 2),
            opt(r.peak_rss_kib.map(mib), 1),
            latency(r),
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
    let _ = writeln!(t, "Lines/s: from spawning the agent until the sink holds every line (scenario 1; with `--aggregate` this includes the last, partial record waiting `--flush-interval`, 1 s; the SDK floor from its first call); the offered rate in scenario 2 (5,000 and, in a process of its own, 500 lines/s). CPU: user + system time of the agent's process from `wait4` (scenarios 1 and 4, whole life; the SDK floor from its first call), or its CPU clock over the window (2: while writing the measured {} s, which follow a warm-up of {} s at the same rate whose CPU is noted apart, and per M lines of that window until caught up; 3: the idle window). Peak RSS: `VmHWM` from `/proc`, sampled every 10 ms until exit (1, 3, 4) or at the end of the writing (2); `ru_maxrss` is not used because Linux counts the parent's RSS at the fork in it. Latency (scenario 2, the measured window's lines): from the return of the `write` that appended a line to the moment the fake had read the call that accepted it; each line is found by its `seq`. Billable: each record rounded up to 5 KiB.", run.steady_seconds, run.warmup_seconds);
    t
}

fn notes(rows: &[Row]) -> String {
    let mut t = String::new();
    let notes: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let mut n = r.notes.clone();
            if let (Some(s), Some(f)) = (r.sink_cpu_s, r.firetail_cpu_s) {
                if r.scenario == Scenario::Backlog {
                    n.insert(
                        0,
                        format!("sink CPU {s:.2} s vs the agent's {f:.2} s (until caught up)"),
                    );
                }
            }
            (!n.is_empty()).then(|| {
                format!(
                    "- {}, {}{} {}{}{}: {}",
                    r.agent.label(),
                    r.scenario.label(),
                    if r.offered > 0 {
                        format!(" {} lines/s", thousands(r.offered as u64))
                    } else {
                        String::new()
                    },
                    if r.tls { "TLS" } else { "HTTP" },
                    if r.aggregate { " --aggregate" } else { "" },
                    r.variant,
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
    t
}

/// Replaces the text between the bench-table markers of `path`.
pub fn write_doc(path: &Path, text: &str) {
    let say = |m: String| crate::say(m);
    let Ok(doc) = std::fs::read_to_string(path) else {
        say(format!(
            "{} not found; results printed only",
            path.display()
        ));
        return;
    };
    let (Some(a), Some(b)) = (doc.find(DOC_START), doc.find(DOC_END)) else {
        say(format!(
            "{} has no bench-table markers; results printed only",
            path.display()
        ));
        return;
    };
    if b < a {
        say(format!(
            "{}: the bench-table markers are out of order; results printed only",
            path.display()
        ));
        return;
    }
    let updated = format!("{}{DOC_START}\n{text}{}", &doc[..a], &doc[b..]);
    std::fs::write(path, updated).expect("write the page");
    say(format!("{} updated", path.display()));
}
