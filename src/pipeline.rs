//! pipeline: the wiring — starts tail → batch → ship and the checkpoint writer,
//! watches every task, and owns the one shutdown path (docs/design.md#pipeline,
//! docs/design.md#shutdown-and-drain).
//!
//! The first signal starts the drain: the tail reads to the end of the file, waits for
//! `--drain-quiet` without new bytes, finishes and drops its sender; the batch stage
//! flushes at once and drops its own; the ship stage ends when its last call ends. The
//! whole drain runs under `--drain-timeout`; then the final checkpoint is written and
//! one drain report is logged. Channels are bounded and small: the file is the buffer.
//!
//! Every task is watched from start to exit. One that fails — an error, a panic, or
//! an end before the drain — is an ERROR naming it; the drain still ships what was
//! read, and the report's `failed_task` makes the exit code 1.
//!
//! This file starts the stages and runs the script ([`run`]); `drain` watches them
//! and ends them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::batch::{self, BatchSettings};
use crate::checkpoint::{self, Checkpointer};
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::flush_clock::{Due, Pace};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::progress::{FileEntry, Progress};
use crate::report::{log_report, report, Report};
use crate::ship::{self, ShipSettings, Shipper};
use crate::tail::{self, Follower, TailSettings};
use drain::{Failure, Stop};

mod drain;

/// Line chunks between tail and batch: each is up to one poll's read (≤ 256 KiB); one
/// waiting chunk keeps the batch stage busy while the tail reads the next, and bounds
/// the lines in transit to well under a MiB.
const LINE_CHANNEL: usize = 1;
/// Batches between batch and ship: ship pulls one when it has a free call slot, so
/// one waiting batch keeps the slots busy without buffering more.
const BATCH_CHANNEL: usize = 1;

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
    // Starting waits while the checkpoint cannot be read (EACCES, EIO). A signal then
    // ends the wait: nothing was read, so nothing is lost, but nothing was shipped. A
    // signal while starting otherwise is kept and starts the drain once started.
    let health = observed.health.clone();
    let start = Pipeline::start(&config, client, observed);
    tokio::pin!(start);
    let mut early = None;
    let mut pipeline = loop {
        if let Some(name) = early {
            if health.checkpoint_unreadable.load(Ordering::Relaxed) {
                anyhow::bail!(
                    "{name} arrived while the checkpoint could not be read; nothing was read or shipped, and a restart with a readable checkpoint ships it"
                );
            }
        }
        tokio::select! {
            biased;
            started = &mut start => break started?,
            Some(name) = signals.recv(), if early.is_none() => early = Some(name),
            // The load may find the checkpoint unreadable after the signal came.
            _ = tokio::time::sleep(Duration::from_millis(100)), if early.is_some() => {}
        }
    };
    let stop = match early {
        Some(name) => Stop::Signal(name),
        None => pipeline.running(&mut signals).await,
    };
    let started = Instant::now();
    let (drain_end, failures) = pipeline.drain(&config, stop, &mut signals).await;
    pipeline.final_checkpoint(&config).await;
    let mut report = report(
        &pipeline.metrics,
        &pipeline.progress,
        started.elapsed(),
        drain_end,
    );
    if !failures.is_empty() {
        let join = |f: fn(&Failure) -> String| failures.iter().map(f).collect::<Vec<_>>();
        report.failed_task = Some(join(|f| f.task.to_string()).join(","));
        report.failed_error = Some(join(|f| format!("{}: {:#}", f.task, f.error)).join("; "));
    }
    log_report(&pipeline.metrics, &report);
    Ok(report)
}

/// The running stages and what they share.
///
/// Every task is watched from start to exit: one that ends on an error or a panic, or
/// ends when it should not, is a [`Failure`] — an ERROR naming it, exit 1, and its
/// name in the drain report. `None` once a task has been waited for.
struct Pipeline {
    tail: Option<JoinHandle<anyhow::Result<()>>>,
    batcher: Option<JoinHandle<anyhow::Result<()>>>,
    ship: Option<JoinHandle<anyhow::Result<()>>>,
    writer: Option<JoinHandle<Checkpointer>>,
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
    async fn start(
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
        let dead_letter = Arc::new(DeadLetter::new(
            &config.dead_letter,
            config.dead_letter_max_bytes,
            metrics.clone(),
        ));
        let mut checkpointer = Checkpointer::new(&config.checkpoint, metrics.clone());
        let resume_from = checkpointer.load_retrying(&health).await;
        let follower = follow(config, &resume_from, &progress, &metrics, &health)?;
        log_start(config, addr, resume_from.len());

        let (drain_tx, drain_rx) = watch::channel(false);
        let (line_tx, line_rx) = mpsc::channel(LINE_CHANNEL);
        let (batch_tx, batch_rx) = mpsc::channel(BATCH_CHANNEL);
        // The flush clock: the batch stage publishes when the open batch is due (`due`)
        // for the tail; the ship stage sets the flush interval (`pace`) for the batch stage.
        let due = Arc::new(Due::new());
        let pace = Arc::new(Pace::new(config.flush_interval));
        let (quiet, following) = (config.drain_quiet, health.following.clone());
        let cadence = tail::Cadence::new(config.flush_interval, due.clone());
        let tail = tokio::spawn(async move {
            tail::run(follower, line_tx, drain_rx, quiet, cadence, following).await?;
            Ok(())
        });
        let settings = BatchSettings {
            aggregate: config.aggregate,
            aggregate_max_lines: config.aggregate_max_lines,
            invalid_json: config.invalid_json,
            pace: pace.clone(),
            due,
        };
        let batcher = tokio::spawn({
            let (progress, metrics, dead_letter) =
                (progress.clone(), metrics.clone(), dead_letter.clone());
            async move {
                batch::run(line_rx, batch_tx, settings, progress, metrics, dead_letter).await;
                Ok(())
            }
        });
        let shipper = Shipper::new(
            client,
            0,
            config.adaptive,
            progress.clone(),
            metrics.clone(),
            health.clone(),
            dead_letter,
        );
        let ship = tokio::spawn(ship::run(
            batch_rx,
            Arc::new(shipper),
            ShipSettings {
                max_in_flight: config.max_in_flight,
                adaptive: config.adaptive,
                flush_interval: config.flush_interval,
                pace,
            },
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        let writer = tokio::spawn(checkpoint::run(checkpointer, progress.clone(), stop_rx));
        metrics.sample_age({
            let progress = progress.clone();
            move || progress.oldest_unacked_age()
        });
        Ok(Pipeline {
            tail: Some(tail),
            batcher: Some(batcher),
            ship: Some(ship),
            writer: Some(writer),
            drain_tx,
            stop_tx,
            progress,
            metrics,
            health,
        })
    }
}

/// The tail's follower, resumed from the checkpoint's entries.
fn follow(
    config: &Config,
    resume_from: &[FileEntry],
    progress: &Arc<Progress>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> anyhow::Result<Follower> {
    tail::raise_nofile_limit();
    let settings = TailSettings {
        path: config.path.clone(),
        read_from: config.read_from,
        rotate_wait: config.rotate_wait,
        own_files: vec![config.checkpoint.clone(), config.dead_letter.clone()],
        source: 0,
        source_name: "default".to_string(),
    };
    Follower::new(
        &settings,
        resume_from,
        progress.clone(),
        metrics.clone(),
        health.clone(),
    )
    .with_context(|| format!("cannot follow {}", config.path.display()))
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
        aggregate_max_lines = config.aggregate_max_lines,
        invalid_json = config.invalid_json.name(),
        max_in_flight = config.max_in_flight,
        adaptive = config.adaptive,
        call_timeout = hd(config.call_timeout),
        metrics_addr = %addr,
        checkpointed_files,
        "firetail started."
    );
}
