//! What a client of ginx does: send a request on a new connection and read
//! the whole answer, over HTTP/1.1, h2c or TLS.
//!
//! This module owns the client side only: [`send`] and its shorthands,
//! [`scrape`] of the Prometheus exposition, and a TLS client configuration
//! that lets the tests compare certificates themselves. Where ginx listens
//! is [`super::ginx`]'s to say; what the backends answer is
//! [`super::backend`]'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{eventually, DEADLINE};

/// Read a response whole.
pub async fn read_reply(resp: Response<Incoming>) -> std::io::Result<Reply> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request (any body, streamed) on a new connection and read the
/// whole response.
pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> std::io::Result<Reply>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(std::io::Error::other)?;
    read_reply(resp).await
}

/// GET `path` with `Host: host`.
pub async fn get_host(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::<Bytes>::default())
        .unwrap();
    send(addr, req).await.expect("request through ginx")
}

/// GET `path` with `Host: localhost`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    get_host(addr, "localhost", path).await
}

/// Scrape a Prometheus text exposition into `name{labels}` -> value, with
/// labels exactly as exposed.
pub async fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let reply = get(admin, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    reply
        .text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("a sample line is `name value`");
            (key.to_owned(), value.parse().expect("a sample value is a number"))
        })
        .collect()
}

/// Wait (up to [`DEADLINE`]) until GET `/` on `addr` answers `body`: a
/// reload or a recovery has taken effect.
pub async fn serves(addr: SocketAddr, body: &str) -> bool {
    eventually(DEADLINE, async || get(addr, "/").await.text() == body).await
}

/// Send `request` as raw bytes on a new connection and read until the
/// server closes it (or [`DEADLINE`]). A write error is ignored: the server
/// may answer and close before the request is all written.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = raw.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Bodies of `n` sequential GETs.
pub async fn bodies(addr: SocketAddr, path: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(addr, path).await.text());
    }
    out
}

/// Count of each distinct string.
pub fn tally(items: &[String]) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for item in items {
        *map.entry(item.clone()).or_default() += 1;
    }
    map
}

/// A sender on an HTTP/2 connection with prior knowledge (h2c) to `addr`.
pub async fn h2c_connect<B>(addr: SocketAddr) -> SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    h2_over(tokio::net::TcpStream::connect(addr).await.unwrap()).await
}

/// A sender on an HTTP/2 connection over `io`: a TCP stream (h2c) or a TLS
/// stream that agreed on ALPN `h2`.
pub async fn h2_over<B, S>(io: S) -> SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .expect("HTTP/2 handshake with ginx");
    tokio::spawn(conn);
    sender
}

/// Send one request on an HTTP/2 connection and read the whole response.
pub async fn send_h2<B>(sender: &mut SendRequest<B>, req: Request<B>) -> std::io::Result<Reply>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = sender.send_request(req).await.map_err(std::io::Error::other)?;
    read_reply(resp).await
}

/// A TLS client configuration offering `alpn` that accepts any server
/// certificate: the tests compare certificates themselves.
pub fn insecure_client_config(alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Accepts every server certificate (signatures are still checked).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Write `head`, then each of `chunks` with `pace` after each, while
/// reading the reply until ginx closes the connection (or [`DEADLINE`]);
/// the client never closes it, so whatever closes it is ginx. The reply
/// and whether the connection was closed.
pub async fn send_held_open(
    addr: SocketAddr,
    head: String,
    chunks: Vec<Vec<u8>>,
    pace: std::time::Duration,
) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        for chunk in chunks {
            write.write_all(&chunk).await?;
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(write)
    });
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, read.read_to_end(&mut buf))
        .await
        .is_ok();
    writer.abort();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

/// [`raw_exchange`] from `source` (any address of 127.0.0.0/8: all of it
/// is loopback on Linux), to tell trusted peers from untrusted ones.
pub async fn raw_exchange_from(source: std::net::IpAddr, addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = connect_from(source, addr).await;
    let _ = raw.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A connection to `addr` from `source` (port chosen by the kernel).
pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}
