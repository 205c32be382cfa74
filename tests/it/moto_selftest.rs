//! Self-test of `support::moto`: the harness really starts moto, creates a stream into a
//! bucket, a `PutRecordBatch` from the real aws-sdk-firehose client lands in S3 as sent,
//! and dropping the harness leaves no process behind.

use std::collections::BTreeMap;

use aws_sdk_firehose::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

use crate::support::moto::{self, Moto};

fn client(moto: &Moto) -> aws_sdk_firehose::Client {
    let conf = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(moto::REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    aws_sdk_firehose::Client::from_conf(conf)
}

fn access_line(batch: usize, i: usize) -> String {
    format!(
        r#"{{"time":"2026-11-26T17:00:{:02}.{:03}Z","request_id":"req-{batch}-{i}","method":"GET","path":"/orders/{i}?q=caf\u00e9 ✓","status":200,"duration_ms":{}.5}}"#,
        i % 60,
        i % 1000,
        i % 97
    )
}

async fn put_batch(client: &aws_sdk_firehose::Client, stream: &str, lines: &[String]) {
    let records: Vec<Record> = lines
        .iter()
        .map(|l| {
            Record::builder()
                .data(Blob::new(format!("{l}\n")))
                .build()
                .unwrap()
        })
        .collect();
    let out = client
        .put_record_batch()
        .delivery_stream_name(stream)
        .set_records(Some(records))
        .send()
        .await
        .expect("PutRecordBatch to moto");
    assert_eq!(out.failed_put_count(), 0);
    assert_eq!(out.request_responses().len(), lines.len());
    assert!(out
        .request_responses()
        .iter()
        .all(|r| r.record_id().is_some()));
}

fn counts(lines: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn put_record_batch_through_the_sdk_lands_in_s3_as_sent() {
    let moto = Moto::start();
    moto.create_stream("selftest-stream", "selftest-bucket");
    assert!(moto.s3_objects("selftest-bucket").is_empty());

    let client = client(&moto);
    let batches: Vec<Vec<String>> = [3usize, 500, 1, 7]
        .iter()
        .enumerate()
        .map(|(b, &n)| (0..n).map(|i| access_line(b, i)).collect())
        .collect();
    for batch in &batches {
        put_batch(&client, "selftest-stream", batch).await;
    }
    // A line sent twice is stored twice (duplicates are visible to the tests).
    put_batch(&client, "selftest-stream", &batches[0][..1]).await;

    // One object per call, its body the records concatenated as sent.
    let mut objects = moto.s3_objects("selftest-bucket");
    let mut expected: Vec<Vec<u8>> = batches
        .iter()
        .chain(std::iter::once(&batches[0][..1].to_vec()))
        .map(|b| {
            b.iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    objects.sort();
    expected.sort();
    assert_eq!(objects, expected);

    let sent = batches
        .iter()
        .flatten()
        .cloned()
        .chain(std::iter::once(batches[0][0].clone()));
    let stored = moto.s3_lines("selftest-bucket");
    assert_eq!(stored.len(), 3 + 500 + 1 + 7 + 1);
    assert_eq!(counts(stored), counts(sent));

    // Listing pagination gives the same keys as one page.
    let keys = moto.s3_keys("selftest-bucket");
    assert_eq!(keys.len(), 5);
    assert_eq!(moto.s3_keys_paged("selftest-bucket", 2), keys);
    assert!(
        keys.iter().all(|k| k.contains("/selftest-stream-1-")),
        "{keys:?}"
    );

    // An unknown stream is a ResourceNotFoundException, as from the real service.
    let err = client
        .put_record_batch()
        .delivery_stream_name("no-such-stream")
        .records(Record::builder().data(Blob::new("x\n")).build().unwrap())
        .send()
        .await
        .expect_err("unknown stream must fail");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{err:?}"
    );
}

#[test]
fn two_streams_into_two_buckets_stay_apart() {
    let moto = Moto::start();
    moto.create_stream("stream-a", "bucket-a");
    moto.create_stream("stream-b", "bucket-b");
    moto.create_bucket("bucket-a"); // again: no error
    let data = |s: &str| base64_encode(s.as_bytes());
    moto.firehose(
        "PutRecordBatch",
        &serde_json::json!({"DeliveryStreamName": "stream-a", "Records": [{"Data": data("a1\n")}, {"Data": data("a2\n")}]}),
    );
    moto.firehose(
        "PutRecordBatch",
        &serde_json::json!({"DeliveryStreamName": "stream-b", "Records": [{"Data": data("b1\n")}]}),
    );
    assert_eq!(moto.s3_lines("bucket-a"), ["a1", "a2"]);
    assert_eq!(moto.s3_lines("bucket-b"), ["b1"]);
}

#[test]
fn env_names_moto_and_a_region() {
    let moto = Moto::start();
    let env: BTreeMap<String, String> = moto.env().into_iter().collect();
    assert_eq!(env["AWS_ENDPOINT_URL"], moto.endpoint());
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["AWS_EC2_METADATA_DISABLED"], "true");
    assert!(!env["AWS_ACCESS_KEY_ID"].is_empty() && !env["AWS_SECRET_ACCESS_KEY"].is_empty());
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
}

#[test]
fn drop_kills_and_reaps_moto() {
    let moto = Moto::start();
    let pid = moto.pid().expect("running");
    let proc_dir = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_dir).exists());
    drop(moto);
    // Reaped, not a zombie: the pid is gone from /proc at once.
    assert!(
        !std::path::Path::new(&proc_dir).exists(),
        "moto_server {pid} still present after drop"
    );
}

#[test]
#[should_panic(expected = "scripts/python-env.sh")]
fn missing_moto_server_says_how_to_get_it() {
    moto::moto_server_path_from(Some("/nonexistent/moto_server".into()));
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
