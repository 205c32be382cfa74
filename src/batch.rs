//! batch: lines → batches of Firehose records.
//!
//! Input: `Vec<Line>` chunks from the tail. Output: [`Batch`]es on a bounded channel to
//! the ship stage, each within Firehose's limits (DESIGN §4): ≤ 500 records, ≤ 4 MiB of
//! data (firetail cuts at 1 MiB, see [`BATCH_BYTES`]), every record ≤ 1,024,000 bytes. Every record's data is the line with its
//! trailing `\n` (Firehose adds no delimiter).
//!
//! Every line read ends up in exactly one place: a record, the dead-letter file
//! (oversize; invalid JSON with `--invalid-json dead-letter`), or skipped by design (the
//! Logger header, empty lines). All of them — skipped ones too — are covered by the
//! batch's [`Span`]s, so the checkpoint moves past them only when the batch is done.
//!
//! A batch is cut when full, when its oldest line has waited the flush interval, or at
//! once when the input ends (the drain). The flush interval is `--flush-interval`
//! drawn down by up to 20 % for each batch, so that pods started together drift apart
//! instead of calling Firehose in lockstep; under sustained throttling the ship stage
//! stretches it (at most 4×, see [`Pace`]). A batch that is due while the ship stage
//! has no room keeps taking lines until it is full: fuller calls under pressure.
//! [`Batcher`] is pure and property-tested.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::InvalidJson;
use crate::deadletter::DeadLetter;
use crate::metrics::Metrics;
use crate::progress::{FileKey, Progress, Span};
use crate::tail::{Due, Line, LEAD, MAX_RECORD_BYTES};

/// PutRecordBatch takes at most 500 records (Firehose quotas page).
pub const MAX_BATCH_RECORDS: usize = 500;

/// PutRecordBatch takes at most 4 MiB of data. Counted on the raw data, before base64;
/// if Firehose ever counts otherwise, its `InvalidArgumentException` makes the ship
/// stage split the call in halves.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Where firetail cuts a batch by size: a quarter of Firehose's limit. Memory scales
/// with in-flight bytes (each call holds its records, the SDK's base64 JSON body, and
/// TLS buffers: ~3× its data), so 4 calls of 1 MiB stay near 12 MiB where 4 MiB calls
/// would take ~50 MiB — and a 1 MiB call still amortises the per-call cost (~100 µs of
/// signing and bookkeeping) over a megabyte. 300-byte lines fill 500 records at
/// 150 KB, far below it.
pub const BATCH_BYTES: usize = 1024 * 1024;
const _: () = assert!(BATCH_BYTES <= MAX_BATCH_BYTES && BATCH_BYTES >= MAX_RECORD_BYTES);

/// What becomes of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Shipped; `json` tells whether it may share a record with others (`--aggregate`).
    Record { json: bool },
    /// Not shipped by design, with the reason (a metric label).
    Skip(&'static str),
    /// Written to the dead-letter file, with the reason.
    DeadLetter(&'static str),
}

/// Ruby's `Logger` writes this first line unless `skip_header` is set.
const LOGGER_HEADER: &[u8] = b"# Logfile created on ";

/// Decides a line's fate (DESIGN §5).
pub fn classify(line: &Line, invalid_json: InvalidJson) -> Disposition {
    if line.is_oversize() {
        return Disposition::DeadLetter("oversize");
    }
    let body = line.data.strip_suffix(b"\n").unwrap_or(&line.data);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Disposition::Skip("empty");
    }
    if body.starts_with(LOGGER_HEADER) {
        return Disposition::Skip("header");
    }
    // JSON text is UTF-8 (RFC 8259 §8.1); `from_slice` into `IgnoredAny` skips strings
    // without validating them, so check the encoding first.
    let json = std::str::from_utf8(body)
        .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok());
    if !json && invalid_json == InvalidJson::DeadLetter {
        return Disposition::DeadLetter("invalid_json");
    }
    Disposition::Record { json }
}

/// Where a record's (first) line came from, and how many lines it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub file: FileKey,
    pub offset: u64,
    pub lines: u32,
}

/// One PutRecordBatch worth of records, plus the file ranges it settles.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Bytes>,
    pub meta: Vec<RecordMeta>,
    /// Sum of the records' lengths.
    pub bytes: usize,
    /// Every line the batch accounts for (records, skipped, dead-lettered), per file.
    pub spans: Vec<Span>,
}

/// The flush interval in effect: set by the ship stage's adaptive control, read here
/// whenever a batch starts.
#[derive(Debug)]
pub struct Pace {
    nanos: AtomicU64,
}

impl Pace {
    pub fn new(flush_interval: Duration) -> Pace {
        let pace = Pace {
            nanos: AtomicU64::new(0),
        };
        pace.set(flush_interval);
        pace
    }

    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    pub fn set(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

/// A batch's flush deadline: between 80 % and 100 % of the flush interval, drawn per
/// batch. Never later than the interval, so `--flush-interval` stays a promise.
///
/// Why so wide: a stream's quota is counted per second, first come first served, so
/// a pod whose calls keep arriving early in the second is never throttled, and pods
/// started together by a rollout arrive together. A deadline drawn from the last
/// tenth alone left such a pod's moment in the second where it was for half a
/// minute (a period of about a second once the read cadence is added), and those
/// pods took their whole offer while the others were cut; drawn from the last fifth,
/// every pod's moment wanders through the second within seconds, and each meets the
/// quota's end in turn (the window model in `ship/control/tests.rs`).
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - 0.2 * fastrand::f64())
}

/// Packs lines into batches. Pure: the caller supplies the clock.
pub struct Batcher {
    aggregate: bool,
    /// With `--aggregate`: the most lines one record holds (`--aggregate-max-lines`).
    max_lines: u32,
    batch: Batch,
    /// With `--aggregate`: the record being filled with consecutive JSON lines.
    open: Option<(BytesMut, RecordMeta)>,
    oldest: Option<Instant>,
}

impl Batcher {
    pub fn new(aggregate: bool, max_lines: usize) -> Batcher {
        Batcher {
            aggregate,
            max_lines: u32::try_from(max_lines).unwrap_or(u32::MAX).max(1),
            batch: Batch::default(),
            open: None,
            oldest: None,
        }
    }

    /// When the oldest line in the batch arrived (the flush timer's base).
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    fn record_count(&self) -> usize {
        self.batch.records.len() + usize::from(self.open.is_some())
    }

    fn fits(&self, len: usize) -> bool {
        self.record_count() < MAX_BATCH_RECORDS && self.batch.bytes + len <= BATCH_BYTES
    }

    /// Adds one line. Returns a batch when one was cut (the previous one, because this
    /// line did not fit; or this one, because it is full).
    pub fn add(&mut self, line: &Line, d: Disposition, now: Instant) -> Option<Batch> {
        let mut cut = None;
        if let Disposition::Record { json } = d {
            let len = line.data.len();
            debug_assert!(len <= MAX_RECORD_BYTES);
            let joined = self.aggregate && json && self.try_join(line);
            if !joined {
                self.close_open();
                if !self.fits(len) {
                    cut = self.take();
                }
                let meta = RecordMeta {
                    file: line.file,
                    offset: line.start,
                    lines: 1,
                };
                if self.aggregate && json {
                    self.open = Some((BytesMut::from(&line.data[..]), meta));
                } else {
                    self.batch.records.push(line.data.clone());
                    self.batch.meta.push(meta);
                }
                self.batch.bytes += len;
            }
        }
        self.cover(line);
        self.oldest.get_or_insert(now);
        if cut.is_none() && self.record_count() == MAX_BATCH_RECORDS && self.open.is_none() {
            cut = self.take();
        }
        cut
    }

    /// Appends a JSON line to the open aggregate record if the record and the batch both
    /// stay within their limits.
    fn try_join(&mut self, line: &Line) -> bool {
        let len = line.data.len();
        let batch_ok = self.batch.bytes + len <= BATCH_BYTES;
        match self.open.as_mut() {
            Some((buf, meta))
                if batch_ok
                    && buf.len() + len <= MAX_RECORD_BYTES
                    && meta.lines < self.max_lines =>
            {
                buf.extend_from_slice(&line.data);
                meta.lines += 1;
                self.batch.bytes += len;
                true
            }
            _ => false,
        }
    }

    fn close_open(&mut self) {
        if let Some((buf, meta)) = self.open.take() {
            self.batch.records.push(buf.freeze());
            self.batch.meta.push(meta);
        }
    }

    /// Extends the batch's span over the line (records, skipped and dead-lettered alike).
    fn cover(&mut self, line: &Line) {
        match self.batch.spans.last_mut() {
            Some(s) if s.file == line.file && s.end == line.start => {
                s.end = line.end;
                s.lines += 1;
            }
            _ => self.batch.spans.push(Span {
                file: line.file,
                start: line.start,
                end: line.end,
                lines: 1,
            }),
        }
    }

    /// Cuts the batch as it is (flush timer, or end of input). `None` when empty.
    pub fn take(&mut self) -> Option<Batch> {
        self.close_open();
        self.oldest = None;
        if self.batch.spans.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.batch))
    }
}

/// Settings of the batch stage.
#[derive(Clone, Debug)]
pub struct Settings {
    pub aggregate: bool,
    pub aggregate_max_lines: usize,
    pub invalid_json: InvalidJson,
    /// The flush interval in effect (`--flush-interval`, or stretched by the ship stage).
    pub pace: Arc<Pace>,
    /// Where the tail learns when the batch its next lines would join is due.
    pub due: Arc<Due>,
}

/// The async shell: classifies lines, writes dead letters, cuts batches when full or
/// due, and flushes at once when the tail drops its sender — then drops its own.
pub async fn run(
    mut rx: mpsc::Receiver<Vec<Line>>,
    tx: mpsc::Sender<Batch>,
    settings: Settings,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    dead_letter: Arc<DeadLetter>,
) {
    let mut batcher = Batcher::new(settings.aggregate, settings.aggregate_max_lines);
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
                    settle_and_hand_on(b, &progress, &dead_letter, |b| permit.send(b)).await;
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
            let d = classify(line, settings.invalid_json);
            match d {
                Disposition::Record { json: false } => {
                    metrics.invalid_json.inc();
                }
                Disposition::Skip(reason) => {
                    metrics.skip(reason);
                    progress.settled(1);
                }
                Disposition::DeadLetter(reason) => {
                    if reason == "invalid_json" {
                        metrics.invalid_json.inc();
                    }
                    let file = progress.path_of(line.file);
                    dead_letter
                        .write_retrying(&file, line.start, reason, &line.data, line.size)
                        .await;
                    metrics.dead_letter(reason);
                    progress.settled(1);
                }
                Disposition::Record { json: true } => {}
            }
            if let Some(b) = batcher.add(line, d, now) {
                last_cut = Some(now);
                jitter = jittered(settings.pace.get());
                send(&tx, b, &progress, &dead_letter).await;
            }
        }
    }
}

/// When a batch that opened at `started` is due: `jitter` (a draw of [`jittered`])
/// after the last cut while lines keep coming, else after its own start; never more
/// than `jitter` after its start. A batch that opens less than [`LEAD`] after the
/// deadline is due at once: its lines are the ones the tail read for that deadline
/// (it reads a quiet app just before it), late by a slow read.
///
/// Why from the last cut: the tail reads on a cadence (every quarter interval for
/// a quiet app), so a batch opens at one of a few moments of a second that repeat
/// every second. Counted from its opening, a pod's deadlines fell in the same fifth
/// of the quota's second for as long as it ran (the window model in
/// `ship/control/tests.rs`: Jain 0.82 in a rollout). Counted from the last cut, a
/// steady pod's calls are a renewal process of mean 0.9 interval, whose moment in
/// the second wanders through all of it within seconds.
pub(crate) fn due_at(started: Instant, last_cut: Option<Instant>, jitter: Duration) -> Instant {
    match last_cut {
        Some(cut) if started < cut + jitter + LEAD => (cut + jitter).max(started),
        _ => started + jitter,
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
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
        settle_and_hand_on(batch, progress, dead_letter, |b| permit.send(b)).await;
    }
}

/// Makes the batch's dead letters durable, registers its spans (so the checkpoint
/// cannot pass them) and hands it on.
async fn settle_and_hand_on(
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
    use proptest::prelude::*;

    fn line(file: FileKey, start: u64, body_len: usize) -> Line {
        let mut data = vec![b'x'; body_len];
        data.push(b'\n');
        Line {
            file,
            start,
            end: start + data.len() as u64,
            size: data.len() as u64,
            data: Bytes::from(data),
        }
    }

    fn record() -> Disposition {
        Disposition::Record { json: true }
    }

    #[test]
    fn classify_follows_design() {
        let mk = |s: &[u8]| Line {
            file: 0,
            start: 0,
            end: s.len() as u64,
            size: s.len() as u64,
            data: Bytes::copy_from_slice(s),
        };
        let ship = InvalidJson::Ship;
        assert_eq!(
            classify(&mk(b"{\"a\":1}\n"), ship),
            Disposition::Record { json: true }
        );
        assert_eq!(classify(&mk(b"\n"), ship), Disposition::Skip("empty"));
        assert_eq!(classify(&mk(b"  \r\n"), ship), Disposition::Skip("empty"));
        assert_eq!(
            classify(
                &mk(b"# Logfile created on 2026-11-26 by logger.rb/v1.6.0\n"),
                ship
            ),
            Disposition::Skip("header")
        );
        assert_eq!(
            classify(&mk(b"{\"a\":\n"), ship),
            Disposition::Record { json: false }
        );
        assert_eq!(
            classify(&mk(b"\xff\xfe\x00\n"), ship),
            Disposition::Record { json: false }
        );
        // Well-formed JSON around a string that is not UTF-8 is not JSON.
        assert_eq!(
            classify(&mk(b"{\"a\":\"caf\xe9\"}\n"), ship),
            Disposition::Record { json: false }
        );
        assert_eq!(
            classify(&mk(b"not json\n"), InvalidJson::DeadLetter),
            Disposition::DeadLetter("invalid_json")
        );
        let big = line(0, 0, MAX_RECORD_BYTES);
        assert_eq!(classify(&big, ship), Disposition::DeadLetter("oversize"));
        let just_fits = line(0, 0, MAX_RECORD_BYTES - 1);
        assert!(!just_fits.is_oversize());
    }

    /// The README's promise: a deadline is drawn between 80 % and 100 % of the
    /// interval, never past it, and spread over that fifth.
    #[test]
    fn flush_deadlines_are_drawn_within_the_last_fifth_of_the_interval() {
        let d = Duration::from_secs(1);
        let draws: Vec<Duration> = (0..1000).map(|_| jittered(d)).collect();
        assert!(draws.iter().all(|j| *j <= d && *j >= d.mul_f64(0.8)));
        let spread = *draws.iter().max().unwrap() - *draws.iter().min().unwrap();
        assert!(spread > Duration::from_millis(150), "{spread:?}");
    }

    /// A line never waits longer than the draw, and a steady stream's deadlines are
    /// spaced by the draw itself, not by when the tail happened to read.
    #[test]
    fn a_deadline_counts_from_the_last_cut_while_lines_keep_coming() {
        let t0 = Instant::now();
        let j = Duration::from_millis(850);
        let ms = Duration::from_millis;
        assert_eq!(due_at(t0, None, j), t0 + j);
        // Opened 200 ms after the last cut: due 850 ms after the cut.
        assert_eq!(due_at(t0 + ms(200), Some(t0), j), t0 + j);
        // Opened after the draw had passed: 850 ms after its own start.
        assert_eq!(due_at(t0 + ms(900), Some(t0), j), t0 + ms(900) + j);
        for open in [0, 100, 849, 850, 870, 2000] {
            let d = due_at(t0 + ms(open), Some(t0), j);
            assert!(d >= t0 + ms(open));
            assert!(d - (t0 + ms(open)) <= j);
        }
    }

    /// The tail's cadence and the batch deadlines together, on a simulated clock (ms
    /// steps, reads taking no time): a steady writer's lines wait at most one
    /// interval plus `LEAD` from write to cut (the README's latency), and a quiet
    /// app is read about once per batch instead of every quarter interval.
    #[test]
    fn steady_lines_wait_at_most_an_interval_and_lead_with_one_read_per_batch() {
        let interval = Duration::from_secs(1);
        let ms = Duration::from_millis;
        for (every_ms, max_reads_per_s) in [(2u64, 1.6), (10, 1.6), (1, 4.0)] {
            let due = Arc::new(Due::new());
            let t0 = Instant::now();
            let mut cadence = crate::tail::Cadence::new(interval, due.clone());
            let (mut unread, mut open) = (Vec::new(), Vec::new());
            let (mut deadline, mut last_cut): (Option<Instant>, Option<Instant>) = (None, None);
            let mut jitter = jittered(interval);
            let (mut not_before, mut reads, mut worst) = (t0, 0u32, Duration::ZERO);
            for step in 0..60_000u64 {
                let t = t0 + ms(step);
                if step % every_ms == 0 {
                    unread.push(t);
                }
                // The tail: asleep until `not_before`, then reads what inotify reported.
                if t >= not_before {
                    match cadence.later(t) {
                        Some(later) if later > not_before => not_before = later,
                        _ if !unread.is_empty() => {
                            reads += 1;
                            if open.is_empty() {
                                deadline = Some(due_at(t, last_cut, jitter));
                            }
                            cadence.read(unread.len());
                            open.append(&mut unread);
                            not_before = t + cadence.wait(t);
                        }
                        _ => {}
                    }
                }
                // The batch stage: cut when due (or at 500 records), publish the next.
                if deadline.is_some_and(|d| d <= t) || open.len() >= 500 {
                    worst = worst.max(t - open[0]);
                    open.clear();
                    (deadline, last_cut, jitter) = (None, Some(t), jittered(interval));
                }
                due.set(deadline.or(last_cut.map(|c| c + jitter)));
            }
            let per_s = f64::from(reads) / 60.0;
            assert!(
                worst <= interval + LEAD,
                "1 line per {every_ms} ms: waited {worst:?}"
            );
            assert!(
                per_s <= max_reads_per_s,
                "1 line per {every_ms} ms: {per_s} reads/s"
            );
        }
    }

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
        let metrics = Arc::new(Metrics::new());
        let dead_letter = Arc::new(DeadLetter::new(
            &dir.path().join("dead.jsonl"),
            1 << 20,
            metrics.clone(),
        ));
        let progress = Arc::new(Progress::new(u64::MAX, Default::default()));
        let settings = Settings {
            aggregate: false,
            aggregate_max_lines: 500,
            invalid_json: InvalidJson::Ship,
            pace: Arc::new(Pace::new(Duration::from_millis(200))),
            due: Arc::new(Due::new()),
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

    /// The tail reads a quiet app `LEAD` before the deadline; lines that reach the
    /// batch stage a little after it (a slow read) go at once, not a whole draw later.
    #[test]
    fn a_batch_that_opens_just_after_its_deadline_goes_at_once() {
        let t0 = Instant::now();
        let j = Duration::from_millis(850);
        let late = t0 + j + LEAD / 2;
        assert_eq!(due_at(late, Some(t0), j), late);
        let later = t0 + j + LEAD;
        assert_eq!(
            due_at(later, Some(t0), j),
            later + j,
            "a new spell of writes"
        );
    }

    #[test]
    fn full_batch_is_cut_at_500_records() {
        let mut b = Batcher::new(false, 500);
        let now = Instant::now();
        let mut cut = Vec::new();
        for i in 0..1000u64 {
            if let Some(batch) = b.add(&line(0, i * 11, 10), record(), now) {
                cut.push(batch);
            }
        }
        assert_eq!(cut.len(), 2);
        assert!(cut.iter().all(|c| c.records.len() == 500));
        assert!(b.take().is_none());
    }

    #[test]
    fn skipped_lines_are_covered_by_spans() {
        let mut b = Batcher::new(false, 500);
        let now = Instant::now();
        assert!(b.add(&line(0, 0, 10), record(), now).is_none());
        assert!(b
            .add(&line(0, 11, 0), Disposition::Skip("empty"), now)
            .is_none());
        let batch = b.take().unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(
            batch.spans,
            vec![Span {
                file: 0,
                start: 0,
                end: 12,
                lines: 2,
            }]
        );
    }

    #[test]
    fn aggregation_packs_json_and_isolates_invalid_lines() {
        let mut b = Batcher::new(true, 500);
        let now = Instant::now();
        b.add(&line(0, 0, 10), record(), now);
        b.add(&line(0, 11, 10), record(), now);
        b.add(&line(0, 22, 10), Disposition::Record { json: false }, now);
        b.add(&line(0, 33, 10), record(), now);
        let batch = b.take().unwrap();
        let lines: Vec<u32> = batch.meta.iter().map(|m| m.lines).collect();
        assert_eq!(lines, vec![2, 1, 1]);
        assert_eq!(batch.records[0].len(), 22);
    }

    /// A line as the property tests draw it: its body length and fate.
    fn arb_line() -> impl Strategy<Value = (usize, u8)> {
        let len = prop_oneof![
            40 => 0usize..400,
            3 => 400usize..200_000,
            1 => (MAX_RECORD_BYTES - 3)..(MAX_RECORD_BYTES + 2),
        ];
        (len, 0u8..10)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// For any sequence of line sizes: no batch breaks a limit, no record holds more
        /// than `--aggregate-max-lines`, every shippable line appears exactly once and in order, oversize lines never appear in a batch, and
        /// the spans cover every line exactly once.
        #[test]
        fn batches_respect_limits_and_keep_every_line(
            lines in prop::collection::vec(arb_line(), 1..1200),
            aggregate in any::<bool>(),
            max_lines in prop_oneof![1usize..4, 4usize..=500],
        ) {
            let mut b = Batcher::new(aggregate, max_lines);
            let now = Instant::now();
            let mut batches = Vec::new();
            let mut expected = Vec::new();
            let mut offset = 0u64;
            for (i, (len, kind)) in lines.iter().enumerate() {
                // Tag each line with its index so order can be checked.
                let mut data = format!("{i}:").into_bytes();
                data.resize(data.len().max(*len), b'x');
                data.push(b'\n');
                let l = Line { file: 0, start: offset, end: offset + data.len() as u64,
                               size: data.len() as u64, data: Bytes::from(data) };
                offset = l.end;
                let d = if l.is_oversize() {
                    Disposition::DeadLetter("oversize")
                } else if *kind == 0 {
                    Disposition::Skip("empty")
                } else {
                    Disposition::Record { json: *kind != 1 }
                };
                if matches!(d, Disposition::Record { .. }) {
                    expected.push(l.data.clone());
                }
                batches.extend(b.add(&l, d, now));
            }
            batches.extend(b.take());
            let mut got = Vec::new();
            let mut covered = 0u64;
            for batch in &batches {
                prop_assert!(batch.records.len() <= MAX_BATCH_RECORDS);
                prop_assert!(batch.records.iter().map(Bytes::len).sum::<usize>() <= BATCH_BYTES);
                prop_assert_eq!(batch.records.len(), batch.meta.len());
                for (r, m) in batch.records.iter().zip(&batch.meta) {
                    prop_assert!(r.len() <= MAX_RECORD_BYTES);
                    prop_assert_eq!(r.iter().filter(|c| **c == b'\n').count(), m.lines as usize);
                    prop_assert!(m.lines as usize <= max_lines);
                    got.extend(r.split_inclusive(|c| *c == b'\n').map(Bytes::copy_from_slice));
                }
                for s in &batch.spans {
                    prop_assert_eq!(s.start, covered);
                    covered = s.end;
                }
            }
            prop_assert_eq!(covered, offset);
            prop_assert_eq!(got, expected);
        }
    }
}
