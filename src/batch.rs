//! batch: lines → batches of Firehose records.
//!
//! Input: `Vec<Line>` chunks from the tail. Output: [`Batch`]es on a bounded channel to
//! the ship stage, each within Firehose's limits ([`crate::firehose`],
//! docs/design.md#firehose-rules): ≤ 500 records, ≤ 4 MiB of data (firetail cuts at
//! 1 MiB), every record ≤ 1,024,000 bytes. Every record's data is the line with its
//! trailing `\n` (Firehose adds no delimiter).
//!
//! Every line read ends up in exactly one place: a record, the dead-letter file
//! (oversize; invalid JSON with `--invalid-json dead-letter`), or skipped by design (the
//! Logger header, empty lines). All of them — skipped ones too — are covered by the
//! batch's [`Span`](crate::progress::Span)s, so the checkpoint moves past them only
//! when the batch is done.
//!
//! A batch is cut when full, when its oldest line has waited the flush interval, or at
//! once when the input ends (the drain). The flush interval is `--flush-interval`
//! drawn down by up to 20 % for each batch, so that pods started together drift apart
//! instead of calling Firehose in lockstep; under sustained throttling the ship stage
//! stretches it (at most 4×, see [`Pace`]); the clock is [`crate::flush_clock`]. A
//! batch that is due while the ship stage has no room keeps taking lines until it is
//! full: fuller calls under pressure.
//!
//! With added fields (`--add-field`, `--source-field`, `--file-field`), each line that
//! becomes a record gets them before it joins a record, so with `--aggregate` every
//! line of a record carries them; dead letters stay as the app wrote them.
//!
//! One concern per module: [`disposition`] (what becomes of a line), [`fields`] (the
//! splice, pure and property-tested), [`splicer`] (fields per file, counted),
//! [`batcher`] (the pure packing, property-tested), and this file: [`run`], the async
//! shell.

pub mod batcher;
pub mod disposition;
pub mod fields;
pub mod splicer;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

pub use crate::handover::{Batch, RecordMeta};
pub use batcher::Batcher;
pub use disposition::Disposition;
pub use fields::{Fields, Splice};
pub use splicer::{FieldCounts, FieldSettings, FieldTally};

use crate::config::InvalidJson;
use crate::deadletter::DeadLetter;
use crate::flush_clock::{due_at, jittered, Due, Pace};
use crate::handover::Line;
use crate::metrics::Metrics;
use crate::outcome::DeadLetterReason;
use crate::progress::Progress;
use crate::wait::sleep_until_opt;
use splicer::Splicer;

/// What the batch stage is told at start.
#[derive(Clone, Debug)]
pub struct BatchSettings {
    pub aggregate: bool,
    pub aggregate_max_lines: usize,
    pub invalid_json: InvalidJson,
    /// The flush interval in effect (`--flush-interval`, or stretched by the ship stage).
    pub pace: Arc<Pace>,
    /// Where the tail learns when the batch its next lines would join is due.
    pub due: Arc<Due>,
    /// The fields added to each JSON object line (`--add-field`, `--source-field`,
    /// `--file-field`); `None` when there are none.
    pub fields: Option<FieldSettings>,
}

/// The async shell: classifies lines, writes dead letters, cuts batches when full or
/// due, and flushes at once when the tail drops its sender — then drops its own.
pub async fn run(
    mut rx: mpsc::Receiver<Vec<Line>>,
    tx: mpsc::Sender<Batch>,
    settings: BatchSettings,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    dead_letter: Arc<DeadLetter>,
) {
    let mut batcher = Batcher::new(settings.aggregate, settings.aggregate_max_lines);
    let mut splicer = settings.fields.clone().map(Splicer::new);
    // The open batch's start and its deadline; when the last batch was handed on.
    let mut deadline: Option<(Instant, Instant)> = None;
    let mut last_cut: Option<Instant> = None;
    // Drawn at each cut, for the next batch: the tail learns its deadline before it opens.
    let mut jitter = jittered(settings.pace.get());
    loop {
        let started = batcher.oldest();
        if started != deadline.map(|(s, _)| s) {
            deadline = started.map(|s| (s, due_at(s, last_cut, jitter)));
        }
        settings.due.set(match deadline {
            Some((_, d)) => Some(d),
            None => last_cut.map(|c| c + jitter),
        });
        let due = deadline.is_some_and(|(_, d)| d <= Instant::now());
        // A due batch first takes what the tail has already handed over: lines it read
        // for this deadline, late only because both stages woke in one turn of the
        // runtime (a CPU-throttled container). Left behind, they would wait another draw.
        let ready = if due { rx.try_recv().ok() } else { None };
        let chunk = match ready {
            Some(lines) => Some(lines),
            None => tokio::select! {
            biased;
            permit = tx.reserve(), if due => {
                let Ok(permit) = permit else { return };
                last_cut = Some(Instant::now());
                jitter = jittered(settings.pace.get());
                if let Some(b) = batcher.take() {
                    register_and_hand_on(b, &progress, &dead_letter, |b| permit.send(b)).await;
                }
                continue;
            }
            _ = sleep_until_opt(deadline.map(|(_, d)| d)), if !due => continue,
            // While a due batch waits for the ship stage, keep filling it.
            chunk = rx.recv() => chunk,
            },
        };
        let Some(lines) = chunk else {
            if let Some(b) = batcher.take() {
                send(&tx, b, &progress, &dead_letter).await;
            }
            return;
        };
        let now = Instant::now();
        for line in &lines {
            let fields = splicer.as_ref().map(Splicer::fields);
            let (d, shape) = Disposition::probed(line, settings.invalid_json, fields);
            sort_out(line, d, &progress, &metrics, &dead_letter).await;
            // Fields go on shipped lines only: a dead letter is what the app wrote.
            let spliced = match (&mut splicer, d) {
                (Some(s), Disposition::Record { .. }) => Some(s.splice(line, &shape, &progress)),
                _ => None,
            };
            if let Some(b) = batcher.add(spliced.as_ref().unwrap_or(line), d, now) {
                last_cut = Some(now);
                jitter = jittered(settings.pace.get());
                send(&tx, b, &progress, &dead_letter).await;
            }
        }
    }
}

/// Counts a line that is not a plain record, and writes it to the dead-letter file
/// when that is its fate.
async fn sort_out(
    line: &Line,
    d: Disposition,
    progress: &Progress,
    metrics: &Metrics,
    dead_letter: &DeadLetter,
) {
    let metrics = metrics.source(line.source);
    match d {
        Disposition::Record { json: false } => {
            metrics.invalid_json.inc();
        }
        Disposition::Skip(reason) => {
            metrics.skip(reason);
            progress.settled(1);
        }
        Disposition::DeadLetter(reason) => {
            if reason == DeadLetterReason::InvalidJson {
                metrics.invalid_json.inc();
            }
            let file = progress.path_of(line.file);
            dead_letter
                .write_retrying(&file, line.start, reason, &line.data, line.size)
                .await;
            metrics.dead_letter(reason, 1);
            progress.settled(1);
        }
        Disposition::Record { json: true } => {}
    }
}

/// Hands a full batch (or the last one) on, waiting for the ship stage to take it.
async fn send(
    tx: &mpsc::Sender<Batch>,
    batch: Batch,
    progress: &Progress,
    dead_letter: &DeadLetter,
) {
    // The ship stage only goes away when the whole pipeline is being torn down.
    if let Ok(permit) = tx.reserve().await {
        register_and_hand_on(batch, progress, dead_letter, |b| permit.send(b)).await;
    }
}

/// Makes the batch's dead letters durable, registers its spans (so the checkpoint
/// cannot pass them) and hands it on.
async fn register_and_hand_on(
    batch: Batch,
    progress: &Progress,
    dead_letter: &DeadLetter,
    hand_on: impl FnOnce(Batch),
) {
    dead_letter.sync().await;
    progress.register(&batch.spans);
    hand_on(batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush_clock::LEAD;
    use std::time::Duration;

    use crate::handover::test_line as line;

    /// A stalled runtime (a CPU-throttled container) wakes the tail and the batch
    /// stage in one turn, after the deadline: the lines the tail handed over for it
    /// go with the due batch, not a draw later.
    #[test]
    fn lines_handed_over_before_a_late_cut_go_with_the_due_batch() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let dead_letter = Arc::new(DeadLetter::new(
            &dir.path().join("dead.jsonl"),
            1 << 20,
            metrics.clone(),
        ));
        let progress = Arc::new(Progress::new(u64::MAX, Default::default()));
        let settings = BatchSettings {
            aggregate: false,
            aggregate_max_lines: 500,
            invalid_json: InvalidJson::Ship,
            pace: Arc::new(Pace::new(Duration::from_millis(200))),
            due: Arc::new(Due::new()),
            fields: None,
        };
        let due = settings.due.clone();
        let (line_tx, line_rx) = mpsc::channel(1);
        let (batch_tx, mut batch_rx) = mpsc::channel(1);
        let stages = (line_rx, batch_tx, settings, progress, metrics, dead_letter);
        let first = rt.block_on(async {
            let (a, b, c, d, e, f) = stages;
            tokio::spawn(run(a, b, c, d, e, f));
            line_tx.send(vec![line(0, 0, 10)]).await.unwrap();
            // The batch stage opens the batch, publishes its deadline and sleeps.
            tokio::task::yield_now().await;
            let deadline = due.get().expect("a deadline published");
            // The tail's next read, `LEAD` before it, as the cadence times it.
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline - LEAD).await;
                line_tx.send(vec![line(0, 11, 10)]).await.unwrap();
            });
            tokio::task::yield_now().await;
            // The stall: the thread gets no CPU until both timers have passed.
            std::thread::sleep(deadline - Instant::now() + Duration::from_millis(100));
            batch_rx.recv().await.unwrap()
        });
        assert_eq!(first.records.len(), 2, "both reads in the due batch");
    }

    /// With fields and `--aggregate`: every JSON object line of a record gets them, a
    /// JSON line that is no object joins the record as written, and a dead-lettered
    /// line is written as the app wrote it.
    #[test]
    fn fields_go_on_every_shipped_object_line_and_never_on_dead_letters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let dl_path = dir.path().join("dead.jsonl");
        let dead_letter = Arc::new(DeadLetter::new(&dl_path, 1 << 20, metrics.clone()));
        let progress = Arc::new(Progress::new(u64::MAX, Default::default()));
        let identity = crate::progress::Identity {
            dev: 1,
            ino: 2,
            fp_len: 0,
            fp_hash: 0,
        };
        let chain = crate::progress::Chain::default();
        let path = std::path::Path::new("/var/log/app.log");
        progress.open(0, &chain, &identity, path, 0);
        let tally = Arc::new(FieldTally::default());
        let fields = Fields::new(
            &[("pod".into(), "zz-pod-1".into())],
            Some("src"),
            Some("file"),
        );
        let settings = BatchSettings {
            aggregate: true,
            aggregate_max_lines: 500,
            invalid_json: InvalidJson::DeadLetter,
            pace: Arc::new(Pace::new(Duration::from_millis(200))),
            due: Arc::new(Due::new()),
            fields: Some(FieldSettings {
                fields: Arc::new(fields),
                sources: vec!["web".into()],
                counts: tally.clone(),
            }),
        };
        let mut start = 0;
        let lines: Vec<Line> = [
            "{\"a\":1}\n",
            "{\"pod\":\"mine\"}\n",
            "not json {}\n",
            "[1]\n",
        ]
        .iter()
        .map(|text| {
            let mut l = line(0, start, 0);
            (l.data, l.size) = (bytes::Bytes::from(*text), text.len() as u64);
            l.end = start + l.size;
            start = l.end;
            l
        })
        .collect();
        let (line_tx, line_rx) = mpsc::channel(1);
        let (batch_tx, mut batch_rx) = mpsc::channel(1);
        let batch = rt.block_on(async {
            let stages = run(line_rx, batch_tx, settings, progress, metrics, dead_letter);
            tokio::spawn(stages);
            line_tx.send(lines).await.unwrap();
            drop(line_tx);
            batch_rx.recv().await.unwrap()
        });
        let ours = r#""src":"web","file":"/var/log/app.log"}"#;
        let expected =
            format!("{{\"a\":1,\"pod\":\"zz-pod-1\",{ours}\n{{\"pod\":\"mine\",{ours}\n[1]\n");
        assert_eq!(batch.records, [bytes::Bytes::from(expected)]);
        assert_eq!(batch.bytes, batch.records[0].len());
        let dead = std::fs::read_to_string(&dl_path).unwrap();
        assert!(dead.contains("not json {}"), "{dead}");
        assert!(
            !dead.contains("zz-pod-1") && !dead.contains("src"),
            "{dead}"
        );
        assert_eq!(tally.get(0, Splice::Spliced), 1);
        assert_eq!(tally.get(0, Splice::AppKept(1)), 1);
        assert_eq!(tally.get(0, Splice::NotObject), 1);
    }
}
