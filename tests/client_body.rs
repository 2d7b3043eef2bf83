//! A slow client body is the client's fault: `body_read_timeout` cuts a body
//! that stops, `min_upload_rate` one that trickles, both with `408 Request
//! Timeout` and the client connection closed, and neither is held against
//! the upstream server (no passive-health failure, no retry). An upload
//! above the rate goes through.
//!
//! The pool uses the defaults (`max_fails = 1`, `fail_timeout = "10s"`), so a
//! single failure counted against a server would take it out of rotation
//! for the rest of the test. The timeouts are short ("1s") and checked about
//! once a second, so each test takes a few seconds.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Frame;

use support::*;

/// Less than the configured 1 s, for the checks that the 408 did not come
/// early: the check is done against the process-wide millisecond clock.
const NOT_BEFORE: Duration = Duration::from_millis(800);

async fn start(a: &Backend, b: &Backend, extra: &str) -> Ginx {
    let config = format!(
        "[global]\nlog_level = \"debug\"\nbody_read_timeout = \"1s\"\n{extra}\n{}",
        one_listener(&[a.addr, b.addr])
    );
    Ginx::start(&config, &[], &["web"]).await
}

/// Both servers still answer: 20 GETs, all 200, round robin over both.
async fn both_servers_serve(addr: SocketAddr) {
    let answers = bodies(addr, "/", 20).await;
    let tally = tally(&answers);
    assert_eq!(tally.get("a"), Some(&10), "{answers:?}");
    assert_eq!(tally.get("b"), Some(&10), "{answers:?}");
}

/// Send an upload head announcing `len` bytes, then `chunk` bytes every
/// `pace` (the client's pace is what the test is about), at most `chunks`
/// times, with `extra` headers, while reading the reply until ginx closes the connection (or
/// [`DEADLINE`]). The reply, whether it came with the connection closed,
/// and how long it took.
async fn upload(
    addr: SocketAddr,
    extra: &str,
    len: usize,
    chunk: usize,
    pace: Duration,
    chunks: usize,
) -> (String, bool, Duration) {
    let head = format!("POST /__upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n{extra}\r\n");
    let pieces = pattern(chunk * chunks)
        .chunks(chunk)
        .map(<[u8]>::to_vec)
        .collect();
    let started = Instant::now();
    let (reply, closed) = send_held_open(addr, head, pieces, pace).await;
    (reply, closed, started.elapsed())
}

fn assert_408_and_closed(reply: &str, closed: bool) {
    assert!(reply.starts_with("HTTP/1.1 408"), "got {reply:?}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "got {reply:?}"
    );
    assert!(closed, "ginx kept the connection open after {reply:?}");
}

#[tokio::test]
async fn a_body_that_stops_is_a_408_after_body_read_timeout_and_holds_no_server_out() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let addr = ginx.addr("web");
    // Two at once, so that round robin sends one to each server: if either
    // were held out, the GETs below would all go to the other.
    let stalled = || upload(addr, "", 1_000_000, 10, Duration::ZERO, 1);
    let ((first, closed1, took1), (second, closed2, took2)) = tokio::join!(stalled(), stalled());
    assert_408_and_closed(&first, closed1);
    assert_408_and_closed(&second, closed2);
    assert!(took1 >= NOT_BEFORE && took2 >= NOT_BEFORE, "{took1:?} {took2:?}");
    assert_eq!(a.hits() + b.hits(), 2, "each reached a server once, no retry");
    assert!(
        ginx.wait_log("the client sent no body bytes for 1s", DEADLINE)
            .await
    );
    both_servers_serve(addr).await;
}

#[tokio::test]
async fn a_trickle_below_min_upload_rate_is_cut_after_the_grace_period() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "min_upload_rate = \"1KiB/s\"").await;
    let addr = ginx.addr("web");
    // 100 B/s, never silent for as long as body_read_timeout: only the rate
    // can cut it. 6 s of it at most, far more than the test waits for.
    let (reply, closed, took) = upload(addr, "", 100_000, 10, Duration::from_millis(100), 60).await;
    assert_408_and_closed(&reply, closed);
    assert!(took >= NOT_BEFORE, "{took:?}");
    assert!(ginx.wait_log("averaged less than 1024 B/s", DEADLINE).await);
    assert_eq!(a.hits() + b.hits(), 1);
    both_servers_serve(addr).await;
}

#[tokio::test]
async fn a_steady_upload_above_min_upload_rate_completes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "min_upload_rate = \"1KiB/s\"").await;
    let addr = ginx.addr("web");
    // About 80 KiB/s for 2 s: past the grace period, well above the rate.
    let (chunk, chunks) = (4096, 40);
    let len = chunk * chunks;
    // The client closes after the answer, so the read ends with it.
    let close = "Connection: close\r\n";
    let (reply, _, _) = upload(addr, close, len, chunk, Duration::from_millis(50), chunks).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "got {reply:?}");
    let expected = format!("{len} {}", sha256_hex(&pattern(len)));
    assert!(reply.ends_with(&expected), "got {reply:?}, want {expected}");
}

/// An HTTP/2 request body: 10 bytes, then nothing, never ending; or none.
enum H2Body {
    Stalled { sent: bool },
    Empty,
}

impl hyper::body::Body for H2Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            H2Body::Empty => Poll::Ready(None),
            H2Body::Stalled { sent: true } => Poll::Pending,
            H2Body::Stalled { sent } => {
                *sent = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, H2Body::Empty)
    }
}

#[tokio::test]
async fn an_http2_body_that_stops_is_a_408_and_the_connection_serves_on() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a, &b, "").await;
    let mut h2 = h2c_connect::<H2Body>(ginx.addr("web")).await;
    let req = hyper::Request::post("http://x/__upload")
        .header("content-length", "1000000")
        .body(H2Body::Stalled { sent: false })
        .unwrap();
    let started = Instant::now();
    let reply = tokio::time::timeout(DEADLINE, send_h2(&mut h2, req))
        .await
        .expect("a 408 within the deadline")
        .unwrap();
    assert_eq!(reply.status, 408);
    assert!(started.elapsed() >= NOT_BEFORE, "{:?}", started.elapsed());
    // HTTP/2 has no `Connection` header: only the stream ended, and the
    // connection takes the next request.
    assert_eq!(reply.headers.get("connection"), None);
    let get = hyper::Request::get("http://x/").body(H2Body::Empty).unwrap();
    let next = tokio::time::timeout(DEADLINE, send_h2(&mut h2, get))
        .await
        .expect("an answer on the same connection")
        .unwrap();
    assert_eq!(next.status, 200);
    both_servers_serve(ginx.addr("web")).await;
}
