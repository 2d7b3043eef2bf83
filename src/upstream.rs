//! Upstream pools and the state of each server, which outlives snapshots.
//!
//! An [`UpstreamPool`] is part of one routing snapshot: its server list,
//! weights and policy are rebuilt on every reload. The [`ServerState`] of each
//! server is not: it is keyed by (upstream name, address) and handed from the
//! old snapshot to the new one, so a reload keeps a server's idle
//! connections and its failure hold-out (see [`crate::table`]).
//!
//! Connections are pooled per worker thread: each worker runs its own
//! single-threaded runtime, and a connection's task lives on the worker that
//! opened it, so a worker only ever reuses its own connections and the pool
//! needs no lock shared between threads.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

use crate::balance::{Candidates, Policy};

/// How long a server that failed a connection is held out of rotation
/// (nginx's `fail_timeout` default).
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle upstream connection may be reused. Below the keep-alive
/// timeouts that common servers use (nginx 75s, Apache 5s..., Node 5s), so we
/// rarely send on a connection the server is closing at that very moment.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most idle connections kept per server per worker thread.
pub const MAX_IDLE_PER_WORKER: usize = 256;

/// The request body type sent upstream: the client's body, streamed.
pub type UpstreamBody = Incoming;

/// A sender on an upstream HTTP/1.1 connection.
pub type Sender = http1::SendRequest<UpstreamBody>;

/// A named pool of servers and the policy that orders them.
#[derive(Debug)]
pub struct UpstreamPool {
    /// The `[upstream.NAME]` this pool was built from.
    pub name: Arc<str>,
    /// Non-empty (validated).
    pub servers: Box<[Arc<ServerState>]>,
    policy: Box<dyn Policy>,
    /// Upper bound for establishing a TCP connection to one server.
    pub connect_timeout: Duration,
}

impl UpstreamPool {
    /// A pool over `servers`, ordered by `policy`.
    pub fn new(
        name: Arc<str>,
        servers: Box<[Arc<ServerState>]>,
        policy: Box<dyn Policy>,
        connect_timeout: Duration,
    ) -> Self {
        assert!(!servers.is_empty(), "validated: an upstream has servers");
        UpstreamPool {
            name,
            servers,
            policy,
            connect_timeout,
        }
    }

    /// The servers one request may try, best first, each at most once.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<ServerState>> {
        Candidates::new(&*self.policy, self.servers.len()).map(|i| &self.servers[i])
    }

    /// Whether failing servers are held out. Like nginx, a lone server is
    /// never held out: refusing it would only turn a blip into 10s of 502s.
    pub fn holds_out_failures(&self) -> bool {
        self.servers.len() > 1
    }
}

/// One upstream server and everything about it that survives a reload.
#[derive(Debug)]
pub struct ServerState {
    /// The address as configured (without `http://`), for logs.
    pub name: Arc<str>,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Milliseconds since [`clock_origin`] until which this server is held
    /// out after a failure; 0 when it is in rotation. An atomic so the
    /// request path reads it without a lock.
    held_out_until: AtomicU64,
    /// Idle keep-alive connections, one stack per worker thread.
    idle: ThreadLocal<RefCell<Vec<IdleConn>>>,
}

#[derive(Debug)]
struct IdleConn {
    sender: Sender,
    since: Instant,
}

impl ServerState {
    /// Fresh state for a server seen for the first time.
    pub fn new(name: &str, addr: SocketAddr) -> Self {
        ServerState {
            name: name.into(),
            addr,
            held_out_until: AtomicU64::new(0),
            idle: ThreadLocal::new(),
        }
    }

    /// Whether this server is in rotation at `now`.
    pub fn is_available(&self) -> bool {
        let until = self.held_out_until.load(Ordering::Relaxed);
        // The common case costs one load and no clock read.
        until == 0 || millis_since_origin() >= until
    }

    /// Hold this server out of rotation for [`FAIL_TIMEOUT`].
    pub fn hold_out(&self) {
        let until = millis_since_origin() + FAIL_TIMEOUT.as_millis() as u64;
        self.held_out_until.store(until.max(1), Ordering::Relaxed);
    }

    /// Put a server back into rotation (it answered).
    pub fn mark_ok(&self) {
        if self.held_out_until.load(Ordering::Relaxed) != 0 {
            self.held_out_until.store(0, Ordering::Relaxed);
        }
    }

    /// An idle connection of this worker that is still open, if any. Waits
    /// only for a just-returned connection to become ready for its next
    /// request, never for a busy one: only finished connections are pooled.
    pub async fn checkout(&self) -> Option<Sender> {
        loop {
            let conn = {
                let mut idle = self.idle.get()?.borrow_mut();
                let conn = idle.pop()?;
                if conn.since.elapsed() > IDLE_TIMEOUT {
                    // Everything below is older still.
                    idle.clear();
                    return None;
                }
                conn
            };
            let mut sender = conn.sender;
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Return a connection whose last response has been read completely.
    pub fn check_in(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.get_or(Default::default).borrow_mut();
        if idle.len() < MAX_IDLE_PER_WORKER {
            idle.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Open a new connection, within `timeout`.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Timeout`] or [`ConnectError::Io`] when the server
    /// cannot be reached; [`ConnectError::Handshake`] is not expected for
    /// HTTP/1.1 but kept for completeness.
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| ConnectError::Timeout(timeout))?
            .map_err(ConnectError::Io)?;
        // Requests are small writes that must not wait for an ACK.
        stream.set_nodelay(true).map_err(ConnectError::Io)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        let server = self.name.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%server, %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Why a connection to a server could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect did not finish in time.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed (refused, unreachable, ...).
    #[error("connect failed: {0}")]
    Io(#[source] io::Error),
    /// The HTTP/1.1 connection could not be set up.
    #[error("handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
}

/// The instant all hold-out deadlines count from.
fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn millis_since_origin() -> u64 {
    clock_origin().elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_out_and_recover() {
        let s = ServerState::new("127.0.0.1:1", "127.0.0.1:1".parse().unwrap());
        assert!(s.is_available());
        s.hold_out();
        assert!(!s.is_available());
        s.mark_ok();
        assert!(s.is_available());
    }
}
