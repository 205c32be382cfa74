//! Faults and bad input, end to end — the built binary against the
//! fault-injecting fake Firehose (docs/design.md#firehose-rules, #files-and-lines).
//!
//! Every test waits on conditions (lines accepted, a log line, a probe's answer), never
//! on the clock; the one rate assertion (ERROR lines are not spammed) compares counts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use crate::support::eventually;
use crate::support::fake_firehose::{
    CallError, FakeConfig, FakeFirehose, Fault, Faults, Outcome, MAX_BYTES_PER_CALL,
    MAX_RECORDS_PER_CALL, MAX_RECORD_BYTES,
};
use crate::support::firetail::{access_lines, append, aws_env, base_args, binary, Firetail};

const LONG: Duration = Duration::from_secs(60);

mod lost_answers;

// ===== helpers ======================================================================

/// `args` with `flag` set to `value`, replacing the value `base_args` gave it (clap
/// refuses a flag given twice).
fn set(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let prefix = format!("{flag}=");
    args.retain(|a| !a.starts_with(&prefix));
    args.push(format!("{prefix}{value}"));
    args
}

/// A plain HTTP/1.0 GET on the metrics listener: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn readyz(addr: &str) -> u16 {
    http_get(addr, "/readyz").0
}

/// The value of one sample in the Prometheus text, 0 when absent.
fn metric(text: &str, series: &str) -> u64 {
    crate::support::firetail::sample(text, series).map_or(0, |v| v as u64)
}

fn message(v: &serde_json::Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

/// The ERROR log lines whose message contains `text`.
fn errors_with(ft: &Firetail, text: &str) -> Vec<serde_json::Value> {
    ft.logs()
        .into_iter()
        .filter(|v| v["level"] == "ERROR" && message(v).contains(text))
        .collect()
}

/// Waits for the first ERROR whose message contains `text`.
fn wait_error(ft: &Firetail, text: &str) -> serde_json::Value {
    ft.wait_log(LONG, |v| v["level"] == "ERROR" && message(v).contains(text))
        .unwrap_or_else(|| panic!("no ERROR with {text:?}; logs:\n{}", ft.dump()))
}

/// The dead-letter file's entries (none when it does not exist).
fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a dead-letter entry is JSON"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn default_dead_letter(log: &Path) -> PathBuf {
    log.with_file_name(".firetail-access.log.dead.jsonl")
}

/// Byte offset of `lines[i]` in a file holding `lines`, each with its `\n`.
fn offset_of<T: AsRef<[u8]>>(lines: &[T], i: usize) -> u64 {
    lines[..i].iter().map(|l| l.as_ref().len() as u64 + 1).sum()
}

/// Writes raw lines (each gets its `\n`).
fn write_raw(path: &Path, lines: &[Vec<u8>]) {
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l);
        buf.push(b'\n');
    }
    std::fs::write(path, buf).unwrap();
}

/// A valid JSON line of exactly `len` bytes (without its `\n`), unique by `tag`/`i`.
fn padded_line(tag: &str, i: usize, len: usize) -> String {
    let head = format!(r#"{{"seq":{i},"request_id":"{tag}-{i:08}","blob":""#);
    let tail = r#""}"#;
    let pad = len - head.len() - tail.len();
    let line = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(line.len(), len);
    line
}

/// Sorted, with every byte outside printable ASCII escaped (readable on a failure).
fn sorted_bytes(v: Vec<Vec<u8>>) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|l| l.escape_ascii().to_string()).collect();
    v.sort();
    v
}

/// Compares big line sets without printing megabytes on a failure.
fn assert_same_lines(got: Vec<String>, want: Vec<String>, ft: &Firetail) {
    let (mut got, mut want) = (got, want);
    got.sort();
    want.sort();
    if got != want {
        let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(5).collect();
        let cut = |v: Vec<&String>| -> Vec<String> {
            v.into_iter()
                .map(|l| l.chars().take(120).collect())
                .collect()
        };
        panic!(
            "accepted {} lines, expected {}; missing (first 5): {:?}; unexpected (first 5): {:?}; logs:\n{}",
            got.len(),
            want.len(),
            cut(missing),
            cut(extra),
            ft.dump()
        );
    }
}

// ===== 1. the fault matrix ==========================================================

#[test]
fn a_fault_matrix_loses_nothing_and_resends_no_accepted_entry() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            // 20 % of the records of answered calls fail (half "Slow down.", half
            // InternalFailure).
            record_slow_down_rate: 0.10,
            record_internal_failure_rate: 0.10,
            // 20 % of calls fail whole, picked uniformly: 503 unavailable twice (10 %),
            // ThrottlingException (5 %), HTTP 500 unavailable (5 %).
            call_error_rate: 0.20,
            call_errors: vec![
                CallError::ServiceUnavailable503,
                CallError::ServiceUnavailable503,
                CallError::Throttling,
                CallError::ServiceUnavailable500,
            ],
            // 1 % of calls hang three times longer than the attempt timeout.
            hang_rate: 0.01,
            hang_for: Duration::from_secs(3),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("matrix", 0..50_000);
    append(&log, &lines[..40_000]);
    let mut args = base_args(&log, &fake.stream_name());
    args = set(args, "--call-timeout", "1s");
    args = set(args, "--max-in-flight", "8");
    // Generous: a normal run drains in seconds, but the machine may be shared.
    args = set(args, "--drain-timeout", "90s");
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();

    // Mid-run: the last lines are written and SIGTERM arrives while faults go on.
    assert!(
        fake.wait_for_lines(20_000, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    let mid_run = http_get(&addr, "/metrics").1;
    append(&log, &lines[40_000..]);
    ft.term();
    assert_eq!(ft.exit_code(Duration::from_secs(120)), 0, "{}", ft.dump());

    let c = fake.counters();
    // Every class of fault was met.
    assert!(c.records_failed > 0, "{c:?}");
    assert!(c.calls_hung > 0, "{c:?}");
    for code in ["ServiceUnavailableException", "ThrottlingException"] {
        assert!(
            c.errors_by_code.get(code).copied().unwrap_or(0) > 0,
            "{c:?}"
        );
    }
    assert!(
        fake.calls()
            .iter()
            .any(|call| matches!(call.outcome, Outcome::Error { status: 500, .. })),
        "no HTTP 500 was injected"
    );
    // No call broke a limit.
    assert_eq!(c.errors_by_code.get("InvalidArgumentException"), None);
    // Hangs accept nothing and no latency is injected, so any duplicate would be an
    // entry that had a RecordId and was sent again.
    assert!(fake.duplicates().is_empty(), "an accepted entry was resent");
    assert_same_lines(fake.accepted_lines(), lines, &ft);

    // firetail classified what it met (partial failures, throttling, unavailability).
    assert!(
        metric(
            &mid_run,
            "firetail_put_record_batch_calls_total{outcome=\"partial\"}"
        ) > 0,
        "{mid_run}"
    );
    assert!(
        metric(
            &mid_run,
            "firetail_put_record_batch_calls_total{outcome=\"unavailable\"}"
        ) > 0,
        "{mid_run}"
    );
    assert!(
        metric(&mid_run, "firetail_throttled_total") > 0,
        "{mid_run}"
    );
    assert!(
        metric(&mid_run, "firetail_records_retried_total") > 0,
        "{mid_run}"
    );

    let report = ft.report();
    assert_eq!(report["lines_shipped"], 50_000);
    assert_eq!(report["undelivered"], 0);
    assert_eq!(report["drain_end"], "drained");
}

// ===== 2. limits ====================================================================

#[test]
fn no_call_breaks_a_limit_and_the_oversize_line_is_dead_lettered() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");

    // Thousands of small lines, forty ~300 KB lines among them, then a line whose
    // record (with its `\n`) is exactly 1,024,000 bytes and one a byte over.
    let mut lines = Vec::new();
    let mut seq = 0..;
    let mut small = |n: usize, lines: &mut Vec<String>| {
        for _ in 0..n {
            let i = seq.next().unwrap();
            lines.extend(access_lines("limits", i..i + 1));
        }
    };
    for k in 0..40 {
        small(100, &mut lines);
        lines.push(padded_line("big", k, 290_000 + k * 1_000));
    }
    small(200, &mut lines);
    let just_under = padded_line("edge", 1, MAX_RECORD_BYTES - 1);
    lines.push(just_under.clone());
    small(200, &mut lines);
    let over_at = lines.len();
    lines.push(padded_line("edge", 2, MAX_RECORD_BYTES));
    small(200, &mut lines);
    // Over 1 MiB: only its first KEEP_OVERSIZE_BYTES (1 MiB) are kept in the dead-letter entry.
    let huge_at = lines.len();
    lines.push(padded_line("huge", 3, 5_000_000));
    small(200, &mut lines);
    let over_offset = offset_of(&lines, over_at);
    append(&log, &lines);
    let expected: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != over_at && i != huge_at)
        .map(|(_, l)| l.clone())
        .collect();

    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    assert!(
        fake.wait_for_lines(expected.len() as u64, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    let c = fake.counters();
    assert_eq!(c.calls_error, 0, "a call was refused: {c:?}");
    assert_eq!(c.errors_by_code.get("InvalidArgumentException"), None);
    for call in fake.calls() {
        assert!(call.records <= MAX_RECORDS_PER_CALL, "{call:?}");
        assert!(call.bytes <= MAX_BYTES_PER_CALL, "{call:?}");
    }
    assert!(
        fake.accepted().iter().any(|r| r.len() == MAX_RECORD_BYTES),
        "the record of exactly 1,024,000 bytes was not shipped"
    );
    assert!(fake.duplicates().is_empty());
    assert_same_lines(fake.accepted_lines(), expected.clone(), &ft);

    let dead = dead_letters(&default_dead_letter(&log));
    assert_eq!(dead.len(), 2, "{} dead letters", dead.len());
    let entry = &dead[0];
    assert_eq!(entry["reason"], "oversize");
    assert_eq!(entry["offset"], over_offset);
    assert_eq!(entry["size"], MAX_RECORD_BYTES as u64 + 1);
    assert_eq!(entry["file"], log.display().to_string());
    assert!(entry["line"].as_str() == Some(lines[over_at].as_str()));
    assert!(entry.get("line_cut").is_none());
    assert!(entry["time"].is_string());
    let huge = &dead[1];
    assert_eq!(huge["reason"], "oversize");
    assert_eq!(huge["offset"], offset_of(&lines, huge_at));
    assert_eq!(huge["size"], 5_000_001);
    assert_eq!(huge["line_cut"], true);
    assert!(huge["line"].as_str() == Some(&lines[huge_at][..firetail::tail::KEEP_OVERSIZE_BYTES]));
    // Logged with its offset and size.
    let logged = ft
        .wait_log(Duration::from_secs(1), |v| {
            message(v).starts_with("Lines written to the dead-letter file")
        })
        .expect("the dead letter is logged");
    assert_eq!(logged["offset"], over_offset);
    assert_eq!(logged["size"], MAX_RECORD_BYTES as u64 + 1);
    assert_eq!(logged["reason"], "oversize");

    let report = ft.report();
    assert_eq!(report["dead_lettered_oversize"], 2);
    assert_eq!(report["lines_shipped"], expected.len());
    assert_eq!(report["undelivered"], 0);
}

// ===== 3. bisection =================================================================

#[test]
fn a_rejected_record_is_bisected_out_and_dead_lettered() {
    let marker = "POISON-c0ffee";
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            reject_marker: Some(marker.as_bytes().to_vec()),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut lines = access_lines("bisect", 0..2000);
    let bad = 1234;
    lines[bad] = format!(r#"{{"seq":{bad},"request_id":"{marker}","status":200}}"#);
    append(&log, &lines);
    let mut good = lines.clone();
    good.remove(bad);

    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    assert!(
        fake.wait_for_lines(good.len() as u64, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    assert!(fake.duplicates().is_empty(), "an accepted entry was resent");
    assert_same_lines(fake.accepted_lines(), good, &ft);
    // Halving a call of at most 500 records reaches the one bad record in at most
    // 10 rejected calls (500, 250, 125, 63, 32, 16, 8, 4, 2, 1); one by one would take
    // hundreds.
    let rejected = fake
        .counters()
        .errors_by_code
        .get("InvalidArgumentException")
        .copied()
        .unwrap_or(0);
    assert!((1..=10).contains(&rejected), "{rejected} rejected calls");

    let logged = errors_with(&ft, "Firehose rejected a record on its own");
    assert_eq!(logged.len(), 1, "{}", ft.dump());
    assert_eq!(logged[0]["offset"], offset_of(&lines, bad));
    let dead = dead_letters(&default_dead_letter(&log));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "rejected");
    assert_eq!(dead[0]["offset"], offset_of(&lines, bad));
    assert_eq!(dead[0]["line"].as_str(), Some(lines[bad].as_str()));
    let report = ft.report();
    assert_eq!(report["dead_lettered_rejected"], 1);
    assert_eq!(report["lines_shipped"], 1999);
    assert_eq!(report["undelivered"], 0);
}

// ===== 4. stream missing ============================================================

#[test]
fn a_missing_stream_is_reported_not_ready_and_recovers_when_created() {
    let fake = FakeFirehose::start(FakeConfig {
        stream_missing: true,
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("missing", 0..2000);
    append(&log, &lines);
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let addr = ft.metrics_addr();

    let what = "Firehose refuses delivery";
    let err = wait_error(&ft, what);
    let text = message(&err);
    assert!(
        text.contains("does not exist") && text.contains("--stream") && text.contains("AWS_REGION"),
        "{err}"
    );
    assert_eq!(err["stream"], fake.stream_name());
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("configuration error"), "{body}");

    // Keep the outage until the ERROR was repeated once: it is repeated, but far less
    // often than the calls it is about.
    assert!(
        eventually(LONG, || errors_with(&ft, what).len() >= 2),
        "the ERROR was never repeated; logs:\n{}",
        ft.dump()
    );
    let calls = fake.counters().calls;
    let logged = errors_with(&ft, what).len() as u64;
    assert!(
        logged * 5 <= calls,
        "{logged} ERROR lines for {calls} refused calls"
    );
    assert_eq!(fake.lines_accepted(), 0);
    assert_eq!(readyz(&addr), 503);

    // The stream is created: delivery resumes by itself.
    fake.set_stream_missing(false);
    assert!(
        fake.wait_for_lines(2000, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    assert!(
        eventually(LONG, || readyz(&addr) == 200),
        "/readyz stayed 503 after recovery"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert!(fake.duplicates().is_empty());
    assert_same_lines(fake.accepted_lines(), lines, &ft);
}

// ===== 5. access denied =============================================================

#[test]
fn access_denied_names_the_iam_permission_and_recovers_when_granted() {
    // Every call is denied until the test clears the script ("the policy is fixed").
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![Fault::Error(CallError::AccessDenied); 10_000],
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("denied", 0..1000);
    append(&log, &lines);
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let addr = ft.metrics_addr();

    let err = wait_error(&ft, "Firehose refuses delivery");
    assert!(
        message(&err).contains("firehose:PutRecordBatch"),
        "the ERROR does not name the permission: {err}"
    );
    assert_eq!(readyz(&addr), 503);
    assert_eq!(fake.lines_accepted(), 0);

    fake.clear_script();
    assert!(
        fake.wait_for_lines(1000, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    assert!(eventually(LONG, || readyz(&addr) == 200));
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert!(fake.counters().errors_by_code["AccessDeniedException"] > 0);
    assert!(fake.duplicates().is_empty());
    assert_same_lines(fake.accepted_lines(), lines, &ft);
}

// ===== 6. a hung call ===============================================================

#[test]
fn a_hung_call_is_cut_at_the_attempt_timeout_and_retried() {
    // The first call hangs for a minute; the attempt timeout is one second.
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![Fault::Hang(Duration::from_secs(60))],
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("hang", 0..1000);
    append(&log, &lines);
    let args = set(base_args(&log, &fake.stream_name()), "--call-timeout", "1s");
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();

    assert!(
        fake.wait_for_lines(1000, Duration::from_secs(40)),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    // Everything arrived well before the hang would have ended (40 s < 60 s): the
    // hung call's records were resent after firetail cut it.
    assert_eq!(fake.counters().calls_hung, 1);
    let metrics = http_get(&addr, "/metrics").1;
    assert!(
        metric(
            &metrics,
            "firetail_put_record_batch_calls_total{outcome=\"timeout\"}"
        ) >= 1,
        "{metrics}"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    assert!(fake.duplicates().is_empty());
    assert_same_lines(fake.accepted_lines(), lines, &ft);
    // The cut call may have been accepted by a real Firehose: its records are counted
    // as possible duplicates.
    let hung_records = fake
        .calls()
        .iter()
        .find(|call| call.outcome == Outcome::Hung)
        .map(|call| call.records as u64)
        .unwrap();
    let report = ft.report();
    assert!(
        report["duplicates_possible"].as_u64().unwrap() >= hung_records,
        "{report}"
    );
    assert_eq!(report["undelivered"], 0);
}

// ===== 7. bad lines =================================================================

/// The bad-lines file: (all lines in file order, valid JSON lines, invalid lines),
/// without their `\n`.
struct BadLines {
    all: Vec<Vec<u8>>,
    valid: Vec<Vec<u8>>,
    invalid: Vec<Vec<u8>>,
}

const HEADER: &[u8] = b"# Logfile created on 2026-11-26 10:00:00 +0000 by logger.rb/v1.6.0";
const EMPTY_LINES: usize = 3;

fn bad_lines() -> BadLines {
    let valid: Vec<Vec<u8>> = access_lines("bad", 0..60)
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let invalid: Vec<Vec<u8>> = vec![
        br#"{"seq":9001,"path":"/broken"#.to_vec(),
        b"not json at all 9002".to_vec(),
        b"{\"seq\":9003,\"name\":\"caf\xe9\"}".to_vec(),
        b"\xff\xfe\xfd raw bytes 9004".to_vec(),
        b"{\"seq\":9005}\x00\x00".to_vec(),
        b"\x00\x00\x00 9006".to_vec(),
        b"{\"seq\":9007,\"s\":\"a\x00b\"}".to_vec(),
    ];
    let mut all = vec![HEADER.to_vec()];
    let mut v = valid.iter();
    let mut bad = invalid.iter();
    let empties: [&[u8]; EMPTY_LINES] = [b"", b"   ", b"\t"];
    let mut empty = empties.iter();
    for _ in 0..10 {
        all.extend(v.by_ref().take(6).cloned());
        if let Some(b) = bad.next() {
            all.push(b.clone());
        }
        if let Some(e) = empty.next() {
            all.push(e.to_vec());
        }
    }
    assert!(v.next().is_none() && bad.next().is_none());
    BadLines {
        all,
        valid,
        invalid,
    }
}

fn with_newline(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|l| {
            let mut r = l.clone();
            r.push(b'\n');
            r
        })
        .collect()
}

#[test]
fn bad_lines_are_shipped_as_they_are_by_default() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let input = bad_lines();
    write_raw(&log, &input.all);
    let shipped = input.valid.len() + input.invalid.len();

    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let addr = ft.metrics_addr();
    assert!(
        fake.wait_for_lines(shipped as u64, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    let metrics = http_get(&addr, "/metrics").1;
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    // Exactly the bytes of the file, invalid UTF-8 and NUL bytes included.
    let mut expected = with_newline(&input.valid);
    expected.extend(with_newline(&input.invalid));
    assert_eq!(sorted_bytes(fake.accepted()), sorted_bytes(expected));
    assert_eq!(
        metric(&metrics, "firetail_invalid_json_lines_total"),
        input.invalid.len() as u64
    );
    assert_eq!(
        metric(&metrics, "firetail_lines_skipped_total{reason=\"header\"}"),
        1
    );
    let report = ft.report();
    assert_eq!(report["lines_read"], input.all.len());
    assert_eq!(report["lines_shipped"], shipped);
    assert_eq!(report["skipped_header"], 1);
    assert_eq!(report["skipped_empty"], EMPTY_LINES);
    assert_eq!(report["dead_lettered_invalid_json"], 0);
    assert_eq!(report["undelivered"], 0);
    assert!(dead_letters(&default_dead_letter(&log)).is_empty());
}

#[test]
fn bad_lines_go_to_the_dead_letter_file_with_invalid_json_dead_letter() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let input = bad_lines();
    write_raw(&log, &input.all);

    let args = set(
        base_args(&log, &fake.stream_name()),
        "--invalid-json",
        "dead-letter",
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(
        fake.wait_for_lines(input.valid.len() as u64, LONG),
        "{:?}\n{}",
        fake.counters(),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    assert_eq!(
        sorted_bytes(fake.accepted()),
        sorted_bytes(with_newline(&input.valid))
    );
    let dead = dead_letters(&default_dead_letter(&log));
    assert_eq!(dead.len(), input.invalid.len(), "{dead:?}");
    for bad in &input.invalid {
        let at = input.all.iter().position(|l| l == bad).unwrap();
        let offset = offset_of(&input.all, at);
        let entry = dead
            .iter()
            .find(|e| e["offset"] == offset)
            .unwrap_or_else(|| panic!("no dead letter at offset {offset}: {dead:?}"));
        assert_eq!(entry["reason"], "invalid_json", "{entry}");
        assert_eq!(entry["size"], bad.len() as u64 + 1, "{entry}");
        let line = entry["line"].as_str().unwrap();
        let got = match std::str::from_utf8(bad) {
            Ok(_) => {
                assert!(entry.get("line_base64").is_none(), "{entry}");
                line.as_bytes().to_vec()
            }
            Err(_) => {
                assert_eq!(entry["line_base64"], true, "{entry}");
                base64::engine::general_purpose::STANDARD
                    .decode(line)
                    .unwrap()
            }
        };
        assert_eq!(&got, bad, "{entry}");
    }
    let report = ft.report();
    assert_eq!(report["dead_lettered_invalid_json"], input.invalid.len());
    assert_eq!(report["lines_shipped"], input.valid.len());
    assert_eq!(report["skipped_header"], 1);
    assert_eq!(report["skipped_empty"], EMPTY_LINES);
    assert_eq!(report["undelivered"], 0);
}

// ===== 8. bad configuration =========================================================

#[test]
fn bad_configuration_exits_2_naming_the_flag_before_doing_anything() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("config", 0..10));
    let regular = dir.path().join("regular-file");
    std::fs::write(&regular, b"not a directory").unwrap();
    let missing = dir.path().join("no-such-dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let base = base_args(&log, &fake.stream_name());
    let p = |p: PathBuf| p.display().to_string();

    // (arguments, extra environment, the flag stderr must name)
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            [base.clone(), vec!["--no-such-flag".into()]].concat(),
            vec![],
            "--no-such-flag",
        ),
        (
            set(base.clone(), "--flush-interval", "soon"),
            vec![],
            "--flush-interval",
        ),
        (
            base.iter()
                .filter(|a| !a.starts_with("--flush-interval="))
                .cloned()
                .collect(),
            vec![("FIRETAIL_FLUSH_INTERVAL", "soon")],
            "invalid value for FIRETAIL_FLUSH_INTERVAL",
        ),
        (
            base.iter()
                .filter(|a| !a.starts_with("--stream="))
                .cloned()
                .chain(["--stream".to_string(), String::new()])
                .collect(),
            vec![],
            "--stream",
        ),
        (
            set(base.clone(), "--path", &p(dir.path().to_path_buf())),
            vec![],
            "--path",
        ),
        (
            set(base.clone(), "--checkpoint", &p(missing.join("cp.json"))),
            vec![],
            "--checkpoint",
        ),
        (
            set(base.clone(), "--checkpoint", &p(regular.join("cp.json"))),
            vec![],
            "--checkpoint",
        ),
        (
            set(base.clone(), "--dead-letter", &p(missing.join("dl.jsonl"))),
            vec![],
            "--dead-letter",
        ),
        (
            set(base.clone(), "--dead-letter", &p(regular.join("dl.jsonl"))),
            vec![],
            "--dead-letter",
        ),
        (
            set(base.clone(), "--metrics-addr", &taken_addr),
            vec![],
            "--metrics-addr",
        ),
    ];
    for (args, extra_env, flag) in cases {
        let out = assert_cmd::Command::new(binary())
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(aws_env(&fake.endpoint()))
            .envs(extra_env.iter().copied())
            .timeout(Duration::from_secs(30))
            .output()
            .expect("run firetail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag}: {args:?}\nstderr: {stderr}"
        );
        assert!(
            stderr.contains(flag),
            "{flag}: stderr does not name the flag: {stderr}"
        );
        assert!(
            !stderr.contains("firetail started."),
            "{flag}: it started: {stderr}"
        );
    }
    // Nothing was done: no call, no checkpoint, no dead-letter file.
    assert_eq!(fake.counters().calls, 0);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["access.log", "regular-file"]);
    drop(taken);
}

// ===== 9. no credentials, no region =================================================

/// Runs firetail against the fake with the test environment minus the variables in
/// `unset` (and no shared config or credentials files): expects an ERROR containing
/// every one of `hints`, /readyz 503, and on SIGTERM with a short drain timeout, exit 1
/// with every line reported undelivered.
fn undeliverable_without(unset: &[&str], hints: &[&str]) {
    let fake = FakeFirehose::start(FakeConfig::default());
    let mut env: Vec<(String, String)> = aws_env(&fake.endpoint())
        .into_iter()
        .filter(|(k, _)| !unset.contains(&k.as_str()))
        .collect();
    env.push(("AWS_CONFIG_FILE".into(), "/dev/null".into()));
    env.push(("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("unconfigured", 0..300);
    append(&log, &lines);
    let args = set(
        base_args(&log, &fake.stream_name()),
        "--drain-timeout",
        "2s",
    );
    let mut ft = Firetail::start(&args, &env);
    let addr = ft.metrics_addr();

    let err = wait_error(&ft, "Firehose refuses delivery");
    for hint in hints {
        assert!(message(&err).contains(hint), "{hint:?} not in {err}");
    }
    assert_eq!(readyz(&addr), 503);

    ft.term();
    assert_eq!(ft.exit_code(LONG), 1, "{}", ft.dump());
    let report = ft.report();
    assert_eq!(report["undelivered"], 300, "{report}");
    assert_eq!(report["drain_end"], "deadline", "{report}");
    let undelivered = errors_with(&ft, "Lines left undelivered");
    assert_eq!(undelivered.len(), 1, "{}", ft.dump());
    assert_eq!(undelivered[0]["undelivered"], 300);
    // Nothing unsigned or unaddressed reached the service.
    assert_eq!(fake.counters().calls, 0);
}

#[test]
fn missing_credentials_are_reported_and_nothing_is_lost() {
    undeliverable_without(
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        &["credentials", "IAM"],
    );
}

/// No region is a configuration error (exit 2, saying what to set) found before
/// anything starts; the SDK is never asked to sign without one. The full matrix of bad
/// values is in `operate_hardening.rs`.
#[test]
fn a_missing_region_is_exit_2_naming_what_to_set() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("no-region", 0..10));
    let out = assert_cmd::Command::new(binary())
        .args(base_args(&log, &fake.stream_name()))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(
            aws_env(&fake.endpoint())
                .into_iter()
                .filter(|(k, _)| k != "AWS_REGION"),
        )
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .timeout(Duration::from_secs(30))
        .output()
        .expect("run firetail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no AWS region") && stderr.contains("AWS_REGION"),
        "{stderr}"
    );
    assert_eq!(fake.counters().calls, 0);
    assert!(!default_dead_letter(&log).exists());
}
