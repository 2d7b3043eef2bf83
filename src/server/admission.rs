//! Admission: how many client connections may be open at once, and the
//! permits that hold a connection's place under those limits.
//!
//! This module owns the counts behind `max_connections` (`[global]`, all
//! listeners of the process, and per listener) and `max_connections_per_ip`,
//! the default `[global]` limit derived from the open-files limit, and how an
//! accept loop waits at a limit. It accepts, reads and closes nothing: the
//! accept loop ([`super::Worker`]) asks before and after each accept, and a
//! connection keeps the [`Admitted`] it got until its last holder (the
//! connection's task, or a tunnel that outlives it) drops it.
//!
//! Counts are atomics shared by every worker. A loop at a limit parks on a
//! [`Notify`] that a closing connection wakes, and only when a loop waits:
//! no polling, no spinning, and no lock while nobody waits. The limits
//! themselves are read from the routing snapshot whenever a loop checks, so a
//! reload applies them to the next accept; a lower limit never closes a
//! connection that is already open.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::config::ConnectionLimits;
use crate::observe::metrics::ListenerStats;
use crate::table::{Live, RoutingTable};

/// File descriptors kept back from client connections when the default
/// `max_connections` is derived: listening sockets (one per listener per
/// worker), the admin endpoint, the access log, epoll and inotify, DNS and
/// health-check sockets.
const RESERVED_FDS: u64 = 256;

/// Where a soft open-files limit of "unlimited" is capped for the formula.
const UNLIMITED_FDS: u64 = 1 << 20;

/// The process's connection counts: one for `[global] max_connections`, one
/// per listener, and each listener's per-address table.
#[derive(Debug)]
pub(super) struct Admission {
    /// `[global] max_connections` when the configuration leaves it out.
    default_max: usize,
    global: Arc<Gate>,
    /// By listener name; used by the control plane only (when accept loops
    /// start), never per connection.
    listeners: Mutex<HashMap<Arc<str>, Arc<ListenerGates>>>,
}

/// One listener's counts, shared by its accept loops on every worker and
/// kept by name, so a listener that moves to a new socket keeps counting
/// the connections it already has.
#[derive(Debug, Default)]
pub(super) struct ListenerGates {
    connections: Arc<Gate>,
    per_ip: Arc<PerIp>,
}

/// The limits that apply to the next connection of one listener, read from
/// the current routing snapshot.
struct Limits {
    global: usize,
    listener: Option<usize>,
}

impl Admission {
    /// Raise the soft open-files limit to the hard one and derive the
    /// default `max_connections` from it.
    pub(super) fn new() -> Self {
        let open_files = raise_open_files_limit();
        let default_max = default_max_connections(open_files);
        tracing::info!(
            open_files,
            default_max_connections = default_max,
            "client connection limit derived from the open-files limit"
        );
        Admission {
            default_max,
            global: Arc::default(),
            listeners: Mutex::default(),
        }
    }

    /// The counts of listener `name`, made the first time it is asked for.
    /// Forgets listeners that nothing uses any more.
    pub(super) fn listener(&self, name: &Arc<str>) -> Arc<ListenerGates> {
        let mut listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|_, gates| !gates.unused());
        listeners.entry(name.clone()).or_default().clone()
    }

    /// Wake every waiting accept loop to read its limits again: a reload
    /// may have raised them.
    pub(super) fn limits_changed(&self) {
        self.global.freed.notify_waiters();
        let listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        for gates in listeners.values() {
            gates.connections.freed.notify_waiters();
        }
    }

    fn limits(&self, table: &RoutingTable, listener: &str) -> Limits {
        Limits {
            global: table.max_connections.map_or(self.default_max, |n| n as usize),
            listener: table
                .router(listener)
                .and_then(|router| router.connection_limits.max_connections)
                .map(|n| n as usize),
        }
    }

    /// Return once listener `name` and the process are both below their
    /// `max_connections` in `live`'s current snapshot: until then, its
    /// accept loop does not accept (the kernel's backlog holds new
    /// connections). Counts one pause in `stats` if it had to wait.
    pub(super) async fn room(&self, gates: &ListenerGates, live: &Live, name: &str) {
        let mut counted = false;
        loop {
            let limits = self.limits(&live.load(), name);
            let (gate, listener_limit) = match limits.listener {
                Some(max) if !gates.connections.has_room(max) => (&gates.connections, true),
                _ if !self.global.has_room(limits.global) => (&self.global, false),
                _ => return,
            };
            if !counted {
                counted = true;
                if let Some(router) = live.load().router(name) {
                    let pauses = if listener_limit {
                        &router.stats.paused_at_listener_limit
                    } else {
                        &router.stats.paused_at_global_limit
                    };
                    pauses.fetch_add(1, Ordering::Relaxed);
                }
            }
            gate.until(|| {
                let limits = self.limits(&live.load(), name);
                let max = if listener_limit {
                    limits.listener.unwrap_or(usize::MAX)
                } else {
                    limits.global
                };
                gate.has_room(max)
            })
            .await;
        }
    }

    /// Admit a connection accepted from `peer` on listener `name` with
    /// `limits` (from the snapshot it was accepted with): `None` when its
    /// address is at `max_connections_per_ip` (the caller closes it,
    /// unread). Otherwise it takes its places under the listener's and the
    /// process's `max_connections`, waiting for them (with the limits of
    /// `live`'s snapshot of the moment) if another worker took the last one
    /// since [`Admission::room`].
    pub(super) async fn admit(
        &self,
        gates: &ListenerGates,
        (live, name): (&Live, &str),
        peer: SocketAddr,
        limits: &ConnectionLimits,
        stats: &ListenerStats,
    ) -> Option<Admitted> {
        let ip = match limits.max_connections_per_ip {
            None => None,
            Some(max) => {
                let address = client_address(peer);
                match gates.per_ip.take(address, max) {
                    Some(permit) => Some(permit),
                    None => {
                        stats.rejected_per_ip.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(client = %address, max, "client address at max_connections_per_ip; closing its new connection");
                        return None;
                    }
                }
            }
        };
        let now = || self.limits(&live.load(), name);
        let listener = match limits.max_connections {
            None => None,
            Some(_) => Some(
                gates
                    .connections
                    .take(|| now().listener.unwrap_or(usize::MAX))
                    .await,
            ),
        };
        Some(Admitted {
            _ip: ip,
            _listener: listener,
            _global: self.global.take(|| now().global).await,
        })
    }
}

/// The address a connection is counted under for `max_connections_per_ip`:
/// the TCP peer, IPv4-mapped IPv6 addresses as IPv4. The one place to
/// change when a trusted proxy's PROXY protocol header names the client.
fn client_address(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

/// A connection's places under the limits; dropping it frees them.
#[derive(Debug)]
pub(super) struct Admitted {
    _ip: Option<IpPermit>,
    _listener: Option<Permit>,
    _global: Permit,
}

/// A count of open connections that loops can wait on.
#[derive(Debug, Default)]
struct Gate {
    open: AtomicUsize,
    /// How many loops wait in [`Gate::until`]: a release wakes them only
    /// when there are any.
    waiting: AtomicUsize,
    freed: Notify,
}

impl Gate {
    fn has_room(&self, max: usize) -> bool {
        self.open.load(Ordering::SeqCst) < max
    }

    /// A place, if fewer than `max` are taken.
    fn try_take(self: &Arc<Self>, max: usize) -> Option<Permit> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Permit(self.clone()))
    }

    /// A place, waiting for one while `max()` are taken.
    async fn take(self: &Arc<Self>, max: impl Fn() -> usize) -> Permit {
        loop {
            if let Some(permit) = self.try_take(max()) {
                return permit;
            }
            self.until(|| self.has_room(max())).await;
        }
    }

    /// Return once `ready` holds, checking it again after each release.
    async fn until(&self, mut ready: impl FnMut() -> bool) {
        while !ready() {
            let _waiting = Waiting::new(&self.waiting);
            // Registered before the check, so that a release between the
            // check and the await still wakes this loop (the release reads
            // `waiting` after its decrement; both are SeqCst).
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if ready() {
                return;
            }
            freed.await;
        }
    }

    fn release(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) != 0 {
            self.freed.notify_waiters();
        }
    }
}

/// One loop waiting on a gate, for as long as it lives (a wait cancelled by
/// the listener's stop still leaves).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One place in a [`Gate`].
#[derive(Debug)]
struct Permit(Arc<Gate>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Shards of the per-address table: a connect or a close locks one of them
/// for a hash-map update, so workers rarely meet on the same lock.
const SHARDS: usize = 16;

/// Open connections per client address, for `max_connections_per_ip`. An
/// address is in the table only while it has a connection open, so it
/// holds at most as many entries as there are open connections (bounded by
/// `max_connections`). Used only on listeners that set the key.
#[derive(Debug, Default)]
struct PerIp {
    shards: [Mutex<HashMap<IpAddr, u32>>; SHARDS],
    /// Keyed per process, so that clients cannot choose addresses that all
    /// land on one shard.
    hasher: RandomState,
}

impl PerIp {
    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        let i = self.hasher.hash_one(ip) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection from `ip`, if it has fewer than `max`.
    fn take(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<IpPermit> {
        let mut shard = self.shard(ip);
        let open = shard.entry(ip).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(IpPermit {
            table: self.clone(),
            ip,
        })
    }
}

/// One connection counted under its address; the entry goes when its
/// count reaches 0.
#[derive(Debug)]
struct IpPermit {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut shard = self.table.shard(self.ip);
        if let Some(open) = shard.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

impl ListenerGates {
    /// Nothing but the registry holds these counts: no accept loop and no
    /// open connection.
    fn unused(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
            && Arc::strong_count(&self.connections) == 1
            && Arc::strong_count(&self.per_ip) == 1
    }
}

/// `(open files - RESERVED_FDS) / 2`: each client connection may need an
/// upstream connection too (HAProxy derives `maxconn` the same way).
fn default_max_connections(open_files: u64) -> usize {
    let max = open_files.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(max.max(1)).unwrap_or(usize::MAX)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit, as HAProxy does on its
/// own and nginx with `worker_rlimit_nofile`: ginx uses epoll, never
/// `select`, so the low soft limits kept for `select`'s sake (1024 under
/// systemd) only starve it. Returns the soft limit in effect afterwards.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(UNLIMITED_FDS);
    let Some(hard) = limit.maximum else {
        return soft;
    };
    if hard <= soft {
        return soft;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => hard,
        Err(error) => {
            tracing::debug!(soft, hard, %error, "cannot raise the open-files limit; keeping it");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_from_open_files() {
        assert_eq!(default_max_connections(1024), 384);
        assert_eq!(default_max_connections(1 << 20), ((1 << 20) - 256) / 2);
        assert_eq!(default_max_connections(100), 1);
    }

    #[test]
    fn gate_counts_and_releases() {
        let gate = Arc::new(Gate::default());
        let a = gate.try_take(2).unwrap();
        let _b = gate.try_take(2).unwrap();
        assert!(gate.try_take(2).is_none());
        assert!(!gate.has_room(2));
        drop(a);
        assert!(gate.try_take(2).is_some());
    }

    #[tokio::test]
    async fn a_release_wakes_a_waiting_take() {
        let gate = Arc::new(Gate::default());
        let first = gate.try_take(1).unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.take(|| 1).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let _second = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("a release wakes the waiter")
            .unwrap();
        assert_eq!(gate.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn per_ip_entries_go_at_zero() {
        let table = Arc::new(PerIp::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = table.take(ip, 1).unwrap();
        assert!(table.take(ip, 1).is_none());
        assert!(table.take("127.0.0.2".parse().unwrap(), 1).is_some());
        drop(a);
        assert!(table.shards.iter().all(|s| s.lock().unwrap().is_empty()));
        assert!(table.take(ip, 1).is_some());
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        assert_eq!(client_address(mapped), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
