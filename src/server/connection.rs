//! One client connection, from the accepted socket to its last byte: the
//! wait for its first byte, its PROXY header if its listener expects one,
//! the TLS handshake or the h2c preface, hyper
//! serving HTTP/1.1 or HTTP/2 on it, and [`drive`], which wakes it when one
//! of its deadlines is due (the header-read timeout, `send_timeout`, the
//! HTTP/2 idle close, the requests' checked deadlines), and gives it the
//! shutdown timeout once its listener stops.
//!
//! A connection costs no CPU while nothing is due: its task holds one timer
//! ([`Alarm`]), armed at the earliest deadline it knows of, not a periodic
//! tick (see [`super::timer`]). Before its first byte it costs only its
//! task and socket: hyper, TLS and their buffers come once it is readable.
//! An HTTP/1.1 connection idle for [`IDLE_RELEASE`] goes back to costing
//! little more: its socket is taken back from hyper, whose buffers and
//! state are freed, and a fresh hyper connection serves its next request
//! (see [`Worker::serve_http1`]).
//!
//! This module owns the connection's lifetime; which protocol it speaks and
//! with which limits is [`super::protocol`]'s decision, and what each request
//! does is [`crate::forward`]'s job.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::h2_guard::H2Guard;
use super::protocol::{self, Graceful, Prefixed, Rewind, StreamBody, StreamCount, Ticked, Version};
use super::proxy_protocol;
use super::timer::{Alarm, CheckedTimer, HeadDeadline, CHECK_INTERVAL, NEVER};
use super::Worker;
use crate::config::RequestLimits;
use crate::forward::{self, Connection};
use crate::observe::clock;
use crate::observe::metrics::{CountingIo, ListenerStats, WriteStall};
use crate::table::Live;
use crate::tls;

impl Worker {
    /// Serve one accepted client connection until it ends, or until `stop`
    /// and then the shutdown timeout: TLS handshake (when `tls`) or h2c
    /// detection, then HTTP. Every error ends this connection only.
    pub(super) async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        stats: Arc<ListenerStats>,
        tls: Option<Arc<rustls::ServerConfig>>,
        info: Arc<Connection>,
        stop: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        // A connection keeps the timeouts it was accepted with.
        let timeouts = {
            let table = info.live.load();
            Timeouts {
                header_read: table.header_read_timeout,
                send: table.send_timeout,
            }
        };
        // Waiting for the first bytes counts against the header-read
        // timeout, as waiting for a request head does; the TLS handshake
        // gets what is left of it.
        let deadline = Instant::from_std(clock::after(std::time::Instant::now(), timeouts.header_read));
        // A peek, not `readable()`: tokio reports a fresh socket readable at
        // once. It returns at the first byte, or at EOF or an error, which
        // TLS or hyper then see for themselves.
        let mut first = [0u8; 1];
        tokio::select! {
            biased;
            () = super::stopped_unless_handing_over(&stop) => return,
            _ = stream.peek(&mut first) => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
        let start = Start {
            stats,
            tls,
            info,
            timeouts,
            deadline,
        };
        // Boxed, each phase on its own: the TLS handshake's state and
        // hyper's connections are nearly all of this task's state; inline,
        // a connection that has sent nothing would hold them, and an idle
        // one would keep the handshake's room.
        let serving = match Box::pin(self.handshake(stream, start, &stop)).await {
            Some(ready) => self.serve_ready(ready, stop),
            None => return,
        };
        serving.await;
    }

    /// Serve what [`Worker::handshake`] made ready, in a box sized for its
    /// protocol and transport.
    fn serve_ready(
        &self,
        ready: Ready,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        match ready {
            Ready::Tls(version, io, info, watch) => Box::pin(self.serve_http(version, io, info, stop, watch)),
            Ready::Plain(version, io, info, watch) => {
                Box::pin(self.serve_http(version, io, info, stop, watch))
            }
        }
    }

    /// [`Worker::serve_connection`] once the client has sent something: the
    /// TLS handshake or the h2c detection; `None` if the connection ended.
    async fn handshake(
        &self,
        mut stream: TcpStream,
        start: Start,
        stop: &CancellationToken,
    ) -> Option<Ready> {
        let Start {
            stats,
            tls,
            mut info,
            timeouts,
            deadline,
        } = start;
        // Before TLS: a PROXY header, on listeners that expect one.
        if !proxy_protocol::accept(&mut stream, &mut info, deadline, stop).await {
            return None;
        }
        let stall = Arc::new(WriteStall::default());
        if let Some(config) = tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let left = deadline.saturating_duration_since(Instant::now());
            let stream = tokio::select! {
                biased;
                () = super::stopped_unless_handing_over(stop) => return None,
                accepted = tls::accept(&acceptor, stream, left) => match accepted {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(listener = %info.listener, client = %info.client, %error, "TLS handshake failed");
                        return None;
                    }
                },
            };
            let version = if tls::is_h2(&stream) {
                Version::Http2
            } else {
                Version::Http1
            };
            // Counted above TLS: the bytes of HTTP, as on plaintext listeners.
            let io = CountingIo::new(stream, stats, stall.clone());
            let watch = Watch::new(stall, timeouts, &info);
            return Some(Ready::Tls(version, io, info, watch));
        }
        let stream = CountingIo::new(stream, stats, stall.clone());
        let detected = tokio::select! {
            biased;
            detected = protocol::detect(stream) => detected,
            () = super::stopped_unless_handing_over(stop) => return None,
            () = tokio::time::sleep_until(deadline) => return None,
        };
        match detected {
            Ok((version, io)) => {
                let watch = Watch::new(stall, timeouts, &info);
                Some(Ready::Plain(version, io, info, watch))
            }
            Err(error) => {
                tracing::debug!(%error, "client connection failed before its first request");
                None
            }
        }
    }

    /// Serve `io` as `version` until it ends, or until `stop` and then the
    /// shutdown timeout.
    async fn serve_http<I>(
        &self,
        version: Version,
        io: I,
        info: Arc<Connection>,
        stop: CancellationToken,
        watch: Watch,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let live = info.live.clone();
        // Like its timeouts, a connection keeps its listener's limits.
        let (limits, listener) = {
            let table = live.load();
            let router = table.router(&info.listener);
            (
                router.map(|r| r.request_limits).unwrap_or_default(),
                router.map(|r| r.stats.clone()),
            )
        };
        match version {
            Version::Http1 => self.serve_http1(io, info, &stop, watch, &limits).await,
            Version::Http2 => {
                let conn = info.clone();
                let streams = Arc::new(StreamCount::default());
                let counted = streams.clone();
                let service = service_fn(move |req| {
                    let open = counted.open();
                    let response = Ticked::new(forward::handle(req, info.clone()), counted.clone());
                    async move {
                        let response = response.await?;
                        Ok::<_, std::convert::Infallible>(response.map(|body| StreamBody::new(body, open)))
                    }
                });
                let io = H2Guard::new(io, limits.h2_control_frames, listener);
                let connection = self
                    .http
                    .http2(&limits)
                    .serve_connection(TokioIo::new(io), service);
                let last_request = conn.last_stream();
                Box::pin(async {
                    let connection = pin!(connection);
                    drive(connection, &stop, &watch, &live, Some(&streams), last_request).await;
                })
                .await;
            }
        }
    }

    /// Serve `io` as HTTP/1.1 until it ends, or until `stop` and then the
    /// shutdown timeout: with a hyper connection while requests come, and
    /// with none once it has waited [`IDLE_RELEASE`] for the next request.
    /// Then the socket is taken back (hyper finishes without shutting it
    /// down, handing back what it had read and not parsed), its next byte
    /// is awaited under the same header-read deadline, and a fresh hyper
    /// connection serves it. Upgraded connections are never taken back.
    async fn serve_http1<I>(
        &self,
        io: I,
        info: Arc<Connection>,
        stop: &CancellationToken,
        watch: Watch,
        limits: &RequestLimits,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let live = info.live.clone();
        let head = Arc::new(HeadDeadline::default());
        let mut http1 = self.http.http1(watch.timeouts.header_read, limits);
        http1.timer(CheckedTimer::noting(head.clone()));
        let cycle = head.clone();
        // Kept across hyper connections, as the builder is.
        let mut service = service_fn(move |req| {
            cycle.serving();
            forward::handle(req, info.clone())
        });
        let mut io = Rewind::new(io, head.clone());
        let watch = watch.with_head(head.clone());
        loop {
            // Boxed, and built inside the box: hyper's buffers and state
            // are allocated only while it serves, and freed when the socket
            // is taken back; this task keeps only the box's pointer.
            let (http1, watch, live) = (&http1, &watch, &live);
            let parts = Box::pin(async move {
                let mut connection = http1.serve_connection(TokioIo::new(io), service).with_upgrades();
                match drive(
                    Pin::new(&mut connection),
                    stop,
                    watch,
                    live,
                    None,
                    std::future::pending(),
                )
                .await
                {
                    Ended::Released => connection.into_parts(),
                    Ended::Closed => None,
                }
            })
            .await;
            let Some(http1::Parts {
                io: back,
                read_buf,
                service: kept,
                ..
            }) = parts
            else {
                return;
            };
            head.released();
            io = back.into_inner();
            io.rewind(&read_buf);
            drop(read_buf);
            service = kept;
            tracing::debug!(
                replayed = io.has_replay(),
                "idle HTTP/1.1 connection taken back from hyper"
            );
            if io.has_replay() {
                if stop.is_cancelled() && !super::handing_over() {
                    return;
                }
                continue;
            }
            let deadline = Instant::from_std(clock::instant(head.get()));
            tokio::select! {
                biased;
                () = stopped_then_grace(stop, live) => return,
                byte = io.next_byte() => match byte {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::debug!(%error, "idle client connection failed");
                        return;
                    }
                },
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// Resolves when `stop` fires, or, when the process is handing over to a
/// new binary, `shutdown_timeout` later: an idle connection taken back from
/// hyper is not closed under a client that may be sending its next request
/// (that request is served, with `Connection: close`, by [`drive`]).
async fn stopped_then_grace(stop: &CancellationToken, live: &Live) {
    stop.cancelled().await;
    if super::handing_over() {
        tokio::time::sleep(live.load().shutdown_timeout).await;
    }
}

/// How long an HTTP/1.1 connection waits for its next request before its
/// socket is taken back from hyper (see [`Worker::serve_http1`]): long
/// enough that a connection under load never pays for it, short enough
/// that an idle one holds nothing but its task and socket.
const IDLE_RELEASE: Duration = Duration::from_millis(500);

/// A connection ready for HTTP: its version, its io, what its requests
/// share and what its task watches.
// Moved once per connection, from the handshake's box into the serving one:
// boxing the TLS variant would be one more allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Ready {
    Tls(Version, CountingIo<TlsStream<TcpStream>>, Arc<Connection>, Watch),
    Plain(Version, Prefixed<CountingIo<TcpStream>>, Arc<Connection>, Watch),
}

/// What [`Worker::handshake`] takes over from the accept.
struct Start {
    stats: Arc<ListenerStats>,
    tls: Option<Arc<rustls::ServerConfig>>,
    info: Arc<Connection>,
    timeouts: Timeouts,
    /// The header-read deadline of the first bytes (and the handshake).
    deadline: Instant,
}

/// What a connection's task watches besides the connection itself: the
/// deadlines its alarm is armed by.
pub(super) struct Watch {
    /// Since when its writes have waited for the client (`send_timeout`).
    stall: Arc<WriteStall>,
    /// hyper's header-read deadline (HTTP/1.1).
    head: Option<Arc<HeadDeadline>>,
    /// Its requests' checked deadlines.
    info: Arc<Connection>,
    timeouts: Timeouts,
}

impl Watch {
    fn new(stall: Arc<WriteStall>, timeouts: Timeouts, info: &Arc<Connection>) -> Self {
        Watch {
            stall,
            head: None,
            info: info.clone(),
            timeouts,
        }
    }

    fn with_head(self, head: Arc<HeadDeadline>) -> Self {
        Watch {
            head: Some(head),
            ..self
        }
    }

    /// The earliest deadline (in [`clock::millis`]) the alarm must fire by,
    /// as far as the connection's state says: loads, no clock read.
    fn due(&self, streams: Option<&StreamCount>, grace: Option<u64>) -> u64 {
        let head = self.head.as_ref().map_or(NEVER, |head| head.get());
        let stall = self.stall.deadline(self.timeouts.send).unwrap_or(NEVER);
        // An HTTP/2 connection with no stream is closed after the
        // header-read timeout, as an idle HTTP/1.1 keep-alive one is.
        let idle = match (streams, grace) {
            (Some(streams), None) => streams.idle_deadline(self.timeouts.header_read).unwrap_or(NEVER),
            _ => NEVER,
        };
        let release = if grace.is_none() { self.release_at() } else { NEVER };
        head.min(stall)
            .min(idle)
            .min(release)
            .min(self.info.wake_by.get())
            .min(grace.unwrap_or(NEVER))
    }

    /// When an HTTP/1.1 connection waiting for its next request will have
    /// waited [`IDLE_RELEASE`]: hyper noted its head deadline when it
    /// began to wait.
    fn release_at(&self) -> u64 {
        match &self.head {
            Some(head) if head.waiting() => head
                .get()
                .saturating_sub(self.timeouts.header_read.as_millis() as u64)
                .saturating_add(IDLE_RELEASE.as_millis() as u64),
            _ => NEVER,
        }
    }
}

/// The timeouts a connection keeps from the table it was accepted with.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    send: Duration,
}

/// How [`drive`] ended.
enum Ended {
    /// The connection is closed, or failed, or was upgraded.
    Closed,
    /// hyper finished because the task took the socket back
    /// ([`Verdict::Release`]); the socket is open.
    Released,
}

/// What woke a connection's task.
enum Event {
    Ended(hyper::Result<()>),
    /// `stop` fired, or the connection had its last request under
    /// `max_requests_per_connection` (HTTP/2: GOAWAY, open streams finish).
    Stop,
    Due,
}

/// What a due alarm decided.
enum Verdict {
    /// Re-poll the connection and go on.
    Continue,
    /// Have hyper finish at once to take the socket back (an HTTP/1.1
    /// connection waiting for its next request for [`IDLE_RELEASE`]).
    Release,
    /// Shut it down gracefully (an HTTP/2 connection idle too long).
    Drain,
    /// Close it now.
    Close,
}

/// Poll `connection` until it ends, re-polling it whenever its alarm is due
/// (see [`super::timer`]); once `stop` fires, or an HTTP/2 connection (one
/// with `streams`) has had no stream for the header-read timeout, shut it
/// down gracefully and give it the shutdown timeout to finish. While an
/// HTTP/2 connection has open streams its alarm also fires every
/// [`CHECK_INTERVAL`] to wake their requests, which hyper runs in tasks of
/// their own, so that they check their deadlines. `last_request` drains the
/// connection as `stop` does. An HTTP/1.1 connection waiting for its next
/// request for [`IDLE_RELEASE`] is made to finish to take its socket back.
async fn drive<C: Graceful>(
    mut connection: Pin<&mut C>,
    stop: &CancellationToken,
    watch: &Watch,
    live: &Live,
    streams: Option<&StreamCount>,
    last_request: impl Future<Output = ()>,
) -> Ended {
    let mut last_request = pin!(last_request);
    let mut alarm = pin!(Alarm::new());
    let mut stopping = pin!(stop.cancelled());
    // Once shutting down: when the shutdown timeout ends.
    let mut grace: Option<u64> = None;
    // Whether the alarm is set for the open streams' next check.
    let mut ticking = false;
    loop {
        let event = poll_fn(|cx| {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(Event::Ended(result));
            }
            if grace.is_none()
                && (stopping.as_mut().poll(cx).is_ready() || last_request.as_mut().poll(cx).is_ready())
            {
                return Poll::Ready(Event::Stop);
            }
            if !ticking && streams.is_some_and(StreamCount::busy) {
                ticking = true;
                alarm
                    .as_mut()
                    .by(clock::millis() + CHECK_INTERVAL.as_millis() as u64);
            }
            alarm.as_mut().by(watch.due(streams, grace));
            alarm.as_mut().poll_due(cx).map(|()| Event::Due)
        })
        .await;
        let verdict = match event {
            Event::Ended(Err(error)) => {
                tracing::debug!(%error, "client connection ended with an error");
                return Ended::Closed;
            }
            Event::Ended(Ok(())) if watch.head.as_ref().is_some_and(|head| head.releasing()) => {
                return Ended::Released;
            }
            Event::Ended(Ok(())) => return Ended::Closed,
            // Handing over: an HTTP/1.1 connection is not closed under a
            // client that may be sending on it (see `Workers::hand_over`).
            Event::Stop if streams.is_none() && super::handing_over() => {
                watch.info.close_next();
                let grace_ms = live.load().shutdown_timeout.as_millis() as u64;
                grace = Some(clock::millis().saturating_add(grace_ms));
                continue;
            }
            Event::Stop => Verdict::Drain,
            Event::Due => {
                ticking = false;
                on_due(watch, streams, grace)
            }
        };
        match verdict {
            Verdict::Continue => {}
            Verdict::Release => {
                if let Some(head) = &watch.head {
                    head.release();
                }
                // hyper's state is the initial one: this closes it at once,
                // sending nothing (hyper's `disable_keep_alive` on an idle
                // connection), and it finishes at its next poll.
                connection.as_mut().graceful_shutdown();
            }
            Verdict::Drain => {
                connection.as_mut().graceful_shutdown();
                let grace_ms = live.load().shutdown_timeout.as_millis() as u64;
                grace = Some(clock::millis().saturating_add(grace_ms));
            }
            Verdict::Close => return Ended::Closed,
        }
    }
}

/// The alarm of a connection fired: decide what is due, and forget the
/// deadlines that are being seen to (the connection is re-polled next,
/// and what is still pending notes its deadline again).
fn on_due(watch: &Watch, streams: Option<&StreamCount>, grace: Option<u64>) -> Verdict {
    let now = clock::millis();
    if grace.is_some_and(|grace| now >= grace) {
        tracing::debug!("connection still busy at the shutdown deadline; closing it");
        return Verdict::Close;
    }
    if watch
        .stall
        .deadline(watch.timeouts.send)
        .is_some_and(|due| now >= due)
    {
        // The client stopped reading: drop the connection (and with it the
        // response and its upstream connection).
        tracing::debug!(timeout = ?watch.timeouts.send, "client stopped reading for send_timeout; closing its connection");
        return Verdict::Close;
    }
    if grace.is_none() && now >= watch.release_at() {
        return Verdict::Release;
    }
    if let Some(head) = &watch.head {
        // Passed: hyper sees it expire when re-polled now, or it was stale.
        head.ahead_of(now);
    }
    watch.info.wake_by.clear();
    let Some(streams) = streams else {
        return Verdict::Continue;
    };
    streams.wake_pending();
    if grace.is_none() && streams.idle_for() >= watch.timeouts.header_read {
        return Verdict::Drain;
    }
    Verdict::Continue
}
