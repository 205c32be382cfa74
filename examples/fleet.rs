//! The fleet simulation: N release firetail processes sharing one stream
//! quota in the fake Firehose, fixed concurrency against adaptive, side by side.
//!
//! ```text
//! cargo run --release --example fleet -- [--pods 50] [--scenario all|overload|rollout|unequal]
//!     [--mode both|fixed|adaptive] [--out docs/fleet] [--write-doc]
//! ```
//!
//! It builds `target/release/firetail` first, then runs each scenario in each mode:
//! 1. overload: pods started over 5 s, 0.5× the record quota for 10 s, 1.5× for 60 s,
//!    then 0.5× until every pod is caught up, then 10 s more at 0.5×;
//! 2. rollout: every pod started within a second, 1.5× from the start for 30 s, then
//!    the same;
//! 3. unequal: as overload, but a tenth of the pods write ten times the others' rate.
//!
//! The quota (default 2,000 records, 250 requests and 1 MiB a second) binds on records:
//! 1.5× is 3,000 lines/s of 200 bytes, 600 KB/s. Every pod writes its own file and
//! ships to its own stream name of one family, so the fake counts per pod; the pods
//! get `--adaptive=false` or `--adaptive=true` and otherwise the defaults. At the end
//! every pod gets SIGTERM; its exit code and drain report are checked, and every
//! written line is looked for in what the fake accepted.
//!
//! It prints a markdown table, writes an SVG per scenario (accepted and rejected
//! records per second and the largest lag, fixed against adaptive) into `--out`,
//! and with `--write-doc` replaces the text between the fleet markers in
//! docs/fleet.md with the table and links to the pictures. The full run takes about
//! 15 minutes.

#[allow(dead_code)]
#[path = "../tests/it/support/fake_firehose.rs"]
mod fake_firehose;
#[allow(dead_code)]
#[path = "../tests/it/support/fleet.rs"]
mod fleet;
#[allow(dead_code)]
#[path = "../tests/it/support/fleet_figures.rs"]
mod fleet_figures;
#[allow(dead_code)]
#[path = "../tests/it/support/fleet_pod.rs"]
mod fleet_pod;
#[path = "shared/release.rs"]
mod release;
#[path = "fleet/report.rs"]
mod report;
#[path = "fleet/svg.rs"]
mod svg;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;

use fake_firehose::Quota;
use fleet::{Mode, Plan, Run, Scenario};

/// The fleet simulation: N firetail processes against one stream quota.
#[derive(Parser, Debug)]
#[command(name = "fleet")]
struct Opts {
    /// firetail processes.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(2..=1000))]
    pods: u16,
    /// Scenario: all, overload, rollout or unequal.
    #[arg(long, default_value = "all", value_parser = ["all", "overload", "rollout", "unequal"])]
    scenario: String,
    /// Mode: both, fixed (--adaptive=false) or adaptive (--adaptive=true).
    #[arg(long, default_value = "both", value_parser = ["both", "fixed", "adaptive"])]
    mode: String,
    /// Seconds at 1.5× in the overload and unequal scenarios (the rollout runs half).
    #[arg(long, default_value_t = 60)]
    overload_seconds: u64,
    /// The stream's record quota per second.
    #[arg(long, default_value_t = 2000)]
    records_per_second: u64,
    /// The stream's request quota per second.
    #[arg(long, default_value_t = 250)]
    requests_per_second: u64,
    /// The stream's byte quota per second.
    #[arg(long, default_value_t = 1 << 20)]
    bytes_per_second: u64,
    /// Extra flag for every pod (repeatable), e.g. `--pod-arg=--aggregate`.
    #[arg(long = "pod-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pod_args: Vec<String>,
    /// Where the SVGs go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fleet"))]
    out: PathBuf,
    /// Replace the text between the fleet markers in docs/fleet.md with the results.
    #[arg(long)]
    write_doc: bool,
    /// The page that --write-doc rewrites.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fleet.md"))]
    doc: PathBuf,
    /// Use this firetail binary instead of building target/release/firetail.
    #[arg(long, value_name = "PATH")]
    firetail: Option<PathBuf>,
}

fn main() {
    let opts = Opts::parse();
    let binary = release::firetail_binary(opts.firetail.as_deref(), |m| say(m));
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| opts.scenario == "all" || opts.scenario == s.name())
        .collect();
    let modes: Vec<Mode> = Mode::BOTH
        .into_iter()
        .filter(|m| opts.mode == "both" || opts.mode == m.name())
        .collect();
    let load_before = release::loadavg();
    let started = Instant::now();
    let mut runs: Vec<Run> = Vec::new();
    for &scenario in &scenarios {
        for &mode in &modes {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let plan = plan(&opts, scenario, mode, &binary, dir.path());
            say(format!(
                "{} {}: {} pods",
                scenario.name(),
                mode.name(),
                plan.pods
            ));
            let run = fleet::run(&plan);
            say(report::row(&run));
            for problem in run.problems.iter().take(20) {
                say(format!("  problem: {problem}"));
            }
            runs.push(run);
        }
    }
    // The pictures are linked from the page, so relative to it when they sit below it.
    let pictures = opts
        .doc
        .parent()
        .and_then(|dir| opts.out.strip_prefix(dir).ok())
        .unwrap_or(&opts.out)
        .to_path_buf();
    let text = report::table(&runs, &load_before, started.elapsed(), &pictures);
    println!("\n{text}");
    std::fs::create_dir_all(&opts.out).expect("create the output directory");
    for &scenario in &scenarios {
        let of: Vec<&Run> = runs
            .iter()
            .filter(|r| r.plan.scenario == scenario)
            .collect();
        let path = opts.out.join(format!("{}.svg", scenario.name()));
        std::fs::write(&path, svg::chart(&of)).expect("write the SVG");
        say(format!("{} written", path.display()));
    }
    if opts.write_doc {
        report::write_doc(&opts.doc, &text);
    }
}

fn plan(opts: &Opts, scenario: Scenario, mode: Mode, binary: &Path, dir: &Path) -> Plan {
    let overload = Duration::from_secs(match scenario {
        Scenario::Rollout => opts.overload_seconds / 2,
        _ => opts.overload_seconds,
    });
    Plan {
        scenario,
        mode,
        pods: usize::from(opts.pods),
        quota: Quota {
            records_per_second: opts.records_per_second,
            requests_per_second: opts.requests_per_second,
            bytes_per_second: opts.bytes_per_second,
        },
        warmup: Duration::from_secs(10),
        overload,
        settle: Duration::from_secs(10),
        // At 0.5× the spare half of the quota drains what the overload piled up in
        // about the overload's length; three times that is generous.
        catch_up_limit: overload * 3,
        line_bytes: 200,
        binary: binary.to_path_buf(),
        dir: dir.to_path_buf(),
        extra_args: opts.pod_args.clone(),
    }
}

fn say(text: impl AsRef<str>) {
    eprintln!("[fleet] {}", text.as_ref());
}
