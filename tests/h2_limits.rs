//! HTTP/2 connection limits: a client that floods a connection with PING
//! or SETTINGS frames (which hyper would answer forever) is disconnected
//! once it passes `max_h2_control_frames` a second, while other clients
//! are served; a client that downloads a lot, acknowledging every frame
//! with WINDOW_UPDATEs, is not. ginx announces its stream and header-list
//! limits in its SETTINGS.
//!
//! The floods are written as raw frames on a TCP connection (h2c with
//! prior knowledge): no HTTP/2 client would send them.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Body = BoxBody<Bytes, std::io::Error>;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

/// One frame on stream 0.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags, 0, 0, 0, 0]);
    out.extend(payload);
    out
}

async fn start(listener_extra: &str) -> (Backend, Ginx) {
    let a = Backend::start("a").await;
    let config = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n{listener_extra}\n\n{}",
        upstream("app", &[a.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    (a, ginx)
}

/// Open an h2c connection and write the preface, an empty SETTINGS, then
/// `flood` (batches of 1,000 frames) up to 100 times, reading whatever ginx
/// answers all along. Whether ginx closed the connection (EOF or reset)
/// within [`DEADLINE`].
async fn flood(addr: SocketAddr, flood: Vec<u8>) -> bool {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(PREFACE).await?;
        write.write_all(&frame(SETTINGS, 0, &[])).await?;
        let batch = flood.repeat(1000);
        for _ in 0..100 {
            write.write_all(&batch).await?;
        }
        // Sent it all: wait, connected, for ginx to decide.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(write)
    });
    // Read (so that ginx's answers never block it) until the end.
    let closed = closed_within_deadline(&mut read).await;
    writer.abort();
    closed
}

/// Read and drop what `read` gives until its end (EOF or an error):
/// whether that came within [`DEADLINE`].
async fn closed_within_deadline(read: &mut (impl tokio::io::AsyncRead + Unpin)) -> bool {
    let drain = async {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(1..) = read.read(&mut buf).await {}
    };
    tokio::time::timeout(DEADLINE, drain).await.is_ok()
}

async fn floods_counted(ginx: &Ginx) -> f64 {
    scrape(ginx.admin_addr()).await[r#"ginx_client_h2_floods_total{listener="web"}"#]
}

/// Others are served as the flood goes on and after it: HTTP/1.1 and a
/// well-behaved HTTP/2 client.
async fn others_are_served(addr: SocketAddr) {
    assert_eq!(get(addr, "/").await.text(), "a");
    let mut h2 = h2c_connect::<Body>(addr).await;
    let req = Request::get("http://x/").body(empty()).unwrap();
    assert_eq!(send_h2(&mut h2, req).await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn a_ping_flood_is_disconnected_while_others_are_served() {
    let (_a, ginx) = start("").await;
    let addr = ginx.addr("web");
    let ping = frame(PING, 0, &[7; 8]);
    let (closed, ()) = tokio::join!(flood(addr, ping), others_are_served(addr));
    assert!(closed, "ginx kept answering a flood of 100,000 PINGs");
    assert_eq!(floods_counted(&ginx).await, 1.0);
    others_are_served(addr).await;
}

#[tokio::test]
async fn a_settings_flood_is_disconnected() {
    let (_a, ginx) = start("").await;
    let addr = ginx.addr("web");
    assert!(
        flood(addr, frame(SETTINGS, 0, &[])).await,
        "ginx kept acknowledging SETTINGS"
    );
    assert_eq!(floods_counted(&ginx).await, 1.0);
    others_are_served(addr).await;
}

#[tokio::test]
async fn a_lower_max_h2_control_frames_applies_and_pings_under_it_are_answered() {
    let (_a, ginx) = start("max_h2_control_frames = 50").await;
    let addr = ginx.addr("web");
    // 20 PINGs: under the limit, each answered with its ACK.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, &[])).await.unwrap();
    stream
        .write_all(&frame(PING, 0, &[1; 8]).repeat(20))
        .await
        .unwrap();
    let acks = read_frames_until(&mut stream, |frames| {
        frames
            .iter()
            .filter(|(kind, flags, _)| *kind == PING && *flags == 1)
            .count()
            == 20
    })
    .await;
    assert!(acks.is_some(), "not every PING was answered");
    // 100 more within the second: over 50, closed.
    stream
        .write_all(&frame(PING, 0, &[1; 8]).repeat(100))
        .await
        .unwrap();
    assert!(
        closed_within_deadline(&mut stream).await,
        "ginx allowed more than max_h2_control_frames"
    );
    others_are_served(addr).await;
}

/// Read frames from `stream` until `done` says so (or [`DEADLINE`], or the
/// end): `(type, flags, payload)` of each.
async fn read_frames_until(
    stream: &mut tokio::net::TcpStream,
    done: impl Fn(&[(u8, u8, Vec<u8>)]) -> bool,
) -> Option<Vec<(u8, u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    let read = async {
        loop {
            let mut head = [0; 9];
            stream.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            stream.read_exact(&mut payload).await.ok()?;
            frames.push((head[3], head[4], payload));
            if done(&frames) {
                return Some(());
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.ok()??;
    Some(frames)
}

/// The SETTINGS ginx sends first on an h2c connection to a listener with
/// `listener_extra`, as (identifier, value) pairs.
async fn announced_settings(listener_extra: &str) -> Vec<(u16, u32)> {
    let (_a, ginx) = start(listener_extra).await;
    let mut stream = tokio::net::TcpStream::connect(ginx.addr("web")).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, &[])).await.unwrap();
    let is_settings = |(kind, flags, _): &(u8, u8, Vec<u8>)| *kind == SETTINGS && *flags == 0;
    let frames = read_frames_until(&mut stream, |frames| frames.iter().any(is_settings))
        .await
        .expect("ginx's SETTINGS");
    let (_, _, settings) = frames.iter().find(|f| is_settings(f)).unwrap();
    settings
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect()
}

#[tokio::test]
async fn ginx_announces_its_stream_and_header_list_limits() {
    let values = announced_settings("").await;
    // SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_HEADER_LIST_SIZE.
    assert!(values.contains(&(0x3, 256)), "{values:?}");
    assert!(values.contains(&(0x6, 32 * 1024)), "{values:?}");
}

#[tokio::test]
async fn a_listener_sets_its_own_stream_and_header_list_limits() {
    let values = announced_settings("max_h2_streams = 10\nmax_request_head = \"16KiB\"").await;
    assert!(values.contains(&(0x3, 10)), "{values:?}");
    assert!(values.contains(&(0x6, 16 * 1024)), "{values:?}");
}

#[tokio::test]
async fn a_big_h2_download_acknowledged_frame_by_frame_is_not_a_flood() {
    let (_a, ginx) = start("").await;
    // A small window: the client sends WINDOW_UPDATEs all the time, many
    // more than 1,000 within a second.
    let stream = tokio::net::TcpStream::connect(ginx.addr("web")).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .handshake::<_, Body>(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    const SIZE: usize = 64 * 1024 * 1024;
    let req = Request::get(format!("http://x/__download/{SIZE}"))
        .body(empty())
        .unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), SIZE);
    assert_eq!(floods_counted(&ginx).await, 0.0);
}

#[tokio::test]
async fn a_header_list_over_32_kib_is_refused_and_the_connection_serves_on() {
    let (a, ginx) = start("").await;
    let mut h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    let req = Request::get("http://x/")
        .header("x-big", "b".repeat(40 * 1024))
        .body(empty())
        .unwrap();
    // The `h2` crate answers it, without the request reaching ginx.
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(a.hits(), 0);
    let req = Request::get("http://x/").body(empty()).unwrap();
    assert_eq!(send_h2(&mut h2, req).await.unwrap().status, StatusCode::OK);
}
