//! The body of every response ginx sends, and what is recorded once it is
//! done.
//!
//! This module owns [`ProxyBody`]: an upstream's body streamed frame by
//! frame (its connection handed back to the pool at the end, or closed when
//! the body is abandoned), or fixed bytes made here. It also owns what a
//! finished response leaves behind ([`Completion`]: the route's duration
//! histogram and the access log line), recorded when the body is dropped,
//! so abandoned responses are counted too. Writing the log line is
//! [`crate::observe::access_log`]'s job; the counters are
//! [`crate::observe::metrics`]'.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::headers::X_REQUEST_ID;
use super::Connection;
use crate::observe::access_log::{AccessLogger, AccessRecord};
use crate::observe::clock;
use crate::observe::metrics::RouteStats;
use crate::upstream::{InFlight, Sender};

/// The body of every response ginx sends: an upstream's body, streamed, or
/// one built here (respond routes, errors).
#[derive(Debug)]
pub(crate) struct ProxyBody {
    source: Source,
    /// Recorded when the body is dropped (after its end, or abandoned).
    /// Inline: every proxied response has one (its route's histogram),
    /// and a box would be an allocation per request to save a few bytes
    /// per move.
    completion: Option<Completion>,
}

/// Where a body's bytes come from.
#[derive(Debug)]
enum Source {
    /// An upstream's response body, streamed as it arrives.
    Upstream {
        body: Incoming,
        /// The connection the body arrives on; back to its server's pool
        /// once the body is complete, dropped (closing it) otherwise.
        conn: Option<Sender>,
        /// Ends the request's in-flight count when the body is done.
        in_flight: Option<InFlight>,
        /// How long the body may stall between two frames.
        idle: IdleTimeout,
    },
    /// Bytes made here; `None` once sent (or if there were none).
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// A body of fixed bytes.
    pub(crate) fn full(data: Bytes) -> Self {
        ProxyBody {
            source: Source::Full((!data.is_empty()).then_some(data)),
            completion: None,
        }
    }

    /// An upstream's body, arriving on `conn` (`None`: a connection that
    /// serves this request only), which counts as `in_flight` until its end
    /// and may stall at most `read_timeout` between two frames.
    pub(super) fn upstream(
        body: Incoming,
        conn: Option<Sender>,
        in_flight: InFlight,
        read_timeout: Duration,
    ) -> Self {
        let mut body = ProxyBody {
            source: Source::Upstream {
                body,
                conn,
                in_flight: Some(in_flight),
                idle: IdleTimeout::new(read_timeout),
            },
            completion: None,
        };
        body.release_if_done();
        body
    }

    /// Record the response's duration in `stats` and its access log line
    /// when this body is dropped, the request having started at `started`.
    pub(super) fn record_when_done(
        &mut self,
        started: Instant,
        stats: Option<Arc<RouteStats>>,
        access: Option<Box<AccessEntry>>,
    ) {
        self.completion = Some(Completion {
            started,
            stats,
            access,
            bytes: 0,
        });
    }

    /// Release an upstream body that has already reached its end.
    fn release_if_done(&mut self) {
        if let Source::Upstream { body, .. } = &self.source {
            if body.is_end_stream() {
                self.release(true);
            }
        }
    }

    /// The body is done: the connection goes back to the pool if `reuse`,
    /// and the request stops counting as in flight.
    fn release(&mut self, reuse: bool) {
        if let Source::Upstream { conn, in_flight, .. } = &mut self.source {
            if let Some(in_flight) = in_flight.take() {
                if let (Some(sender), true) = (conn.take(), reuse) {
                    in_flight.server().check_in(sender);
                }
            }
            *conn = None;
        }
    }
}

/// Why a response body ended before its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The upstream connection failed or closed mid-body.
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    /// The upstream sent nothing for `read_timeout`.
    #[error("upstream response body idle for {0:?} (read_timeout)")]
    Idle(Duration),
}

/// `read_timeout` between two frames of an upstream's body (nginx's
/// `proxy_read_timeout` semantics): a server that sends half a body and
/// stalls must not hold the client forever.
///
/// Nothing is armed until the body first stalls (most bodies arrive with
/// their head or stream without pause), and then one timer serves the whole
/// body: a frame only notes the time, and when the timer fires early (there
/// was progress) it is moved to the last frame plus the timeout. So a
/// stalling body costs one timer per `read_timeout` and a clock read per
/// frame; a body that never stalls costs a branch.
#[derive(Debug)]
struct IdleTimeout {
    timeout: Duration,
    /// The timer and the time of the last frame since it was armed.
    /// Boxed: rare, and inline it would grow every response body.
    armed: Option<Pin<Box<Armed>>>,
}

pin_project_lite::pin_project! {
    #[derive(Debug)]
    struct Armed {
        #[pin]
        sleep: tokio::time::Sleep,
        last_frame: tokio::time::Instant,
    }
}

impl IdleTimeout {
    fn new(timeout: Duration) -> Self {
        IdleTimeout { timeout, armed: None }
    }

    /// A frame arrived.
    fn progressed(&mut self) {
        if let Some(armed) = &mut self.armed {
            *armed.as_mut().project().last_frame = tokio::time::Instant::now();
        }
    }

    /// The body is pending: whether it has now been idle for the timeout
    /// (else the timer is armed to wake `cx` when it may have been).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.timeout;
        let armed = self.armed.get_or_insert_with(|| {
            let now = tokio::time::Instant::now();
            Box::pin(Armed {
                sleep: tokio::time::sleep_until(clock::later(now, timeout)),
                last_frame: now,
            })
        });
        loop {
            let mut this = armed.as_mut().project();
            if this.sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = clock::later(*this.last_frame, timeout);
            if due <= tokio::time::Instant::now() {
                return true;
            }
            this.sleep.reset(due);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = match &mut this.source {
            Source::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            Source::Upstream {
                body,
                idle,
                in_flight,
                ..
            } => {
                let frame = match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        idle.progressed();
                        Some(Ok(frame))
                    }
                    Poll::Ready(Some(Err(error))) => Some(Err(BodyError::Upstream(error))),
                    Poll::Ready(None) => None,
                    Poll::Pending if idle.expired(cx) => {
                        let server = in_flight.as_ref().map(|f| f.server().name.clone());
                        tracing::warn!(?server, timeout = ?idle.timeout, "upstream response body stalled for read_timeout; cutting the response");
                        Some(Err(BodyError::Idle(idle.timeout)))
                    }
                    Poll::Pending => return Poll::Pending,
                };
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
        match &self.source {
            Source::Full(data) => data.is_none(),
            Source::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Source::Upstream { body, .. } => body.size_hint(),
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

/// What the access log line of a request needs, taken before the request
/// is handed on.
#[derive(Debug)]
pub(super) struct AccessEntry {
    logger: AccessLogger,
    time: SystemTime,
    conn: Arc<Connection>,
    /// The request's client address.
    client: std::net::SocketAddr,
    method: http::Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    request_id: HeaderValue,
    /// The response's status, once known.
    pub(super) status: u16,
    /// The server that answered, and how long (from the request's start)
    /// until its response header.
    pub(super) upstream: Option<(Arc<str>, Duration)>,
}

impl AccessEntry {
    /// The entry for `req`, whose id is `new_id` if one was made for it.
    pub(super) fn of(
        logger: AccessLogger,
        req: &Request<Incoming>,
        conn: &Arc<Connection>,
        client: std::net::SocketAddr,
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
            client,
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
            client: self.client,
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
