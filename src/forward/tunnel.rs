//! Upgraded connections: after a 101 (WebSocket or any other `Upgrade`),
//! bytes are copied both ways between the client and the upstream server
//! until either side closes or nothing moves for the upstream's
//! `tunnel_timeout`.
//!
//! This module owns the life of a tunnel once both sides have switched
//! protocols; deciding whether a request is an upgrade and sending it is
//! [`super::upgrade`]'s job.
//!
//! A tunnel holds what it needs (the two connections and the server's
//! in-flight count), not the routing snapshot, so a reload never cuts it.
//! It runs as a task of the worker's connection tracker and watches its
//! listener's stop token: once the listener stops (shutdown, or the listener
//! was removed or re-bound), the tunnel gets the shutdown timeout and is
//! then closed, as an HTTP connection would be.
//!
//! Idleness is detected without reading the clock on the data path: both
//! directions add the bytes they move to one counter, and a tick compares it
//! with its previous value.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::forward::Connection;
use crate::upstream::InFlight;

/// Longest interval between idleness checks; shorter timeouts are checked
/// at their own period.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The two sides of a tunnel about to open, and its limits.
#[derive(Debug)]
pub(super) struct Tunnel {
    /// The client's connection, available once the 101 has been written.
    pub(crate) client: OnUpgrade,
    /// The upstream's connection, available once its 101 has been read.
    pub(crate) upstream: OnUpgrade,
    /// Close after this long without a byte in either direction.
    pub(crate) idle_timeout: Duration,
    /// The listener's stop token.
    pub(crate) stop: CancellationToken,
    /// How long a stopping tunnel may go on (the shutdown timeout).
    pub(crate) grace: Duration,
    /// Counts the tunnel as one of its server's in-flight requests, so
    /// `least_conn` sees long-lived connections.
    pub(crate) in_flight: InFlight,
    /// Keeps the client connection counted open (it outlives its HTTP
    /// connection task); held, never read.
    pub(super) _connection: Arc<Connection>,
}

impl Tunnel {
    /// Wait for both sides to switch, then copy until one closes, the
    /// tunnel is idle for `idle_timeout`, or `grace` after `stop`.
    pub(super) async fn run(self) {
        let server = self.in_flight.server().name.clone();
        let (client, upstream) = match tokio::try_join!(self.client, self.upstream) {
            Ok(sides) => sides,
            Err(error) => {
                tracing::debug!(%server, %error, "upgrade did not complete");
                return;
            }
        };
        let moved = AtomicU64::new(0);
        let mut client = Counted {
            io: TokioIo::new(client),
            moved: &moved,
        };
        let mut upstream = Counted {
            io: TokioIo::new(upstream),
            moved: &moved,
        };
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        let stopping = async {
            self.stop.cancelled().await;
            tokio::time::sleep(self.grace).await;
        };
        tokio::select! {
            result = copy => match result {
                Ok((up, down)) => tracing::debug!(%server, up, down, "tunnel closed"),
                Err(error) => tracing::debug!(%server, %error, "tunnel failed"),
            },
            () = idle(&moved, self.idle_timeout) => {
                tracing::debug!(%server, timeout = ?self.idle_timeout, "tunnel idle; closing it");
            }
            () = stopping => tracing::debug!(%server, "tunnel still open at the shutdown deadline; closing it"),
        }
        // Dropping both sides closes them.
    }
}

/// Resolves once `moved` has not changed for `timeout` (to within one
/// check period).
async fn idle(moved: &AtomicU64, timeout: Duration) {
    let period = timeout.min(IDLE_CHECK);
    let mut check = tokio::time::interval(period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    let mut last = moved.load(Ordering::Relaxed);
    let mut quiet = Duration::ZERO;
    loop {
        check.tick().await;
        let now = moved.load(Ordering::Relaxed);
        if now == last {
            quiet += period;
            if quiet >= timeout {
                return;
            }
        } else {
            last = now;
            quiet = Duration::ZERO;
        }
    }
}

/// One side of a tunnel, adding the bytes it moves to a shared counter.
struct Counted<'a, I> {
    io: I,
    moved: &'a AtomicU64,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<'_, I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.moved.fetch_add(read as u64, Ordering::Relaxed);
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<'_, I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Reads already count every byte that moves; writes only pass on.
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_resolves_only_after_a_quiet_timeout() {
        let moved = AtomicU64::new(0);
        let timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let busy = async {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                moved.fetch_add(1, Ordering::Relaxed);
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = idle(&moved, timeout) => {}
            () = busy => unreachable!(),
        }
        let waited = started.elapsed();
        // Traffic until 300ms, then 200ms of quiet, checked every 200ms.
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
    }
}
