//! Sockets and client connections: worker threads, bound sockets, accept
//! loops and draining.
//!
//! ginx runs `N` worker threads (`GINX_WORKERS`, default: one per CPU), each
//! with its own single-threaded tokio runtime. A listening socket is bound
//! once, by the control thread, and every worker accepts on its own
//! duplicate of it; a connection then lives on the worker that accepted it,
//! together with the upstream connections it opens. Nothing on that path
//! crosses threads except the routing snapshot and per-server atomics.
//!
//! Stopping is a [`CancellationToken`] per listener (children of one root
//! token for the whole process). When it fires, accept loops end and each
//! connection gets hyper's graceful shutdown: idle keep-alive connections
//! close, in-flight requests are answered with `Connection: close`. hyper
//! never forces a close, so each connection enforces the configured
//! `shutdown_timeout` itself and is dropped when it runs out.
//!
//! Every connection speaks HTTP/1.1 or HTTP/2, decided once when it starts:
//! by ALPN on TLS listeners, by the h2c preface (prior knowledge) on
//! plaintext ones; [`protocol`] owns that decision and the protocol
//! settings. A TLS listener's rustls configuration is taken from the routing
//! snapshot at accept time, so new certificates apply to new handshakes
//! while open connections keep the session they have.
//!
//! The parts, in the order a connection meets them:
//!
//! - [`listeners`]: [`BoundSocket`] and [`ListenerSet`], the control plane's
//!   view of the sockets: it plans a new configuration's listeners (binding
//!   what is new before anything changes) and then commits the plan;
//! - this file: [`Workers`], each worker's accept loop, and the drain;
//! - [`admission`]: the connection counts behind `max_connections` and
//!   `max_connections_per_ip`, which the accept loop asks before serving;
//! - [`connection`]: one client connection's lifetime (TLS or h2c
//!   detection, hyper, deadlines, graceful shutdown);
//! - [`protocol`]: HTTP versions and hyper's settings; [`timer`]: the
//!   header-read deadline, checked rather than scheduled;
//!   [`proxy_protocol`]: the PROXY header a connection may start with.
//!
//! What a request does is [`crate::forward`]'s job, never this module's.

mod admission;
mod connection;
mod h2_guard;
mod listeners;
mod protocol;
mod proxy_protocol;
pub(crate) mod timer;

pub(crate) use listeners::{BoundSocket, ListenerPlan, ListenerSet};

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::forward::{Accepted, Connection};
use crate::table::Live;
use admission::{Admission, ListenerGates};
use protocol::Builders;

/// A command to every worker: accept connections for `listener` on (a
/// duplicate of) `socket` until `stop`.
struct AcceptOn {
    listener: Arc<str>,
    socket: Arc<BoundSocket>,
    /// The listener's connection counts, the same for every worker.
    gates: Arc<ListenerGates>,
    stop: CancellationToken,
}

/// The worker threads.
pub(crate) struct Workers {
    senders: Vec<mpsc::UnboundedSender<AcceptOn>>,
    threads: Vec<JoinHandle<()>>,
    /// Ends every worker's runtime, dropping whatever it still runs.
    hard_stop: CancellationToken,
    /// Every client connection of every worker.
    connections: TaskTracker,
    /// The connection counts of every worker, against `max_connections`.
    admission: Arc<Admission>,
}

impl Workers {
    /// Start `count` worker threads that route with `live`.
    ///
    /// # Errors
    ///
    /// When a thread or its runtime cannot be created.
    pub(crate) fn start(count: usize, live: Live) -> anyhow::Result<Self> {
        let hard_stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let admission = Arc::new(Admission::new());
        let mut senders = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for id in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("creating a worker runtime")?;
            let (tx, rx) = mpsc::unbounded_channel();
            let worker = Worker {
                live: live.clone(),
                connections: connections.clone(),
                http: Builders::default(),
                admission: admission.clone(),
            };
            let hard_stop = hard_stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ginx-worker-{id}"))
                .spawn(move || runtime.block_on(worker.run(rx, hard_stop)))
                .context("spawning a worker thread")?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(Workers {
            senders,
            threads,
            hard_stop,
            connections,
            admission,
        })
    }

    /// Have every worker accept on `socket` for `listener` until `stop`.
    pub(super) fn accept_on(&self, listener: &Arc<str>, socket: &Arc<BoundSocket>, stop: &CancellationToken) {
        let gates = self.admission.listener(listener);
        for tx in &self.senders {
            let _ = tx.send(AcceptOn {
                listener: listener.clone(),
                socket: socket.clone(),
                gates: gates.clone(),
                stop: stop.clone(),
            });
        }
    }

    /// A new snapshot may have changed the connection limits: accept loops
    /// waiting at one look again.
    pub(super) fn limits_changed(&self) {
        self.admission.limits_changed();
    }

    /// The process is handing over to a new one (an upgrade): from now on a
    /// stopped listener's HTTP/1.1 connections are not closed while idle,
    /// since a client may be sending on one; each answers its next request
    /// with `Connection: close`, or closes at the shutdown timeout, and
    /// connections that have sent nothing yet are still served. Call before
    /// stopping the listeners.
    pub(crate) fn hand_over(&self) {
        HANDING_OVER.store(true, Ordering::Relaxed);
    }

    /// Wait until every connection has finished (each enforces its own
    /// deadline once its listener stops), at most `backstop`, then end the
    /// workers. Call after stopping every listener.
    pub(crate) async fn drain(self, backstop: Duration) {
        self.connections.close();
        if tokio::time::timeout(backstop, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.connections.len(),
                "connections still open after the drain deadline; closing them"
            );
        }
        self.hard_stop.cancel();
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Set once, by [`Workers::hand_over`], for the rest of the process's life.
/// A process-wide flag rather than a field: it is read only when a
/// listener stops, by connections on every worker, and the process has one
/// set of workers.
static HANDING_OVER: AtomicBool = AtomicBool::new(false);

/// Whether the process is handing over to a new one.
fn handing_over() -> bool {
    HANDING_OVER.load(Ordering::Relaxed)
}

/// Resolves when `stop` fires, unless the process is handing over: then a
/// connection that has not sent its first request yet goes on to serve it
/// (its header-read deadline still applies).
async fn stopped_unless_handing_over(stop: &CancellationToken) {
    stop.cancelled().await;
    if handing_over() {
        std::future::pending::<()>().await;
    }
}

/// One worker thread's shared pieces.
struct Worker {
    live: Live,
    connections: TaskTracker,
    http: Builders,
    admission: Arc<Admission>,
}

impl Worker {
    async fn run(self, mut commands: mpsc::UnboundedReceiver<AcceptOn>, hard_stop: CancellationToken) {
        let worker = Arc::new(self);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(accept) => match accept.socket.duplicate() {
                        Ok(socket) => {
                            tokio::spawn(worker.clone().accept_loop(accept.listener, socket, accept.gates, accept.stop));
                        }
                        Err(error) => tracing::error!(listener = %accept.listener, %error, "worker cannot use the listening socket"),
                    },
                    None => break,
                },
                () = hard_stop.cancelled() => break,
            }
        }
        // Returning drops this worker's runtime and with it every task still
        // running on it: that is the hard close after the drain deadline.
    }

    /// Accept on `socket` for `listener` until `stop`. At a
    /// `max_connections` limit it stops accepting until a connection closes
    /// (the kernel's backlog holds the next ones), so it never spins.
    async fn accept_loop(
        self: Arc<Self>,
        listener: Arc<str>,
        socket: TcpListener,
        gates: Arc<ListenerGates>,
        stop: CancellationToken,
    ) {
        loop {
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = async {
                    self.admission.room(&gates, &self.live, &listener).await;
                    socket.accept().await
                } => accepted,
            };
            match accepted {
                Ok((stream, client)) => {
                    let (stats, tls, limits, addressing) = {
                        let table = self.live.load();
                        let router = table.router(&listener);
                        // Counted under the listener's counters of the
                        // current snapshot (carried by name across reloads),
                        // for as long as the connection or a tunnel of it is
                        // open.
                        let stats = router.map(|router| router.stats.clone()).unwrap_or_default();
                        let limits = router.map(|router| router.connection_limits).unwrap_or_default();
                        let addressing = router.and_then(|router| router.addressing.clone());
                        (
                            stats,
                            router.and_then(|router| router.tls.clone()),
                            limits,
                            addressing,
                        )
                    };
                    // Another worker may have taken the last place since
                    // `room`: then this connection waits, accepted but
                    // unread, as it would in the backlog.
                    // Handing over, it is served all the same: the client
                    // has connected, and nobody else will accept it.
                    let admitted = tokio::select! {
                        biased;
                        () = stopped_unless_handing_over(&stop) => break,
                        admitted = self.admission.admit(&gates, (&self.live, &listener), client, &limits, &stats) => admitted,
                    };
                    // At max_connections_per_ip: closed, nothing read.
                    let Some(admitted) = admitted else { continue };
                    let accepted = Accepted {
                        open: stats.open(),
                        admitted: Box::new(admitted),
                        max_requests: limits.max_requests_per_connection,
                        tls: tls.is_some(),
                        addressing,
                    };
                    let info = Arc::new(Connection::new(
                        listener.clone(),
                        client,
                        self.live.clone(),
                        self.connections.clone(),
                        stop.clone(),
                        accepted,
                    ));
                    let connection = self
                        .clone()
                        .serve_connection(stream, stats, tls, info, stop.clone());
                    tokio::spawn(self.connections.track_future(connection));
                }
                // Errors of one connection that died in the backlog.
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of file descriptors or memory: back off instead of
                    // spinning, and keep serving what is open.
                    tracing::error!(%listener, %error, "accept failed; retrying in 100ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // Dropping `socket` here closes this worker's duplicate; the socket
        // itself closes when the last duplicate and the control plane let go.
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
