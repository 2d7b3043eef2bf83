//! One upstream server and what is known about it: where it is, how it is
//! reached, its in-flight count and its two health verdicts.
//!
//! A [`ServerState`] outlives routing snapshots: [`crate::table`] hands it
//! from the old snapshot to the new one by identity (upstream, address and
//! transport), so a reload keeps a server's idle connections, in-flight
//! count, failure accounting and health-check verdict.
//!
//! Health is two independent verdicts, both atomics read without a lock:
//! active (set by [`crate::health`] checks, always up without checks) and
//! passive (nginx's `max_fails`/`fail_timeout`, and `eject_on_5xx`, fed by
//! real requests in [`crate::forward`]). A server is available when both
//! say so. This module keeps the verdicts; deciding which server a request
//! tries is [`super::UpstreamPool`]'s job, and its connections are
//! [`super::pool`]'s.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use thread_local::ThreadLocal;

use super::connect::TlsTarget;
use super::pool::{IdleConn, SharedH2};
use crate::config;
use crate::observe::clock::millis;
use crate::observe::metrics::ServerStats;

/// One upstream server and everything about it that survives a reload.
#[derive(Debug)]
pub(crate) struct ServerState {
    /// The server as configured (without `http://`), plus the address when
    /// it came from DNS, for logs.
    pub(crate) name: Arc<str>,
    /// The server as written, without the scheme (`HOST:PORT`): the `Host`
    /// of requests that have none (health checks, HTTP/1.0 requests).
    host: Arc<str>,
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// For a server written `https://`: the TLS it is reached with. Part of
    /// its identity: pooled connections are only fit for the same one.
    pub(super) tls: Option<TlsTarget>,
    /// Requests sent and not yet answered in full.
    in_flight: AtomicUsize,
    /// Passive health: what real requests taught us.
    passive: Passive,
    /// Active health: what health checks say (always up without checks).
    active_up: AtomicBool,
    /// Idle keep-alive connections, one stack per worker thread.
    pub(super) idle: ThreadLocal<RefCell<Vec<IdleConn>>>,
    /// How many of them each stack keeps at most: the pool's `keepalive`,
    /// set again by every build (a reload may change it; the server stays).
    pub(super) keepalive: AtomicU32,
    /// The HTTP/2 connection of each worker thread, shared by its requests.
    pub(super) shared: ThreadLocal<RefCell<SharedH2>>,
    /// Attempts by outcome.
    pub(crate) stats: ServerStats,
}

/// Failure accounting with nginx's `max_fails`/`fail_timeout` semantics.
/// Times are [`crate::observe::clock::millis`]; races between workers can
/// only make a count off by one, which these semantics tolerate.
#[derive(Debug, Default)]
struct Passive {
    /// Until when the server is held out; 0 when it is in rotation.
    held_out_until: AtomicU64,
    /// Failures in the current window.
    fails: AtomicU32,
    /// Start of the current failure window.
    window_start: AtomicU64,
    /// Consecutive 5xx responses.
    consecutive_5xx: AtomicU32,
}

/// Why a server was held out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HoldOutReason {
    /// `max_fails` failures within `fail_timeout`.
    Failures,
    /// `eject_on_5xx` consecutive 5xx responses.
    Consecutive5xx,
}

impl ServerState {
    /// Fresh state for a server seen for the first time: `name` for logs,
    /// `host` as written, reached at `addr` (with `tls` for an `https://`
    /// server); `up` is its active health until a check says otherwise.
    pub(crate) fn new(name: &str, host: &str, addr: SocketAddr, tls: Option<TlsTarget>, up: bool) -> Self {
        ServerState {
            name: name.into(),
            host: host.into(),
            addr,
            tls,
            in_flight: AtomicUsize::new(0),
            passive: Passive::default(),
            active_up: AtomicBool::new(up),
            idle: ThreadLocal::new(),
            keepalive: AtomicU32::new(config::DEFAULT_KEEPALIVE),
            shared: ThreadLocal::new(),
            stats: ServerStats::default(),
        }
    }

    /// Keep at most `n` idle connections per worker (its pool's `keepalive`).
    pub(crate) fn set_keepalive(&self, n: u32) {
        self.keepalive.store(n, Ordering::Relaxed);
    }

    /// The server's `Host`, for requests that have none (health checks,
    /// HTTP/1.0 requests): the server as written, without its scheme.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Whether this server may take requests: up by its health checks and
    /// not held out by failures.
    pub(crate) fn is_available(&self) -> bool {
        if !self.active_up.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.passive.held_out_until.load(Ordering::Relaxed);
        // The common case costs one load and no clock read.
        until == 0 || millis() >= until
    }

    /// Requests sent and not yet answered in full.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a request as in flight until the guard drops.
    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// What active health checks say.
    pub(crate) fn is_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Set by active health checks; returns the previous value.
    pub(crate) fn set_up(&self, up: bool) -> bool {
        self.active_up.swap(up, Ordering::Relaxed)
    }

    /// Whether the server is held out by passive health right now.
    pub(crate) fn is_held_out(&self) -> bool {
        let until = self.passive.held_out_until.load(Ordering::Relaxed);
        until != 0 && millis() < until
    }

    /// A failed attempt (connect error, reset, timeout). Returns why the
    /// server was just held out, if this failure did it.
    pub(crate) fn record_failure(&self, settings: &config::Upstream) -> Option<HoldOutReason> {
        if settings.max_fails == 0 {
            return None;
        }
        let now = millis();
        let window = settings.fail_timeout.as_millis() as u64;
        let p = &self.passive;
        if now.saturating_sub(p.window_start.load(Ordering::Relaxed)) > window {
            p.window_start.store(now, Ordering::Relaxed);
            p.fails.store(0, Ordering::Relaxed);
        }
        let fails = p.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= settings.max_fails {
            p.fails.store(0, Ordering::Relaxed);
            self.hold_out(now.saturating_add(window));
            return Some(HoldOutReason::Failures);
        }
        None
    }

    /// A response arrived. 5xx responses count towards `eject_on_5xx`;
    /// anything else clears the failure state. Returns why the server was
    /// just held out, if this response did it.
    pub(crate) fn record_response(&self, status: u16, settings: &config::Upstream) -> Option<HoldOutReason> {
        let p = &self.passive;
        if (500..600).contains(&status) {
            if let Some(limit) = settings.eject_on_5xx {
                let count = p.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                if count >= limit {
                    p.consecutive_5xx.store(0, Ordering::Relaxed);
                    self.hold_out(millis().saturating_add(settings.fail_timeout.as_millis() as u64));
                    return Some(HoldOutReason::Consecutive5xx);
                }
            }
            return None;
        }
        // Loads first: a healthy server's request path writes nothing.
        if p.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            p.consecutive_5xx.store(0, Ordering::Relaxed);
        }
        if p.fails.load(Ordering::Relaxed) != 0 {
            p.fails.store(0, Ordering::Relaxed);
        }
        if p.held_out_until.load(Ordering::Relaxed) != 0 {
            p.held_out_until.store(0, Ordering::Relaxed);
        }
        None
    }

    fn hold_out(&self, until: u64) {
        self.passive.held_out_until.store(until.max(1), Ordering::Relaxed);
    }

    /// Whether the server is reached over TLS (part of its identity).
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Its verdicts, for the process that replaces this one.
    pub(crate) fn verdicts(&self) -> Verdicts {
        let now = millis();
        let p = &self.passive;
        let until = p.held_out_until.load(Ordering::Relaxed);
        Verdicts {
            up: self.is_up(),
            held_out_ms: until.saturating_sub(now),
            fails: p.fails.load(Ordering::Relaxed),
            window_age_ms: now.saturating_sub(p.window_start.load(Ordering::Relaxed)),
            consecutive_5xx: p.consecutive_5xx.load(Ordering::Relaxed),
        }
    }

    /// Take over `verdicts` from the process this one replaces.
    pub(crate) fn take_verdicts(&self, verdicts: &Verdicts) {
        let now = millis();
        let p = &self.passive;
        self.set_up(verdicts.up);
        if verdicts.held_out_ms != 0 {
            self.hold_out(now.saturating_add(verdicts.held_out_ms));
        }
        p.fails.store(verdicts.fails, Ordering::Relaxed);
        p.window_start
            .store(now.saturating_sub(verdicts.window_age_ms), Ordering::Relaxed);
        p.consecutive_5xx
            .store(verdicts.consecutive_5xx, Ordering::Relaxed);
    }
}

/// A server's health verdicts and failure accounting, with times as
/// durations from now: another process's clock has another origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Verdicts {
    /// Active health.
    pub(crate) up: bool,
    /// How much longer it is held out (0: it is not).
    pub(crate) held_out_ms: u64,
    /// Failures in the current `fail_timeout` window, and its age.
    pub(crate) fails: u32,
    pub(crate) window_age_ms: u64,
    /// Consecutive 5xx responses.
    pub(crate) consecutive_5xx: u32,
}

/// A request counted in its server's in-flight number; dropping it ends
/// the count.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ServerState>);

impl InFlight {
    /// The server the request went to.
    pub(crate) fn server(&self) -> &Arc<ServerState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::OnAllDown;

    fn settings(max_fails: u32, eject_on_5xx: Option<u32>) -> crate::config::Upstream {
        crate::config::Upstream {
            name: "app".into(),
            balance: crate::config::Balance::RoundRobin,
            servers: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            max_fails,
            fail_timeout: Duration::from_secs(10),
            eject_on_5xx,
            on_all_down: OnAllDown::Fail,
            retries: 1,
            retry_on: crate::config::RetryOn::default(),
            retry_non_idempotent: false,
            health_check: None,
            protocol: crate::config::UpstreamProtocol::Http1,
            tls: crate::config::UpstreamTls::default(),
            tunnel_timeout: Duration::from_secs(3600),
            keepalive: crate::config::DEFAULT_KEEPALIVE,
        }
    }

    fn server() -> Arc<ServerState> {
        Arc::new(ServerState::new(
            "127.0.0.1:1",
            "127.0.0.1:1",
            "127.0.0.1:1".parse().unwrap(),
            None,
            true,
        ))
    }

    #[test]
    fn max_fails_within_the_window_holds_out_and_a_response_recovers() {
        let s = server();
        let three = settings(3, None);
        assert!(s.record_failure(&three).is_none());
        assert!(s.record_failure(&three).is_none());
        assert!(s.is_available());
        assert!(matches!(s.record_failure(&three), Some(HoldOutReason::Failures)));
        assert!(!s.is_available());
        s.record_response(200, &three);
        assert!(s.is_available());
    }

    #[test]
    fn max_fails_zero_never_holds_out() {
        let s = server();
        for _ in 0..10 {
            assert!(s.record_failure(&settings(0, None)).is_none());
        }
        assert!(s.is_available());
    }

    #[test]
    fn consecutive_5xx_eject() {
        let s = server();
        let two = settings(1, Some(2));
        assert!(s.record_response(502, &two).is_none());
        assert!(
            s.record_response(200, &two).is_none(),
            "a success resets the count"
        );
        assert!(s.record_response(500, &two).is_none());
        assert!(matches!(
            s.record_response(503, &two),
            Some(HoldOutReason::Consecutive5xx)
        ));
        assert!(!s.is_available());
    }

    #[test]
    fn active_health_and_in_flight() {
        let s = server();
        assert!(s.set_up(false));
        assert!(!s.is_available());
        s.set_up(true);
        let guard = s.start_request();
        assert_eq!(s.in_flight(), 1);
        drop(guard);
        assert_eq!(s.in_flight(), 0);
    }
}
