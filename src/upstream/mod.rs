//! Upstream pools and the state of each server, which outlives snapshots.
//!
//! An [`UpstreamPool`] is part of one routing snapshot: its server list,
//! weights, policy and settings are rebuilt on every reload. The
//! [`ServerState`] of each server is not: it is keyed by (upstream name,
//! address) and handed from the old snapshot to the new one, so a reload
//! keeps a server's idle connections, in-flight count, failure accounting and
//! health-check verdict (see [`crate::table`]). Likewise [`PoolState`] is
//! carried by upstream name.
//!
//! Health is two independent verdicts, both atomics read without a lock:
//! active (set by [`crate::health`] checks, always up without checks) and
//! passive (nginx's `max_fails`/`fail_timeout`, and `eject_on_5xx`, fed by
//! real requests in [`crate::forward`]). A server is available when both say so.
//!
//! Connections are pooled per worker thread: each worker runs its own
//! single-threaded runtime, and a connection's task lives on the worker that
//! opened it, so a worker only ever reuses its own connections and the pool
//! needs no lock shared between threads.
//!
//! Protocols ([`Sender`]): HTTP/1.1 connections carry one request at a time
//! and wait in the per-worker idle stack between requests. An HTTP/2
//! connection (`protocol = "h2"` over TLS, `"h2c"` in the clear) carries
//! many streams at once, so each worker keeps one per server and every
//! request clones its sender. `https://` servers are reached with rustls;
//! the client configuration is built once per pool snapshot, on the first
//! connection that needs it.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo};
use thread_local::ThreadLocal;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::balance::{Candidates, Policy, RoundRobinCursor};
use crate::config::{self, Endpoint, HashKey, OnAllDown, ServerSpec, UpstreamProtocol};
use crate::observe::metrics::ServerStats;

/// How long an idle upstream connection may be reused. Below the keep-alive
/// timeouts that common servers use (nginx 75s, Apache 5s..., Node 5s), so we
/// rarely send on a connection the server is closing at that very moment.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most idle connections kept per server per worker thread.
pub(crate) const MAX_IDLE_PER_WORKER: usize = 256;

/// The body of a request sent upstream: the client's, streamed, or none
/// (a request sent again after its first attempt, which is only done for
/// requests without a body).
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// The client's body, streamed as it arrives. The flag, if any, is set
    /// once the body has been sent whole (the read timeout starts then).
    Client(Incoming, Option<Arc<AtomicBool>>),
    /// No body.
    Empty,
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Client(body, sent) => {
                let frame = std::task::ready!(std::pin::Pin::new(&mut *body).poll_frame(cx));
                if let Some(sent) = sent {
                    if frame.is_none() || body.is_end_stream() {
                        sent.store(true, Ordering::Relaxed);
                    }
                }
                std::task::Poll::Ready(frame)
            }
            UpstreamBody::Empty => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Client(body, _) => body.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Client(body, _) => body.size_hint(),
            UpstreamBody::Empty => http_body::SizeHint::with_exact(0),
        }
    }
}

/// A sender on an upstream connection: HTTP/1.1 (one request at a time,
/// pooled while idle) or HTTP/2 (many streams at once, shared).
#[derive(Debug)]
pub(crate) enum Sender {
    /// HTTP/1.1, in the clear or over TLS.
    Http1(http1::SendRequest<UpstreamBody>),
    /// HTTP/2, over TLS (`h2`) or in the clear (`h2c`).
    Http2(http2::SendRequest<UpstreamBody>),
}

impl Sender {
    /// Whether the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    /// Wait until the connection can take a request.
    ///
    /// # Errors
    ///
    /// The connection closed.
    pub(crate) async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
    }

    /// Send `req`, giving it back if it was never written.
    ///
    /// # Errors
    ///
    /// hyper's; the request comes back in it when it was not written.
    pub(crate) async fn try_send_request(
        &mut self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        match self {
            Sender::Http1(s) => s.try_send_request(req).await,
            Sender::Http2(s) => s.try_send_request(req).await,
        }
    }
}

/// How a pool reaches its servers: the protocol, and for `https://`
/// servers the rustls client configuration (built once per pool snapshot,
/// on first use).
#[derive(Debug, Default)]
struct Transport {
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

/// ALPN offered to `https://` servers for each protocol.
fn upstream_alpn(protocol: UpstreamProtocol) -> &'static [&'static [u8]] {
    match protocol {
        UpstreamProtocol::H2 => &[b"h2"],
        UpstreamProtocol::Http1 | UpstreamProtocol::H2c => &[b"http/1.1"],
    }
}

/// What belongs to an upstream rather than to one snapshot of it; carried
/// across reloads by upstream name.
#[derive(Debug, Default)]
pub(crate) struct PoolState {
    /// The rotation position of round robin (and of least_conn's ties).
    pub(crate) cursor: RoundRobinCursor,
    /// Set while no server is available, so that is logged once.
    all_down: AtomicBool,
    /// Attempts made after a first one failed.
    retries: AtomicU64,
}

impl PoolState {
    /// Count an attempt that is a retry.
    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts made after a first one failed.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// The servers of one tier (primaries or backups) and their policy.
pub(crate) struct Tier {
    servers: Arc<[Arc<ServerState>]>,
    /// The configured weight of server `i` (for status; the policy has its
    /// own view of weights).
    weights: Box<[u32]>,
    policy: Box<dyn Policy>,
    /// In-flight requests of server `i`, for the policy.
    loads: Box<dyn Fn(usize) -> usize + Send + Sync>,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("servers", &self.servers)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Tier {
    /// A tier of `servers` ordered by `policy`.
    pub(crate) fn new(servers: Vec<(Arc<ServerState>, u32)>, policy: Box<dyn Policy>) -> Self {
        let (servers, weights): (Vec<_>, Vec<_>) = servers.into_iter().unzip();
        let servers: Arc<[Arc<ServerState>]> = servers.into();
        let view = servers.clone();
        Tier {
            servers,
            weights: weights.into(),
            policy,
            loads: Box::new(move |i| view[i].in_flight()),
        }
    }

    /// A tier without servers (every host name of it failed to resolve).
    pub(crate) fn empty() -> Self {
        // Never asked: `Candidates` asks a policy only about servers it has.
        Tier::new(
            Vec::new(),
            Box::new(crate::balance::RoundRobin::new(&[1], Default::default())),
        )
    }

    fn members(&self, backup: bool) -> impl Iterator<Item = (&Arc<ServerState>, u32, bool)> {
        self.servers
            .iter()
            .zip(self.weights.iter())
            .map(move |(s, w)| (s, *w, backup))
    }

    fn candidates(&self, key: u64) -> impl Iterator<Item = &Arc<ServerState>> {
        Candidates::new(&*self.policy, self.servers.len(), key, &*self.loads).map(|i| &self.servers[i])
    }
}

/// A named pool of servers: primaries, optional backups, and its settings.
#[derive(Debug)]
pub(crate) struct UpstreamPool {
    /// The `[upstream.NAME]` this pool was built from.
    pub(crate) name: Arc<str>,
    primaries: Tier,
    backups: Option<Tier>,
    /// The validated `[upstream.NAME]`: timeouts, failure and retry
    /// policy, health checks. Read-only, like the rest of the snapshot.
    pub(crate) settings: config::Upstream,
    state: Arc<PoolState>,
    transport: Transport,
}

impl UpstreamPool {
    /// A pool over `primaries` (non-empty) and `backups`.
    pub(crate) fn new(
        name: Arc<str>,
        primaries: Tier,
        backups: Option<Tier>,
        settings: config::Upstream,
        state: Arc<PoolState>,
    ) -> Self {
        UpstreamPool {
            name,
            primaries,
            backups,
            settings,
            state,
            transport: Transport::default(),
        }
    }

    /// The request key of consistent hashing, if the policy is `hash`.
    pub(crate) fn hash_key(&self) -> Option<&HashKey> {
        match &self.settings.balance {
            config::Balance::Hash(key) => Some(key),
            _ => None,
        }
    }

    /// Every server, primaries first.
    pub(crate) fn servers(&self) -> impl Iterator<Item = &Arc<ServerState>> {
        let backups = self.backups.iter().flat_map(|t| t.servers.iter());
        self.primaries.servers.iter().chain(backups)
    }

    /// Every server with its weight and whether it is a backup, primaries
    /// first.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&Arc<ServerState>, u32, bool)> {
        self.primaries
            .members(false)
            .chain(self.backups.iter().flat_map(|t| t.members(true)))
    }

    /// The state shared with the next snapshot of this upstream.
    pub(crate) fn state(&self) -> &Arc<PoolState> {
        &self.state
    }

    /// The servers one request may try, best first, each at most once:
    /// primaries in the policy's order, then backups. Only servers that are
    /// available (or all of them, in `try_all` mode when none is) come out.
    pub(crate) fn candidates(&self, key: u64) -> impl Iterator<Item = &Arc<ServerState>> {
        let holds_out = self.holds_out_failures();
        // A lone server ignores passive health, never its health checks.
        let usable = move |s: &ServerState| if holds_out { s.is_available() } else { s.is_up() };
        let any_available = self.servers().any(|s| usable(s));
        let ignore_health = !any_available && self.settings.on_all_down == OnAllDown::TryAll;
        self.note_all_down(!any_available);
        let backups = self.backups.iter().flat_map(move |t| t.candidates(key));
        self.primaries
            .candidates(key)
            .chain(backups)
            .filter(move |s| ignore_health || usable(s))
    }

    /// How to reach `server`: TLS (with its config and name) if it was
    /// written `https://`. Only asked when opening a connection.
    ///
    /// # Errors
    ///
    /// The TLS client configuration or the server name is unusable
    /// (validation normally rules that out).
    pub(crate) fn connector(&self, server: &ServerState) -> Result<Connector, ConnectError> {
        let protocol = self.settings.protocol;
        let Some(spec) = self.spec_of(server).filter(|spec| spec.tls) else {
            return Ok(Connector { protocol, tls: None });
        };
        let config = self
            .transport
            .tls
            .get_or_init(|| crate::tls::client_config(&self.settings.tls, upstream_alpn(protocol)))
            .clone()
            .map_err(ConnectError::Tls)?;
        let host = match &spec.endpoint {
            Endpoint::Ip(addr) => addr.ip().to_string(),
            Endpoint::Dns { host, .. } => host.clone(),
        };
        let name = crate::tls::server_name(&self.settings.tls, &host).map_err(ConnectError::Tls)?;
        Ok(Connector {
            protocol,
            tls: Some((config, name)),
        })
    }

    /// The `servers` entry `server` came from (an address of a host name
    /// is named `"NAME (ADDRESS)"`).
    fn spec_of(&self, server: &ServerState) -> Option<&ServerSpec> {
        self.settings.servers.iter().find(|spec| {
            *server.name == spec.name
                || server
                    .name
                    .strip_prefix(spec.name.as_str())
                    .is_some_and(|rest| rest.starts_with(" ("))
        })
    }

    /// Whether connections this pool opened to `server` are fit for a
    /// server of `next` written with `tls`: same protocol, same TLS use
    /// and TLS settings. When not, a reload makes the server a new
    /// [`ServerState`], so that none of its pooled connections is reused.
    pub(crate) fn same_transport(&self, server: &ServerState, next: &config::Upstream, tls: bool) -> bool {
        self.settings.protocol == next.protocol
            && self.settings.tls == next.tls
            && self.spec_of(server).is_some_and(|spec| spec.tls == tls)
    }

    /// Whether failing servers are held out. Like nginx, a lone server is
    /// never held out by passive checks: refusing it would only turn a blip
    /// into `fail_timeout` of 502s.
    pub(crate) fn holds_out_failures(&self) -> bool {
        self.primaries.servers.len() + self.backups.as_ref().map_or(0, |b| b.servers.len()) > 1
    }

    fn note_all_down(&self, all_down: bool) {
        if self.state.all_down.load(Ordering::Relaxed) == all_down {
            return;
        }
        if self.state.all_down.swap(all_down, Ordering::Relaxed) != all_down {
            if all_down {
                let mode = match self.settings.on_all_down {
                    OnAllDown::Fail => "answering 502",
                    OnAllDown::TryAll => "trying every server anyway (on_all_down = \"try_all\")",
                };
                tracing::error!(upstream = %self.name, "no server available; {mode}");
            } else {
                tracing::info!(upstream = %self.name, "servers available again");
            }
        }
    }
}

/// One upstream server and everything about it that survives a reload.
#[derive(Debug)]
pub(crate) struct ServerState {
    /// The server as configured (without `http://`), plus the address when
    /// it came from DNS, for logs.
    pub(crate) name: Arc<str>,
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// Requests sent and not yet answered in full.
    in_flight: AtomicUsize,
    /// Passive health: what real requests taught us.
    passive: Passive,
    /// Active health: what health checks say (always up without checks).
    active_up: AtomicBool,
    /// Idle keep-alive connections, one stack per worker thread.
    idle: ThreadLocal<RefCell<Vec<IdleConn>>>,
    /// The HTTP/2 connection of each worker thread, shared by its requests.
    shared: ThreadLocal<RefCell<SharedH2>>,
    /// Attempts by outcome.
    pub(crate) stats: ServerStats,
}

/// A worker's HTTP/2 connection to one server.
#[derive(Debug, Default)]
enum SharedH2 {
    #[default]
    None,
    /// One request is opening it; the others wait for that instead of each
    /// opening their own (a burst of first requests would otherwise open as
    /// many connections as it has requests).
    Opening(Arc<Notify>),
    Open(http2::SendRequest<UpstreamBody>),
}

/// Failure accounting with nginx's `max_fails`/`fail_timeout` semantics.
/// Times are milliseconds since [`clock_origin`]; races between workers can
/// only make a count off by one, which these semantics tolerate.
#[derive(Debug, Default)]
struct Passive {
    /// Until when the server is held out; 0 when it is in rotation.
    held_out_until: AtomicU64,
    /// Failures in the current window.
    fails: AtomicU32,
    /// Start of the current failure window.
    window_start: AtomicU64,
    /// Consecutive 5xx responses.
    consecutive_5xx: AtomicU32,
}

/// Why a server was held out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HoldOutReason {
    /// `max_fails` failures within `fail_timeout`.
    Failures,
    /// `eject_on_5xx` consecutive 5xx responses.
    Consecutive5xx,
}

#[derive(Debug)]
struct IdleConn {
    sender: Sender,
    since: Instant,
}

impl ServerState {
    /// Fresh state for a server seen for the first time; `up` is its active
    /// health until a check says otherwise.
    pub(crate) fn new(name: &str, addr: SocketAddr, up: bool) -> Self {
        ServerState {
            name: name.into(),
            addr,
            in_flight: AtomicUsize::new(0),
            passive: Passive::default(),
            active_up: AtomicBool::new(up),
            idle: ThreadLocal::new(),
            shared: ThreadLocal::new(),
            stats: ServerStats::default(),
        }
    }

    /// Whether this server may take requests: up by its health checks and
    /// not held out by failures.
    pub(crate) fn is_available(&self) -> bool {
        if !self.active_up.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.passive.held_out_until.load(Ordering::Relaxed);
        // The common case costs one load and no clock read.
        until == 0 || millis_since_origin() >= until
    }

    /// Requests sent and not yet answered in full.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a request as in flight until the guard drops.
    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// What active health checks say.
    pub(crate) fn is_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Set by active health checks; returns the previous value.
    pub(crate) fn set_up(&self, up: bool) -> bool {
        self.active_up.swap(up, Ordering::Relaxed)
    }

    /// Whether the server is held out by passive health right now.
    pub(crate) fn is_held_out(&self) -> bool {
        let until = self.passive.held_out_until.load(Ordering::Relaxed);
        until != 0 && millis_since_origin() < until
    }

    /// A failed attempt (connect error, reset, timeout). Returns why the
    /// server was just held out, if this failure did it.
    pub(crate) fn record_failure(&self, settings: &config::Upstream) -> Option<HoldOutReason> {
        if settings.max_fails == 0 {
            return None;
        }
        let now = millis_since_origin();
        let window = settings.fail_timeout.as_millis() as u64;
        let p = &self.passive;
        if now.saturating_sub(p.window_start.load(Ordering::Relaxed)) > window {
            p.window_start.store(now, Ordering::Relaxed);
            p.fails.store(0, Ordering::Relaxed);
        }
        let fails = p.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= settings.max_fails {
            p.fails.store(0, Ordering::Relaxed);
            self.hold_out(now + window);
            return Some(HoldOutReason::Failures);
        }
        None
    }

    /// A response arrived. 5xx responses count towards `eject_on_5xx`;
    /// anything else clears the failure state. Returns why the server was
    /// just held out, if this response did it.
    pub(crate) fn record_response(&self, status: u16, settings: &config::Upstream) -> Option<HoldOutReason> {
        let p = &self.passive;
        if (500..600).contains(&status) {
            if let Some(limit) = settings.eject_on_5xx {
                let count = p.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                if count >= limit {
                    p.consecutive_5xx.store(0, Ordering::Relaxed);
                    self.hold_out(millis_since_origin() + settings.fail_timeout.as_millis() as u64);
                    return Some(HoldOutReason::Consecutive5xx);
                }
            }
            return None;
        }
        // Loads first: a healthy server's request path writes nothing.
        if p.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            p.consecutive_5xx.store(0, Ordering::Relaxed);
        }
        if p.fails.load(Ordering::Relaxed) != 0 {
            p.fails.store(0, Ordering::Relaxed);
        }
        if p.held_out_until.load(Ordering::Relaxed) != 0 {
            p.held_out_until.store(0, Ordering::Relaxed);
        }
        None
    }

    fn hold_out(&self, until: u64) {
        self.passive.held_out_until.store(until.max(1), Ordering::Relaxed);
    }

    /// The server's `Host`, for requests that have none (health checks,
    /// HTTP/1.0 requests): its configured name without the address that
    /// DNS members carry in parentheses.
    pub(crate) fn host(&self) -> &str {
        self.name.split(" (").next().unwrap_or(&self.name)
    }

    /// An idle connection of this worker that is still open, if any. Waits
    /// only for a just-returned connection to become ready for its next
    /// request, never for a busy one: only finished connections are pooled.
    pub(crate) async fn checkout(&self) -> Option<Sender> {
        if let Some(sender) = self.checkout_h2() {
            return Some(sender);
        }
        loop {
            let conn = {
                let mut idle = self.idle.get()?.borrow_mut();
                let conn = idle.pop()?;
                if conn.since.elapsed() > IDLE_TIMEOUT {
                    // Everything below is older still.
                    idle.clear();
                    return None;
                }
                conn
            };
            let mut sender = conn.sender;
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Return a connection whose last response has been read completely.
    pub(crate) fn check_in(&self, sender: Sender) {
        // An HTTP/2 connection is shared, never idle: this was a clone.
        if sender.is_closed() || matches!(sender, Sender::Http2(_)) {
            return;
        }
        let mut idle = self.idle.get_or(Default::default).borrow_mut();
        if idle.len() < MAX_IDLE_PER_WORKER {
            idle.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Open a new connection with `connector`, within `timeout` (TCP and
    /// TLS handshakes together). An HTTP/2 connection becomes this worker's
    /// shared one.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Timeout`], [`ConnectError::Io`] when the server
    /// cannot be reached or the TLS handshake fails;
    /// [`ConnectError::Handshake`] when HTTP/2 cannot be set up.
    pub(crate) async fn connect(
        &self,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        match connector.protocol {
            UpstreamProtocol::Http1 => self.open(connector, timeout, false).await,
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => self.connect_h2(connector, timeout).await,
        }
    }

    /// This worker's shared HTTP/2 connection: opened here, or by another
    /// request that was already opening it (then waited for, up to
    /// `timeout`; if that one fails, this request tries on its own).
    async fn connect_h2(&self, connector: &Connector, timeout: Duration) -> Result<Sender, ConnectError> {
        let opening = match &*self.shared.get_or(Default::default).borrow() {
            SharedH2::Opening(opened) => Some(opened.clone()),
            SharedH2::None | SharedH2::Open(_) => None,
        };
        if let Some(opened) = opening {
            // Created before any await, so it cannot miss the wake-up.
            let _ = tokio::time::timeout(timeout, opened.notified()).await;
            if let Some(sender) = self.checkout_h2() {
                return Ok(sender);
            }
            return self.open_h2(connector, timeout).await;
        }
        let opened = Arc::new(Notify::new());
        *self.shared.get_or(Default::default).borrow_mut() = SharedH2::Opening(opened.clone());
        // Wakes the waiters however this ends, dropped future included.
        let _opening = Opening { server: self, opened };
        let sender = self.open_h2(connector, timeout).await?;
        if let Sender::Http2(shared) = &sender {
            *self.shared.get_or(Default::default).borrow_mut() = SharedH2::Open(shared.clone());
        }
        Ok(sender)
    }

    /// This worker's open HTTP/2 connection, if any (a closed one is
    /// forgotten).
    fn checkout_h2(&self) -> Option<Sender> {
        let mut shared = self.shared.get()?.borrow_mut();
        match &*shared {
            SharedH2::Open(sender) if !sender.is_closed() => Some(Sender::Http2(sender.clone())),
            SharedH2::Open(_) => {
                *shared = SharedH2::None;
                None
            }
            SharedH2::None | SharedH2::Opening(_) => None,
        }
    }

    /// Open a new HTTP/1.1 connection for one request that may switch
    /// protocols (`Upgrade`): if the server answers 101, the connection is
    /// handed over to [`hyper::upgrade::on`] instead of closing. Such a
    /// connection is never pooled. Upgrades always use HTTP/1.1, whatever
    /// the pool's `protocol`.
    ///
    /// # Errors
    ///
    /// As [`ServerState::connect`].
    pub(crate) async fn connect_for_upgrade(
        &self,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        self.open(connector, timeout, true).await
    }

    async fn open(
        &self,
        connector: &Connector,
        timeout: Duration,
        upgrades: bool,
    ) -> Result<Sender, ConnectError> {
        let io = self.transport(connector, timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        let server = self.name.clone();
        tokio::spawn(async move {
            let result = match upgrades {
                true => conn.with_upgrades().await,
                false => conn.await,
            };
            if let Err(error) = result {
                tracing::debug!(%server, %error, "upstream connection ended with an error");
            }
        });
        Ok(Sender::Http1(sender))
    }

    async fn open_h2(&self, connector: &Connector, timeout: Duration) -> Result<Sender, ConnectError> {
        let io = self.transport(connector, timeout).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        let server = self.name.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%server, %error, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(Sender::Http2(sender))
    }

    /// A TCP connection to the server, with TLS on top if `connector` says so.
    async fn transport(
        &self,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<TokioIo<UpstreamIo>, ConnectError> {
        let connecting = async {
            let stream = TcpStream::connect(self.addr).await.map_err(ConnectError::Io)?;
            // Requests are small writes that must not wait for an ACK.
            stream.set_nodelay(true).map_err(ConnectError::Io)?;
            match &connector.tls {
                None => Ok(UpstreamIo::Plain(stream)),
                Some((config, name)) => tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map(|tls| UpstreamIo::Tls(Box::new(tls)))
                    .map_err(ConnectError::Io),
            }
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(io) => io.map(TokioIo::new),
            Err(_) => Err(ConnectError::Timeout(timeout)),
        }
    }
}

/// Marks a worker's HTTP/2 connection as being opened; when dropped, the
/// requests waiting for it are woken, and a slot still marked (the opening
/// failed or was abandoned) is cleared.
struct Opening<'a> {
    server: &'a ServerState,
    opened: Arc<Notify>,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.server.shared.get() {
            let mut slot = slot.borrow_mut();
            if matches!(&*slot, SharedH2::Opening(opened) if Arc::ptr_eq(opened, &self.opened)) {
                *slot = SharedH2::None;
            }
        }
        self.opened.notify_waiters();
    }
}

/// What opening a connection to one server needs.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    /// The pool's `protocol`.
    pub(crate) protocol: UpstreamProtocol,
    /// For `https://` servers: the client configuration and the name to
    /// send and verify.
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
}

/// An upstream connection's socket: plain or TLS.
#[derive(Debug)]
pub(crate) enum UpstreamIo {
    /// In the clear.
    Plain(TcpStream),
    /// Over TLS (boxed: the TLS state is large).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for UpstreamIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => std::pin::Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for UpstreamIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => std::pin::Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => std::pin::Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => std::pin::Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => std::pin::Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A request counted in its server's in-flight number; dropping it ends
/// the count.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ServerState>);

impl InFlight {
    /// The server the request went to.
    pub(crate) fn server(&self) -> &Arc<ServerState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection to a server could not be established.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The TCP connect did not finish in time.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed (refused, unreachable, ...).
    #[error("connect failed: {0}")]
    Io(#[source] io::Error),
    /// The HTTP connection could not be set up.
    #[error("handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The TLS client configuration or server name is unusable.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The instant all hold-out deadlines count from.
fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn millis_since_origin() -> u64 {
    clock_origin().elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_fails: u32, eject_on_5xx: Option<u32>) -> crate::config::Upstream {
        crate::config::Upstream {
            name: "app".into(),
            balance: crate::config::Balance::RoundRobin,
            servers: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            max_fails,
            fail_timeout: Duration::from_secs(10),
            eject_on_5xx,
            on_all_down: OnAllDown::Fail,
            retries: 1,
            retry_on: crate::config::RetryOn::default(),
            retry_non_idempotent: false,
            health_check: None,
            protocol: crate::config::UpstreamProtocol::Http1,
            tls: crate::config::UpstreamTls::default(),
            tunnel_timeout: Duration::from_secs(3600),
        }
    }

    #[test]
    fn host_of_dns_members_leaves_out_the_address() {
        let member = ServerState::new(
            "app.internal:80 (10.0.0.1:80)",
            "10.0.0.1:80".parse().unwrap(),
            true,
        );
        assert_eq!(member.host(), "app.internal:80");
        let ip = ServerState::new("127.0.0.1:9001", "127.0.0.1:9001".parse().unwrap(), true);
        assert_eq!(ip.host(), "127.0.0.1:9001");
    }

    fn server() -> Arc<ServerState> {
        Arc::new(ServerState::new(
            "127.0.0.1:1",
            "127.0.0.1:1".parse().unwrap(),
            true,
        ))
    }

    #[test]
    fn max_fails_within_the_window_holds_out_and_a_response_recovers() {
        let s = server();
        let three = settings(3, None);
        assert!(s.record_failure(&three).is_none());
        assert!(s.record_failure(&three).is_none());
        assert!(s.is_available());
        assert!(matches!(s.record_failure(&three), Some(HoldOutReason::Failures)));
        assert!(!s.is_available());
        s.record_response(200, &three);
        assert!(s.is_available());
    }

    #[test]
    fn max_fails_zero_never_holds_out() {
        let s = server();
        for _ in 0..10 {
            assert!(s.record_failure(&settings(0, None)).is_none());
        }
        assert!(s.is_available());
    }

    #[test]
    fn consecutive_5xx_eject() {
        let s = server();
        let two = settings(1, Some(2));
        assert!(s.record_response(502, &two).is_none());
        assert!(
            s.record_response(200, &two).is_none(),
            "a success resets the count"
        );
        assert!(s.record_response(500, &two).is_none());
        assert!(matches!(
            s.record_response(503, &two),
            Some(HoldOutReason::Consecutive5xx)
        ));
        assert!(!s.is_available());
    }

    #[test]
    fn active_health_and_in_flight() {
        let s = server();
        assert!(s.set_up(false));
        assert!(!s.is_available());
        s.set_up(true);
        let guard = s.start_request();
        assert_eq!(s.in_flight(), 1);
        drop(guard);
        assert_eq!(s.in_flight(), 0);
    }
}
