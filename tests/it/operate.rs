//! Issue 5: what operators see — `/metrics`, the probes, the logs and the drain report,
//! checked against what the fake Firehose actually received.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::fake_firehose::{CallError, FakeConfig, FakeFirehose, Faults};
use crate::support::firetail::{access_lines, append, aws_env, base_args, http_get, Firetail};

const LONG: Duration = Duration::from_secs(60);

/// Parses `/metrics` with the reference parser (the Python `prometheus_client`'s
/// OpenMetrics parser, from the test virtualenv) and returns every sample as
/// `name{label="v",...}` → value. Panics with the text if it does not parse.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let python = crate::support::moto::moto_server_path()
        .parent()
        .unwrap()
        .join("python");
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test virtualenv's python (scripts/python-env.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/metrics does not parse as OpenMetrics/Prometheus text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn scrape(ft: &Firetail) -> HashMap<String, f64> {
    let (status, body) = http_get(&ft.metrics_addr(), "/metrics");
    assert_eq!(status, 200);
    parse_metrics(&body)
}

fn value(m: &HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("no sample {name}; have {:?}", m.keys()))
}

fn billable(len: usize) -> u64 {
    (len as u64).div_ceil(5120).max(1) * 5120
}

#[test]
fn metrics_agree_exactly_with_what_arrived() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("metrics", 0..7000));
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    assert!(fake.wait_for_lines(7000, LONG), "{}", ft.dump());
    // The fake counts a record when it answers; firetail counts it when it reads the
    // answer: wait for that, then demand exact agreement.
    assert!(eventually(LONG, || value(
        &scrape(&ft),
        "firetail_lines_shipped_total"
    ) >= 7000.0));
    let m = scrape(&ft);
    let records = fake.accepted();
    assert_eq!(value(&m, "firetail_records_shipped_total"), 7000.0);
    assert_eq!(value(&m, "firetail_lines_shipped_total"), 7000.0);
    assert_eq!(value(&m, "firetail_lines_read_total"), 7000.0);
    let bytes: usize = records.iter().map(Vec::len).sum();
    let billed: u64 = records.iter().map(|r| billable(r.len())).sum();
    assert_eq!(value(&m, "firetail_bytes_shipped_total"), bytes as f64);
    assert_eq!(value(&m, "firetail_billable_bytes_total"), billed as f64);
    assert_eq!(
        value(&m, "firetail_put_record_batch_calls_total{outcome=\"ok\"}"),
        fake.counters().calls_accepted as f64
    );
    assert_eq!(value(&m, "firetail_in_flight_calls"), 0.0);
    assert!(value(&m, "firetail_put_record_batch_duration_seconds_count") >= 14.0);
    assert!(
        value(&m, "firetail_billable_ratio") > 10.0,
        "300-byte lines cost 5 KB each"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
}

#[test]
fn throttling_raises_the_counter_and_warnings_stay_rate_limited() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            record_slow_down_rate: 0.2,
            call_error_rate: 0.2,
            call_errors: vec![CallError::Throttling],
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("throttle", 0..10_000));
    let started = Instant::now();
    let mut args = base_args(&log, &fake.stream_name());
    args.push("--max-in-flight=8".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_lines(10_000, LONG), "{}", ft.dump());
    let m = scrape(&ft);
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let elapsed = started.elapsed().as_secs_f64();

    let throttled = value(&m, "firetail_throttled_total");
    let c = fake.counters();
    assert!(throttled > 0.0);
    assert!(
        throttled
            >= c.errors_by_code
                .get("ThrottlingException")
                .copied()
                .unwrap_or(0) as f64
    );
    let warns = ft.logs().iter().filter(|v| v["level"] == "WARN").count();
    let faults = c.records_failed + c.calls_error;
    // One WARN line a second at most for the whole run (plus the first at once), with
    // counts in it — however many faults there were.
    assert!(faults > 100, "the fault rates did not bite: {c:?}");
    assert!(
        (warns as f64) <= elapsed + 2.0,
        "{warns} WARN lines in {elapsed:.1}s for {faults} faults"
    );
}

#[test]
fn readyz_follows_the_lifecycle() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut args = base_args(&log, &fake.stream_name());
    // A long quiet period keeps the drain open long enough to look at it.
    args.retain(|a| !a.starts_with("--drain-quiet"));
    args.push("--drain-quiet=5s".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();
    // The file does not exist yet: watching the path is enough (in a pod the app
    // creates the file only after this probe passes).
    assert!(
        eventually(LONG, || http_get(&addr, "/readyz").0 == 200),
        "{}",
        ft.dump()
    );
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    append(&log, &access_lines("ready", 0..10));
    assert!(fake.wait_for_lines(10, LONG));
    ft.term();
    ft.wait_message(
        "Drain started: reading to the end of the file, then shipping the rest.",
        LONG,
    );
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    assert_eq!(
        http_get(&addr, "/healthz").0,
        200,
        "/healthz stays 200 while draining"
    );
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
}

/// During start-up (here: the AWS region being looked up from an instance metadata
/// service that never answers) the probes answer already: /healthz 200, /readyz 503.
#[test]
fn readyz_is_503_while_starting() {
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", black_hole.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = base_args(&log, "s");
    args.retain(|a| !a.starts_with("--metrics-addr"));
    args.push(format!("--metrics-addr=127.0.0.1:{port}"));
    let env = vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT".to_string(), imds),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
    ];
    let ft = Firetail::start(&args, &env);
    let addr = format!("127.0.0.1:{port}");
    // Wait for the region lookup to reach the black hole: firetail is then provably
    // still starting.
    let (_held, _) = black_hole.accept().unwrap();
    assert!(eventually(LONG, || std::net::TcpStream::connect(&addr).is_ok()));
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(ft
        .logs()
        .iter()
        .all(|v| v["message"] != "firetail started."));
}

#[test]
fn the_drain_report_matches_what_the_sink_received() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            record_slow_down_rate: 0.1,
            record_internal_failure_rate: 0.05,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut lines =
        vec!["# Logfile created on 2026-11-26 12:00:00 +0000 by logger.rb/v1.6.0".to_string()];
    lines.extend(access_lines("report", 0..3000));
    lines.push(String::new());
    lines.push("{not json".into());
    lines.push(format!("{{\"big\":\"{}\"}}", "x".repeat(1_100_000)));
    lines.extend(access_lines("report", 3000..4000));
    append(&log, &lines);
    let mut args = base_args(&log, &fake.stream_name());
    args.push("--invalid-json=dead-letter".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_lines(4000, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let r = ft.report();
    let dead = std::fs::read_to_string(dir.path().join(".firetail-access.log.dead.jsonl")).unwrap();
    assert_eq!(r["lines_read"], lines.len());
    assert_eq!(r["lines_shipped"], fake.lines_accepted());
    assert_eq!(r["records_shipped"], fake.records_accepted());
    assert_eq!(r["dead_lettered_oversize"], 1);
    assert_eq!(r["dead_lettered_invalid_json"], 1);
    assert_eq!(dead.lines().count(), 2);
    assert_eq!(r["skipped_header"], 1);
    assert_eq!(r["skipped_empty"], 1);
    assert_eq!(r["undelivered"], 0);
    assert_eq!(r["drain_end"], "drained");
    assert_eq!(
        r["checkpoint_offset"],
        std::fs::metadata(&log).unwrap().len()
    );
    assert!(r["drain_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn text_logs_are_plain_text() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut args = base_args(&log, &fake.stream_name());
    args.push("--log-format=text".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let started = ft.wait_log(LONG, |v| {
        v["raw"]
            .as_str()
            .is_some_and(|l| l.contains("firetail started."))
    });
    let line = started.expect("a text start-up line")["raw"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes off a terminal: {line:?}"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0);
}
