//! tail: the log file on disk → [`Line`]s, complete lines only, in file order.
//!
//! Input: the path of one JSON-lines file (and, on restart, the checkpoint's entries).
//! Output: `Vec<Line>` chunks on a bounded channel to the batch stage. A slow Firehose
//! fills that channel and stops the reader: the file on disk is the buffer. Reading
//! never runs more than the duplicate window (`--max-unacked-bytes`) ahead of the
//! durable checkpoint.
//!
//! Guarantees (DESIGN §5): files are followed through their open handles, never
//! re-opened by path; a read never straddles a truncation; rotated files are read to
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
//! - this file: [`run`], the async shell (inotify, the slow poll, the drain).
//!
//! Only `progress`, `config` and `metrics` are imported: the tail knows nothing of the
//! stages after it.

mod discovery;
mod follower;
mod framing;
mod handle;
mod identity;
mod resume;
mod siblings;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

pub use discovery::raise_nofile_limit;
pub use follower::{Follower, Settings, MAX_FINISHED_OPEN};
pub use framing::{Framer, Line, KEEP_OVERSIZE_BYTES, MAX_RECORD_BYTES};
pub use identity::FINGERPRINT_LEN;

/// The slow poll behind inotify: catches what events miss (an overflowed event queue,
/// a filesystem that sends none) and times `--rotate-wait`. Every second without
/// inotify; every five with it, where it is only a safety net — an idle sidecar in every
/// pod should cost nothing — or every second while rotated files are open.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
const POLL_INTERVAL_WITH_INOTIFY: Duration = Duration::from_secs(5);

/// How long a wake-up waits for more writes before reading (see `run`).
const SETTLE: Duration = Duration::from_millis(25);

/// The async shell: polls the follower whenever inotify says a watched directory
/// changed (or the slow poll fires), sends lines downstream, and on drain reads to the
/// end, waits for `quiet` without a new byte, finishes every file in bounded steps and
/// returns — dropping the sender, which is how the batch stage learns the input ended.
pub async fn run(
    mut follower: Follower,
    tx: mpsc::Sender<Vec<Line>>,
    mut drain: watch::Receiver<bool>,
    quiet: Duration,
    following: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let wake = Arc::new(Notify::new());
    let mut watcher = Watch::new(wake.clone());
    let metrics = follower.metrics.clone();
    let progress = follower.progress.clone();
    let mut last_bytes: Option<Instant> = None;
    let mut drain_seen: Option<Instant> = None;
    loop {
        // The duplicate window is full: wait for a durable checkpoint to free room.
        progress.wait_for_room().await;
        let before = follower.bytes_read();
        let mut lines = Vec::new();
        let more = follower.poll(&mut lines)?;
        // Ready once the path is watched and the first look is done — the file itself
        // may not exist yet: in a pod the app creates it only after this probe passes.
        following.store(true, std::sync::atomic::Ordering::Relaxed);
        // Any byte restarts the drain's quiet period, a partial line's too.
        if follower.bytes_read() != before {
            last_bytes = Some(Instant::now());
        }
        if !send(&tx, lines, &metrics).await {
            return Ok(());
        }
        if more {
            tokio::task::yield_now().await;
            continue;
        }
        watcher.update(&follower.watch_dirs());
        let poll_every = if !watcher.active() || follower.has_rotated() {
            POLL_INTERVAL
        } else {
            POLL_INTERVAL_WITH_INOTIFY
        };
        if *drain.borrow() {
            // The quiet period starts at the drain signal or at the last byte read,
            // whichever is later — also when the signal came while a send was held up
            // by back-pressure.
            let seen = *drain_seen.get_or_insert_with(Instant::now);
            let quiet_until = last_bytes.map_or(seen, |t| t.max(seen)) + quiet;
            if Instant::now() >= quiet_until {
                return finish(follower, &tx, &metrics).await;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(quiet_until.min(Instant::now() + poll_every)) => {}
            }
        } else {
            tokio::select! {
                _ = wake.notified() => {
                    // An app writes line by line: let a burst of writes (and their
                    // inotify events) gather and read them in one go, rather than wake
                    // the pipeline per write. Far below --flush-interval; not in a drain.
                    tokio::select! {
                        _ = tokio::time::sleep(SETTLE) => {}
                        _ = drain.changed() => {}
                    }
                }
                _ = tokio::time::sleep(poll_every) => {}
                _ = drain.changed() => {}
            }
        }
    }
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
    metrics.lines_read.inc_by(lines.len() as u64);
    tx.send(lines).await.is_ok()
}

/// The drain's end: every file read to its end in bounded steps, each sent like a
/// poll's (and each waiting for room in the duplicate window), then the partial lines.
async fn finish(
    mut follower: Follower,
    tx: &mpsc::Sender<Vec<Line>>,
    metrics: &crate::metrics::Metrics,
) -> std::io::Result<()> {
    let progress = follower.progress.clone();
    loop {
        progress.wait_for_room().await;
        let mut lines = Vec::new();
        let more = follower.finish(&mut lines)?;
        if !send(tx, lines, metrics).await || !more {
            break;
        }
        tokio::task::yield_now().await;
    }
    tracing::info!("Drain: the file was quiet for the quiet period; reading stopped.");
    Ok(())
}

/// inotify on the path's directory and, for a symlinked path, its target's (the file
/// itself may not exist yet, and rotation replaces it). Only events about the log file
/// and its rotated siblings wake the tail: the app's other files, and firetail's own
/// checkpoint and dead-letter writes beside it, do not. Failure is not fatal: the slow
/// poll still finds everything.
struct Watch {
    wake: Arc<Notify>,
    watcher: Option<notify::RecommendedWatcher>,
    dirs: Vec<(PathBuf, String)>,
    /// The file names whose events matter (the path's, the symlink target's).
    names: Arc<std::sync::Mutex<Vec<String>>>,
    failed: bool,
}

impl Watch {
    fn new(wake: Arc<Notify>) -> Watch {
        Watch {
            wake,
            watcher: None,
            dirs: Vec::new(),
            names: Arc::default(),
            failed: false,
        }
    }

    fn active(&self) -> bool {
        self.watcher.is_some() && !self.failed
    }

    /// Watches `dirs` (a re-pointed symlink can bring a new one).
    fn update(&mut self, dirs: &[(PathBuf, String)]) {
        use notify::Watcher;
        if self.dirs == dirs {
            return;
        }
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) =
            dirs.iter().map(|(_, n)| n.clone()).collect();
        if self.watcher.is_none() {
            let (wake, names) = (self.wake.clone(), self.names.clone());
            let handler = move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else { return };
                let names = names.lock().unwrap_or_else(|e| e.into_inner());
                let ours = event.paths.is_empty()
                    || event.need_rescan()
                    || event.paths.iter().any(|p| {
                        p.file_name().is_some_and(|f| {
                            let f = f.as_encoded_bytes();
                            names.iter().any(|n| f.starts_with(n.as_bytes()))
                        })
                    });
                if ours {
                    wake.notify_one();
                }
            };
            match notify::recommended_watcher(handler) {
                Ok(w) => self.watcher = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot use inotify; falling back to polling every second.");
                    self.failed = true;
                    self.dirs = dirs.to_vec();
                    return;
                }
            }
        }
        let w = self.watcher.as_mut().expect("created above");
        let old: Vec<&PathBuf> = self.dirs.iter().map(|(d, _)| d).collect();
        let new: Vec<&PathBuf> = dirs.iter().map(|(d, _)| d).collect();
        for d in &old {
            if !new.contains(d) {
                let _ = w.unwatch(d);
            }
        }
        self.failed = false;
        for d in new.iter().copied() {
            if old.contains(&d) {
                continue;
            }
            if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %d.display(), error = %e, "Cannot watch the directory with inotify; falling back to polling every second.");
                self.failed = true;
            }
        }
        self.dirs = dirs.to_vec();
    }
}
