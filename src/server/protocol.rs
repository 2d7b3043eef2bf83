//! One client connection's HTTP: which version it speaks, and the hyper
//! connection that serves it with ginx's limits.
//!
//! A plaintext connection is HTTP/1.1 unless its first bytes are the HTTP/2
//! connection preface (h2c with prior knowledge, RFC 9113 3.3): [`detect`]
//! reads at most those 24 bytes once per connection and hands them back
//! through [`Prefixed`], so nothing is added per request. A TLS connection
//! says which it speaks with ALPN instead, and is never sniffed.
//!
//! An HTTP/1.1 connection is served by a new hyper connection after each
//! time it was idle (see [`crate::server::connection`]); [`Rewind`] is its
//! io across them, replaying what a taken-back hyper connection had read.
//!
//! This module owns the protocol settings; it does not own the connection's
//! lifetime (its alarm, deadlines, draining: [`crate::server`]) nor what a request
//! does ([`crate::forward`]).
//!
//! # HTTP/1.1
//!
//! Keep-alive on; request heads up to `max_request_head` (32 KiB by
//! default, else 431), with
//! at most `max_request_headers` fields (else 431, hyper's answer);
//! `header_read_timeout` through [`CheckedTimer`]; upgrades (WebSocket and
//! any `Upgrade`) are served, tunnelled by [`crate::forward`].
//!
//! # HTTP/2
//!
//! - At most `max_h2_streams` streams at once per connection (256 by
//!   default; nginx: 128, Go: 250).
//! - Header lists up to `max_request_head`, the same budget as an
//!   HTTP/1.1 request head.
//! - No keep-alive pings: a connection with no open stream for
//!   `header_read_timeout` is closed with GOAWAY by the connection task
//!   instead (see [`StreamCount`]), the same rule HTTP/1.1 keep-alive
//!   connections follow. A dead peer is noticed by TCP like on HTTP/1.1.
//! - hyper runs each stream's request in a task of its own, which the
//!   connection's task does not poll: while streams are open its alarm
//!   ticks every second, and [`Ticked`] has the tick wake the pending ones,
//!   so the request path's checked deadlines (`read_timeout`,
//!   `body_read_timeout`) are seen within a second. An idle HTTP/2
//!   connection has no tick: it wakes only at its idle deadline.
//! - Rapid-reset protection: hyper's defaults (20 pending accept resets,
//!   1024 locally reset streams).
//! - Control-frame floods (PING, SETTINGS, WINDOW_UPDATE, ...): capped at
//!   `max_h2_control_frames` a second by [`super::h2_guard`], under hyper.
//! - Header fields per request: `max_request_headers`, counted by
//!   [`crate::forward`] (the `h2` crate limits the list's size only).
//! - Flow-control windows: hyper's defaults (1 MiB per stream and per
//!   connection).

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::timer::{CheckedTimer, HeadDeadline};
use crate::config::RequestLimits;
use crate::observe::clock;

/// The HTTP/2 connection preface a prior-knowledge client starts with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2.
    Http2,
}

/// hyper's connection builders with ginx's settings, one pair per worker.
#[derive(Clone, Debug)]
pub(crate) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Default for Builders {
    fn default() -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(CheckedTimer::default())
            .keep_alive(true)
            .max_header_size(RequestLimits::MAX_HEAD);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            // Only sleeps that the connection task re-polls are used (no
            // pings are configured); hyper panics without a timer if one is
            // ever needed, so it gets the same checked one as HTTP/1.1.
            .timer(CheckedTimer::default())
            .max_concurrent_streams(RequestLimits::H2_STREAMS)
            .max_header_list_size(RequestLimits::MAX_HEAD as u32)
            .keep_alive_interval(None);
        Builders { http1, http2 }
    }
}

impl Builders {
    /// The HTTP/1.1 builder for one connection, with its header-read
    /// timeout and its listener's limits (fixed for the connection's life).
    pub(crate) fn http1(&self, header_read_timeout: Duration, limits: &RequestLimits) -> http1::Builder {
        let mut http1 = self.http1.clone();
        http1.header_read_timeout(header_read_timeout);
        // hyper's default is the same 100, kept on the stack; any explicit
        // value is a heap allocation per request (hyper measures ~5%), so
        // it is set only when the listener asks for another count.
        if limits.max_headers != RequestLimits::MAX_HEADERS {
            http1.max_headers(limits.max_headers);
        }
        if limits.max_head != RequestLimits::MAX_HEAD {
            http1.max_header_size(limits.max_head);
        }
        http1
    }

    /// The HTTP/2 builder for a connection of a listener with `limits`: the
    /// worker's own, or a copy when the listener changes its stream count
    /// or head size.
    pub(crate) fn http2(&self, limits: &RequestLimits) -> Cow<'_, http2::Builder<TokioExecutor>> {
        if limits.h2_streams == RequestLimits::H2_STREAMS && limits.max_head == RequestLimits::MAX_HEAD {
            return Cow::Borrowed(&self.http2);
        }
        let mut http2 = self.http2.clone();
        http2
            .max_concurrent_streams(limits.h2_streams)
            .max_header_list_size(limits.max_head as u32);
        Cow::Owned(http2)
    }
}

/// Read the start of a plaintext connection until it is known whether it is
/// the HTTP/2 preface: at most 24 bytes, usually one read (an HTTP/1.1
/// request line differs from the preface in its first byte or so).
///
/// # Errors
///
/// Whatever reading fails with; an EOF before a decision is HTTP/1.1 (hyper
/// then sees the EOF itself).
pub(crate) async fn detect<I: AsyncRead + Unpin>(mut io: I) -> io::Result<(Version, Prefixed<I>)> {
    let mut prefix = [0u8; 24];
    let mut filled = 0;
    let version = loop {
        let n = io.read(&mut prefix[filled..]).await?;
        let before = filled;
        filled += n;
        if n == 0 || prefix[before..filled] != H2_PREFACE[before..filled] {
            break Version::Http1;
        }
        if filled == H2_PREFACE.len() {
            break Version::Http2;
        }
    };
    Ok((
        version,
        Prefixed {
            io,
            prefix,
            start: 0,
            end: filled as u8,
        },
    ))
}

/// An IO whose first reads return bytes already read from it (by
/// [`detect`]); a single branch per read afterwards.
#[derive(Debug)]
pub(crate) struct Prefixed<I> {
    io: I,
    prefix: [u8; 24],
    start: u8,
    end: u8,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let pending = &this.prefix[usize::from(this.start)..usize::from(this.end)];
            let n = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..n]);
            this.start += n as u8;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
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

/// An HTTP/1.1 connection's io across the hyper connections that serve it
/// (see [`crate::server::connection`]): it replays the bytes a hyper
/// connection had read but not parsed when it was taken back, and does not
/// shut the io down when hyper finishes because it was taken back.
#[derive(Debug)]
pub(crate) struct Rewind<I> {
    io: I,
    /// Bytes to serve before reading `io` again, from `at`; empty (no
    /// allocation) nearly always.
    replay: Vec<u8>,
    at: usize,
    cycle: Arc<HeadDeadline>,
}

impl<I> Rewind<I> {
    /// `io`, whose hyper connections note their request cycle in `cycle`.
    pub(crate) fn new(io: I, cycle: Arc<HeadDeadline>) -> Self {
        Rewind {
            io,
            replay: Vec::new(),
            at: 0,
            cycle,
        }
    }

    /// Serve `read` (what hyper had read and not parsed) before anything
    /// else. Copied: the bytes come from hyper's read buffer, whose whole
    /// block would otherwise stay allocated.
    pub(crate) fn rewind(&mut self, read: &[u8]) {
        if read.is_empty() {
            return;
        }
        let mut replay = Vec::with_capacity(read.len() + self.replay.len() - self.at);
        replay.extend_from_slice(read);
        replay.extend_from_slice(&self.replay[self.at..]);
        self.replay = replay;
        self.at = 0;
    }

    /// Whether bytes are waiting to be replayed.
    pub(crate) fn has_replay(&self) -> bool {
        self.at < self.replay.len()
    }
}

impl<I: AsyncRead + Unpin> Rewind<I> {
    /// Wait for the client's next byte and keep it for the next read:
    /// whether one came (`false`: EOF).
    ///
    /// # Errors
    ///
    /// Whatever reading fails with.
    pub(crate) async fn next_byte(&mut self) -> io::Result<bool> {
        let mut byte = [0u8; 1];
        let n = self.io.read(&mut byte).await?;
        self.rewind(&byte[..n]);
        Ok(n == 1)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.replay.len() {
            let pending = &this.replay[this.at..];
            let n = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..n]);
            this.at += n;
            if this.at == this.replay.len() {
                this.replay = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// hyper shuts its io down when it finishes, after flushing what it
    /// buffered; when it finishes to hand the socket back, the socket stays
    /// open.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cycle.releasing() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// A hyper server connection that can be asked to finish gracefully.
pub(crate) trait Graceful: std::future::Future<Output = hyper::Result<()>> {
    /// Stop taking requests; finish those in flight.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// The open streams of one HTTP/2 connection and since when it has had
/// none, so the connection task can close it when idle. Shared with the
/// stream tasks, hence atomics (they all run on the same worker thread).
#[derive(Debug)]
pub(crate) struct StreamCount {
    open: AtomicUsize,
    /// When the last stream ended (or the connection began), in
    /// [`clock::millis`].
    idle_since: AtomicU64,
    /// How many times [`StreamCount::wake_pending`] ran.
    ticks: AtomicU64,
    /// The pending requests that asked to be woken by the next tick, by
    /// [`Ticked`] id. A request that ends takes its waker out at once: a
    /// waker keeps its task's allocation (the size of the whole request
    /// future) alive, and at tens of thousands of streams a second a
    /// second's worth of finished tasks was hundreds of MiB.
    pending: Mutex<HashMap<u64, Waker>>,
    /// The id of the next [`Ticked`].
    next_id: AtomicU64,
}

impl Default for StreamCount {
    fn default() -> Self {
        StreamCount {
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(clock::millis()),
            ticks: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

impl StreamCount {
    /// Count a stream as open until the guard drops.
    pub(crate) fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenStream(self.clone())
    }

    /// Whether a stream is open.
    pub(crate) fn busy(&self) -> bool {
        self.open.load(Ordering::Relaxed) != 0
    }

    /// How long the connection has had no open stream (zero while it has).
    pub(crate) fn idle_for(&self) -> Duration {
        if self.busy() {
            return Duration::ZERO;
        }
        let since = self.idle_since.load(Ordering::Relaxed);
        Duration::from_millis(clock::millis().saturating_sub(since))
    }

    /// When the connection will have been idle for `timeout`, in
    /// [`clock::millis`]; `None` while a stream is open.
    pub(crate) fn idle_deadline(&self, timeout: Duration) -> Option<u64> {
        if self.busy() {
            return None;
        }
        let since = self.idle_since.load(Ordering::Relaxed);
        Some(since.saturating_add(timeout.as_millis() as u64))
    }

    /// The connection's tick: wake every request that is still pending, so
    /// that it checks its deadlines.
    pub(crate) fn wake_pending(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        let pending = std::mem::take(&mut *self.pending());
        pending.into_values().for_each(Waker::wake);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waker>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pin_project_lite::pin_project! {
    /// A stream's request future that the connection's tick wakes while it
    /// is pending (at most one registration per tick: a lock a second per
    /// pending request, and one more when it ends; none for one that
    /// completes at its first poll).
    pub(crate) struct Ticked<F> {
        #[pin]
        inner: F,
        streams: Arc<StreamCount>,
        // Its key in `streams.pending`.
        id: u64,
        // The tick it last registered for; `u64::MAX` for none.
        registered: u64,
    }

    impl<F> PinnedDrop for Ticked<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.registered != u64::MAX {
                this.streams.pending().remove(this.id);
            }
        }
    }
}

impl<F> Ticked<F> {
    /// `inner`, woken by `streams`' connection tick.
    pub(crate) fn new(inner: F, streams: Arc<StreamCount>) -> Self {
        let id = streams.next_id.fetch_add(1, Ordering::Relaxed);
        Ticked {
            inner,
            streams,
            id,
            registered: u64::MAX,
        }
    }
}

impl<F: Future> Future for Ticked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let polled = this.inner.poll(cx);
        if polled.is_pending() {
            let tick = this.streams.ticks.load(Ordering::Relaxed);
            if *this.registered != tick {
                *this.registered = tick;
                this.streams.pending().insert(*this.id, cx.waker().clone());
            }
        }
        polled
    }
}

/// An HTTP/2 response body that keeps its stream counted as open until it
/// is dropped; HTTP/1.1 bodies are not wrapped.
#[derive(Debug)]
pub(crate) struct StreamBody<B> {
    inner: B,
    _open: OpenStream,
}

impl<B> StreamBody<B> {
    /// `inner`, counted open as `open` until dropped.
    pub(crate) fn new(inner: B, open: OpenStream) -> Self {
        StreamBody { inner, _open: open }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for StreamBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One open HTTP/2 stream; dropped with the response body.
#[derive(Debug)]
pub(crate) struct OpenStream(Arc<StreamCount>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let count = &self.0;
        count.idle_since.store(clock::millis(), Ordering::Relaxed);
        count.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn detects_the_preface_and_replays_it() {
        let (version, mut io) = detect(&H2_PREFACE[..]).await.unwrap();
        assert_eq!(version, Version::Http2);
        let mut replayed = Vec::new();
        io.read_to_end(&mut replayed).await.unwrap();
        assert_eq!(replayed, H2_PREFACE);

        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (version, mut io) = detect(&request[..]).await.unwrap();
        assert_eq!(version, Version::Http1);
        let mut replayed = Vec::new();
        io.read_to_end(&mut replayed).await.unwrap();
        assert_eq!(replayed, request);

        let (version, _) = detect(&b"PRI * HT"[..]).await.unwrap();
        assert_eq!(version, Version::Http1, "EOF inside the preface");
    }

    #[test]
    fn streams_and_idleness() {
        let count = Arc::new(StreamCount::default());
        let stream = count.open();
        assert_eq!(count.idle_for(), Duration::ZERO);
        drop(stream);
        std::thread::sleep(Duration::from_millis(5));
        assert!(count.idle_for() >= Duration::from_millis(5));
    }
}
