//! One request: route, pick a server, forward, map errors to a status.
//!
//! This is the hot path. It loads the current [`RoutingTable`] once, keeps
//! only the `Arc` of the pool it routes to, and never takes a lock or parses
//! configuration. Bodies are streamed in both directions: the client's body
//! is handed to the upstream connection as it arrives, and the upstream's
//! body is handed back to the client the same way ([`ProxyBody`]).
//!
//! Failover and retries: the pool offers its servers in policy order,
//! available ones only (primaries, then backups). An attempt that fails as
//! `retry_on` allows moves to the next server, up to `retries` extra
//! attempts, never to the same server twice. A request that never reached a
//! server (connect failure) can always go elsewhere, whatever its method; one
//! that was written can be sent again only if it has no body and an
//! idempotent method (or `retry_non_idempotent`). A pooled keep-alive
//! connection that the server closed just as we used it is replaced
//! transparently, without counting as an attempt. Every outcome feeds the
//! server's passive health ([`ServerState::record_failure`],
//! [`ServerState::record_response`]).

mod tunnel;

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::rng::random_u64;
use crate::balance::{header_items, request_key};
use crate::config::UpstreamProtocol;
use crate::forward::tunnel::Tunnel;
use crate::observe::access_log::{AccessLogger, AccessRecord};
use crate::observe::metrics::{OpenConnection, Outcome, RouteStats};
use crate::table::{Live, Target};
use crate::upstream::{
    ConnectError, HoldOutReason, InFlight, Sender, ServerState, UpstreamBody, UpstreamPool,
};

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
    client_ip: HeaderValue,
    /// The current routing table.
    pub(crate) live: Live,
    /// Where tunnels (upgraded connections) run, so draining waits for them.
    tasks: TaskTracker,
    /// The listener's stop token, which tunnels watch.
    stop: CancellationToken,
    /// Counts the connection open while anything holds this: its requests,
    /// and tunnels, which outlive the HTTP connection.
    _open: OpenConnection,
    /// `X-Forwarded-Proto`: `https` on TLS listeners.
    proto: HeaderValue,
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
        }
    }
}

/// Why a request could not be proxied. [`Error::status`] is the one place
/// where a failure becomes an HTTP status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No route of the listener matches and it has no default upstream.
    #[error("no route matches")]
    NoRoute,
    /// No server of the upstream is available.
    #[error("upstream `{upstream}`: no server available")]
    NoServer {
        /// The upstream's name.
        upstream: Arc<str>,
    },
    /// The last attempt failed (and no retry was allowed or left).
    #[error("upstream `{upstream}` server {server}: {failure}")]
    Failed {
        /// The upstream's name.
        upstream: Arc<str>,
        /// The server of the last attempt.
        server: Arc<str>,
        /// What went wrong.
        failure: Failure,
    },
}

/// How one attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// No connection could be established.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection closed or failed before a response header arrived.
    #[error("no response: {0}")]
    Reset(#[source] hyper::Error),
    /// No response header within `read_timeout`.
    #[error("no response within {0:?}")]
    ReadTimeout(Duration),
}

impl Failure {
    fn is_timeout(&self) -> bool {
        matches!(
            self,
            Failure::Connect(ConnectError::Timeout(_)) | Failure::ReadTimeout(_)
        )
    }

    /// The attempt outcome it counts as.
    fn outcome(&self) -> Outcome {
        match self {
            _ if self.is_timeout() => Outcome::Timeout,
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::Reset(_) | Failure::ReadTimeout(_) => Outcome::Reset,
        }
    }

    /// Whether `retry_on` allows moving on after this failure.
    fn retry_allowed(&self, retry_on: &crate::config::RetryOn) -> bool {
        match self {
            _ if self.is_timeout() => retry_on.timeout,
            Failure::Connect(_) => retry_on.connect,
            Failure::Reset(_) | Failure::ReadTimeout(_) => retry_on.reset,
        }
    }
}

impl Error {
    /// The status a client sees for this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::NoRoute => StatusCode::NOT_FOUND,
            Error::Failed { failure, .. } if failure.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            Error::NoServer { .. } | Error::Failed { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Serve one request. Never fails: errors become short plain-text responses.
pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<Connection>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let (target, unmatched, access_log) = {
        let table = conn.live.load();
        let router = table.router(&conn.listener);
        let target = router
            .and_then(|router| router.route(request_host(&req), req.uri().path()))
            .cloned();
        let unmatched = match target {
            Some(_) => None,
            None => router.map(|router| router.unmatched.clone()),
        };
        (target, unmatched, table.access_log.clone())
    };
    // A request id is made only when the request has no usable one and
    // someone needs it: the upstream, or the access log.
    let proxied = matches!(target, Some(Target::Proxy { .. }));
    let new_id = (!has_request_id(req.headers()) && (proxied || access_log.is_some())).then(new_request_id);
    // Only what the access log needs is kept, and only when it is on.
    // Boxed: it is large, and only there when the access log is on; inline,
    // it would be copied with every request's future whether used or not.
    let mut access = access_log.map(|logger| Box::new(AccessEntry::of(logger, &req, &conn, new_id.as_ref())));

    let (result, stats) = match target {
        None => (Err(Error::NoRoute), unmatched),
        Some(Target::Respond {
            status,
            body,
            location,
            stats,
        }) => (
            Ok(respond_route(status, body, location.as_deref(), &req)),
            Some(stats),
        ),
        Some(Target::Proxy { pool, strip, stats }) => {
            let forwarded = match upgrade_protocol(&req) {
                // Boxed: upgrades are rare, and their larger state would otherwise
                // be part of every request's future.
                Some(protocol) => Box::pin(forward_upgrade(req, protocol, &pool, strip, &conn, new_id)).await,
                None => forward(req, &pool, strip, &conn, new_id).await,
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
        let status = error.status();
        if status.is_server_error() {
            tracing::warn!(listener = %conn.listener, client = %conn.client, %error, "{}", status);
        } else {
            tracing::debug!(listener = %conn.listener, client = %conn.client, %error, "{}", status);
        }
        respond(status, error_body(status))
    });
    let status = response.status().as_u16();
    if let Some(stats) = &stats {
        stats.count(status);
    }
    if let Some(access) = &mut access {
        access.status = status;
    }
    if stats.is_some() || access.is_some() {
        // Boxed: the body is moved often, and a pointer moves cheaper than
        // the record.
        response.body_mut().completion = Some(Box::new(Completion {
            started,
            stats,
            access,
            bytes: 0,
        }));
    }
    Ok(response)
}

/// The host a request is for: an absolute-form target's authority
/// overrides `Host` (RFC 9112 3.2.2).
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// Whether the request carries an `X-Request-Id` worth keeping.
fn has_request_id(headers: &HeaderMap) -> bool {
    headers
        .get(&X_REQUEST_ID)
        .is_some_and(|id| !id.is_empty() && id.len() <= 200)
}

/// 32 hex digits (128 random bits), like nginx's `$request_id`. Not
/// cryptographic: it only has to be unique enough to find a request in logs.
///
/// The bits come from ginx's one generator ([`crate::balance::rng`]). Ids
/// are cut from a per-thread slab, so making one allocates nothing (one slab
/// per 128 ids) and cloning one only counts a reference.
fn new_request_id() -> HeaderValue {
    const SLAB: usize = 32 * 128;
    thread_local! {
        static IDS: RefCell<bytes::BytesMut> = RefCell::new(bytes::BytesMut::new());
    }
    let bits = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    let id = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.capacity() < 32 {
            *ids = bytes::BytesMut::with_capacity(SLAB);
        }
        for byte in bits.to_be_bytes() {
            ids.extend_from_slice(&HEX_PAIRS[usize::from(byte)]);
        }
        ids.split().freeze()
    });
    HeaderValue::from_maybe_shared(id).expect("hex digits are a valid header value")
}

/// Two hex digits per byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [digits[i >> 4], digits[i & 0xf]];
        i += 1;
    }
    pairs
};

/// What the access log line of a request needs, taken before the request
/// is handed on.
#[derive(Debug)]
struct AccessEntry {
    logger: AccessLogger,
    time: SystemTime,
    conn: Arc<Connection>,
    method: http::Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    request_id: HeaderValue,
    status: u16,
    /// The server that answered, and how long (from the request's start)
    /// until its response header.
    upstream: Option<(Arc<str>, Duration)>,
}

impl AccessEntry {
    /// The entry for `req`, whose id is `new_id` if one was made for it.
    fn of(
        logger: AccessLogger,
        req: &Request<Incoming>,
        conn: &Arc<Connection>,
        new_id: Option<&HeaderValue>,
    ) -> Self {
        let header = |name: &HeaderName| req.headers().get(name).cloned();
        let request_id = new_id
            .cloned()
            .or_else(|| header(&X_REQUEST_ID))
            .unwrap_or_else(|| HeaderValue::from_static("-"));
        AccessEntry {
            logger,
            time: SystemTime::now(),
            conn: conn.clone(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            host: header(&header::HOST),
            referer: header(&header::REFERER),
            user_agent: header(&header::USER_AGENT),
            request_id,
            status: 0,
            upstream: None,
        }
    }

    fn write(&self, bytes: u64, duration: Duration) {
        self.logger.log(&AccessRecord {
            time: self.time,
            client: self.conn.client,
            listener: &self.conn.listener,
            method: &self.method,
            target: &self.uri,
            version: self.version,
            host: self.host.as_ref().and_then(|h| h.to_str().ok()),
            status: self.status,
            bytes_sent: bytes,
            duration,
            upstream: self.upstream.as_ref().map(|(server, _)| &**server),
            upstream_time: self.upstream.as_ref().map(|(_, time)| *time),
            request_id: self.request_id.to_str().unwrap_or("-"),
            referer: self.referer.as_ref(),
            user_agent: self.user_agent.as_ref(),
        });
    }
}

/// What is recorded once a response has been sent (or abandoned): its
/// duration in the route's histogram, and its access log line.
#[derive(Debug)]
struct Completion {
    started: Instant,
    stats: Option<Arc<RouteStats>>,
    access: Option<Box<AccessEntry>>,
    /// Response body bytes handed to the client connection.
    bytes: u64,
}

impl Drop for Completion {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        if let Some(stats) = &self.stats {
            stats.observe(duration);
        }
        if let Some(access) = &self.access {
            access.write(self.bytes, duration);
        }
    }
}

/// Send `req` to the servers of `pool` until one answers or the retry
/// policy says stop.
async fn forward(
    req: Request<Incoming>,
    pool: &UpstreamPool,
    strip: Option<usize>,
    conn: &Connection,
    new_id: Option<HeaderValue>,
) -> Result<(Response<ProxyBody>, Arc<ServerState>), Error> {
    let settings = &pool.settings;
    let key = pool
        .hash_key()
        .map_or(0, |k| request_key(k, &req, &conn.client_ip));
    // gRPC needs `TE: trailers` to reach an HTTP/2 server; towards an
    // HTTP/1.1 one it is a hop-by-hop header like any other.
    let te_trailers = settings.protocol != UpstreamProtocol::Http1 && asks_for_trailers(req.headers());
    let mut req = upstream_request(req, strip, conn, new_id);
    if settings.protocol != UpstreamProtocol::Http1 {
        http2_target(&mut req, settings.protocol, te_trailers);
    }
    // A written request can be sent again only if nothing of it is lost:
    // no body, and a method that may be repeated.
    // HTTP/1.0 may leave out `Host`; an HTTP/1.1 server must get one. As in
    // Caddy (Go's transport), the server's own name stands in.
    let missing_host =
        settings.protocol == UpstreamProtocol::Http1 && !req.headers().contains_key(header::HOST);
    let replay = (req.body().is_end_stream()
        && (settings.retry_non_idempotent || req.method().is_idempotent()))
    .then(|| Replay::of(&req));
    let (parts, body) = req.into_parts();
    // The read timeout counts from the end of the upload, not its start.
    let uploaded = (!body.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
    let mut unsent = Some(Request::from_parts(
        parts,
        UpstreamBody::Client(body, uploaded.clone()),
    ));

    let mut attempts_left = settings.retries.saturating_add(1);
    let mut last_failure: Option<(Arc<ServerState>, Failure)> = None;
    // Boxed, like the connect below: rare, and inline it would be part of
    // every request's future.
    let mut last_5xx: Option<Box<(Response<ProxyBody>, Arc<ServerState>)>> = None;
    for server in pool.candidates(key) {
        if attempts_left == 0 {
            break;
        }
        let Some(mut req) = unsent.take().or_else(|| replay.as_ref().map(Replay::request)) else {
            break;
        };
        if missing_host {
            set_host(&mut req, server);
        }
        if last_failure.is_some() || last_5xx.is_some() {
            pool.state().count_retry();
        }
        attempts_left -= 1;
        match attempt(server, req, pool, replay.as_ref(), uploaded.as_deref()).await {
            Ok(response) => {
                let status = response.status();
                note_response(pool, server, status);
                let retry_5xx = status.is_server_error()
                    && settings.retry_on.status_5xx
                    && attempts_left > 0
                    && replay.is_some();
                if !retry_5xx {
                    return Ok((response, server.clone()));
                }
                tracing::warn!(upstream = %pool.name, server = %server.name, %status, "retrying on another server");
                last_5xx = Some(Box::new((response, server.clone())));
            }
            Err((failure, back)) => {
                server.stats.record(failure.outcome());
                if let Some(reason) = server.record_failure(settings) {
                    log_hold_out(pool, server, reason);
                }
                tracing::warn!(upstream = %pool.name, server = %server.name, error = %failure, "attempt failed");
                let allowed = failure.retry_allowed(&settings.retry_on);
                unsent = back;
                last_failure = Some((server.clone(), failure));
                if !allowed {
                    break;
                }
            }
        }
    }
    if let Some(answered) = last_5xx {
        return Ok(*answered);
    }
    Err(match last_failure {
        Some((server, failure)) => Error::Failed {
            upstream: pool.name.clone(),
            server: server.name.clone(),
            failure,
        },
        None => Error::NoServer {
            upstream: pool.name.clone(),
        },
    })
}

/// The protocol a request asks to switch to (`Connection: upgrade` plus
/// `Upgrade: PROTOCOL`, HTTP/1.1 only), unless it is `h2c`: that upgrade
/// is for this hop, and its `HTTP2-Settings` are never forwarded.
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let protocol = req.headers().get(header::UPGRADE)?;
    let asked = header_items(req.headers(), header::CONNECTION, ',')
        .any(|token| token.eq_ignore_ascii_case("upgrade"));
    (asked && !protocol.as_bytes().eq_ignore_ascii_case(b"h2c")).then(|| protocol.clone())
}

/// Forward a request that asks to switch protocols, on a new connection of
/// its own (never pooled), with one attempt: no retries, whatever fails.
/// A 101 answer opens a [`Tunnel`]; any other answer is an ordinary
/// response, after which the connection closes.
async fn forward_upgrade(
    mut req: Request<Incoming>,
    protocol: HeaderValue,
    pool: &UpstreamPool,
    strip: Option<usize>,
    conn: &Arc<Connection>,
    new_id: Option<HeaderValue>,
) -> Result<(Response<ProxyBody>, Arc<ServerState>), Error> {
    let settings = &pool.settings;
    let key = pool
        .hash_key()
        .map_or(0, |k| request_key(k, &req, &conn.client_ip));
    let Some(server) = pool.candidates(key).next() else {
        return Err(Error::NoServer {
            upstream: pool.name.clone(),
        });
    };
    let client_side = hyper::upgrade::on(&mut req);
    let mut req = upstream_request(req, strip, conn, new_id).map(|body| UpstreamBody::Client(body, None));
    if !req.headers().contains_key(header::HOST) {
        set_host(&mut req, server);
    }
    // Hop-by-hop, yet they are what this hop is asked to do.
    req.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    req.headers_mut().insert(header::UPGRADE, protocol);
    let failed = |failure: Failure| {
        server.stats.record(failure.outcome());
        if let Some(reason) = server.record_failure(settings) {
            log_hold_out(pool, server, reason);
        }
        Error::Failed {
            upstream: pool.name.clone(),
            server: server.name.clone(),
            failure,
        }
    };
    let connected = match pool.connector(server) {
        Ok(connector) => {
            server
                .connect_for_upgrade(&connector, settings.connect_timeout)
                .await
        }
        Err(error) => Err(error),
    };
    let mut sender = match connected {
        Ok(sender) => sender,
        Err(error) => return Err(failed(Failure::Connect(error))),
    };
    let in_flight = server.start_request();
    let sent = tokio::select! {
        biased;
        sent = sender.try_send_request(req) => sent,
        () = ReadDeadline::new(settings.read_timeout, None) => {
            return Err(failed(Failure::ReadTimeout(settings.read_timeout)));
        }
    };
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => return Err(failed(Failure::Reset(error.into_error()))),
    };
    let status = response.status();
    note_response(pool, server, status);
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // The connection goes when its body is done: it was opened for this
        // request only.
        return Ok((upstream_response(response, None, in_flight), server.clone()));
    }
    let upstream_side = hyper::upgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    let switched_to = parts.headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers, Message::Response);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(protocol) = switched_to {
        parts.headers.insert(header::UPGRADE, protocol);
    }
    let tunnel = Tunnel {
        client: client_side,
        upstream: upstream_side,
        idle_timeout: settings.tunnel_timeout,
        stop: conn.stop.clone(),
        grace: conn.live.load().shutdown_timeout,
        in_flight,
        _connection: conn.clone(),
    };
    conn.tasks.spawn(tunnel.run());
    Ok((
        Response::from_parts(parts, ProxyBody::full(Bytes::new())),
        server.clone(),
    ))
}

/// One attempt on one server. On failure, the request comes back if it was
/// never written (so it can go elsewhere whatever its method).
async fn attempt(
    server: &Arc<ServerState>,
    mut req: Request<UpstreamBody>,
    pool: &UpstreamPool,
    replay: Option<&Replay>,
    uploaded: Option<&AtomicBool>,
) -> Result<Response<ProxyBody>, (Failure, Option<Request<UpstreamBody>>)> {
    let settings = &pool.settings;
    // One transparent resend for the race where a pooled connection is
    // closed by the server just as we write on it.
    let mut resend_left = 1;
    loop {
        let (mut sender, pooled) = match server.checkout().await {
            Some(sender) => (sender, true),
            None => {
                // Boxed: connecting (TCP, maybe TLS) is the largest state
                // of an attempt and the rare case once the pool is warm;
                // inline, every request's future would carry and copy it.
                let connected = match pool.connector(server) {
                    Ok(connector) => Box::pin(server.connect(&connector, settings.connect_timeout)).await,
                    Err(error) => Err(error),
                };
                match connected {
                    Ok(sender) => (sender, false),
                    Err(error) => return Err((Failure::Connect(error), Some(req))),
                }
            }
        };
        let in_flight = server.start_request();
        let sent = tokio::select! {
            biased;
            sent = sender.try_send_request(req) => sent,
            () = ReadDeadline::new(settings.read_timeout, uploaded) => {
                // Dropping the send closes that connection.
                return Err((Failure::ReadTimeout(settings.read_timeout), None));
            }
        };
        match sent {
            Ok(response) => return Ok(upstream_response(response, Some(sender), in_flight)),
            Err(mut error) => match error.take_message() {
                // Not written: the connection was closed before we used it.
                Some(unsent) if pooled => req = unsent,
                Some(unsent) => return Err((Failure::Reset(error.into_error()), Some(unsent))),
                None => match replay {
                    Some(replay) if pooled && resend_left > 0 => {
                        resend_left -= 1;
                        tracing::debug!(server = %server.name, error = %error.error(), "pooled connection failed; resending on a new one");
                        req = replay.request();
                    }
                    _ => return Err((Failure::Reset(error.into_error()), None)),
                },
            },
        }
    }
}

/// `read_timeout`, counted from when the request has been sent whole:
/// at once for a request without a body, else from the end of the upload.
/// Checked, not scheduled, like [`crate::server::timer`]'s deadlines: the client
/// connection's tick polls it.
struct ReadDeadline<'a> {
    timeout: Duration,
    uploaded: Option<&'a AtomicBool>,
    deadline: Option<Instant>,
}

impl<'a> ReadDeadline<'a> {
    fn new(timeout: Duration, uploaded: Option<&'a AtomicBool>) -> Self {
        let deadline = uploaded.is_none().then(|| Instant::now() + timeout);
        ReadDeadline {
            timeout,
            uploaded,
            deadline,
        }
    }
}

impl std::future::Future for ReadDeadline<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let deadline = match this.deadline {
            Some(deadline) => deadline,
            None if this.uploaded.is_some_and(|u| u.load(Ordering::Relaxed)) => {
                *this.deadline.insert(Instant::now() + this.timeout)
            }
            None => return Poll::Pending,
        };
        if Instant::now() >= deadline {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// What it takes to send a request again: its head (it has no body).
struct Replay {
    method: http::Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    fn of(req: &Request<Incoming>) -> Self {
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        }
    }

    fn request(&self) -> Request<UpstreamBody> {
        let mut req = Request::new(UpstreamBody::Empty);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// A server answered with `status`: count the attempt and feed its passive
/// health.
fn note_response(pool: &UpstreamPool, server: &ServerState, status: StatusCode) {
    server.stats.record(match status.is_server_error() {
        true => Outcome::Status5xx,
        false => Outcome::Ok,
    });
    if let Some(reason) = server.record_response(status.as_u16(), &pool.settings) {
        log_hold_out(pool, server, reason);
    }
}

fn log_hold_out(pool: &UpstreamPool, server: &ServerState, reason: HoldOutReason) {
    let (why, limit) = match reason {
        HoldOutReason::Failures => ("max_fails", pool.settings.max_fails),
        HoldOutReason::Consecutive5xx => ("eject_on_5xx", pool.settings.eject_on_5xx.unwrap_or(0)),
    };
    tracing::warn!(
        upstream = %pool.name,
        server = %server.name,
        reason = why,
        limit,
        hold_out = ?pool.settings.fail_timeout,
        "server held out"
    );
}

/// The request as it is sent upstream: origin-form target (prefix stripped
/// if asked), hop-by-hop headers removed, `X-Forwarded-*` set, HTTP/1.1.
fn upstream_request(
    req: Request<Incoming>,
    strip: Option<usize>,
    conn: &Connection,
    new_id: Option<HeaderValue>,
) -> Request<Incoming> {
    let client_ip = &conn.client_ip;
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;

    // An absolute-form target's authority overrides Host (RFC 9112 3.2.2).
    if let Some(value) = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, value);
    }
    if strip.is_some() || parts.uri.scheme().is_some() {
        parts.uri = origin_form(&parts.uri, strip.unwrap_or(0));
    }
    // `Expect: 100-continue` is not forwarded either: hyper answers it
    // towards the client when the body is first read, as nginx does.
    remove_hop_by_hop(headers, Message::Request);
    // Room for the X-Forwarded-* headers and the request id, so the map
    // grows at most once.
    headers.reserve(4);
    // A usable incoming id stays as it is; otherwise `new_id` replaces it.
    if let Some(id) = new_id {
        headers.insert(X_REQUEST_ID.clone(), id);
    }

    let forwarded_for = match joined(headers, &X_FORWARDED_FOR) {
        Some(previous) => {
            let ip = client_ip.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{previous}, {ip}")).unwrap_or_else(|_| client_ip.clone())
        }
        None => client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_FORWARDED_PROTO.clone(), conn.proto.clone());
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// Give a request that has no `Host` the server's.
fn set_host<B>(req: &mut Request<B>, server: &ServerState) {
    if let Ok(host) = HeaderValue::from_str(server.host()) {
        req.headers_mut().insert(header::HOST, host);
    }
}

/// Whether a request's `TE` asks for trailers.
fn asks_for_trailers(headers: &HeaderMap) -> bool {
    header_items(headers, header::TE, ',').any(|t| t.eq_ignore_ascii_case("trailers"))
}

/// Make an upstream request fit for an HTTP/2 server: the target in
/// absolute form so that `:scheme` and `:authority` are right (`https` for
/// `h2`, which is always over TLS), and `TE: trailers` if the client sent it.
fn http2_target<B>(req: &mut Request<B>, protocol: UpstreamProtocol, te_trailers: bool) {
    let scheme = match protocol {
        UpstreamProtocol::H2 => "https",
        UpstreamProtocol::Http1 | UpstreamProtocol::H2c => "http",
    };
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    if let Some(authority) = authority {
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
        {
            *req.uri_mut() = uri;
            // `:authority` carries it now.
            req.headers_mut().remove(header::HOST);
        }
    }
    *req.version_mut() = Version::HTTP_2;
    if te_trailers {
        req.headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// `uri` as `/path?query`, with the first `strip` bytes of the path removed
/// (the matched prefix), keeping a leading `/`. Percent-encoding is kept.
fn origin_form(uri: &Uri, strip: usize) -> Uri {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let rest = path_and_query.get(strip..).unwrap_or("");
    let rewritten = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    // The input was a valid request target, and removing a prefix of its
    // path cannot make it invalid.
    rewritten.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

/// The upstream's response as sent to the client. The connection goes back
/// to the pool when the body has been read to its end; the request counts
/// as in flight until then.
fn upstream_response(
    response: Response<Incoming>,
    sender: Option<Sender>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers, Message::Response);
    let mut body = ProxyBody {
        kind: Kind::Upstream {
            body,
            conn: sender,
            in_flight: Some(in_flight),
        },
        completion: None,
    };
    body.release_if_done();
    Response::from_parts(parts, body)
}

/// A `respond` route's answer; `location`'s `{host}` is the request's host
/// without its port and `{uri}` its path and query.
fn respond_route(
    status: StatusCode,
    body: Bytes,
    location: Option<&str>,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    let mut response = respond(status, body);
    if let Some(template) = location {
        let host = request_host(req).map_or("", |h| crate::table::strip_port(h));
        let uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = template.replace("{host}", host).replace("{uri}", uri);
        match HeaderValue::from_str(&location) {
            Ok(value) => {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Err(_) => return respond(StatusCode::BAD_REQUEST, error_body(StatusCode::BAD_REQUEST)),
        }
    }
    response
}

fn respond(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn error_body(status: StatusCode) -> Bytes {
    Bytes::from(format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("Error")
    ))
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// then `Expect`, which only requests lose. [`hop_by_hop_bit`] gives each
/// its bit: its index here.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
];
const CONNECTION_BIT: u16 = 1 << 0;
const EXPECT_BIT: u16 = 1 << 7;

/// The bit of `name` if it is one of [`HOP_BY_HOP`], else 0. One string
/// match (a length switch, then a compare): names are lowercase, and a
/// standard name's string is a table lookup.
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    match name.as_str() {
        "connection" => CONNECTION_BIT,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "te" => 1 << 3,
        "trailer" => 1 << 4,
        "transfer-encoding" => 1 << 5,
        "upgrade" => 1 << 6,
        "expect" => EXPECT_BIT,
        _ => 0,
    }
}

/// Which message [`remove_hop_by_hop`] cleans: a request also loses
/// `Expect` (hyper answers `100-continue` towards the client itself).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Message {
    Request,
    Response,
}

/// Remove hop-by-hop headers, including every header `Connection` names.
///
/// This runs twice per request, so it costs one pass over the names (no
/// hashing) when nothing is to be removed, and removes only what is there
/// otherwise.
fn remove_hop_by_hop(headers: &mut HeaderMap, message: Message) {
    let mut present = headers.keys().fold(0, |bits, name| bits | hop_by_hop_bit(name));
    if message == Message::Response {
        present &= !EXPECT_BIT;
    }
    if present == 0 {
        return;
    }
    // `close` and `keep-alive` are the usual tokens of `Connection`, and
    // name nothing to remove beyond the list.
    if present & CONNECTION_BIT != 0 {
        let named: Vec<HeaderName> = header_items(headers, header::CONNECTION, ',')
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// All values of a header joined by `, `, if it is present.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |mut acc, v| {
        acc.push_str(", ");
        acc.push_str(v);
        acc
    }))
}

/// The body of every response ginx sends: an upstream's body, streamed, or
/// one built here (respond routes, errors).
#[derive(Debug)]
pub(crate) struct ProxyBody {
    kind: Kind,
    /// Recorded when the body is dropped (after its end, or abandoned).
    completion: Option<Box<Completion>>,
}

#[derive(Debug)]
enum Kind {
    Upstream {
        body: Incoming,
        /// The connection the body arrives on; back to its server's pool
        /// once the body is complete, dropped (closing it) otherwise.
        conn: Option<Sender>,
        /// Ends the request's in-flight count when the body is done.
        in_flight: Option<InFlight>,
    },
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// A body of fixed bytes.
    pub(crate) fn full(data: Bytes) -> Self {
        ProxyBody {
            kind: Kind::Full((!data.is_empty()).then_some(data)),
            completion: None,
        }
    }

    fn release_if_done(&mut self) {
        if let Kind::Upstream { body, .. } = &self.kind {
            if body.is_end_stream() {
                self.release(true);
            }
        }
    }

    /// The body is done: the connection goes back to the pool if `reuse`,
    /// and the request stops counting as in flight.
    fn release(&mut self, reuse: bool) {
        if let Kind::Upstream { conn, in_flight, .. } = &mut self.kind {
            if let Some(in_flight) = in_flight.take() {
                if let (Some(sender), true) = (conn.take(), reuse) {
                    in_flight.server().check_in(sender);
                }
            }
            *conn = None;
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            Kind::Upstream { body, .. } => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                match &frame {
                    // The connection's state is unknown after an error.
                    Some(Err(_)) => this.release(false),
                    None => this.release(true),
                    Some(Ok(_)) => this.release_if_done(),
                }
                frame
            }
        };
        if let (Some(Ok(frame)), Some(completion)) = (&frame, &mut this.completion) {
            if let Some(data) = frame.data_ref() {
                completion.bytes += data.len() as u64;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // The server may stop polling once the body reports its end; a body
        // dropped before its end leaves its connection unusable.
        self.release_if_done();
        self.release(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(Error::NoRoute.status(), StatusCode::NOT_FOUND);
        let none = Error::NoServer {
            upstream: "app".into(),
        };
        assert_eq!(none.status(), StatusCode::BAD_GATEWAY);
        let failed = |failure| Error::Failed {
            upstream: "app".into(),
            server: "s".into(),
            failure,
        };
        let refused = ConnectError::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(
            failed(Failure::Connect(refused)).status(),
            StatusCode::BAD_GATEWAY
        );
        let timeout = ConnectError::Timeout(Duration::from_secs(1));
        assert_eq!(
            failed(Failure::Connect(timeout)).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            failed(Failure::ReadTimeout(Duration::from_secs(1))).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[test]
    fn request_ids_are_hex_and_distinct_across_slabs() {
        let ids: std::collections::HashSet<String> = (0..300)
            .map(|_| new_request_id().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 300);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn strip_prefix_keeps_query_and_encoding() {
        let uri: Uri = "/api/users%20x?q=1".parse().unwrap();
        assert_eq!(origin_form(&uri, 5), "/users%20x?q=1");
        let uri: Uri = "/api/".parse().unwrap();
        assert_eq!(origin_form(&uri, 5), "/");
        let uri: Uri = "/api?x".parse().unwrap();
        assert_eq!(origin_form(&uri, 4), "/?x");
        let uri: Uri = "http://h/p?q".parse().unwrap();
        assert_eq!(origin_form(&uri, 0), "/p?q");
    }

    #[test]
    fn hop_by_hop_removed_with_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, Message::Request);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn expect_is_removed_from_requests_only() {
        let with_expect = || {
            let mut h = HeaderMap::new();
            h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            h.insert(header::TE, HeaderValue::from_static("trailers"));
            h
        };
        let mut request = with_expect();
        remove_hop_by_hop(&mut request, Message::Request);
        assert!(request.is_empty());
        let mut response = with_expect();
        remove_hop_by_hop(&mut response, Message::Response);
        assert_eq!(response.keys().collect::<Vec<_>>(), [header::EXPECT]);
    }
}
