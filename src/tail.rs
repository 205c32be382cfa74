//! tail: the log files on disk → [`Line`]s, complete lines only, in file order.
//!
//! Input: the sources of one lane — each a JSON-lines file's path or a glob — (and, on
//! restart, the checkpoint's entries).
//! Output: `Vec<Line>` chunks on a bounded channel to the batch stage. A slow Firehose
//! fills that channel and stops the reader: the file on disk is the buffer. Reading
//! never runs more than the duplicate window (`--max-unacked-bytes`) ahead of the
//! durable checkpoint.
//!
//! Guarantees (docs/design.md#files-and-lines): files are followed through their open
//! handles, never re-opened by path; a read never straddles a truncation; rotated files are read to
//! their end before they are let go; only complete lines leave, except at the very end
//! (drain, a rotated file retired), where a partial last line leaves with a `\n`
//! appended rather than being lost.
//!
//! One concern per module:
//! - [`framing`]: bytes → complete lines (pure, property-tested);
//! - [`identity`]: (device, inode) and the fingerprint of the first bytes;
//! - [`discovery`]: which files exist (the path, rotated siblings; `stat` only);
//! - `handle`: one open file — check, read, hand over lines;
//! - [`follower`]: the set of open files through rotations and truncations;
//!   `siblings`, its side of discovery (adopting missed files, finding copies); and
//!   `resume`, the restart from the checkpoint;
//! - `sources`: every file of one lane's sources ([`Tail`]) — a follower per literal
//!   path and per path a glob matches, made as paths appear and dropped once let go,
//!   read round-robin, each on its share of the window, at most `--max-files` open;
//! - `watcher`: inotify, read only when the tail is ready to read;
//! - `cadence`: how soon the tail reads again while the app writes;
//! - this file: [`run`], the async shell (the read cadence, the slow poll, the drain).
//!
//! Only the shared modules below the stages are imported (`progress`, `flush_clock`,
//! `firehose`, `config`, `metrics`, `health`): the tail knows nothing of the stages
//! after it, and learns when the open batch is due from [`crate::flush_clock::Due`].

mod cadence;
mod discovery;
mod follower;
mod framing;
mod handle;
mod identity;
mod resume;
mod siblings;
mod sources;
mod watcher;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use crate::handover::Line;
pub use cadence::Cadence;
pub use discovery::raise_nofile_limit;
pub use follower::{FollowSettings, Follower, MAX_FINISHED_OPEN};
pub use framing::{Framer, KEEP_OVERSIZE_BYTES};
pub use handle::POLL_BUDGET;
pub use identity::FINGERPRINT_LEN;
pub use sources::{FileCounts, SourceSpec, Tail, TailSettings};
use watcher::Watch;

/// The slow poll behind inotify: catches what events miss (a filesystem that sends
/// none; an overflowed event queue wakes the tail itself) and times `--rotate-wait`.
/// Every second without inotify; with it, where it is only a safety net, as seldom as
/// the periodic sibling scan allows (an idle sidecar in every pod should cost nothing,
/// but a copy of content truncated before a byte of it was read shows only to that
/// scan, so a quiet log must not leave it unread, and exposed to a crash, for longer
/// than the scan's period); or every second while rotated files are open.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
const POLL_INTERVAL_WITH_INOTIFY: Duration = follower::SCAN_EVERY;
/// The shortest sleep before a due scan: never a busy loop, even if the poll that
/// should have scanned returned early (a full duplicate window).
const SCAN_SLACK: Duration = Duration::from_millis(10);

/// The async shell: polls the tail whenever inotify says a watched directory
/// changed (at most as often as the [`Cadence`] allows), or the slow poll fires; sends lines
/// downstream; and on drain reads to the end, waits for `quiet` without a new byte,
/// finishes every file in bounded steps and returns — dropping the sender, which is how
/// the batch stage learns the input ended.
pub async fn run(
    mut tail: Tail,
    tx: mpsc::Sender<Vec<Line>>,
    mut drain: watch::Receiver<bool>,
    quiet: Duration,
    mut cadence: Cadence,
    following: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let mut watcher = Watch::new();
    let metrics = tail.metrics.clone();
    let progress = tail.progress.clone();
    let mut last_bytes: Option<Instant> = None;
    let mut drain_seen: Option<Instant> = None;
    loop {
        // Every file's share of the duplicate window is full: wait for a durable
        // checkpoint to free room for one (another lane's files do not wait on these).
        progress.wait_for_room_for(&tail.keys()).await;
        let polled = Instant::now();
        let before = tail.bytes_read();
        let mut lines = Vec::new();
        let more = tail.poll(&mut lines)?;
        cadence.read(lines.len());
        // Ready once the paths are watched and the first look is done — the files
        // themselves may not exist yet: in a pod the app creates them only after this
        // probe passes.
        following.store(true, std::sync::atomic::Ordering::Relaxed);
        // Any byte restarts the drain's quiet period, a partial line's too.
        if tail.bytes_read() != before {
            last_bytes = Some(Instant::now());
        }
        if !send(&tx, lines, &metrics).await {
            return Ok(());
        }
        if more {
            tokio::task::yield_now().await;
            continue;
        }
        watcher.update(&tail.watch_dirs());
        if !watcher.active() || watcher.take_created() {
            tail.discover_soon();
        }
        let poll_every = if !watcher.active() || tail.has_rotated() {
            POLL_INTERVAL
        } else {
            POLL_INTERVAL_WITH_INOTIFY
        };
        // Files whose share was full when read: room for one is a reason to read again.
        let blocked = tail.blocked();
        let room = async {
            if blocked.is_empty() {
                std::future::pending().await
            } else {
                progress.wait_for_room_for(&blocked).await
            }
        };
        if *drain.borrow() {
            // The quiet period starts at the drain signal or at the last byte read,
            // whichever is later — also when the signal came while a send was held up
            // by back-pressure.
            let seen = *drain_seen.get_or_insert_with(Instant::now);
            let quiet_until = last_bytes.map_or(seen, |t| t.max(seen)) + quiet;
            if Instant::now() >= quiet_until {
                return finish(tail, &tx, &metrics).await;
            }
            tokio::select! {
                _ = watcher.changed() => {}
                _ = room => {}
                _ = tokio::time::sleep_until(quiet_until.min(Instant::now() + poll_every)) => {}
            }
        } else {
            let not_before = polled + cadence.wait(polled);
            tokio::select! {
                _ = next_change(&mut watcher, &cadence, not_before) => {}
                _ = room => {}
                _ = tokio::time::sleep(poll_every.min(tail.scan_due_in()).max(SCAN_SLACK)) => {}
                _ = drain.changed() => {}
            }
        }
        if watcher.take_created() {
            tail.discover_soon();
        }
    }
}

/// Waits for inotify to report a change, but not before `not_before`: writes that come
/// faster than that gather (their events wait in the kernel's queue) and are read in
/// one go, with one wake-up of the thread instead of one per write; the first write
/// after a quiet spell is read at once. A batch cut while it slept publishes the next
/// deadline: then it gathers on until just before that one ([`Cadence::later`]).
async fn next_change(watcher: &mut Watch, cadence: &Cadence, mut not_before: Instant) {
    loop {
        tokio::time::sleep_until(not_before).await;
        match cadence.later(Instant::now()) {
            Some(t) if t > not_before => not_before = t,
            _ => break,
        }
    }
    watcher.changed().await;
}

/// Sends a chunk downstream; false once the batch stage is gone.
async fn send(
    tx: &mpsc::Sender<Vec<Line>>,
    lines: Vec<Line>,
    metrics: &crate::metrics::Metrics,
) -> bool {
    if lines.is_empty() {
        return true;
    }
    // A chunk can hold lines of several sources: each counts for its own.
    metrics.count_by_source(lines.iter().map(|l| (l.source, 1)), |s| &s.lines_read);
    tx.send(lines).await.is_ok()
}

/// The drain's end: every file of every source read to its end in bounded steps, each
/// sent like a poll's (and waiting for room in the duplicate window when every file
/// left to read has none), then the partial lines.
async fn finish(
    mut tail: Tail,
    tx: &mpsc::Sender<Vec<Line>>,
    metrics: &crate::metrics::Metrics,
) -> std::io::Result<()> {
    let progress = tail.progress.clone();
    let mut progressed = true;
    loop {
        if !progressed {
            progress.wait_for_room_for(&tail.blocked()).await;
        }
        let before = tail.bytes_read();
        let mut lines = Vec::new();
        let more = tail.finish(&mut lines)?;
        progressed = !lines.is_empty() || tail.bytes_read() != before;
        if !send(tx, lines, metrics).await || !more {
            break;
        }
        tokio::task::yield_now().await;
    }
    tracing::info!(
        files = tail.files_finished(),
        "Drain: the files were quiet for the quiet period; every file was read to its end and reading stopped."
    );
    Ok(())
}
