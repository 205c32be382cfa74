//! The comparison of firetail with its peers (Fluent Bit, the SDK's floor) on the
//! same runs, and firetail's targets.

use std::fmt::Write as _;

use crate::report::{mib, thousands};
use crate::{Agent, Row, Scenario};

/// The TLS rows without `--aggregate` of `agent` in `scenario` (at `rate` lines/s in
/// scenario 2).
fn find(rows: &[Row], agent: Agent, scenario: Scenario, rate: usize) -> Option<&Row> {
    rows.iter().find(|r| {
        r.agent == agent
            && r.scenario == scenario
            && r.tls
            && !r.aggregate
            && (scenario != Scenario::Steady || r.offered == rate)
    })
}

/// One line of the comparison: a figure for each agent, and firetail's as a multiple
/// of the floor's where `ratio`.
struct Line<'a> {
    name: String,
    agents: &'a [Agent],
    ratio: bool,
}

impl Line<'_> {
    fn write(
        &self,
        t: &mut String,
        value: impl Fn(Agent) -> Option<f64>,
        shown: impl Fn(f64) -> String,
    ) {
        let cells: Vec<String> = self
            .agents
            .iter()
            .map(|&a| value(a).map_or("—".into(), &shown))
            .collect();
        let mut line = format!("| {} | {} |", self.name, cells.join(" | "));
        if self.agents.contains(&Agent::Floor) {
            let multiple = match (self.ratio, value(Agent::Firetail), value(Agent::Floor)) {
                (true, Some(f), Some(s)) if s > 0.0 => format!("{:.2}×", f / s),
                _ => "—".into(),
            };
            let _ = write!(line, " {multiple} |");
        }
        let _ = writeln!(t, "{line}");
    }
}

/// firetail, Fluent Bit and the SDK floor side by side: TLS, one record per line.
pub fn comparison(rows: &[Row]) -> String {
    let agents: Vec<Agent> = [Agent::Firetail, Agent::FluentBit, Agent::Floor]
        .into_iter()
        .filter(|&a| rows.iter().any(|r| r.agent == a && r.tls && !r.aggregate))
        .collect();
    let mut t = String::new();
    if agents.len() < 2 {
        return t;
    }
    let mut rates: Vec<usize> = rows
        .iter()
        .filter(|r| r.scenario == Scenario::Steady && r.tls && !r.aggregate)
        .map(|r| r.offered)
        .collect();
    rates.sort_unstable_by(|a, b| b.cmp(a));
    rates.dedup();
    let names: Vec<String> = agents.iter().map(|a| a.label()).collect();
    let floor = agents.contains(&Agent::Floor);
    let _ = writeln!(t, "Side by side (TLS, one record per line, the same run):");
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| Figure | {} |{}",
        names.join(" | "),
        if floor { " firetail ÷ floor |" } else { "" }
    );
    let cols = agents.len() + usize::from(floor);
    let _ = writeln!(t, "|---|{}", "--:|".repeat(cols));
    let line = |name: &str, ratio| Line {
        name: name.to_owned(),
        agents: &agents,
        ratio,
    };
    let at = |a, s, rate| find(rows, a, s, rate);
    let two = |v: f64| format!("{v:.2}");
    let one = |v: f64| format!("{v:.1}");
    let (b, st) = (Scenario::Backlog, Scenario::Steady);
    line("1 backlog: CPU-s per million lines", true).write(&mut t, |a| at(a, b, 0)?.cpu_per_m, two);
    line("1 backlog: lines/s", false).write(
        &mut t,
        |a| at(a, b, 0)?.lines_per_s,
        |v| thousands(v as u64),
    );
    line("1 backlog: peak RSS MiB", false).write(
        &mut t,
        |a| at(a, b, 0)?.peak_rss_kib.map(mib),
        one,
    );
    for &rate in &rates {
        let r = thousands(rate as u64);
        line(&format!("2 at {r} lines/s: CPU-s per million lines"), true).write(
            &mut t,
            |a| at(a, st, rate)?.cpu_per_m,
            two,
        );
        line(&format!("2 at {r} lines/s: CPU % of a core"), true).write(
            &mut t,
            |a| at(a, st, rate)?.cpu_pct,
            two,
        );
        line(&format!("2 at {r} lines/s: peak RSS MiB"), false).write(
            &mut t,
            |a| at(a, st, rate)?.peak_rss_kib.map(mib),
            one,
        );
    }
    for &rate in &rates {
        let r = thousands(rate as u64);
        for (p, pick) in [("p50", 0), ("p99", 1)] {
            line(&format!("2 at {r} lines/s: latency {p} ms"), false).write(
                &mut t,
                |a| {
                    at(a, st, rate)?
                        .latency_ms
                        .map(|l| if pick == 0 { l.0 } else { l.1 })
                },
                |v| format!("{v:.0}"),
            );
        }
    }
    line("3 idle: CPU ms per minute", false).write(
        &mut t,
        |a| at(a, Scenario::Idle, 0)?.idle_ms_per_min,
        one,
    );
    let _ = writeln!(t);
    t
}

/// The targets against firetail's TLS figures (reported, never asserted); its peers'
/// figures are in the comparison above.
pub fn targets(all: &[Row]) -> String {
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
    t
}
