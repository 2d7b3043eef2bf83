//! The control plane's sockets: [`BoundSocket`] (one listening socket,
//! bound once by the control thread) and [`ListenerSet`], the listeners the
//! process runs, changed by a fallible [`ListenerSet::plan`] and an
//! infallible [`ListenerSet::commit`].
//!
//! Planning binds everything new before anything changes, so a reload whose
//! socket cannot be bound is rejected with the old listeners untouched;
//! committing only starts and stops accept loops. Sockets whose address did
//! not change are never closed and re-bound. Accepting on the sockets is the
//! workers' job ([`super::Workers`]); which listeners a configuration wants
//! is [`crate::config`]'s.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Workers;
use crate::config::Config;

/// Backlog asked for on listening sockets: more than any kernel allows, so
/// that the kernel's own limit applies (Linux caps it at
/// `net.core.somaxconn` without an error; 4096 by default since 5.4). A
/// fixed 1,024 overflowed under a burst of 5,000 connects (each overflow a
/// 1 s SYN retransmit); the operator's knob is then the sysctl, as for
/// HAProxy. nginx asks for 511.
const LISTEN_BACKLOG: i32 = 65_535;

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

    /// A duplicate of the socket for one worker's runtime; every worker
    /// accepts on its own.
    pub(super) fn duplicate(&self) -> io::Result<TcpListener> {
        self.socket.try_clone().and_then(TcpListener::from_std)
    }
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
            workers.accept_on(&Arc::from(name.as_str()), &socket, &stop);
            tracing::info!(listener = %name, addr = %socket.local_addr, "listening");
            self.running.insert(name, RunningListener { socket, stop });
        }
        for (name, old) in replaced {
            if !self.running.contains_key(&name) {
                tracing::info!(listener = %name, addr = %old.socket.local_addr, "listener stopped");
            }
            old.stop.cancel();
        }
        workers.limits_changed();
    }

    /// The address a listener is bound to.
    pub(crate) fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.running.get(name).map(|l| l.socket.local_addr)
    }
}
