//! Metrics: what the data plane counts.
//!
//! This module owns the counters and nothing that reads them out: the
//! Prometheus exposition and `/status` are [`crate::admin`]'s job, and
//! deciding when something counts (a response, an attempt, a byte) is the
//! data plane's. It is a leaf: it knows no routing table, pool or request.
//!
//! The request path pays for metrics with relaxed atomic adds on objects it
//! already holds, never with a lock or a label lookup: every counter lives in
//! an object whose labels were fixed when the routing snapshot was built
//! ([`RouteStats`] in each route's target, [`ListenerStats`] in each router,
//! [`ServerStats`] in each server's state). Like server state, these objects
//! are carried from one snapshot to the next by identity, so a reload never
//! resets a counter. A client socket's bytes are counted by wrapping it in
//! [`CountingIo`].
//!
//! Gauges that are state rather than counts (health, in-flight requests) are
//! not kept twice: the scrape reads them from the objects that own them.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Upper bounds (seconds) of the request duration histogram's buckets: from
/// a fast cache hit to a slow report, as most HTTP dashboards expect.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations made of atomics (prometheus-client's own takes a
/// lock per observation).
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket, not cumulative; the last is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Count one observation.
    pub(crate) fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            duration.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Sum in seconds, count, and `(le, count)` per bucket (not cumulative:
    /// the encoder accumulates) ending with `+Inf`.
    pub(crate) fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
            .iter()
            .copied()
            // prometheus-client writes `+Inf` for f64::MAX (and `inf`, which
            // Prometheus rejects, for infinity).
            .chain(std::iter::once(f64::MAX))
            .zip(&self.buckets)
            .map(|(le, n)| (le, n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, buckets)
    }
}

/// Requests of one route: `(listener, route, upstream)` are its labels.
#[derive(Debug)]
pub(crate) struct RouteStats {
    /// The listener's name.
    pub(crate) listener: Arc<str>,
    /// The route as written (`host/path`, `*` for a catch-all route,
    /// `default` for the listener's default upstream, `none` for requests no
    /// route matched).
    pub(crate) route: Arc<str>,
    /// The upstream it proxies to; empty for `respond` routes.
    pub(crate) upstream: Arc<str>,
    /// Responses by status class, 1xx to 5xx.
    pub(crate) responses: [AtomicU64; 5],
    pub(crate) duration: Histogram,
}

impl RouteStats {
    /// Zeroed counters for these labels.
    pub(crate) fn new(listener: &str, route: &str, upstream: &str) -> Self {
        RouteStats {
            listener: listener.into(),
            route: route.into(),
            upstream: upstream.into(),
            responses: Default::default(),
            duration: Histogram::default(),
        }
    }

    /// A response with `status` was sent (counted when its head is ready).
    pub(crate) fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// A response ended, `duration` after its request arrived.
    pub(crate) fn observe(&self, duration: Duration) {
        self.duration.observe(duration);
    }
}

/// Connections and bytes of one listener.
#[derive(Debug, Default)]
pub(crate) struct ListenerStats {
    pub(crate) open: AtomicI64,
    pub(crate) accepted: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,

    // Connection limits (issue 11).
    /// Times an accept loop stopped accepting because this listener's
    /// `max_connections` were open (one per wait, not per connection held
    /// back: the kernel's backlog holds those).
    pub(crate) paused_at_listener_limit: AtomicU64,
    /// The same, at `[global] max_connections`.
    pub(crate) paused_at_global_limit: AtomicU64,
    /// Connections closed right after accept: their address already had
    /// `max_connections_per_ip` open.
    pub(crate) rejected_per_ip: AtomicU64,
    /// Connections closed (or sent GOAWAY) after their
    /// `max_requests_per_connection`-th request.
    pub(crate) closed_at_max_requests: AtomicU64,
    // Request limits.
    /// Requests refused for the size of their body (`max_request_body`).
    pub(crate) too_large: AtomicU64,
    /// HTTP/2 connections closed for a control-frame flood.
    pub(crate) h2_floods: AtomicU64,
}

impl ListenerStats {
    /// Count a new client connection as open until the guard drops.
    pub(crate) fn open(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }
}

impl ListenerStats {
    /// A request was refused for its body's size.
    pub(crate) fn count_too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// An HTTP/2 connection was closed for a control-frame flood.
    pub(crate) fn count_h2_flood(&self) {
        self.h2_floods.fetch_add(1, Ordering::Relaxed);
    }
}

/// An open client connection; dropping it closes it in the count.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<ListenerStats>);

impl OpenConnection {
    /// The counters of the listener that accepted the connection.
    pub(crate) fn stats(&self) -> &ListenerStats {
        &self.0
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection's socket, counting the bytes that cross it (one
/// atomic add per read or write call, which each are a system call anyway),
/// and noting in `stall` since when a write has waited for the client.
#[derive(Debug)]
pub(crate) struct CountingIo<T> {
    inner: T,
    stats: Arc<ListenerStats>,
    stall: Arc<WriteStall>,
}

impl<T> CountingIo<T> {
    /// Count `inner`'s bytes into `stats`; its blocked writes into `stall`.
    pub(crate) fn new(inner: T, stats: Arc<ListenerStats>, stall: Arc<WriteStall>) -> Self {
        CountingIo { inner, stats, stall }
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) => {
                self.stats.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
                self.stall.wrote();
            }
            Poll::Pending => self.stall.blocked(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

/// Since when a client connection's writes have waited for the client to
/// read: set by its [`CountingIo`], read by the connection's task, which
/// closes a connection stalled longer than `send_timeout` (nginx's
/// `send_timeout`: a client that stops reading must not hold a response,
/// its upstream connection and its buffers forever).
#[derive(Debug, Default)]
pub(crate) struct WriteStall {
    /// [`super::clock::millis`] plus one when the first blocked write
    /// happened; 0 while writes go through.
    since: AtomicU64,
}

impl WriteStall {
    fn now() -> u64 {
        super::clock::millis() + 1
    }

    /// A write went through. Loads first: a flowing connection writes
    /// nothing here.
    fn wrote(&self) {
        if self.since.load(Ordering::Relaxed) != 0 {
            self.since.store(0, Ordering::Relaxed);
        }
    }

    /// A write found the socket full.
    fn blocked(&self) {
        if self.since.load(Ordering::Relaxed) == 0 {
            self.since.store(Self::now(), Ordering::Relaxed);
        }
    }

    /// When writes that keep waiting will have waited `timeout`, in
    /// [`super::clock::millis`]; `None` while they go through.
    pub(crate) fn deadline(&self, timeout: Duration) -> Option<u64> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            since => Some((since - 1).saturating_add(timeout.as_millis() as u64)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.stats.bytes_in.fetch_add(read as u64, Ordering::Relaxed);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How one attempt on an upstream server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response other than 5xx.
    Ok,
    /// A 5xx response.
    Status5xx,
    /// The connection could not be established.
    ConnectError,
    /// Connect or response-header timeout.
    Timeout,
    /// The connection failed before a response header.
    Reset,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Status5xx,
        Outcome::ConnectError,
        Outcome::Timeout,
        Outcome::Reset,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Status5xx => "5xx",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::Reset => "reset",
        }
    }
}

/// Attempts on one upstream server, by outcome.
#[derive(Debug, Default)]
pub(crate) struct ServerStats {
    attempts: [AtomicU64; 5],
}

impl ServerStats {
    /// Count one attempt.
    pub(crate) fn record(&self, outcome: Outcome) {
        self.attempts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts that ended with `outcome`.
    pub(crate) fn attempts(&self, outcome: Outcome) -> u64 {
        self.attempts[outcome as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let (sum, count, buckets) = h.read();
        assert_eq!(count, 3);
        assert!((sum - 100.0035).abs() < 1e-9);
        assert_eq!(buckets[0], (0.001, 1));
        assert_eq!(buckets[1], (0.0025, 0));
        assert_eq!(buckets[2], (0.005, 1));
        assert_eq!(buckets.last().unwrap(), &(f64::MAX, 1));
    }

    #[test]
    fn status_classes() {
        let stats = RouteStats::new("web", "/", "app");
        for status in [101, 200, 204, 302, 404, 503, 599] {
            stats.count(status);
        }
        let n: Vec<u64> = stats
            .responses
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(n, [1, 2, 1, 1, 2]);
    }
}
