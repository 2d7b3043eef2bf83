//! An idle HTTP/1.1 connection's socket is taken back from hyper (issue
//! 12), so that it holds no hyper buffers while it waits: the connection
//! keeps working afterwards, pipelined and half-sent requests are replayed
//! to the next hyper connection, the header-read timeout still closes it,
//! `max_requests_per_connection` still counts across, `Connection: close`
//! still closes, a drain closes it at once, and TLS connections are taken
//! back the same way. Each take-back is seen through ginx's debug log.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What ginx logs (at debug) when it takes a connection back.
const TAKEN_BACK: &str = "idle HTTP/1.1 connection taken back from hyper";

/// One client connection, read response by response.
struct Client<S> {
    stream: S,
    /// Bytes read past the last response.
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next response (head, lowercased, and body; `Content-Length`
    /// bodies only, as the test backend sends), or `None` if the connection
    /// ended first. Within [`DEADLINE`].
    async fn response(&mut self) -> Option<(String, String)> {
        tokio::time::timeout(DEADLINE, self.read_response())
            .await
            .expect("a response or the end within the deadline")
    }

    async fn read_response(&mut self) -> Option<(String, String)> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().unwrap());
        while self.buf.len() < end + length {
            self.fill().await?;
        }
        let body = String::from_utf8_lossy(&self.buf[end..end + length]).into_owned();
        self.buf.drain(..end + length);
        Some((head, body))
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    /// Whether the connection ends (EOF or reset) with nothing more sent,
    /// within [`DEADLINE`].
    async fn ends(&mut self) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut rest)).await;
        match read {
            Ok(Ok(_)) => rest.is_empty(),
            Ok(Err(_)) => true,
            Err(_) => false,
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n")
}

/// ginx at debug level with `global` and `listener` keys added, in front
/// of one backend (kept alive by the caller).
async fn start(global: &str, listener: &str) -> (Backend, Ginx) {
    let app = Backend::start("app").await;
    let config = format!(
        "[global]\nlog_level = \"debug\"\n{global}\n\n[listener.web]\nbind = \"127.0.0.1:0\"\n\
         upstream = \"app\"\n{listener}\n\n{}",
        upstream("app", &[app.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    (app, ginx)
}

/// Wait until ginx has taken `n` connections back since log line `from`.
async fn taken_back(ginx: &Ginx, from: usize, n: usize) -> bool {
    eventually(DEADLINE, || {
        ginx.log_since(from)
            .iter()
            .filter(|line| line.contains(TAKEN_BACK))
            .count()
            >= n
    })
    .await
}

#[tokio::test]
async fn a_connection_taken_back_while_idle_keeps_serving_and_pipelining() {
    let (app, ginx) = start("", "").await;
    let mut client = Client::new(TcpStream::connect(ginx.addr("web")).await.unwrap());
    let from = ginx.log_len();

    client.send(get("/one").as_bytes()).await;
    let (head, body) = client.response().await.expect("first response");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "app");
    assert!(
        taken_back(&ginx, from, 1).await,
        "{}",
        ginx.log_since(from).join("\n")
    );

    // Served by a fresh hyper connection on the same socket.
    client.send(get("/two").as_bytes()).await;
    let (head, _) = client.response().await.expect("served after the take-back");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(app.last_seen().uri, "/two");
    assert!(taken_back(&ginx, from, 2).await);

    // Two requests in one write: two responses, in order (told apart by
    // their lengths).
    client
        .send(format!("{}{}", get("/__download/5"), get("/__download/7")).as_bytes())
        .await;
    let (first, body) = client.response().await.expect("first pipelined response");
    assert!(first.starts_with("http/1.1 200"), "{first}");
    assert_eq!(body.len(), 5);
    let (second, body) = client.response().await.expect("second pipelined response");
    assert!(second.starts_with("http/1.1 200"), "{second}");
    assert_eq!(body.len(), 7);
}

#[tokio::test]
async fn a_request_half_sent_when_the_connection_is_taken_back_is_replayed() {
    let (app, ginx) = start("", "").await;
    let mut client = Client::new(TcpStream::connect(ginx.addr("web")).await.unwrap());
    let from = ginx.log_len();
    client.send(get("/one").as_bytes()).await;
    client.response().await.expect("first response");

    // The first half of the next head, then a pause past the take-back.
    let next = get("/half");
    let (start, rest) = next.split_at(10);
    client.send(start.as_bytes()).await;
    assert!(taken_back(&ginx, from, 1).await);
    let line = ginx
        .log_since(from)
        .into_iter()
        .find(|line| line.contains(TAKEN_BACK))
        .unwrap();
    assert!(line.contains("replayed=true"), "{line}");
    client.send(rest.as_bytes()).await;
    let (head, _) = client.response().await.expect("the whole request served");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(app.last_seen().uri, "/half");
}

#[tokio::test]
async fn the_header_read_timeout_still_closes_a_connection_taken_back() {
    // 2 s: longer than the wait before a take-back.
    let (_app, ginx) = start("header_read_timeout = \"2s\"", "").await;
    let addr = ginx.addr("web");
    let from = ginx.log_len();

    // Idle after a response: taken back, then closed at the deadline.
    let mut idle = Client::new(TcpStream::connect(addr).await.unwrap());
    idle.send(get("/").as_bytes()).await;
    idle.response().await.expect("a response");
    assert!(taken_back(&ginx, from, 1).await);
    assert!(idle.ends().await, "an idle connection was left open");

    // A head trickled in after the take-back keeps the deadline the wait
    // had: one byte every 300 ms would take 12 s, so it is cut before.
    let mut slow = Client::new(TcpStream::connect(addr).await.unwrap());
    slow.send(get("/").as_bytes()).await;
    slow.response().await.expect("a response");
    assert!(taken_back(&ginx, from, 2).await);
    let head = get("/a-path-long-enough-for-forty-bytes").into_bytes();
    let mut cut = false;
    for byte in &head[..40] {
        if slow.stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        // Paces the client: a byte at a time, well within TCP's patience.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        cut || slow.ends().await,
        "a trickled head outlived the header-read timeout"
    );
}

#[tokio::test]
async fn max_requests_and_connection_close_still_end_it_after_a_take_back() {
    let (_app, ginx) = start("", "max_requests_per_connection = 2").await;
    let addr = ginx.addr("web");
    let from = ginx.log_len();

    let mut counted = Client::new(TcpStream::connect(addr).await.unwrap());
    counted.send(get("/").as_bytes()).await;
    let (head, _) = counted.response().await.expect("first");
    assert!(!head.contains("connection: close"), "{head}");
    assert!(taken_back(&ginx, from, 1).await);
    counted.send(get("/").as_bytes()).await;
    let (head, _) = counted.response().await.expect("second");
    assert!(
        head.contains("connection: close"),
        "counted across the take-back: {head}"
    );
    assert!(counted.ends().await);

    let mut closing = Client::new(TcpStream::connect(addr).await.unwrap());
    closing.send(get("/").as_bytes()).await;
    closing.response().await.expect("first");
    assert!(taken_back(&ginx, from, 2).await);
    closing
        .send(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await;
    let (head, _) = closing.response().await.expect("answered");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(closing.ends().await, "Connection: close did not close");
}

#[tokio::test]
async fn a_drain_closes_a_connection_taken_back_at_once() {
    // A shutdown timeout far beyond the test's deadline: only closing the
    // idle connection at once lets ginx exit in time.
    let (_app, mut ginx) = start("shutdown_timeout = \"600s\"\nshutdown_delay = \"0s\"", "").await;
    let mut client = Client::new(TcpStream::connect(ginx.addr("web")).await.unwrap());
    let from = ginx.log_len();
    client.send(get("/").as_bytes()).await;
    client.response().await.expect("a response");
    assert!(taken_back(&ginx, from, 1).await);

    ginx.signal("TERM");
    assert!(client.ends().await, "the idle connection was not closed on drain");
    assert_eq!(ginx.wait_exit(DEADLINE).await, Some(0));
}

#[tokio::test]
async fn a_tls_connection_is_taken_back_and_keeps_serving() {
    let app = Backend::start("app").await;
    let (cert, key) = pair(&["app.test"]);
    let config = format!(
        "[global]\nlog_level = \"debug\"\n\n[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
         [[listener.web.tls.certificates]]\ncert = \"app.pem\"\nkey = \"app.key\"\n\n{}",
        upstream("app", &[app.addr])
    );
    let ginx = Ginx::start(&config, &[("app.pem", &cert), ("app.key", &key)], &["web"]).await;
    let from = ginx.log_len();

    let mut tls = insecure_client_config(&[b"http/1.1"]);
    tls.enable_sni = true;
    let stream = TcpStream::connect(ginx.addr("web")).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("app.test").unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, stream)
        .await
        .unwrap();
    let mut client = Client::new(stream);
    for n in 1..=2 {
        client.send(get(&format!("/tls/{n}")).as_bytes()).await;
        let (head, body) = client.response().await.expect("a response over TLS");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, "app");
        assert!(taken_back(&ginx, from, n).await);
    }
    assert_eq!(app.last_seen().uri, "/tls/2");
}

#[tokio::test]
async fn an_upgraded_connection_is_never_taken_back() {
    // An upstream that switches protocols and then echoes raw bytes.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.unwrap();
        read_head(&mut stream).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            if stream.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let config = format!(
        "[global]\nlog_level = \"debug\"\n\n{}",
        one_listener(&[upstream_addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let from = ginx.log_len();
    let mut client = Client::new(TcpStream::connect(ginx.addr("web")).await.unwrap());
    client
        .send(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await;
    let (head, _) = client.response().await.expect("the switch");
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // Paces the client: idle past the wait after which an HTTP/1.1
    // connection would be taken back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.send(b"ping").await;
    let mut echoed = [0u8; 4];
    tokio::time::timeout(DEADLINE, client.stream.read_exact(&mut echoed))
        .await
        .expect("echoed in time")
        .unwrap();
    assert_eq!(&echoed, b"ping");
    assert!(!ginx.log_since(from).iter().any(|line| line.contains(TAKEN_BACK)));
}
