//! One request: route, pick a server, forward, map errors to a status.
//!
//! This is the hot path. It loads the current [`RoutingTable`] once, keeps
//! only the `Arc` of the pool it routes to, and never takes a lock or parses
//! configuration. Bodies are streamed in both directions: the client's body
//! is handed to the upstream connection as it arrives, and the upstream's
//! body is handed back to the client the same way ([`ProxyBody`]).
//!
//! [`handle`] is the entry point [`crate::server`] calls for every request;
//! it reads as the pipeline, one file per step:
//!
//! ```text
//! handle ── route (the table) ──┬─ respond route ─────────── respond.rs
//!                               ├─ proxy ── retry.rs: forward → attempt → server
//!                               │    (headers.rs rewrites the head both ways)
//!                               └─ upgrade ── upgrade.rs → tunnel.rs
//!        ── error → status ─────── error.rs, respond.rs
//!        ── Completion (metrics + access log, when the body drops) ── body.rs
//! ```
//!
//! Accepting connections and speaking HTTP to the client is
//! [`crate::server`]'s job; which server comes first is
//! [`crate::balance`]'s, and connecting to it [`crate::upstream`]'s.
//!
//! [`RoutingTable`]: crate::table::RoutingTable

mod body;
mod client_ip;
mod conn;
mod error;
// pub(crate) for crate::fuzzing only; the rest of the crate goes through `handle`.
pub(crate) mod headers;
mod respond;
mod retry;
mod tunnel;
mod upgrade;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;

pub(crate) use body::ProxyBody;
pub(crate) use conn::{Accepted, Connection};

use crate::config::RequestLimits;
use crate::observe::access_log::AccessLogger;
use crate::observe::metrics::RouteStats;
use crate::table::{access, Target};
use crate::upstream::{BodyLimits, UpstreamPool};
use body::AccessEntry;
use error::Error;
use headers::{has_request_id, new_request_id, request_host};

/// Serve one request. Never fails: errors become short plain-text responses.
pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<Connection>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let client = conn.client_of(req.headers());
    let (target, unmatched, access_log, mut limits, head, allowed) = route(&req, &conn, client.ip());
    let version = req.version();
    let last = conn.count_request(version);
    // A request id is made only when the request has no usable one and
    // someone needs it: the upstream, or the access log.
    let proxied = matches!(target, Some(Target::Proxy { .. }));
    let new_id = (!has_request_id(req.headers()) && (proxied || access_log.is_some())).then(new_request_id);
    // Only what the access log needs is kept, and only when it is on.
    // Boxed: it is large, and only there when the access log is on; inline,
    // it would be copied with every request's future whether used or not.
    let mut access =
        access_log.map(|logger| Box::new(AccessEntry::of(logger, &req, &conn, client, new_id.as_ref())));

    let refused =
        refuse_head(&req, &head).or_else(|| (!allowed).then_some(Error::Forbidden { client: client.ip() }));
    let (result, stats) = match (refused, target) {
        (Some(refused), target) => (Err(refused), target.map_or(unmatched, Target::into_stats)),
        (None, None) => (Err(Error::NoRoute), unmatched),
        (
            None,
            Some(Target::Respond {
                status,
                body,
                location,
                stats,
                ..
            }),
        ) => (
            Ok(respond::respond_route(status, body, location.as_deref(), &req)),
            Some(stats),
        ),
        (
            None,
            Some(Target::Proxy {
                pool,
                strip,
                stats,
                max_body,
                ..
            }),
        ) => {
            limits.max_size = max_body;
            let forwarded = match refuse_body(&req, max_body) {
                Some(refused) => Err(refused),
                None => proxy(req, &pool, strip, &conn, client.ip(), new_id, limits).await,
            };
            let result = forwarded.map(|(response, server)| {
                if let Some(access) = &mut access {
                    access.upstream = Some((server.name.clone(), started.elapsed()));
                }
                response
            });
            (result, Some(stats))
        }
    };
    let mut response = result.unwrap_or_else(|error| {
        if error.is_too_large() {
            count_too_large(&conn);
        }
        respond::error_response(&error, &conn, version)
    });
    let status = response.status().as_u16();
    if let Some(stats) = &stats {
        stats.count(status);
    }
    if let Some(access) = &mut access {
        access.status = status;
    }
    if stats.is_some() || access.is_some() {
        response.body_mut().record_when_done(started, stats, access);
    }
    // Checked at the response, not the request: a connection told to close
    // while its request was in flight says so on this response.
    if last || conn.closing(version) {
        conn::close_after(&mut response);
    }
    Ok(response)
}

/// Forward `req` to `pool`: upgraded, or through the attempt loop with
/// its body held to `limits`.
async fn proxy(
    req: Request<Incoming>,
    pool: &UpstreamPool,
    strip: Option<usize>,
    conn: &Arc<Connection>,
    client: IpAddr,
    new_id: Option<HeaderValue>,
    limits: BodyLimits,
) -> retry::Forwarded {
    let key = pool
        .hash_key()
        .map_or(0, |k| client_ip::request_hash(k, &req, conn, client));
    match upgrade::upgrade_protocol(&req) {
        // Boxed: upgrades are rare, and their larger state would otherwise
        // be part of every request's future.
        Some(protocol) => {
            Box::pin(upgrade::forward_upgrade(
                req, protocol, pool, key, strip, conn, new_id,
            ))
            .await
        }
        None => retry::forward(req, pool, key, strip, conn, new_id, limits).await,
    }
}

/// A body whose declared length (hyper's size hint is the
/// `Content-Length`) is over `max_request_body`: refused before any server
/// is picked. One comparison, and none without a limit.
fn refuse_body(req: &Request<Incoming>, max: Option<u64>) -> Option<Error> {
    let max = max?;
    let length = req.body().size_hint().lower();
    (length > max).then_some(Error::BodyTooLarge { length, max })
}

/// What [`route`] found: the target, the listener's stats for unmatched
/// requests (with no target), the access logger, the body and head
/// limits, and whether `allow` / `deny` let the client in.
type Routed = (
    Option<Target>,
    Option<Arc<RouteStats>>,
    Option<AccessLogger>,
    BodyLimits,
    RequestLimits,
    bool,
);

/// Where the listener's routing table sends `req`; with no match, the
/// listener's stats for unmatched requests instead; and whether the
/// `allow` / `deny` of the target (else of the listener) let `client` in.
/// The table's guard is held only for this lookup: what the request needs
/// later it keeps by `Arc` (the target's pool, the access logger) or
/// copies (the body and head limits).
fn route(req: &Request<Incoming>, conn: &Connection, client: IpAddr) -> Routed {
    let table = conn.live.load();
    let router = table.router(&conn.listener);
    let target = router
        .and_then(|router| {
            let host = router.routes_by_host().then(|| request_host(req)).flatten();
            router.route(host, req.uri().path())
        })
        .cloned();
    let unmatched = match target {
        Some(_) => None,
        None => router.map(|router| router.unmatched.clone()),
    };
    let head = router.map_or_else(RequestLimits::default, |router| router.request_limits);
    let access = match &target {
        Some(target) => target.access(),
        None => router.and_then(|router| router.access.as_deref()),
    };
    let allowed = access::allowed(access, client);
    (
        target,
        unmatched,
        table.access_log.clone(),
        table.client_body,
        head,
        allowed,
    )
}

/// Why `req`'s head is refused, if it is: a request target longer than
/// `max_request_line` (hyper has no such limit; its own is 64 KiB), or
/// more header fields than `max_request_headers` (hyper refuses those on
/// HTTP/1.1 itself, the `h2` crate only limits the header list's size).
/// Two comparisons of lengths already known.
fn refuse_head(req: &Request<Incoming>, limits: &RequestLimits) -> Option<Error> {
    let length = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if length > limits.max_line {
        return Some(Error::LineTooLong {
            length,
            max: limits.max_line,
        });
    }
    let count = req.headers().len();
    (count > limits.max_headers).then_some(Error::TooManyHeaders {
        count,
        max: limits.max_headers,
    })
}

/// Count a request refused for its body's size on its listener (rare: the
/// table is looked up again rather than its counters carried by every
/// request).
fn count_too_large(conn: &Connection) {
    if let Some(router) = conn.live.load().router(&conn.listener) {
        router.stats.count_too_large();
    }
}
