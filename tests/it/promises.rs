//! README promises that had no test of their own: each test drives the built binary
//! against the fault-injecting fake Firehose (or a loopback peer that never answers)
//! and asserts what a user sees — lines delivered, exit code, log line, metric — as
//! the README states it. Time appears only as bounds (an attempt ended well before
//! the call timeout), never as a sleep that hopes something happened.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Fault, Faults};
use crate::support::firetail::{
    access_lines, append, aws_env, base_args, binary, counter, sample, scrape, set, Firetail,
};
use crate::support::sorted;

const LONG: Duration = Duration::from_secs(60);

fn calls(outcome: &str) -> String {
    format!("firetail_put_record_batch_calls_total{{outcome=\"{outcome}\"}}")
}

/// The README's table: every outcome of `firetail_put_record_batch_calls_total`.
const OUTCOMES: [&str; 11] = [
    "ok",
    "partial",
    "throttled",
    "unavailable",
    "server_error",
    "timeout",
    "network",
    "bad_response",
    "invalid",
    "too_large",
    "config_error",
];

/// "Every labelled counter exists at 0 from start, one series per label value that can
/// occur": scraped before the log file exists, so before anything can ship — in both
/// formats a scraper may ask for.
#[test]
fn every_labelled_counter_exists_at_0_from_start() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let addr = ft.metrics_addr();
    let openmetrics = openmetrics_scrape(&addr);
    for text in [scrape(&addr), openmetrics] {
        let mut series: Vec<String> = OUTCOMES.iter().map(|o| calls(o)).collect();
        for reason in [
            "oversize",
            "invalid_json",
            "rejected",
            "too_large_for_endpoint",
        ] {
            series.push(format!(
                "firetail_dead_lettered_total{{reason=\"{reason}\"}}"
            ));
        }
        for reason in ["header", "empty"] {
            series.push(format!(
                "firetail_lines_skipped_total{{reason=\"{reason}\"}}"
            ));
        }
        for s in &series {
            assert_eq!(
                sample(&text, s),
                Some(0.0),
                "{s} is not 0 at start:\n{text}"
            );
        }
    }
    assert_eq!(
        fake.counters().calls,
        0,
        "something shipped before the scrape"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
}

fn openmetrics_scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("application/openmetrics-text"), "{head}");
    body.to_string()
}

/// "Connection errors and resets: the whole call is retried with the same backoff
/// (`outcome="network"`), for as long as it takes": the fake resets the connection of
/// a third of the calls; every reset is counted as `network`, every line arrives, and
/// the drain ends with exit 0.
#[test]
fn connection_resets_are_retried_and_counted_as_network() {
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![Fault::Reset, Fault::Reset],
        faults: Faults {
            reset_rate: 0.3,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("reset", 0..3000);
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    let addr = ft.metrics_addr();
    for chunk in lines.chunks(300) {
        append(&log, chunk);
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        fake.wait_for_lines(lines.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    let resets = fake.counters().calls_reset;
    assert!(resets >= 2, "only {resets} connections were reset");
    let text = scrape(&addr);
    assert_eq!(
        counter(&text, &calls("network")),
        resets as f64,
        "each reset is one network outcome:\n{text}"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(fake.accepted_lines()), sorted(lines));
    assert_eq!(ft.report()["undelivered"], 0);
}

/// "The region lookup never hangs start-up: when neither the environment nor the
/// profile names one, the SDK asks EC2 instance metadata, and after 5 s without an
/// answer firetail exits 2 with the same message." Two metadata services on loopback:
/// one that answers its headers at once and then a byte every 300 ms (the SDK's own
/// timeouts never fire, so firetail's 5 s must), and one that takes the connection and
/// never answers (the SDK gives up sooner; still exit 2, still the message).
#[test]
fn the_region_lookup_ends_after_5_s_with_exit_2() {
    let (took, stderr, code) = without_region(&trickling_metadata_service());
    assert_eq!(code, Some(2), "{stderr}");
    assert_names_the_region(&stderr);
    assert!(stderr.contains("took longer than 5s"), "{stderr}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(15),
        "exited after {took:?}; the promise is 5 s"
    );

    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (took, stderr, code) = without_region(&black_hole.local_addr().unwrap().to_string());
    black_hole.set_nonblocking(true).unwrap();
    assert!(
        black_hole.accept().is_ok(),
        "instance metadata was never asked"
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_names_the_region(&stderr);
    assert!(took < Duration::from_secs(15), "exited after {took:?}");
}

/// Runs firetail with no region anywhere and instance metadata at `imds` (host:port):
/// how long it ran, its stderr, its exit code.
fn without_region(imds: &str) -> (Duration, String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let started = Instant::now();
    let out = Command::new(binary())
        .args(base_args(&log, "s"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{imds}"),
        )
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("run firetail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (started.elapsed(), stderr, out.status.code())
}

fn assert_names_the_region(stderr: &str) {
    assert!(
        stderr.contains("firetail: no AWS region")
            && stderr
                .contains("set AWS_REGION (or AWS_DEFAULT_REGION, or `region` in the AWS profile)"),
        "{stderr}"
    );
}

/// A metadata service that answers every request with a 200's headers at once, then
/// its body one byte every 300 ms, for a minute: slow, never silent. Returns host:port;
/// the thread ends with the test process.
fn trickling_metadata_service() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let _ = conn.read(&mut [0u8; 65536]);
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 200\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n";
                let _ = conn.write_all(head.as_bytes());
                for _ in 0..200 {
                    if conn.write_all(b"a").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
        }
    });
    addr
}

/// "A second SIGTERM ends the drain at once the same way": with Firehose refusing
/// every call and a 60 s `--drain-timeout`, the second signal ends the drain long
/// before the deadline: exit 1, the drain report's `drain_end` is `second_signal`
/// with every line counted undelivered, the ERROR names them, and the checkpoint holds
/// acknowledged offsets only.
#[test]
fn a_second_sigterm_ends_the_drain_and_reports_the_undelivered_lines() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            call_error_rate: 1.0,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("second", 0..200));
    let args = set(
        base_args(&log, &fake.stream_name()),
        "--drain-timeout",
        "60s",
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(fake.wait_for_calls(2, LONG), "{}", ft.dump());
    ft.term();
    ft.wait_message(
        "Drain started: reading every file to its end, then shipping the rest.",
        LONG,
    );
    let second = Instant::now();
    ft.term();
    assert_eq!(ft.exit_code(LONG), 1, "{}", ft.dump());
    assert!(
        second.elapsed() < Duration::from_secs(30),
        "the second signal did not end the drain: exit {:?} after it",
        second.elapsed()
    );
    let report = ft.report();
    assert_eq!(report["drain_end"], "second_signal", "{report}");
    assert_eq!(report["lines_read"], 200, "{report}");
    assert_eq!(report["undelivered"], 200, "{report}");
    assert_eq!(report["checkpoint_offset"], 0, "{report}");
    let error = ft.wait_message(
        "Lines left undelivered; they stay unacknowledged in the checkpoint and a restart on it ships them.",
        Duration::from_secs(1),
    );
    assert_eq!(error["level"], "ERROR", "{error}");
    assert_eq!(error["undelivered"], 200, "{error}");
    assert_eq!(fake.lines_accepted(), 0);
}

/// "Each `PutRecordBatch` attempt is cut after `--call-timeout` (default 10 s;
/// connecting is cut after 3 s) and retried." The endpoint is a loopback listener
/// whose accept queue is full, so the kernel drops firetail's SYNs and the handshake
/// never completes. With `--call-timeout=5m`, each attempt still ends after ~3 s (the
/// latency histogram puts every attempt between 2.56 s and 5.12 s) and is retried:
/// two attempts end long before one call timeout could have passed.
#[test]
fn connecting_is_cut_after_3_s_and_retried() {
    let (endpoint, _held) = handshake_black_hole();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("connect", 0..10));
    let args = set(base_args(&log, "s"), "--call-timeout", "5m");
    // The drain cannot deliver either: end it soon.
    let args = set(args, "--drain-timeout", "1s");
    let started = Instant::now();
    let mut ft = Firetail::start(&args, &aws_env(&endpoint));
    let addr = ft.metrics_addr();
    let ended = |text: &str| {
        sample(text, "firetail_put_record_batch_duration_seconds_count").unwrap_or(0.0)
    };
    let mut text = String::new();
    let two_ended = eventually(Duration::from_secs(60), || {
        text = scrape(&addr);
        ended(&text) >= 2.0
    });
    let took = started.elapsed();
    assert!(two_ended, "no two attempts ended:\n{text}\n{}", ft.dump());
    assert!(
        took < Duration::from_secs(30),
        "two attempts took {took:?}; the call timeout is 5 min"
    );
    let attempts = ended(&text);
    let under = |le: &str| {
        counter(
            &text,
            &format!("firetail_put_record_batch_duration_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(
        under("2.56"),
        0.0,
        "an attempt ended before 2.56 s:\n{text}"
    );
    assert_eq!(
        under("5.12"),
        attempts,
        "an attempt outlasted 5.12 s:\n{text}"
    );
    eprintln!(
        "connect black hole: {attempts} attempts in {took:?}, timeout={} network={} duplicates_possible={}",
        counter(&text, &calls("timeout")),
        counter(&text, &calls("network")),
        counter(&text, "firetail_duplicates_possible_total")
    );
    let failed = counter(&text, &calls("timeout")) + counter(&text, &calls("network"));
    assert_eq!(failed, attempts, "{text}");
    ft.term();
    assert_eq!(ft.exit_code(LONG), 1, "{}", ft.dump());
    assert_eq!(ft.report()["undelivered"], 10);
}

/// A loopback listener (backlog 0) whose accept queue is filled by the test's own
/// connections, never accepted: the kernel drops every further SYN, so a client's
/// handshake never completes. Returns its endpoint and what must stay open.
fn handshake_black_hole() -> (String, (std::os::fd::OwnedFd, Vec<std::net::TcpStream>)) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns (wrapped in an
    // OwnedFd at once); the address struct is fully initialised.
    let (fd, port) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        let mut len = len;
        assert_eq!(
            libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len),
            0
        );
        (owned, u16::from_be(sa.sin_port))
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut held = Vec::new();
    // Connect until a handshake no longer completes: the queue is full.
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        held.push(s);
        assert!(held.len() < 64, "the accept queue never filled");
    }
    (format!("http://{addr}"), (fd, held))
}

const CHECKPOINT_WRITES: &str = "firetail_checkpoint_writes_total";

/// "It is written at most every 500 ms while acknowledgements advance … and at exit,
/// never once per batch." Lines arrive every 50 ms for 3 s with a 50 ms flush
/// interval, so a batch is acknowledged several times a second: between two scrapes
/// E seconds apart the checkpoint was written at most E / 0.5 + 2 times (one more for
/// a write under way at each end), at least twice, and far less often than calls
/// were answered.
#[test]
fn the_checkpoint_is_written_at_most_every_500_ms() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let args = set(
        base_args(&log, &fake.stream_name()),
        "--flush-interval",
        "50ms",
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();
    let lines = access_lines("cadence", 0..1500);
    append(&log, &lines[..25]);
    assert!(fake.wait_for_lines(25, LONG), "{}", ft.dump());
    let (t0, calls0) = (Instant::now(), fake.counters().calls);
    let writes0 = counter(&scrape(&addr), CHECKPOINT_WRITES);
    for chunk in lines[25..].chunks(25) {
        append(&log, chunk);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        fake.wait_for_lines(lines.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    let writes = counter(&scrape(&addr), CHECKPOINT_WRITES) - writes0;
    let (elapsed, answered) = (t0.elapsed(), fake.counters().calls - calls0);
    eprintln!("checkpoint cadence: {writes} writes, {answered} calls in {elapsed:?}");
    assert!(
        writes <= elapsed.as_secs_f64() / 0.5 + 2.0,
        "{writes} checkpoint writes in {elapsed:?}"
    );
    assert!(
        writes >= 2.0,
        "only {writes} writes while lines were acknowledged"
    );
    assert!(
        answered as f64 >= 3.0 * writes,
        "{writes} writes for {answered} calls: written per batch"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
}

/// "… sooner when half of the duplicate window is waiting on it." A 64 MiB backlog
/// with the smallest window (4 MiB): were the checkpoint written only every 500 ms,
/// reading could advance at most one window per write, and there would be at most
/// E / 0.5 + 2 writes while the backlog is worked off in E seconds; there are more.
/// The backlog is mostly whitespace-only lines, skipped by design yet counted in the
/// window and acknowledged without a call, so it moves at the reader's pace rather
/// than at the pace of a debug build signing 64 MiB; one line in 16 ships.
#[test]
fn the_checkpoint_is_written_sooner_once_half_the_duplicate_window_waits() {
    let fake = FakeFirehose::start(FakeConfig {
        store: false,
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let blank = " ".repeat(65_000);
    let lines: Vec<String> = (0..1024)
        .map(|i| {
            if i % 16 == 0 {
                format!(r#"{{"seq":{i}}}"#)
            } else {
                blank.clone()
            }
        })
        .collect();
    append(&log, &lines);
    let args = set(
        base_args(&log, &fake.stream_name()),
        "--max-unacked-bytes",
        "4MiB",
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();
    let t0 = Instant::now();
    let writes0 = counter(&scrape(&addr), CHECKPOINT_WRITES);
    assert!(
        eventually(LONG, || sample(&scrape(&addr), "firetail_lag_bytes")
            == Some(0.0)),
        "{}",
        ft.dump()
    );
    let elapsed = t0.elapsed();
    let writes = counter(&scrape(&addr), CHECKPOINT_WRITES) - writes0;
    eprintln!("checkpoint under pressure: {writes} writes in {elapsed:?}");
    assert!(
        writes > elapsed.as_secs_f64() / 0.5 + 2.0,
        "{writes} checkpoint writes in {elapsed:?}: no sooner than every 500 ms"
    );
    assert_eq!(fake.lines_accepted(), 64);
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(ft.report()["skipped_empty"], 1024 - 64);
}
