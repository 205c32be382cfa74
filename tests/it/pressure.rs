//! One pod of a fleet (docs/fleet.md): fuller calls under pressure,
//! `--aggregate-max-lines`, and the adaptive control meeting a throttled stream (what
//! a fleet sees, one pod at a time; the fleet itself is in `fleet.rs`).

use std::time::{Duration, Instant};

use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Faults};
use crate::support::firetail::{access_lines, append, aws_env, base_args, http_get, Firetail};
use crate::support::pod::metric;
use crate::support::sorted;

const LONG: Duration = Duration::from_secs(90);

/// `args` with each flag set to its value (replacing the one `base_args` gives).
fn with(mut args: Vec<String>, flags: &[(&str, &str)]) -> Vec<String> {
    for (flag, value) in flags {
        let prefix = format!("{flag}=");
        args.retain(|a| !a.starts_with(&prefix));
        args.push(format!("{prefix}{value}"));
    }
    args
}

/// Writes `lines` in `chunks` appends, `every` apart: an app logging steadily.
fn write_steadily(log: &std::path::Path, lines: &[String], chunks: usize, every: Duration) {
    for part in lines.chunks(lines.len().div_ceil(chunks)) {
        append(log, part);
        std::thread::sleep(every);
    }
}

/// One slot, calls of 1.5 s, a flush every 100 ms: each flush's batch holds ~40
/// lines, but while the one call is out they wait together and the next call
/// carries them all (up to 500). Before, every flush was a call of its own.
#[test]
fn calls_fill_up_while_every_slot_is_busy() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            latency: Duration::from_millis(1500),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("fill", 0..1200);
    let args = with(
        base_args(&log, &fake.stream_name()),
        &[
            ("--max-in-flight", "1"),
            ("--flush-interval", "100ms"),
            ("--adaptive", "false"),
        ],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    // 1,200 lines over ~3 s: 30 appends of 40 lines, 100 ms apart.
    write_steadily(&log, &lines, 30, Duration::from_millis(100));
    assert!(fake.wait_for_lines(1200, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(fake.accepted_lines()), sorted(lines));
    let calls = fake.calls();
    let fullest = calls.iter().map(|c| c.records).max().unwrap();
    // 30 flushes of ~40 lines; without coalescing, 30 calls of ≤ ~80 records.
    assert!(
        calls.len() <= 10,
        "{} calls: {:?}",
        calls.len(),
        calls.iter().map(|c| c.records).collect::<Vec<_>>()
    );
    assert!(fullest >= 200, "the fullest call held {fullest} records");
    assert!(calls.iter().all(|c| c.records <= 500));
}

#[test]
fn aggregate_max_lines_bounds_every_record() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("maxlines", 0..1000);
    append(&log, &lines);
    let mut args = with(
        base_args(&log, &fake.stream_name()),
        &[("--aggregate-max-lines", "7")],
    );
    args.push("--aggregate".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_lines(1000, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(fake.accepted_lines()), sorted(lines));
    let per_record: Vec<usize> = fake
        .accepted()
        .iter()
        .map(|r| r.iter().filter(|b| **b == b'\n').count())
        .collect();
    assert!(per_record.iter().all(|n| *n <= 7), "{per_record:?}");
    // Packed, not one line a record: 1,000 lines in about 143 records.
    assert!(per_record.len() <= 200, "{} records", per_record.len());
}

/// Reads the three adaptive gauges.
fn gauges(addr: &str) -> (f64, f64, f64) {
    let text = http_get(addr, "/metrics").1;
    let get = |name| metric(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    (
        get("firetail_in_flight_limit"),
        get("firetail_flush_interval_seconds"),
        get("firetail_send_rate_limit_records"),
    )
}

/// Half the records of every call answered "Slow down.": with `--adaptive` (the
/// default) the pod limits its send rate and stretches its flush interval — never
/// past 4× `--flush-interval` — and still delivers every line exactly once; with
/// `--adaptive false` nothing moves.
#[test]
fn a_throttled_stream_meets_a_rate_limit_and_a_longer_flush_and_loses_nothing() {
    for adaptive in [true, false] {
        let fake = FakeFirehose::start(FakeConfig {
            faults: Faults {
                record_slow_down_rate: 0.5,
                ..Faults::default()
            },
            ..FakeConfig::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let lines = access_lines("throttled", 0..6000);
        let args = with(
            base_args(&log, &fake.stream_name()),
            &[
                ("--flush-interval", "200ms"),
                ("--adaptive", if adaptive { "true" } else { "false" }),
            ],
        );
        let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
        let addr = ft.metrics_addr();
        let (mut stretched, mut limited) = (0.0f64, 0.0f64);
        let mut limits = Vec::new();
        let started = Instant::now();
        for part in lines.chunks(300) {
            append(&log, part);
            std::thread::sleep(Duration::from_millis(100));
            let (limit, flush, rate) = gauges(&addr);
            stretched = stretched.max(flush);
            limited = limited.max(rate);
            limits.push(limit);
        }
        assert!(fake.wait_for_lines(6000, LONG), "{}", ft.dump());
        let (_, flush_after, _) = gauges(&addr);
        ft.term();
        assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
        assert_eq!(sorted(fake.accepted_lines()), sorted(lines));
        assert!(
            fake.duplicate_lines().is_empty(),
            "an accepted line was resent"
        );
        assert!(stretched <= 0.2 * 4.0 + 1e-9, "flush interval {stretched}s");
        assert!(flush_after <= 0.2 * 4.0 + 1e-9);
        let took = started.elapsed();
        if adaptive {
            assert!(stretched > 0.2, "the flush interval never stretched");
            assert!(limited > 0.0, "no send rate limit was set");
            assert!(limits.iter().all(|l| (1.0..=4.0).contains(l)), "{limits:?}");
        } else {
            assert_eq!(stretched, 0.2, "fixed mode stretched the flush interval");
            assert_eq!(limited, 0.0, "fixed mode set a rate limit");
            assert!(limits.iter().all(|l| *l == 4.0), "{limits:?}");
        }
        eprintln!("pressure adaptive={adaptive}: 6000 lines delivered in {took:?}, flush up to {stretched}s, rate limit up to {limited}/s");
    }
}
