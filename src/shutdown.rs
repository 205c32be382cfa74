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
//! A pod deleted while starting sends SIGTERM within milliseconds. Until a handler
//! exists its default action kills firetail without a drain or a report (or, as PID 1
//! in a container, the kernel discards it and the pod hangs until SIGKILL). So [`block`]
//! runs before `main` (an ELF initialiser in `main.rs`, ahead of the Rust runtime's own
//! set-up): from then on the three signals stay pending, however early they come, and
//! [`install`] — the first thing the runtime runs — unblocks them once the handlers
//! exist, which delivers a pending one to the drain. Once installed, a signal is kept
//! in the channel until the agent reads it, however long starting takes. Only the
//! kernel's exec and the dynamic loader come before [`block`]; nothing in a program
//! can hold a signal back that early.
//!
//! A thread inherits its creator's mask: one spawned between [`block`] and [`install`]
//! would keep the signals blocked for good. That is harmless — the handler is
//! process-wide and the kernel delivers a process-directed signal to any thread that
//! does not block it — as long as the thread that calls [`install`] lives as long as
//! the process; in `main` it is the main thread, which runs the runtime.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// The signals firetail handles, held back from before `main` until [`install`].
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set they are given, which lives on
    // this stack frame and is fully initialised by sigemptyset before any read.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

fn mask(how: libc::c_int) -> std::io::Result<()> {
    let set = stop_signals();
    // SAFETY: a valid, initialised set; the old mask is not asked for (null).
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    match rc {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Holds SIGTERM, SIGINT and SIGHUP pending on the calling thread (and on every
/// thread it spawns) until [`install`]. Called before `main`, before anything else.
pub fn block() -> std::io::Result<()> {
    mask(libc::SIG_BLOCK)
}

/// Installs the handlers, unblocks the signals on the calling thread (a signal that
/// came while they were blocked is delivered now), and forwards SIGTERM and SIGINT,
/// by name, into a channel that `lib::run` reads; tests hand `run` a channel of their
/// own instead. Needs a runtime.
pub fn install() -> std::io::Result<mpsc::Receiver<&'static str>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Only now: a pending signal meets its handler, which wakes the streams above.
    mask(libc::SIG_UNBLOCK)?;
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
