//! One listener's routes, and how a request finds its target among them.
//!
//! A [`Router`] is part of the snapshot, built once by [`build_router`] and
//! then only read: [`Router::route`] is on every request's path and
//! allocates only for a `Host` with capitals. This module owns matching;
//! what a target does is [`crate::forward`]'s job.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use super::access::{Access, Addressing};
use super::carry::StatsCarrier;
use crate::config::{self, ConnectionLimits, HostPattern, RequestLimits, RouteAction};
use crate::observe::metrics::{ListenerStats, RouteStats};
use crate::upstream::UpstreamPool;

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
        /// The largest request body, if limited: the route's
        /// `max_request_body`, else its listener's.
        max_body: Option<u64>,
        /// `allow` / `deny` (the listener's, then the route's), if any.
        access: Option<Arc<Access>>,
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
        /// `allow` / `deny` (the listener's, then the route's), if any.
        access: Option<Arc<Access>>,
    },
}

impl Target {
    /// The route's counters.
    pub(crate) fn into_stats(self) -> Option<Arc<RouteStats>> {
        match self {
            Target::Proxy { stats, .. } | Target::Respond { stats, .. } => Some(stats),
        }
    }

    /// The `allow` / `deny` a request must pass to reach this target.
    pub(crate) fn access(&self) -> Option<&Access> {
        match self {
            Target::Proxy { access, .. } | Target::Respond { access, .. } => access.as_deref(),
        }
    }
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
    /// only). Built by [`super::prepare()`], before the reload went ahead.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Its connection limits, applied by the accept loop to new connections
    /// (and `max_requests_per_connection` by each new connection).
    pub(crate) connection_limits: ConnectionLimits,
    /// The listener's limits on a request (and on an HTTP/2 connection).
    pub(crate) request_limits: RequestLimits,
    /// The listener's `allow` / `deny`, for requests no route matched.
    pub(crate) access: Option<Arc<Access>>,
    /// How its connections find their clients' addresses; `None` when the
    /// listener sets none of those keys.
    pub(crate) addressing: Option<Arc<Addressing>>,
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
        if let Some(host) = host.filter(|_| self.routes_by_host()).map(normalize_host) {
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

    /// Whether any route names a host: if none does, a request's `Host`
    /// plays no part in its routing, and need not be looked up or
    /// normalized (the common one-site front door pays nothing for it).
    pub(crate) fn routes_by_host(&self) -> bool {
        !self.exact.is_empty() || !self.wildcard.is_empty()
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
    // Bytes, not chars: both delimiters are ASCII, and a `Host` is short.
    let bytes = host.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        Some(i) if !bytes[i..].contains(&b']') => &host[..i],
        _ => host,
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

/// The router of `listener`, whose targets are among `upstreams`, with its
/// counters from `stats` and its TLS configuration `tls` (prepared).
pub(super) fn build_router(
    listener: &config::Listener,
    upstreams: &HashMap<Arc<str>, Arc<UpstreamPool>>,
    stats: &mut StatsCarrier<'_>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Router {
    let pool = |name: &str| {
        upstreams
            .get(name)
            .cloned()
            .expect("validated: routes name defined upstreams")
    };
    let name = listener.name.as_str();
    let access = Access::of([&listener.access]);
    let mut router = Router {
        exact: HashMap::new(),
        wildcard: Vec::new(),
        any_host: PathRoutes::default(),
        default: listener.upstream.as_deref().map(|u| Target::Proxy {
            pool: pool(u),
            strip: None,
            stats: stats.route(name, "default", u),
            max_body: listener.request_limits.max_body,
            access: access.clone(),
        }),
        stats: stats.listener(name),
        unmatched: stats.route(name, "none", ""),
        connection_limits: listener.connection_limits,
        tls,
        request_limits: listener.request_limits,
        access,
        addressing: Addressing::of(&listener.client_address),
    };
    let mut wildcard: HashMap<Box<str>, PathRoutes> = HashMap::new();
    for route in &listener.routes {
        let prefix: Box<str> = route.path.as_deref().unwrap_or("").into();
        let label = route_label(route);
        let access = Access::of([&listener.access, &route.access]);
        let target = match &route.action {
            RouteAction::Proxy {
                upstream,
                strip_prefix,
            } => Target::Proxy {
                pool: pool(upstream),
                strip: strip_prefix.then_some(prefix.len()),
                stats: stats.route(name, &label, upstream),
                max_body: route.max_request_body.or(listener.request_limits.max_body),
                access,
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
                access,
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
