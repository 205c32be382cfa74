//! What operators see — `/metrics`, the probes, the logs and the drain report,
//! checked against what the fake Firehose actually received.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::fake_firehose::{CallError, FakeConfig, FakeFirehose, Faults};
use crate::support::firetail::{
    access_lines, append, aws_env, base_args, http_get, name_and_labels, Firetail,
};

const LONG: Duration = Duration::from_secs(60);

/// Parses `/metrics` with the reference parsers (the Python `prometheus_client`'s
/// OpenMetrics parser, or its text format 0.0.4 parser, from the test virtualenv) and
/// returns every sample as `name{label="v",...}` → value. Panics with the text if it
/// does not parse.
fn parse_metrics_as(text: &str, openmetrics: bool) -> HashMap<String, f64> {
    let python = crate::support::moto::moto_server_path()
        .parent()
        .unwrap()
        .join("python");
    let script = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
print(json.dumps(out))
"#;
    let format = if openmetrics { "openmetrics" } else { "text" };
    let mut child = Command::new(python)
        .args(["-c", script, format])
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
        "/metrics does not parse as {format}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn parse_metrics(text: &str) -> HashMap<String, f64> {
    parse_metrics_as(text, true)
}

/// GET `/metrics` with an Accept header: (Content-Type, body).
fn get_metrics(addr: &str, accept: Option<&str>) -> (String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap();
    (content_type, body.to_string())
}

/// What Prometheus sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn scrape(ft: &Firetail) -> HashMap<String, f64> {
    let (_, body) = get_metrics(&ft.metrics_addr(), Some(PROMETHEUS_ACCEPT));
    parse_metrics(&body)
}

/// The sum of the samples of `series` (a name and some of its labels) over the labels
/// it does not give (`source`, `stream`); panics when none matches.
fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    let (name, want) = name_and_labels(series);
    let matching: Vec<f64> = m
        .iter()
        .filter(|(key, _)| {
            let (n, labels) = name_and_labels(key);
            n == name && want.iter().all(|w| labels.contains(w))
        })
        .map(|(_, v)| *v)
        .collect();
    assert!(
        !matching.is_empty(),
        "no sample {series}; have {:?}",
        m.keys()
    );
    matching.iter().sum()
}

fn billable(len: usize) -> u64 {
    (len as u64).div_ceil(5120).max(1) * 5120
}

/// Prometheus gets OpenMetrics, anything else text format 0.0.4; both parse with the
/// reference parsers, hold the same samples, carry the build info, and have every
/// labelled counter at 0 before anything happened.
#[test]
fn metrics_are_negotiated_valid_and_start_at_zero() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let addr = ft.metrics_addr();
    let (om_type, om_body) = get_metrics(&addr, Some(PROMETHEUS_ACCEPT));
    assert!(
        om_type.starts_with("application/openmetrics-text"),
        "{om_type}"
    );
    let (text_type, text_body) = get_metrics(&addr, None);
    assert!(
        text_type.starts_with("text/plain; version=0.0.4"),
        "{text_type}"
    );
    let om = parse_metrics_as(&om_body, true);
    let text = parse_metrics_as(&text_body, false);
    let version = std::process::Command::new(crate::support::firetail::binary())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let commit = version
        .split("commit ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    for m in [&om, &text] {
        let info = format!(
            "firetail_build_info{{commit=\"{commit}\",version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(m, &info), 1.0);
        for outcome in [
            "ok",
            "partial",
            "throttled",
            "timeout",
            "network",
            "invalid",
            "config_error",
        ] {
            let series = format!("firetail_put_record_batch_calls_total{{outcome=\"{outcome}\"}}");
            assert_eq!(value(m, &series), 0.0, "{series}");
        }
        for reason in ["oversize", "invalid_json", "rejected"] {
            assert_eq!(
                value(
                    m,
                    &format!("firetail_dead_lettered_total{{reason=\"{reason}\"}}")
                ),
                0.0
            );
        }
        for reason in ["header", "empty"] {
            assert_eq!(
                value(
                    m,
                    &format!("firetail_lines_skipped_total{{reason=\"{reason}\"}}")
                ),
                0.0
            );
        }
    }
    let mut om_names: Vec<_> = om.keys().filter(|k| !k.ends_with("_created")).collect();
    let mut text_names: Vec<_> = text.keys().collect();
    om_names.sort();
    text_names.sort();
    assert_eq!(
        om_names, text_names,
        "the two formats hold different samples"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0);
}

/// `firetail --version` names the version, the commit it was built from (HEAD when
/// git is there, as in this checkout), and the build date.
#[test]
fn version_names_the_commit_and_build_date() {
    let out = std::process::Command::new(crate::support::firetail::binary())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let rest = version
        .trim()
        .strip_prefix(&format!("firetail {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{version}"));
    let (commit, date) = rest
        .strip_suffix(')')
        .unwrap()
        .split_once(", built ")
        .unwrap();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    match head {
        Some(head) => assert_eq!(commit, head, "{version}"),
        None => assert_eq!(commit, "unknown", "{version}"),
    }
    let d: Vec<&str> = date.split('-').collect();
    assert!(
        d.len() == 3 && d[0].len() == 4 && d.iter().all(|p| p.parse::<u32>().is_ok()),
        "{date}"
    );
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
        "Drain started: reading every file to its end, then shipping the rest.",
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

/// The termination message (Kubernetes' `terminationMessagePath`, shown by `kubectl
/// describe pod`) carries the drain's outcome, in all and per source: a clean drain
/// says exit 0, and a drain that ran out of time says exit 1 with the undelivered
/// count, matching the exit code.
#[test]
fn the_termination_message_tells_the_drain_outcome() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let message = dir.path().join("termination-log");
    append(&log, &access_lines("term", 0..200));
    let mut args = base_args(&log, &fake.stream_name());
    args.push(format!("--termination-message-path={}", message.display()));
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_lines(200, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let text = std::fs::read_to_string(&message).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "firetail exit 0: drain drained, 200 lines read, 200 shipped, 0 undelivered",
            "source default: 200 read, 200 shipped, 0 dead-lettered, 0 skipped, 0 undelivered"
        ]
    );
    let report: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(report["lines_shipped"], 200);

    // Firehose down for good: the drain deadline passes with every line undelivered.
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            call_error_rate: 1.0,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let message = dir.path().join("termination-log");
    append(&log, &access_lines("down", 0..50));
    let mut args = base_args(&log, &fake.stream_name());
    args.retain(|a| !a.starts_with("--drain-timeout"));
    args.push("--drain-timeout=2s".into());
    args.push(format!("--termination-message-path={}", message.display()));
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_calls(2, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 1, "{}", ft.dump());
    let text = std::fs::read_to_string(&message).unwrap();
    assert!(
        text.starts_with(
            "firetail exit 1: drain deadline, 50 lines read, 0 shipped, 50 undelivered"
        ),
        "{text}"
    );
}

/// RUST_LOG takes a level or `target=level` pairs: `warn` drops every INFO line, and
/// `warn,firetail=info,aws_smithy_runtime=debug` keeps firetail's INFO and the SDK's
/// DEBUG lines and nothing else below WARN. One that does not parse is a WARN naming
/// it, and logging stays at info.
#[test]
fn rust_log_sets_levels_per_target_and_a_bad_one_is_named() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let args = base_args(&log, &fake.stream_name());
    let run = |rust_log: &str, lines: std::ops::Range<usize>| {
        let mut env = aws_env(&fake.endpoint());
        env.push(("RUST_LOG".into(), rust_log.into()));
        let mut ft = Firetail::start(&args, &env);
        append(&log, &access_lines("rust-log", lines.clone()));
        assert!(
            fake.wait_for_lines(lines.end as u64, LONG),
            "{:?}",
            ft.logs()
        );
        ft.term();
        let code = ft.exit_code(LONG);
        assert_eq!(
            code,
            0,
            "{:?}",
            ft.logs().iter().rev().take(5).collect::<Vec<_>>()
        );
        ft.logs()
    };
    let below_warn = |logs: &[serde_json::Value]| -> Vec<(String, String)> {
        logs.iter()
            .filter(|v| v["level"] == "INFO" || v["level"] == "DEBUG")
            .map(|v| (v["level"].to_string(), v["target"].to_string()))
            .collect()
    };

    let logs = run("warn", 0..10);
    assert_eq!(below_warn(&logs), vec![], "{logs:?}");

    let logs = run("warn,firetail=info,aws_smithy_runtime=debug", 10..20);
    let kept = below_warn(&logs);
    assert!(
        kept.iter()
            .any(|(l, t)| l == "\"INFO\"" && t.starts_with("\"firetail")),
        "{kept:?}"
    );
    assert!(
        kept.iter()
            .any(|(l, t)| l == "\"DEBUG\"" && t.starts_with("\"aws_smithy_runtime")),
        "{kept:?}"
    );
    assert!(
        kept.iter()
            .all(|(l, t)| (l == "\"INFO\"" && t.starts_with("\"firetail"))
                || t.starts_with("\"aws_smithy_runtime")),
        "{kept:?}"
    );

    let logs = run("info,[span{x=1}]=debug", 20..30);
    assert!(
        logs.iter()
            .any(|v| v["level"] == "WARN" && v["rust_log"] == "info,[span{x=1}]=debug"),
        "{logs:?}"
    );
    assert!(logs.iter().any(|v| v["message"] == "firetail started."));
    assert!(logs.iter().all(|v| v["level"] != "DEBUG"), "still info");
}
