//! The attempt loop: which servers a request is sent to, in which order,
//! and how often.
//!
//! This module owns the retry policy and the passive-health bookkeeping of
//! each attempt. The pool offers its servers in policy order, available ones
//! only (primaries, then backups). An attempt that fails as `retry_on`
//! allows moves to the next server, up to `retries` extra attempts, never to
//! the same server twice. A request that never reached a server (connect
//! failure) can always go elsewhere, whatever its method; one that was
//! written can be sent again only if it has no body and an idempotent method
//! (or `retry_non_idempotent`). A pooled keep-alive connection that the
//! server closed just as we used it is replaced transparently, without
//! counting as an attempt. Every outcome feeds the server's passive health
//! ([`ServerState::record_failure`], [`ServerState::record_response`]),
//! except a failure of the client's own body (malformed, or the client gone
//! mid-upload, or too slow for `body_read_timeout` / `min_upload_rate`):
//! that ends the request at once, `400`, `499` (nginx's "client closed
//! request", for the access log) or `408`, and is never held against the
//! server nor retried.
//!
//! Which server comes first is [`crate::balance`]'s decision, whether a
//! server is available [`crate::upstream`]'s; what the request looks like
//! on the wire is [`super::headers`]'.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use hyper::body::Incoming;

use super::conn::WakeBy;
use super::error::{Error, Failure};
use super::headers::{self, remove_hop_by_hop, set_host, Message};
use super::{Connection, ProxyBody};
use crate::config::{self, UpstreamProtocol};
use crate::observe::clock;
use crate::observe::metrics::Outcome;
use crate::upstream::{
    BodyLimits, HoldOutReason, InFlight, Sender, ServerState, Stall, Upload, UploadState, UpstreamBody,
    UpstreamPool,
};

/// A response for the client and the server that gave it, or why there is
/// none.
pub(super) type Forwarded = Result<(Response<ProxyBody>, Arc<ServerState>), Error>;

/// Send `req` to the servers of `pool` until one answers or the retry
/// policy says stop; `key` is the request's hash key, for the policy, and
/// `limits` how slow its body may be.
pub(super) async fn forward(
    req: Request<Incoming>,
    pool: &UpstreamPool,
    key: u64,
    strip: Option<usize>,
    conn: &Connection,
    new_id: Option<HeaderValue>,
    limits: BodyLimits,
) -> Forwarded {
    let settings = &pool.settings;
    let req = headers::for_upstream(req, settings.protocol, strip, conn, new_id);
    let Prepared {
        request,
        replay,
        upload,
        missing_host,
    } = Prepared::of(req, settings, limits);
    let mut unsent = Some(request);
    let (replay, upload) = (replay.as_ref(), upload.as_deref());

    let mut attempts_left = settings.retries.saturating_add(1);
    let mut last_failure: Option<(Arc<ServerState>, Failure)> = None;
    // Boxed, like the connect in `attempt`: rare, and inline it would be
    // part of every request's future.
    let mut last_5xx: Option<Box<(Response<ProxyBody>, Arc<ServerState>)>> = None;
    for server in pool.candidates(key) {
        if attempts_left == 0 {
            break;
        }
        let Some(mut req) = unsent.take().or_else(|| replay.map(Replay::request)) else {
            break;
        };
        if missing_host {
            set_host(&mut req, server);
        }
        if last_failure.is_some() || last_5xx.is_some() {
            pool.state().count_retry();
        }
        attempts_left -= 1;
        let attempted = attempt(server, req, pool, replay, upload, &conn.wake_by).await;
        match attempted {
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
            Err((failure, _)) if failure.is_client_fault() => return Err(failed(pool, server, failure)),
            Err((failure, back)) => {
                note_failure(pool, server, &failure);
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
        Some((server, failure)) => failed(pool, &server, failure),
        None => Error::NoServer {
            upstream: pool.name.clone(),
        },
    })
}

/// A request ready for its first attempt, and what it takes to attempt it
/// again.
struct Prepared {
    /// The request, its body (if any) streaming from the client.
    request: Request<UpstreamBody>,
    /// Its head, if it may be sent again once written.
    replay: Option<Replay>,
    /// How far the client's body got; only for requests with a body.
    upload: Option<Arc<Upload>>,
    /// Whether each attempt gives it its server's name as `Host`.
    missing_host: bool,
}

impl Prepared {
    /// `req`, already rewritten for the upstream, ready for `settings`'
    /// retry policy, its body (if any) held to `limits`.
    fn of(req: Request<Incoming>, settings: &config::Upstream, limits: BodyLimits) -> Self {
        // HTTP/1.0 may leave out `Host`; an HTTP/1.1 server must get one. As in
        // Caddy (Go's transport), the server's own name stands in.
        let missing_host =
            settings.protocol == UpstreamProtocol::Http1 && !req.headers().contains_key(http::header::HOST);
        // A written request can be sent again only if nothing of it is lost:
        // no body, and a method that may be repeated.
        let replay = (req.body().is_end_stream()
            && (settings.retry_non_idempotent || req.method().is_idempotent()))
        .then(|| Replay::of(&req));
        let (parts, body) = req.into_parts();
        // The read timeout counts from the end of the upload, not its start,
        // and a failed or too slow upload may be the client's doing.
        let upload = (!body.is_end_stream()).then(|| Arc::new(Upload::new(limits)));
        let request = Request::from_parts(parts, UpstreamBody::Client(body, upload.clone()));
        Prepared {
            request,
            replay,
            upload,
            missing_host,
        }
    }
}

/// One attempt on one server. On failure, the request comes back if it was
/// never written (so it can go elsewhere whatever its method).
async fn attempt(
    server: &Arc<ServerState>,
    mut req: Request<UpstreamBody>,
    pool: &UpstreamPool,
    replay: Option<&Replay>,
    upload: Option<&Upload>,
    wake_by: &WakeBy,
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
                let connector = pool.connector(server);
                let connected = Box::pin(server.connect(&connector, settings.connect_timeout)).await;
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
            () = ReadDeadline::new(settings.read_timeout, upload, wake_by) => {
                // Dropping the send closes that connection.
                return Err((Failure::ReadTimeout(settings.read_timeout), None));
            }
            stall = UploadDeadline(upload, wake_by) => {
                // The client's fault; dropping the send closes the upstream
                // connection, which holds the unfinished body.
                return Err((Failure::ClientTimeout(stall), None));
            }
        };
        match sent {
            Ok(response) => {
                // An answer before the upload is whole (an early response):
                // the connection is still busy with this client's body, so
                // it is not pooled, or the next request would wait on this
                // client. It closes once the body is sent.
                let reusable = upload.is_none_or(|u| u.state() == UploadState::Done);
                return Ok(upstream_response(
                    response,
                    reusable.then_some(sender),
                    in_flight,
                    settings.read_timeout,
                ));
            }
            Err(mut error) => {
                // The send failed because the client's body did: nothing to
                // hold against the server (its connection is closed with
                // the send), nothing left to send again.
                if let Some(fault) = client_fault(upload) {
                    return Err((fault, None));
                }
                match error.take_message() {
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
                }
            }
        }
    }
}

/// `read_timeout`, counted from when the request has been sent whole:
/// at once for a request without a body, else from the end of the upload.
/// Checked, not scheduled, like [`crate::server`]'s header-read deadline:
/// while pending it notes its deadline in the connection's [`WakeBy`], and
/// the connection's task re-polls it then.
pub(super) struct ReadDeadline<'a> {
    timeout: Duration,
    upload: Option<&'a Upload>,
    /// In [`clock::millis`], once it runs.
    deadline: Option<u64>,
    wake_by: &'a WakeBy,
}

impl<'a> ReadDeadline<'a> {
    pub(super) fn new(timeout: Duration, upload: Option<&'a Upload>, wake_by: &'a WakeBy) -> Self {
        ReadDeadline {
            timeout,
            upload,
            deadline: None,
            wake_by,
        }
    }
}

/// `timeout` from now, in [`clock::millis`].
fn after(timeout: Duration) -> u64 {
    clock::millis().saturating_add(timeout.as_millis() as u64)
}

/// The client's fault, if the upload failed on the client's side.
fn client_fault(upload: Option<&Upload>) -> Option<Failure> {
    match upload?.state() {
        UploadState::Malformed => Some(Failure::ClientMalformed),
        UploadState::Aborted => Some(Failure::ClientAborted),
        UploadState::TooLarge => upload?.max_size().map(Failure::ClientTooLarge),
        UploadState::Sending | UploadState::Done => None,
    }
}

impl std::future::Future for ReadDeadline<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // The upload's own deadline has the connection re-poll this.
        if this.deadline.is_none() && this.upload.is_some_and(|u| u.state() != UploadState::Done) {
            return Poll::Pending;
        }
        // One clock read per poll: the deadline is set on the first poll
        // after the request is whole (at once for one without a body,
        // since the attempt polls this as soon as it starts).
        let now = clock::millis();
        let deadline = *this
            .deadline
            .get_or_insert_with(|| now.saturating_add(this.timeout.as_millis() as u64));
        if now >= deadline {
            return Poll::Ready(());
        }
        this.wake_by.by(deadline);
        Poll::Pending
    }
}

/// How often a request whose body is still arriving is re-polled for
/// `body_read_timeout`, `min_upload_rate` and the end of its upload: the
/// body is read by the upstream connection's task, which cannot say when a
/// wait for the client begins, so this is checked rather than computed.
const UPLOAD_CHECK: Duration = Duration::from_secs(1);

/// `body_read_timeout` and `min_upload_rate` for a request with a body
/// still arriving: ready with the reason once the client is too slow.
/// Checked, like [`ReadDeadline`], every [`UPLOAD_CHECK`] while the body
/// arrives. Never ready for a request without a body.
struct UploadDeadline<'a>(Option<&'a Upload>, &'a WakeBy);

impl std::future::Future for UploadDeadline<'_> {
    type Output = Stall;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Stall> {
        let Some(upload) = self.0 else {
            return Poll::Pending;
        };
        if let Some(stall) = upload.stalled() {
            return Poll::Ready(stall);
        }
        if upload.state() == UploadState::Sending {
            self.1.by(after(UPLOAD_CHECK));
        }
        Poll::Pending
    }
}

/// What it takes to send a request again: its head (it has no body).
///
/// Made for every request that may be sent again, and almost never used:
/// so the headers are kept as a plain list (one allocation, each name and
/// value a reference count), not as a cloned `HeaderMap` (two allocations
/// and its index table); the map is rebuilt only for a resend.
struct Replay {
    method: http::Method,
    uri: Uri,
    /// In the map's order, a name once per value.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Replay {
    fn of<B>(req: &Request<B>) -> Self {
        let mut headers = Vec::with_capacity(req.headers().len());
        headers.extend(
            req.headers()
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers,
        }
    }

    fn request(&self) -> Request<UpstreamBody> {
        let mut req = Request::new(UpstreamBody::Empty);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.reserve(self.headers.len());
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        req
    }
}

/// A server answered with `status`: count the attempt and feed its passive
/// health.
pub(super) fn note_response(pool: &UpstreamPool, server: &ServerState, status: StatusCode) {
    server.stats.record(match status.is_server_error() {
        true => Outcome::Status5xx,
        false => Outcome::Ok,
    });
    if let Some(reason) = server.record_response(status.as_u16(), &pool.settings) {
        log_hold_out(pool, server, reason);
    }
}

/// An attempt on `server` failed: count it and feed its passive health.
pub(super) fn note_failure(pool: &UpstreamPool, server: &ServerState, failure: &Failure) {
    server.stats.record(failure.outcome());
    if let Some(reason) = server.record_failure(&pool.settings) {
        log_hold_out(pool, server, reason);
    }
}

/// The request's error after its last attempt, on `server`, failed.
pub(super) fn failed(pool: &UpstreamPool, server: &ServerState, failure: Failure) -> Error {
    Error::Failed {
        upstream: pool.name.clone(),
        server: server.name.clone(),
        failure,
    }
}

/// Passive health just took `server` out of rotation for `fail_timeout`:
/// say so, and which limit it reached.
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

/// The upstream's response as sent to the client. The connection goes back
/// to the pool when the body has been read to its end; the request counts
/// as in flight until then.
pub(super) fn upstream_response(
    response: Response<Incoming>,
    sender: Option<Sender>,
    in_flight: InFlight,
    read_timeout: Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers, Message::Response);
    Response::from_parts(parts, ProxyBody::upstream(body, sender, in_flight, read_timeout))
}

#[cfg(test)]
mod tests {
    use http::header::HeaderMap;

    use super::*;

    /// A resend carries the head as it was: every value of a repeated
    /// header, in order, and the other headers in the map's order.
    #[test]
    fn a_replayed_request_has_the_same_head() {
        let req = Request::builder()
            .method("GET")
            .uri("/a?b=c")
            .header("host", "example.com")
            .header("accept", "text/html")
            .header("x-tag", "one")
            .header("x-tag", "two")
            .header("cookie", "a=1")
            .header("x-tag", "three")
            .body(())
            .unwrap();
        let again = Replay::of(&req).request();
        assert_eq!(again.method(), req.method());
        assert_eq!(again.uri(), req.uri());
        let pairs = |h: &HeaderMap| h.iter().map(|(n, v)| (n.clone(), v.clone())).collect::<Vec<_>>();
        assert_eq!(pairs(again.headers()), pairs(req.headers()));
        let tags: Vec<_> = again.headers().get_all("x-tag").iter().collect();
        assert_eq!(tags, ["one", "two", "three"]);
    }
}
