//! The Prometheus exposition (OpenMetrics text) of one routing snapshot:
//! every counter of [`crate::observe::metrics`], read where it lives, plus
//! the gauges read from the state that owns them (health, in-flight).
//!
//! This module only reads; it owns no counter. A scrape walks the snapshot
//! it was given, so it never sees half of a reload.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::observe::metrics::{ListenerStats, Outcome, RouteStats};
use crate::table::RoutingTable;
use crate::upstream::ServerState;

/// What the control plane knows that the snapshot does not.
#[derive(Debug, Clone, Default)]
pub(super) struct ControlFacts {
    /// Reloads applied.
    pub(crate) reloads_applied: u64,
    /// Reloads rejected (invalid configuration or a failed bind).
    pub(crate) reloads_rejected: u64,
    /// Unix time of the last applied configuration (the start counts).
    pub(crate) last_applied_unix: f64,
}

/// The Prometheus text exposition (OpenMetrics) of `table` and `control`.
pub(super) fn encode(table: Arc<RoutingTable>, control: ControlFacts) -> String {
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

/// A metric family read from one object per series: name, help, type and
/// how to read it.
type ReadMetric<T> = (&'static str, &'static str, MetricType, fn(&T) -> i64);

/// The label set of exemplars, which ginx does not use.
type NoLabels = prometheus_client::encoding::NoLabelSet;

/// Each server of the snapshot, with the name of its upstream.
type Servers<'a> = [(&'a str, &'a Arc<ServerState>)];

/// One function per metric family, in the order of the exposition (which
/// docs/operations.md §5 lists in the same order).
impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let table = &*self.table;
        let routes: Vec<&Arc<RouteStats>> = table.route_stats().collect();
        http_requests(&mut encoder, &routes)?;
        http_request_duration(&mut encoder, &routes)?;
        let listeners: Vec<(&str, &Arc<ListenerStats>)> = table.listener_stats().collect();
        for metric in LISTENER_METRICS {
            listener_metric(&mut encoder, metric, &listeners)?;
        }
        client_connection_limit_pauses(&mut encoder, &listeners)?;
        // Request limits.
        for metric in LIMIT_METRICS {
            listener_metric(&mut encoder, metric, &listeners)?;
        }
        let servers: Vec<(&str, &Arc<ServerState>)> = table
            .upstreams()
            .flat_map(|pool| pool.servers().map(move |s| (&*pool.name, s)))
            .collect();
        upstream_attempts(&mut encoder, &servers)?;
        for gauge in SERVER_GAUGES {
            server_gauge(&mut encoder, gauge, &servers)?;
        }
        upstream_retries(&mut encoder, table)?;
        config_generation(&mut encoder, table)?;
        config_reloads(&mut encoder, &self.control)?;
        config_last_applied(&mut encoder, &self.control)?;
        access_log_dropped_lines(&mut encoder, table)?;
        build_info(encoder)
    }
}

fn http_requests(encoder: &mut DescriptorEncoder<'_>, routes: &[&Arc<RouteStats>]) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(
        "http_requests",
        "Responses sent, by listener, route, upstream and status class.",
        None,
        MetricType::Counter,
    )?;
    for stats in routes {
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
    Ok(())
}

fn http_request_duration(
    encoder: &mut DescriptorEncoder<'_>,
    routes: &[&Arc<RouteStats>],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(
        "http_request_duration_seconds",
        "Time from a request's arrival to the end of its response body.",
        None,
        MetricType::Histogram,
    )?;
    for stats in routes {
        let labels: Labels<'_> = vec![("listener", &stats.listener), ("route", &stats.route)];
        let (sum, count, buckets) = stats.duration.read();
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabels>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// The families read from each listener's counters, one series per
/// listener.
const LISTENER_METRICS: [ReadMetric<ListenerStats>; 6] = [
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
    // Connection limits (issue 11).
    (
        "client_connections_rejected_per_ip",
        "Client connections closed right after accept: their address had max_connections_per_ip open.",
        MetricType::Counter,
        |s| s.rejected_per_ip.load(Ordering::Relaxed) as i64,
    ),
    (
        "client_connections_max_requests",
        "Client connections closed (HTTP/2: sent GOAWAY) after max_requests_per_connection requests.",
        MetricType::Counter,
        |s| s.closed_at_max_requests.load(Ordering::Relaxed) as i64,
    ),
];

/// Times accept loops stopped accepting at a `max_connections` limit, by
/// listener and by which limit (`listener` or `global`).
fn client_connection_limit_pauses(
    encoder: &mut DescriptorEncoder<'_>,
    listeners: &[(&str, &Arc<ListenerStats>)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(
        "client_connection_limit_pauses",
        "Times an accept loop stopped accepting because max_connections were open, by limit (listener, global).",
        None,
        MetricType::Counter,
    )?;
    for (listener, stats) in listeners {
        for (limit, pauses) in [
            ("listener", &stats.paused_at_listener_limit),
            ("global", &stats.paused_at_global_limit),
        ] {
            let labels: Labels<'_> = vec![("listener", listener), ("limit", limit)];
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabels, _, f64>(&pauses.load(Ordering::Relaxed), None)?;
        }
    }
    Ok(())
}

fn listener_metric(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, kind, read): ReadMetric<ListenerStats>,
    listeners: &[(&str, &Arc<ListenerStats>)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (listener, stats) in listeners {
        let labels: Labels<'_> = vec![("listener", listener)];
        let mut metric = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => metric.encode_counter::<NoLabels, _, f64>(&(read(stats) as u64), None)?,
            _ => metric.encode_gauge(&read(stats))?,
        }
    }
    Ok(())
}

// Request limits.

/// What listeners refused for their request limits, one series per listener.
const LIMIT_METRICS: [ReadMetric<ListenerStats>; 2] = [
    (
        "client_requests_too_large",
        "Requests refused with 413 for their body's size (max_request_body).",
        MetricType::Counter,
        |s| s.too_large.load(Ordering::Relaxed) as i64,
    ),
    (
        "client_h2_floods",
        "HTTP/2 connections closed for sending control frames faster than max_h2_control_frames.",
        MetricType::Counter,
        |s| s.h2_floods.load(Ordering::Relaxed) as i64,
    ),
];

fn upstream_attempts(encoder: &mut DescriptorEncoder<'_>, servers: &Servers<'_>) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(
        "upstream_attempts",
        "Attempts on upstream servers, by outcome (ok, 5xx, connect_error, timeout, reset).",
        None,
        MetricType::Counter,
    )?;
    for (upstream, server) in servers {
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
    Ok(())
}

/// The gauges read from each server's state, one series per server.
const SERVER_GAUGES: [ReadMetric<ServerState>; 3] = [
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

fn server_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, kind, read): ReadMetric<ServerState>,
    servers: &Servers<'_>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (upstream, server) in servers {
        let labels: Labels<'_> = vec![("upstream", upstream), ("server", &server.name)];
        family.encode_family(&labels)?.encode_gauge(&read(server))?;
    }
    Ok(())
}

fn upstream_retries(encoder: &mut DescriptorEncoder<'_>, table: &RoutingTable) -> std::fmt::Result {
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
    Ok(())
}

fn config_generation(encoder: &mut DescriptorEncoder<'_>, table: &RoutingTable) -> std::fmt::Result {
    encoder
        .encode_descriptor(
            "config_generation",
            "Generation of the configuration being served (1 at start, +1 per applied reload).",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(table.generation as i64))
}

fn config_reloads(encoder: &mut DescriptorEncoder<'_>, control: &ControlFacts) -> std::fmt::Result {
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
    Ok(())
}

fn config_last_applied(encoder: &mut DescriptorEncoder<'_>, control: &ControlFacts) -> std::fmt::Result {
    encoder
        .encode_descriptor(
            "config_last_applied_timestamp_seconds",
            "Unix time at which the configuration being served was applied.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&control.last_applied_unix)
}

fn access_log_dropped_lines(encoder: &mut DescriptorEncoder<'_>, table: &RoutingTable) -> std::fmt::Result {
    encoder
        .encode_descriptor(
            "access_log_dropped_lines",
            "Access log lines dropped because the writer fell behind (by the current log).",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabels, _, f64>(&table.access_log.as_ref().map_or(0, |log| log.dropped()), None)
}

fn build_info(mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
    let info: Labels<'_> = vec![("version", env!("CARGO_PKG_VERSION"))];
    prometheus_client::metrics::info::Info::new(info).encode(encoder.encode_descriptor(
        "build",
        "The running ginx.",
        None,
        MetricType::Info,
    )?)
}
