//! ship: batches → `PutRecordBatch` → acknowledgements.
//!
//! Input: [`Batch`]es from the batch stage. Output: every batch's spans acknowledged to
//! [`Progress`] once each of its records was accepted by Firehose or written to the
//! dead-letter file. Which records go in the next call, and when, is `queue.rs`; how
//! many calls and records per second, `control.rs`; this file is one call: the
//! attempt, its answer, and what becomes of each record.
//!
//! Every answer is classified on HTTP status plus the error code string (DESIGN §4):
//! - 200 with `FailedPutCount > 0`: resend exactly the entries with an `ErrorCode`,
//!   never those with a `RecordId`.
//! - Throttling, unavailable, 5xx, timeouts, connection errors: resend the whole call.
//! - `InvalidArgumentException`: split the call in halves; a single record still
//!   rejected goes to the dead-letter file.
//! - HTTP 413, whatever the body (a proxy's HTML page too): split the same way; a
//!   single record still too large is dead-lettered as `too_large_for_endpoint`.
//! - Answers that are not Firehose's JSON: 429 and 5xx retry; a 2xx that cannot be
//!   matched to the records resends them all (possible duplicates, counted).
//! - Stream missing, access denied, no credentials or region: an ERROR that says what to
//!   fix, `/readyz` 503, and slow retries until it is fixed — the data is kept.
//!
//! The SDK's own retries are off: this is the one policy, retries without limit
//! (exponential backoff, full jitter, capped at seconds; a call holds its slot while
//! it waits), and the drain deadline in `lib.rs` is what bounds it at shutdown.
//! Records to resend go back to the front of the queue and ride in the next call with
//! new ones: the checkpoint needs no order between calls.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use bytes::Bytes;
use tokio::time::Instant;

use crate::batch::RecordMeta;
use crate::deadletter::DeadLetter;
use crate::metrics::{billable, Health, LogThrottle, Metrics};
use crate::progress::Progress;

mod answer;
mod control;
mod queue;
use answer::{classify, Answer, Detail};
pub use control::Signal;
pub use queue::{run, Settings};

/// First backoff step; doubles per failed attempt up to the cap.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Cap for transient faults: many pods share one stream, so back off politely, but in
/// seconds, not minutes (a drain has only `--drain-timeout`).
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Cap for configuration errors: they need an operator, so ask less often.
const CONFIG_BACKOFF_CAP: Duration = Duration::from_secs(15);
/// A connection that cannot be set up in this long will not be.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The dead-letter reason of a single record answered HTTP 413.
pub const TOO_LARGE_FOR_ENDPOINT: &str = "too_large_for_endpoint";

/// Logs an answer as one line: its kind, HTTP status, request id and message as
/// fields, then the rest of the event.
macro_rules! log_answer {
    ($level:ident, $d:expr, $($rest:tt)+) => {
        tracing::$level!(
            error = %$d.kind,
            status = $d.status,
            request_id = $d.request_id.as_deref(),
            service_message = $d.message.as_deref(),
            $($rest)+
        )
    };
}

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

/// One record on its way: its data, where it came from, which batch it settles, and
/// how many attempts in a row it has failed without progress (its backoff step).
#[derive(Clone, Debug)]
pub struct Rec {
    pub data: Bytes,
    pub meta: RecordMeta,
    pub batch: u64,
    pub tries: u32,
}

/// What one call ended with. Every record of the call is in exactly one of
/// `settled`, `again` and `split`.
#[derive(Debug, Default)]
pub struct Ended {
    /// The batch of each record done with: accepted, or written to the dead-letter file.
    pub settled: Vec<u64>,
    /// Records to send again; the call already waited its backoff.
    pub again: Vec<Rec>,
    /// `again` must be sent as it is, alone: it is half of a refused call.
    pub alone: bool,
    /// The two halves of a call refused for its content or size, each to send alone.
    pub split: Option<(Vec<Rec>, Vec<Rec>)>,
    pub signal: Signal,
}

/// What every call shares.
pub struct Shipper {
    client: Client,
    stream: String,
    adaptive: bool,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    dead_letter: Arc<DeadLetter>,
    retry_log: LogThrottle,
    config_log: LogThrottle,
    /// A proxy whose body limit is below every record would otherwise log one ERROR
    /// per line.
    too_large_log: LogThrottle,
}

impl Shipper {
    pub fn new(
        client: Client,
        stream: String,
        adaptive: bool,
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        dead_letter: Arc<DeadLetter>,
    ) -> Shipper {
        Shipper {
            client,
            stream,
            adaptive,
            progress,
            metrics,
            health,
            dead_letter,
            retry_log: LogThrottle::new(Duration::from_secs(1)),
            config_log: LogThrottle::new(Duration::from_secs(10)),
            too_large_log: LogThrottle::new(Duration::from_secs(1)),
        }
        .with_series_at_zero()
    }

    /// The series this stage adds exist at 0 from the start, so an alert on their
    /// rate works before the first event.
    fn with_series_at_zero(self) -> Shipper {
        let _ = self
            .metrics
            .dead_lettered
            .get_or_create(&crate::metrics::Reason {
                reason: TOO_LARGE_FOR_ENDPOINT,
            });
        self
    }

    /// Sends `recs` once, settles what the answer settles, and — when records must be
    /// sent again — waits their backoff before returning them, holding the call's
    /// slot, so that a stream in trouble sees fewer calls. `alone`: the records are
    /// half of a refused call.
    pub async fn attempt(&self, recs: Vec<Rec>, alone: bool, in_flight_at_send: usize) -> Ended {
        let started = Instant::now();
        let answer = self.call(&recs).await;
        let mut signal = Signal {
            latency: started.elapsed(),
            in_flight_at_send,
            ..Signal::default()
        };
        let tries = recs.iter().map(|r| r.tries).max().unwrap_or(0);
        let mut backoff = Backoff { attempt: tries };
        let mut ended = Ended::default();
        let wait = match answer {
            Answer::Accepted(codes) => {
                self.health.config_error.store(false, Ordering::Relaxed);
                let sent = recs.len();
                let (failed, throttled) = self.settle(recs, &codes, &mut ended.settled);
                signal.sent = sent as u32;
                signal.accepted = (sent - failed.len()) as u32;
                signal.throttled_records = throttled as u32;
                signal.throttled = throttled > 0;
                signal.failed = failed.len() > throttled;
                ended.again = failed;
                if ended.again.is_empty() {
                    None
                } else if self.adaptive && !signal.failed {
                    // Only throttled: the send rate answers that, not a longer wait.
                    Some(Backoff::default().hold(BACKOFF_CAP))
                } else if ended.again.len() < sent {
                    // Firehose took part of the call: it is working, so wait without
                    // escalating; only calls that make no progress back off further.
                    Some(backoff.hold(BACKOFF_CAP))
                } else {
                    Some(backoff.next(BACKOFF_CAP))
                }
            }
            Answer::Retry {
                outcome,
                throttled,
                maybe_delivered,
                detail,
            } => {
                self.retrying(outcome, throttled, maybe_delivered, &detail, recs.len());
                signal.throttled = throttled;
                signal.failed = !throttled;
                ended.again = recs;
                ended.alone = alone;
                if throttled && self.adaptive {
                    Some(Backoff::default().hold(BACKOFF_CAP))
                } else {
                    Some(backoff.next(BACKOFF_CAP))
                }
            }
            Answer::Invalid(detail) => {
                self.refused(recs, "invalid", &detail, &mut ended).await;
                None
            }
            Answer::TooLarge(detail) => {
                self.refused(recs, "too_large", &detail, &mut ended).await;
                None
            }
            Answer::Config { what, detail } => {
                self.metrics.call("config_error");
                self.health.config_error.store(true, Ordering::Relaxed);
                if let Some(n) = self.config_log.note(recs.len() as u64) {
                    log_answer!(error, detail, stream = %self.stream, records_waiting = n, "Firehose refuses delivery: {what}. Lines are kept and retried until it is fixed.");
                }
                ended.again = recs;
                ended.alone = alone;
                Some(backoff.next(CONFIG_BACKOFF_CAP))
            }
        };
        if let Some(wait) = wait {
            let tries = backoff.attempt;
            for r in &mut ended.again {
                r.tries = tries;
            }
            tokio::time::sleep(wait).await;
        }
        ended.signal = signal;
        ended
    }

    /// Counts and logs (rate-limited) a call that will be sent again whole.
    fn retrying(
        &self,
        outcome: &'static str,
        throttled: bool,
        maybe_delivered: bool,
        detail: &Detail,
        records: usize,
    ) {
        self.metrics.call(outcome);
        self.metrics.records_retried.inc_by(records as u64);
        if throttled {
            self.metrics.throttled.inc();
            self.metrics.throttled_calls.inc();
        }
        if maybe_delivered {
            self.metrics.duplicates_possible.inc_by(records as u64);
        }
        if let Some(n) = self.retry_log.note(records as u64) {
            log_answer!(
                warn,
                detail,
                outcome,
                records = n,
                maybe_delivered,
                "PutRecordBatch failed; retrying with backoff."
            );
        }
    }

    /// A call refused for its content (`invalid`) or its size (`too_large`, HTTP 413):
    /// its halves are to be sent alone, or the one record it holds is dead-lettered.
    async fn refused(
        &self,
        mut recs: Vec<Rec>,
        outcome: &'static str,
        detail: &Detail,
        ended: &mut Ended,
    ) {
        self.metrics.call(outcome);
        if recs.len() > 1 {
            let bytes: usize = recs.iter().map(|r| r.data.len()).sum();
            log_answer!(
                warn,
                detail,
                outcome,
                records = recs.len(),
                bytes,
                "PutRecordBatch refused the call; splitting it in halves."
            );
            let second = recs.split_off(recs.len() / 2);
            ended.split = Some((recs, second));
            return;
        }
        let reason = if outcome == "too_large" {
            TOO_LARGE_FOR_ENDPOINT
        } else {
            "rejected"
        };
        for r in recs {
            self.reject(&r, reason, detail).await;
            self.progress.settled(u64::from(r.meta.lines));
            ended.settled.push(r.batch);
        }
    }

    /// One PutRecordBatch attempt. Each record's `Blob` shares the bytes of the line
    /// (a reference count, not a copy): a copy per record was a malloc, a memcpy and a
    /// free for every line shipped (issue 15).
    async fn call(&self, recs: &[Rec]) -> Answer {
        let records = recs
            .iter()
            .map(|r| {
                Record::builder()
                    .data(Blob::from_maybe_shared(r.data.clone()))
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

    /// Counts the accepted records of a 200 answer (their batches go to `settled`);
    /// returns the ones to resend and how many of those were throttled.
    fn settle(
        &self,
        recs: Vec<Rec>,
        codes: &[Option<String>],
        settled: &mut Vec<u64>,
    ) -> (Vec<Rec>, usize) {
        if codes.len() != recs.len() {
            // Cannot line the answer up with the request: resend all (duplicates possible).
            if let Some(n) = self.retry_log.note(recs.len() as u64) {
                tracing::warn!(records = n, sent = recs.len(), answered = codes.len(), "PutRecordBatch answer does not line up with the request; resending the whole call (duplicates possible).");
            }
            self.metrics.call("bad_response");
            self.metrics.duplicates_possible.inc_by(recs.len() as u64);
            return (recs, 0);
        }
        let mut failed = Vec::new();
        let mut throttled = 0usize;
        // Summed here and added once per call: four atomic adds per record add up.
        let (mut records, mut lines, mut bytes, mut billed) = (0u64, 0u64, 0u64, 0u64);
        for (r, code) in recs.into_iter().zip(codes) {
            match code {
                None => {
                    let len = r.data.len() as u64;
                    records += 1;
                    lines += u64::from(r.meta.lines);
                    bytes += len;
                    billed += billable(len);
                    settled.push(r.batch);
                }
                Some(code) => {
                    if code == "ServiceUnavailableException" {
                        throttled += 1;
                    }
                    failed.push(r);
                }
            }
        }
        self.metrics.records_shipped.inc_by(records);
        self.metrics.lines_shipped.inc_by(lines);
        // The ledger's own count, for the drain report to check the counters against;
        // here rather than when the queue learns of the call, so that a call cut by the
        // deadline in its backoff has counted its accepted lines in both or neither.
        self.progress.settled(lines);
        self.metrics.bytes_shipped.inc_by(bytes);
        self.metrics.billable_bytes.inc_by(billed);
        self.metrics
            .call(if failed.is_empty() { "ok" } else { "partial" });
        if !failed.is_empty() {
            self.metrics.records_retried.inc_by(failed.len() as u64);
            self.metrics.throttled.inc_by(throttled as u64);
            self.metrics.throttled_records.inc_by(throttled as u64);
            if let Some(n) = self.retry_log.note(failed.len() as u64) {
                tracing::warn!(
                    records = n,
                    throttled,
                    "Firehose failed some records of a call; resending exactly those with backoff."
                );
            }
        }
        (failed, throttled)
    }

    /// A single record the endpoint will not take: to the dead-letter file. `reason`
    /// is `rejected` (Firehose's `InvalidArgumentException`) or
    /// [`TOO_LARGE_FOR_ENDPOINT`] (HTTP 413 for one record, which Firehose itself does
    /// not answer for a record within its 1,000 KiB limit).
    async fn reject(&self, r: &Rec, reason: &'static str, detail: &Detail) {
        let meta = r.meta;
        let data = &r.data;
        let file = self.progress.path_of(meta.file);
        if reason == TOO_LARGE_FOR_ENDPOINT {
            if let Some(records) = self.too_large_log.note(1) {
                log_answer!(error, detail, file = %file.display(), offset = meta.offset, size = data.len(), reason, records, "A single record was answered 413 (too large); the likely cause is a proxy's request body limit in front of Firehose (nginx client_max_body_size, an ingress or egress gateway): a record of 1,000 KiB takes ~1.4 MB as base64 JSON. Writing it to the dead-letter file.");
            }
        } else {
            log_answer!(error, detail, file = %file.display(), offset = meta.offset, size = data.len(), reason, "Firehose rejected a record on its own; writing it to the dead-letter file.");
        }
        self.dead_letter
            .write_retrying(&file, meta.offset, reason, data, data.len() as u64)
            .await;
        self.dead_letter.sync().await;
        self.metrics
            .dead_lettered
            .get_or_create(&crate::metrics::Reason { reason })
            .inc_by(u64::from(meta.lines));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
