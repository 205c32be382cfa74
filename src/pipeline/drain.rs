//! drain: the end of the running phase and the one shutdown path — every task watched
//! from start to exit (a [`Failure`] names the one that failed), the drain under
//! `--drain-timeout`, the stages stopped, and the final checkpoint
//! (docs/design.md#shutdown-and-drain).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::{Pipeline, Stage};
use crate::checkpoint::Checkpointer;
use crate::config::Config;
use crate::outcome::DrainEnd;
use crate::report::settled;

/// The drain logs its progress at most this often.
const DRAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// After a complete drain, how long a stage may take to return once its input ended
/// (it only returns from its loop; anything longer is a bug, and it is aborted).
const STAGE_END_WAIT: Duration = Duration::from_secs(1);

/// A pipeline task that failed, for its ERROR and the drain report.
pub(super) struct Failure {
    pub(super) task: &'static str,
    pub(super) error: anyhow::Error,
}

impl Failure {
    /// The task ended with an error or a panic, or ended when it should not have.
    fn of<T>(
        task: &'static str,
        result: Result<anyhow::Result<T>, JoinError>,
        early: bool,
    ) -> Option<Failure> {
        let error = match result {
            Ok(Ok(_)) if early => anyhow::anyhow!("it ended before the drain"),
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => e,
            Err(e) => anyhow::Error::new(e),
        };
        tracing::error!(
            task,
            error = format!("{error:#}"),
            "A pipeline task failed; draining what can be drained, then exiting 1."
        );
        Some(Failure { task, error })
    }
}

/// Why the running phase ended.
pub(super) enum Stop {
    Signal(&'static str),
    Failed(Failure),
}

/// Waits for the next of a stage's tasks (one per lane) to end: pending forever once
/// every one has, so one `select!` can watch every task without polling an empty set.
async fn next_ended(stage: &mut Stage) -> Result<anyhow::Result<()>, JoinError> {
    match stage.join_next().await {
        Some(result) => result,
        None => std::future::pending().await,
    }
}

/// Waits for a task that may already have been waited for: pending forever once it
/// has, so one `select!` can watch every task without polling a finished handle.
async fn ended<T>(slot: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    match slot {
        Some(handle) => {
            let result = handle.await;
            *slot = None;
            result
        }
        None => std::future::pending().await,
    }
}

impl Pipeline {
    /// The running phase: until a signal, or until a task ends — which before the
    /// drain is always a failure.
    pub(super) async fn running(&mut self, signals: &mut mpsc::Receiver<&'static str>) -> Stop {
        let failure = tokio::select! {
            name = signals.recv() => {
                return Stop::Signal(name.unwrap_or("signal channel closed"))
            }
            res = next_ended(&mut self.tails) => Failure::of("tail", res, true),
            res = next_ended(&mut self.batchers) => Failure::of("batch", res, true),
            res = next_ended(&mut self.ships) => Failure::of("ship", res, true),
            res = ended(&mut self.writer) => Failure::of("checkpoint", res.map(Ok), true),
        };
        Stop::Failed(failure.expect("a task that ends early is a failure"))
    }

    /// The one shutdown path: tell the tail, then wait — under `--drain-timeout`, and
    /// until a second signal at most — for the ship stage to end, which it does once
    /// every stage before it has flushed and dropped its sender. Every task that ends
    /// meanwhile is checked. Returns how the drain ended and every task that failed.
    pub(super) async fn drain(
        &mut self,
        config: &Config,
        stop: Stop,
        signals: &mut mpsc::Receiver<&'static str>,
    ) -> (DrainEnd, Vec<Failure>) {
        self.health.draining.store(true, Ordering::Relaxed);
        let _ = self.drain_tx.send(true);
        let started = Instant::now();
        let deadline = started + config.drain_timeout;
        let mut failures = Vec::new();
        match stop {
            Stop::Signal(name) => tracing::info!(
                signal = name,
                drain_timeout = %humantime::format_duration(config.drain_timeout),
                drain_quiet = %humantime::format_duration(config.drain_quiet),
                "Drain started: reading every file to its end, then shipping the rest."
            ),
            Stop::Failed(f) => failures.push(f),
        }
        let mut tick =
            tokio::time::interval_at(started + DRAIN_PROGRESS_EVERY, DRAIN_PROGRESS_EVERY);
        let end = loop {
            if self.ships.is_empty() {
                // Nothing can be delivered any more (every lane's ship stage failed, or
                // ended).
                break if failures.is_empty() {
                    DrainEnd::Drained
                } else {
                    DrainEnd::Error
                };
            }
            tokio::select! {
                res = next_ended(&mut self.ships) => failures.extend(Failure::of("ship", res, false)),
                res = next_ended(&mut self.tails) => failures.extend(Failure::of("tail", res, false)),
                res = next_ended(&mut self.batchers) => failures.extend(Failure::of("batch", res, false)),
                res = ended(&mut self.writer) => {
                    failures.extend(Failure::of("checkpoint", res.map(Ok), true));
                }
                _ = tokio::time::sleep_until(deadline) => break DrainEnd::Deadline,
                Some(name) = signals.recv() => {
                    tracing::warn!(signal = name, "Second signal: ending the drain now.");
                    break DrainEnd::SecondSignal;
                }
                _ = tick.tick() => tracing::info!(
                    lines_left = self.metrics.total_lines_read().saturating_sub(settled(&self.metrics)),
                    seconds_left = deadline.saturating_duration_since(Instant::now()).as_secs_f64(),
                    "Drain in progress."
                ),
            }
        };
        failures.extend(self.stop_stages(end == DrainEnd::Drained).await);
        let end = if end == DrainEnd::Drained && !failures.is_empty() {
            DrainEnd::Error
        } else {
            end
        };
        (end, failures)
    }

    /// Ends every lane's tail, batch and ship tasks, reading the result of each that
    /// ended on its own. After a complete drain every one of them is ending (each ended
    /// because the one before it dropped its sender), so they are waited for, briefly;
    /// otherwise the ones still running are aborted.
    async fn stop_stages(&mut self, drained: bool) -> Vec<Failure> {
        let mut failures = Vec::new();
        for (task, stage) in [
            ("tail", &mut self.tails),
            ("batch", &mut self.batchers),
            ("ship", &mut self.ships),
        ] {
            if drained {
                let end = Instant::now() + STAGE_END_WAIT;
                while let Ok(Some(res)) = tokio::time::timeout_at(end, stage.join_next()).await {
                    failures.extend(Failure::of(task, res, false));
                }
            }
            while let Some(res) = stage.try_join_next() {
                failures.extend(Failure::of(task, res, false));
            }
            stage.abort_all();
        }
        failures
    }

    /// Acknowledged offsets only: what was not delivered stays ahead of the
    /// checkpoint, for a restart to ship. A failed writer task is replaced by a
    /// fresh writer for this last write.
    pub(super) async fn final_checkpoint(&mut self, config: &Config) {
        let _ = self.stop_tx.send(true);
        let mut checkpointer = match self.writer.take() {
            Some(handle) => handle.await.ok(),
            None => None,
        }
        .unwrap_or_else(|| Checkpointer::new(&config.checkpoint, self.metrics.clone()));
        if let Err(e) = checkpointer.write(&self.progress) {
            tracing::error!(file = %config.checkpoint.display(), error = %e, "Cannot write the final checkpoint; a restart will ship acknowledged lines again.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task's end is a failure when it errs or panics, and when it returns before
    /// the drain (only the drain ends the stages); after the drain a clean return is
    /// what every stage does.
    #[tokio::test]
    async fn a_task_fails_on_error_panic_or_an_early_end() {
        let ok = || -> Result<anyhow::Result<()>, JoinError> { Ok(Ok(())) };
        assert!(Failure::of("tail", ok(), false).is_none());
        assert_eq!(Failure::of("tail", ok(), true).unwrap().task, "tail");
        let err: Result<anyhow::Result<()>, JoinError> = Ok(Err(anyhow::anyhow!("EIO")));
        let f = Failure::of("tail", err, false).unwrap();
        assert!(format!("{:#}", f.error).contains("EIO"));
        let panicked = tokio::spawn(async { panic!("a bug") })
            .await
            .map(Ok::<(), _>);
        assert_eq!(Failure::of("batch", panicked, false).unwrap().task, "batch");
    }

    #[tokio::test]
    async fn a_finished_task_is_waited_for_once() {
        let mut slot = Some(tokio::spawn(async { 7 }));
        assert_eq!(ended(&mut slot).await.unwrap(), 7);
        assert!(slot.is_none());
        let again = tokio::time::timeout(Duration::from_millis(10), ended(&mut slot)).await;
        assert!(again.is_err(), "a waited-for task is pending forever");
    }
}
