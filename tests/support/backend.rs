//! The servers ginx proxies to, on 127.0.0.1 ports the kernel picks.
//!
//! This module owns the backends' behaviour: [`Backend`] answers with its
//! name and obeys magic paths (`/__sleep/MS`, `/__download/N`, `/__upload`,
//! `/__hop`), [`ProtoBackend`] records which HTTP version and transport
//! each request came over, [`closing_server`] resets every request. It
//! also owns the byte [`pattern`] bodies are made of, so that a test can
//! check what arrived, and the self-signed certificates ([`pair`]) TLS
//! servers present. Starting ginx is [`super::ginx`]'s job; being a
//! client of it is [`super::client`]'s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// What every backend answers with.
type Answer = Result<Response<BoxBody<Bytes, std::io::Error>>, Infallible>;

/// A request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// All values of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
}

/// An upstream server on 127.0.0.1:0 that answers with its name.
///
/// Special paths: `/__sleep/MS` answers after MS milliseconds;
/// `/__download/BYTES` streams BYTES of a fixed pattern; `/__upload` reads
/// the request body and answers `LEN SHA256HEX`; `/__hop` answers with
/// hop-by-hop headers set.
#[derive(Clone)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub hits: Arc<AtomicUsize>,
    /// Status of ordinary answers (default 200).
    pub status: Arc<AtomicU16>,
    /// Status of `/healthz` (default 200).
    pub health: Arc<AtomicU16>,
    stop: tokio_util::sync::CancellationToken,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_at(name, "127.0.0.1:0").await
    }

    /// A backend on a given address (another loopback IP, a known port).
    pub async fn start_at(name: &str, addr: &str) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(name, listener)
    }

    /// Serve on an existing listener (to restart on a known port).
    pub fn serve(name: &str, listener: TcpListener) -> Backend {
        let backend = Backend {
            name: name.to_owned(),
            addr: listener.local_addr().unwrap(),
            seen: Default::default(),
            hits: Default::default(),
            status: Arc::new(200.into()),
            health: Arc::new(200.into()),
            stop: Default::default(),
        };
        let b = backend.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    () = b.stop.cancelled() => return,
                };
                let b = b.clone();
                tokio::spawn(async move {
                    let stop = b.stop.clone();
                    let svc = hyper::service::service_fn(move |req| b.clone().answer(req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        backend
    }

    /// Stop accepting and close every open connection: the server is dead.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests seen other than health checks.
    pub fn traffic(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.uri != "/healthz")
            .count()
    }

    /// Health-check requests seen.
    pub fn checks(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.uri == "/healthz")
            .count()
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    pub fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("backend saw a request")
    }

    async fn answer(self, req: Request<Incoming>) -> Answer {
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
        });
        let path = req.uri().path().to_owned();
        let full = |s: String| Full::new(Bytes::from(s)).map_err(|never| match never {}).boxed();
        if let Some(ms) = path.strip_prefix("/__sleep/") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            return Ok(Response::new(full(self.name.clone())));
        }
        if let Some(n) = path.strip_prefix("/__download/") {
            let total: usize = n.parse().unwrap();
            let chunk = Bytes::from(pattern(64 * 1024));
            let frames = futures_stream(total, chunk);
            let mut resp = Response::new(StreamBody::new(frames).boxed());
            resp.headers_mut().insert("content-length", total.into());
            return Ok(resp);
        }
        if path == "/__upload" {
            let mut body = req.into_body();
            let mut hasher = Sha256::new();
            let mut len = 0usize;
            while let Some(frame) = body.frame().await {
                // A body cut short (its client went away) ends the upload.
                let Ok(frame) = frame else {
                    return Ok(Response::new(full("incomplete body".to_owned())));
                };
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    hasher.update(&data);
                }
            }
            return Ok(Response::new(full(format!("{len} {:x}", hasher.finalize()))));
        }
        if path == "/healthz" {
            let mut resp = Response::new(full("health".into()));
            *resp.status_mut() = StatusCode::from_u16(self.health.load(Ordering::SeqCst)).unwrap();
            return Ok(resp);
        }
        let mut resp = Response::new(full(self.name.clone()));
        *resp.status_mut() = StatusCode::from_u16(self.status.load(Ordering::SeqCst)).unwrap();
        if path == "/__hop" {
            let h = resp.headers_mut();
            h.insert("connection", "x-private".parse().unwrap());
            h.insert("x-private", "secret".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("x-end-to-end", "kept".parse().unwrap());
        }
        resp.headers_mut().insert("x-backend", self.name.parse().unwrap());
        Ok(resp)
    }
}

/// A server that reads each request head and closes the connection
/// without answering (a "reset" to the proxy). Counts the requests.
pub async fn closing_server() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                if read_head(&mut stream).await.is_none() {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                // Dropping the stream closes it before any response byte.
            });
        }
    });
    (addr, count)
}

/// `n` bytes of a fixed, non-trivial pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A stream of `total` bytes made of repeated `chunk`s.
fn futures_stream(total: usize, chunk: Bytes) -> Chunks {
    Chunks { left: total, chunk }
}

/// A body of `size` [`pattern`] bytes, streamed in 64 KiB frames.
pub fn pattern_body(
    size: usize,
) -> StreamBody<impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>>> {
    StreamBody::new(futures_stream(size, Bytes::from(pattern(64 * 1024))))
}

struct Chunks {
    left: usize,
    chunk: Bytes,
}

impl futures_core::Stream for Chunks {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len());
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

/// Sha256 of a byte slice, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// What a [`ProtoBackend`] saw of one request.
#[derive(Debug, Clone)]
pub struct SeenProto {
    pub version: hyper::Version,
    pub tls: bool,
    pub uri: String,
    pub headers: hyper::HeaderMap,
}

/// A backend serving HTTP/1.1 and HTTP/2 (hyper-util's auto builder), in
/// the clear (h2c by prior knowledge) or over TLS with ALPN, answering with
/// its name and recording the version of each request.
#[derive(Clone)]
pub struct ProtoBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<SeenProto>>>,
}

impl ProtoBackend {
    /// Start one; with `tls`, a self-signed certificate for `localhost`.
    pub async fn start(name: &str, tls: bool) -> ProtoBackend {
        Self::start_with(name, tls.then(localhost_acceptor)).await
    }

    /// Start one that speaks TLS with `acceptor`, if any.
    pub async fn start_with(name: &str, acceptor: Option<tokio_rustls::TlsAcceptor>) -> ProtoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = ProtoBackend {
            name: name.to_owned(),
            addr: listener.local_addr().unwrap(),
            seen: Default::default(),
        };
        let b = backend.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let b = b.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let svc = hyper::service::service_fn(move |req| b.clone().answer(req, true));
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        None => {
                            let svc = hyper::service::service_fn(move |req| b.clone().answer(req, false));
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        backend
    }

    pub fn seen(&self) -> Vec<SeenProto> {
        self.seen.lock().unwrap().clone()
    }

    async fn answer(self, req: Request<Incoming>, tls: bool) -> Answer {
        self.seen.lock().unwrap().push(SeenProto {
            version: req.version(),
            tls,
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        let body = Full::new(Bytes::from(self.name.clone()))
            .map_err(|never| match never {})
            .boxed();
        let mut resp = Response::new(body);
        resp.headers_mut()
            .insert("x-version", format!("{:?}", req.version()).parse().unwrap());
        Ok(resp)
    }
}

/// A self-signed certificate for `names` and its key, as PEM: what a TLS
/// backend or a TLS listener of ginx presents.
pub fn pair(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`,
/// offering ALPN `h2` and `http/1.1`: what an https upstream presents.
pub fn localhost_acceptor() -> tokio_rustls::TlsAcceptor {
    let (cert, key) = pair(&["localhost"]);
    acceptor(&cert, &key)
}

/// A TLS acceptor presenting `cert_pem` (one certificate) with `key_pem`,
/// offering ALPN `h2` and `http/1.1`.
pub fn acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Read from `stream` until a request head has arrived (its blank line):
/// what a hand-written server does before it answers. `None` if the peer
/// closed first.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}
