//! Listeners: worker threads, bound sockets, accept loops and draining.
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
//! plaintext ones; [`crate::server::protocol`] owns that decision and the protocol
//! settings. A TLS listener's rustls configuration is taken from the routing
//! snapshot at accept time, so new certificates apply to new handshakes
//! while open connections keep the session they have.
//!
//! [`ListenerSet`] is the control plane's view of the sockets: it plans a new
//! configuration's listeners (binding what is new before anything changes)
//! and then commits the plan. Sockets whose address did not change are never
//! closed and re-bound.

pub(crate) mod protocol;
pub(crate) mod timer;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::forward::{self, Connection};
use crate::observe::metrics::{CountingIo, ListenerStats};
use crate::table::Live;
use crate::tls;
use protocol::{Builders, Graceful, StreamBody, StreamCount, Version};
use timer::CHECK_INTERVAL;

/// Backlog of listening sockets (nginx uses 511; the kernel caps it at
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket, bound by the control thread.
#[derive(Debug)]
pub(crate) struct BoundSocket {
    /// The address as configured (port 0 stays 0): what reloads compare.
    pub(crate) configured: SocketAddr,
    /// The address actually bound.
    pub(crate) local_addr: SocketAddr,
    socket: std::net::TcpListener,
}

impl BoundSocket {
    /// Bind `addr` with `SO_REUSEADDR`, non-blocking, ready for any worker.
    ///
    /// # Errors
    ///
    /// Whatever the bind fails with (address in use, permission, ...).
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let socket: std::net::TcpListener = socket.into();
        Ok(BoundSocket {
            configured: addr,
            local_addr: socket.local_addr()?,
            socket,
        })
    }

    /// The socket itself, for a listener served outside the workers.
    pub(crate) fn into_std(self) -> std::net::TcpListener {
        self.socket
    }
}

/// What a worker is told to do.
struct Serve {
    listener: Arc<str>,
    socket: Arc<BoundSocket>,
    stop: CancellationToken,
}

/// The worker threads.
pub(crate) struct Workers {
    senders: Vec<mpsc::UnboundedSender<Serve>>,
    threads: Vec<JoinHandle<()>>,
    /// Ends every worker's runtime, dropping whatever it still runs.
    hard_stop: CancellationToken,
    /// Every client connection of every worker.
    connections: TaskTracker,
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
        })
    }

    /// Have every worker accept on `socket` for `listener` until `stop`.
    fn serve(&self, listener: &Arc<str>, socket: &Arc<BoundSocket>, stop: &CancellationToken) {
        for tx in &self.senders {
            let _ = tx.send(Serve {
                listener: listener.clone(),
                socket: socket.clone(),
                stop: stop.clone(),
            });
        }
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

/// One worker thread's shared pieces.
struct Worker {
    live: Live,
    connections: TaskTracker,
    http: Builders,
}

impl Worker {
    async fn run(self, mut commands: mpsc::UnboundedReceiver<Serve>, hard_stop: CancellationToken) {
        let worker = Arc::new(self);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(serve) => match serve.socket.socket.try_clone().and_then(TcpListener::from_std) {
                        Ok(socket) => {
                            tokio::spawn(worker.clone().accept_loop(serve.listener, socket, serve.stop));
                        }
                        Err(error) => tracing::error!(listener = %serve.listener, %error, "worker cannot use the listening socket"),
                    },
                    None => break,
                },
                () = hard_stop.cancelled() => break,
            }
        }
        // Returning drops this worker's runtime and with it every task still
        // running on it: that is the hard close after the drain deadline.
    }

    async fn accept_loop(self: Arc<Self>, listener: Arc<str>, socket: TcpListener, stop: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = socket.accept() => accepted,
            };
            match accepted {
                Ok((stream, client)) => {
                    let (stats, tls) = {
                        let table = self.live.load();
                        let router = table.router(&listener);
                        // Counted under the listener's counters of the
                        // current snapshot (carried by name across reloads),
                        // for as long as the connection or a tunnel of it is
                        // open.
                        let stats = router.map(|router| router.stats.clone()).unwrap_or_default();
                        (stats, router.and_then(|router| router.tls.clone()))
                    };
                    let info = Arc::new(Connection::new(
                        listener.clone(),
                        client,
                        self.live.clone(),
                        self.connections.clone(),
                        stop.clone(),
                        stats.open(),
                        tls.is_some(),
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

    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        stats: Arc<ListenerStats>,
        tls: Option<Arc<rustls::ServerConfig>>,
        info: Arc<Connection>,
        stop: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        // A connection keeps the header-read timeout it was accepted with.
        let header_read_timeout = info.live.load().header_read_timeout;
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
            let io = CountingIo::new(stream, stats);
            return self
                .serve_http(version, io, info, stop, check, header_read_timeout)
                .await;
        }
        let stream = CountingIo::new(stream, stats);
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
                self.serve_http(version, io, info, stop, check, header_read_timeout)
                    .await
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
        check: tokio::time::Interval,
        header_read_timeout: Duration,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let live = info.live.clone();
        match version {
            Version::Http1 => {
                let service = service_fn(move |req| forward::handle(req, info.clone()));
                let connection = self
                    .http
                    .http1(header_read_timeout)
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades();
                drive(connection, &stop, check, &live, None).await;
            }
            Version::Http2 => {
                let streams = Arc::new(StreamCount::default());
                let counted = streams.clone();
                let service = service_fn(move |req| {
                    let open = counted.open();
                    let response = forward::handle(req, info.clone());
                    async move {
                        let response = response.await?;
                        Ok::<_, std::convert::Infallible>(response.map(|body| StreamBody::new(body, open)))
                    }
                });
                let connection = self.http.http2().serve_connection(TokioIo::new(io), service);
                drive(
                    connection,
                    &stop,
                    check,
                    &live,
                    Some((&streams, header_read_timeout)),
                )
                .await;
            }
        }
    }
}

/// Poll `connection` (and re-poll it every tick) until it ends; once `stop`
/// fires, or an HTTP/2 connection has had no stream for `idle`'s timeout,
/// shut it down gracefully and give it the shutdown timeout to finish.
async fn drive<C: Graceful>(
    connection: C,
    stop: &CancellationToken,
    mut check: tokio::time::Interval,
    live: &Live,
    idle: Option<(&StreamCount, Duration)>,
) {
    let mut connection = pin!(connection);
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
            _ = check.tick() => {
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
            _ = check.tick() => {}
        }
    }
    tracing::debug!("connection still busy at the shutdown deadline; closing it");
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// A listener that is accepting connections.
#[derive(Debug)]
struct RunningListener {
    socket: Arc<BoundSocket>,
    stop: CancellationToken,
}

/// The listeners the process is running, by name.
#[derive(Debug, Default)]
pub(crate) struct ListenerSet {
    running: BTreeMap<String, RunningListener>,
}

/// What applying a configuration will do to the listeners; every socket it
/// needs is already bound.
#[derive(Debug, Default)]
pub(crate) struct ListenerPlan {
    start: Vec<(String, Arc<BoundSocket>)>,
    stop: Vec<String>,
}

impl ListenerSet {
    /// Bind every socket that `config` needs and the running set lacks.
    ///
    /// A listener keeps its socket when its configured `bind` is unchanged. A
    /// socket given up by a removed or changed listener is handed to a new
    /// listener with the same configured address instead of being re-bound
    /// (which would fail while the old one is open).
    ///
    /// # Errors
    ///
    /// The first bind that fails; nothing has changed then, and the sockets
    /// bound so far are closed again.
    pub(crate) fn plan(&self, config: &Config) -> anyhow::Result<ListenerPlan> {
        let keeps = |name: &str| {
            matches!((self.running.get(name), config.listeners.get(name)),
                (Some(running), Some(wanted)) if running.socket.configured == wanted.bind)
        };
        let mut given_up: HashMap<SocketAddr, Arc<BoundSocket>> = self
            .running
            .iter()
            .filter(|(name, running)| !keeps(name) && running.socket.configured.port() != 0)
            .map(|(_, running)| (running.socket.configured, running.socket.clone()))
            .collect();
        let mut plan = ListenerPlan::default();
        for (name, listener) in &config.listeners {
            if keeps(name) {
                continue;
            }
            let socket = match given_up.remove(&listener.bind) {
                Some(socket) => socket,
                None => Arc::new(
                    BoundSocket::bind(listener.bind)
                        .with_context(|| format!("binding listener `{name}` to {}", listener.bind))?,
                ),
            };
            plan.start.push((name.clone(), socket));
        }
        plan.stop = self.running.keys().filter(|name| !keeps(name)).cloned().collect();
        Ok(plan)
    }

    /// Start and stop listeners as planned. New listeners start accepting
    /// before replaced ones stop.
    pub(crate) fn commit(&mut self, plan: ListenerPlan, workers: &Workers, root: &CancellationToken) {
        let mut replaced = Vec::new();
        for name in plan.stop {
            if let Some(old) = self.running.remove(&name) {
                replaced.push((name, old));
            }
        }
        for (name, socket) in plan.start {
            let stop = root.child_token();
            workers.serve(&Arc::from(name.as_str()), &socket, &stop);
            tracing::info!(listener = %name, addr = %socket.local_addr, "listening");
            self.running.insert(name, RunningListener { socket, stop });
        }
        for (name, old) in replaced {
            if !self.running.contains_key(&name) {
                tracing::info!(listener = %name, addr = %old.socket.local_addr, "listener stopped");
            }
            old.stop.cancel();
        }
    }

    /// The address a listener is bound to.
    pub(crate) fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.running.get(name).map(|l| l.socket.local_addr)
    }
}
