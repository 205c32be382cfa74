//! The duplicate window. What a restart after `kill -9` sends again is at most
//! `--max-unacked-bytes` (docs/design.md#guarantees): the tail never reads further
//! than that ahead of the *durable* checkpoint, however long one batch is stuck while
//! the others are acknowledged.
//!
//! Two tests: a property test of the acknowledgement path (the real `Progress` and
//! `Checkpointer`, a model of the tail that reads only what `room()` allows, random
//! completion order, one batch stuck, a kill at a random point) and the built binary
//! killed with SIGKILL while one batch is stuck in retries against the fake Firehose.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use firetail::checkpoint::Checkpointer;
use firetail::metrics::Metrics;
use firetail::progress::{Gauges, Identity, Progress, Span};
use proptest::prelude::*;

use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Faults, RecordError};
use crate::support::firetail::{access_lines, append, aws_env, base_args, http_get, Firetail};

// ===== the acknowledgement path as a model ===========================================

#[derive(Clone, Debug)]
enum Op {
    /// The tail reads up to this many bytes (never past the window's room).
    Read(u64),
    /// The batch stage cuts a batch of up to this many complete lines.
    Cut(usize),
    /// Firehose answers one in-flight batch (picked by this number): the stuck one
    /// only once released.
    Complete(usize),
    /// The checkpoint writer writes (and so frees room).
    Checkpoint,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..262_144).prop_map(Op::Read),
        5 => (1usize..60).prop_map(Op::Cut),
        6 => any::<usize>().prop_map(Op::Complete),
        2 => Just(Op::Checkpoint),
    ]
}

/// One run of the pipeline's bookkeeping over one file of lines.
struct Model {
    /// Each line's (start, end) offsets in the file.
    lines: Vec<(u64, u64)>,
    progress: Progress,
    checkpointer: Checkpointer,
    read_off: u64,
    /// First line not yet in a batch.
    next_unbatched: usize,
    /// Batches cut and not answered: (cut order, span, line range).
    in_flight: Vec<(usize, Span, std::ops::Range<usize>)>,
    cut: usize,
    accepted: Vec<u32>,
}

impl Model {
    fn new(lens: &[u64], window: u64, checkpoint: &Path) -> Model {
        let mut lines = Vec::with_capacity(lens.len());
        let mut at = 0;
        for len in lens {
            lines.push((at, at + len));
            at += len;
        }
        let progress = Progress::new(window, Gauges::default());
        let id = Identity {
            dev: 1,
            ino: 2,
            fp_len: 0,
            fp_hash: 0,
        };
        progress.open(0, &id, Path::new("/model/access.log"), 0);
        Model {
            accepted: vec![0; lines.len()],
            lines,
            progress,
            checkpointer: Checkpointer::new(checkpoint, Arc::new(Metrics::new())),
            read_off: 0,
            next_unbatched: 0,
            in_flight: Vec::new(),
            cut: 0,
        }
    }

    fn file_len(&self) -> u64 {
        self.lines.last().map_or(0, |l| l.1)
    }

    fn apply(&mut self, op: &Op, stuck: usize, released: bool) {
        match *op {
            Op::Read(budget) => {
                let n = budget
                    .min(self.progress.room())
                    .min(self.file_len() - self.read_off);
                self.read_off += n;
                self.progress.read_to(0, self.read_off);
            }
            Op::Cut(max) => {
                let first = self.next_unbatched;
                let mut last = first;
                while last < self.lines.len()
                    && last - first < max
                    && self.lines[last].1 <= self.read_off
                {
                    last += 1;
                }
                if last > first {
                    let span = Span {
                        file: 0,
                        start: self.lines[first].0,
                        end: self.lines[last - 1].1,
                        lines: (last - first) as u64,
                    };
                    self.progress.register(&[span]);
                    self.in_flight.push((self.cut, span, first..last));
                    self.cut += 1;
                    self.next_unbatched = last;
                }
            }
            Op::Complete(pick) => {
                let answerable: Vec<usize> = (0..self.in_flight.len())
                    .filter(|&i| released || self.in_flight[i].0 != stuck)
                    .collect();
                if let Some(&i) = answerable.get(pick % answerable.len().max(1)) {
                    let (_, span, range) = self.in_flight.swap_remove(i);
                    self.progress.ack(&[span]);
                    for l in range {
                        self.accepted[l] += 1;
                    }
                }
            }
            Op::Checkpoint => {
                self.checkpointer
                    .write(&self.progress)
                    .expect("checkpoint write");
            }
        }
    }
}

/// The offset a restart resumes from: the durable checkpoint, or 0 without one.
fn resume_offset(checkpoint: &Path) -> u64 {
    let entries = Checkpointer::new(checkpoint, Arc::new(Metrics::new()))
        .try_load()
        .expect("the checkpoint is readable");
    entries.first().map_or(0, |e| e.offset)
}

proptest! {
    // Beside the unit tests' regressions: one folder for the crate.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/it/window.txt",
            ),
        )),
        ..ProptestConfig::with_cases(96)
    })]

    /// Whatever the completion order, however long one batch is stuck, wherever the
    /// kill falls: the restart resumes at or before the first unanswered line (nothing
    /// lost), and what it sends again that Firehose already had is at most the
    /// window — as is everything read ahead of the durable checkpoint.
    #[test]
    fn a_restart_resends_at_most_the_window(
        lens in prop::collection::vec(1u64..4000, 50..1500),
        window in 8_192u64..131_072,
        ops in prop::collection::vec(arb_op(), 1..400),
        stuck in 0usize..8,
        release_at in 0usize..600,
    ) {
        let dir = tempfile::tempdir_in(shm()).unwrap();
        let checkpoint = dir.path().join("cp.json");
        let mut m = Model::new(&lens, window, &checkpoint);
        for (step, op) in ops.iter().enumerate() {
            m.apply(op, stuck, step >= release_at);
        }
        // kill -9: only the file on disk survives.
        let resume = resume_offset(&checkpoint);
        prop_assert!(m.read_off.saturating_sub(resume) <= window,
            "read {} ahead of the durable checkpoint at {resume}; window {window}", m.read_off);
        let mut resent = 0u64;
        for (i, &(start, end)) in m.lines.iter().enumerate() {
            if end <= resume {
                prop_assert!(m.accepted[i] > 0, "line {i} at {start} lost: the checkpoint passed it unanswered");
            } else if m.accepted[i] > 0 {
                resent += end - start;
            }
        }
        prop_assert!(resent <= window, "a restart re-sends {resent} bytes Firehose had; window {window}");
    }
}

/// Not vacuous: with one batch stuck from the start and every other batch answered
/// and checkpointed, reading stops exactly at the window, and a restart re-sends the
/// window's worth of lines (the bound is reached, not only respected).
#[test]
fn the_bound_is_reached_when_one_batch_is_stuck() {
    let dir = tempfile::tempdir_in(shm()).unwrap();
    let checkpoint = dir.path().join("cp.json");
    let window = 64 * 1024;
    let mut m = Model::new(&[100; 5000], window, &checkpoint);
    for _ in 0..200 {
        for op in [Op::Read(4096), Op::Cut(10), Op::Complete(0), Op::Checkpoint] {
            m.apply(&op, 0, false);
        }
    }
    assert_eq!(
        resume_offset(&checkpoint),
        0,
        "the stuck batch pins the checkpoint"
    );
    assert_eq!(m.read_off, window, "reading stops at the window");
    let resent: u64 = m.accepted.iter().filter(|&&n| n > 0).count() as u64 * 100;
    assert!(
        resent > window - 2 * 1000,
        "{resent} re-sent: nearly all of the window was answered"
    );
}

/// A tmpfs when there is one: the checkpoint's fsyncs cost nothing there.
fn shm() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        Path::new("/tmp")
    }
}

// ===== the built binary, kill -9 with one batch stuck ================================

const LONG: Duration = Duration::from_secs(120);
const WINDOW: u64 = 4 * 1024 * 1024;

fn gauge(addr: &str, series: &str) -> u64 {
    let text = http_get(addr, "/metrics").1;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap_or(0.0) as u64)
}

/// One record fails "Slow down." call after call while every other call succeeds:
/// its batch pins the checkpoint, the others are acknowledged, and the tail stops at
/// the window. kill -9 then, restart with the record healthy: every line arrives, and
/// the lines Firehose got twice are at most the window's bytes.
#[test]
fn kill9_with_one_batch_stuck_resends_at_most_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            fail_marker: Some((b"STUCK-RECORD".to_vec(), RecordError::SlowDown)),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let mut lines = access_lines("win", 0..40_000);
    lines[2_000] = lines[2_000].replace("\"level\"", "\"mark\":\"STUCK-RECORD\",\"level\"");
    append(&log, &lines);
    let total_bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    assert!(
        total_bytes > 2 * WINDOW,
        "the file must be larger than the window"
    );
    let mut args = base_args(&log, &fake.stream_name());
    args.push(format!("--max-unacked-bytes={WINDOW}"));
    args.push("--max-in-flight=4".into());
    let env = aws_env(&fake.endpoint());

    let mut first = Firetail::start(&args, &env);
    let addr = first.metrics_addr();
    // The window fills: everything read is either stuck behind the pinned batch or
    // acknowledged but not checkpointable past it.
    assert!(
        eventually(LONG, || gauge(&addr, "firetail_unacked_bytes")
            >= WINDOW - 4096),
        "the window never filled; logs:\n{}",
        first.dump()
    );
    let delivered_before_kill = fake.lines_accepted();
    first.kill9();

    fake.update_faults(|f| f.fail_marker = None);
    let mut second = Firetail::start(&args, &env);
    let unique = |fake: &FakeFirehose| {
        let mut seen = HashSet::new();
        fake.accepted_lines()
            .into_iter()
            .filter(|l| seen.insert(l.clone()))
            .count()
    };
    assert!(
        eventually(LONG, || unique(&fake) == lines.len()),
        "not every line arrived after the restart: {} of {}; logs:\n{}",
        unique(&fake),
        lines.len(),
        second.dump()
    );
    second.term();
    assert_eq!(second.exit_code(LONG), 0, "logs:\n{}", second.dump());

    let duplicates = fake.duplicate_lines();
    let duplicate_bytes: u64 = duplicates.iter().map(|l| l.len() as u64 + 1).sum();
    let shortest = lines.iter().map(|l| l.len() as u64 + 1).min().unwrap();
    let bound_lines = WINDOW / shortest;
    println!(
        "window kill9: lines={} delivered_before_kill={delivered_before_kill} duplicates={} duplicate_bytes={duplicate_bytes} bound={bound_lines} bound_bytes={WINDOW}",
        lines.len(),
        duplicates.len()
    );
    assert!(
        duplicate_bytes <= WINDOW,
        "{duplicate_bytes} bytes sent twice; the window is {WINDOW}"
    );
    assert!(duplicates.len() as u64 <= bound_lines);
    assert!(
        delivered_before_kill as usize > duplicates.len(),
        "the first run delivered past the stuck batch"
    );
}

/// Regression: a line longer than the whole window (a 6 MB line against the smallest
/// window, 4 MiB) must not wedge the tail. The bytes of a line still in progress are
/// not ahead of any line the pipeline holds, so they do not count against the window;
/// the line is dead-lettered as oversize and every line after it ships.
#[test]
fn a_line_longer_than_the_window_does_not_wedge_the_tail() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("before", 0..100));
    append(
        &log,
        &[format!("{{\"huge\":\"{}\"}}", "x".repeat(6_000_000))],
    );
    append(&log, &access_lines("after", 0..100));
    let mut args = base_args(&log, &fake.stream_name());
    args.push("--max-unacked-bytes=4MiB".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(
        fake.wait_for_lines(200, Duration::from_secs(60)),
        "{}",
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(Duration::from_secs(60)), 0, "{}", ft.dump());
    let report = ft.report();
    assert_eq!(report["dead_lettered_oversize"], 1, "{report}");
    assert_eq!(report["lines_shipped"], 200, "{report}");
}
