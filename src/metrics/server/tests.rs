use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(limits: Limits) -> (SocketAddr, Arc<Metrics>) {
    start_with(limits, Arc::new(Health::default())).await
}

async fn start_with(limits: Limits, health: Arc<Health>) -> (SocketAddr, Arc<Metrics>) {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::default());
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
        Arc::new(Metrics::default()),
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

/// Two sources, each with something other than a regular file at its path (a real
/// FIFO, a real directory): `/readyz` is 503 and its body names each source, its path
/// and what is there; once both are cleared it is 200 again.
#[tokio::test]
async fn readyz_names_every_source_whose_path_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("web.log");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads one NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let audit = dir.path().join("audit.log");
    std::fs::create_dir(&audit).unwrap();
    let kind = |p: &std::path::Path| {
        let t = std::fs::symlink_metadata(p).unwrap().file_type();
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            "a named pipe (FIFO)"
        } else if t.is_dir() {
            "a directory"
        } else {
            "a regular file"
        }
    };
    let health = Arc::new(Health::default());
    health.lane().store(true, Ordering::Relaxed);
    let (addr, _) = start_with(SMALL, health.clone()).await;
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    health.set_problem(
        "web",
        &fifo,
        Some(format!("is {}, not a regular file", kind(&fifo))),
    );
    health.set_problem(
        "audit",
        &audit,
        Some(format!("is {}, not a regular file", kind(&audit))),
    );
    let answer = get(addr, "/readyz").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    for want in [
        format!(
            "source web: {} is a named pipe (FIFO), not a regular file",
            fifo.display()
        ),
        format!(
            "source audit: {} is a directory, not a regular file",
            audit.display()
        ),
    ] {
        assert!(answer.contains(&want), "{want} missing:\n{answer}");
    }
    assert!(health.set_problem("web", &fifo, None));
    let answer = get(addr, "/readyz").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(!answer.contains("source web"), "{answer}");
    assert!(health.set_problem("audit", &audit, None));
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
}
