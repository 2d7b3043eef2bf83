//! One request: route, pick a server, forward, map errors to a status.
//!
//! This is the hot path. It loads the current [`RoutingTable`] once, keeps
//! only the `Arc` of the pool it routes to, and never takes a lock or parses
//! configuration. Bodies are streamed in both directions: the client's body
//! is handed to the upstream connection as it arrives, and the upstream's
//! body is handed back to the client the same way ([`ProxyBody`]).
//!
//! Failover: a server that cannot be connected to is held out of rotation
//! for [`crate::upstream::FAIL_TIMEOUT`] and the request moves to the next
//! candidate. That is always safe, whatever the method, because nothing of
//! the request has reached a server yet. A pooled connection that turns out
//! to be closed before the request was written is replaced the same way.
//! Once a request has been written, a failure is answered with 502: whether
//! to re-send it is a question of idempotency and retry policy, which this
//! module does not decide.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::table::{Live, Target};
use crate::upstream::{ConnectError, Sender, ServerState, UpstreamPool};

/// What one client connection's requests share.
#[derive(Debug)]
pub struct ConnInfo {
    /// The listener that accepted the connection; the routing table is
    /// looked up by this name on every request.
    pub listener: Arc<str>,
    /// The peer address, for the access log.
    pub client: SocketAddr,
    /// The peer's IP as a header value, made once per connection rather
    /// than once per request: most requests carry no `X-Forwarded-For` and
    /// then get exactly this value.
    client_ip: HeaderValue,
    /// The current routing table.
    pub live: Live,
}

impl ConnInfo {
    /// What requests on a connection from `client` to `listener` share.
    pub fn new(listener: Arc<str>, client: SocketAddr, live: Live) -> Self {
        let client_ip =
            HeaderValue::from_str(&client.ip().to_string()).expect("an IP address is a valid header value");
        ConnInfo {
            listener,
            client,
            client_ip,
            live,
        }
    }
}

/// Why a request could not be proxied. [`Error::status`] is the one place
/// where a failure becomes an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No route of the listener matches and it has no default upstream.
    #[error("no route matches")]
    NoRoute,
    /// Every server of the upstream is held out or failed to connect.
    #[error("upstream `{upstream}`: no server could take the request{}", last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    NoServer {
        /// The upstream's name.
        upstream: Arc<str>,
        /// The last connect error, if any server was tried.
        last: Option<ConnectError>,
    },
    /// The request was sent but no response came back.
    #[error("upstream `{upstream}` server {server}: {source}")]
    Upstream {
        /// The upstream's name.
        upstream: Arc<str>,
        /// The server that failed.
        server: Arc<str>,
        /// What hyper reported.
        #[source]
        source: hyper::Error,
    },
}

impl Error {
    /// The status a client sees for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoRoute => StatusCode::NOT_FOUND,
            Error::NoServer {
                last: Some(ConnectError::Timeout(_)),
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            Error::NoServer { .. } | Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Serve one request. Never fails: errors become short plain-text responses.
pub async fn handle(req: Request<Incoming>, conn: Arc<ConnInfo>) -> Result<Response<ProxyBody>, Infallible> {
    let (target, access_log) = {
        let table = conn.live.load();
        // An absolute-form target's authority overrides Host (RFC 9112 3.2.2).
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()));
        let target = table
            .router(&conn.listener)
            .and_then(|router| router.route(host, req.uri().path()))
            .cloned();
        (target, table.access_log)
    };
    // Only what the access log needs is kept, and only when it is on.
    let log = access_log.then(|| (Instant::now(), req.method().clone(), req.uri().clone()));

    let (result, server) = match target {
        None => (Err(Error::NoRoute), None),
        Some(Target::Respond { status, body }) => (Ok(respond(status, body)), None),
        Some(Target::Proxy { pool, strip }) => match forward(req, &pool, strip, &conn).await {
            Ok((response, server)) => (Ok(response), Some(server)),
            Err(error) => (Err(error), None),
        },
    };
    let response = result.unwrap_or_else(|error| {
        let status = error.status();
        if status.is_server_error() {
            tracing::warn!(listener = %conn.listener, client = %conn.client, %error, "{}", status);
        } else {
            tracing::debug!(listener = %conn.listener, client = %conn.client, %error, "{}", status);
        }
        respond(status, error_body(status))
    });
    if let Some((started, method, uri)) = log {
        tracing::info!(
            target: "ginx::access",
            listener = %conn.listener,
            client = %conn.client.ip(),
            %method,
            path = %uri,
            status = response.status().as_u16(),
            upstream = %server.as_ref().map_or("-", |s| &*s.name),
            duration_ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        );
    }
    Ok(response)
}

/// Send `req` to the first candidate of `pool` that takes it.
async fn forward(
    req: Request<Incoming>,
    pool: &UpstreamPool,
    strip: Option<usize>,
    conn: &ConnInfo,
) -> Result<(Response<ProxyBody>, Arc<ServerState>), Error> {
    let mut req = upstream_request(req, strip, &conn.client_ip);
    let mut last = None;
    let holds_out = pool.holds_out_failures();
    'servers: for server in pool.candidates() {
        if holds_out && !server.is_available() {
            continue;
        }
        loop {
            // A pooled connection first; a fresh one when none is idle.
            let (mut sender, fresh) = match server.checkout().await {
                Some(sender) => (sender, false),
                None => match server.connect(pool.connect_timeout).await {
                    Ok(sender) => (sender, true),
                    Err(error) => {
                        tracing::warn!(upstream = %pool.name, server = %server.name, %error, "server failed; trying the next one");
                        if holds_out {
                            server.hold_out();
                        }
                        last = Some(error);
                        continue 'servers;
                    }
                },
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    server.mark_ok();
                    return Ok((upstream_response(response, sender, server), server.clone()));
                }
                Err(mut error) => match error.take_message() {
                    // Not written: the connection closed before we used it.
                    // Safe to send elsewhere, whatever the method.
                    Some(unsent) if !fresh => req = unsent,
                    Some(unsent) => {
                        req = unsent;
                        last = Some(ConnectError::Handshake(error.into_error()));
                        continue 'servers;
                    }
                    None => {
                        return Err(Error::Upstream {
                            upstream: pool.name.clone(),
                            server: server.name.clone(),
                            source: error.into_error(),
                        })
                    }
                },
            }
        }
    }
    Err(Error::NoServer {
        upstream: pool.name.clone(),
        last,
    })
}

/// The request as it is sent upstream: origin-form target (prefix stripped
/// if asked), hop-by-hop headers removed, `X-Forwarded-*` set, HTTP/1.1.
fn upstream_request(
    req: Request<Incoming>,
    strip: Option<usize>,
    client_ip: &HeaderValue,
) -> Request<Incoming> {
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
    remove_hop_by_hop(headers, std::slice::from_ref(&header::EXPECT));
    // Room for the X-Forwarded-* headers, so the map grows at most once.
    headers.reserve(3);

    let forwarded_for = match joined(headers, &X_FORWARDED_FOR) {
        Some(previous) => {
            let ip = client_ip.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{previous}, {ip}")).unwrap_or_else(|_| client_ip.clone())
        }
        None => client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
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
/// to the pool when the body has been read to its end.
fn upstream_response(
    response: Response<Incoming>,
    sender: Sender,
    server: &Arc<ServerState>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers, &[]);
    let mut body = ProxyBody(Kind::Upstream {
        body,
        conn: Some((sender, server.clone())),
    });
    body.release_if_done();
    Response::from_parts(parts, body)
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

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
/// `Connection` must stay first: [`remove_hop_by_hop`] relies on it.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Remove hop-by-hop headers, including every header `Connection` names,
/// and any of `also` (at most 9 names: presence is tracked in a `u16`).
///
/// This runs twice per request, so it costs one pass of name comparisons
/// (no hashing) when nothing is to be removed, and removes only what is
/// there otherwise.
fn remove_hop_by_hop(headers: &mut HeaderMap, also: &[HeaderName]) {
    let listed = HOP_BY_HOP.iter().chain(also);
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = listed.clone().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Bit 0 is `Connection`: remove what it names. `close` and `keep-alive`
    // are the usual tokens and name nothing to remove beyond the list.
    if present & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !t.is_empty() && !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in listed.enumerate() {
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
pub struct ProxyBody(Kind);

#[derive(Debug)]
enum Kind {
    Upstream {
        body: Incoming,
        /// The connection the body arrives on; back to its server's pool
        /// once the body is complete, dropped (closing it) otherwise.
        conn: Option<(Sender, Arc<ServerState>)>,
    },
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// A body of fixed bytes.
    pub fn full(data: Bytes) -> Self {
        ProxyBody(Kind::Full((!data.is_empty()).then_some(data)))
    }

    fn release_if_done(&mut self) {
        if let Kind::Upstream { body, conn } = &mut self.0 {
            if body.is_end_stream() {
                if let Some((sender, server)) = conn.take() {
                    server.check_in(sender);
                }
            }
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
        match &mut this.0 {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream { body, conn } => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                match &frame {
                    // The connection's state is unknown after an error.
                    Some(Err(_)) => drop(conn.take()),
                    None => {
                        if let Some((sender, server)) = conn.take() {
                            server.check_in(sender);
                        }
                    }
                    Some(Ok(_)) => this.release_if_done(),
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(data) => data.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // The server may stop polling once the body reports its end.
        self.release_if_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(Error::NoRoute.status(), StatusCode::NOT_FOUND);
        let no_server = |last| Error::NoServer {
            upstream: "app".into(),
            last,
        };
        assert_eq!(no_server(None).status(), StatusCode::BAD_GATEWAY);
        let refused = ConnectError::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(no_server(Some(refused)).status(), StatusCode::BAD_GATEWAY);
        let timeout = ConnectError::Timeout(std::time::Duration::from_secs(1));
        assert_eq!(no_server(Some(timeout)).status(), StatusCode::GATEWAY_TIMEOUT);
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
        remove_hop_by_hop(&mut h, &[]);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
