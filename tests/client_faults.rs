//! A client's fault is the client's: a request body that is not valid HTTP,
//! or a client that hangs up during its upload, ends that request (`400`, or
//! `499` in the access log as nginx writes it) and is never held against the
//! upstream server: no passive-health failure, no retry, no hold-out.
//!
//! The pool uses the defaults (`max_fails = 1`, `fail_timeout = "10s"`), so a
//! single failure counted against a server would take it out of rotation
//! for the rest of the test.

mod support;

use support::*;
use tokio::io::AsyncWriteExt;

/// A malformed chunk size: the client's body is not valid HTTP/1.1.
const MALFORMED: &[u8] =
    b"POST /__upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5z\r\nhello\r\n0\r\n\r\n";

async fn start(a: &Backend, b: &Backend) -> Ginx {
    let config = format!(
        "[global]\naccess_log = {{ path = \"access.log\", format = \"json\" }}\n\n{}",
        one_listener(&[a.addr, b.addr])
    );
    Ginx::start(&config, &[], &["web"]).await
}

/// Both servers still answer: 20 GETs, all 200, round robin over both.
async fn both_servers_serve(addr: std::net::SocketAddr) {
    let answers = bodies(addr, "/", 20).await;
    let tally = tally(&answers);
    assert_eq!(tally.get("a"), Some(&10), "{answers:?}");
    assert_eq!(tally.get("b"), Some(&10), "{answers:?}");
}

#[tokio::test]
async fn a_malformed_body_is_a_400_and_holds_no_server_out() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b).await;
    let addr = ginx.addr("web");
    for _ in 0..4 {
        let reply = raw_exchange(addr, MALFORMED).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "got {reply:?}");
    }
    both_servers_serve(addr).await;
    let log = ginx.dir.path().join("access.log");
    assert!(eventually(DEADLINE, || logged_statuses(&log).len() == 24).await);
    assert_eq!(logged_statuses(&log)[..4], [400; 4]);
    // A bad body reaches a server at most once (usually not at all: it is
    // refused before the request head is flushed): nothing is retried.
    assert!(a.hits() + b.hits() <= 4 + 20);
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_upload_is_a_499_and_holds_no_server_out() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b).await;
    let addr = ginx.addr("web");
    for n in 1..=4 {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"POST /__upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
            .await
            .unwrap();
        // The request has reached a server, its body still on the way.
        assert!(eventually(DEADLINE, || a.hits() + b.hits() == n).await);
        drop(client);
    }
    let log = ginx.dir.path().join("access.log");
    assert!(eventually(DEADLINE, || logged_statuses(&log).len() == 4).await);
    assert_eq!(logged_statuses(&log), [499; 4]);
    both_servers_serve(addr).await;
    assert_eq!(a.hits() + b.hits(), 4 + 20);
}

/// A client that stops reading a response is cut after `send_timeout`
/// (nginx's): its connection is closed, so it gets a truncated response,
/// not one held open for it forever.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_send_timeout() {
    use tokio::io::AsyncReadExt;
    const SIZE: usize = 200 * 1024 * 1024;
    let a = Backend::start("a").await;
    let config = format!("[global]\nsend_timeout = \"1s\"\n\n{}", one_listener(&[a.addr]));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let mut client = tokio::net::TcpStream::connect(ginx.addr("web")).await.unwrap();
    client
        .write_all(format!("GET /__download/{SIZE} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read nothing for longer than send_timeout (plus its 1 s check).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut got = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, client.read_to_end(&mut got)).await;
    assert!(ended.is_ok(), "the connection was not closed");
    assert!(got.len() < SIZE / 2, "cut short: {} bytes of {SIZE}", got.len());
}
