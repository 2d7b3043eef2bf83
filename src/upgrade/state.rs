//! The state a new binary takes over: the configuration generation, each
//! server's health verdicts and failure accounting, and each upstream's
//! round-robin position, and every host name's addresses (so a new
//! binary serves the addresses the old one did even while DNS fails).
//!
//! Servers are keyed as reloads key them ([`crate::table`]'s carry-over):
//! by upstream, address and transport (here: the server as written and
//! whether it is reached over TLS), so a server the new configuration
//! reaches differently starts over, as it would on a reload. What is not
//! carried: health-check pass/fail counts (a server marked down stays down
//! until its checks pass again, in the new process as in the old), counters
//! (the new process's metrics start at 0), and pooled connections. DNS
//! answers are carried but due at once: the new process asks again as soon
//! as it serves, keeping the old answer if that fails.
//!
//! This module owns the state's shape on the wire and where it is read and
//! applied; what a verdict means is [`crate::upstream`]'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::dns::Resolved;
use crate::table::RoutingTable;
use crate::upstream::Verdicts;

/// The state the new process continues from.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The old process's configuration generation; the new one serves the
    /// next.
    pub(crate) generation: u64,
    servers: Vec<Server>,
    /// Round-robin positions, by upstream.
    cursors: HashMap<String, usize>,
    /// The last good addresses of every host name, by (name, port).
    #[serde(default)]
    names: Vec<((String, u16), Vec<SocketAddr>)>,
}

/// One server's state, with its identity.
#[derive(Debug, Serialize, Deserialize)]
struct Server {
    upstream: String,
    name: String,
    addr: SocketAddr,
    tls: bool,
    verdicts: Verdicts,
}

impl State {
    /// What `table` (serving `generation`, built from `resolved`) knows.
    pub(crate) fn of(table: &RoutingTable, generation: u64, resolved: Resolved) -> State {
        let mut state = State {
            generation,
            names: resolved.answers(),
            ..State::default()
        };
        for pool in table.upstreams() {
            let cursor = pool.state().cursor.load(Ordering::Relaxed);
            state.cursors.insert(pool.name.to_string(), cursor);
            state.servers.extend(pool.servers().map(|server| Server {
                upstream: pool.name.to_string(),
                name: server.name.to_string(),
                addr: server.addr,
                tls: server.is_tls(),
                verdicts: server.verdicts(),
            }));
        }
        state
    }

    /// The host names' addresses, for [`crate::dns::Discovery::seed`]
    /// before the new process resolves anything.
    pub(crate) fn take_names(&mut self) -> Vec<((String, u16), Vec<SocketAddr>)> {
        std::mem::take(&mut self.names)
    }

    /// Give the servers of `table` (not serving yet) the state of the same
    /// servers in the old process; how many were found.
    pub(crate) fn apply(&self, table: &RoutingTable) -> usize {
        let mut taken = 0;
        for saved in &self.servers {
            let Some(pool) = table.upstream(&saved.upstream) else {
                continue;
            };
            let same = |s: &&std::sync::Arc<crate::upstream::ServerState>| {
                s.addr == saved.addr && *s.name == *saved.name && s.is_tls() == saved.tls
            };
            if let Some(server) = pool.servers().find(same) {
                server.take_verdicts(&saved.verdicts);
                taken += 1;
            }
        }
        for pool in table.upstreams() {
            if let Some(&cursor) = self.cursors.get(&*pool.name) {
                pool.state().cursor.store(cursor, Ordering::Relaxed);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let state = State {
            generation: 7,
            servers: vec![Server {
                upstream: "app".into(),
                name: "127.0.0.1:9".into(),
                addr: "127.0.0.1:9".parse().unwrap(),
                tls: false,
                verdicts: Verdicts {
                    up: false,
                    held_out_ms: 1500,
                    fails: 2,
                    window_age_ms: 300,
                    consecutive_5xx: 1,
                },
            }],
            cursors: HashMap::from([("app".to_owned(), 5)]),
            names: vec![(("app.test".to_owned(), 80), vec!["127.0.0.2:80".parse().unwrap()])],
        };
        let back: State = serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();
        assert_eq!(back.generation, 7);
        assert_eq!(back.servers[0].verdicts, state.servers[0].verdicts);
        assert_eq!(back.cursors["app"], 5);
        assert_eq!(back.names, state.names);
    }
}
