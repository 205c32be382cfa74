//! firetail follows one JSON-lines log file written by an application container, ships
//! every line to Amazon Data Firehose with `PutRecordBatch`, and, when Kubernetes tells
//! it to stop, ships everything still unshipped before it exits.
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
//! - [`config`]: flags and `FIRETAIL_*` variables → a validated `Config` (exit 2 on error).
//! - [`tail`]: the file → lines; rotation, truncation, restart from the checkpoint.
//! - [`batch`]: lines → batches within Firehose's limits; bad lines sorted out.
//! - [`ship`]: batches → Firehose; classification, retries, bisection, in-flight bound.
//! - [`checkpoint`]: acknowledgements → the checkpoint file (atomic, batched writes).
//! - [`deadletter`]: the file for lines Firehose can never take.
//! - [`metrics`]: Prometheus series and the `/metrics`, `/healthz`, `/readyz` listener.
//! - [`shutdown`]: the SIGTERM/SIGINT handlers.
//! - [`run`] (here): wires the stages and owns the one shutdown path.
//!
//! # Shutdown
//!
//! The first signal starts the drain: the tail reads to the end of the file, waits for
//! `--drain-quiet` without new bytes, finishes and drops its sender; the batch stage
//! flushes at once and drops its own; the ship stage ends when its last call ends. The
//! whole drain runs under `--drain-timeout`; then the final checkpoint is written and
//! one drain report is logged. Channels are bounded and small: the file is the buffer.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod deadletter;
pub mod metrics;
pub mod progress;
pub mod ship;
pub mod shutdown;
pub mod tail;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::checkpoint::Checkpointer;
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::metrics::{Health, Metrics, Reason};
use crate::progress::{Progress, Unacknowledged};
use crate::ship::Shipper;
use crate::tail::Follower;

/// Line chunks between tail and batch: each is up to one poll's read (≤ 256 KiB); one
/// waiting chunk keeps the batch stage busy while the tail reads the next, and bounds
/// the lines in transit to well under a MiB.
const LINE_CHANNEL: usize = 1;
/// Batches between batch and ship: ship pulls one when it has a free call slot, so
/// one waiting batch keeps the slots busy without buffering more.
const BATCH_CHANNEL: usize = 1;
/// The drain logs its progress at most this often.
const DRAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What happened to every line, logged once at exit (the drain report).
#[derive(Debug, Serialize)]
pub struct Report {
    pub lines_read: u64,
    pub lines_shipped: u64,
    pub records_shipped: u64,
    pub dead_lettered_oversize: u64,
    pub dead_lettered_invalid_json: u64,
    pub dead_lettered_rejected: u64,
    pub skipped_header: u64,
    pub skipped_empty: u64,
    pub undelivered: u64,
    pub duplicates_possible: u64,
    pub checkpoint_offset: Option<u64>,
    pub drain_seconds: f64,
    /// How the drain ended: `drained`, `deadline`, `second_signal`, `error`.
    pub drain_end: &'static str,
    #[serde(skip)]
    pub unacknowledged: Vec<Unacknowledged>,
}

impl Report {
    /// 0 when every line read was shipped, dead-lettered or skipped, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.undelivered == 0 && self.drain_end == "drained" {
            0
        } else {
            1
        }
    }
}

/// Why the running phase ended.
enum Stop {
    Signal(&'static str),
    TailFailed(anyhow::Error),
}

/// What the operator sees, made before the agent starts so the probes answer (503)
/// while it starts.
pub struct Observed {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub addr: std::net::SocketAddr,
}

/// Runs the agent until a signal arrives on `signals` and the drain ends. Reads like
/// the script it is: start the stages, wait for the signal, drain under the deadline,
/// write the final checkpoint, report.
pub async fn run(
    config: Config,
    client: aws_sdk_firehose::Client,
    observed: Observed,
    mut signals: mpsc::Receiver<&'static str>,
) -> anyhow::Result<Report> {
    let mut pipeline = Pipeline::start(&config, client, observed)?;
    let stop = tokio::select! {
        name = signals.recv() => Stop::Signal(name.unwrap_or("signal channel closed")),
        res = &mut pipeline.tail => Stop::TailFailed(match res {
            Ok(Ok(())) => anyhow::anyhow!("the tail stage ended without a signal"),
            Ok(Err(e)) => anyhow::Error::new(e),
            Err(e) => anyhow::Error::new(e),
        }),
    };
    let started = Instant::now();
    let (drain_end, fatal) = pipeline.drain(&config, stop, &mut signals).await;
    pipeline.final_checkpoint(&config).await?;
    let report = report(
        &pipeline.metrics,
        &pipeline.progress,
        started.elapsed(),
        drain_end,
    );
    log_report(&pipeline.metrics, &report);
    match fatal {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The running stages and what they share.
struct Pipeline {
    tail: JoinHandle<std::io::Result<()>>,
    batcher: JoinHandle<()>,
    ship: JoinHandle<()>,
    writer: JoinHandle<Checkpointer>,
    /// Tells the tail the drain started.
    drain_tx: watch::Sender<bool>,
    /// Tells the checkpoint writer to hand itself back for the final write.
    stop_tx: watch::Sender<bool>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Pipeline {
    /// Resumes from the checkpoint and spawns tail → batch → ship, and the checkpoint
    /// writer beside them.
    fn start(
        config: &Config,
        client: aws_sdk_firehose::Client,
        observed: Observed,
    ) -> anyhow::Result<Pipeline> {
        let Observed {
            metrics,
            health,
            addr,
        } = observed;
        let progress = Arc::new(Progress::new(
            config.max_unacked_bytes,
            crate::progress::Gauges {
                unacked: metrics.unacked_bytes.clone(),
                lag: metrics.lag_bytes.clone(),
            },
        ));
        let dead_letter = Arc::new(DeadLetter::new(&config.dead_letter));
        let mut checkpointer = Checkpointer::new(&config.checkpoint, metrics.clone());
        let resume_from = checkpointer.load();
        tail::raise_nofile_limit();
        let settings = tail::Settings {
            path: config.path.clone(),
            read_from: config.read_from,
            rotate_wait: config.rotate_wait,
            own_files: vec![config.checkpoint.clone(), config.dead_letter.clone()],
        };
        let follower = Follower::new(
            &settings,
            &resume_from,
            progress.clone(),
            metrics.clone(),
            health.clone(),
        )
        .with_context(|| format!("cannot follow {}", config.path.display()))?;
        log_start(config, addr, resume_from.len());

        let (drain_tx, drain_rx) = watch::channel(false);
        let (line_tx, line_rx) = mpsc::channel(LINE_CHANNEL);
        let (batch_tx, batch_rx) = mpsc::channel(BATCH_CHANNEL);
        let tail = tokio::spawn(tail::run(
            follower,
            line_tx,
            drain_rx,
            config.drain_quiet,
            health.following.clone(),
        ));
        let settings = batch::Settings {
            aggregate: config.aggregate,
            invalid_json: config.invalid_json,
            flush_interval: config.flush_interval,
        };
        let batcher = tokio::spawn(batch::run(
            line_rx,
            batch_tx,
            settings,
            progress.clone(),
            metrics.clone(),
            dead_letter.clone(),
        ));
        let shipper = Shipper::new(
            client,
            config.stream.clone(),
            progress.clone(),
            metrics.clone(),
            health.clone(),
            dead_letter,
        );
        let ship = tokio::spawn(ship::run(batch_rx, Arc::new(shipper), config.max_in_flight));
        let (stop_tx, stop_rx) = watch::channel(false);
        let writer = tokio::spawn(checkpoint::run(checkpointer, progress.clone(), stop_rx));
        Ok(Pipeline {
            tail,
            batcher,
            ship,
            writer,
            drain_tx,
            stop_tx,
            progress,
            metrics,
            health,
        })
    }

    /// The one shutdown path: tell the tail, then wait — under `--drain-timeout`, and
    /// until a second signal at most — for the ship stage to end, which it does once
    /// every stage before it has flushed and dropped its sender. Returns how the drain
    /// ended and the fatal error that started it, if one did.
    async fn drain(
        &mut self,
        config: &Config,
        stop: Stop,
        signals: &mut mpsc::Receiver<&'static str>,
    ) -> (&'static str, Option<anyhow::Error>) {
        self.health.draining.store(true, Ordering::Relaxed);
        let _ = self.drain_tx.send(true);
        let started = Instant::now();
        let deadline = started + config.drain_timeout;
        let fatal = match stop {
            Stop::Signal(name) => {
                tracing::info!(
                    signal = name,
                    drain_timeout = %humantime::format_duration(config.drain_timeout),
                    drain_quiet = %humantime::format_duration(config.drain_quiet),
                    "Drain started: reading to the end of the file, then shipping the rest."
                );
                None
            }
            Stop::TailFailed(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "Reading the log file failed; shipping what was read, then exiting 1."
                );
                Some(e)
            }
        };
        let mut tick =
            tokio::time::interval_at(started + DRAIN_PROGRESS_EVERY, DRAIN_PROGRESS_EVERY);
        let end = loop {
            tokio::select! {
                _ = &mut self.ship => break "drained",
                _ = tokio::time::sleep_until(deadline) => break "deadline",
                Some(name) = signals.recv() => {
                    tracing::warn!(signal = name, "Second signal: ending the drain now.");
                    break "second_signal";
                }
                _ = tick.tick() => tracing::info!(
                    lines_left = self.metrics.lines_read.get().saturating_sub(settled(&self.metrics)),
                    seconds_left = deadline.saturating_duration_since(Instant::now()).as_secs_f64(),
                    "Drain in progress."
                ),
            }
        };
        self.tail.abort();
        self.batcher.abort();
        self.ship.abort();
        match (end, fatal) {
            ("drained", Some(e)) => ("error", Some(e)),
            (end, fatal) => (end, fatal),
        }
    }

    /// Acknowledged offsets only: what was not delivered stays ahead of the
    /// checkpoint, for a restart to ship.
    async fn final_checkpoint(&mut self, config: &Config) -> anyhow::Result<()> {
        let _ = self.stop_tx.send(true);
        let mut checkpointer = (&mut self.writer).await.context("checkpoint writer task")?;
        if let Err(e) = checkpointer.write(&self.progress) {
            tracing::error!(file = %config.checkpoint.display(), error = %e, "Cannot write the final checkpoint; a restart will ship acknowledged lines again.");
        }
        Ok(())
    }
}

/// The start-up line: the effective configuration.
fn log_start(config: &Config, addr: std::net::SocketAddr, checkpointed_files: usize) {
    let hd = |d: Duration| humantime::format_duration(d).to_string();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        path = %config.path.display(),
        stream = %config.stream,
        flush_interval = hd(config.flush_interval),
        checkpoint = %config.checkpoint.display(),
        dead_letter = %config.dead_letter.display(),
        drain_timeout = hd(config.drain_timeout),
        drain_quiet = hd(config.drain_quiet),
        read_from = config.read_from.name(),
        aggregate = config.aggregate,
        invalid_json = config.invalid_json.name(),
        max_in_flight = config.max_in_flight,
        call_timeout = hd(config.call_timeout),
        metrics_addr = %addr,
        checkpointed_files,
        "firetail started."
    );
}

/// The drain report (one INFO line a chaos test can assert on), and an ERROR first
/// when lines were left undelivered.
fn log_report(metrics: &Metrics, report: &Report) {
    metrics.drain_seconds.set(report.drain_seconds);
    metrics.undelivered_lines.set(report.undelivered as i64);
    if report.undelivered > 0 {
        tracing::error!(
            undelivered = report.undelivered,
            unacknowledged = %serde_json::to_string(&report.unacknowledged).unwrap_or_default(),
            drain_end = report.drain_end,
            "Lines left undelivered; they stay unacknowledged in the checkpoint and a restart on it ships them."
        );
    }
    tracing::info!(
        lines_read = report.lines_read,
        lines_shipped = report.lines_shipped,
        records_shipped = report.records_shipped,
        dead_lettered_oversize = report.dead_lettered_oversize,
        dead_lettered_invalid_json = report.dead_lettered_invalid_json,
        dead_lettered_rejected = report.dead_lettered_rejected,
        skipped_header = report.skipped_header,
        skipped_empty = report.skipped_empty,
        undelivered = report.undelivered,
        duplicates_possible = report.duplicates_possible,
        checkpoint_offset = report.checkpoint_offset,
        drain_seconds = report.drain_seconds,
        drain_end = report.drain_end,
        "Drain report."
    );
}

fn reason(
    f: &prometheus_client::metrics::family::Family<
        Reason,
        prometheus_client::metrics::counter::Counter,
    >,
    reason: &'static str,
) -> u64 {
    f.get_or_create(&Reason { reason }).get()
}

/// Lines that reached their end: shipped, dead-lettered or skipped.
fn settled(m: &Metrics) -> u64 {
    m.lines_shipped.get()
        + ["oversize", "invalid_json", "rejected"]
            .iter()
            .map(|r| reason(&m.dead_lettered, r))
            .sum::<u64>()
        + ["header", "empty"]
            .iter()
            .map(|r| reason(&m.skipped, r))
            .sum::<u64>()
}

fn report(m: &Metrics, progress: &Progress, drain: Duration, drain_end: &'static str) -> Report {
    Report {
        lines_read: m.lines_read.get(),
        lines_shipped: m.lines_shipped.get(),
        records_shipped: m.records_shipped.get(),
        dead_lettered_oversize: reason(&m.dead_lettered, "oversize"),
        dead_lettered_invalid_json: reason(&m.dead_lettered, "invalid_json"),
        dead_lettered_rejected: reason(&m.dead_lettered, "rejected"),
        skipped_header: reason(&m.skipped, "header"),
        skipped_empty: reason(&m.skipped, "empty"),
        undelivered: m.lines_read.get().saturating_sub(settled(m)),
        duplicates_possible: m.duplicates_possible.get(),
        checkpoint_offset: progress.current_offset(),
        drain_seconds: drain.as_secs_f64(),
        drain_end,
        unacknowledged: progress.unacknowledged(),
    }
}
