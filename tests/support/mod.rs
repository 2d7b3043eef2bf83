//! Test harness: real upstream servers on ephemeral ports, a real `ginx`
//! process, and conditions waited on with deadlines (never fixed sleeps).
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// The default deadline for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
    pub status: Arc<std::sync::atomic::AtomicU16>,
    /// Status of `/healthz` (default 200).
    pub health: Arc<std::sync::atomic::AtomicU16>,
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

    async fn answer(
        self,
        req: Request<Incoming>,
    ) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>, Infallible> {
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
                if let Ok(data) = frame.unwrap().into_data() {
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
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
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

/// Bodies of `n` sequential GETs.
pub async fn bodies(addr: SocketAddr, path: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(addr, path).await.text());
    }
    out
}

/// A running `ginx` process with its configuration in a temporary directory.
pub struct Ginx {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Ginx {
    /// Path of the main configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ginx.toml")
    }

    /// Write `ginx.toml` (and any `(relative path, text)` files) and start
    /// ginx, waiting until every listener named in `listeners` is bound.
    pub async fn start(main: &str, files: &[(&str, &str)], listeners: &[&str]) -> Ginx {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("ginx.toml"), main);
        for (path, text) in files {
            write_file(&dir.path().join(path), text);
        }
        Self::start_in(dir, listeners, &[]).await
    }

    /// Start ginx on an existing directory, with extra environment.
    pub async fn start_in(dir: tempfile::TempDir, listeners: &[&str], env: &[(&str, &str)]) -> Ginx {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ginx"));
        command
            .arg("-c")
            .arg(dir.path().join("ginx.toml"))
            .env_remove("RUST_LOG")
            .env("GINX_WORKERS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawning ginx");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("GINX_TEST_LOG").is_some() {
                    eprintln!("ginx| {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let ginx = Ginx {
            dir,
            child: Some(child),
            log,
        };
        for name in listeners {
            let needle = format!("listener={name} addr=");
            assert!(
                ginx.wait_log(&needle, DEADLINE).await,
                "ginx did not bind listener {name}; log:\n{}",
                ginx.log_text()
            );
        }
        ginx
    }

    /// The address a listener is bound to (the latest `listening` line).
    pub fn addr(&self, listener: &str) -> SocketAddr {
        let needle = format!("listener={listener} addr=");
        let log = self.log.lock().unwrap();
        let line = log
            .iter()
            .rev()
            .find(|l| l.contains("listening") && l.contains(&needle))
            .unwrap_or_else(|| panic!("no listening line for {listener}"));
        let rest = &line[line.find(&needle).unwrap() + needle.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The address of the admin endpoint (the latest `admin listening` line).
    pub fn admin_addr(&self) -> SocketAddr {
        let log = self.log.lock().unwrap();
        let line = log
            .iter()
            .rev()
            .find(|l| l.contains("admin listening"))
            .unwrap_or_else(|| panic!("no admin listening line"));
        let rest = &line[line.find("addr=").unwrap() + 5..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Write a file relative to the config directory.
    pub fn write(&self, path: &str, text: &str) {
        write_file(&self.dir.path().join(path), text);
    }

    /// Replace a file by writing a temporary file and renaming it over.
    pub fn rename_over(&self, path: &str, text: &str) {
        let target = self.dir.path().join(path);
        let tmp = target.with_extension("tmp-edit");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &target).unwrap();
    }

    /// Number of log lines so far (to wait for lines after a point).
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Log lines from index `from` on.
    pub fn log_since(&self, from: usize) -> Vec<String> {
        self.log.lock().unwrap()[from..].to_vec()
    }

    /// Wait for a log line containing `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_since(0, needle, timeout).await
    }

    /// Wait for a log line containing `needle` at index `from` or later.
    pub async fn wait_log_since(&self, from: usize, needle: &str, timeout: Duration) -> bool {
        let log = self.log.clone();
        eventually(timeout, || {
            log.lock().unwrap()[from..].iter().any(|l| l.contains(needle))
        })
        .await
    }

    /// Wait until generation `n` is applied.
    pub async fn wait_generation(&self, n: u64) -> bool {
        self.wait_log(&format!("generation={n} "), DEADLINE).await
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Send a signal (by name: "HUP", "TERM", ...) to ginx.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Wait for ginx to exit; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Peak resident memory of ginx in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Ginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn write_file(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Run `ginx --check` on a directory's ginx.toml; (exit code, stdout, stderr).
pub fn check(dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ginx"))
        .current_dir(dir)
        .args(["--check", "-c", "ginx.toml"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
pub async fn h2c_connect<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake with ginx");
    tokio::spawn(conn);
    sender
}

/// Send one request on an HTTP/2 connection and read the whole response.
pub async fn send_h2<B>(
    sender: &mut hyper::client::conn::http2::SendRequest<B>,
    req: Request<B>,
) -> std::io::Result<Reply>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = sender.send_request(req).await.map_err(std::io::Error::other)?;
    read_reply(resp).await
}

/// A `[listener.web]` on port 0 whose default upstream `app` has `servers`.
pub fn one_listener(servers: &[SocketAddr]) -> String {
    let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n[upstream.app]\nservers = [{}]\n",
        servers.join(", ")
    )
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = ProtoBackend {
            name: name.to_owned(),
            addr: listener.local_addr().unwrap(),
            seen: Default::default(),
        };
        let acceptor = tls.then(|| {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            let key = rustls_pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let b = backend.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let b = b.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
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

    async fn answer(
        self,
        req: Request<Incoming>,
        tls: bool,
    ) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>, Infallible> {
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
