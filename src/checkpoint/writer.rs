//! The checkpoint writer task: writes when the ledger changes, paced, and retries a
//! failing disk on its own timer — so the checkpoint catches up once the disk heals
//! even if no acknowledgement arrives after that (a sidecar whose app went quiet).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Checkpointer;
use crate::progress::Progress;
use crate::wait::{sleep_until_opt, Backoff};

/// "At most every few hundred milliseconds" (docs/design.md#checkpoint): ≤ 2 writes a
/// second, each two fsyncs and a rename, off the runtime thread. Measured, writes at
/// 4 a second as about a tenth of firetail's CPU at 5,000 lines/s (a blocking
/// thread's wake-up, and the fsyncs in the kernel); a restart re-ships at most this
/// long's acknowledgements more, far inside the duplicate window. Skipped when half
/// the duplicate window waits on a write ([`Progress::under_pressure`]), so that a
/// fast backlog is not throttled by this cadence.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// A failing disk: when to try again.
struct Failing {
    backoff: Backoff,
    retry_at: Instant,
}

/// Writes the checkpoint until `stop` turns true, then hands the writer back for the
/// final checkpoint. Sleeps while nothing changes and the disk is healthy.
pub async fn run(
    mut cp: Checkpointer,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Checkpointer {
    let mut failing: Option<Failing> = None;
    let mut last_write: Option<Instant> = None;
    loop {
        let retry_at = failing.as_ref().map(|f| f.retry_at);
        tokio::select! {
            // While failing, new content waits for the retry timer (its permit stays).
            _ = progress.changed(), if failing.is_none() => {}
            _ = sleep_until_opt(retry_at) => {}
            _ = stop.changed() => return cp,
        }
        if failing.is_none() && !paced(last_write, &progress, &mut stop).await {
            return cp;
        }
        last_write = Some(Instant::now());
        let result;
        (cp, result) = write_blocking(cp, progress.clone()).await;
        failing = match (result, failing) {
            (Ok(_), None) => None,
            (Ok(_), Some(_)) => {
                tracing::info!(file = %cp.path.display(), "Checkpoint writes work again; the checkpoint is current.");
                None
            }
            (Err(e), None) => {
                tracing::error!(file = %cp.path.display(), error = %e, "Cannot write the checkpoint; retrying with backoff. Shipping goes on, but a restart now would ship lines again, and reading stops once the duplicate window is full.");
                let mut backoff = Backoff::new();
                let retry_at = Instant::now() + backoff.next_wait();
                Some(Failing { backoff, retry_at })
            }
            (Err(_), Some(mut f)) => {
                f.retry_at = Instant::now() + f.backoff.next_wait();
                Some(f)
            }
        };
    }
}

/// Waits until [`WRITE_INTERVAL`] has passed since the last write, or the duplicate
/// window is under pressure. False when `stop` turned true meanwhile.
async fn paced(
    last_write: Option<Instant>,
    progress: &Progress,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let Some(last) = last_write else { return true };
    let due = last + WRITE_INTERVAL;
    while Instant::now() < due && !progress.under_pressure() {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => break,
            // Re-check the pressure; the write below covers this change too.
            _ = progress.changed() => {}
            _ = stop.changed() => return false,
        }
    }
    true
}

/// fsync waits on the disk: not on the runtime thread, which ships meanwhile.
async fn write_blocking(
    mut cp: Checkpointer,
    progress: Arc<Progress>,
) -> (Checkpointer, std::io::Result<bool>) {
    tokio::task::spawn_blocking(move || {
        let result = cp.write(&progress);
        (cp, result)
    })
    .await
    .expect("the checkpoint write does not panic")
}
