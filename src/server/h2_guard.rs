//! The HTTP/2 control-frame flood cap: an IO wrapper under hyper's HTTP/2
//! server connection that ends a connection whose client sends control
//! frames faster than `max_h2_control_frames` a second.
//!
//! hyper (the `h2` crate) answers every PING and SETTINGS, processes every
//! WINDOW_UPDATE, PRIORITY and empty frame, and never closes a connection
//! for sending too many: a client can keep a worker busy writing ACKs
//! forever without making a single request. nginx and Envoy close such a
//! connection; so does ginx.
//!
//! This module owns recognising frames and the rule. It reads the 9-byte
//! frame headers as they stream by (after the client's 24-byte preface,
//! frames split anywhere across reads) and skips payloads by arithmetic:
//! nothing is buffered but the 9 bytes of a header that straddles two
//! reads, so the cost is a few instructions per frame, nothing per payload
//! byte. It does not own the connection's lifetime ([`super::connection`])
//! nor any other HTTP/2 setting ([`super::protocol`]); rapid resets are
//! the `h2` crate's own limit, kept.
//!
//! # The rule
//!
//! Control frames are frames that cost the server work without being a
//! request: PING and SETTINGS without ACK, WINDOW_UPDATE, PRIORITY,
//! RST_STREAM, empty DATA frames without END_STREAM, and empty HEADERS
//! and CONTINUATION frames. A connection whose count of them reaches
//! `max_h2_control_frames + 1` less than a second after the count started
//! (at the connection's start, then each time it reached that number) is a
//! flood. Each DATA frame ginx sends takes two off the count, since
//! clients acknowledge data with WINDOW_UPDATE frames, one for the stream
//! and one for the connection (Envoy likewise relates them to the DATA
//! frames sent). The clock is read once per
//! `max_h2_control_frames + 1` control frames.
//!
//! On a flood the read side fails with an error, which ends hyper's
//! connection at once (no GOAWAY: hyper offers no way to send one with a
//! chosen error code from outside), and the listener's
//! `ginx_client_h2_floods_total` counts it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::observe::metrics::ListenerStats;

/// Length of the client's connection preface, which comes before any frame.
const PREFACE_LEN: usize = 24;
/// Length of a frame header (RFC 9113 4.1).
const HEAD_LEN: usize = 9;

// Frame types (RFC 9113 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
/// `ACK` of PING and SETTINGS, `END_STREAM` of DATA: the same bit.
const ACK_OR_END_STREAM: u8 = 0x1;

/// Control frames each DATA frame sent allows: a client acknowledges the
/// data with a WINDOW_UPDATE for its stream and one for the connection.
const DATA_CREDIT: u32 = 2;

/// The window within which `max_h2_control_frames` are allowed.
const WINDOW: Duration = Duration::from_secs(1);

/// What the guard needs of a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    /// Payload length (24 bits).
    length: u32,
    kind: u8,
    flags: u8,
}

impl FrameHead {
    fn parse(head: &[u8; HEAD_LEN]) -> Self {
        FrameHead {
            length: u32::from_be_bytes([0, head[0], head[1], head[2]]),
            kind: head[3],
            flags: head[4],
        }
    }

    /// Whether it costs the server work without being a request.
    fn is_control(&self) -> bool {
        let flagged = self.flags & ACK_OR_END_STREAM != 0;
        match self.kind {
            PING | SETTINGS => !flagged,
            DATA => self.length == 0 && !flagged,
            HEADERS | CONTINUATION => self.length == 0,
            WINDOW_UPDATE | PRIORITY | RST_STREAM => true,
            _ => false,
        }
    }

    /// Whether it is a DATA frame that carries bytes.
    fn carries_data(&self) -> bool {
        self.kind == DATA && self.length > 0
    }
}

/// Finds the frame headers in a stream of bytes split anywhere.
#[derive(Debug, Clone)]
struct FrameScanner {
    /// Bytes to pass over before the next header: the preface, or the rest
    /// of a payload.
    skip: usize,
    /// A header being read, of which `filled` bytes have come.
    head: [u8; HEAD_LEN],
    filled: usize,
}

impl FrameScanner {
    /// A scanner that first passes over `skip` bytes (the preface).
    fn new(skip: usize) -> Self {
        FrameScanner {
            skip,
            head: [0; HEAD_LEN],
            filled: 0,
        }
    }

    /// The next bytes of the stream: `on_frame` sees each header completed
    /// in them, and its error stops the scan.
    fn scan<E>(
        &mut self,
        mut bytes: &[u8],
        mut on_frame: impl FnMut(FrameHead) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let skipped = self.skip.min(bytes.len());
            self.skip -= skipped;
            bytes = &bytes[skipped..];
            if bytes.is_empty() {
                return Ok(());
            }
            let n = (HEAD_LEN - self.filled).min(bytes.len());
            self.head[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled < HEAD_LEN {
                return Ok(());
            }
            self.filled = 0;
            let head = FrameHead::parse(&self.head);
            self.skip = head.length as usize;
            on_frame(head)?;
        }
    }
}

/// A connection sent control frames faster than its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flood;

/// The rule of the module doc: control frames counted in windows of
/// `limit + 1`, less the DATA frames sent.
#[derive(Debug)]
struct Budget {
    limit: u32,
    count: u32,
    since: Instant,
}

impl Budget {
    fn new(limit: u32) -> Self {
        Budget {
            limit,
            count: 0,
            since: Instant::now(),
        }
    }

    /// A control frame came.
    fn control(&mut self) -> Result<(), Flood> {
        self.count = self.count.saturating_add(1);
        if self.count <= self.limit {
            return Ok(());
        }
        let now = Instant::now();
        if now.duration_since(self.since) < WINDOW {
            return Err(Flood);
        }
        self.since = now;
        self.count = 0;
        Ok(())
    }

    /// A DATA frame went to the client.
    fn data_sent(&mut self) {
        self.count = self.count.saturating_sub(DATA_CREDIT);
    }
}

/// An HTTP/2 server connection's IO, held to `max_h2_control_frames`.
#[derive(Debug)]
pub(crate) struct H2Guard<I> {
    io: I,
    /// The client's frames (after its preface).
    read: FrameScanner,
    /// ginx's frames, for the DATA frames it sends.
    written: FrameScanner,
    budget: Budget,
    /// Set once a flood was seen: every later read fails too.
    flooded: bool,
    /// Where a flood is counted.
    stats: Option<Arc<ListenerStats>>,
}

impl<I> H2Guard<I> {
    /// `io`, whose first bytes are the client's preface, allowed `limit`
    /// control frames a second; a flood is counted in `stats`.
    pub(crate) fn new(io: I, limit: u32, stats: Option<Arc<ListenerStats>>) -> Self {
        H2Guard {
            io,
            read: FrameScanner::new(PREFACE_LEN),
            written: FrameScanner::new(0),
            budget: Budget::new(limit),
            flooded: false,
            stats,
        }
    }

    fn flood_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "HTTP/2 control frame flood (more than max_h2_control_frames a second)",
        )
    }

    /// Note the frames of bytes just written.
    fn wrote(&mut self, bytes: &[u8]) {
        let budget = &mut self.budget;
        let _ = self.written.scan(bytes, |head| {
            if head.carries_data() {
                budget.data_sent();
            }
            Ok::<(), Flood>(())
        });
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for H2Guard<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.flooded {
            return Poll::Ready(Err(Self::flood_error()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let budget = &mut this.budget;
            let scanned = this
                .read
                .scan(&buf.filled()[before..], |head| match head.is_control() {
                    true => budget.control(),
                    false => Ok(()),
                });
            if scanned.is_err() {
                // What this read brought is not handed on: an error reads
                // nothing.
                buf.set_filled(before);
                this.flooded = true;
                if let Some(stats) = &this.stats {
                    stats.count_h2_flood();
                }
                tracing::debug!(
                    limit = this.budget.limit,
                    "HTTP/2 control frame flood; closing the connection"
                );
                return Poll::Ready(Err(Self::flood_error()));
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for H2Guard<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(&buf[..n]);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            let mut left = n;
            for slice in bufs {
                let taken = left.min(slice.len());
                this.wrote(&slice[..taken]);
                left -= taken;
                if left == 0 {
                    break;
                }
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags, 0, 0, 0, 1]);
        out.extend(payload);
        out
    }

    /// A preface and one frame of each kind the guard tells apart.
    fn stream() -> (Vec<u8>, Vec<FrameHead>) {
        let frames = [
            (SETTINGS, 0, vec![0; 6]),
            (SETTINGS, ACK_OR_END_STREAM, vec![]),
            (HEADERS, 0x4, vec![7; 20]),
            (DATA, 0, vec![9; 300]),
            (DATA, ACK_OR_END_STREAM, vec![]),
            (PING, 0, vec![1; 8]),
            (PING, ACK_OR_END_STREAM, vec![1; 8]),
            (WINDOW_UPDATE, 0, vec![0, 0, 1, 0]),
            (0xfa, 0, vec![3; 5]),
        ];
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let mut heads = Vec::new();
        for (kind, flags, payload) in frames {
            bytes.extend(frame(kind, flags, &payload));
            heads.push(FrameHead {
                length: payload.len() as u32,
                kind,
                flags,
            });
        }
        (bytes, heads)
    }

    fn scan_in(pieces: &[&[u8]]) -> Vec<FrameHead> {
        let mut scanner = FrameScanner::new(PREFACE_LEN);
        let mut seen = Vec::new();
        for piece in pieces {
            scanner
                .scan(piece, |head| {
                    seen.push(head);
                    Ok::<(), Flood>(())
                })
                .unwrap();
        }
        seen
    }

    #[test]
    fn frames_are_found_whatever_the_split() {
        let (bytes, heads) = stream();
        assert_eq!(scan_in(&[&bytes]), heads);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(scan_in(&[a, b]), heads, "split at {at}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(scan_in(&singles), heads, "one byte at a time");
    }

    #[test]
    fn what_counts_as_a_control_frame() {
        let (_, heads) = stream();
        let control: Vec<bool> = heads.iter().map(FrameHead::is_control).collect();
        assert_eq!(
            control,
            [true, false, false, false, false, true, false, true, false]
        );
        let empty = |kind, flags| FrameHead {
            length: 0,
            kind,
            flags,
        };
        assert!(empty(DATA, 0).is_control(), "empty DATA without END_STREAM");
        assert!(empty(HEADERS, 0).is_control() && empty(CONTINUATION, 0).is_control());
        assert!(empty(RST_STREAM, 0).is_control() && empty(PRIORITY, 0).is_control());
    }

    #[test]
    fn the_budget_allows_the_limit_a_second() {
        let mut budget = Budget::new(3);
        for _ in 0..3 {
            assert_eq!(budget.control(), Ok(()));
        }
        assert_eq!(budget.control(), Err(Flood), "a fourth within the second");
        let mut budget = Budget::new(3);
        for _ in 0..3 {
            budget.control().unwrap();
        }
        budget.data_sent();
        assert_eq!(budget.control(), Ok(()), "a DATA frame sent makes room for two");
        assert_eq!(budget.control(), Ok(()));
        assert_eq!(budget.control(), Err(Flood));
        // The same count over more than a second is no flood: the count
        // restarts.
        let mut budget = Budget::new(3);
        budget.since -= WINDOW;
        for _ in 0..4 {
            assert_eq!(budget.control(), Ok(()));
        }
        for _ in 0..3 {
            assert_eq!(budget.control(), Ok(()));
        }
        assert_eq!(budget.control(), Err(Flood));
    }

    #[tokio::test]
    async fn a_ping_flood_fails_the_read_side_and_a_request_does_not() {
        use tokio::io::AsyncReadExt;
        let (mut bytes, _) = stream();
        for _ in 0..20 {
            bytes.extend(frame(HEADERS, 0x4, &[1; 10]));
        }
        let mut guard = H2Guard::new(&bytes[..], 5, None);
        let mut sink = Vec::new();
        guard.read_to_end(&mut sink).await.unwrap();
        assert_eq!(sink, bytes, "bytes pass unchanged");

        let mut bytes = stream().0;
        for _ in 0..10 {
            bytes.extend(frame(PING, 0, &[0; 8]));
        }
        let stats = Arc::new(ListenerStats::default());
        let mut guard = H2Guard::new(&bytes[..], 5, Some(stats.clone()));
        let error = guard.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(stats.h2_floods.load(std::sync::atomic::Ordering::Relaxed), 1);
        let mut buf = [0; 8];
        assert!(guard.read(&mut buf).await.is_err(), "and stays failed");
    }
}
