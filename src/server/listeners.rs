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
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

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

    /// A socket bound by the process this one replaces (see
    /// [`crate::upgrade`]), configured at `configured`: used as it is, never
    /// re-bound.
    ///
    /// # Errors
    ///
    /// When it cannot be made non-blocking or has no local address (it is
    /// not a bound TCP socket).
    pub(crate) fn adopt(configured: SocketAddr, socket: std::net::TcpListener) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(BoundSocket {
            configured,
            local_addr: socket.local_addr()?,
            socket,
        })
    }

    /// The socket itself, for a listener served outside the workers.
    pub(crate) fn into_std(self) -> std::net::TcpListener {
        self.socket
    }

    /// Another handle on the same socket.
    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(BoundSocket {
            configured: self.configured,
            local_addr: self.local_addr,
            socket: self.socket.try_clone()?,
        })
    }

    /// A duplicate of the socket for one worker's runtime; every worker
    /// accepts on its own.
    pub(super) fn duplicate(&self) -> io::Result<TcpListener> {
        self.socket.try_clone().and_then(TcpListener::from_std)
    }
}

/// A listener that is accepting connections.
impl AsFd for BoundSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[derive(Debug)]
struct RunningListener {
    socket: Arc<BoundSocket>,
    stop: CancellationToken,
}

/// The listeners the process is running, by name.
#[derive(Debug, Default)]
pub(crate) struct ListenerSet {
    running: BTreeMap<String, RunningListener>,
    /// Sockets handed over by the process this one replaces, until the
    /// first commit (which closes those no listener took). A mutex only
    /// because planning borrows the set shared; the control plane alone
    /// touches it.
    adoptable: Mutex<Vec<(String, BoundSocket)>>,
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
                None => match self.take_adoptable(name, listener.bind) {
                    Some(socket) => Arc::new(socket),
                    None => Arc::new(
                        BoundSocket::bind(listener.bind)
                            .with_context(|| format!("binding listener `{name}` to {}", listener.bind))?,
                    ),
                },
            };
            plan.start.push((name.clone(), socket));
        }
        plan.stop = self.running.keys().filter(|name| !keeps(name)).cloned().collect();
        Ok(plan)
    }

    /// Use `sockets` (listener name, socket), handed over by the process
    /// this one replaces, for the listeners the next plan binds at their
    /// configured address: an address with a port is matched whatever the
    /// name, port 0 only by the same name.
    pub(crate) fn adopt(&mut self, sockets: Vec<(String, BoundSocket)>) {
        *self.adoptable.get_mut().unwrap_or_else(|e| e.into_inner()) = sockets;
    }

    fn take_adoptable(&self, name: &str, bind: SocketAddr) -> Option<BoundSocket> {
        let mut adoptable = self.adoptable.lock().unwrap_or_else(|e| e.into_inner());
        let at = adoptable
            .iter()
            .position(|(was, socket)| socket.configured == bind && (bind.port() != 0 || was == name))?;
        let (_, socket) = adoptable.swap_remove(at);
        tracing::info!(listener = %name, addr = %socket.local_addr, "adopted the socket of the replaced process");
        Some(socket)
    }

    /// Every running listener's socket, by name.
    pub(crate) fn sockets(&self) -> impl Iterator<Item = (&str, &BoundSocket)> {
        self.running.iter().map(|(name, l)| (name.as_str(), &*l.socket))
    }

    /// Start and stop listeners as planned. New listeners start accepting
    /// before replaced ones stop.
    pub(crate) fn commit(&mut self, plan: ListenerPlan, workers: &Workers, root: &CancellationToken) {
        // Handed-over sockets no listener wanted close here.
        self.adoptable
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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
