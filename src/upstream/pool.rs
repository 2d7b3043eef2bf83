//! Connections kept open to upstream servers, per worker thread.
//!
//! Each worker runs its own single-threaded runtime, and a connection's task
//! lives on the worker that opened it, so a worker only ever reuses its own
//! connections and the pool needs no lock shared between threads.
//!
//! HTTP/1.1 connections carry one request at a time and wait in the
//! per-worker idle stack between requests. An HTTP/2 connection (`protocol =
//! "h2"` over TLS, `"h2c"` in the clear) carries many streams at once, so
//! each worker keeps one per server and every request clones its sender.
//!
//! This module owns checkout and check-in; opening a connection is
//! [`super::connect`]'s job, and which server to ask is
//! [`super::UpstreamPool`]'s.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::conn::http2;
use tokio::sync::Notify;

use super::connect::{Connector, Sender, UpstreamBody};
use super::{ConnectError, ServerState};
use crate::config::UpstreamProtocol;

/// How long an idle upstream connection may be reused. Below the keep-alive
/// timeouts that common servers use (nginx 75s, Apache 5s..., Node 5s), so we
/// rarely send on a connection the server is closing at that very moment.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A worker's HTTP/2 connection to one server.
#[derive(Debug, Default)]
pub(super) enum SharedH2 {
    #[default]
    None,
    /// One request is opening it; the others wait for that instead of each
    /// opening their own (a burst of first requests would otherwise open as
    /// many connections as it has requests).
    Opening(Arc<Notify>),
    Open(http2::SendRequest<UpstreamBody>),
}

#[derive(Debug)]
pub(super) struct IdleConn {
    sender: Sender,
    since: Instant,
}

impl ServerState {
    /// An idle connection of this worker that is still open, if any. Waits
    /// only for a just-returned connection to become ready for its next
    /// request, never for a busy one: only finished connections are pooled.
    pub(crate) async fn checkout(&self) -> Option<Sender> {
        if let Some(sender) = self.checkout_h2() {
            return Some(sender);
        }
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
    pub(crate) fn check_in(&self, sender: Sender) {
        // An HTTP/2 connection is shared, never idle: this was a clone.
        if sender.is_closed() || matches!(sender, Sender::Http2(_)) {
            return;
        }
        let mut idle = self.idle.get_or(Default::default).borrow_mut();
        if idle.len() < self.keepalive.load(Ordering::Relaxed) as usize {
            idle.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Open a new connection with `connector`, within `timeout` (TCP and
    /// TLS handshakes together). An HTTP/2 connection becomes this worker's
    /// shared one.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Timeout`], [`ConnectError::Io`] when the server
    /// cannot be reached or the TLS handshake fails;
    /// [`ConnectError::Handshake`] when HTTP/2 cannot be set up.
    pub(crate) async fn connect(
        &self,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        match connector.protocol {
            UpstreamProtocol::Http1 => {
                connector
                    .http1(self.addr, timeout, false, self.name.clone())
                    .await
            }
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => self.connect_h2(connector, timeout).await,
        }
    }

    /// This worker's shared HTTP/2 connection: opened here, or by another
    /// request that was already opening it (then waited for, up to
    /// `timeout`; if that one fails, this request tries on its own).
    async fn connect_h2(&self, connector: &Connector, timeout: Duration) -> Result<Sender, ConnectError> {
        let opening = match &*self.shared.get_or(Default::default).borrow() {
            SharedH2::Opening(opened) => Some(opened.clone()),
            SharedH2::None | SharedH2::Open(_) => None,
        };
        if let Some(opened) = opening {
            // Created before any await, so it cannot miss the wake-up.
            let _ = tokio::time::timeout(timeout, opened.notified()).await;
            if let Some(sender) = self.checkout_h2() {
                return Ok(sender);
            }
            return connector.http2(self.addr, timeout, self.name.clone()).await;
        }
        let opened = Arc::new(Notify::new());
        *self.shared.get_or(Default::default).borrow_mut() = SharedH2::Opening(opened.clone());
        // Wakes the waiters however this ends, dropped future included.
        let _opening = Opening { server: self, opened };
        let sender = connector.http2(self.addr, timeout, self.name.clone()).await?;
        if let Sender::Http2(shared) = &sender {
            *self.shared.get_or(Default::default).borrow_mut() = SharedH2::Open(shared.clone());
        }
        Ok(sender)
    }

    /// This worker's open HTTP/2 connection, if any (a closed one is
    /// forgotten).
    fn checkout_h2(&self) -> Option<Sender> {
        let mut shared = self.shared.get()?.borrow_mut();
        match &*shared {
            SharedH2::Open(sender) if !sender.is_closed() => Some(Sender::Http2(sender.clone())),
            SharedH2::Open(_) => {
                *shared = SharedH2::None;
                None
            }
            SharedH2::None | SharedH2::Opening(_) => None,
        }
    }

    /// Open a new HTTP/1.1 connection for one request that may switch
    /// protocols (`Upgrade`): if the server answers 101, the connection is
    /// handed over to [`hyper::upgrade::on`] instead of closing. Such a
    /// connection is never pooled. Upgrades always use HTTP/1.1, whatever
    /// the pool's `protocol`.
    ///
    /// # Errors
    ///
    /// As [`ServerState::connect`].
    pub(crate) async fn connect_for_upgrade(
        &self,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        connector.http1(self.addr, timeout, true, self.name.clone()).await
    }
}

/// Marks a worker's HTTP/2 connection as being opened; when dropped, the
/// requests waiting for it are woken, and a slot still marked (the opening
/// failed or was abandoned) is cleared.
struct Opening<'a> {
    server: &'a ServerState,
    opened: Arc<Notify>,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.server.shared.get() {
            let mut slot = slot.borrow_mut();
            if matches!(&*slot, SharedH2::Opening(opened) if Arc::ptr_eq(opened, &self.opened)) {
                *slot = SharedH2::None;
            }
        }
        self.opened.notify_waiters();
    }
}
