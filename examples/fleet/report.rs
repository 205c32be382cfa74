//! The fleet table: one row per scenario and mode, so fixed and adaptive sit side by
//! side, and the block of docs/fleet.md that shows it.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::fleet::{Run, CAUGHT_UP_LAG, OVERLOAD, RELIEF};

const DOC_START: &str = "<!-- fleet:start -->";
const DOC_END: &str = "<!-- fleet:end -->";

/// One line for the progress log.
pub fn row(run: &Run) -> String {
    let (t, f) = (&run.tally, &run.figures);
    format!(
        "{} {}: written {}, lost {}, duplicated {}, exits 0: {}/{}; goodput {:.0} %, \
         amplification {:.2}, Jain {:.3}, max lag {:.1} s, catch-up {}, calls/pod/s {:.2}, \
         in flight and flush {}; {:.0} s",
        run.plan.scenario.name(),
        run.plan.mode.name(),
        t.written,
        t.lost,
        t.duplicated,
        exits_ok(run),
        run.plan.pods,
        f.goodput * 100.0,
        f.amplification,
        f.jain,
        f.max_lag_seconds,
        catch_up(run),
        f.requests_per_pod_second,
        gauges(run),
        run.wall.as_secs_f64()
    )
}

fn exits_ok(run: &Run) -> usize {
    run.exit_codes.iter().filter(|&&c| c == Some(0)).count()
}

fn gauges(run: &Run) -> String {
    match run.figures.overload_gauges {
        Some((limit, interval)) => format!("{limit:.1}, {interval:.1} s"),
        None => "not exported".into(),
    }
}

fn catch_up(run: &Run) -> String {
    match run.figures.catch_up_seconds {
        Some(s) => format!("{s:.0} s"),
        None => "not caught up".into(),
    }
}

/// The markdown block: how it was measured, the table and the pictures.
pub fn table(runs: &[Run], load_before: &str, wall: Duration, pictures: &Path) -> String {
    let mut t = String::new();
    let Some(first) = runs.first() else {
        return t;
    };
    let (plan, q) = (&first.plan, first.plan.quota);
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let _ = writeln!(
        t,
        "Measured with `cargo run --release --example fleet` at {commit}: {} pods, quota \
         {} records, {} requests and {} KiB a second; offered {OVERLOAD}× the record quota \
         while overloaded and {RELIEF}× otherwise, lines of {} bytes. Load average before: \
         {load_before}; after: {}; {:.0} s in all.",
        plan.pods,
        q.records_per_second,
        q.requests_per_second,
        q.bytes_per_second / 1024,
        plan.line_bytes,
        crate::release::loadavg(),
        wall.as_secs_f64()
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| scenario | mode | lines written | lost | exit 0 | goodput (of record quota) | \
         retry amplification | Jain (equal pods) | longest lag | catch-up | calls/pod/s at {RELIEF}× | \
         in flight, flush interval while overloaded |"
    );
    let _ = writeln!(t, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for run in runs {
        let (n, f) = (&run.tally, &run.figures);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {}/{} | {:.0} % | {:.2} | {:.3} | {:.1} s | {} | {:.2} | {} |",
            run.plan.scenario.name(),
            run.plan.mode.name(),
            n.written,
            n.lost,
            exits_ok(run),
            run.plan.pods,
            f.goodput * 100.0,
            f.amplification,
            f.jain,
            f.max_lag_seconds,
            catch_up(run),
            f.requests_per_pod_second,
            gauges(run)
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Lost: written lines never accepted (each pod also exited 0 after SIGTERM with a \
         drain report of 0 undelivered). Goodput: accepted records per second over the \
         record quota, in the seconds wholly inside the overload. Retry amplification: \
         records rejected (per record or with their call) over records accepted, whole run. \
         Jain: accepted records per pod during the overload, over the pods that write \
         alike. Lag: the age of a pod's oldest line not yet accepted, largest pod, sampled \
         each second. Catch-up: from the end of the overload until every pod's lag is at \
         most {CAUGHT_UP_LAG} s. In flight, flush interval: the means over pods and \
         seconds of `firetail_in_flight_limit` and `firetail_flush_interval_seconds`."
    );
    let problems: usize = runs.iter().map(|r| r.problems.len()).sum();
    if problems > 0 {
        let _ = writeln!(t);
        let _ = writeln!(t, "Problems seen ({problems}):");
        for run in runs {
            for p in run.problems.iter().take(5) {
                let _ = writeln!(
                    t,
                    "- {} {}: {p}",
                    run.plan.scenario.name(),
                    run.plan.mode.name()
                );
            }
        }
    }
    let _ = writeln!(t);
    let mut scenarios: Vec<&str> = runs.iter().map(|r| r.plan.scenario.name()).collect();
    scenarios.dedup();
    for s in scenarios {
        let _ = writeln!(
            t,
            "![{s}: records per second and lag]({}/{s}.svg)",
            pictures.display()
        );
    }
    t
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    let out = crate::release::command_output(cmd, args);
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

/// Replaces the text between the fleet markers.
pub fn write_doc(path: &Path, text: &str) {
    let Ok(doc) = std::fs::read_to_string(path) else {
        eprintln!("[fleet] {} not found; results printed only", path.display());
        return;
    };
    let (Some(a), Some(b)) = (doc.find(DOC_START), doc.find(DOC_END)) else {
        eprintln!(
            "[fleet] {} has no fleet markers; results printed only",
            path.display()
        );
        return;
    };
    if b < a {
        eprintln!(
            "[fleet] {} fleet markers are out of order; results printed only",
            path.display()
        );
        return;
    }
    let updated = format!("{}{DOC_START}\n{text}{}", &doc[..a], &doc[b..]);
    std::fs::write(path, updated).expect("write the page");
    eprintln!("[fleet] {} updated", path.display());
}
