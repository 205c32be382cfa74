//! TLS for the benchmark without touching firetail: a throw-away CA whose certificate
//! firetail trusts through `SSL_CERT_FILE`, and a TLS-terminating proxy on loopback in
//! front of the fake Firehose's plain port.
//!
//! Why `SSL_CERT_FILE` works: the SDK's default HTTPS client (aws-smithy-http-client
//! with rustls) builds its root store from `rustls_native_certs::load_native_certs()`
//! (`client/tls/rustls_provider.rs`, `NATIVE_ROOTS`; `TrustStore::default()` enables
//! native roots), and rustls-native-certs reads only `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! when either is set (`CertPaths::from_env`). So the child gets
//! `SSL_CERT_FILE=<dir>/ca.pem` and `AWS_ENDPOINT_URL=https://127.0.0.1:<proxy port>`.
//!
//! The proxy runs on its own thread and single-threaded runtime, one task per
//! connection: TLS 1.3 (aws-lc-rs, as the client) in, plain TCP to the fake out, with
//! 64 KiB copy buffers. Its CPU is measured separately (thread `tls-proxy`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The proxy thread's name, as `/proc/self/task/*/comm` shows it.
pub const PROXY_THREAD: &str = "tls-proxy";

/// A CA certificate file for `SSL_CERT_FILE` and the server side of a leaf it signed
/// for `127.0.0.1`, `localhost` and any further loopback addresses asked for (Fluent
/// Bit's, see `fluentbit.rs`).
pub struct Certs {
    pub ca_file: PathBuf,
    config: Arc<ServerConfig>,
}

impl Certs {
    pub fn make(dir: &Path, more_ips: &[Ipv4Addr]) -> Certs {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "firetail bench CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        leaf.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        for ip in more_ips {
            leaf.subject_alt_names
                .push(SanType::IpAddress((*ip).into()));
        }
        leaf.distinguished_name
            .push(DnType::CommonName, "fake firehose");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .expect("leaf certificate");

        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write ca.pem");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone()];
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("TLS server config");
        Certs {
            ca_file,
            config: Arc::new(config),
        }
    }
}

/// A running TLS-terminating proxy; dropping it stops the thread and every connection.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(certs: &Certs, upstream: SocketAddr) -> Proxy {
        Proxy::start_at(certs, SocketAddr::from(([127, 0, 0, 1], 0)), upstream)
    }

    /// Listens on `bind` (Fluent Bit's fixed port 443 on an address of its own).
    pub fn start_at(certs: &Certs, bind: SocketAddr, upstream: SocketAddr) -> Proxy {
        let listener = StdTcpListener::bind(bind)
            .unwrap_or_else(|e| panic!("proxy: cannot listen on {bind}: {e}"));
        listener.set_nonblocking(true).expect("proxy: nonblocking");
        let addr = listener.local_addr().expect("proxy: local_addr");
        let acceptor = TlsAcceptor::from(certs.config.clone());
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(PROXY_THREAD.to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy: runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy: listener");
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                tokio::spawn(relay(acceptor.clone(), stream, upstream));
                            }
                        }
                    }
                });
                drop(rt);
            })
            .expect("proxy: spawn thread");
        Proxy {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

async fn relay(acceptor: TlsAcceptor, client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(client).await else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = plain.set_nodelay(true);
    let _ =
        tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut plain, 64 << 10, 64 << 10).await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
