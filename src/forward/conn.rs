//! The context one client connection's requests share.
//!
//! This module owns [`Connection`]: who the client is, which listener
//! accepted it, where tunnels run, the header values made once per
//! connection rather than once per request, its request count against
//! `max_requests_per_connection` (per connection, never shared), and
//! [`WakeBy`], when the request path's checked deadlines need the
//! connection's task to re-poll it. Accepting the connection and
//! serving HTTP on it is [`crate::server`]'s job; what a request does with
//! this context is the rest of [`crate::forward`]'s.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{HeaderValue, CONNECTION};
use http::{Response, StatusCode, Version};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client_ip;
use crate::observe::metrics::OpenConnection;
use crate::table::access::Addressing;
use crate::table::Live;

/// What one client connection's requests share.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The listener that accepted the connection; the routing table is
    /// looked up by this name on every request.
    pub(crate) listener: Arc<str>,
    /// The connection's client: its TCP peer, or the source of a believed
    /// PROXY header (see [`super::client_ip`]). A request's client may be
    /// another one: [`Connection::client_of`].
    pub(crate) client: SocketAddr,
    /// `client`'s IP as a header value, made once per connection rather
    /// than once per request: most requests carry no `X-Forwarded-For` and
    /// then get exactly this value.
    pub(super) client_ip: HeaderValue,
    /// The listener's `trusted_proxies`, `client_ip_header` and
    /// `proxy_protocol` when it was accepted; `None` when none is set.
    pub(super) addressing: Option<Arc<Addressing>>,
    /// `client` is one of `trusted_proxies`: its requests' forwarding
    /// headers are believed.
    pub(super) trusts_headers: bool,
    /// The current routing table.
    pub(crate) live: Live,
    /// Where tunnels (upgraded connections) run, so draining waits for them.
    pub(super) tasks: TaskTracker,
    /// The listener's stop token, which tunnels watch.
    pub(super) stop: CancellationToken,
    /// Counts the connection open while anything holds this: its requests,
    /// and tunnels, which outlive the HTTP connection.
    _open: OpenConnection,
    /// `X-Forwarded-Proto`: `https` on TLS listeners.
    pub(super) proto: HeaderValue,

    // Connection limits (issue 11).
    /// Whatever the server holds for this connection (its places under
    /// `max_connections`), freed with the last holder, as `_open`.
    _admitted: Box<dyn Debug + Send + Sync>,
    /// `max_requests_per_connection` when it was accepted; 0: no limit.
    max_requests: u32,
    /// Requests so far. An atomic because HTTP/2 streams run in tasks of
    /// their own; only this connection's requests touch it.
    requests: AtomicU32,
    /// Woken by an HTTP/2 connection's last request under `max_requests`:
    /// the connection's task then sends GOAWAY.
    last_stream: Notify,
    /// When the requests' checked deadlines are next due.
    pub(crate) wake_by: WakeBy,
    /// Set when the process hands over to a new one (an upgrade): an
    /// HTTP/1 connection's next response is its last.
    closing: AtomicBool,
}

/// What the server hands a connection it accepted, besides who and where.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The listener's count of open connections.
    pub(crate) open: OpenConnection,
    /// The connection's places under the connection limits.
    pub(crate) admitted: Box<dyn Debug + Send + Sync>,
    /// The listener's `max_requests_per_connection` (0: no limit).
    pub(crate) max_requests: u32,
    /// Accepted on a TLS listener.
    pub(crate) tls: bool,
    /// The listener's client address settings (its router's).
    pub(crate) addressing: Option<Arc<Addressing>>,
}

/// The earliest moment ([`crate::observe::clock::millis`]) at which a
/// request's checked deadline (`read_timeout`, an upload's limits) needs its
/// future polled. Those deadlines only compare the clock when polled, so
/// that a request registers no timer; the connection's task reads this
/// after polling the connection and arms its one timer by it (see
/// `crate::server::timer`). A request pays a load, and a store when its
/// deadline is the earliest; the connection task takes the value when its
/// timer fires, and the requests still pending note theirs again as they
/// are re-polled.
#[derive(Debug)]
pub(crate) struct WakeBy(AtomicU64);

impl WakeBy {
    /// Be polled by `deadline` at the latest.
    pub(crate) fn by(&self, deadline: u64) {
        if deadline < self.0.load(Ordering::Relaxed) {
            self.0.fetch_min(deadline, Ordering::Relaxed);
        }
    }

    /// The earliest deadline noted (`u64::MAX` for none).
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Forget every deadline noted: they are being polled now.
    pub(crate) fn clear(&self) {
        self.0.store(u64::MAX, Ordering::Relaxed);
    }
}

impl Connection {
    /// What requests on a connection from `client` to `listener` share;
    /// tunnels opened by its requests run in `tasks` and end `stop`'s
    /// shutdown timeout after it fires.
    pub(crate) fn new(
        listener: Arc<str>,
        client: SocketAddr,
        live: Live,
        tasks: TaskTracker,
        stop: CancellationToken,
        accepted: Accepted,
    ) -> Self {
        let client_ip = client_ip::ip_value(client.ip());
        let trusts_headers = client_ip::trusts_headers(accepted.addressing.as_deref(), client.ip());
        Connection {
            listener,
            client,
            client_ip,
            addressing: accepted.addressing,
            trusts_headers,
            live,
            tasks,
            stop,
            _open: accepted.open,
            proto: HeaderValue::from_static(if accepted.tls { "https" } else { "http" }),
            _admitted: accepted.admitted,
            max_requests: accepted.max_requests,
            requests: AtomicU32::new(0),
            last_stream: Notify::new(),
            wake_by: WakeBy(AtomicU64::new(u64::MAX)),
            closing: AtomicBool::new(false),
        }
    }

    /// Count one request of `version` against `max_requests_per_connection`.
    /// True when it is an HTTP/1 connection's last: its response must carry
    /// `Connection: close` ([`close_after`]), after which hyper closes the
    /// connection. An HTTP/2 connection's last request wakes
    /// [`Connection::last_stream`] instead (GOAWAY: streams already open
    /// finish), and is answered as usual.
    pub(crate) fn count_request(&self, version: Version) -> bool {
        if self.max_requests == 0 {
            return false;
        }
        if self.requests.fetch_add(1, Ordering::Relaxed) + 1 != self.max_requests {
            return false;
        }
        self._open
            .stats()
            .closed_at_max_requests
            .fetch_add(1, Ordering::Relaxed);
        if version == Version::HTTP_2 {
            self.last_stream.notify_one();
            return false;
        }
        true
    }

    /// Make the next response of this HTTP/1 connection its last
    /// (`Connection: close`) without closing it while idle: a client may be
    /// sending on it right now.
    pub(crate) fn close_next(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Whether a response of `version` must be this connection's last
    /// because of [`Connection::close_next`].
    pub(crate) fn closing(&self, version: Version) -> bool {
        version != Version::HTTP_2 && self.closing.load(Ordering::Relaxed)
    }

    /// Ready once this HTTP/2 connection has had its last request under
    /// `max_requests_per_connection`; never without a limit.
    pub(crate) fn last_stream(&self) -> Notified<'_> {
        self.last_stream.notified()
    }
}

/// Make `response` the last on its HTTP/1 connection: `Connection: close`
/// (hyper closes the connection once it is sent). A `101 Switching
/// Protocols` keeps its `Connection: upgrade`: the tunnel ends the
/// connection anyway.
pub(crate) fn close_after<B>(response: &mut Response<B>) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}
