//! call: one `PutRecordBatch` call — the attempt, its answer ([`super::answer`]), and
//! what becomes of each record: accepted, sent again after a jittered backoff, split,
//! or dead-lettered (docs/design.md#firehose-rules).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use tokio::time::Instant;

use super::answer::{classify, Answer, Detail};
use super::{Ended, Rec, Signal};
use crate::deadletter::DeadLetter;
use crate::firehose::billable;
use crate::health::Health;
use crate::log_throttle::LogThrottle;
use crate::metrics::{Metrics, StreamMetrics};
use crate::outcome::{CallOutcome, DeadLetterReason};
use crate::progress::Progress;
use crate::wait::Backoff;

/// Cap for transient faults: many pods share one stream, so back off politely, but in
/// seconds, not minutes (a drain has only `--drain-timeout`).
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Cap for configuration errors: they need an operator, so ask less often.
const CONFIG_BACKOFF_CAP: Duration = Duration::from_secs(15);

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

/// What every call shares.
pub struct Shipper {
    client: Client,
    stream: String,
    /// The lane's index: which stream's series the calls count in.
    lane: usize,
    adaptive: bool,
    pub(super) progress: Arc<Progress>,
    pub(super) metrics: Arc<Metrics>,
    health: Arc<Health>,
    dead_letter: Arc<DeadLetter>,
    retry_log: LogThrottle,
    config_log: LogThrottle,
    /// A proxy whose body limit is below every record would otherwise log one ERROR
    /// per line.
    too_large_log: LogThrottle,
}

impl Shipper {
    /// The series of this lane's stream.
    pub(super) fn lane_metrics(&self) -> &StreamMetrics {
        self.metrics.stream(self.lane)
    }

    /// The shipper of lane `lane`: it sends to the stream `metrics.stream(lane)` is
    /// named for, and counts its calls there.
    pub fn new(
        client: Client,
        lane: usize,
        adaptive: bool,
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        dead_letter: Arc<DeadLetter>,
    ) -> Shipper {
        Shipper {
            client,
            stream: metrics.stream(lane).name.clone(),
            lane,
            adaptive,
            progress,
            metrics,
            health,
            dead_letter,
            retry_log: LogThrottle::new(Duration::from_secs(1)),
            config_log: LogThrottle::new(Duration::from_secs(10)),
            too_large_log: LogThrottle::new(Duration::from_secs(1)),
        }
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
        let mut backoff = Backoff::at(tries);
        let mut ended = Ended::default();
        let wait = match answer {
            Answer::Accepted(codes) => {
                self.health.config_error.store(false, Ordering::Relaxed);
                let sent = recs.len();
                let (failed, throttled) = self.tally_accepted(recs, &codes, &mut ended.settled);
                signal.sent = sent as u32;
                signal.accepted = (sent - failed.len()) as u32;
                signal.throttled_records = throttled as u32;
                signal.throttled = throttled > 0;
                // Firehose answered the call: records refused for other reasons than
                // throttling say something about those records (they wait out their
                // backoff), not about the stream's capacity, so the control does not cut
                // for them; else one stuck record would serialise its whole stream.
                let refused = failed.len() > throttled;
                ended.again = failed;
                if ended.again.is_empty() {
                    None
                } else if self.adaptive && !refused {
                    // Only throttled: the send rate answers that, not a longer wait.
                    Some(Backoff::default().hold_jittered(BACKOFF_CAP))
                } else if ended.again.len() < sent {
                    // Firehose took part of the call: it is working, so wait without
                    // escalating; only calls that make no progress back off further.
                    Some(backoff.hold_jittered(BACKOFF_CAP))
                } else {
                    Some(backoff.next_jittered(BACKOFF_CAP))
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
                    Some(Backoff::default().hold_jittered(BACKOFF_CAP))
                } else {
                    Some(backoff.next_jittered(BACKOFF_CAP))
                }
            }
            Answer::Invalid(detail) => {
                self.refused(recs, CallOutcome::Invalid, &detail, &mut ended)
                    .await;
                None
            }
            Answer::TooLarge(detail) => {
                self.refused(recs, CallOutcome::TooLarge, &detail, &mut ended)
                    .await;
                None
            }
            Answer::Config { what, detail } => {
                self.lane_metrics().call(CallOutcome::ConfigError);
                self.health.config_error.store(true, Ordering::Relaxed);
                if let Some(n) = self.config_log.note(recs.len() as u64) {
                    log_answer!(error, detail, stream = %self.stream, records_waiting = n, "Firehose refuses delivery: {what}. Lines are kept and retried until it is fixed.");
                }
                ended.again = recs;
                ended.alone = alone;
                Some(backoff.next_jittered(CONFIG_BACKOFF_CAP))
            }
        };
        if let Some(wait) = wait {
            let tries = backoff.attempt();
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
        outcome: CallOutcome,
        throttled: bool,
        maybe_delivered: bool,
        detail: &Detail,
        records: usize,
    ) {
        self.lane_metrics().call(outcome);
        self.lane_metrics().records_retried.inc_by(records as u64);
        if throttled {
            self.lane_metrics().throttled.inc();
            self.lane_metrics().throttled_calls.inc();
        }
        if maybe_delivered {
            self.metrics.duplicates_possible.inc_by(records as u64);
        }
        if let Some(n) = self.retry_log.note(records as u64) {
            log_answer!(
                warn,
                detail,
                outcome = outcome.as_str(),
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
        outcome: CallOutcome,
        detail: &Detail,
        ended: &mut Ended,
    ) {
        self.lane_metrics().call(outcome);
        if recs.len() > 1 {
            let bytes: usize = recs.iter().map(|r| r.data.len()).sum();
            log_answer!(
                warn,
                detail,
                outcome = outcome.as_str(),
                records = recs.len(),
                bytes,
                "PutRecordBatch refused the call; splitting it in halves."
            );
            let second = recs.split_off(recs.len() / 2);
            ended.split = Some((recs, second));
            return;
        }
        let reason = if outcome == CallOutcome::TooLarge {
            DeadLetterReason::TooLargeForEndpoint
        } else {
            DeadLetterReason::Rejected
        };
        for r in recs {
            self.reject(&r, reason, detail).await;
            self.progress.settled(u64::from(r.meta.lines));
            ended.settled.push(r.batch);
        }
    }

    /// One PutRecordBatch attempt. Each record's `Blob` shares the bytes of the line
    /// (a reference count, not a copy): a copy per record was a malloc, a memcpy and a
    /// free for every line shipped.
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
        self.lane_metrics().in_flight.inc();
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
        self.lane_metrics().in_flight.dec();
        classify(result)
    }

    /// Counts the accepted records of a 200 answer (their batches go to `settled`);
    /// returns the ones to resend and how many of those were throttled.
    fn tally_accepted(
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
            self.lane_metrics().call(CallOutcome::BadResponse);
            self.metrics.duplicates_possible.inc_by(recs.len() as u64);
            return (recs, 0);
        }
        let mut failed = Vec::new();
        // The accepted records' sources and lines, counted per source once the loop ends.
        let mut accepted = Vec::with_capacity(recs.len());
        let mut throttled = 0usize;
        // Summed here and added once per call: four atomic adds per record add up.
        let (mut records, mut lines, mut bytes, mut billed) = (0u64, 0u64, 0u64, 0u64);
        for (r, code) in recs.into_iter().zip(codes) {
            match code {
                None => {
                    let len = r.data.len() as u64;
                    records += 1;
                    lines += u64::from(r.meta.lines);
                    accepted.push((r.meta.source, r.meta.lines));
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
        self.metrics.count_by_source(
            accepted.iter().map(|&(source, n)| (source, u64::from(n))),
            |s| &s.lines_shipped,
        );
        // The ledger's own count, for the drain report to check the counters against;
        // here rather than when the queue learns of the call, so that a call cut by the
        // deadline in its backoff has counted its accepted lines in both or neither.
        self.progress.settled(lines);
        self.metrics.bytes_shipped.inc_by(bytes);
        self.metrics.billable_bytes.inc_by(billed);
        self.lane_metrics().call(if failed.is_empty() {
            CallOutcome::Ok
        } else {
            CallOutcome::Partial
        });
        if !failed.is_empty() {
            self.lane_metrics()
                .records_retried
                .inc_by(failed.len() as u64);
            self.lane_metrics().throttled.inc_by(throttled as u64);
            self.lane_metrics()
                .throttled_records
                .inc_by(throttled as u64);
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
    /// is `Rejected` (Firehose's `InvalidArgumentException`) or
    /// `TooLargeForEndpoint` (HTTP 413 for one record, which Firehose itself does
    /// not answer for a record within its 1,000 KiB limit).
    async fn reject(&self, r: &Rec, reason: DeadLetterReason, detail: &Detail) {
        let meta = r.meta;
        let data = &r.data;
        let file = self.progress.path_of(meta.file);
        if reason == DeadLetterReason::TooLargeForEndpoint {
            if let Some(records) = self.too_large_log.note(1) {
                log_answer!(error, detail, file = %file.display(), offset = meta.offset, size = data.len(), reason = reason.as_str(), records, "A single record was answered 413 (too large); the likely cause is a proxy's request body limit in front of Firehose (nginx client_max_body_size, an ingress or egress gateway): a record of 1,000 KiB takes ~1.4 MB as base64 JSON. Writing it to the dead-letter file.");
            }
        } else {
            log_answer!(error, detail, file = %file.display(), offset = meta.offset, size = data.len(), reason = reason.as_str(), "Firehose rejected a record on its own; writing it to the dead-letter file.");
        }
        self.dead_letter
            .write_retrying(&file, meta.offset, reason, data, data.len() as u64)
            .await;
        self.dead_letter.sync().await;
        self.metrics
            .source(meta.source)
            .dead_letter(reason, u64::from(meta.lines));
    }
}
