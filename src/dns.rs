//! Host names of upstream servers, resolved to addresses.
//!
//! A server written as `host:port` with a host name stands for every address
//! the name resolves to. [`Resolved`] holds those addresses for every name
//! of a configuration; [`crate::table`] turns each address into a member of
//! the pool. A name that does not resolve contributes no member (its pool
//! runs on its other servers) instead of failing the configuration, unlike
//! nginx's "host not found in upstream".
//!
//! Resolution runs off the async threads: it may block on the network.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{Config, Endpoint};

/// Addresses of every host name in a configuration, by (host, port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved(HashMap<(String, u16), Vec<SocketAddr>>);

impl Resolved {
    /// The addresses a server endpoint stands for, in a stable order.
    pub fn addresses(&self, endpoint: &Endpoint) -> Vec<SocketAddr> {
        match endpoint {
            Endpoint::Ip(addr) => vec![*addr],
            Endpoint::Dns { host, port } => self.0.get(&(host.clone(), *port)).cloned().unwrap_or_default(),
        }
    }
}

/// Resolve every host name of `config` with the system resolver. Blocking.
pub fn resolve_blocking(config: &Config) -> Resolved {
    let mut resolved = HashMap::new();
    for upstream in config.upstreams.values() {
        for server in &upstream.servers {
            let Endpoint::Dns { host, port } = &server.endpoint else {
                continue;
            };
            let key = (host.clone(), *port);
            if resolved.contains_key(&key) {
                continue;
            }
            let mut addrs: Vec<SocketAddr> = match (host.as_str(), *port).to_socket_addrs() {
                Ok(addrs) => addrs.collect(),
                Err(error) => {
                    tracing::warn!(upstream = %upstream.name, server = %server.name, %error, "cannot resolve; the server is down until it resolves");
                    Vec::new()
                }
            };
            addrs.sort();
            addrs.dedup();
            resolved.insert(key, addrs);
        }
    }
    Resolved(resolved)
}
