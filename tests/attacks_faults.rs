//! Sequential attacks and faults (issue 11), each against a recording
//! origin: an upstream that answers an upload early, an `Upgrade` answered
//! `200`, an upstream that speaks garbage or cuts its body short, a head
//! that trickles in, and a process out of file descriptors.
//!
//! Pass criteria as in attacks_smuggling.rs: the origin sees only what the
//! client framed as requests, the client sees a documented status or the
//! truncation, and the process and other clients are unaffected. Cases that
//! tests elsewhere already prove (oversized response head, stalled response
//! body, stalled request body, a client that stops reading) are listed in
//! docs/reliability.md with the test that proves them, not repeated here.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read from `stream` until `needle` has arrived (or [`DEADLINE`]); what
/// was read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&got).contains(needle) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// ginx on one worker (so that two clients share its upstream pool) with
/// `app` at `origin`, and `header_read_timeout = "1s"`.
async fn one_worker(origin: &Origin) -> Ginx {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[global]\nheader_read_timeout = \"1s\"\n\n{}",
        one_listener(&[origin.addr])
    );
    std::fs::write(dir.path().join("ginx.toml"), config).unwrap();
    Ginx::start_in(dir, &["web"], &[("GINX_WORKERS", "1")]).await
}

/// The upload's head and its first half.
const UPLOAD_HEAD: &[u8] = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n0123456789";

/// An upstream that answers an upload before reading it: the client gets
/// the answer, the rest of its upload still reaches the origin as that
/// request's body, and the next request on the same client connection is a
/// request of its own, never read out of the upload.
#[tokio::test]
async fn an_early_response_to_an_upload_then_a_request_on_the_same_connection() {
    let origin = Origin::answering(Answer::Early).await;
    let ginx = one_worker(&origin).await;
    let mut client = TcpStream::connect(ginx.addr("web")).await.unwrap();
    client.write_all(UPLOAD_HEAD).await.unwrap();
    let early = read_until(&mut client, "request 1").await;
    assert!(early.starts_with("HTTP/1.1 200"), "{early:?}");
    // The rest of the upload, then a request that looks like one in the
    // body of the first: it is the client's next request.
    client
        .write_all(b"abcdefghijGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let next = read_until(&mut client, "request 2").await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next:?}");
    let seen: Vec<String> = origin.requests().iter().map(Recorded::summary).collect();
    assert_eq!(seen, ["POST /up body=0123456789abcdefghij", "GET /next"]);
    // Not on the upload's connection: it was busy when the answer came.
    let requests = origin.requests();
    assert_ne!(requests[0].conn, requests[1].conn);
    assert!(origin.leftovers().is_empty(), "{:?}", origin.leftovers());
    assert!(server_failures(&ginx.status().await).is_empty());
}

/// While an upload answered early is still arriving, its upstream
/// connection is busy: another client's request must not wait for it.
#[tokio::test]
async fn an_upload_answered_early_does_not_hold_up_other_clients() {
    let origin = Origin::answering(Answer::Early).await;
    let ginx = one_worker(&origin).await;
    let addr = ginx.addr("web");
    let mut uploader = TcpStream::connect(addr).await.unwrap();
    uploader.write_all(UPLOAD_HEAD).await.unwrap();
    let early = read_until(&mut uploader, "request 1").await;
    assert!(early.starts_with("HTTP/1.1 200"), "{early:?}");
    // The upload is half sent and stays so while another client asks.
    let other = tokio::time::timeout(DEADLINE, get(addr, "/other")).await;
    let other = other.expect("another client is answered while the upload is pending");
    assert_eq!(other.status, 200);
    uploader.write_all(b"abcdefghij").await.unwrap();
    assert!(
        eventually(DEADLINE, || origin
            .requests()
            .iter()
            .any(|r| r.summary() == "POST /up body=0123456789abcdefghij"))
        .await,
        "{:?}",
        origin.requests()
    );
    // Two requests, never on the same upstream connection at once.
    let requests = origin.requests();
    let other = requests.iter().find(|r| r.target == "/other").unwrap();
    let upload = requests.iter().find(|r| r.target == "/up").unwrap();
    assert_ne!(other.conn, upload.conn);
    assert!(origin.leftovers().is_empty(), "{:?}", origin.leftovers());
}

/// An upload the upstream reads whole before answering leaves its
/// connection reusable: only early answers cost a connection.
#[tokio::test]
async fn an_upload_answered_after_its_body_keeps_its_connection() {
    let origin = Origin::start().await;
    let ginx = one_worker(&origin).await;
    let addr = ginx.addr("web");
    for body in ["first", "second"] {
        let req = hyper::Request::post("/keep")
            .header("host", "x")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        assert_eq!(send(addr, req).await.unwrap().status, 200);
    }
    let requests = origin.requests();
    let summaries: Vec<String> = requests.iter().map(Recorded::summary).collect();
    assert_eq!(summaries, ["POST /keep body=first", "POST /keep body=second"]);
    assert_eq!(
        requests[0].conn, requests[1].conn,
        "the connection was not reused"
    );
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";

/// An `Upgrade` the origin answers `200`: no tunnel opens. Bytes the client
/// then sends are read as HTTP on the client connection (a request if it
/// framed one, else a 400), never passed to the origin raw on the
/// upgrade's connection.
#[tokio::test]
async fn an_upgrade_answered_200_opens_no_tunnel() {
    let origin = Origin::start().await;
    let config = format!(
        "[global]\nheader_read_timeout = \"1s\"\n\n{}",
        one_listener(&[origin.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");

    // Followed by a request the client framed as one.
    let framed = format!("{UPGRADE}GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    let got = attack(addr, framed.as_bytes(), DEADLINE).await;
    assert_eq!(statuses(&got.reply), [200, 200], "{:?}", got.reply);
    assert_eq!(origin.seen("/"), ["GET /ws", "GET /after"]);
    let requests = origin.requests();
    assert_ne!(
        requests[0].conn, requests[1].conn,
        "the upgrade's connection is its own"
    );

    // Followed by WebSocket bytes: not HTTP, so a 400, and nothing reaches
    // the origin.
    let frame = format!("{UPGRADE}\u{81}\u{5}hello");
    let got = attack(addr, frame.as_bytes(), DEADLINE).await;
    assert_eq!(statuses(&got.reply), [200, 400], "{:?}", got.reply);
    assert!(got.closed);
    assert_eq!(origin.seen("/"), ["GET /ws", "GET /after", "GET /ws"]);
    assert!(origin.leftovers().is_empty(), "{:?}", origin.leftovers());
    assert!(server_failures(&ginx.status().await).is_empty());
}

/// `app` answers with `raw` and closes; `/ok` goes to a healthy origin.
async fn misbehaving(raw: &[u8]) -> (Origin, Origin, Ginx) {
    let bad = Origin::answering(Answer::Raw {
        bytes: raw.to_vec(),
        close: true,
    })
    .await;
    let good = Origin::start().await;
    let config = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
         [[listener.web.route]]\npath = \"/ok\"\nupstream = \"good\"\n\n\
         [upstream.app]\nservers = [\"{}\"]\nretries = 0\n\n\
         [upstream.good]\nservers = [\"{}\"]\n",
        bad.addr, good.addr
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    (bad, good, ginx)
}

/// Other clients are served: `/ok` answers from the healthy origin.
async fn others_served(addr: SocketAddr, good: &Origin) {
    let reply = get(addr, "/ok").await;
    assert_eq!(reply.status, 200);
    assert_eq!(good.seen("/ok"), ["GET /ok"]);
}

#[tokio::test]
async fn an_upstream_that_answers_garbage_is_a_502() {
    let (bad, good, ginx) = misbehaving(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http\r\n\r\n").await;
    let addr = ginx.addr("web");
    let reply = get(addr, "/x").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(bad.seen("/x"), ["GET /x"]);
    others_served(addr, &good).await;
}

/// The client's view of a response whose upstream cut its body: the head
/// as relayed and the body bytes, and whether the connection then closed.
async fn truncated(addr: SocketAddr) -> (String, String) {
    let got = attack(addr, b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n", DEADLINE).await;
    assert!(got.closed, "the connection was not closed: {:?}", got.reply);
    let (head, body) = got.reply.split_once("\r\n\r\n").unwrap_or((&got.reply, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_reaches_the_client_cut() {
    let (_bad, good, ginx) = misbehaving(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789").await;
    let addr = ginx.addr("web");
    let (head, body) = truncated(addr).await;
    assert!(head.starts_with("http/1.1 200"), "{head:?}");
    // The length the upstream announced, and less than it: the client
    // knows the response is incomplete.
    assert!(head.contains("content-length: 100"), "{head:?}");
    assert_eq!(body, "0123456789");
    others_served(addr, &good).await;
}

#[tokio::test]
async fn a_chunked_body_without_its_last_chunk_reaches_the_client_cut() {
    let (_bad, good, ginx) =
        misbehaving(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
    let addr = ginx.addr("web");
    let (head, body) = truncated(addr).await;
    assert!(head.contains("transfer-encoding: chunked"), "{head:?}");
    assert!(body.starts_with("5\r\nhello\r\n"), "{body:?}");
    assert!(!body.contains("0\r\n\r\n"), "a terminating chunk: {body:?}");

    // An HTTP/2 client sees the stream fail, not end.
    let mut h2 = h2c_connect::<http_body_util::Empty<bytes::Bytes>>(addr).await;
    let req = hyper::Request::get("http://x/cut")
        .body(http_body_util::Empty::new())
        .unwrap();
    let read = tokio::time::timeout(DEADLINE, send_h2(&mut h2, req)).await;
    assert!(
        read.expect("an answer or an error").is_err(),
        "a complete-looking response"
    );
    others_served(addr, &good).await;
}

/// A head sent one byte per 100 ms is cut at `header_read_timeout`, which
/// bounds the whole head, not the wait between two bytes.
#[tokio::test]
async fn a_head_that_trickles_is_cut_at_header_read_timeout() {
    let origin = Origin::start().await;
    let ginx = one_worker(&origin).await;
    let mut client = TcpStream::connect(ginx.addr("web")).await.unwrap();
    // 80 bytes: 8 s at this pace, far past the 1 s timeout.
    let head = format!(
        "GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(44)
    );
    let mut sent = 0;
    for byte in head.as_bytes() {
        if client.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        // The client's pace is what this test is about.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut peek = [0u8; 1];
        let closed = tokio::time::timeout(Duration::ZERO, client.peek(&mut peek)).await;
        if matches!(closed, Ok(Ok(0)) | Ok(Err(_))) {
            break;
        }
    }
    assert!(sent < head.len(), "the whole head went in");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, client.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("200"), "answered: {rest:?}");
    assert!(origin.requests().is_empty());
    assert_eq!(get(ginx.addr("web"), "/").await.status, 200);
}

/// Lower ginx's open-file limit to `limit` (soft and hard) while it runs.
fn limit_files(pid: i32, limit: u32) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit failed");
}

/// Out of file descriptors, ginx keeps what is open, backs off instead of
/// spinning on accept, and serves again once connections close.
#[tokio::test]
async fn out_of_file_descriptors_ginx_backs_off_and_recovers() {
    const LIMIT: u32 = 64;
    let origin = Origin::start().await;
    let mut ginx = Ginx::start(&one_listener(&[origin.addr]), &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert_eq!(get(addr, "/").await.status, 200);
    limit_files(ginx.pid(), LIMIT);
    // More connections than ginx has descriptors left; the kernel queues
    // those ginx cannot accept.
    let before = ginx.log_len();
    let mut held = Vec::new();
    for _ in 0..2 * LIMIT {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let failing = "accept failed; retrying in 100ms";
    assert!(
        ginx.wait_log_since(before, failing, DEADLINE).await,
        "accept never failed; log:\n{}",
        ginx.log_text()
    );
    // A spin would log thousands of times a second; the back-off logs ten
    // times a second per worker. One second of it:
    let from = ginx.log_len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failures = ginx
        .log_since(from)
        .iter()
        .filter(|l| l.contains(failing))
        .count();
    assert!(failures <= 2 * 10 * 3, "{failures} accept failures logged in 1 s");
    drop(held);
    // Served again once the descriptors are back.
    assert!(
        eventually(DEADLINE, async || {
            let req = hyper::Request::get("/")
                .header("host", "x")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(2), send(addr, req)).await;
            matches!(reply, Ok(Ok(r)) if r.status == 200)
        })
        .await,
        "not served after the connections closed; log:\n{}",
        ginx.log_text()
    );
    assert_eq!(ginx.wait_exit(Duration::ZERO).await, None, "ginx exited");
}
