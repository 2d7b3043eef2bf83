//! Request limits, bounded by default: a body larger than
//! `max_request_body` is a `413` (before any server is picked when its
//! `Content-Length` says so, midway when a chunked or HTTP/2 body passes
//! it), more header fields than `max_request_headers` a `431`, a request
//! target longer than `max_request_line` a `414`. Each is the client's
//! fault: nothing is held against a server, nothing retried, and the next
//! request is served.
//!
//! The pool uses the defaults (`max_fails = 1`, `fail_timeout = "10s"`), so a
//! single failure counted against a server would take it out of rotation
//! for the rest of the test.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, StatusCode};
use support::*;

/// A listener with a 1 KiB body limit, a route `/big/` that allows 1 MiB
/// (stripped, so `/big/__upload` is the backend's `/__upload`), a JSON
/// access log, and the upstream `app` of `servers`.
fn config(servers: &[SocketAddr], listener_extra: &str) -> String {
    format!(
        "[global]\naccess_log = {{ path = \"access.log\", format = \"json\" }}\n\n\
         [listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\nmax_request_body = \"1KiB\"\n{listener_extra}\n\
         [[listener.web.route]]\npath = \"/big/\"\nupstream = \"app\"\nstrip_prefix = true\nmax_request_body = \"1MiB\"\n\n\
         {}",
        upstream("app", servers)
    )
}

async fn start(a: &Backend, b: &Backend, listener_extra: &str) -> Ginx {
    Ginx::start(&config(&[a.addr, b.addr], listener_extra), &[], &["web"]).await
}

/// Both servers still answer, and `/status` shows no failed attempt and
/// no server held out: nothing was counted against them.
async fn nothing_held_against_the_servers(ginx: &Ginx) {
    let answers = bodies(ginx.addr("web"), "/", 20).await;
    let tally = tally(&answers);
    assert_eq!(tally.get("a"), Some(&10), "{answers:?}");
    assert_eq!(tally.get("b"), Some(&10), "{answers:?}");
    let status = ginx.status().await;
    let servers = status["upstreams"][0]["servers"].as_array().unwrap().clone();
    assert_eq!(servers.len(), 2);
    for server in servers {
        assert_eq!(server["held_out"], false, "{server}");
        for (outcome, count) in server["attempts"].as_object().unwrap() {
            if outcome != "ok" {
                assert_eq!(count, 0, "{outcome} counted against {server}");
            }
        }
    }
}

/// `ginx_client_requests_too_large_total` of listener `web`.
async fn too_large_count(ginx: &Ginx) -> f64 {
    let metrics = scrape(ginx.admin_addr()).await;
    metrics[r#"ginx_client_requests_too_large_total{listener="web"}"#]
}

/// Write `head` and `chunks` (each written on its own), keep the
/// connection open for writing, and read the reply until ginx closes the
/// connection (or [`DEADLINE`]): the reply, and whether it was closed.
async fn send_and_read(addr: SocketAddr, head: &str, chunks: Vec<Vec<u8>>) -> (String, bool) {
    send_held_open(addr, head.to_owned(), chunks, std::time::Duration::ZERO).await
}

fn assert_413_and_closed(reply: &str, closed: bool) {
    assert!(reply.starts_with("HTTP/1.1 413"), "got {reply:?}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "got {reply:?}"
    );
    assert!(closed, "ginx kept the connection open after {reply:?}");
}

/// One HTTP/1.1 chunk of `len` pattern bytes.
fn chunk(len: usize) -> Vec<u8> {
    let mut out = format!("{len:x}\r\n").into_bytes();
    out.extend(pattern(len));
    out.extend(b"\r\n");
    out
}

#[tokio::test]
async fn a_content_length_over_the_limit_is_a_413_before_any_server() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let addr = ginx.addr("web");
    for _ in 0..3 {
        // The head only: the body is never read, so it need not be sent.
        let head = "POST /__upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n";
        let (reply, closed) = send_and_read(addr, head, Vec::new()).await;
        assert_413_and_closed(&reply, closed);
    }
    assert_eq!(a.hits() + b.hits(), 0, "nothing reached a server");
    // Exactly the limit is fine.
    let body = pattern(1024);
    let req = Request::post("/__upload")
        .header("host", "x")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let reply = send(addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), format!("1024 {}", sha256_hex(&body)));
    assert_eq!(too_large_count(&ginx).await, 3.0);
    let log = ginx.dir.path().join("access.log");
    assert!(eventually(DEADLINE, || logged_statuses(&log).len() >= 4).await);
    assert_eq!(logged_statuses(&log)[..4], [413, 413, 413, 200]);
    nothing_held_against_the_servers(&ginx).await;
}

#[tokio::test]
async fn a_chunked_body_that_passes_the_limit_is_a_413_and_closed() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let addr = ginx.addr("web");
    for _ in 0..2 {
        let head = "POST /__upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        // 600 bytes go upstream; the next 600 pass the 1 KiB limit. No
        // last chunk: the body is cut, not finished.
        let (reply, closed) = send_and_read(addr, head, vec![chunk(600), chunk(600)]).await;
        assert_413_and_closed(&reply, closed);
    }
    // Each request reached a server at most once (its head, and part of
    // its body, may have been written; the server may see it after the 413
    // or not at all): neither was retried.
    assert!(a.hits() + b.hits() <= 2, "retried: {} hits", a.hits() + b.hits());
    assert_eq!(too_large_count(&ginx).await, 2.0);
    // Under the limit, the same chunked upload goes through.
    let head =
        "POST /__upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let (reply, _) = send_and_read(addr, head, vec![chunk(600), b"0\r\n\r\n".to_vec()]).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "got {reply:?}");
    assert!(
        reply.ends_with(&format!("600 {}", sha256_hex(&pattern(600)))),
        "got {reply:?}"
    );
    nothing_held_against_the_servers(&ginx).await;
}

#[tokio::test]
async fn a_route_overrides_the_listener_limit() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let addr = ginx.addr("web");
    let body = pattern(64 * 1024);
    let post = |path: &str| {
        Request::post(path)
            .header("host", "x")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap()
    };
    let reply = send(addr, post("/big/__upload")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), format!("{} {}", body.len(), sha256_hex(&body)));
    let reply = send(addr, post("/__upload")).await;
    // hyper's client may see the 413 or, having written its body into a
    // closing connection, a reset: either way the request was refused.
    if let Ok(reply) = reply {
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert!(eventually(DEADLINE, async || too_large_count(&ginx).await == 1.0).await);
    assert_eq!(a.hits() + b.hits(), 1, "only the allowed upload reached a server");
    nothing_held_against_the_servers(&ginx).await;
}

/// A body of `frames` frames of `len` bytes, whose length is not known
/// in advance (no `Content-Length`).
fn streamed(
    frames: usize,
    len: usize,
) -> impl hyper::body::Body<Data = Bytes, Error = std::io::Error> + Unpin {
    let frames = (0..frames).map(move |_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(pattern(len)))));
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn an_h2c_body_over_the_limit_is_a_413() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let addr = ginx.addr("web");
    let mut h2 = h2c_connect(addr).await;
    // Declared (hyper's client sends the length of a full body).
    let req = Request::post("http://x/__upload")
        .body(
            Full::new(Bytes::from(pattern(4096)))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.hits() + b.hits(), 0, "refused before any server");
    // Streamed: four frames of 600 bytes pass the limit on the second.
    let req = Request::post("http://x/__upload")
        .body(streamed(4, 600).boxed())
        .unwrap();
    match send_h2(&mut h2, req).await {
        Ok(reply) => assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE),
        // The stream may be reset instead, if the 413 loses the race with
        // the rest of the body: the request was refused either way.
        Err(error) => assert!(error.to_string().contains("stream"), "{error}"),
    }
    // The connection still serves: one stream failed, not the connection.
    let req = Request::get("http://x/").body(streamed(0, 0).boxed()).unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(too_large_count(&ginx).await, 2.0);
    nothing_held_against_the_servers(&ginx).await;
}

/// A GET of `fields` header fields: `Host`, `Connection` and more.
fn with_headers(fields: usize) -> String {
    let mut head = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_owned();
    for i in 2..fields {
        head.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    head + "\r\n"
}

#[tokio::test]
async fn more_header_fields_than_max_request_headers_is_a_431() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let addr = ginx.addr("web");
    // One over the default 100, refused by ginx: no server saw it.
    let reply = raw_exchange(addr, with_headers(101).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "got {reply:?}");
    assert_eq!(a.hits() + b.hits(), 0);
    // Fewer are fine, on a new connection. (Not 100: ginx adds
    // `X-Forwarded-For` and the like, and the backend, hyper too, allows
    // 100.)
    let reply = raw_exchange(addr, with_headers(90).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "got {reply:?}");
    // HTTP/2: the `h2` crate limits the header list's size only; ginx
    // counts the fields.
    let mut h2 = h2c_connect(addr).await;
    let mut req = Request::get("http://x/").body(streamed(0, 0)).unwrap();
    for i in 0..101 {
        let name = http::HeaderName::try_from(format!("x-header-{i}")).unwrap();
        req.headers_mut().insert(name, "1".parse().unwrap());
    }
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let req = Request::get("http://x/").body(streamed(0, 0)).unwrap();
    assert_eq!(send_h2(&mut h2, req).await.unwrap().status, StatusCode::OK);
    assert_eq!(a.hits() + b.hits(), 2, "only the two good requests were proxied");
    nothing_held_against_the_servers(&ginx).await;
}

#[tokio::test]
async fn a_listener_can_lower_max_request_headers() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "max_request_headers = 10").await;
    let addr = ginx.addr("web");
    let reply = raw_exchange(addr, with_headers(11).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "got {reply:?}");
    let reply = raw_exchange(addr, with_headers(10).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "got {reply:?}");
    assert_eq!(a.hits() + b.hits(), 1);
}

#[tokio::test]
async fn a_listener_can_lower_max_request_head() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "max_request_head = \"4KiB\"").await;
    let addr = ginx.addr("web");
    let head = |value: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "v".repeat(value)
        )
    };
    // A 5 KiB head is over this listener's 4 KiB (the default is 32 KiB).
    let reply = raw_exchange(addr, head(5 * 1024).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "got {reply:?}");
    let reply = raw_exchange(addr, head(3 * 1024).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "got {reply:?}");
    assert_eq!(a.hits() + b.hits(), 1);
}

#[tokio::test]
async fn a_request_target_over_max_request_line_is_a_414() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let addr = ginx.addr("web");
    let long = format!("/{}", "a".repeat(9 * 1024));
    let reply = raw_exchange(
        addr,
        format!("GET {long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 414"), "got {reply:?}");
    // Within the default 8 KiB, on a new connection: served.
    let fits = format!("/{}", "a".repeat(8 * 1024 - 1));
    assert_eq!(get(addr, &fits).await.status, StatusCode::OK);
    let mut h2 = h2c_connect(addr).await;
    let req = Request::get(format!("http://x{long}"))
        .body(streamed(0, 0))
        .unwrap();
    assert_eq!(
        send_h2(&mut h2, req).await.unwrap().status,
        StatusCode::URI_TOO_LONG
    );
    let log = ginx.dir.path().join("access.log");
    assert!(eventually(DEADLINE, || logged_statuses(&log).len() >= 3).await);
    assert_eq!(logged_statuses(&log)[..3], [414, 200, 414]);
    assert_eq!(a.hits() + b.hits(), 1);
    nothing_held_against_the_servers(&ginx).await;
}
