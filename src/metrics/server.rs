//! The listener for `/metrics`, `/healthz` and `/readyz`, built so that nothing that
//! arrives on the port can take from shipping what shipping needs
//! (docs/design.md#observability).
//!
//! Anything in the cluster can open connections to the port. Left unbounded, 1,100
//! idle connections used every file descriptor of a 1,024 limit: the tail could not
//! open the next rotated file, every connection to Firehose failed, and the accept
//! loop spun at 100 % CPU on EMFILE. So:
//!
//! - **A descriptor budget**: at most [`Limits::max_connections`] connections at
//!   once — 64, or a sixteenth of the process's descriptor limit when that is lower.
//!   A connection beyond the cap is accepted and closed at once (counted in
//!   `firetail_metrics_connections_rejected_total`), so it never waits in the backlog
//!   holding a kernel slot either.
//! - **Short lives**: the request head must arrive within the header timeout, the
//!   whole exchange must end within the connection timeout, and keep-alive is off (one
//!   request per connection), so an idle or slow client frees its slot within seconds.
//! - **Backoff on accept errors**: EMFILE, ENFILE and ENOBUFS leave the connection in
//!   the backlog, so retrying at once would spin; the loop sleeps, doubling from 5 ms
//!   to 1 s, and warns at most once every 10 s.
//!
//! Kubelet probes under a flood: a probe arriving while every slot is taken is closed
//! (a failed probe); because flooding connections are closed within the connection
//! timeout, a flood must be renewed every few seconds to keep the slots, and one failed
//! probe does not restart or un-ready a pod (the default failureThreshold is 3, every
//! 10 s). Shipping never depends on this port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Metrics;
use crate::health::Health;
use crate::log_throttle::LogThrottle;

/// What one connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; the descriptor budget of the port.
    pub max_connections: usize,
    /// The request line and headers must arrive within this.
    pub header_timeout: Duration,
    /// The whole connection, request to last byte of the answer.
    pub connection_timeout: Duration,
}

/// A scrape or a probe sends its request at once and reads a few KiB back: seconds are
/// generous on any cluster network, and short enough that a flood of idle connections
/// drains before the kubelet's next probe.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;
/// Never more than this share of the descriptor limit (1/16).
const DESCRIPTOR_SHARE: u64 = 16;
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Limits {
    /// The defaults, with the connection cap cut to a sixteenth of the soft
    /// RLIMIT_NOFILE when that is lower than 64 (never below 4).
    pub fn for_this_process() -> Limits {
        let share = descriptor_limit().map_or(MAX_CONNECTIONS as u64, |n| n / DESCRIPTOR_SHARE);
        Limits {
            max_connections: share.clamp(4, MAX_CONNECTIONS as u64) as usize,
            header_timeout: HEADER_TIMEOUT,
            connection_timeout: CONNECTION_TIMEOUT,
        }
    }
}

/// The soft limit on open files, if it can be read.
fn descriptor_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Binds `--metrics-addr` now, so a bad address is a start-up error (exit 2). `[::]`
/// (the default) listens on IPv6 and IPv4 alike, so IPv6-only and dual-stack clusters
/// can scrape it; on a host without IPv6 it falls back to `0.0.0.0` on the same port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    match listen(addr) {
        Err(e) if is_ipv6_any(addr) && no_ipv6(&e) => {
            listen(SocketAddr::from(([0, 0, 0, 0], addr.port())))
        }
        result => result,
    }
}

fn is_ipv6_any(addr: SocketAddr) -> bool {
    addr.is_ipv6() && addr.ip().is_unspecified()
}

/// The errors a kernel without IPv6 (or with it disabled) gives for `[::]`.
fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if is_ipv6_any(addr) {
        // Dual-stack even where net.ipv6.bindv6only=1.
        socket.set_only_v6(false)?;
    }
    // As tokio's own bind: a restart may rebind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped, within the
/// limits of this process.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    serve_with(listener, metrics, health, Limits::for_this_process()).await
}

/// [`serve`] with explicit limits (tests use a small cap).
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let warn = LogThrottle::new(Duration::from_secs(10));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                if let Some(n) = warn.note(1) {
                    tracing::warn!(error = %e, errors = n, backoff_ms = backoff.as_millis() as u64, "Metrics port cannot accept connections; backing off.");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(
                    stream,
                    permit,
                    metrics.clone(),
                    health.clone(),
                    limits,
                ));
            }
            Err(_) => {
                metrics.metrics_connections_rejected.inc();
                drop(stream);
            }
        }
    }
}

/// One request, one answer, within the limits; the permit (the descriptor budget) is
/// released when the connection is dropped.
async fn connection(
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    limits: Limits,
) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let reply = answer(&req, &metrics, &health);
        async move { Ok::<_, Infallible>(reply) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .max_buf_size(16 * 1024)
        .serve_connection(io, service);
    let _ = tokio::time::timeout(limits.connection_timeout, conn).await;
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" if wants_openmetrics(req) => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.encode_text(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if health.is_ready() => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            not_ready_because(health).to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// OpenMetrics when the Accept header lists it with a non-zero weight (Prometheus
/// does, first), else the text format 0.0.4 every scraper understands.
fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            parts.next() == Some("application/openmetrics-text")
                && !parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        })
}

fn not_ready_because(health: &Health) -> String {
    let problems = health.problems();
    if health.draining.load(Ordering::Relaxed) {
        "draining\n".into()
    } else if health.config_error.load(Ordering::Relaxed) {
        "delivery blocked by a configuration error (see the ERROR log)\n".into()
    } else if !problems.is_empty() {
        problems
            .iter()
            .map(|(source, path, why)| {
                format!(
                    "source {source}: {} {why} (see the ERROR log)\n",
                    path.display()
                )
            })
            .collect()
    } else if health.checkpoint_unreadable.load(Ordering::Relaxed) {
        "the checkpoint cannot be read (see the ERROR log)\n".into()
    } else {
        "starting: not watching the files yet\n".into()
    }
}

#[cfg(test)]
mod tests;
