//! ship: batches → `PutRecordBatch` → acknowledgements.
//!
//! Input: [`Batch`]es from the batch stage. Output: every batch's spans acknowledged to
//! [`Progress`] once each of its records was accepted by Firehose or written to the
//! dead-letter file. At most `--max-in-flight` calls run at once; a batch waiting for
//! a slot waits in the channel, which stops the batch stage, which stops the tail.
//!
//! Every answer is classified on HTTP status plus the error code string (DESIGN §4):
//! - 200 with `FailedPutCount > 0`: resend exactly the entries with an `ErrorCode`,
//!   never those with a `RecordId`.
//! - Throttling, unavailable, 5xx, timeouts, connection errors: resend the whole call.
//! - `InvalidArgumentException`: split the call in halves; a single record still
//!   rejected goes to the dead-letter file.
//! - Stream missing, access denied, no credentials or region: an ERROR that says what to
//!   fix, `/readyz` 503, and slow retries until it is fixed — the data is kept.
//!
//! The SDK's own retries are off: this loop is the one policy, retries without limit
//! (exponential backoff, full jitter, capped at seconds), and the drain deadline in
//! `lib.rs` is what bounds it at shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::operation::put_record_batch::{PutRecordBatchError, PutRecordBatchOutput};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::batch::Batch;
use crate::deadletter::DeadLetter;
use crate::metrics::{billable, Health, LogThrottle, Metrics};
use crate::progress::Progress;

/// First backoff step; doubles per failed attempt up to the cap.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Cap for transient faults: many pods share one stream, so back off politely, but in
/// seconds, not minutes (a drain has only `--drain-timeout`).
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Cap for configuration errors: they need an operator, so ask less often.
const CONFIG_BACKOFF_CAP: Duration = Duration::from_secs(15);
/// A connection that cannot be set up in this long will not be.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds the Firehose client from the default chain (env, IRSA web identity, EKS Pod
/// Identity; `AWS_ENDPOINT_URL[_FIREHOSE]` for emulators) with explicit timeouts — the
/// SDK has no read timeout by default, and a hung call would stall the pipeline — and
/// with the SDK's retries off, because [`Shipper`] retries.
pub async fn client(call_timeout: Duration) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(call_timeout)
        .operation_timeout(call_timeout)
        .build();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    Client::new(&conf)
}

/// How one answer is handled.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// HTTP 200: per position, `None` for accepted, `Some(code)` for failed.
    Accepted(Vec<Option<String>>),
    /// Resend the whole call. `maybe_delivered`: the answer never came, so Firehose may
    /// hold the records already (duplicates possible).
    Retry {
        outcome: &'static str,
        throttled: bool,
        maybe_delivered: bool,
        detail: String,
    },
    /// `InvalidArgumentException`: some record (or the call's size) is unacceptable.
    Invalid(String),
    /// Needs an operator; retried slowly.
    Config { what: &'static str, detail: String },
}

fn classify(result: Result<PutRecordBatchOutput, SdkError<PutRecordBatchError>>) -> Answer {
    let err = match result {
        Ok(out) => {
            return Answer::Accepted(
                out.request_responses()
                    .iter()
                    .map(|r| match (r.record_id(), r.error_code()) {
                        (Some(_), None) => None,
                        (_, code) => Some(code.unwrap_or("unknown").to_string()),
                    })
                    .collect(),
            )
        }
        Err(e) => e,
    };
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            // Code, message and status say it all; the SDK's debug dump of the raw
            // response would be a kilobyte per log line.
            let detail = format!(
                "{code}: {} (HTTP {status})",
                se.err().message().unwrap_or("no message")
            );
            classify_service_error(status, code, detail)
        }
        SdkError::TimeoutError(_) => Answer::Retry {
            outcome: "timeout",
            throttled: false,
            maybe_delivered: true,
            detail,
        },
        SdkError::DispatchFailure(d) if d.is_timeout() || d.is_io() => Answer::Retry {
            outcome: if d.is_timeout() { "timeout" } else { "network" },
            throttled: false,
            // A connect timeout sent nothing; an I/O error may have cut the answer.
            maybe_delivered: d.is_io(),
            detail,
        },
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => Answer::Config {
            what: "credentials, region or endpoint: check AWS_REGION, the pod's IAM role (IRSA or EKS Pod Identity) and AWS_ENDPOINT_URL",
            detail,
        },
        _ => Answer::Retry {
            outcome: "bad_response",
            throttled: false,
            maybe_delivered: true,
            detail,
        },
    }
}

/// Classifies an error answer on its status and code string — the SDK's typed enum
/// knows only a few codes and calls everything else "unhandled".
fn classify_service_error(status: u16, code: &str, detail: String) -> Answer {
    let retry = |outcome, throttled| Answer::Retry {
        outcome,
        throttled,
        maybe_delivered: false,
        detail: detail.clone(),
    };
    match code {
        "InvalidArgumentException" => Answer::Invalid(detail),
        "ThrottlingException" | "LimitExceededException" | "TooManyRequestsException" => {
            retry("throttled", true)
        }
        "ServiceUnavailableException" | "InternalFailure" | "InternalFailureException" => {
            retry("unavailable", false)
        }
        "ResourceNotFoundException" => Answer::Config {
            what: "the delivery stream does not exist: check --stream and AWS_REGION",
            detail,
        },
        "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException"
        | "InvalidSignatureException" | "ExpiredTokenException" | "ExpiredToken"
        | "InvalidClientTokenId" | "MissingAuthenticationToken" | "IncompleteSignature"
        | "NotAuthorized" => Answer::Config {
            what: "access denied: the pod's IAM role needs firehose:PutRecordBatch on the stream's ARN, and valid credentials (IRSA or EKS Pod Identity)",
            detail,
        },
        "InvalidKMSResourceException" => Answer::Config {
            what: "the stream's KMS key cannot be used: check the key and its policy",
            detail,
        },
        _ if status >= 500 => retry("server_error", false),
        _ if status == 413 => Answer::Invalid(detail),
        _ => Answer::Config {
            what: "an unexpected error answer from Firehose",
            detail,
        },
    }
}

/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff
/// and Jitter"): spreads the retries of many pods sharing one stream.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next wait, one step longer than the last (up to `cap`).
    fn next(&mut self, cap: Duration) -> Duration {
        let wait = self.hold(cap);
        self.attempt += 1;
        wait
    }

    /// A wait at the current step, without escalating.
    fn hold(&self, cap: Duration) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << self.attempt.min(16))
            .min(cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// What every delivery task shares.
pub struct Shipper {
    client: Client,
    stream: String,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    dead_letter: Arc<DeadLetter>,
    retry_log: LogThrottle,
    config_log: LogThrottle,
}

impl Shipper {
    pub fn new(
        client: Client,
        stream: String,
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        dead_letter: Arc<DeadLetter>,
    ) -> Shipper {
        Shipper {
            client,
            stream,
            progress,
            metrics,
            health,
            dead_letter,
            retry_log: LogThrottle::new(Duration::from_secs(1)),
            config_log: LogThrottle::new(Duration::from_secs(10)),
        }
    }

    /// Delivers one batch completely (accepted or dead-lettered), then acknowledges it.
    async fn deliver(&self, batch: Batch) {
        // Halves of a rejected call wait here; each is delivered like a call of its own.
        let mut calls = vec![(0..batch.records.len()).collect::<Vec<_>>()];
        while let Some(pending) = calls.pop() {
            if let Some((first, second)) = self.deliver_call(&batch, pending).await {
                calls.push(second);
                calls.push(first);
            }
        }
        self.progress.ack(&batch.spans);
    }

    /// Sends `pending` (indices into the batch) until every record is accepted. Returns
    /// the two halves to send instead when Firehose rejects the call as invalid.
    async fn deliver_call(
        &self,
        batch: &Batch,
        mut pending: Vec<usize>,
    ) -> Option<(Vec<usize>, Vec<usize>)> {
        let mut backoff = Backoff::default();
        while !pending.is_empty() {
            let answer = self.call(batch, &pending).await;
            let wait = match answer {
                Answer::Accepted(codes) => {
                    self.health.config_error.store(false, Ordering::Relaxed);
                    let sent = pending.len();
                    pending = self.settle(batch, &pending, &codes);
                    if pending.is_empty() {
                        return None;
                    }
                    // Firehose took part of the call: it is working, so wait without
                    // escalating; only calls that make no progress back off further.
                    if pending.len() < sent {
                        backoff.hold(BACKOFF_CAP)
                    } else {
                        backoff.next(BACKOFF_CAP)
                    }
                }
                Answer::Retry {
                    outcome,
                    throttled,
                    maybe_delivered,
                    detail,
                } => {
                    self.metrics.call(outcome);
                    self.metrics.records_retried.inc_by(pending.len() as u64);
                    if throttled {
                        self.metrics.throttled.inc();
                    }
                    if maybe_delivered {
                        self.metrics
                            .duplicates_possible
                            .inc_by(pending.len() as u64);
                    }
                    if let Some(n) = self.retry_log.note(pending.len() as u64) {
                        tracing::warn!(outcome, records = n, error = %detail, "PutRecordBatch failed; retrying with backoff.");
                    }
                    backoff.next(BACKOFF_CAP)
                }
                Answer::Invalid(detail) => {
                    self.metrics.call("invalid");
                    if pending.len() > 1 {
                        tracing::warn!(records = pending.len(), error = %detail, "Firehose rejected the call as invalid; splitting it in halves.");
                        let second = pending.split_off(pending.len() / 2);
                        return Some((pending, second));
                    }
                    self.reject(batch, pending[0], &detail).await;
                    return None;
                }
                Answer::Config { what, detail } => {
                    self.metrics.call("config_error");
                    self.health.config_error.store(true, Ordering::Relaxed);
                    if let Some(n) = self.config_log.note(pending.len() as u64) {
                        tracing::error!(stream = %self.stream, records_waiting = n, error = %detail, "Firehose refuses delivery: {what}. Lines are kept and retried until it is fixed.");
                    }
                    backoff.next(CONFIG_BACKOFF_CAP)
                }
            };
            tokio::time::sleep(wait).await;
        }
        None
    }

    /// One PutRecordBatch attempt with the records at `pending`.
    async fn call(&self, batch: &Batch, pending: &[usize]) -> Answer {
        let records = pending
            .iter()
            .map(|&i| {
                Record::builder()
                    .data(Blob::new(batch.records[i].to_vec()))
                    .build()
                    .expect("data is set")
            })
            .collect();
        self.metrics.in_flight.inc();
        let started = Instant::now();
        let result = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await;
        self.metrics
            .call_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.in_flight.dec();
        classify(result)
    }

    /// Counts the accepted records of a 200 answer; returns the ones to resend.
    fn settle(&self, batch: &Batch, pending: &[usize], codes: &[Option<String>]) -> Vec<usize> {
        if codes.len() != pending.len() {
            // Cannot line the answer up with the request: resend all (duplicates possible).
            tracing::warn!(sent = pending.len(), answered = codes.len(), "PutRecordBatch answer does not line up with the request; resending the whole call.");
            self.metrics.call("bad_response");
            self.metrics
                .duplicates_possible
                .inc_by(pending.len() as u64);
            return pending.to_vec();
        }
        let mut failed = Vec::new();
        let mut throttled = 0u64;
        // Summed here and added once per call: four atomic adds per record add up.
        let (mut records, mut lines, mut bytes, mut billed) = (0u64, 0u64, 0u64, 0u64);
        for (&i, code) in pending.iter().zip(codes) {
            match code {
                None => {
                    let len = batch.records[i].len() as u64;
                    records += 1;
                    lines += u64::from(batch.meta[i].lines);
                    bytes += len;
                    billed += billable(len);
                }
                Some(code) => {
                    if code == "ServiceUnavailableException" {
                        throttled += 1;
                    }
                    failed.push(i);
                }
            }
        }
        self.metrics.records_shipped.inc_by(records);
        self.metrics.lines_shipped.inc_by(lines);
        self.metrics.bytes_shipped.inc_by(bytes);
        self.metrics.billable_bytes.inc_by(billed);
        self.metrics
            .call(if failed.is_empty() { "ok" } else { "partial" });
        if !failed.is_empty() {
            self.metrics.records_retried.inc_by(failed.len() as u64);
            self.metrics.throttled.inc_by(throttled);
            if let Some(n) = self.retry_log.note(failed.len() as u64) {
                tracing::warn!(
                    records = n,
                    throttled,
                    "Firehose failed some records of a call; resending exactly those with backoff."
                );
            }
        }
        failed
    }

    /// A single record Firehose will not take: to the dead-letter file.
    async fn reject(&self, batch: &Batch, i: usize, detail: &str) {
        let meta = batch.meta[i];
        let data = &batch.records[i];
        let file = self.progress.path_of(meta.file);
        tracing::error!(file = %file.display(), offset = meta.offset, size = data.len(), error = %detail, "Firehose rejected a record on its own; writing it to the dead-letter file.");
        self.dead_letter
            .write_retrying(&file, meta.offset, "rejected", data, data.len() as u64)
            .await;
        self.dead_letter.sync().await;
        self.metrics
            .dead_lettered
            .get_or_create(&crate::metrics::Reason { reason: "rejected" })
            .inc_by(u64::from(meta.lines));
    }
}

/// Runs deliveries, at most `max_in_flight` at once, until the batch channel closes
/// and every delivery has ended.
pub async fn run(mut rx: mpsc::Receiver<Batch>, shipper: Arc<Shipper>, max_in_flight: usize) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut deliveries = JoinSet::new();
    loop {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        while deliveries.try_join_next().is_some() {}
        let Some(batch) = rx.recv().await else { break };
        let shipper = shipper.clone();
        deliveries.spawn(async move {
            shipper.deliver(batch).await;
            drop(slot);
        });
    }
    while deliveries.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, code: &str) -> Answer {
        classify_service_error(status, code, String::new())
    }

    #[test]
    fn error_codes_are_classified_as_design_says() {
        assert!(matches!(
            class(400, "InvalidArgumentException"),
            Answer::Invalid(_)
        ));
        assert!(matches!(
            class(400, "ThrottlingException"),
            Answer::Retry {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            class(503, "ServiceUnavailableException"),
            Answer::Retry {
                throttled: false,
                ..
            }
        ));
        assert!(matches!(
            class(500, "ServiceUnavailableException"),
            Answer::Retry { .. }
        ));
        assert!(matches!(
            class(502, "Whatever"),
            Answer::Retry {
                outcome: "server_error",
                ..
            }
        ));
        assert!(matches!(
            class(400, "ResourceNotFoundException"),
            Answer::Config { .. }
        ));
        assert!(matches!(
            class(400, "AccessDeniedException"),
            Answer::Config { .. }
        ));
        assert!(matches!(
            class(403, "ExpiredTokenException"),
            Answer::Config { .. }
        ));
    }

    #[test]
    fn backoff_grows_and_stays_under_its_cap() {
        let mut b = Backoff::default();
        for _ in 0..40 {
            assert!(b.next(BACKOFF_CAP) <= BACKOFF_CAP);
        }
        // Full jitter draws from [0, ceiling]; the ceiling reached the cap by now.
        let max = (0..200).map(|_| b.next(BACKOFF_CAP)).max().unwrap();
        assert!(max > BACKOFF_CAP / 2, "{max:?}");
        // Holding does not escalate.
        let fresh = Backoff::default();
        assert!((0..50).all(|_| fresh.hold(BACKOFF_CAP) <= BACKOFF_BASE));
    }
}
