//! TLS: the server side of TLS listeners and the client side towards
//! `https://` upstream servers, built from validated configuration.
//!
//! One crypto provider for all of it, [`provider`]: it is chosen in
//! [`crate::config::pem`], where validation checks keys with it.
//!
//! This module turns configuration into rustls configurations and runs the
//! listener side of a handshake. It reads no files (PEM texts arrive in
//! [`crate::config::PemFile`], read and checked with the rest of the
//! configuration) and never decides policy: which listener uses which
//! certificate, and what an upstream trusts, is configuration.
//!
//! - [`listener`]: [`server_config`], certificates chosen by SNI.
//! - [`upstream`]: [`client_config`], [`server_name`], the system's roots.
//! - here: [`accept`] (the handshake, bounded) and [`is_h2`] (its ALPN).

mod listener;
mod upstream;

use std::io;
use std::time::Duration;

use rustls::version::{TLS12, TLS13};
use rustls::{RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The crypto provider of every TLS configuration: chosen in
/// [`crate::config::pem`], which checks keys with it.
pub(crate) use crate::config::pem::provider;
use crate::config::{pem, PemFile};
pub(crate) use listener::server_config;
pub(crate) use upstream::{client_config, server_name};

/// The TLS versions ginx speaks, on both sides: 1.3, then 1.2.
const VERSIONS: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];

/// The CA certificates of a `client_ca` or `tls_ca` file as trust anchors.
fn root_store(ca: &PemFile) -> Result<RootCertStore, String> {
    let certs = pem::parse_certificates(&ca.pem).map_err(|e| format!("{}: {e}", ca.path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.path.display()))?;
    }
    Ok(roots)
}

/// The server side of a TLS handshake on an accepted connection, bounded by
/// `timeout` so that a client that connects and sends nothing cannot hold a
/// connection (and its task) forever.
///
/// A failed handshake is closed by [`close_after_alert`], so that the
/// client reads the alert saying why.
///
/// # Errors
///
/// The handshake failed, or did not finish within `timeout`
/// ([`io::ErrorKind::TimedOut`]).
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream).into_fallible()).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err((error, stream))) => {
            // Boxed: rare, and its read buffer would otherwise be part of
            // every connection task's state.
            Box::pin(close_after_alert(stream)).await;
            Err(error)
        }
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake not done within {timeout:?}"),
        )),
    }
}

/// How long [`close_after_alert`] reads what the client still sends.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// Close a connection whose handshake failed after rustls wrote its alert:
/// end the sending side (FIN after the alert), then read and discard what
/// the client sends until it closes, for at most [`ALERT_LINGER`].
///
/// Closing at once would reset the connection whenever the client's next
/// bytes are unread, and a reset makes the client's system drop the alert
/// or the client give up before reading it. That is the common case for a
/// refused client certificate: in TLS 1.3 the client sends its first request
/// right behind its certificate, and curl then reports `getpeername()
/// failed` instead of `alert certificate required`.
async fn close_after_alert(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut discard = [0u8; 4096];
    let drain = async { while let Ok(1..) = stream.read(&mut discard).await {} };
    let _ = tokio::time::timeout(ALERT_LINGER, drain).await;
}

/// Whether the client and the listener agreed on HTTP/2 by ALPN.
pub(crate) fn is_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// Certificates, configurations and handshakes over 127.0.0.1 for the
/// tests of this module and its children.
#[cfg(test)]
mod fixtures {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls::{ClientConfig, ServerConfig};
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::server::TlsStream;
    use tokio_rustls::{client, TlsAcceptor, TlsConnector};

    use super::{accept, client_config, io, pem, server_config};
    use crate::config::{CertificateFiles, ListenerTls, PemFile, UpstreamTls};

    pub(super) fn pair(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    pub(super) fn pem_file(name: &str, pem: String) -> PemFile {
        PemFile {
            path: PathBuf::from(name),
            pem: pem.into(),
        }
    }

    pub(super) fn files((cert, key): (String, String)) -> CertificateFiles {
        CertificateFiles {
            cert: pem_file("cert.pem", cert),
            key: pem_file("key.pem", key),
        }
    }

    pub(super) fn listener(pairs: Vec<(String, String)>) -> Arc<ServerConfig> {
        let tls = ListenerTls {
            certificates: pairs.into_iter().map(files).collect(),
            client_ca: None,
        };
        server_config(&tls).unwrap()
    }

    /// A test CA (its own distinguished name, so that nothing else looks
    /// issued by it).
    pub(super) fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "ginx test CA");
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A leaf certificate for `names` signed by `ca`, and its key.
    pub(super) fn signed(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(super) fn insecure() -> UpstreamTls {
        UpstreamTls {
            verify: false,
            ..UpstreamTls::default()
        }
    }

    pub(super) fn trusting(ca: &CertifiedIssuer<'static, KeyPair>) -> UpstreamTls {
        UpstreamTls {
            ca: Some(pem_file("ca.pem", ca.pem())),
            ..UpstreamTls::default()
        }
    }

    pub(super) struct Handshake {
        pub(super) client: io::Result<client::TlsStream<TcpStream>>,
        pub(super) server: io::Result<TlsStream<TcpStream>>,
    }

    /// One TLS handshake over 127.0.0.1 between a listener with `server`
    /// (through [`accept`]) and a client with `client` sending `name`.
    pub(super) async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Handshake {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server);
        let server = tokio::spawn(async move {
            let (stream, _) = socket.accept().await.unwrap();
            accept(&acceptor, stream, Duration::from_secs(5)).await
        });
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let client = TlsConnector::from(client).connect(name, stream).await;
        Handshake {
            client,
            server: server.await.unwrap(),
        }
    }

    /// The leaf certificate the server presented to a client sending `name`.
    pub(super) async fn served_leaf(server: &Arc<ServerConfig>, name: &str) -> CertificateDer<'static> {
        let client = client_config(&insecure(), &[b"http/1.1"]).unwrap();
        let done = handshake(server.clone(), client, name).await;
        let client = done.client.unwrap();
        client.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    pub(super) fn leaf((cert, _): &(String, String)) -> CertificateDer<'static> {
        pem::parse_certificates(cert).unwrap().remove(0)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use tokio::net::TcpListener;

    use super::fixtures::{listener, pair};
    use super::*;

    #[tokio::test]
    async fn handshake_times_out_on_a_silent_client() {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = socket.local_addr().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = socket.accept().await.unwrap();
        let acceptor = TlsAcceptor::from(listener(vec![pair(&["a.example.com"])]));

        let start = Instant::now();
        let timeout = Duration::from_millis(200);
        let error = accept(&acceptor, stream, timeout).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= timeout && start.elapsed() < Duration::from_secs(2));
    }
}
