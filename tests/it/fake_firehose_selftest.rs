//! Self-tests of the fake Firehose, with the real aws-sdk-firehose client as the
//! caller: if the SDK parses an answer here, it parses it when firetail is the caller.
//! Retries are disabled so that each call meets exactly one answer.

use std::time::{Duration, Instant};

use aws_sdk_firehose::config::retry::RetryConfig;
use aws_sdk_firehose::config::timeout::TimeoutConfig;
use aws_sdk_firehose::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::operation::put_record_batch::{PutRecordBatchError, PutRecordBatchOutput};
use aws_sdk_firehose::operation::RequestId;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;

use crate::support::fake_firehose::{
    CallError, Counters, FakeConfig, FakeFirehose, Fault, Faults, Outcome, Quota, QuotaCounts,
    RawAnswer, RecordError, DEFAULT_STREAM, MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL,
    MAX_RECORD_BYTES,
};

type PutResult = Result<PutRecordBatchOutput, SdkError<PutRecordBatchError>>;

const WAIT: Duration = Duration::from_secs(10);

fn client(fake: &FakeFirehose, attempt_timeout: Option<Duration>) -> Client {
    let mut timeouts = TimeoutConfig::builder().operation_timeout(Duration::from_secs(30));
    if let Some(attempt) = attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(attempt);
    }
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDFAKEFIREHOSE",
            "fake-secret",
            None,
            None,
            "fake-firehose-selftest",
        ))
        .endpoint_url(fake.endpoint())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts.build())
        .build();
    Client::from_conf(config)
}

async fn put_to(client: &Client, stream: &str, data: &[Vec<u8>]) -> PutResult {
    let records = data
        .iter()
        .map(|d| {
            Record::builder()
                .data(Blob::new(d.clone()))
                .build()
                .unwrap()
        })
        .collect();
    client
        .put_record_batch()
        .delivery_stream_name(stream)
        .set_records(Some(records))
        .send()
        .await
}

async fn put(client: &Client, data: &[Vec<u8>]) -> PutResult {
    put_to(client, DEFAULT_STREAM, data).await
}

/// `n` unique JSON lines with their trailing `\n`, tagged so calls do not collide.
fn lines(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"tag\":\"{tag}\",\"i\":{i}}}\n").into_bytes())
        .collect()
}

/// The service error of a failed call, with its raw HTTP status; panics on any other
/// kind of failure, naming it.
fn service_error(result: PutResult) -> (PutRecordBatchError, u16) {
    match result {
        Ok(out) => panic!("expected a service error, the call succeeded: {out:?}"),
        Err(SdkError::ServiceError(e)) => {
            let status = e.raw().status().as_u16();
            (e.into_err(), status)
        }
        Err(other) => panic!("expected a service error, got {other:?}"),
    }
}

fn nothing_accepted(fake: &FakeFirehose) {
    assert!(fake.accepted().is_empty(), "records were recorded");
    assert_eq!(fake.counters().records_accepted, 0);
}

#[tokio::test]
async fn good_call_is_accepted_and_recorded() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let client = client(&fake, None);
    let data = lines("good", 3);

    let out = put(&client, &data).await.expect("call accepted");

    assert_eq!(out.failed_put_count(), 0);
    assert_eq!(out.encrypted(), Some(false));
    assert_eq!(out.request_responses().len(), 3);
    for entry in out.request_responses() {
        assert!(entry.record_id().is_some_and(|id| !id.is_empty()));
        assert_eq!(entry.error_code(), None);
    }
    assert_eq!(fake.accepted(), data);
    assert_eq!(
        fake.accepted_lines(),
        vec![
            r#"{"tag":"good","i":0}"#,
            r#"{"tag":"good","i":1}"#,
            r#"{"tag":"good","i":2}"#
        ]
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].stream, DEFAULT_STREAM);
    assert_eq!(calls[0].records, 3);
    assert_eq!(calls[0].bytes, data.iter().map(Vec::len).sum::<usize>());
    assert_eq!(calls[0].outcome, Outcome::Accepted);
    let c = fake.counters();
    assert_eq!(
        (
            c.calls,
            c.calls_accepted,
            c.records_accepted,
            c.lines_accepted
        ),
        (1, 1, 3, 3)
    );
    assert!(fake.duplicates().is_empty());

    // A resend of an accepted record is what `duplicates()` exists to catch.
    put(&client, &data[1..2]).await.expect("resend accepted");
    assert_eq!(fake.duplicates(), vec![data[1].clone()]);
    assert_eq!(fake.duplicate_lines(), vec![r#"{"tag":"good","i":1}"#]);
}

#[tokio::test]
async fn aggregated_records_count_line_by_line() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let client = client(&fake, None);
    let packed = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n".to_vec();
    let resent_line = b"{\"a\":2}\n".to_vec();

    put(&client, &[packed, resent_line])
        .await
        .expect("accepted");

    assert_eq!(fake.lines_accepted(), 4);
    assert_eq!(fake.accepted_lines().len(), 4);
    assert!(fake.duplicates().is_empty(), "no record was sent twice");
    assert_eq!(fake.duplicate_lines(), vec![r#"{"a":2}"#]);
}

/// The fake must work from a plain `#[test]`: its server has its own thread and
/// runtime, and `wait_for_lines` blocks on a condition variable.
#[test]
fn usable_from_a_plain_test_and_waits_on_a_condvar() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let endpoint_client = client(&fake, None);
    let data = lines("sync", 2);

    let sender = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(put(&endpoint_client, &data))
            .map(|out| out.failed_put_count())
            .map_err(|e| format!("{e:?}"))
    });

    assert!(fake.wait_for_lines(2, WAIT), "two lines accepted");
    assert_eq!(sender.join().unwrap().expect("call accepted"), 0);
    // Nothing else will arrive, so this wait must end unsatisfied.
    assert!(!fake.wait_for_lines(3, Duration::from_millis(50)));
}

#[tokio::test]
async fn scripted_per_record_failures_line_up_with_the_request() {
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![
            Fault::FailRecords(vec![1, 3], RecordError::SlowDown),
            Fault::FailAll(RecordError::InternalFailure),
        ],
        ..FakeConfig::default()
    });
    let client = client(&fake, None);
    let data = lines("partial", 5);

    let out = put(&client, &data).await.expect("a 200 answer");

    assert_eq!(out.failed_put_count(), 2);
    let entries = out.request_responses();
    assert_eq!(entries.len(), 5);
    for (i, entry) in entries.iter().enumerate() {
        if i == 1 || i == 3 {
            assert_eq!(entry.error_code(), Some("ServiceUnavailableException"));
            assert_eq!(entry.error_message(), Some("Slow down."));
            assert_eq!(entry.record_id(), None);
        } else {
            assert!(entry.record_id().is_some(), "entry {i} accepted");
            assert_eq!(entry.error_code(), None);
        }
    }
    assert_eq!(
        fake.accepted(),
        vec![data[0].clone(), data[2].clone(), data[4].clone()]
    );
    assert_eq!(
        fake.calls()[0].outcome,
        Outcome::PartialFailure { failed: vec![1, 3] }
    );

    let out = put(&client, &data[1..2]).await.expect("a 200 answer");
    assert_eq!(out.failed_put_count(), 1);
    assert_eq!(
        out.request_responses()[0].error_code(),
        Some("InternalFailure")
    );
    assert!(out.request_responses()[0].error_message().is_some());

    let c = fake.counters();
    assert_eq!(
        (c.calls_partial, c.records_failed, c.records_accepted),
        (2, 3, 3)
    );
}

#[tokio::test]
async fn rate_based_record_failures_are_reported_and_reproducible() {
    let faults = Faults {
        record_slow_down_rate: 0.3,
        record_internal_failure_rate: 0.2,
        ..Faults::default()
    };
    let start = || {
        FakeFirehose::start(FakeConfig {
            seed: 42,
            faults: faults.clone(),
            ..FakeConfig::default()
        })
    };
    let (fake_a, fake_b) = (start(), start());
    let data = lines("rate", 200);

    let mut patterns = Vec::new();
    for fake in [&fake_a, &fake_b] {
        let out = put(&client(fake, None), &data).await.expect("a 200 answer");
        let codes: Vec<Option<String>> = out
            .request_responses()
            .iter()
            .map(|e| e.error_code().map(str::to_owned))
            .collect();
        let failed = codes.iter().filter(|c| c.is_some()).count();
        assert_eq!(out.failed_put_count() as usize, failed);
        assert!(codes
            .iter()
            .any(|c| c.as_deref() == Some("ServiceUnavailableException")));
        assert!(codes
            .iter()
            .any(|c| c.as_deref() == Some("InternalFailure")));
        assert!(failed < data.len(), "some records accepted");
        // Exactly the entries with a RecordId were recorded, in request order.
        let expected: Vec<Vec<u8>> = data
            .iter()
            .zip(&codes)
            .filter(|(_, c)| c.is_none())
            .map(|(d, _)| d.clone())
            .collect();
        assert_eq!(fake.accepted(), expected);
        patterns.push(codes);
    }
    assert_eq!(patterns[0], patterns[1], "same seed, same faults");

    // A scripted answer comes before the rates.
    fake_a.push_script([Fault::Pass]);
    let out = put(&client(&fake_a, None), &lines("scripted", 200))
        .await
        .unwrap();
    assert_eq!(out.failed_put_count(), 0);

    // Faults switched off mid-run: everything passes.
    fake_a.set_faults(Faults::default());
    let out = put(&client(&fake_a, None), &lines("after", 50))
        .await
        .unwrap();
    assert_eq!(out.failed_put_count(), 0);
}

#[tokio::test]
async fn whole_call_errors_reach_the_sdk_with_their_code_and_status() {
    let cases = [
        (
            CallError::ServiceUnavailable503,
            "ServiceUnavailableException",
            503,
        ),
        (
            CallError::ServiceUnavailable500,
            "ServiceUnavailableException",
            500,
        ),
        (CallError::Throttling, "ThrottlingException", 400),
        (CallError::InternalFailure502, "InternalFailure", 502),
        (
            CallError::ResourceNotFound,
            "ResourceNotFoundException",
            400,
        ),
        (CallError::AccessDenied, "AccessDeniedException", 400),
        (CallError::InvalidArgument, "InvalidArgumentException", 400),
        (
            CallError::other(
                400,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ),
            "ExpiredTokenException",
            400,
        ),
    ];
    let fake = FakeFirehose::start(FakeConfig::default());
    fake.push_script(cases.iter().map(|(e, _, _)| Fault::Error(e.clone())));
    let client = client(&fake, None);

    for (i, (error, code, status)) in cases.iter().enumerate() {
        let (err, raw_status) = service_error(put(&client, &lines(code, 2)).await);
        assert_eq!(err.code(), Some(*code), "case {i}: {err:?}");
        assert_eq!(raw_status, *status, "case {i}: {code}");
        assert_eq!(error.code(), *code);
        assert!(
            err.message().is_some_and(|m| !m.is_empty()),
            "case {i}: message"
        );
        assert!(err.meta().request_id().is_some(), "case {i}: request id");
        // The codes Firehose models for PutRecordBatch come out as typed variants.
        match *code {
            "ServiceUnavailableException" => assert!(err.is_service_unavailable_exception()),
            "ResourceNotFoundException" => assert!(err.is_resource_not_found_exception()),
            "InvalidArgumentException" => assert!(err.is_invalid_argument_exception()),
            _ => {}
        }
    }
    nothing_accepted(&fake);
    let c = fake.counters();
    assert_eq!(c.calls_error, cases.len() as u64);
    assert_eq!(
        c.errors_by_code.get("ServiceUnavailableException"),
        Some(&2)
    );

    // By rate: every call meets one of the listed errors.
    fake.set_faults(Faults {
        call_error_rate: 1.0,
        call_errors: vec![CallError::Throttling],
        ..Faults::default()
    });
    let (err, status) = service_error(put(&client, &lines("rate", 1)).await);
    assert_eq!((err.code(), status), (Some("ThrottlingException"), 400));
    fake.set_faults(Faults::default());
    put(&client, &lines("ok", 1)).await.expect("faults off");
}

#[tokio::test]
async fn unknown_or_missing_stream_is_resource_not_found_until_created() {
    let fake = FakeFirehose::start(FakeConfig {
        stream_missing: true,
        ..FakeConfig::default()
    });
    let client = client(&fake, None);

    let (err, status) = service_error(put_to(&client, "no-such-stream", &lines("x", 1)).await);
    assert!(err.is_resource_not_found_exception());
    assert_eq!(status, 400);
    assert!(err.message().unwrap().contains("no-such-stream"));

    let (err, _) = service_error(put(&client, &lines("missing", 1)).await);
    assert!(
        err.is_resource_not_found_exception(),
        "stream not created yet"
    );

    fake.set_stream_missing(false);
    put(&client, &lines("created", 1))
        .await
        .expect("stream exists now");
    let (err, _) = service_error(put_to(&client, "no-such-stream", &lines("y", 1)).await);
    assert!(
        err.is_resource_not_found_exception(),
        "other names stay unknown"
    );
    assert_eq!(fake.accepted_lines(), vec![r#"{"tag":"created","i":0}"#]);
}

#[tokio::test]
async fn hang_longer_than_the_attempt_timeout_is_a_timeout_and_records_nothing() {
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![Fault::Hang(Duration::from_millis(1500))],
        ..FakeConfig::default()
    });
    let client = client(&fake, Some(Duration::from_millis(300)));

    match put(&client, &lines("hung", 3)).await {
        Err(SdkError::TimeoutError(_)) => {}
        other => panic!("expected a timeout error, got {other:?}"),
    }
    assert_eq!(fake.calls()[0].outcome, Outcome::Hung);
    assert_eq!(fake.calls()[0].records, 3);

    // Once the hang is over the connection is closed without an answer and the
    // records were never recorded.
    assert!(fake.wait_until(WAIT, |c: &Counters| c.hangs_finished == 1));
    nothing_accepted(&fake);

    let data = lines("after-hang", 2);
    put(&client, &data)
        .await
        .expect("the next call is answered");
    assert_eq!(fake.accepted(), data);
}

#[tokio::test]
async fn delay_beyond_the_timeout_still_accepts_the_records() {
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![Fault::Delay(Duration::from_millis(800))],
        ..FakeConfig::default()
    });
    let client = client(&fake, Some(Duration::from_millis(200)));
    let data = lines("late", 2);

    match put(&client, &data).await {
        Err(SdkError::TimeoutError(_)) => {}
        other => panic!("expected a timeout error, got {other:?}"),
    }
    // The client gave up, the service accepted anyway: the source of duplicates.
    assert!(fake.wait_for_lines(2, WAIT));
    assert_eq!(fake.accepted(), data);
}

#[tokio::test]
async fn latency_delays_every_answer_by_at_least_its_value() {
    let latency = Duration::from_millis(250);
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            latency,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let client = client(&fake, None);

    let started = Instant::now();
    put(&client, &lines("slow", 1)).await.expect("accepted");
    assert!(started.elapsed() >= latency);
}

#[tokio::test]
async fn connection_reset_is_a_dispatch_io_error_and_records_nothing() {
    let fake = FakeFirehose::start(FakeConfig {
        script: vec![Fault::Reset],
        ..FakeConfig::default()
    });
    let client = client(&fake, None);

    match put(&client, &lines("reset", 2)).await {
        Err(SdkError::DispatchFailure(e)) => assert!(e.is_io(), "an I/O error: {e:?}"),
        other => panic!("expected a dispatch failure, got {other:?}"),
    }
    assert_eq!(fake.calls()[0].outcome, Outcome::Reset);
    nothing_accepted(&fake);

    let data = lines("after-reset", 1);
    put(&client, &data)
        .await
        .expect("a new connection is answered");
    assert_eq!(fake.accepted(), data);
}

#[tokio::test]
async fn limits_are_enforced() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let client = client(&fake, None);

    // 501 records.
    let (err, status) = service_error(put(&client, &lines("many", MAX_RECORDS_PER_CALL + 1)).await);
    assert!(err.is_invalid_argument_exception());
    assert_eq!(status, 400);
    assert!(
        err.message().unwrap().contains("500 records"),
        "{:?}",
        err.message()
    );

    // A 1,024,001-byte record.
    let (err, status) = service_error(put(&client, &[vec![b'x'; MAX_RECORD_BYTES + 1]]).await);
    assert!(err.is_invalid_argument_exception());
    assert_eq!(status, 400);
    assert!(
        err.message().unwrap().contains("1024000 bytes"),
        "{:?}",
        err.message()
    );

    // 5 records of 1,000,000 bytes: each fits, the call does not.
    let big = vec![vec![b'y'; 1_000_000]; 5];
    let (err, status) = service_error(put(&client, &big).await);
    assert!(err.is_invalid_argument_exception());
    assert_eq!(status, 400);
    assert!(
        err.message().unwrap().contains("4194304 bytes"),
        "{:?}",
        err.message()
    );
    nothing_accepted(&fake);

    // Exactly at the limits: accepted.
    let out = put(&client, &lines("edge", MAX_RECORDS_PER_CALL))
        .await
        .expect("500 records");
    assert_eq!(out.request_responses().len(), MAX_RECORDS_PER_CALL);
    put(&client, &[vec![b'z'; MAX_RECORD_BYTES]])
        .await
        .expect("a 1,024,000-byte record");
    let mut full = vec![vec![b'w'; MAX_RECORD_BYTES]; 4];
    full.push(vec![b'v'; MAX_BYTES_PER_CALL - 4 * MAX_RECORD_BYTES]);
    put(&client, &full).await.expect("4 MiB exactly");
    assert_eq!(fake.counters().records_accepted, 500 + 1 + 5);
}

#[tokio::test]
async fn reject_marker_rejects_the_whole_call_for_bisection() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            reject_marker: Some(b"POISON".to_vec()),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let client = client(&fake, None);
    let data = vec![
        b"{\"ok\":1}\n".to_vec(),
        b"{\"bad\":\"POISON\"}\n".to_vec(),
        b"{\"ok\":2}\n".to_vec(),
    ];

    let (err, status) = service_error(put(&client, &data).await);
    assert!(err.is_invalid_argument_exception());
    assert_eq!(status, 400);
    nothing_accepted(&fake);

    // Bisecting isolates the bad record; the good halves go through.
    put(&client, &data[..1]).await.expect("good half");
    let (err, _) = service_error(put(&client, &data[1..2]).await);
    assert!(err.is_invalid_argument_exception());
    put(&client, &data[2..]).await.expect("good half");
    assert_eq!(fake.accepted(), vec![data[0].clone(), data[2].clone()]);

    fake.set_reject_marker(None);
    put(&client, &data[1..2]).await.expect("marker off");
}

#[tokio::test]
async fn store_false_counts_without_storing() {
    let fake = FakeFirehose::start(FakeConfig {
        store: false,
        ..FakeConfig::default()
    });
    let client = client(&fake, None);
    let data = lines("count", 10);

    put(&client, &data).await.expect("accepted");

    assert!(fake.accepted().is_empty());
    let c = fake.counters();
    assert_eq!(c.records_accepted, 10);
    assert_eq!(c.lines_accepted, 10);
    assert_eq!(
        c.bytes_accepted,
        data.iter().map(|d| d.len() as u64).sum::<u64>()
    );
}

#[test]
fn drop_stops_the_server() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let addr = fake.addr();
    std::net::TcpStream::connect(addr).expect("listening while alive");
    drop(fake);
    // Drop joined the server thread, so the listener is closed now.
    let err = std::net::TcpStream::connect(addr).expect_err("nothing listens after drop");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// The raw HTTP status of a failed call in whatever variant the SDK chose, and that
/// variant's name: a proxy's answer has no Firehose code, so firetail must read the
/// status from the raw response in every variant.
fn raw_status(result: PutResult) -> (u16, &'static str, Option<String>) {
    let err = result.expect_err("the call must fail");
    let status = err
        .raw_response()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|| panic!("no raw response in {err:?}"));
    let (variant, code) = match &err {
        SdkError::ServiceError(se) => ("service", se.err().code().map(str::to_owned)),
        SdkError::ResponseError(_) => ("response", None),
        other => panic!("a raw answer must come back with its response: {other:?}"),
    };
    (status, variant, code)
}

/// What the SDK makes of answers that are not Firehose's JSON: with aws-sdk-firehose
/// 1.128 every one of these (HTML or empty, 413, 429, 5xx, even a 200) comes back as a
/// `ResponseError` holding the raw response, never as a `ServiceError` with a code.
/// firetail classifies on the raw status in either variant, so this pins only that
/// the status is there and no code is invented.
#[tokio::test]
async fn raw_answers_reach_the_sdk_with_their_status_and_no_code() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let client = client(&fake, None);
    let cases = [
        (RawAnswer::nginx_413(), 413),
        (RawAnswer::empty(413), 413),
        (
            RawAnswer::html(502, "<html><body>Bad Gateway</body></html>"),
            502,
        ),
        (RawAnswer::empty(503), 503),
        (RawAnswer::html(429, "<html>Too Many Requests</html>"), 429),
        (RawAnswer::html(200, "<html>captive portal</html>"), 200),
    ];
    for (i, (answer, status)) in cases.into_iter().enumerate() {
        fake.push_script([Fault::Raw(answer.clone())]);
        let (got, variant, code) = raw_status(put(&client, &lines("raw", 2)).await);
        assert_eq!(got, status, "case {i}: {answer:?}");
        assert_eq!(code, None, "case {i}: {variant} {answer:?}");
        assert_eq!(
            fake.calls()[i].outcome,
            Outcome::Raw {
                status,
                accepted: false
            }
        );
    }
    nothing_accepted(&fake);
    assert_eq!(fake.counters().calls_raw, 6);
}

/// `AcceptThen`: the records are taken, the answer cannot be matched to them — the
/// case where resending makes duplicates.
#[tokio::test]
async fn accept_then_answers_takes_the_records_and_answers_unmatched() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let client = client(&fake, None);
    let data = lines("then", 3);
    fake.push_script([Fault::AcceptThen(RawAnswer::unmatched_200())]);
    let out = put(&client, &data).await.expect("a parseable 200");
    assert!(out.request_responses().is_empty(), "{out:?}");
    assert_eq!(fake.accepted(), data);

    fake.push_script([Fault::AcceptThen(RawAnswer::html(200, "<html/>"))]);
    let (status, _, _) = raw_status(put(&client, &lines("then-html", 1)).await);
    assert_eq!(status, 200);
    assert_eq!(fake.accepted().len(), 4);
    assert_eq!(
        fake.calls()[1].outcome,
        Outcome::Raw {
            status: 200,
            accepted: true
        }
    );
}

/// The proxy mode answers nginx's 413 to any body over the limit, takes no scripted
/// answer, and lets smaller calls through.
#[tokio::test]
async fn proxy_body_limit_answers_html_413_over_the_limit_only() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            proxy_body_limit: Some(10_000),
            ..Faults::default()
        },
        script: vec![Fault::Pass],
        ..FakeConfig::default()
    });
    let client = client(&fake, None);
    let big = vec![vec![b'x'; 9_000]];
    let (status, _, code) = raw_status(put(&client, &big).await);
    assert_eq!((status, code), (413, None));
    assert_eq!(
        fake.script_len(),
        1,
        "the proxy's answer takes no scripted answer"
    );
    let small = lines("small", 3);
    put(&client, &small).await.expect("under the limit");
    assert_eq!(fake.accepted(), small);
    let c = fake.counters();
    assert_eq!((c.proxy_413, c.calls_raw), (1, 1));
}

/// `fail_marker` fails exactly the marked records, call after call, and accepts the
/// rest of each call.
#[tokio::test]
async fn fail_marker_fails_the_marked_record_in_every_call() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            fail_marker: Some((b"STUCK".to_vec(), RecordError::SlowDown)),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let client = client(&fake, None);
    let data = vec![b"a\n".to_vec(), b"STUCK\n".to_vec(), b"c\n".to_vec()];
    for _ in 0..3 {
        let out = put(&client, &data).await.expect("a 200");
        assert_eq!(out.failed_put_count(), 1);
        let codes: Vec<_> = out
            .request_responses()
            .iter()
            .map(|r| r.error_code().map(str::to_owned))
            .collect();
        assert_eq!(
            codes,
            [None, Some("ServiceUnavailableException".to_owned()), None]
        );
    }
    assert_eq!(fake.counters().records_accepted, 6);
    fake.update_faults(|f| f.fail_marker = None);
    put(&client, &data[1..2]).await.expect("a 200");
    assert_eq!(fake.counters().records_accepted, 7);
}

/// Per-stream faults apply to calls to that stream only, and each accepted line is
/// recorded with the stream its call named and when the call was read.
#[tokio::test]
async fn stream_faults_apply_to_their_stream_and_lines_keep_their_stream() {
    let fake = FakeFirehose::start(FakeConfig {
        stream_family: true,
        ..FakeConfig::default()
    });
    let client = client(&fake, None);
    let (a, b) = (format!("{DEFAULT_STREAM}-a"), format!("{DEFAULT_STREAM}-b"));
    fake.set_stream_faults(
        &a,
        Some(Faults {
            call_error_rate: 1.0,
            call_errors: vec![CallError::Throttling],
            ..Faults::default()
        }),
    );
    let (to_a, to_b) = (lines("a", 2), lines("b", 3));
    let before = Instant::now();
    let (error, status) = service_error(put_to(&client, &a, &to_a).await);
    assert_eq!((error.code(), status), (Some("ThrottlingException"), 400));
    put_to(&client, &b, &to_b)
        .await
        .expect("the other stream is healthy");
    fake.set_stream_faults(&a, None);
    put_to(&client, &a, &to_a)
        .await
        .expect("the stream's faults lifted");
    let got = fake.accepted_lines_by_stream();
    let of = |s: &str| -> Vec<String> {
        got.iter()
            .filter(|l| *l.stream == *s)
            .map(|l| l.line.clone())
            .collect()
    };
    let text = |v: &[Vec<u8>]| -> Vec<String> {
        v.iter()
            .map(|d| String::from_utf8_lossy(d).trim_end().to_owned())
            .collect()
    };
    assert_eq!(of(&b), text(&to_b));
    assert_eq!(of(&a), text(&to_a));
    assert_eq!(fake.accepted_lines_of(&a), text(&to_a));
    assert!(got
        .iter()
        .all(|l| l.received >= before && l.received <= Instant::now()));
}

// ----- quota mode ---------------------------------------------------------------------

fn quota_fake(records: u64, requests: u64, bytes: u64) -> FakeFirehose {
    FakeFirehose::start(FakeConfig {
        quota: Some(Quota {
            records_per_second: records,
            requests_per_second: requests,
            bytes_per_second: bytes,
        }),
        stream_family: true,
        ..FakeConfig::default()
    })
}

/// Waits for a quota window to begin and returns it, so that the few calls a test
/// makes next fall in one window (they take milliseconds; the window lasts a second).
fn fresh_window(fake: &FakeFirehose) -> u64 {
    let now = fake.quota_window();
    assert!(crate::support::eventually(Duration::from_secs(3), || {
        fake.quota_window() > now
    }));
    fake.quota_window()
}

/// The request indices answered "Slow down." inside the 200, checked entry by entry.
fn slowed_down(out: &PutRecordBatchOutput) -> Vec<usize> {
    let mut slowed = Vec::new();
    for (i, entry) in out.request_responses().iter().enumerate() {
        match entry.error_code() {
            Some(code) => {
                assert_eq!(code, "ServiceUnavailableException", "entry {i}");
                assert_eq!(entry.error_message(), Some("Slow down."), "entry {i}");
                assert_eq!(entry.record_id(), None, "entry {i}");
                slowed.push(i);
            }
            None => assert!(entry.record_id().is_some(), "entry {i}"),
        }
    }
    assert_eq!(out.failed_put_count(), slowed.len() as i32);
    slowed
}

#[tokio::test]
async fn quota_throttles_exactly_the_records_past_the_record_quota_across_sources() {
    let fake = quota_fake(10, 100, 1 << 20);
    let client = client(&fake, None);
    let (a, b) = (
        format!("{DEFAULT_STREAM}-pod-a"),
        format!("{DEFAULT_STREAM}-pod-b"),
    );
    let window = fresh_window(&fake);

    let first = put_to(&client, &a, &lines("a", 6)).await.expect("200");
    let second = put_to(&client, &b, &lines("b", 6)).await.expect("200");
    assert_eq!(
        fake.quota_window(),
        window,
        "the calls straddled two windows"
    );

    assert_eq!(slowed_down(&first), Vec::<usize>::new());
    assert_eq!(slowed_down(&second), vec![4, 5], "the excess, at the end");
    assert_eq!(fake.records_accepted(), 10);
    let sources = fake.quota_sources();
    assert_eq!(sources[&a].records_accepted, 6);
    assert_eq!(
        (sources[&b].records_accepted, sources[&b].records_throttled),
        (4, 2)
    );
    let series = fake.quota_series();
    assert_eq!(series.len() as u64, window + 1);
    assert_eq!(
        series[window as usize],
        QuotaCounts {
            records_accepted: 10,
            records_throttled: 2,
            records_in_rejected_calls: 0,
            bytes_accepted: lines("a", 6)
                .iter()
                .chain(&lines("b", 4))
                .map(|l| l.len() as u64)
                .sum(),
            lines_accepted: 10,
            calls_admitted: 2,
            calls_rejected: 0,
        }
    );
    // A name outside the family is still unknown.
    let (err, _) = service_error(put_to(&client, "other-pod-a", &lines("x", 1)).await);
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn quota_throttles_the_records_past_the_byte_quota() {
    let data = lines("bytes", 5);
    let size = data[0].len() as u64;
    let fake = quota_fake(1000, 100, 3 * size);
    let client = client(&fake, None);
    let window = fresh_window(&fake);

    let out = put(&client, &data).await.expect("200");
    assert_eq!(
        fake.quota_window(),
        window,
        "the call straddled two windows"
    );

    assert_eq!(slowed_down(&out), vec![3, 4]);
    assert_eq!(fake.accepted(), data[..3].to_vec());
}

#[tokio::test]
async fn quota_rejects_the_calls_past_the_request_quota_whole() {
    let fake = quota_fake(1000, 2, 1 << 20);
    let client = client(&fake, None);
    let window = fresh_window(&fake);

    put(&client, &lines("one", 2))
        .await
        .expect("first call admitted");
    put(&client, &lines("two", 2))
        .await
        .expect("second call admitted");
    let (err, status) = service_error(put(&client, &lines("three", 3)).await);
    assert_eq!(
        fake.quota_window(),
        window,
        "the calls straddled two windows"
    );

    assert!(err.is_service_unavailable_exception(), "{err:?}");
    assert_eq!((err.message(), status), (Some("Slow down."), 503));
    assert_eq!(fake.records_accepted(), 4, "nothing of the third call");
    let counts = fake.quota_series()[window as usize];
    assert_eq!((counts.calls_admitted, counts.calls_rejected), (2, 1));
    assert_eq!(counts.records_rejected(), 3);
    assert_eq!(
        fake.counters().errors_by_code["ServiceUnavailableException"],
        1
    );
}

#[tokio::test]
async fn quota_windows_reset_every_second() {
    let fake = quota_fake(5, 2, 1 << 20);
    let client = client(&fake, None);
    let window = fresh_window(&fake);
    put(&client, &lines("full", 5)).await.expect("200");
    let out = put(&client, &lines("over", 1)).await.expect("200");
    assert_eq!(slowed_down(&out), vec![0]);
    let (err, _) = service_error(put(&client, &lines("rejected", 1)).await);
    assert!(err.is_service_unavailable_exception());
    assert_eq!(
        fake.quota_window(),
        window,
        "the calls straddled two windows"
    );

    let next = fresh_window(&fake);
    let out = put(&client, &lines("next", 5)).await.expect("200");
    assert_eq!(fake.quota_window(), next, "the call straddled two windows");

    assert_eq!(
        slowed_down(&out),
        Vec::<usize>::new(),
        "a new window, a new quota"
    );
    let series = fake.quota_series();
    assert_eq!(series[window as usize].records_accepted, 5);
    assert_eq!(series[window as usize].records_rejected(), 2);
    assert_eq!(series[next as usize].records_accepted, 5);
    assert_eq!(series[next as usize].records_rejected(), 0);
}
