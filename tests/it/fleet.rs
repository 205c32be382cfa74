//! The short fleet run: ten debug firetail processes share one stream quota in the
//! fake Firehose, offered 1.5× the record quota for a while, then 0.5× until caught
//! up. What users keep is asserted — every written line arrives, every pod exits 0
//! with a clean drain report — and the figures the docs/fleet.md's fleet table reports for
//! the overload scenario (`cargo run --release --example fleet`: 50 release pods, 60 s
//! of overload), read from the docs/fleet.md's table, within the margins below.
//!
//! The margins are what a run five times smaller and eight times shorter costs, on a
//! machine shared with the rest of the suite. Fifteen runs of this test (load
//! averages 1 to 19, the two modes side by side or one at a time; three with release
//! pods, which measured the same) gave, adaptive: goodput 0.82–1.00, amplification
//! 0.08–0.31, Jain 0.81–0.93; fixed: goodput 1.00, Jain 0.89–0.99. Adaptive pods share
//! less evenly over 7 s than over 60 s (one run's shares went from 130 to 525 records
//! where even was 350): a pod throttled early grows back additively, and 7 s is too
//! short for that to even out. Fixed mode's retry amplification grows with the
//! fleet's size (calls in flight against the quota): 2.1–2.6 here against the
//! docs/fleet.md's 6.30 for fifty pods, so it is not held to the docs/fleet.md's figure; adaptive's
//! bound stays far below it.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::fake_firehose::Quota;
use crate::support::fleet::{run, Mode, Plan, Scenario};

/// Goodput at most this far below the docs/fleet.md's.
const GOODPUT_MARGIN: f64 = 0.25;
/// Retry amplification at most this far above the docs/fleet.md's.
const AMPLIFICATION_MARGIN: f64 = 0.35;
/// Jain's index at most this far below the docs/fleet.md's.
const JAIN_MARGIN: f64 = 0.25;

/// The docs/fleet.md's figures for one mode of the overload scenario.
#[derive(Debug)]
struct Reported {
    goodput: f64,
    amplification: f64,
    jain: f64,
}

/// The overload row of `mode` in the docs/fleet.md's fleet table (between `<!-- fleet:start
/// -->` and `<!-- fleet:end -->`): goodput ("99 %"), retry amplification, Jain.
fn reported(mode: Mode) -> Reported {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fleet.md"))
        .expect("docs/fleet.md");
    let table = readme
        .split_once("<!-- fleet:start -->")
        .and_then(|(_, rest)| rest.split_once("<!-- fleet:end -->"))
        .expect("the fleet table in docs/fleet.md")
        .0;
    let header: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("| scenario |"))
        .expect("the fleet table's header")
        .split('|')
        .map(str::trim)
        .collect();
    let row: Vec<&str> = table
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find(|cells| cells.get(1..3) == Some(&["overload", mode.name()][..]))
        .unwrap_or_else(|| {
            panic!(
                "no overload row for {} in docs/fleet.md's fleet table",
                mode.name()
            )
        });
    let cell = |starts: &str| -> f64 {
        let i = header
            .iter()
            .position(|h| h.starts_with(starts))
            .unwrap_or_else(|| panic!("no column {starts:?} in docs/fleet.md's fleet table"));
        let text = row[i];
        match text.strip_suffix('%') {
            Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
            None => text.parse(),
        }
        .unwrap_or_else(|e| {
            panic!(
                "docs/fleet.md's {starts:?} for {}: {text:?}: {e}",
                mode.name()
            )
        })
    };
    Reported {
        goodput: cell("goodput"),
        amplification: cell("retry amplification"),
        jain: cell("Jain"),
    }
}

fn short_plan(mode: Mode, dir: PathBuf) -> Plan {
    Plan {
        scenario: Scenario::Overload,
        mode,
        pods: 10,
        // Offered 750 records/s at 1.5×: little enough for ten debug builds on a
        // busy machine; 50 calls/s leaves ten pods flushing every second room.
        quota: Quota {
            records_per_second: 500,
            requests_per_second: 50,
            bytes_per_second: 1 << 20,
        },
        warmup: Duration::from_secs(2),
        overload: Duration::from_secs(7),
        settle: Duration::from_secs(1),
        catch_up_limit: Duration::from_secs(15),
        line_bytes: 200,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_firetail")),
        dir,
        extra_args: Vec::new(),
    }
}

fn overload_loses_nothing(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let run = run(&short_plan(mode, dir.path().to_path_buf()));
    let (t, f) = (&run.tally, &run.figures);
    eprintln!(
        "fleet {}: {t:?}; goodput {:.2}, amplification {:.2}, Jain {:.3}, max lag {:.1} s, wall {:.1} s",
        mode.name(),
        f.goodput,
        f.amplification,
        f.jain,
        f.max_lag_seconds,
        run.wall.as_secs_f64()
    );

    assert!(t.written > 5_000, "the driver wrote too little: {t:?}");
    assert_eq!((t.lost, t.foreign), (0, 0), "{t:?}");
    assert_eq!(run.exit_codes, vec![Some(0); 10], "{:#?}", run.problems);
    assert!(run.problems.is_empty(), "{:#?}", run.problems);
    // The quota did bind: otherwise the bound below proves nothing.
    let rejected: u64 = run
        .seconds
        .iter()
        .map(|s| s.counts.records_rejected())
        .sum();
    assert!(rejected > 0, "the quota never throttled");
    let readme = reported(mode);
    assert!(
        f.goodput >= readme.goodput - GOODPUT_MARGIN,
        "goodput {:.2}, the docs/fleet.md's {:.2} less {GOODPUT_MARGIN}",
        f.goodput,
        readme.goodput
    );
    assert!(
        f.jain >= readme.jain - JAIN_MARGIN,
        "Jain's index {:.3}, the docs/fleet.md's {:.3} less {JAIN_MARGIN}",
        f.jain,
        readme.jain
    );
    if mode == Mode::Adaptive {
        assert!(
            f.amplification <= readme.amplification + AMPLIFICATION_MARGIN,
            "retry amplification {:.2} (rejected over accepted records), the docs/fleet.md's {:.2} \
             plus {AMPLIFICATION_MARGIN}",
            f.amplification,
            readme.amplification
        );
    }
}

#[test]
fn fleet_overload_fixed_loses_nothing() {
    overload_loses_nothing(Mode::Fixed);
}

#[test]
fn fleet_overload_adaptive_loses_nothing() {
    overload_loses_nothing(Mode::Adaptive);
}
