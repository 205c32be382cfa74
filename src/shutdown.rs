//! Signals, in one place.
//!
//! SIGTERM — Kubernetes sends this to start a graceful shutdown (for a native sidecar,
//! only after every main container has exited: KEP-753). SIGINT does the same for a
//! person at a terminal. The first one starts the drain; a second one ends it at once.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Forwards SIGTERM and SIGINT, by name, into a channel that `lib::run` reads; tests
/// hand `run` a channel of their own instead.
pub fn install() -> std::io::Result<mpsc::Receiver<&'static str>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if tx.send(name).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
