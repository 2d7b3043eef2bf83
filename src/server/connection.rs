//! One client connection, from the accepted socket to its last byte: the
//! TLS handshake or the h2c preface, hyper serving HTTP/1.1 or HTTP/2 on it,
//! and [`drive`], which re-polls it for its header-read deadline, closes an
//! idle HTTP/2 connection, and gives it the shutdown timeout once its
//! listener stops.
//!
//! This module owns the connection's lifetime; which protocol it speaks and
//! with which limits is [`super::protocol`]'s decision, and what each request
//! does is [`crate::forward`]'s job.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::h2_guard::H2Guard;
use super::protocol::{self, Graceful, StreamBody, StreamCount, Ticked, Version};
use super::timer::CHECK_INTERVAL;
use super::Worker;
use crate::forward::{self, Connection};
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
        let header_read_timeout = timeouts.header_read;
        let stall = Arc::new(WriteStall::default());
        // Re-polls the connection so hyper sees its header-read deadline
        // pass (see `crate::server::timer`): the only timer this connection needs.
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Some(config) = tls {
            // The handshake gets the header-read timeout: it is what a
            // client must complete before it can send a request head.
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let stream = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                accepted = tls::accept(&acceptor, stream, header_read_timeout) => match accepted {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(listener = %info.listener, client = %info.client, %error, "TLS handshake failed");
                        return;
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
            let watch = Watch {
                check,
                stall,
                timeouts,
            };
            return self.serve_http(version, io, info, stop, watch).await;
        }
        let stream = CountingIo::new(stream, stats, stall.clone());
        // Waiting for the first bytes counts against the header-read
        // timeout, as waiting for a request head does.
        let deadline = std::time::Instant::now() + header_read_timeout;
        let mut detect = pin!(protocol::detect(stream));
        let detected = loop {
            tokio::select! {
                biased;
                detected = detect.as_mut() => break detected,
                () = stop.cancelled() => return,
                _ = check.tick() => if std::time::Instant::now() >= deadline { return },
            }
        };
        match detected {
            Ok((version, io)) => {
                let watch = Watch {
                    check,
                    stall,
                    timeouts,
                };
                self.serve_http(version, io, info, stop, watch).await
            }
            Err(error) => tracing::debug!(%error, "client connection failed before its first request"),
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
            Version::Http1 => {
                let service = service_fn(move |req| forward::handle(req, info.clone()));
                let connection = self
                    .http
                    .http1(watch.timeouts.header_read, &limits)
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades();
                drive(connection, &stop, watch, &live, None, std::future::pending()).await;
            }
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
                let connection = self.http.http2().serve_connection(TokioIo::new(io), service);
                let idle = watch.timeouts.header_read;
                drive(
                    connection,
                    &stop,
                    watch,
                    &live,
                    Some((&streams, idle)),
                    conn.last_stream(),
                )
                .await;
            }
        }
    }
}

/// What a connection's task watches besides the connection itself: its
/// tick (see [`super::timer`]), how long its writes have waited for the
/// client, and its timeouts.
pub(super) struct Watch {
    check: tokio::time::Interval,
    stall: Arc<WriteStall>,
    timeouts: Timeouts,
}

/// The timeouts a connection keeps from the table it was accepted with.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    send: Duration,
}

/// Poll `connection` (and re-poll it every tick) until it ends; once `stop`
/// fires, or an HTTP/2 connection has had no stream for `idle`'s timeout,
/// or once `last_request` (`max_requests_per_connection` on HTTP/2: GOAWAY),
/// shut it down gracefully and give it the shutdown timeout to finish. An
/// HTTP/2 connection's tick also wakes its pending streams' requests, which
/// hyper runs in tasks of their own.
async fn drive<C: Graceful>(
    connection: C,
    stop: &CancellationToken,
    watch: Watch,
    live: &Live,
    idle: Option<(&StreamCount, Duration)>,
    last_request: impl std::future::Future<Output = ()>,
) {
    let Watch {
        mut check,
        stall,
        timeouts,
    } = watch;
    let mut connection = pin!(connection);
    let mut last_request = pin!(last_request);
    loop {
        tokio::select! {
            biased;
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "client connection ended with an error");
                }
                return;
            }
            () = stop.cancelled() => break,
            () = last_request.as_mut() => break,
            _ = check.tick() => {
                if stall.stalled_for() >= timeouts.send {
                    // The client stopped reading: drop the connection (and
                    // with it the response and its upstream connection).
                    tracing::debug!(timeout = ?timeouts.send, "client stopped reading for send_timeout; closing its connection");
                    return;
                }
                if let Some((streams, _)) = idle {
                    streams.wake_pending();
                }
                if idle.is_some_and(|(streams, timeout)| streams.idle_for() >= timeout) {
                    break;
                }
            }
        }
    }
    connection.as_mut().graceful_shutdown();
    let mut grace = pin!(tokio::time::sleep(live.load().shutdown_timeout));
    loop {
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            () = grace.as_mut() => break,
            _ = check.tick() => {
                if let Some((streams, _)) = idle {
                    streams.wake_pending();
                }
            }
        }
    }
    tracing::debug!("connection still busy at the shutdown deadline; closing it");
}
