//! Which records go in the next call, and when.
//!
//! One loop owns the records between the batch stage and Firehose: new batches, and
//! records that come back from a call to be sent again. It starts a call whenever a
//! slot is free (the in-flight limit) and the send rate allows, filling it up to the
//! batch cut — 500 records or 1 MiB — from the records waiting, resent ones first.
//! So while calls wait for a slot or a retry, what waits coalesces into full calls
//! instead of many small ones (docs/design.md#firehose-rules), and a resent record
//! rides along with new ones. It takes a new batch only while less than one call's worth waits, so
//! memory stays bounded and the batch stage (and the tail) wait instead.
//!
//! A batch is acknowledged to [`Progress`] when its last record is settled, whatever
//! order the calls end in: the checkpoint only moves past contiguous acknowledged
//! offsets, so calls need no order between them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::control::{Allow, Control};
use super::{Ended, Rec, Shipper};
use crate::firehose::{BATCH_BYTES, MAX_BATCH_RECORDS};
use crate::flush_clock::Pace;
use crate::handover::Batch;
use crate::metrics::StreamMetrics;
use crate::progress::{Progress, Span};
use crate::wait::sleep_until_opt;

/// What the ship stage is told at start.
pub struct ShipSettings {
    pub max_in_flight: usize,
    pub adaptive: bool,
    pub flush_interval: Duration,
    /// Where the effective flush interval is published for the batch stage.
    pub pace: Arc<Pace>,
}

/// A batch whose records are out: acknowledged when `left` reaches 0.
struct Owner {
    left: usize,
    spans: Vec<Span>,
}

/// The records waiting for a call, and the batches they settle.
#[derive(Default)]
struct Queue {
    /// Halves of refused calls: each is sent as it is, alone.
    alone: VecDeque<Vec<Rec>>,
    recs: VecDeque<Rec>,
    bytes: usize,
    owners: HashMap<u64, Owner>,
    next_batch: u64,
}

impl Queue {
    /// Less than one call's worth waits: take another batch.
    fn has_room(&self) -> bool {
        self.recs.len() < MAX_BATCH_RECORDS && self.bytes < BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.alone.is_empty() && self.recs.is_empty()
    }

    /// Records the next call would carry, for the rate's decision.
    fn next_len(&self) -> usize {
        match self.alone.front() {
            Some(half) => half.len(),
            None => self.recs.len().min(MAX_BATCH_RECORDS),
        }
    }

    fn push_batch(&mut self, batch: Batch, progress: &Progress) {
        if batch.records.is_empty() {
            // Only skipped or dead-lettered lines: settled already.
            progress.ack(&batch.spans);
            return;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        self.owners.insert(
            id,
            Owner {
                left: batch.records.len(),
                spans: batch.spans,
            },
        );
        for (data, meta) in batch.records.into_iter().zip(batch.meta) {
            self.bytes += data.len();
            self.recs.push_back(Rec {
                data,
                meta,
                batch: id,
                tries: 0,
            });
        }
    }

    /// Records sent again go first: they are the oldest.
    fn push_front(&mut self, again: Vec<Rec>) {
        for r in again.into_iter().rev() {
            self.bytes += r.data.len();
            self.recs.push_front(r);
        }
    }

    /// The next call's records, at most `max` of them (a half to send alone is taken
    /// whole), and whether they must go alone.
    fn take(&mut self, max: usize) -> (Vec<Rec>, bool) {
        if let Some(half) = self.alone.pop_front() {
            return (half, true);
        }
        let (mut call, mut bytes) = (Vec::new(), 0);
        while let Some(r) = self.recs.front() {
            let full = call.len() >= max.min(MAX_BATCH_RECORDS);
            if full || (!call.is_empty() && bytes + r.data.len() > BATCH_BYTES) {
                break;
            }
            bytes += r.data.len();
            call.push(self.recs.pop_front().expect("front exists"));
        }
        self.bytes -= bytes;
        (call, false)
    }

    fn settle(&mut self, batches: &[u64], progress: &Progress) {
        for id in batches {
            let owner = self.owners.get_mut(id).expect("every record has its batch");
            owner.left -= 1;
            if owner.left == 0 {
                let owner = self.owners.remove(id).expect("present");
                progress.ack(&owner.spans);
            }
        }
    }

    fn ended(&mut self, ended: Ended, progress: &Progress) {
        self.settle(&ended.settled, progress);
        if let Some((first, second)) = ended.split {
            self.alone.push_front(second);
            self.alone.push_front(first);
        }
        if ended.alone {
            self.alone.push_front(ended.again);
        } else {
            self.push_front(ended.again);
        }
    }
}

/// Runs the ship stage until the batch channel closes and every record is settled. A
/// call that fails (a panic: a bug) ends the stage with an error, so the one shutdown
/// path reports it and exits 1 rather than leaving its lines unacknowledged without
/// a word.
pub async fn run(
    mut rx: mpsc::Receiver<Batch>,
    shipper: Arc<Shipper>,
    settings: ShipSettings,
) -> anyhow::Result<()> {
    let progress = shipper.progress.clone();
    let mut control = Control::new(
        settings.adaptive,
        settings.max_in_flight,
        settings.flush_interval,
        Instant::now(),
    );
    let mut queue = Queue::default();
    let mut calls = JoinSet::new();
    let mut open = true;
    loop {
        let wake = start_calls(&mut queue, &mut control, &mut calls, &shipper);
        publish(&control, &settings.pace, shipper.lane_metrics());
        if !queue.has_room() {
            control.backed_up(Instant::now());
        }
        if !open && queue.is_empty() && calls.is_empty() {
            return Ok(());
        }
        tokio::select! {
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                let ended = done.map_err(|e| anyhow::anyhow!("a delivery task failed: {e}"))?;
                control.observe(Instant::now(), ended.signal);
                queue.ended(ended, &progress);
            }
            batch = rx.recv(), if open && queue.has_room() => match batch {
                Some(b) => {
                    control.arrived(Instant::now(), b.records.len());
                    queue.push_batch(b, &progress);
                }
                None => {
                    open = false;
                    control.drain();
                }
            },
            _ = sleep_until_opt(wake) => {}
        }
    }
}

/// Starts every call that may start now; returns when to look again if the send
/// rate holds records back.
fn start_calls(
    queue: &mut Queue,
    control: &mut Control,
    calls: &mut JoinSet<Ended>,
    shipper: &Arc<Shipper>,
) -> Option<Instant> {
    while calls.len() < control.in_flight_limit() && !queue.is_empty() {
        match control.allow(Instant::now(), queue.next_len()) {
            Allow::Now(max) => {
                let (recs, alone) = queue.take(max);
                control.sent(recs.len());
                let shipper = shipper.clone();
                let in_flight = calls.len() + 1;
                calls.spawn(async move { shipper.attempt(recs, alone, in_flight).await });
            }
            Allow::At(t) => return Some(t),
        }
    }
    None
}

/// The adaptive values, as gauges and for the batch stage.
fn publish(control: &Control, pace: &Pace, metrics: &StreamMetrics) {
    let flush = control.flush_interval();
    pace.set(flush);
    metrics.flush_interval_seconds.set(flush.as_secs_f64());
    metrics
        .in_flight_limit
        .set(control.in_flight_limit() as i64);
    metrics.send_rate_limit.set(control.rate().unwrap_or(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::RecordMeta;
    use bytes::Bytes;

    fn progress() -> Progress {
        Progress::new(
            1 << 30,
            crate::progress::Gauges {
                unacked: Default::default(),
                lag: Default::default(),
            },
        )
    }

    fn batch(file: u32, n: usize, len: usize, start: u64) -> Batch {
        let mut b = Batch::default();
        for i in 0..n {
            b.records.push(Bytes::from(vec![b'x'; len]));
            b.meta.push(RecordMeta {
                source: 0,
                file,
                offset: start + (i * len) as u64,
                lines: 1,
            });
            b.bytes += len;
        }
        b.spans.push(Span {
            file,
            start,
            end: start + (n * len) as u64,
            lines: n as u64,
        });
        b
    }

    #[test]
    fn small_batches_coalesce_into_full_calls_and_resent_records_go_first() {
        let progress = progress();
        let mut q = Queue::default();
        for i in 0..3 {
            q.push_batch(batch(0, 200, 10, i * 2000), &progress);
        }
        assert!(!q.has_room());
        let (call, alone) = q.take(usize::MAX);
        assert!(!alone);
        assert_eq!(call.len(), MAX_BATCH_RECORDS);
        // Records of three batches in one call.
        assert_eq!(call.iter().map(|r| r.batch).max(), Some(2));
        let again: Vec<Rec> = call[..5].to_vec();
        let first_offset = again[0].meta.offset;
        q.ended(
            Ended {
                settled: call[5..].iter().map(|r| r.batch).collect(),
                again,
                ..Ended::default()
            },
            &progress,
        );
        let (next, _) = q.take(usize::MAX);
        assert_eq!(next[0].meta.offset, first_offset);
        assert_eq!(next.len(), 105);
    }

    #[test]
    fn a_batch_is_acknowledged_only_when_its_last_record_settles() {
        let progress = progress();
        let mut q = Queue::default();
        q.push_batch(batch(0, 3, 10, 0), &progress);
        let (call, _) = q.take(usize::MAX);
        let ids: Vec<u64> = call.iter().map(|r| r.batch).collect();
        q.settle(&ids[..2], &progress);
        assert!(q.owners.contains_key(&0));
        q.settle(&ids[2..], &progress);
        assert!(q.owners.is_empty());
    }

    #[test]
    fn the_rate_caps_a_call_and_halves_go_alone() {
        let progress = progress();
        let mut q = Queue::default();
        q.push_batch(batch(0, 100, 10, 0), &progress);
        let (call, _) = q.take(7);
        assert_eq!(call.len(), 7);
        let (a, b) = (call[..3].to_vec(), call[3..].to_vec());
        q.ended(
            Ended {
                split: Some((a, b)),
                ..Ended::default()
            },
            &progress,
        );
        assert_eq!(q.next_len(), 3);
        let (first, alone) = q.take(1);
        assert!(alone);
        assert_eq!(first.len(), 3);
        let (second, alone) = q.take(usize::MAX);
        assert!(alone);
        assert_eq!(second.len(), 4);
        let (rest, alone) = q.take(usize::MAX);
        assert!(!alone);
        assert_eq!(rest.len(), 93);
    }

    #[test]
    fn a_call_never_exceeds_the_byte_cut() {
        let progress = progress();
        let mut q = Queue::default();
        q.push_batch(batch(0, 3, 400_000, 0), &progress);
        let (call, _) = q.take(usize::MAX);
        assert_eq!(call.len(), 2);
        assert!(call.iter().map(|r| r.data.len()).sum::<usize>() <= BATCH_BYTES);
    }
}
