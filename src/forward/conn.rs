//! The context one client connection's requests share.
//!
//! This module owns [`Connection`]: who the client is, which listener
//! accepted it, where tunnels run, and the header values made once per
//! connection rather than once per request, and [`WakeBy`], when the
//! request path's checked deadlines need the connection's task to re-poll
//! it. Accepting the connection and
//! serving HTTP on it is [`crate::server`]'s job; what a request does with
//! this context is the rest of [`crate::forward`]'s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::HeaderValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::metrics::OpenConnection;
use crate::table::Live;

/// What one client connection's requests share.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The listener that accepted the connection; the routing table is
    /// looked up by this name on every request.
    pub(crate) listener: Arc<str>,
    /// The peer address, for the access log.
    pub(crate) client: SocketAddr,
    /// The peer's IP as a header value, made once per connection rather
    /// than once per request: most requests carry no `X-Forwarded-For` and
    /// then get exactly this value.
    pub(super) client_ip: HeaderValue,
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
    /// When the requests' checked deadlines are next due.
    pub(crate) wake_by: WakeBy,
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
        open: OpenConnection,
        tls: bool,
    ) -> Self {
        let client_ip =
            HeaderValue::from_str(&client.ip().to_string()).expect("an IP address is a valid header value");
        Connection {
            listener,
            client,
            client_ip,
            live,
            tasks,
            stop,
            _open: open,
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            wake_by: WakeBy(AtomicU64::new(u64::MAX)),
        }
    }
}
