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

fn not_ready_because(health: &Health) -> &'static str {
    if health.draining.load(Ordering::Relaxed) {
        "draining\n"
    } else if health.config_error.load(Ordering::Relaxed) {
        "delivery blocked by a configuration error (see the ERROR log)\n"
    } else if health.path_error.load(Ordering::Relaxed) {
        "the log path is not a regular file (see the ERROR log)\n"
    } else if health.checkpoint_unreadable.load(Ordering::Relaxed) {
        "the checkpoint cannot be read (see the ERROR log)\n"
    } else {
        "starting: not watching the file yet\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, Arc<Metrics>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        tokio::spawn(serve_with(listener, metrics.clone(), health, limits));
        (addr, metrics)
    }

    /// Everything the server sends until it closes, or None if it is still open
    /// after `within`.
    async fn until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
        let mut out = Vec::new();
        match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
            Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
            Err(_) => None,
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("one request per connection: closed after the answer")
    }

    const SMALL: Limits = Limits {
        max_connections: 2,
        header_timeout: Duration::from_millis(300),
        connection_timeout: Duration::from_millis(600),
    };

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_counted() {
        let (addr, metrics) = start(SMALL).await;
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // The cap is reached once the server accepted both; the third is closed unread.
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            until_closed(&mut third, Duration::from_secs(5))
                .await
                .as_deref(),
            Some("")
        );
        assert_eq!(metrics.metrics_connections_rejected.get(), 1);
        // The idle ones are closed by the header timeout, and the slots come back.
        for s in &mut idle {
            assert!(until_closed(s, Duration::from_secs(5)).await.is_some());
        }
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_client_that_sends_half_a_request_is_cut_off() {
        let (addr, _) = start(SMALL).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("closed by the header timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn garbage_gets_an_error_and_a_closed_connection() {
        let (addr, _) = start(SMALL).await;
        for _ in 0..20 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
                .await
                .unwrap();
            let answer = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
                "{answer}"
            );
        }
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn keep_alive_is_refused() {
        let (addr, _) = start(SMALL).await;
        let answer = get(addr, "/healthz").await;
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn the_default_address_takes_ipv4_and_ipv6() {
        let listener = bind("[::]:0".parse().unwrap()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(serve_with(
            listener,
            Arc::new(Metrics::new()),
            Arc::new(Health::default()),
            SMALL,
        ));
        let v4 = get(SocketAddr::from(([127, 0, 0, 1], port)), "/healthz").await;
        assert!(v4.starts_with("HTTP/1.1 200"), "{v4}");
        // Where this host has IPv6 loopback, it answers there too.
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            let v6 = get(
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
                "/healthz",
            )
            .await;
            assert!(v6.starts_with("HTTP/1.1 200"), "{v6}");
        }
    }

    #[test]
    fn only_missing_ipv6_falls_back() {
        let err = |code| std::io::Error::from_raw_os_error(code);
        assert!(no_ipv6(&err(libc::EAFNOSUPPORT)));
        assert!(no_ipv6(&err(libc::EADDRNOTAVAIL)));
        assert!(
            !no_ipv6(&err(libc::EADDRINUSE)),
            "a taken port is exit 2, not a fallback"
        );
        assert!(!no_ipv6(&err(libc::EACCES)));
        assert!(is_ipv6_any("[::]:9797".parse().unwrap()));
        assert!(!is_ipv6_any("[::1]:9797".parse().unwrap()));
        assert!(!is_ipv6_any("0.0.0.0:9797".parse().unwrap()));
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let req = |accept: Option<&str>| {
            let mut b = Request::builder().uri("/metrics");
            if let Some(a) = accept {
                b = b.header("accept", a);
            }
            b.body(()).unwrap()
        };
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(&req(Some(prometheus))));
        assert!(wants_openmetrics(&req(Some(
            "application/openmetrics-text"
        ))));
        assert!(!wants_openmetrics(&req(None)));
        assert!(!wants_openmetrics(&req(Some("text/plain"))));
        assert!(!wants_openmetrics(&req(Some("*/*"))));
        assert!(!wants_openmetrics(&req(Some(
            "application/openmetrics-text;q=0"
        ))));
    }

    #[tokio::test]
    async fn metrics_are_negotiated() {
        let (addr, _) = start(SMALL).await;
        let plain = get(addr, "/metrics").await;
        assert!(plain.contains("text/plain; version=0.0.4"), "{plain}");
        assert!(!plain.contains("# EOF"));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\n\r\n",
        )
        .await
        .unwrap();
        let om = until_closed(&mut s, Duration::from_secs(10)).await.unwrap();
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
    }

    #[test]
    fn the_cap_is_a_small_share_of_the_descriptor_limit() {
        let limit = descriptor_limit().expect("getrlimit works on Linux");
        let cap = Limits::for_this_process().max_connections as u64;
        assert!(
            cap <= 64 && (cap <= limit / 16 || cap == 4),
            "{cap} of {limit}"
        );
    }
}
