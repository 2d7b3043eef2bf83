//! A client connection's deadlines with one timer per connection armed at
//! the earliest of them (issue 12): each still fires when due, whichever
//! deadline came first, and a connection that has sent nothing yet is
//! served once it does, or closed at the header-read timeout.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until the peer closes, within [`DEADLINE`]; what came.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf)).await;
    read.ok().map(|_| String::from_utf8_lossy(&buf).into_owned())
}

/// ginx with `header_read_timeout = "1s"` in front of one backend (kept
/// alive by the caller).
async fn with_header_read_timeout_1s() -> (Backend, Ginx) {
    let app = Backend::start("app").await;
    let config = format!(
        "[global]\nheader_read_timeout = \"1s\"\n\n{}",
        one_listener(&[app.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    (app, ginx)
}

#[tokio::test]
async fn a_silent_connection_is_served_once_it_speaks_or_closed_at_the_header_read_timeout() {
    let (_app, ginx) = with_header_read_timeout_1s().await;
    let addr = ginx.addr("web");

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut late = TcpStream::connect(addr).await.unwrap();
    // Paces the client: it says nothing for a while, well within the timeout.
    tokio::time::sleep(Duration::from_millis(300)).await;
    late.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = until_closed(&mut late).await.expect("served once it spoke");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("app"), "{reply}");

    assert_eq!(
        until_closed(&mut silent).await.as_deref(),
        Some(""),
        "closed, nothing sent"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_is_still_closed_when_idle_after_a_response_slower_than_the_timeout() {
    let (_app, ginx) = with_header_read_timeout_1s().await;
    let addr = ginx.addr("web");

    // The head deadline noted for this request passes while the upstream
    // takes its time: the connection must be neither cut then nor left
    // open for good afterwards.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /__sleep/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = until_closed(&mut conn).await.expect("closed once idle");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("app"), "answered before it was closed: {reply}");
}

#[tokio::test]
async fn read_timeout_fires_when_it_comes_long_before_the_header_read_deadline() {
    let app = Backend::start("app").await;
    let config = format!(
        "[global]\nheader_read_timeout = \"600s\"\n\n{}",
        web(&format!(
            "servers = {}\nread_timeout = \"1s\"\n",
            servers(&[app.addr])
        ))
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");

    // The connection's timer was armed at the 600 s head deadline; the
    // request's earlier deadline must re-arm it.
    let reply = tokio::time::timeout(DEADLINE, get(addr, "/__sleep/5000")).await;
    assert_eq!(reply.expect("answered").status, http::StatusCode::GATEWAY_TIMEOUT);
}
