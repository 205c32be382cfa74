//! firetail follows the JSON-lines log files an application's containers write (one
//! path, or several sources, each a path or a glob and its stream), ships every line
//! to Amazon Data Firehose with `PutRecordBatch`, and, when Kubernetes tells it to
//! stop, ships everything still unshipped before it exits.
//!
//! # Layout
//!
//! ```text
//!            Vec<Line>                  Batch (≤500 rec, ≤4 MiB)          spans acked
//!  tail ─────────────────▶ batch ─────────────────────────▶ ship ─────────────▶ checkpoint
//!  inotify + slow poll      classify, dead-letter,           PutRecordBatch,       highest offset below
//!  complete lines only      cut when full or due             resend failed only    which all is acked
//! ```
//!
//! One such lane runs per delivery stream, for the sources that ship to it; the
//! lanes share the ledger, the metrics, the dead-letter file and the checkpoint.
//!
//! Imports run downward, in the order of this map: the wiring imports the stages; a
//! stage imports no other stage (each takes what the one before hands it, a
//! [`handover`] type), only the dead-letter sink and the shared modules; a shared
//! module imports only shared modules below it.
//!
//! The wiring:
//! - [`pipeline`]: starts each stream's lane, watches every task, owns the one
//!   shutdown path.
//! - [`report`](mod@report): the drain report, the exit code it implies, and the
//!   termination message Kubernetes shows.
//! - [`shutdown`]: the SIGTERM/SIGINT handlers.
//!
//! The stages, in the order lines flow:
//! - [`tail`]: the files of a lane's sources → lines; globs, rotation, truncation,
//!   restart from the checkpoint.
//! - [`batch`]: lines → batches within Firehose's limits; bad lines sorted out; the
//!   pod's fields spliced into each JSON object line.
//! - [`ship`]: batches → Firehose; classification, retries, bisection, in-flight bound.
//! - [`checkpoint`]: acknowledgements → the checkpoint file (atomic, batched writes),
//!   and the file's on-disk format (and the migration of older versions).
//! - [`deadletter`]: the file for lines Firehose can never take (batch and ship write
//!   to it).
//!
//! Shared below the stages:
//! - [`config`]: flags and `FIRETAIL_*` variables → a validated `Config` (exit 2 on
//!   error).
//! - [`handover`]: what one stage hands the next — a `Line`, a `Batch` of records.
//! - [`progress`]: the ledger — file keys, identities, spans, acknowledged and durable
//!   offsets, the duplicate window.
//! - [`flush_clock`]: when a batch is due — the flush interval in effect, its jitter,
//!   and the deadline the batch stage publishes for the tail.
//! - [`metrics`]: Prometheus series and the `/metrics`, `/healthz`, `/readyz` listener.
//! - [`health`]: what the probes answer from.
//! - [`log_throttle`]: one log line per interval for an event that repeats.
//! - [`outcome`]: the closed sets of dead-letter reasons, skip reasons, call outcomes
//!   and drain ends, as metrics, logs and the report spell them.
//! - [`firehose`]: the service's limits and billing, each with its source.
//! - [`store`]: the few file operations checkpoint and dead-letter need, behind a
//!   trait so tests can make the disk fail.
//! - [`wait`]: backoff between retries, and sleeping until a deadline that may not be.
//!
//! Where each rule comes from, and why: docs/design.md.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod deadletter;
pub mod firehose;
pub mod flush_clock;
pub mod handover;
pub mod health;
pub mod log_throttle;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod ship;
pub mod shutdown;
pub mod store;
pub mod tail;
pub mod wait;

pub use pipeline::{run, Observed};
pub use report::Report;
