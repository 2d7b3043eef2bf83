//! The routing snapshot: everything a request needs, immutable once built.
//!
//! A [`RoutingTable`] is built from a validated [`Config`] and the
//! [`Prepared`] rustls configurations, infallibly: every check happened in
//! [`crate::config`], everything else that can fail in [`prepare()`]. It is
//! published whole through [`Live`]. A request loads the current table once,
//! routes with it ([`route`]), clones the `Arc<UpstreamPool>` it needs and
//! lets the table go, so a reload never waits for requests and requests
//! never see half a configuration.
//!
//! What must outlive a snapshot (each server's connections and failure
//! state, each upstream's round-robin position, the counters) is not owned
//! by the table but shared with it: [`RoutingTable::build`] looks it up in
//! the previous table by identity and carries it over ([`carry`]).

pub(crate) mod access;
mod carry;
mod prepare;
mod route;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub(crate) use prepare::{prepare, Prepared};
pub(crate) use route::{strip_port, Router, Target};

use crate::config::Config;
use crate::dns::Resolved;
use crate::observe::access_log::AccessLogger;
use crate::observe::metrics::{ListenerStats, RouteStats};
use crate::upstream::{BodyLimits, UpstreamPool};

/// The swappable handle to the current table.
pub(crate) type Live = Arc<ArcSwap<RoutingTable>>;

/// One generation of the routing configuration.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    /// 1 at start, +1 for every applied reload.
    pub(crate) generation: u64,
    /// Where to log one line per request, if anywhere. Opened by the
    /// control plane before the build (opening can fail; building cannot).
    pub(crate) access_log: Option<AccessLogger>,
    /// How long a stopping connection may take to finish.
    pub(crate) shutdown_timeout: std::time::Duration,
    /// How long to keep serving after SIGTERM before draining.
    pub(crate) shutdown_delay: std::time::Duration,
    /// How long a client may take to send a request head (and stay idle).
    pub(crate) header_read_timeout: std::time::Duration,
    /// How long a client may leave a response unread.
    pub(crate) send_timeout: std::time::Duration,
    /// How slow a client's request body may be.
    pub(crate) client_body: BodyLimits,
    /// `[global] max_connections`; `None`: derived by [`crate::server`]
    /// from the open-files limit.
    pub(crate) max_connections: Option<u32>,
    /// `[admin]`'s `allow` / `deny`, if any.
    pub(crate) admin_access: Option<Arc<access::Access>>,
    listeners: HashMap<Arc<str>, Router>,
    upstreams: HashMap<Arc<str>, Arc<UpstreamPool>>,
    /// The counters of every route, for the scrape and the next snapshot.
    route_stats: Vec<Arc<RouteStats>>,
    /// The rustls configurations this table was built with, for the next
    /// [`prepare()`] to reuse and a DNS-only rebuild to build with.
    prepared: Prepared,
}

impl RoutingTable {
    /// Build generation `generation` of the table from `config`, with the
    /// rustls configurations [`prepare()`] made of this same `config`, its
    /// `access_log` (opened) and its host names `resolved`, taking over
    /// server and pool state from `previous`.
    pub(crate) fn build(
        config: &Config,
        prepared: Prepared,
        access_log: Option<AccessLogger>,
        resolved: &Resolved,
        previous: Option<&RoutingTable>,
        generation: u64,
    ) -> Self {
        let upstreams: HashMap<Arc<str>, Arc<UpstreamPool>> = config
            .upstreams
            .values()
            .map(|upstream| {
                let pool = carry::build_pool(upstream, &prepared, resolved, previous);
                (pool.name.clone(), Arc::new(pool))
            })
            .collect();
        let mut stats = carry::StatsCarrier::new(previous);
        let listeners = config
            .listeners
            .values()
            .map(|l| {
                let tls = prepared.server_config(&l.name).cloned();
                let router = route::build_router(l, &upstreams, &mut stats, tls);
                (l.name.as_str().into(), router)
            })
            .collect();
        RoutingTable {
            generation,
            access_log,
            shutdown_timeout: config.global.shutdown_timeout,
            shutdown_delay: config.global.shutdown_delay,
            header_read_timeout: config.global.header_read_timeout,
            send_timeout: config.global.send_timeout,
            client_body: BodyLimits {
                timeout: config.global.body_read_timeout,
                min_rate: config.global.min_upload_rate,
                // Per route: set by each request from its target.
                max_size: None,
            },
            max_connections: config.global.max_connections,
            admin_access: config
                .admin
                .as_ref()
                .and_then(|a| access::Access::of([&a.access])),
            listeners,
            upstreams,
            route_stats: stats.routes,
            prepared,
        }
    }

    /// A table that routes nothing, until the first configuration is built.
    pub(crate) fn empty() -> Self {
        RoutingTable {
            generation: 0,
            access_log: None,
            shutdown_timeout: std::time::Duration::ZERO,
            shutdown_delay: std::time::Duration::ZERO,
            header_read_timeout: std::time::Duration::ZERO,
            send_timeout: std::time::Duration::ZERO,
            client_body: BodyLimits {
                timeout: std::time::Duration::ZERO,
                min_rate: None,
                max_size: None,
            },
            max_connections: None,
            admin_access: None,
            listeners: HashMap::new(),
            upstreams: HashMap::new(),
            route_stats: Vec::new(),
            prepared: Prepared::default(),
        }
    }

    /// The rustls configurations the table was built with.
    pub(crate) fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// The counters of every route.
    pub(crate) fn route_stats(&self) -> impl Iterator<Item = &Arc<RouteStats>> {
        self.route_stats.iter()
    }

    /// The counters of every listener, by name.
    pub(crate) fn listener_stats(&self) -> impl Iterator<Item = (&str, &Arc<ListenerStats>)> {
        self.listeners
            .iter()
            .map(|(name, router)| (&**name, &router.stats))
    }

    /// The router of a listener, by name.
    pub(crate) fn router(&self, listener: &str) -> Option<&Router> {
        self.listeners.get(listener)
    }

    /// An upstream pool by name.
    pub(crate) fn upstream(&self, name: &str) -> Option<&Arc<UpstreamPool>> {
        self.upstreams.get(name)
    }

    /// Every upstream pool.
    pub(crate) fn upstreams(&self) -> impl Iterator<Item = &Arc<UpstreamPool>> {
        self.upstreams.values()
    }
}
