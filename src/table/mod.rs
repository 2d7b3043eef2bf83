//! The routing snapshot: everything a request needs, immutable once built.
//!
//! A [`RoutingTable`] is built from a validated [`Config`] (infallibly: every
//! check happened in [`crate::config`]) and published whole through [`Live`].
//! A request loads the current table once, routes with it, clones the
//! `Arc<UpstreamPool>` it needs and lets the table go, so a reload never
//! waits for requests and requests never see half a configuration.
//!
//! What must outlive a snapshot (each server's connections and failure
//! state, each upstream's round-robin position) is not owned by the table but
//! shared with it: [`RoutingTable::build`] looks it up in the previous table
//! by identity and carries it over.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::StatusCode;

use crate::balance::{Ketama, LeastConn, Policy, Random, RoundRobin};
use crate::config::{self, Balance, Config, HostPattern, RouteAction};
use crate::dns::Resolved;
use crate::observe::access_log::AccessLogger;
use crate::observe::metrics::{ListenerStats, RouteStats};
use crate::upstream::{PoolState, ServerState, Tier, UpstreamPool};

/// The swappable handle to the current table.
pub(crate) type Live = Arc<ArcSwap<RoutingTable>>;

/// One generation of the routing configuration.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    /// 1 at start, +1 for every applied reload.
    pub(crate) generation: u64,
    /// Where to log one line per request, if anywhere. Opened by the
    /// control plane (opening can fail; building cannot), set after build.
    pub(crate) access_log: Option<AccessLogger>,
    /// How long a stopping connection may take to finish.
    pub(crate) shutdown_timeout: std::time::Duration,
    /// How long to keep serving after SIGTERM before draining.
    pub(crate) shutdown_delay: std::time::Duration,
    /// How long a client may take to send a request head (and stay idle).
    pub(crate) header_read_timeout: std::time::Duration,
    listeners: HashMap<Arc<str>, Router>,
    upstreams: HashMap<Arc<str>, Arc<UpstreamPool>>,
    /// The counters of every route, for the scrape and the next snapshot.
    route_stats: Vec<Arc<RouteStats>>,
}

/// What a matching route does.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Forward to a pool; `strip` is the length of the prefix to remove from
    /// the path, if the route strips it.
    Proxy {
        /// The pool to forward to.
        pool: Arc<UpstreamPool>,
        /// Bytes to strip from the front of the path.
        strip: Option<usize>,
        /// The route's counters.
        stats: Arc<RouteStats>,
    },
    /// Answer directly.
    Respond {
        /// Response status.
        status: StatusCode,
        /// Response body.
        body: Bytes,
        /// `Location` template (`{host}`, `{uri}`), if any.
        location: Option<Arc<str>>,
        /// The route's counters.
        stats: Arc<RouteStats>,
    },
}

/// The routes of one listener.
///
/// Matching: the most specific host group first (an exact host, then
/// wildcards from the longest suffix down, then routes without a host);
/// within a group the longest matching path prefix wins (file order breaks
/// ties). A group with no matching path falls through to the next, and when
/// nothing matches, the listener's default upstream takes the request.
#[derive(Debug)]
pub(crate) struct Router {
    exact: HashMap<Box<str>, PathRoutes>,
    /// Sorted by suffix length, longest first.
    wildcard: Vec<(Box<str>, PathRoutes)>,
    any_host: PathRoutes,
    default: Option<Target>,
    /// Connections and bytes of the listener.
    pub(crate) stats: Arc<ListenerStats>,
    /// Counters of requests no route matched (answered 404).
    pub(crate) unmatched: Arc<RouteStats>,
    /// `Some` on a TLS listener: the rustls configuration new handshakes
    /// use (so a reload with new certificates applies to new connections
    /// only), or why it could not be built, in which case the listener
    /// refuses connections rather than serve them in the clear.
    pub(crate) tls: Option<Result<Arc<rustls::ServerConfig>, String>>,
}

/// Routes of one host group, longest prefix first.
#[derive(Debug, Default)]
struct PathRoutes(Vec<(Box<str>, Target)>);

impl PathRoutes {
    fn matching(&self, path: &str) -> Option<&Target> {
        self.0
            .iter()
            .find(|(prefix, _)| path.starts_with(&**prefix))
            .map(|(_, target)| target)
    }
}

impl Router {
    /// The target for a request to `host` (as sent: any case, maybe with a
    /// port) and `path`.
    pub(crate) fn route(&self, host: Option<&str>, path: &str) -> Option<&Target> {
        if let Some(host) = host.map(normalize_host) {
            if let Some(target) = self.exact.get(&*host).and_then(|r| r.matching(path)) {
                return Some(target);
            }
            for (suffix, routes) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(&**suffix) {
                    if let Some(target) = routes.matching(path) {
                        return Some(target);
                    }
                }
            }
        }
        self.any_host.matching(path).or(self.default.as_ref())
    }
}

/// Lowercase, without a port; borrows unless the host has capitals.
fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = strip_port(host);
    if without_port.bytes().any(|b| b.is_ascii_uppercase()) {
        without_port.to_ascii_lowercase().into()
    } else {
        without_port.into()
    }
}

/// A `Host` value without its port: `[::1]:8080` or `example.com:8080`,
/// but not a bare `[::1]`.
pub(crate) fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

impl RoutingTable {
    /// Build generation `generation` of the table from `config` (with its
    /// host names `resolved`), taking over server and pool state from
    /// `previous`.
    pub(crate) fn build(
        config: &Config,
        resolved: &Resolved,
        previous: Option<&RoutingTable>,
        generation: u64,
    ) -> Self {
        let upstreams: HashMap<Arc<str>, Arc<UpstreamPool>> = config
            .upstreams
            .values()
            .map(|upstream| {
                let pool = build_pool(upstream, resolved, previous);
                (pool.name.clone(), Arc::new(pool))
            })
            .collect();
        let mut stats = StatsCarrier::new(previous);
        let listeners = config
            .listeners
            .values()
            .map(|l| (l.name.as_str().into(), build_router(l, &upstreams, &mut stats)))
            .collect();
        RoutingTable {
            generation,
            access_log: None,
            shutdown_timeout: config.global.shutdown_timeout,
            shutdown_delay: config.global.shutdown_delay,
            header_read_timeout: config.global.header_read_timeout,
            listeners,
            upstreams,
            route_stats: stats.routes,
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
            listeners: HashMap::new(),
            upstreams: HashMap::new(),
            route_stats: Vec::new(),
        }
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

/// One member of a pool: a server entry, or one address of a host name.
struct Member {
    name: String,
    addr: std::net::SocketAddr,
    weight: u32,
    backup: bool,
    /// Written `https://`.
    tls: bool,
}

fn build_pool(
    upstream: &config::Upstream,
    resolved: &Resolved,
    previous: Option<&RoutingTable>,
) -> UpstreamPool {
    let name: Arc<str> = upstream.name.as_str().into();
    let previous_pool = previous.and_then(|p| p.upstreams.get(&name));
    let state = previous_pool.map(|pool| pool.state().clone()).unwrap_or_default();
    let mut members: Vec<Member> = Vec::new();
    for spec in &upstream.servers {
        for addr in resolved.addresses(&spec.endpoint) {
            // State is keyed by address: two entries that resolve to the
            // same one (a name and its IP, two names) are one member, the
            // first listed.
            if members.iter().any(|m| m.addr == addr) {
                continue;
            }
            let name = match spec.endpoint {
                config::Endpoint::Ip(_) => spec.name.clone(),
                config::Endpoint::Dns { .. } => format!("{} ({addr})", spec.name),
            };
            members.push(Member {
                name,
                addr,
                weight: spec.weight,
                backup: spec.backup,
                tls: spec.tls,
            });
        }
    }
    // A new server starts as its health check's `initial_state` says; a
    // known one keeps its state, whatever changed around it, unless how it
    // is reached changed: then its pooled connections are unfit, and it
    // starts over as a new server.
    let initially_up = upstream.health_check.as_ref().is_none_or(|h| h.initial_up);
    let tier = |backup: bool| {
        let members: Vec<&Member> = members.iter().filter(|m| m.backup == backup).collect();
        if members.is_empty() {
            return None;
        }
        let servers = members
            .iter()
            .map(|m| {
                let state = previous_pool
                    .and_then(|pool| {
                        pool.servers()
                            .find(|s| s.addr == m.addr && pool.same_transport(s, upstream, m.tls))
                    })
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ServerState::new(&m.name, m.addr, initially_up)));
                (state, m.weight)
            })
            .collect();
        Some(Tier::new(
            servers,
            build_policy(&upstream.balance, &members, &state),
        ))
    };
    let primaries = tier(false).unwrap_or_else(Tier::empty);
    UpstreamPool::new(name, primaries, tier(true), upstream.clone(), state)
}

fn build_policy(balance: &Balance, members: &[&Member], state: &PoolState) -> Box<dyn Policy> {
    let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
    match balance {
        Balance::RoundRobin => Box::new(RoundRobin::new(&weights, state.cursor.clone())),
        Balance::LeastConn => Box::new(LeastConn::new(&weights, state.cursor.clone())),
        Balance::Random => Box::new(Random::new(&weights)),
        Balance::Hash(_) => {
            let points: Vec<(&str, u32)> = members.iter().map(|m| (m.name.as_str(), m.weight)).collect();
            Box::new(Ketama::new(&points))
        }
    }
}

/// Hands out counters, taking over those of the previous snapshot whose
/// labels are the same.
struct StatsCarrier<'a> {
    previous: Option<&'a RoutingTable>,
    carried: HashMap<(&'a str, &'a str, &'a str), &'a Arc<RouteStats>>,
    routes: Vec<Arc<RouteStats>>,
}

impl<'a> StatsCarrier<'a> {
    fn new(previous: Option<&'a RoutingTable>) -> Self {
        let carried = previous
            .map(|p| {
                p.route_stats
                    .iter()
                    .map(|s| ((&*s.listener, &*s.route, &*s.upstream), s))
                    .collect()
            })
            .unwrap_or_default();
        StatsCarrier {
            previous,
            carried,
            routes: Vec::new(),
        }
    }

    fn route(&mut self, listener: &str, route: &str, upstream: &str) -> Arc<RouteStats> {
        let stats = match self.carried.get(&(listener, route, upstream)) {
            Some(stats) => Arc::clone(stats),
            None => Arc::new(RouteStats::new(listener, route, upstream)),
        };
        self.routes.push(stats.clone());
        stats
    }

    fn listener(&self, name: &str) -> Arc<ListenerStats> {
        self.previous
            .and_then(|p| p.listeners.get(name))
            .map(|router| router.stats.clone())
            .unwrap_or_default()
    }
}

/// A route's `route` label: its host and path as written (`*` for a route
/// that matches everything).
fn route_label(route: &config::Route) -> String {
    let host = match &route.host {
        None => String::new(),
        Some(HostPattern::Exact(host)) => host.clone(),
        Some(HostPattern::Wildcard(suffix)) => format!("*{suffix}"),
    };
    match (host.is_empty(), &route.path) {
        (true, None) => "*".to_owned(),
        (_, path) => format!("{host}{}", path.as_deref().unwrap_or("")),
    }
}

fn build_router(
    listener: &config::Listener,
    upstreams: &HashMap<Arc<str>, Arc<UpstreamPool>>,
    stats: &mut StatsCarrier<'_>,
) -> Router {
    let pool = |name: &str| {
        upstreams
            .get(name)
            .cloned()
            .expect("validated: routes name defined upstreams")
    };
    let name = listener.name.as_str();
    let mut router = Router {
        exact: HashMap::new(),
        wildcard: Vec::new(),
        any_host: PathRoutes::default(),
        default: listener.upstream.as_deref().map(|u| Target::Proxy {
            pool: pool(u),
            strip: None,
            stats: stats.route(name, "default", u),
        }),
        stats: stats.listener(name),
        unmatched: stats.route(name, "none", ""),
        tls: listener.tls.as_ref().map(crate::tls::server_config),
    };
    let mut wildcard: HashMap<Box<str>, PathRoutes> = HashMap::new();
    for route in &listener.routes {
        let prefix: Box<str> = route.path.as_deref().unwrap_or("").into();
        let label = route_label(route);
        let target = match &route.action {
            RouteAction::Proxy {
                upstream,
                strip_prefix,
            } => Target::Proxy {
                pool: pool(upstream),
                strip: strip_prefix.then_some(prefix.len()),
                stats: stats.route(name, &label, upstream),
            },
            RouteAction::Respond {
                status,
                body,
                location,
            } => Target::Respond {
                status: StatusCode::from_u16(*status).expect("validated: status in 200..=599"),
                body: Bytes::from(body.clone()),
                location: location.as_deref().map(Arc::from),
                stats: stats.route(name, &label, ""),
            },
        };
        let group = match &route.host {
            None => &mut router.any_host,
            Some(HostPattern::Exact(host)) => router.exact.entry(host.as_str().into()).or_default(),
            Some(HostPattern::Wildcard(suffix)) => wildcard.entry(suffix.as_str().into()).or_default(),
        };
        group.0.push((prefix, target));
    }
    router.wildcard = wildcard.into_iter().collect();
    router
        .wildcard
        .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    let groups = router
        .exact
        .values_mut()
        .chain(router.wildcard.iter_mut().map(|(_, r)| r))
        .chain(std::iter::once(&mut router.any_host));
    for routes in groups {
        // Stable: among equal prefixes the first defined wins.
        routes
            .0
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com"), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
    }
}
