//! HTTP/2 floods (issue 11), written frame by frame on an h2c connection:
//! rapid reset, CONTINUATION, an HPACK bomb, empty DATA, and the PING and
//! SETTINGS floods that the control-frame guard caps.
//!
//! Pass criteria: memory stays bounded (ginx's peak resident memory,
//! VmHWM, which a short spike during the flood raises too, grows by less
//! than [`RSS_BOUND_KIB`]: behavioural, not timed), another client is served
//! while the flood runs, the origin never sees more than the requests the
//! attacker made, and where hyper's h2 has a limit the attacker's
//! connection is closed (GOAWAY, then EOF) within a bounded number of
//! frames. What each flood gets today is in docs/reliability.md.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How much ginx's peak resident memory may grow under one flood.
const RSS_BOUND_KIB: u64 = 64 * 1024;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types and flags (RFC 9113 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One frame: 9-byte header and `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block for `method path` on authority `x`: indexed `:scheme
/// http`, then the method and path as literals without indexing.
fn request_block(method: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x86];
    for (index, value) in [(2u8, method), (4, path), (1, "x")] {
        block.extend_from_slice(&[index, value.len() as u8]);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// A literal header without indexing, new name (`len(value) < 127`).
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
    out
}

/// What the attacker read back: whether ginx closed the connection within
/// [`DEADLINE`] (the attacker stops writing at the end of its flood, so
/// only the GOAWAY says ginx closed it because of the flood), and the error
/// code of that GOAWAY.
#[derive(Debug)]
struct Outcome {
    closed: bool,
    goaway: Option<u32>,
}

/// An h2c connection to `addr` past the preface and SETTINGS, and a task
/// reading everything ginx sends until it closes (or [`DEADLINE`]).
async fn connect(addr: SocketAddr) -> (OwnedWriteHalf, JoinHandle<Outcome>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    start.extend(frame(SETTINGS, ACK, 0, &[]));
    write.write_all(&start).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let closed = tokio::time::timeout(DEADLINE, async {
            // A PING flood's answers are 17 bytes each: a few MiB at most.
            while let Ok(n @ 1..) = read.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .is_ok();
        Outcome {
            closed,
            goaway: goaway_code(&got),
        }
    });
    (write, reader)
}

/// The error code of the first GOAWAY in `bytes` (frames from ginx).
fn goaway_code(mut bytes: &[u8]) -> Option<u32> {
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let payload = bytes.get(9..9 + len)?;
        if bytes[3] == GOAWAY && len >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
        bytes = &bytes[9 + len..];
    }
    None
}

/// Write `frames` in batches of 64 until all are written, a write fails
/// (ginx closed the connection) or [`DEADLINE`] passes; how many were
/// written.
async fn flood(write: &mut OwnedWriteHalf, frames: impl Iterator<Item = Vec<u8>>) -> usize {
    let mut written = 0;
    let mut batch = Vec::new();
    let mut frames = frames.peekable();
    let _ = tokio::time::timeout(DEADLINE, async {
        while frames.peek().is_some() {
            batch.clear();
            let mut n = 0;
            for frame in frames.by_ref().take(64) {
                batch.extend(frame);
                n += 1;
            }
            if write.write_all(&batch).await.is_err() {
                return;
            }
            written += n;
        }
    })
    .await;
    written
}

/// ginx with `app` at a recording origin.
async fn start() -> (Origin, Ginx) {
    let origin = Origin::start().await;
    let ginx = Ginx::start(&one_listener(&[origin.addr]), &[], &["web"]).await;
    (origin, ginx)
}

/// Run the flood of `frames` on one connection while another client asks
/// for `/other`; check the memory bound and that the other client was
/// served; what the attacker saw and how many frames went out.
async fn under_flood(ginx: &Ginx, frames: impl Iterator<Item = Vec<u8>>) -> (Outcome, usize) {
    let addr = ginx.addr("web");
    let before = ginx.peak_rss_kib();
    let (mut write, reader) = connect(addr).await;
    let other = tokio::spawn(async move { get(addr, "/other").await });
    let written = flood(&mut write, frames).await;
    let grown = ginx.peak_rss_kib().saturating_sub(before);
    assert!(grown < RSS_BOUND_KIB, "peak RSS grew by {grown} KiB");
    let other = other.await.unwrap();
    assert_eq!(other.status, 200, "another client during the flood");
    // The attacker stops: ginx may now close an idle connection too.
    drop(write);
    let outcome = reader.await.unwrap();
    assert_eq!(get(addr, "/after").await.status, 200, "served after the flood");
    (outcome, written)
}

/// HEADERS then RST_STREAM, stream after stream (CVE-2023-44487).
#[tokio::test]
async fn rapid_reset_is_bounded() {
    const STREAMS: u32 = 20_000;
    let (origin, ginx) = start().await;
    let frames = (0..STREAMS).flat_map(|i| {
        let id = 2 * i + 1;
        let block = request_block("GET", &format!("/reset/{i}"));
        [
            frame(HEADERS, END_HEADERS | END_STREAM, id, &block),
            frame(RST_STREAM, 0, id, &8u32.to_be_bytes()),
        ]
    });
    let (outcome, written) = under_flood(&ginx, frames).await;
    // hyper's h2 answers a burst of resets with GOAWAY (ENHANCE_YOUR_CALM,
    // 0xb) and closes, long before the flood is through.
    assert_eq!(outcome.goaway, Some(0xb), "{outcome:?} after {written} frames");
    assert!(outcome.closed);
    assert!(written < 2 * STREAMS as usize, "all {written} frames went in");
    let reached = origin.seen("/reset/").len();
    assert!(
        reached < STREAMS as usize / 10,
        "{reached} reset requests reached the origin"
    );
}

/// HEADERS without END_HEADERS, then CONTINUATION frames without end
/// (CVE-2024-27316's family): the header list grows past its limit.
#[tokio::test]
async fn a_continuation_flood_is_cut() {
    let (origin, ginx) = start().await;
    let fill: Vec<u8> = (0..9)
        .flat_map(|i| literal(&format!("x-fill-{i}"), &"a".repeat(100)))
        .collect();
    let first = frame(HEADERS, END_STREAM, 1, &request_block("GET", "/continued"));
    let frames = std::iter::once(first).chain((0..20_000).map(|_| frame(CONTINUATION, 0, 1, &fill)));
    let (outcome, written) = under_flood(&ginx, frames).await;
    // h2 caps the CONTINUATION frames of one header block (enough for
    // `max_header_list_size`, plus a quarter) and sends GOAWAY
    // (ENHANCE_YOUR_CALM).
    assert_eq!(outcome.goaway, Some(0xb), "{outcome:?} after {written} frames");
    assert!(outcome.closed);
    assert!(written < 20_000, "all {written} frames went in");
    assert!(origin.seen("/continued").is_empty());
}

/// One large entry in the HPACK dynamic table, then a header block of
/// one-byte references to it: 4 KiB of headers per byte sent.
#[tokio::test]
async fn an_hpack_bomb_is_refused() {
    let (origin, ginx) = start().await;
    // Literal with incremental indexing, new name `x-bomb`, a 4000-byte
    // value (length 4000 as an HPACK integer with a 7-bit prefix).
    let mut insert = vec![0x40, 6];
    insert.extend_from_slice(b"x-bomb");
    insert.extend_from_slice(&[0x7f, 0xa1, 0x1e]);
    insert.extend(std::iter::repeat_n(b'a', 4000));
    let mut block = request_block("GET", "/bomb");
    block.extend(insert);
    // Index 62, the newest dynamic entry, 16 000 times: 64 MB decoded.
    block.extend(std::iter::repeat_n(0xbe, 16_000));
    let headers = frame(HEADERS, END_STREAM, 1, &block[..16_000]);
    let rest = frame(CONTINUATION, END_HEADERS, 1, &block[16_000..]);
    let (outcome, _) = under_flood(&ginx, [headers, rest].into_iter()).await;
    // h2 stops decoding at its abuse limit for a header list (a multiple
    // of `max_header_list_size`) and sends GOAWAY (ENHANCE_YOUR_CALM).
    assert_eq!(outcome.goaway, Some(0xb), "{outcome:?}");
    assert!(origin.seen("/bomb").is_empty(), "the bomb reached the origin");
}

/// A POST whose body is 100 000 empty DATA frames, then its end.
#[tokio::test]
async fn an_empty_data_flood_is_bounded() {
    const FRAMES: usize = 100_000;
    let (origin, ginx) = start().await;
    let head = frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/empty"));
    let frames = std::iter::once(head)
        .chain((0..FRAMES).map(|_| frame(DATA, 0, 1, &[])))
        .chain(std::iter::once(frame(DATA, END_STREAM, 1, &[])));
    let (outcome, written) = under_flood(&ginx, frames).await;
    // h2 takes 100 empty DATA frames without END_STREAM per connection,
    // then sends GOAWAY (ENHANCE_YOUR_CALM); the rest are never read.
    assert_eq!(outcome.goaway, Some(0xb), "{outcome:?} after {written} frames");
    assert!(written < FRAMES, "all {written} frames went in");
    // At most the one request the attacker made, with an empty body.
    assert!(origin.seen("/empty").len() <= 1, "{:?}", origin.seen("/empty"));
    assert!(origin.seen("/empty").iter().all(|s| s == "POST /empty"));
}

/// PING after PING: each asks for an answer.
#[tokio::test]
async fn a_ping_flood_is_cut() {
    const FRAMES: usize = 200_000;
    let (_origin, ginx) = start().await;
    let frames = (0..FRAMES).map(|i| frame(PING, 0, 0, &(i as u64).to_be_bytes()));
    let (outcome, written) = under_flood(&ginx, frames).await;
    // ginx's control-frame guard (src/server/h2_guard.rs) ends the
    // connection under hyper: closed, without a GOAWAY of its own.
    assert!(outcome.closed, "{outcome:?}");
    assert!(written < FRAMES, "all {written} frames went in");
}

/// SETTINGS after SETTINGS: each asks for an ACK.
#[tokio::test]
async fn a_settings_flood_is_cut() {
    const FRAMES: usize = 200_000;
    let (_origin, ginx) = start().await;
    let frames = (0..FRAMES).map(|_| frame(SETTINGS, 0, 0, &[]));
    let (outcome, written) = under_flood(&ginx, frames).await;
    // ginx's control-frame guard (src/server/h2_guard.rs) ends the
    // connection under hyper: closed, without a GOAWAY of its own.
    assert!(outcome.closed, "{outcome:?}");
    assert!(written < FRAMES, "all {written} frames went in");
}
