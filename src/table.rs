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
use crate::upstream::{PoolState, ServerState, Tier, UpstreamPool};

/// The swappable handle to the current table.
pub type Live = Arc<ArcSwap<RoutingTable>>;

/// One generation of the routing configuration.
#[derive(Debug)]
pub struct RoutingTable {
    /// 1 at start, +1 for every applied reload.
    pub generation: u64,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// How long a stopping connection may take to finish.
    pub shutdown_timeout: std::time::Duration,
    /// How long a client may take to send a request head (and stay idle).
    pub header_read_timeout: std::time::Duration,
    listeners: HashMap<Arc<str>, Router>,
    upstreams: HashMap<Arc<str>, Arc<UpstreamPool>>,
}

/// What a matching route does.
#[derive(Debug, Clone)]
pub enum Target {
    /// Forward to a pool; `strip` is the length of the prefix to remove from
    /// the path, if the route strips it.
    Proxy {
        /// The pool to forward to.
        pool: Arc<UpstreamPool>,
        /// Bytes to strip from the front of the path.
        strip: Option<usize>,
    },
    /// Answer directly.
    Respond {
        /// Response status.
        status: StatusCode,
        /// Response body.
        body: Bytes,
    },
}

/// The routes of one listener.
///
/// Matching: the most specific host group first (an exact host, then
/// wildcards from the longest suffix down, then routes without a host);
/// within a group the longest matching path prefix wins (file order breaks
/// ties). A group with no matching path falls through to the next, and when
/// nothing matches, the listener's default upstream takes the request.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, PathRoutes>,
    /// Sorted by suffix length, longest first.
    wildcard: Vec<(Box<str>, PathRoutes)>,
    any_host: PathRoutes,
    default: Option<Target>,
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
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Target> {
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
    let without_port = match host.rfind(':') {
        // `[::1]:8080` or `example.com:8080`, but not a bare `[::1]`.
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    if without_port.bytes().any(|b| b.is_ascii_uppercase()) {
        without_port.to_ascii_lowercase().into()
    } else {
        without_port.into()
    }
}

impl RoutingTable {
    /// Build generation `generation` of the table from `config` (with its
    /// host names `resolved`), taking over server and pool state from
    /// `previous`.
    pub fn build(
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
        let listeners = config
            .listeners
            .values()
            .map(|l| (l.name.as_str().into(), build_router(l, &upstreams)))
            .collect();
        RoutingTable {
            generation,
            access_log: config.global.access_log.is_some(),
            shutdown_timeout: config.global.shutdown_timeout,
            header_read_timeout: config.global.header_read_timeout,
            listeners,
            upstreams,
        }
    }

    /// The router of a listener, by name.
    pub fn router(&self, listener: &str) -> Option<&Router> {
        self.listeners.get(listener)
    }

    /// An upstream pool by name.
    pub fn upstream(&self, name: &str) -> Option<&Arc<UpstreamPool>> {
        self.upstreams.get(name)
    }

    /// Every upstream pool.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<UpstreamPool>> {
        self.upstreams.values()
    }

    /// The state object of a server, if this table has it.
    fn server_state(&self, upstream: &str, addr: std::net::SocketAddr) -> Option<&Arc<ServerState>> {
        self.upstreams.get(upstream)?.servers().find(|s| s.addr == addr)
    }
}

/// One member of a pool: a server entry, or one address of a host name.
struct Member {
    name: String,
    addr: std::net::SocketAddr,
    weight: u32,
    backup: bool,
}

fn build_pool(
    upstream: &config::Upstream,
    resolved: &Resolved,
    previous: Option<&RoutingTable>,
) -> UpstreamPool {
    let name: Arc<str> = upstream.name.as_str().into();
    let state = previous
        .and_then(|p| p.upstreams.get(&name))
        .map(|pool| pool.state().clone())
        .unwrap_or_default();
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
            });
        }
    }
    // A new server starts as its health check's `initial_state` says; a
    // known one keeps its state, whatever changed around it.
    let initially_up = upstream.health_check.as_ref().is_none_or(|h| h.initial_up);
    let tier = |backup: bool| {
        let members: Vec<&Member> = members.iter().filter(|m| m.backup == backup).collect();
        if members.is_empty() {
            return None;
        }
        let servers = members
            .iter()
            .map(|m| {
                previous
                    .and_then(|p| p.server_state(&upstream.name, m.addr))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ServerState::new(&m.name, m.addr, initially_up)))
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

fn build_router(listener: &config::Listener, upstreams: &HashMap<Arc<str>, Arc<UpstreamPool>>) -> Router {
    let pool = |name: &str| {
        upstreams
            .get(name)
            .cloned()
            .expect("validated: routes name defined upstreams")
    };
    let mut router = Router {
        default: listener.upstream.as_deref().map(|u| Target::Proxy {
            pool: pool(u),
            strip: None,
        }),
        ..Router::default()
    };
    let mut wildcard: HashMap<Box<str>, PathRoutes> = HashMap::new();
    for route in &listener.routes {
        let prefix: Box<str> = route.path.as_deref().unwrap_or("").into();
        let target = match &route.action {
            RouteAction::Proxy {
                upstream,
                strip_prefix,
            } => Target::Proxy {
                pool: pool(upstream),
                strip: strip_prefix.then_some(prefix.len()),
            },
            RouteAction::Respond { status, body, .. } => Target::Respond {
                status: StatusCode::from_u16(*status).expect("validated: status in 200..=599"),
                body: Bytes::from(body.clone()),
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
