//! Building a snapshot's pools and counters while carrying over, by
//! identity, what must outlive the snapshot.
//!
//! A server is identified by its upstream, its address and how it is
//! reached (protocol, TLS settings and name): a reload that keeps all three
//! keeps its [`ServerState`] (connections, in-flight count, failure
//! accounting, health verdict); one that changes how it is reached starts it
//! over, since its pooled connections would be unfit. An upstream's
//! [`PoolState`] (round-robin position) is carried by name, and every
//! counter by its labels. This module owns those identities; what the state
//! means is [`crate::upstream`]'s business.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Prepared, RoutingTable};
use crate::balance::{Ketama, LeastConn, Policy, Random, RoundRobin};
use crate::config::{self, Balance};
use crate::dns::Resolved;
use crate::observe::metrics::{ListenerStats, RouteStats};
use crate::upstream::{PoolState, ServerState, Tier, TlsTarget, UpstreamPool};

/// One member of a pool: a server entry, or one address of a host name.
struct Member {
    name: String,
    addr: SocketAddr,
    weight: u32,
    backup: bool,
    /// The server as written, without the scheme.
    host: String,
    /// For an `https://` server: how TLS is spoken to it (prepared).
    tls: Option<TlsTarget>,
}

/// The pool of `upstream`, its members the addresses `resolved` gives for
/// its servers, reached as `prepared` says, with the state of servers
/// `previous` knows by the same identity.
pub(super) fn build_pool(
    upstream: &config::Upstream,
    prepared: &Prepared,
    resolved: &Resolved,
    previous: Option<&RoutingTable>,
) -> UpstreamPool {
    let name: Arc<str> = upstream.name.as_str().into();
    let previous_pool = previous.and_then(|p| p.upstreams.get(&name));
    let state = previous_pool.map(|pool| pool.state().clone()).unwrap_or_default();
    let mut members: Vec<Member> = Vec::new();
    let mut seen = HashSet::new();
    for spec in &upstream.servers {
        for addr in resolved.addresses(&spec.endpoint) {
            // State is keyed by address: two entries that resolve to the
            // same one (a name and its IP, two names) are one member, the
            // first listed.
            if !seen.insert(addr) {
                continue;
            }
            let name = match spec.endpoint {
                config::Endpoint::Ip(_) => spec.name.clone(),
                config::Endpoint::Dns { .. } => format!("{} ({addr})", spec.name),
            };
            members.push(Member {
                name,
                addr,
                weight: spec.weight,
                backup: spec.backup,
                host: spec.name.clone(),
                tls: prepared.tls_target(&upstream.name, &spec.name),
            });
        }
    }
    // A new server starts as its health check's `initial_state` says; a
    // known one keeps its state, whatever changed around it, unless how it
    // is reached changed: then its pooled connections are unfit, and it
    // starts over as a new server.
    let initially_up = upstream.health_check.as_ref().is_none_or(|h| h.initial_up);
    // By address, so a pool of thousands of servers is carried over in
    // linear time. Addresses are unique within a pool (see above).
    let known: HashMap<SocketAddr, &Arc<ServerState>> = previous_pool
        .map(|pool| pool.servers().map(|s| (s.addr, s)).collect())
        .unwrap_or_default();
    let tier = |backup: bool| {
        let members: Vec<&Member> = members.iter().filter(|m| m.backup == backup).collect();
        if members.is_empty() {
            return None;
        }
        let servers = members
            .iter()
            .map(|m| {
                let state = previous_pool
                    .zip(known.get(&m.addr))
                    .filter(|(pool, s)| pool.same_transport(s, upstream, tls_name(m)))
                    .map(|(_, s)| Arc::clone(s))
                    .unwrap_or_else(|| {
                        let tls = m.tls.clone();
                        Arc::new(ServerState::new(&m.name, &m.host, m.addr, tls, initially_up))
                    });
                state.set_keepalive(upstream.keepalive);
                (state, m.weight)
            })
            .collect();
        Some(Tier::new(
            servers,
            build_policy(&upstream.balance, &members, &state),
        ))
    };
    let primaries = tier(false).unwrap_or_else(Tier::empty);
    UpstreamPool::new(name, primaries, tier(true), upstream.clone(), state)
}

fn build_policy(balance: &Balance, members: &[&Member], state: &PoolState) -> Box<dyn Policy> {
    let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
    match balance {
        Balance::RoundRobin => Box::new(RoundRobin::new(&weights, state.cursor.clone())),
        Balance::LeastConn => Box::new(LeastConn::new(&weights, state.cursor.clone())),
        Balance::Random => Box::new(Random::new(&weights)),
        Balance::Hash(_) => {
            let points: Vec<(&str, u32)> = members.iter().map(|m| (m.name.as_str(), m.weight)).collect();
            Box::new(Ketama::new(&points))
        }
    }
}

/// Hands out counters, taking over those of the previous snapshot whose
/// labels are the same.
pub(super) struct StatsCarrier<'a> {
    previous: Option<&'a RoutingTable>,
    carried: HashMap<(&'a str, &'a str, &'a str), &'a Arc<RouteStats>>,
    /// Every route's counters handed out, for the new table.
    pub(super) routes: Vec<Arc<RouteStats>>,
}

impl<'a> StatsCarrier<'a> {
    pub(super) fn new(previous: Option<&'a RoutingTable>) -> Self {
        let carried = previous
            .map(|p| {
                p.route_stats
                    .iter()
                    .map(|s| ((&*s.listener, &*s.route, &*s.upstream), s))
                    .collect()
            })
            .unwrap_or_default();
        StatsCarrier {
            previous,
            carried,
            routes: Vec::new(),
        }
    }

    pub(super) fn route(&mut self, listener: &str, route: &str, upstream: &str) -> Arc<RouteStats> {
        let stats = match self.carried.get(&(listener, route, upstream)) {
            Some(stats) => Arc::clone(stats),
            None => Arc::new(RouteStats::new(listener, route, upstream)),
        };
        self.routes.push(stats.clone());
        stats
    }

    pub(super) fn listener(&self, name: &str) -> Arc<ListenerStats> {
        self.previous
            .and_then(|p| p.listeners.get(name))
            .map(|router| router.stats.clone())
            .unwrap_or_default()
    }
}

/// The TLS name `m` is reached with, if it is an `https://` server.
fn tls_name(m: &Member) -> Option<&rustls_pki_types::ServerName<'static>> {
    m.tls.as_ref().map(|t| &t.name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::table::prepare;

    /// A table with one upstream `app` of `servers` (as written in TOML).
    fn table(servers: &[String], previous: Option<&RoutingTable>) -> RoutingTable {
        let main = format!(
            "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
             [upstream.app]\nservers = [{}]\n",
            servers.join(", ")
        );
        let path = std::path::PathBuf::from("/nonexistent/ginx.toml");
        let config = config::load_from_texts(&path, BTreeMap::from([(path.clone(), main)])).unwrap();
        let prepared = prepare::prepare(&config, previous).unwrap();
        let generation = previous.map_or(1, |p| p.generation + 1);
        RoutingTable::build(
            &config,
            prepared,
            None,
            &Resolved::default(),
            previous,
            generation,
        )
    }

    fn by_addr(table: &RoutingTable) -> HashMap<SocketAddr, Arc<ServerState>> {
        let pool = table.upstream("app").unwrap();
        pool.servers().map(|s| (s.addr, s.clone())).collect()
    }

    #[test]
    fn a_reload_of_1000_servers_keeps_each_servers_state() {
        let addr = |i: usize| format!("\"127.0.0.1:{}\"", 20_000 + i);
        let first: Vec<String> = (0..1000).map(addr).collect();
        let before = table(&first, None);
        // Reordered, one removed, one added, one weighted.
        let mut next: Vec<String> = (1..1000).rev().map(addr).collect();
        next.push(addr(1000));
        next[0] = format!("{{ addr = {}, weight = 4 }}", addr(999));
        let after = table(&next, Some(&before));

        let (old, new) = (by_addr(&before), by_addr(&after));
        assert_eq!(new.len(), 1000);
        for (at, state) in &new {
            match old.get(at) {
                Some(kept) => assert!(Arc::ptr_eq(kept, state), "{at} carried over"),
                None => assert_eq!(at.port(), 21_000, "only the added server is new"),
            }
        }
        assert!(!new.contains_key(&"127.0.0.1:20000".parse().unwrap()));
        let weights: Vec<u32> = after
            .upstream("app")
            .unwrap()
            .members()
            .map(|(_, w, _)| w)
            .collect();
        assert_eq!(weights[0], 4);
        assert!(weights[1..].iter().all(|&w| w == 1));
    }
}
