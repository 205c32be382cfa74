//! ship: batches → `PutRecordBatch` → acknowledgements.
//!
//! Input: [`Batch`](crate::batch::Batch)es from the batch stage. Output: every batch's
//! spans acknowledged to [`Progress`](crate::progress::Progress) once each of its
//! records was accepted by Firehose or written to the dead-letter file.
//!
//! One concern per module, the way a sink is built:
//! - [`queue`]: which records go in the next call, and when ([`run`], the stage's loop);
//! - [`control`]: how many calls and records per second a shared stream takes;
//! - [`call`]: one call — the attempt, its answer, what becomes of each record;
//! - [`answer`]: what an answer means, classified on its HTTP status and error code;
//! - [`client`]: the Firehose client, with its timeouts.
//!
//! Every answer is classified on HTTP status plus the error code string
//! (docs/design.md#firehose-rules):
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
//! it waits), and the drain deadline in [`crate::pipeline`] is what bounds it at
//! shutdown. Records to resend go back to the front of the queue and ride in the next
//! call with new ones: the checkpoint needs no order between calls.

use bytes::Bytes;

use crate::handover::RecordMeta;

pub mod answer;
pub mod call;
pub mod client;
pub mod control;
pub mod queue;
pub use call::Shipper;
pub use client::client;
pub use control::Signal;
pub use queue::{run, ShipSettings};

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
