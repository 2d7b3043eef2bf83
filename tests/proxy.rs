//! Proxying over real sockets: balancing, routing, headers, failures, streaming.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use support::*;

#[tokio::test]
async fn round_robin_alternates() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = one_listener(&[a.addr, b.addr]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    assert_eq!(
        bodies(ginx.addr("web"), "/", 6).await,
        ["a", "b", "a", "b", "a", "b"]
    );
}

#[tokio::test]
async fn smooth_weighted_round_robin() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let config = format!(
        r#"
[listener.web]
bind = "127.0.0.1:0"
upstream = "app"

[upstream.app]
balance = "weighted_round_robin"
servers = [{{ addr = "{}", weight = 5 }}, "http://{}", {{ addr = "{}", weight = 1 }}]
"#,
        a.addr, b.addr, c.addr
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let got = bodies(ginx.addr("web"), "/", 14).await.concat();
    assert_eq!(got, "aabacaaaabacaa");
}

#[tokio::test]
async fn routes_by_host_and_longest_prefix() {
    let names = ["default", "api", "apiv2", "exact", "wild", "deep"];
    let mut backends = Vec::new();
    for n in names {
        backends.push(Backend::start(n).await);
    }
    let mut config = String::from(
        r#"
[listener.web]
bind = "127.0.0.1:0"
upstream = "default"

[[listener.web.route]]
path = "/api/"
upstream = "api"

[[listener.web.route]]
path = "/api/v2/"
upstream = "apiv2"

[[listener.web.route]]
host = "*.example.com"
upstream = "wild"

[[listener.web.route]]
host = "*.deep.example.com"
upstream = "deep"

[[listener.web.route]]
host = "www.example.com"
upstream = "exact"

[[listener.web.route]]
path = "/health"
respond = { status = 200, body = "ok\n" }
"#,
    );
    for b in &backends {
        config.push_str(&upstream(&b.name, &[b.addr]));
    }
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    let route =
        |host: &'static str, path: &'static str| async move { get_host(addr, host, path).await.text() };
    assert_eq!(route("localhost", "/").await, "default");
    assert_eq!(route("localhost", "/api/x").await, "api");
    assert_eq!(route("localhost", "/api/v2/x").await, "apiv2");
    assert_eq!(
        route("localhost", "/api").await,
        "default",
        "prefix /api/ does not match /api"
    );
    // An exact host beats a wildcard, whatever the order; ports and case do not matter.
    assert_eq!(route("WWW.Example.com:8080", "/").await, "exact");
    assert_eq!(route("a.example.com", "/api/x").await, "wild");
    assert_eq!(
        route("x.deep.example.com", "/").await,
        "deep",
        "longest wildcard wins"
    );
    assert_eq!(
        route("example.com", "/").await,
        "default",
        "*.example.com does not match example.com"
    );
    let health = get(addr, "/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.text(), "ok\n");
}

#[tokio::test]
async fn strip_prefix_keeps_query_and_encoding() {
    let api = Backend::start("api").await;
    let config = format!(
        r#"
[listener.web]
bind = "127.0.0.1:0"

[[listener.web.route]]
path = "/api/"
upstream = "api"
strip_prefix = true

{}"#,
        upstream("api", &[api.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    get(addr, "/api/users?q=1").await;
    assert_eq!(api.last_seen().uri, "/users?q=1");
    get(addr, "/api/").await;
    assert_eq!(api.last_seen().uri, "/");
    get(addr, "/api/a%2Fb/c%20d?x=%41").await;
    assert_eq!(api.last_seen().uri, "/a%2Fb/c%20d?x=%41");
    // No route and no default upstream: 404.
    let missing = get(addr, "/other").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn forwarded_and_hop_by_hop_headers() {
    let app = Backend::start("app").await;
    let config = one_listener(&[app.addr]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let req = Request::get("/__hop")
        .header("host", "site.test:8080")
        .header("x-forwarded-for", "10.1.1.1")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("upgrade", "websocket")
        .header("x-kept", "yes")
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = send(ginx.addr("web"), req).await.unwrap();
    let seen = app.last_seen();
    assert_eq!(
        seen.header("host").as_deref(),
        Some("site.test:8080"),
        "client Host kept"
    );
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("10.1.1.1, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("site.test:8080"));
    assert_eq!(seen.header("x-kept").as_deref(), Some("yes"));
    for hop in [
        "x-drop-me",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "transfer-encoding",
    ] {
        assert_eq!(seen.header(hop), None, "{hop} must not be forwarded");
    }
    // `Connection` itself is what hyper sets for the upstream hop, not the client's.
    assert!(!seen
        .header_all("connection")
        .iter()
        .any(|v| v.contains("x-drop-me")));
    // And in the other direction.
    assert_eq!(reply.headers.get("x-end-to-end").unwrap(), "kept");
    assert!(reply.headers.get("x-private").is_none());
    assert!(reply.headers.get("keep-alive").is_none());
}

#[tokio::test]
async fn fails_over_past_a_dead_server_then_502_when_all_down() {
    let live = Backend::start("live").await;
    // A port with nothing listening: bind, note the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = one_listener(&[dead, live.addr]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    // Every request succeeds: the dead server is skipped, then held out.
    for _ in 0..6 {
        let reply = get(addr, "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "live");
    }
    assert!(ginx.wait_log("attempt failed", DEADLINE).await);

    live.stop();
    // Wait until the stopped backend refuses connections.
    let gone = live.addr;
    assert!(eventually(DEADLINE, || std::net::TcpStream::connect(gone).is_err()).await);
    let reply = get(addr, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.text(), "502 Bad Gateway\n");
    // The process is fine and answers the next request.
    assert_eq!(get(addr, "/").await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_lone_server_is_retried_at_once_after_it_comes_back() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap();
    drop(probe);
    let config = one_listener(&[port]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert_eq!(get(addr, "/").await.status, StatusCode::BAD_GATEWAY);
    let back = Backend::serve("back", tokio::net::TcpListener::bind(port).await.unwrap());
    assert_eq!(
        get(addr, "/").await.text(),
        "back",
        "a lone server is never held out (nginx)"
    );
    assert_eq!(back.hits(), 1);
}

#[tokio::test]
async fn streams_large_bodies_both_ways() {
    const SIZE: usize = 256 * 1024 * 1024;
    let app = Backend::start("app").await;
    let config = one_listener(&[app.addr]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");

    // Download: checksum what arrives.
    let reply = get(addr, &format!("/__download/{SIZE}")).await;
    assert_eq!(reply.body.len(), SIZE);
    let mut expected = Vec::with_capacity(SIZE);
    let chunk = pattern(64 * 1024);
    while expected.len() < SIZE {
        let n = (SIZE - expected.len()).min(chunk.len());
        expected.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(sha256_hex(&reply.body), sha256_hex(&expected));
    drop(reply);

    // Upload: the backend checksums what it receives, streamed.
    let req = Request::post("/__upload")
        .header("host", "localhost")
        .body(pattern_body(SIZE))
        .unwrap();
    let text = send(addr, req).await.unwrap().text();
    assert_eq!(text, format!("{SIZE} {}", sha256_hex(&expected)));

    // Memory did not grow with the body: far below one body's size.
    let peak_mib = ginx.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 64,
        "ginx peak RSS {peak_mib} MiB for a {} MiB body",
        SIZE >> 20
    );
}

#[tokio::test]
async fn bad_requests_get_400_and_the_process_lives() {
    let app = Backend::start("app").await;
    let config = one_listener(&[app.addr]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    let head = raw_exchange(addr, b"GARBAGE \x01\x02 HTTP/9.9\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "got {head:?}");
    assert_eq!(get(addr, "/").await.text(), "app");
}

/// HTTP/1.0 may leave out `Host`; the upstream (HTTP/1.1) then gets the
/// server's own name, as Caddy sends.
#[tokio::test]
async fn http10_without_host_gets_the_servers_name_upstream() {
    let app = Backend::start("app").await;
    let config = one_listener(&[app.addr]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let reply = raw_exchange(ginx.addr("web"), b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 200"), "got {reply:?}");
    assert!(reply.ends_with("app"), "got {reply:?}");
    let seen = app.last_seen();
    assert_eq!(seen.header("host"), Some(app.addr.to_string()));
    assert_eq!(seen.header("x-forwarded-host"), None);
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so
/// connecting to it times out instead of being refused.
fn black_hole() -> (socket2::Socket, Vec<std::net::TcpStream>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue; connects that would block are what we want to provoke.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    (socket, fillers)
}

#[tokio::test]
async fn connect_timeout_fails_over_then_504() {
    let (hole, _fillers) = black_hole();
    let hole_addr = hole.local_addr().unwrap().as_socket().unwrap();
    let live = Backend::start("live").await;
    let config = format!(
        r#"
[listener.web]
bind = "127.0.0.1:0"
upstream = "pair"

[[listener.web.route]]
path = "/only-hole"
upstream = "hole"

[upstream.pair]
servers = ["{hole_addr}", "{}"]
connect_timeout = "200ms"

[upstream.hole]
servers = ["{hole_addr}"]
connect_timeout = "200ms"
"#,
        live.addr
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    for _ in 0..2 {
        assert_eq!(
            get(addr, "/").await.text(),
            "live",
            "a timed-out server is skipped"
        );
    }
    assert!(ginx.log_text().contains("connect timed out"));
    let reply = get(addr, "/only-hole").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.text(), "504 Gateway Timeout\n");
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_by_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = Backend::start("app").await;
    let config = format!(
        "[global]\nheader_read_timeout = \"1s\"\n\n{}",
        one_listener(&[app.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");

    // A head that never ends (slowloris).
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a slow head is cut");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "cut too early: {waited:?}"
    );
    assert!(
        waited < std::time::Duration::from_secs(4),
        "cut too late: {waited:?}"
    );

    // An idle keep-alive connection after a complete exchange.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&rest).ends_with("app"));
    // A request whose response takes longer than the timeout is not cut:
    // the timeout covers reading the head, not waiting for the upstream.
    assert_eq!(get(addr, "/__sleep/2500").await.text(), "app");
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let app = Backend::start("app").await;
    let config = one_listener(&[app.addr]);
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    let big = "a".repeat(40 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let head = raw_exchange(addr, request.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 431"), "got {head:?}");
    assert_eq!(app.hits(), 0);
    // A head just under the limit passes.
    let req = hyper::Request::get("/")
        .header("host", "x")
        .header("x-big", "a".repeat(16 * 1024))
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(send(addr, req).await.unwrap().text(), "app");
}
