//! The short fleet run (docs/fleet.md): ten debug firetail processes share one stream quota
//! in the fake Firehose, offered 1.5× the record quota for a while, then 0.5× until
//! caught up. What users keep is asserted: every written line arrives, every pod
//! exits 0 with a clean drain report, and retries do not outnumber the records that
//! got through (in the default, adaptive mode). Comparisons between fixed and adaptive belong to the full run
//! (`cargo run --release --example fleet`), which is a benchmark, not a test.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::fake_firehose::Quota;
use crate::support::fleet::{run, Mode, Plan, Scenario};

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
    // Fixed concurrency with per-call backoff is the baseline the adaptive mode exists
    // to beat (it measured 2.3 here): only the default mode is held to the bound.
    if mode == Mode::Adaptive {
        assert!(
            f.amplification <= 1.0,
            "retry amplification {:.2} (rejected over accepted records)",
            f.amplification
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
