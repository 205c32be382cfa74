//! The fault matrix's hostile orderings: connection resets, answers that come back in
//! another order than their calls went out (latency jitter across calls in flight),
//! and calls Firehose accepted whose answer the client never read (answered after
//! `--call-timeout`: firetail gave up and resends, Firehose holds the records twice).
//!
//! Nothing is lost, and every copy Firehose received more than once is one firetail
//! counted in `firetail_duplicates_possible_total` and the drain report: a duplicate
//! is allowed, a silent one is not (`docs/design.md#guarantees`).

use std::collections::HashMap;
use std::time::Duration;

use super::{assert_same_lines, http_get, metric, set, LONG};
use crate::support::eventually;
use crate::support::fake_firehose::{CallError, FakeConfig, FakeFirehose, Fault, Faults};
use crate::support::firetail::{access_lines, append, aws_env, base_args, Firetail};

/// The attempt timeout: the shortest firetail accepts.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// The fake's own latency and its jitter, and the scripted delay of a lost answer.
const LATENCY: Duration = Duration::from_millis(20);
const JITTER: Duration = Duration::from_millis(1_300);
const LATE: Duration = Duration::from_millis(1_800);

/// Extra copies per line: a line received three times counts 2.
fn extra_copies(received: &[String]) -> u64 {
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for line in received {
        *seen.entry(line.as_str()).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

/// Jitter up to 1.3 s against a 1 s attempt timeout: about a quarter of the answers
/// come after firetail gave up on them, with their records accepted (the fake accepts
/// when it writes the answer, read or not); the rest come back out of order across
/// eight calls in flight. Resets (nothing accepted, the answer lost all the same),
/// whole-call errors and per-record failures on top; the script makes sure the first
/// calls meet each hostile ordering whatever the seed.
#[test]
fn resets_jitter_and_lost_answers_lose_nothing_and_every_duplicate_is_counted() {
    let fake = FakeFirehose::start(FakeConfig {
        seed: 0x10_57_a5_5e,
        script: vec![
            Fault::Delay(LATE),
            Fault::Reset,
            Fault::Pass,
            Fault::Delay(LATE),
            Fault::Reset,
        ],
        faults: Faults {
            latency: LATENCY,
            latency_jitter: JITTER,
            reset_rate: 0.05,
            call_error_rate: 0.05,
            call_errors: vec![CallError::ServiceUnavailable503, CallError::Throttling],
            record_slow_down_rate: 0.05,
            record_internal_failure_rate: 0.02,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("lost", 0..8_000);
    append(&log, &lines[..5_000]);
    let mut args = base_args(&log, &fake.stream_name());
    args = set(
        args,
        "--call-timeout",
        &format!("{}s", CALL_TIMEOUT.as_secs()),
    );
    args = set(args, "--max-in-flight", "8");
    // Fixed: eight calls in flight all along, whatever the timeouts tell the controller.
    args = set(args, "--adaptive", "false");
    args = set(args, "--drain-timeout", "90s");
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();

    assert!(
        fake.wait_for_lines(2_500, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    append(&log, &lines[5_000..]);
    // Every line acknowledged to firetail: nothing more will be sent, so the counter
    // is final, and every call firetail made is in its per-outcome counts.
    let shipped = |text: &str| metric(text, "firetail_lines_shipped_total");
    assert!(
        eventually(LONG, || shipped(&http_get(&addr, "/metrics").1)
            >= lines.len() as u64),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    let text = http_get(&addr, "/metrics").1;
    let counted_live = metric(&text, "firetail_duplicates_possible_total");
    let attempts: u64 = text
        .lines()
        .filter(|l| l.starts_with("firetail_put_record_batch_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    ft.term();
    assert_eq!(ft.exit_code(Duration::from_secs(120)), 0, "{}", ft.dump());
    // The calls firetail gave up on are answered (and their records accepted) when
    // their delay runs out: wait until the fake has decided as many calls as firetail
    // made. (A call that never reached the fake would leave this short; that could
    // only hide a duplicate, never invent one.)
    let decided = fake.wait_until(LONG, |c| c.calls >= attempts);

    let report = ft.report();
    let counted = report["duplicates_possible"].as_u64().unwrap();
    let received = fake.accepted_lines();
    let extra = extra_copies(&received);
    let c = fake.counters();
    eprintln!(
        "faults lost_answers: lines={} received={} extra_copies={extra} \
         duplicates_possible={counted} attempts={attempts} decided={decided} resets={} {c:?}",
        lines.len(),
        received.len(),
        c.calls_reset,
    );
    assert_eq!(report["undelivered"], 0, "{report}");
    assert_eq!(report["drain_end"], "drained", "{report}");
    assert_eq!(report["lines_shipped"], lines.len() as u64, "{report}");
    // Every hostile ordering was met: resets, and answers lost after Firehose took
    // the call (only those can put a line in the fake twice here).
    assert!(c.calls_reset >= 2, "{c:?}");
    assert!(c.records_failed > 0, "{c:?}");
    assert!(extra > 0, "no answer was lost after its call was accepted");
    // Lost 0, nothing foreign: every line arrived, the extra copies aside.
    let mut unique = received.clone();
    unique.sort();
    unique.dedup();
    assert_same_lines(unique, lines.clone(), &ft);
    // Every duplicate counted, by the metric and by the report.
    assert_eq!(
        counted_live, counted,
        "the metric and the report disagree: {report}"
    );
    assert!(
        extra <= counted,
        "{extra} extra copies received, but firetail counted {counted} possible duplicates"
    );
}
