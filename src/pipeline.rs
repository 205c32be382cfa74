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

use crate::batch::{self, BatchSettings, FieldSettings};
use crate::checkpoint::{self, Checkpointer};
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::flush_clock::{Due, Pace};
use crate::handover::SourceId;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::progress::{FileEntry, Progress};
use crate::report::{log_report, report, Report};
use crate::ship::{self, ShipSettings, Shipper};
use crate::tail::{self, SourceSpec, Tail, TailSettings};
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
/// One *lane* per stream: a tail (the files of every source shipping to that stream),
/// a batch stage and a ship stage with its own adaptive control, since each stream has
/// its own quota. A throttled stream fills only its own lane's channels; the per-file
/// share of the duplicate window keeps its files from taking the others' room. The
/// lanes share the ledger, the metrics, the dead-letter file and the checkpoint writer
/// (docs/design.md#sources).
///
/// Every task is watched from start to exit: one that ends on an error or a panic, or
/// ends when it should not, is a [`Failure`] — an ERROR naming it, exit 1, and its
/// name in the drain report.
struct Pipeline {
    tails: Stage,
    batchers: Stage,
    ships: Stage,
    writer: Option<JoinHandle<Checkpointer>>,
    /// Tells the tails the drain started.
    drain_tx: watch::Sender<bool>,
    /// Tells the checkpoint writer to hand itself back for the final write.
    stop_tx: watch::Sender<bool>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// One stage's task in every lane; each ends with its lane's stream named in its error.
type Stage = tokio::task::JoinSet<anyhow::Result<()>>;

/// The sources that ship to one stream, by their index in `config.sources`.
struct Lane {
    stream: String,
    sources: Vec<SourceId>,
}

/// The lanes, one per distinct stream, in the order the sources name them.
fn lanes(config: &Config) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = Vec::new();
    for (id, source) in config.sources.iter().enumerate() {
        let id = id as SourceId;
        match lanes.iter_mut().find(|l| l.stream == source.stream) {
            Some(lane) => lane.sources.push(id),
            None => lanes.push(Lane {
                stream: source.stream.clone(),
                sources: vec![id],
            }),
        }
    }
    lanes
}

/// What every lane shares.
struct Shared {
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    dead_letter: Arc<DeadLetter>,
    client: aws_sdk_firehose::Client,
    /// Files open over every lane's tail, for `--max-files`.
    open_files: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pipeline {
    /// Resumes from the checkpoint and spawns every lane's tail → batch → ship, and the
    /// checkpoint writer beside them.
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
        let sources: Vec<_> = config.sources.iter().map(|s| (&s.name, &s.path)).collect();
        let mut checkpointer =
            Checkpointer::new(&config.checkpoint, metrics.clone()).with_sources(&sources);
        let resume_from = checkpointer.load_retrying(&health).await;
        tail::raise_nofile_limit();
        log_start(config, addr, resume_from.len());
        let (drain_tx, drain_rx) = watch::channel(false);
        let shared = Shared {
            progress: progress.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            dead_letter,
            client,
            open_files: Arc::default(),
        };
        let (mut tails, mut batchers, mut ships) = (Stage::new(), Stage::new(), Stage::new());
        for lane in lanes(config) {
            let tasks = start_lane(config, &lane, &resume_from, &shared, drain_rx.clone())?;
            tails.spawn(tasks.tail);
            batchers.spawn(tasks.batch);
            ships.spawn(tasks.ship);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let writer = tokio::spawn(checkpoint::run(checkpointer, progress.clone(), stop_rx));
        metrics.sample_age({
            let progress = progress.clone();
            move || progress.oldest_unacked_age()
        });
        Ok(Pipeline {
            tails,
            batchers,
            ships,
            writer: Some(writer),
            drain_tx,
            stop_tx,
            progress,
            metrics,
            health,
        })
    }
}

/// One stage's work in one lane; its error names the lane's stream.
type Task = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// One lane's three stages.
struct LaneTasks {
    tail: Task,
    batch: Task,
    ship: Task,
}

/// Builds one lane: its tail resumed from the checkpoint's entries of its sources, its
/// batch stage, its ship stage with its own control and flush clock.
fn start_lane(
    config: &Config,
    lane: &Lane,
    resume_from: &[FileEntry],
    shared: &Shared,
    drain_rx: watch::Receiver<bool>,
) -> anyhow::Result<LaneTasks> {
    let (line_tx, line_rx) = mpsc::channel(LINE_CHANNEL);
    let (batch_tx, batch_rx) = mpsc::channel(BATCH_CHANNEL);
    // The flush clock: the batch stage publishes when the open batch is due (`due`)
    // for the tail; the ship stage sets the flush interval (`pace`) for the batch stage.
    let due = Arc::new(Due::new());
    let pace = Arc::new(Pace::new(config.flush_interval));
    let tail_set = follow(config, lane, resume_from, shared)?;
    let (quiet, following) = (config.drain_quiet, shared.health.lane());
    let cadence = tail::Cadence::new(config.flush_interval, due.clone());
    let stream = lane.stream.clone();
    let tail: Task = Box::pin(async move {
        tail::run(tail_set, line_tx, drain_rx, quiet, cadence, following)
            .await
            .with_context(|| format!("the tail of stream {stream}"))
    });
    let settings = BatchSettings {
        aggregate: config.aggregate,
        aggregate_max_lines: config.aggregate_max_lines,
        invalid_json: config.invalid_json,
        pace: pace.clone(),
        due,
        fields: FieldSettings::from_config(config, shared.metrics.clone()),
    };
    let (progress, metrics, dead_letter) = (
        shared.progress.clone(),
        shared.metrics.clone(),
        shared.dead_letter.clone(),
    );
    let batch: Task = Box::pin(async move {
        batch::run(line_rx, batch_tx, settings, progress, metrics, dead_letter).await;
        Ok(())
    });
    let index = shared
        .metrics
        .streams()
        .iter()
        .position(|s| s.name == lane.stream)
        .with_context(|| format!("no metrics for stream {}", lane.stream))?;
    let shipper = Shipper::new(
        shared.client.clone(),
        index,
        config.adaptive,
        shared.progress.clone(),
        shared.metrics.clone(),
        shared.health.clone(),
        shared.dead_letter.clone(),
    );
    let stream = lane.stream.clone();
    let settings = ShipSettings {
        max_in_flight: config.max_in_flight,
        adaptive: config.adaptive,
        flush_interval: config.flush_interval,
        pace,
    };
    let ship: Task = Box::pin(async move {
        ship::run(batch_rx, Arc::new(shipper), settings)
            .await
            .with_context(|| format!("the ship stage of stream {stream}"))
    });
    Ok(LaneTasks { tail, batch, ship })
}

/// The lane's tail, resumed from the checkpoint's entries of its sources. A file that
/// globs of two lanes match is the earlier source's: every tail knows the others.
fn follow(
    config: &Config,
    lane: &Lane,
    resume_from: &[FileEntry],
    shared: &Shared,
) -> anyhow::Result<Tail> {
    let spec = |id: SourceId| {
        let s = &config.sources[id as usize];
        SourceSpec {
            id,
            name: s.name.clone(),
            path: s.path.clone(),
        }
    };
    let all = 0..config.sources.len() as SourceId;
    let settings = TailSettings {
        sources: lane.sources.iter().map(|id| spec(*id)).collect(),
        read_from: config.read_from,
        rotate_wait: config.rotate_wait,
        own_files: vec![config.checkpoint.clone(), config.dead_letter.clone()],
        max_files: config.max_files,
        others: all
            .filter(|id| !lane.sources.contains(id))
            .map(spec)
            .collect(),
        open_files: shared.open_files.clone(),
    };
    Tail::new(
        settings,
        resume_from,
        shared.progress.clone(),
        shared.metrics.clone(),
        shared.health.clone(),
    )
    .with_context(|| format!("cannot follow the sources of stream {}", lane.stream))
}

/// The start-up line: the effective configuration.
fn log_start(config: &Config, addr: std::net::SocketAddr, checkpointed_files: usize) {
    let hd = |d: Duration| humantime::format_duration(d).to_string();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        sources = config
            .sources
            .iter()
            .map(|s| format!("{}: {} → {}", s.name, s.path.display(), s.stream))
            .collect::<Vec<_>>()
            .join("; "),
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
        add_fields = config
            .add_fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        source_field = config.source_field.as_deref().unwrap_or(""),
        file_field = config.file_field.as_deref().unwrap_or(""),
        max_files = config.max_files,
        metrics_addr = %addr,
        checkpointed_files,
        "firetail started."
    );
}
