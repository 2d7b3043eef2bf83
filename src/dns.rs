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
use crate::observe::clock;

/// Addresses of every host name in a configuration, by (host, port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolved(HashMap<(String, u16), Vec<SocketAddr>>);

impl Resolved {
    /// Every name's addresses, for a new binary ([`Discovery::seed`]).
    pub(crate) fn answers(self) -> Vec<((String, u16), Vec<SocketAddr>)> {
        self.0.into_iter().collect()
    }

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
        let lookups = self.look_up_new(config).await;
        self.adopt(config, lookups)
    }

    /// Resolve, all at once, the names of `config` that are not followed
    /// yet (all of them when its resolver differs), changing nothing: a
    /// reload does this before its plan, so a configuration that is then
    /// rejected leaves the followed names as they were. Takes at most one
    /// lookup timeout however many names there are.
    pub(crate) async fn look_up_new(&self, config: &Config) -> Lookups {
        let new_resolver = config.global.resolver != self.server;
        let resolver = match new_resolver {
            true => build_resolver(config.global.resolver),
            false => self.resolver.clone(),
        };
        let wanted: Vec<(String, u16)> = names_of(config)
            .filter(|name| new_resolver || !self.names.contains_key(name))
            .collect();
        Lookups {
            answers: look_up_all(resolver.as_ref(), wanted).await,
            resolver: new_resolver.then_some((config.global.resolver, resolver)),
        }
    }

    /// Follow exactly the names of `config`, with the answers of
    /// [`Discovery::look_up_new`] for it, and return every name's
    /// addresses. Names `config` no longer has are forgotten.
    pub(crate) fn adopt(&mut self, config: &Config, lookups: Lookups) -> Resolved {
        if let Some((server, resolver)) = lookups.resolver {
            self.resolver = resolver;
            self.server = server;
        }
        self.min = config.global.resolve_min;
        self.max = config.global.resolve_max;
        let wanted: Vec<(String, u16)> = names_of(config).collect();
        self.names.retain(|name, _| wanted.contains(name));
        for (name, answer) in lookups.answers {
            let followed = self.names.entry(name.clone()).or_insert_with(|| Followed {
                addrs: Vec::new(),
                next: Instant::now(),
                failing: false,
            });
            apply(&name, followed, answer, (self.min, self.max));
        }
        self.resolved()
    }

    /// Follow `answers` (a replaced process's [`Resolved::answers`]) as
    /// if they had just been received, due for a lookup at once: the pools
    /// of a new binary start with the addresses the old one served, and
    /// keep them while the resolver fails, as the old one would have.
    /// [`Discovery::sync`] then looks up only the names not among them.
    pub(crate) fn seed(&mut self, answers: Vec<((String, u16), Vec<SocketAddr>)>) {
        let now = Instant::now();
        for (name, addrs) in answers.into_iter().filter(|(_, addrs)| !addrs.is_empty()) {
            self.names.insert(
                name,
                Followed {
                    addrs,
                    next: now,
                    failing: false,
                },
            );
        }
    }

    /// When the next name is due, if any is followed.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.names.values().map(|f| f.next).min()
    }

    /// Re-resolve, all at once, every name that is due. True if any address
    /// set changed.
    pub(crate) async fn refresh(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<(String, u16)> = self
            .names
            .iter()
            .filter(|(_, f)| f.next <= now)
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = false;
        for (name, answer) in look_up_all(self.resolver.as_ref(), due).await {
            if let Some(followed) = self.names.get_mut(&name) {
                changed |= apply(&name, followed, answer, (self.min, self.max));
            }
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
}

/// Answers for names not followed yet, waiting to be adopted.
#[derive(Debug)]
pub(crate) struct Lookups {
    answers: Vec<((String, u16), Answer)>,
    /// The new `resolver` setting and its resolver, when it changed.
    resolver: Option<(Option<SocketAddr>, Option<TokioResolver>)>,
}

/// A name's addresses (sorted, deduplicated) and their TTL, or why not.
type Answer = Result<(Vec<SocketAddr>, Duration), String>;

/// The host names (with ports) of `config`'s servers.
fn names_of(config: &Config) -> impl Iterator<Item = (String, u16)> + '_ {
    config
        .upstreams
        .values()
        .flat_map(|u| &u.servers)
        .filter_map(|s| match &s.endpoint {
            Endpoint::Dns { host, port } => Some((host.clone(), *port)),
            Endpoint::Ip(_) => None,
        })
}

/// Look every name up at the same time: a dead resolver then costs one
/// timeout, not one per name.
async fn look_up_all(
    resolver: Option<&TokioResolver>,
    names: Vec<(String, u16)>,
) -> Vec<((String, u16), Answer)> {
    let mut lookups = tokio::task::JoinSet::new();
    for name in names {
        let resolver = resolver.cloned();
        lookups.spawn(async move {
            let answer = look_up(resolver.as_ref(), &name.0, name.1).await;
            (name, answer)
        });
    }
    let mut answers = Vec::with_capacity(lookups.len());
    while let Some(done) = lookups.join_next().await {
        match done {
            Ok(answer) => answers.push(answer),
            Err(error) => tracing::error!(%error, "a DNS lookup task failed"),
        }
    }
    answers
}

/// Record `answer` in `followed`; true if its set changed. A failure keeps
/// the last good set and asks again after `resolve_min`.
fn apply(
    (host, port): &(String, u16),
    followed: &mut Followed,
    answer: Answer,
    (min, max): (Duration, Duration),
) -> bool {
    match answer {
        Ok((addrs, ttl)) => {
            followed.next = clock::later(Instant::now(), ttl.clamp(min, max));
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
            followed.next = clock::later(Instant::now(), min);
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
async fn look_up(resolver: Option<&TokioResolver>, host: &str, port: u16) -> Answer {
    let Some(resolver) = resolver else {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;

    fn config(servers: &str) -> Config {
        // Nothing answers on this port: every lookup fails fast.
        let text = format!(
            "[global]\nresolver = \"127.0.0.1:9\"\n[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\
             [upstream.app]\nservers = [{servers}]\n"
        );
        let texts = BTreeMap::from([(PathBuf::from("ginx.toml"), text)]);
        crate::config::load_from_texts(Path::new("ginx.toml"), texts).unwrap()
    }

    #[tokio::test]
    async fn looking_up_changes_nothing_until_adopted() {
        let active = config("\"a.internal:80\"");
        let mut discovery = Discovery::new(&active.global);
        discovery.sync(&active).await;
        assert_eq!(discovery.names.len(), 1);

        // A reload that is rejected after its lookups: the active names stay
        // followed, the new ones are not.
        let next = config("\"b.internal:80\", \"c.internal:80\"");
        let lookups = discovery.look_up_new(&next).await;
        assert_eq!(lookups.answers.len(), 2);
        assert!(discovery.names.contains_key(&("a.internal".to_owned(), 80)));
        assert_eq!(discovery.names.len(), 1);

        discovery.adopt(&next, lookups);
        let mut names: Vec<_> = discovery.names.keys().map(|(host, _)| host.as_str()).collect();
        names.sort();
        assert_eq!(names, ["b.internal", "c.internal"]);
        assert!(discovery.names.values().all(|f| f.failing && f.addrs.is_empty()));
    }
}
