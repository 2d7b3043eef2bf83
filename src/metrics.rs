//! Metrics: what the data plane counts, and their Prometheus exposition.
//!
//! The request path pays for metrics with relaxed atomic adds on objects it
//! already holds, never with a lock or a label lookup: every counter lives in
//! an object whose labels were fixed when the routing snapshot was built
//! ([`RouteStats`] in each route's target, [`ListenerStats`] in each router,
//! [`ServerStats`] in each server's state). Like server state, these objects
//! are carried from one snapshot to the next by identity, so a reload never
//! resets a counter.
//!
//! Gauges that are state rather than counts (health, in-flight requests) are
//! not kept twice: the scrape reads them from the objects that own them.
//! Everything here is read only by [`encode`], which walks one snapshot.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::table::RoutingTable;

/// Upper bounds (seconds) of the request duration histogram's buckets: from
/// a fast cache hit to a slow report, as most HTTP dashboards expect.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations made of atomics (prometheus-client's own takes a
/// lock per observation).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Count one observation.
    pub fn observe(&self, duration: Duration) {
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
    fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
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
pub struct RouteStats {
    /// The listener's name.
    pub listener: Arc<str>,
    /// The route as written (`host/path`, `*` for a catch-all route,
    /// `default` for the listener's default upstream, `none` for requests no
    /// route matched).
    pub route: Arc<str>,
    /// The upstream it proxies to; empty for `respond` routes.
    pub upstream: Arc<str>,
    /// Responses by status class, 1xx to 5xx.
    responses: [AtomicU64; 5],
    duration: Histogram,
}

impl RouteStats {
    /// Zeroed counters for these labels.
    pub fn new(listener: &str, route: &str, upstream: &str) -> Self {
        RouteStats {
            listener: listener.into(),
            route: route.into(),
            upstream: upstream.into(),
            responses: Default::default(),
            duration: Histogram::default(),
        }
    }

    /// A response with `status` was sent (counted when its head is ready).
    pub fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// A response ended, `duration` after its request arrived.
    pub fn observe(&self, duration: Duration) {
        self.duration.observe(duration);
    }

    /// Whether these counters may be carried to a route with these labels.
    pub fn is(&self, listener: &str, route: &str, upstream: &str) -> bool {
        &*self.listener == listener && &*self.route == route && &*self.upstream == upstream
    }
}

/// Connections and bytes of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    open: AtomicI64,
    accepted: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl ListenerStats {
    /// Count a new client connection as open until the guard drops.
    pub fn open(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }
}

/// An open client connection; dropping it closes it in the count.
#[derive(Debug)]
pub struct OpenConnection(Arc<ListenerStats>);

impl OpenConnection {
    /// The connection's listener counters.
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.0
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection's socket, counting the bytes that cross it (one
/// atomic add per read or write call, which each are a system call anyway).
#[derive(Debug)]
pub struct CountingIo<T> {
    inner: T,
    stats: Arc<ListenerStats>,
}

impl<T> CountingIo<T> {
    /// Count `inner`'s bytes into `stats`.
    pub fn new(inner: T, stats: Arc<ListenerStats>) -> Self {
        CountingIo { inner, stats }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &T {
        &self.inner
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
        if let Poll::Ready(Ok(n)) = result {
            this.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            this.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
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
pub enum Outcome {
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
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Status5xx,
        Outcome::ConnectError,
        Outcome::Timeout,
        Outcome::Reset,
    ];

    fn label(self) -> &'static str {
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
pub struct ServerStats {
    attempts: [AtomicU64; 5],
}

impl ServerStats {
    /// Count one attempt.
    pub fn record(&self, outcome: Outcome) {
        self.attempts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts that ended with `outcome`.
    pub fn attempts(&self, outcome: Outcome) -> u64 {
        self.attempts[outcome as usize].load(Ordering::Relaxed)
    }
}

/// What the control plane knows that the snapshot does not.
#[derive(Debug, Clone, Default)]
pub struct ControlFacts {
    /// Reloads applied.
    pub reloads_applied: u64,
    /// Reloads rejected (invalid configuration or a failed bind).
    pub reloads_rejected: u64,
    /// Unix time of the last applied configuration (the start counts).
    pub last_applied_unix: f64,
}

/// The Prometheus text exposition (OpenMetrics) of `table` and `control`.
pub fn encode(table: Arc<RoutingTable>, control: ControlFacts) -> String {
    let mut registry = Registry::with_prefix("ginx");
    registry.register_collector(Box::new(Scrape { table, control }));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// One scrape: the snapshot it reads.
#[derive(Debug)]
struct Scrape {
    table: Arc<RoutingTable>,
    control: ControlFacts,
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A metric read from one object: name, help, type and how to read it.
type ReadMetric<T> = (&'static str, &'static str, MetricType, fn(&T) -> i64);

/// The label set of exemplars, which ginx does not use.
type NoLabels = prometheus_client::encoding::NoLabelSet;

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let table = &*self.table;
        let routes: Vec<&Arc<RouteStats>> = table.route_stats().collect();

        let mut family = encoder.encode_descriptor(
            "http_requests",
            "Responses sent, by listener, route, upstream and status class.",
            None,
            MetricType::Counter,
        )?;
        for stats in &routes {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let labels: Labels<'_> = vec![
                    ("listener", &stats.listener),
                    ("route", &stats.route),
                    ("upstream", &stats.upstream),
                    ("class", class),
                ];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabels, _, f64>(&stats.responses[i].load(Ordering::Relaxed), None)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "http_request_duration_seconds",
            "Time from a request's arrival to the end of its response body.",
            None,
            MetricType::Histogram,
        )?;
        for stats in &routes {
            let labels: Labels<'_> = vec![("listener", &stats.listener), ("route", &stats.route)];
            let (sum, count, buckets) = stats.duration.read();
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabels>(sum, count, &buckets, None)?;
        }

        let listeners: Vec<(&str, &Arc<ListenerStats>)> = table.listener_stats().collect();
        let gauges: [ReadMetric<ListenerStats>; 4] = [
            (
                "client_connections_open",
                "Client connections open now.",
                MetricType::Gauge,
                |s| s.open.load(Ordering::Relaxed),
            ),
            (
                "client_connections",
                "Client connections accepted.",
                MetricType::Counter,
                |s| s.accepted.load(Ordering::Relaxed) as i64,
            ),
            (
                "client_received_bytes",
                "Bytes received from clients.",
                MetricType::Counter,
                |s| s.bytes_in.load(Ordering::Relaxed) as i64,
            ),
            (
                "client_sent_bytes",
                "Bytes sent to clients.",
                MetricType::Counter,
                |s| s.bytes_out.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, help, kind, read) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (listener, stats) in &listeners {
                let labels: Labels<'_> = vec![("listener", listener)];
                let mut metric = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => {
                        metric.encode_counter::<NoLabels, _, f64>(&(read(stats) as u64), None)?
                    }
                    _ => metric.encode_gauge(&read(stats))?,
                }
            }
        }

        let servers: Vec<(&str, &Arc<crate::upstream::ServerState>)> = table
            .upstreams()
            .flat_map(|pool| pool.servers().map(move |s| (&*pool.name, s)))
            .collect();
        let mut family = encoder.encode_descriptor(
            "upstream_attempts",
            "Attempts on upstream servers, by outcome (ok, 5xx, connect_error, timeout, reset).",
            None,
            MetricType::Counter,
        )?;
        for (upstream, server) in &servers {
            for outcome in Outcome::ALL {
                let labels: Labels<'_> = vec![
                    ("upstream", upstream),
                    ("server", &server.name),
                    ("outcome", outcome.label()),
                ];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabels, _, f64>(&server.stats.attempts(outcome), None)?;
            }
        }
        let server_gauges: [ReadMetric<crate::upstream::ServerState>; 3] = [
            (
                "upstream_server_up",
                "1 when the server takes requests (health checks and passive health agree), else 0.",
                MetricType::Gauge,
                |s| i64::from(s.is_available()),
            ),
            (
                "upstream_server_health_check_up",
                "What active health checks say (1 without checks).",
                MetricType::Gauge,
                |s| i64::from(s.is_up()),
            ),
            (
                "upstream_server_in_flight",
                "Requests sent to the server and not yet answered in full.",
                MetricType::Gauge,
                |s| s.in_flight() as i64,
            ),
        ];
        for (name, help, _, read) in server_gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (upstream, server) in &servers {
                let labels: Labels<'_> = vec![("upstream", upstream), ("server", &server.name)];
                family.encode_family(&labels)?.encode_gauge(&read(server))?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "upstream_retries",
            "Attempts made after a first one failed, by upstream.",
            None,
            MetricType::Counter,
        )?;
        for pool in table.upstreams() {
            let labels: Labels<'_> = vec![("upstream", &pool.name)];
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabels, _, f64>(&pool.state().retries(), None)?;
        }

        let control = &self.control;
        encoder
            .encode_descriptor(
                "config_generation",
                "Generation of the configuration being served (1 at start, +1 per applied reload).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(table.generation as i64))?;
        let mut family = encoder.encode_descriptor(
            "config_reloads",
            "Reload attempts that found a change, by result (applied, rejected).",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("applied", control.reloads_applied),
            ("rejected", control.reloads_rejected),
        ] {
            family
                .encode_family(&vec![("result", result)])?
                .encode_counter::<NoLabels, _, f64>(&n, None)?;
        }
        encoder
            .encode_descriptor(
                "config_last_applied_timestamp_seconds",
                "Unix time at which the configuration being served was applied.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&control.last_applied_unix)?;
        encoder
            .encode_descriptor(
                "access_log_dropped_lines",
                "Access log lines dropped because the writer fell behind (by the current log).",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabels, _, f64>(
                &table.access_log.as_ref().map_or(0, |log| log.dropped()),
                None,
            )?;
        let info: Labels<'_> = vec![("version", env!("CARGO_PKG_VERSION"))];
        prometheus_client::metrics::info::Info::new(info).encode(encoder.encode_descriptor(
            "build",
            "The running ginx.",
            None,
            MetricType::Info,
        )?)?;
        Ok(())
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
