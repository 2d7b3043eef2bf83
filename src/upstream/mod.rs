//! Upstream pools: the servers one `[upstream.NAME]` can send a request to,
//! and in which order a request tries them.
//!
//! An [`UpstreamPool`] is part of one routing snapshot: its server list,
//! weights, policy and settings are rebuilt on every reload. The
//! [`ServerState`] of each server is not: it is keyed by (upstream name,
//! address, transport) and handed from the old snapshot to the new one, so
//! a reload keeps a server's idle connections, in-flight count, failure
//! accounting and health-check verdict (see [`crate::table`]). Likewise
//! [`PoolState`] is carried by upstream name.
//!
//! This module owns the pool and its all-down policy. A server's own state
//! and verdicts are [`server`]'s, its idle connections [`pool`]'s, and
//! reaching it (TCP, TLS, HTTP handshake) is [`connect`]'s. Which server
//! first is [`crate::balance`]'s decision; building pools from
//! configuration is [`crate::table`]'s.

mod connect;
mod pool;
mod server;
mod upload;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) use connect::{alpn, ConnectError, Connector, Sender, TlsTarget, UpstreamBody};
pub(crate) use server::{HoldOutReason, InFlight, ServerState, Verdicts};
pub(crate) use upload::{BodyLimits, Stall, Upload, UploadState};

use crate::balance::{Candidates, Policy, RoundRobinCursor};
use crate::config::{self, HashKey, OnAllDown};

/// What belongs to an upstream rather than to one snapshot of it; carried
/// across reloads by upstream name.
#[derive(Debug, Default)]
pub(crate) struct PoolState {
    /// The rotation position of round robin (and of least_conn's ties).
    pub(crate) cursor: RoundRobinCursor,
    /// Set while no server is available, so that is logged once.
    all_down: AtomicBool,
    /// Attempts made after a first one failed.
    retries: AtomicU64,
}

impl PoolState {
    /// Count an attempt that is a retry.
    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts made after a first one failed.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// The servers of one tier (primaries or backups) and their policy.
pub(crate) struct Tier {
    servers: Arc<[Arc<ServerState>]>,
    /// The configured weight of server `i` (for status; the policy has its
    /// own view of weights).
    weights: Box<[u32]>,
    /// `None` for a tier without servers: no policy is defined over none.
    policy: Option<Box<dyn Policy>>,
    /// In-flight requests of server `i`, for the policy.
    loads: Box<dyn Fn(usize) -> usize + Send + Sync>,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("servers", &self.servers)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Tier {
    /// A tier of `servers` (non-empty) ordered by `policy`.
    pub(crate) fn new(servers: Vec<(Arc<ServerState>, u32)>, policy: Box<dyn Policy>) -> Self {
        Tier::with(servers, Some(policy))
    }

    /// A tier without servers (every host name of it failed to resolve).
    pub(crate) fn empty() -> Self {
        Tier::with(Vec::new(), None)
    }

    fn with(servers: Vec<(Arc<ServerState>, u32)>, policy: Option<Box<dyn Policy>>) -> Self {
        let (servers, weights): (Vec<_>, Vec<_>) = servers.into_iter().unzip();
        let servers: Arc<[Arc<ServerState>]> = servers.into();
        let view = servers.clone();
        Tier {
            servers,
            weights: weights.into(),
            policy,
            loads: Box::new(move |i| view[i].in_flight()),
        }
    }

    fn members(&self, backup: bool) -> impl Iterator<Item = (&Arc<ServerState>, u32, bool)> {
        self.servers
            .iter()
            .zip(self.weights.iter())
            .map(move |(s, w)| (s, *w, backup))
    }

    fn candidates(&self, key: u64) -> impl Iterator<Item = &Arc<ServerState>> {
        let order = self
            .policy
            .as_deref()
            .map(|policy| Candidates::new(policy, self.servers.len(), key, &*self.loads));
        order.into_iter().flatten().map(|i| &self.servers[i])
    }
}

/// A named pool of servers: primaries, optional backups, and its settings.
#[derive(Debug)]
pub(crate) struct UpstreamPool {
    /// The `[upstream.NAME]` this pool was built from.
    pub(crate) name: Arc<str>,
    primaries: Tier,
    backups: Option<Tier>,
    /// The validated `[upstream.NAME]`: timeouts, failure and retry
    /// policy, health checks. Read-only, like the rest of the snapshot.
    pub(crate) settings: config::Upstream,
    state: Arc<PoolState>,
}

impl UpstreamPool {
    /// A pool over `primaries` (empty when none of its host names
    /// resolved) and `backups`.
    pub(crate) fn new(
        name: Arc<str>,
        primaries: Tier,
        backups: Option<Tier>,
        settings: config::Upstream,
        state: Arc<PoolState>,
    ) -> Self {
        UpstreamPool {
            name,
            primaries,
            backups,
            settings,
            state,
        }
    }

    /// The request key of consistent hashing, if the policy is `hash`.
    pub(crate) fn hash_key(&self) -> Option<&HashKey> {
        match &self.settings.balance {
            config::Balance::Hash(key) => Some(key),
            _ => None,
        }
    }

    /// Every server, primaries first.
    pub(crate) fn servers(&self) -> impl Iterator<Item = &Arc<ServerState>> {
        let backups = self.backups.iter().flat_map(|t| t.servers.iter());
        self.primaries.servers.iter().chain(backups)
    }

    /// Every server with its weight and whether it is a backup, primaries
    /// first.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&Arc<ServerState>, u32, bool)> {
        self.primaries
            .members(false)
            .chain(self.backups.iter().flat_map(|t| t.members(true)))
    }

    /// The state shared with the next snapshot of this upstream.
    pub(crate) fn state(&self) -> &Arc<PoolState> {
        &self.state
    }

    /// The servers one request may try, best first, each at most once:
    /// primaries in the policy's order, then backups. Only servers that are
    /// available (or all of them, in `try_all` mode when none is) come out.
    pub(crate) fn candidates(&self, key: u64) -> impl Iterator<Item = &Arc<ServerState>> {
        let holds_out = self.holds_out_failures();
        // A lone server ignores passive health, never its health checks.
        let usable = move |s: &ServerState| if holds_out { s.is_available() } else { s.is_up() };
        let any_available = self.servers().any(|s| usable(s));
        let ignore_health = !any_available && self.settings.on_all_down == OnAllDown::TryAll;
        self.note_all_down(!any_available);
        // None available and none to try: not a walk past every server.
        let walks = any_available || ignore_health;
        let backups = self.backups.iter().flat_map(move |t| t.candidates(key));
        self.primaries
            .candidates(key)
            .chain(backups)
            .take_while(move |_| walks)
            .filter(move |s| ignore_health || usable(s))
    }

    /// How to reach `server`: the pool's protocol, and TLS if it was
    /// written `https://`. Only asked when opening a connection.
    pub(crate) fn connector(&self, server: &ServerState) -> Connector {
        Connector {
            protocol: self.settings.protocol,
            tls: server.tls.clone(),
        }
    }

    /// Whether connections this pool opened to `server` are fit for a
    /// server of `next` reached with `tls`: same protocol, same TLS
    /// settings, same TLS use and name. When not, a reload makes the server
    /// a new [`ServerState`], so that none of its pooled connections is
    /// reused.
    pub(crate) fn same_transport(
        &self,
        server: &ServerState,
        next: &config::Upstream,
        tls: Option<&rustls_pki_types::ServerName<'static>>,
    ) -> bool {
        self.settings.protocol == next.protocol
            && self.settings.tls == next.tls
            && server.tls.as_ref().map(|t| &t.name) == tls
    }

    /// Whether failing servers are held out. Like nginx, a lone server is
    /// never held out by passive checks: refusing it would only turn a blip
    /// into `fail_timeout` of 502s.
    pub(crate) fn holds_out_failures(&self) -> bool {
        self.primaries.servers.len() + self.backups.as_ref().map_or(0, |b| b.servers.len()) > 1
    }

    fn note_all_down(&self, all_down: bool) {
        if self.state.all_down.load(Ordering::Relaxed) == all_down {
            return;
        }
        if self.state.all_down.swap(all_down, Ordering::Relaxed) != all_down {
            if all_down {
                let mode = match self.settings.on_all_down {
                    OnAllDown::Fail => "answering 502",
                    OnAllDown::TryAll => "trying every server anyway (on_all_down = \"try_all\")",
                };
                tracing::error!(upstream = %self.name, "no server available; {mode}");
            } else {
                tracing::info!(upstream = %self.name, "servers available again");
            }
        }
    }
}
