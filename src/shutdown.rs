//! Signals, in one place.
//!
//! SIGTERM — Kubernetes sends this to start a graceful shutdown (for a native sidecar,
//! only after every main container has exited: KEP-753). SIGINT does the same for a
//! person at a terminal. The first one starts the drain; a second one ends it at once.
//!
//! SIGHUP — sent by some process supervisors and by a closing terminal; its default
//! action kills the process without a drain. firetail has nothing to reload, so it is
//! logged and ignored.
//!
//! [`install`] runs first thing in `main`, before the configuration is read or the
//! Firehose client is built: a pod deleted while starting sends SIGTERM within
//! milliseconds, and in a container firetail is PID 1, for which the kernel discards
//! any signal that has no handler — an early SIGTERM would be lost and the pod would
//! hang until SIGKILL. Once installed, a signal is kept in the channel until the agent
//! reads it, however long starting takes.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Installs the handlers and forwards SIGTERM and SIGINT, by name, into a channel that
/// `lib::run` reads; tests hand `run` a channel of their own instead. Needs a runtime.
pub fn install() -> std::io::Result<mpsc::Receiver<&'static str>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    tracing::info!(signal = "SIGHUP", "Signal ignored: firetail has no configuration to reload; SIGTERM drains and stops it.");
                    continue;
                }
            };
            if tx.send(name).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
