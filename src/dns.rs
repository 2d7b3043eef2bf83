//! Host names of upstream servers, resolved and followed over time.
//!
//! A server written as `host:port` with a host name stands for every address
//! the name resolves to (A and AAAA); [`crate::table`] turns each address
//! into a member of the pool, with its own state. [`Discovery`] keeps every
//! name's current address set and re-resolves it when its TTL runs out
//! (clamped to `resolve_min`..`resolve_max`), so a pool follows a Kubernetes
//! headless Service or Consul DNS without a reload. When a lookup fails, the
//! last good set is kept. A name that has never resolved contributes no
//! member: its pool runs on its other servers (unlike nginx, which refuses
//! to start with "host not found in upstream").
//!
//! Queries go to `[global] resolver = "IP:PORT"`, or to the name servers of
//! the system's /etc/resolv.conf (the hosts file is consulted first either
//! way, so `localhost` works). Answers are not cached between our own
//! re-resolutions: each one asks the server.
//!
//! [`Discovery`] belongs to [`crate::reload`], the only writer of the
//! routing table: when a set changes, the reloader rebuilds the table from
//! the active configuration and the new sets.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use tokio::time::Instant;

use crate::config::{Config, Endpoint, Global};

/// Addresses of every host name in a configuration, by (host, port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolved(HashMap<(String, u16), Vec<SocketAddr>>);

impl Resolved {
    /// The addresses a server endpoint stands for, in a stable order.
    pub(crate) fn addresses(&self, endpoint: &Endpoint) -> Vec<SocketAddr> {
        match endpoint {
            Endpoint::Ip(addr) => vec![*addr],
            Endpoint::Dns { host, port } => self.0.get(&(host.clone(), *port)).cloned().unwrap_or_default(),
        }
    }
}

/// One followed name.
#[derive(Debug)]
struct Followed {
    /// The last good answer (empty until one arrives).
    addrs: Vec<SocketAddr>,
    /// When to ask again.
    next: Instant,
    /// Whether the last lookup failed (failures are logged once per run).
    failing: bool,
}

/// The followed host names and the resolver that answers for them.
pub(crate) struct Discovery {
    resolver: Option<TokioResolver>,
    /// The `resolver` setting the resolver was built for.
    server: Option<SocketAddr>,
    min: Duration,
    max: Duration,
    names: HashMap<(String, u16), Followed>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("server", &self.server)
            .field("names", &self.names)
            .finish()
    }
}

impl Discovery {
    /// Discovery with `global`'s resolver settings and no names yet.
    pub(crate) fn new(global: &Global) -> Self {
        Discovery {
            resolver: build_resolver(global.resolver),
            server: global.resolver,
            min: global.resolve_min,
            max: global.resolve_max,
            names: HashMap::new(),
        }
    }

    /// Follow the names of `config` (resolving new ones now), forget names
    /// it no longer has, and return every name's addresses.
    pub(crate) async fn sync(&mut self, config: &Config) -> Resolved {
        if config.global.resolver != self.server {
            self.resolver = build_resolver(config.global.resolver);
            self.server = config.global.resolver;
            // Another server may answer differently: ask it soon.
            for followed in self.names.values_mut() {
                followed.next = Instant::now();
            }
        }
        self.min = config.global.resolve_min;
        self.max = config.global.resolve_max;
        let wanted: Vec<(String, u16)> = config
            .upstreams
            .values()
            .flat_map(|u| &u.servers)
            .filter_map(|s| match &s.endpoint {
                Endpoint::Dns { host, port } => Some((host.clone(), *port)),
                Endpoint::Ip(_) => None,
            })
            .collect();
        self.names.retain(|name, _| wanted.contains(name));
        for name in wanted {
            if !self.names.contains_key(&name) {
                let mut followed = Followed {
                    addrs: Vec::new(),
                    next: Instant::now(),
                    failing: false,
                };
                self.refresh_one(&name, &mut followed).await;
                self.names.insert(name, followed);
            }
        }
        self.resolved()
    }

    /// When the next name is due, if any is followed.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.names.values().map(|f| f.next).min()
    }

    /// Re-resolve every name that is due. True if any address set changed.
    pub(crate) async fn refresh(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<(String, u16)> = self
            .names
            .iter()
            .filter(|(_, f)| f.next <= now)
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = false;
        for name in due {
            let Some(mut followed) = self.names.remove(&name) else {
                continue;
            };
            changed |= self.refresh_one(&name, &mut followed).await;
            self.names.insert(name, followed);
        }
        changed
    }

    /// Every followed name's current addresses.
    pub(crate) fn resolved(&self) -> Resolved {
        Resolved(
            self.names
                .iter()
                .map(|(name, f)| (name.clone(), f.addrs.clone()))
                .collect(),
        )
    }

    /// Ask once; update `followed`; true if its set changed.
    async fn refresh_one(&self, (host, port): &(String, u16), followed: &mut Followed) -> bool {
        match self.lookup(host, *port).await {
            Ok((addrs, ttl)) => {
                followed.next = Instant::now() + ttl.clamp(self.min, self.max);
                if std::mem::replace(&mut followed.failing, false) {
                    tracing::info!(name = %format!("{host}:{port}"), "resolving again");
                }
                if addrs == followed.addrs {
                    return false;
                }
                tracing::info!(name = %format!("{host}:{port}"), from = ?followed.addrs, to = ?addrs, "DNS set changed");
                followed.addrs = addrs;
                true
            }
            Err(error) => {
                followed.next = Instant::now() + self.min;
                if std::mem::replace(&mut followed.failing, true) {
                    tracing::debug!(name = %format!("{host}:{port}"), %error, "still cannot resolve");
                } else if followed.addrs.is_empty() {
                    tracing::warn!(name = %format!("{host}:{port}"), %error, "cannot resolve; its servers stay down until it does");
                } else {
                    tracing::warn!(name = %format!("{host}:{port}"), %error, kept = ?followed.addrs, "cannot resolve; keeping the last good addresses");
                }
                false
            }
        }
    }

    /// The addresses of `host` (sorted, deduplicated) and their TTL.
    async fn lookup(&self, host: &str, port: u16) -> Result<(Vec<SocketAddr>, Duration), String> {
        let Some(resolver) = &self.resolver else {
            return Err("no resolver (see the error logged at start)".into());
        };
        let lookup = resolver.lookup_ip(host).await.map_err(|e| e.to_string())?;
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        let mut addrs: Vec<SocketAddr> = lookup
            .iter()
            .map(|ip: IpAddr| SocketAddr::new(ip, port))
            .collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err("no address records".into());
        }
        Ok((addrs, ttl))
    }
}

/// A resolver for `server`, or for the system's configuration.
fn build_resolver(server: Option<SocketAddr>) -> Option<TokioResolver> {
    let builder = match server {
        Some(addr) => {
            let mut name_server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut name_server.connections {
                connection.port = addr.port();
            }
            let config = ResolverConfig::from_parts(None, Vec::new(), vec![name_server]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => match TokioResolver::builder_tokio() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::error!(%error, "cannot read the system's DNS configuration; set [global] resolver = \"IP:PORT\"");
                return None;
            }
        },
    };
    let mut builder = builder;
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // We re-resolve on our own schedule; a cache would answer with what we
    // already know.
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    match builder.build() {
        Ok(resolver) => Some(resolver),
        Err(error) => {
            tracing::error!(%error, "cannot create the DNS resolver");
            None
        }
    }
}
