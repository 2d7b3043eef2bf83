//! The compiled forms of `trusted_proxies`, `allow` and `deny`: sets of
//! addresses as sorted, merged ranges, checked by binary search.
//!
//! This module owns [`AddrSet`], [`Access`] (a request's `allow`/`deny`
//! levels, the listener's then the route's) and [`Addressing`] (a
//! listener's trusted peers and client address header). They are built
//! once per snapshot from the validated lists and then only read: nothing
//! here parses or allocates per request. Finding a request's client address
//! is [`crate::forward`]'s job.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use ipnet::IpNet;

use crate::config::{AccessRules, ClientAddress};

/// A set of IPv4 and IPv6 addresses: inclusive ranges, sorted and merged,
/// so a lookup is one binary search. An IPv4-mapped IPv6 address
/// (`::ffff:10.0.0.1`, what a dual-stack socket reports) is looked up as
/// the IPv4 address it is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AddrSet {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl AddrSet {
    /// The set of every address in `nets`.
    pub(crate) fn new(nets: &[IpNet]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        AddrSet {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    /// No address at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in the set.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(ip) => within(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => within(&self.v6, u128::from(ip)),
        }
    }
}

/// `ranges` sorted, overlapping and adjacent ones merged.
fn merged<T: Copy + Ord + num::Successor>(mut ranges: Vec<(T, T)>) -> Box<[(T, T)]> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.next_or_max() => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.into_boxed_slice()
}

/// Whether `x` is in one of the sorted, disjoint `ranges`.
fn within<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The first range that starts after `x`; the one before it is the only
    // one that can hold `x`.
    let after = ranges.partition_point(|&(start, _)| start <= x);
    after > 0 && x <= ranges[after - 1].1
}

mod num {
    /// The next integer, saturating: what "adjacent" means for merging.
    pub(super) trait Successor {
        fn next_or_max(self) -> Self;
    }
    impl Successor for u32 {
        fn next_or_max(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Successor for u128 {
        fn next_or_max(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// One level of `allow` / `deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rules {
    allow: AddrSet,
    deny: AddrSet,
}

impl Rules {
    fn new(rules: &AccessRules) -> Self {
        Rules {
            allow: AddrSet::new(&rules.allow),
            deny: AddrSet::new(&rules.deny),
        }
    }

    /// `deny` first, then a non-empty `allow` must match.
    fn allows(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && (self.allow.is_empty() || self.allow.contains(ip))
    }
}

/// The `allow` / `deny` a request must pass: its listener's, then its
/// route's. A route narrows its listener's access, it cannot widen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    levels: Box<[Rules]>,
}

impl Access {
    /// The levels of `rules` that are set, in order; `None` when none is
    /// (the request path then checks nothing).
    pub(crate) fn of<'a>(rules: impl IntoIterator<Item = &'a AccessRules>) -> Option<Arc<Access>> {
        let levels: Box<[Rules]> = rules
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(Rules::new)
            .collect();
        (!levels.is_empty()).then(|| Arc::new(Access { levels }))
    }

    /// Whether a client at `ip` may make the request.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.levels.iter().all(|rules| rules.allows(ip))
    }
}

/// Whether `access` (none: no rules) lets `ip` in.
pub(crate) fn allowed(access: Option<&Access>, ip: IpAddr) -> bool {
    access.is_none_or(|access| access.allows(ip))
}

/// How a listener finds its clients' addresses: compiled from its
/// `trusted_proxies`, `client_ip_header` and `proxy_protocol`.
#[derive(Debug)]
pub(crate) struct Addressing {
    /// The peers whose headers are believed; empty: `trusted_proxies` is
    /// not set, so no header is believed and `X-Forwarded-For` is appended
    /// to as it comes.
    pub(crate) trusted: AddrSet,
    /// `client_ip_header`.
    pub(crate) header: HeaderName,
    /// Every connection starts with a PROXY header.
    pub(crate) proxy_protocol: bool,
}

impl Addressing {
    /// `None` when the listener sets none of the keys: its connections
    /// then cost nothing more than before.
    pub(crate) fn of(client: &ClientAddress) -> Option<Arc<Addressing>> {
        if client.is_default() {
            return None;
        }
        let header = HeaderName::from_bytes(client.header.as_bytes()).expect("validated: a header name");
        Some(Arc::new(Addressing {
            trusted: AddrSet::new(&client.trusted_proxies),
            header,
            proxy_protocol: client.proxy_protocol,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> AddrSet {
        AddrSet::new(&nets.iter().map(|n| n.parse().unwrap()).collect::<Vec<_>>())
    }

    #[test]
    fn ranges_merge_and_match() {
        let s = set(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "11.0.0.0/8",
            "192.168.1.7/32",
            "::1/128",
        ]);
        assert_eq!(s.v4.len(), 2, "{s:?}");
        for ip in [
            "10.0.0.0",
            "10.255.255.255",
            "11.3.4.5",
            "192.168.1.7",
            "::1",
            "::ffff:10.2.3.4",
        ] {
            assert!(s.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["9.255.255.255", "12.0.0.0", "192.168.1.6", "192.168.1.8", "::2"] {
            assert!(!s.contains(ip.parse().unwrap()), "{ip}");
        }
        let all = set(&["0.0.0.0/0", "::/0"]);
        assert!(all.contains("255.255.255.255".parse().unwrap()));
        assert!(all.contains("ffff::1".parse().unwrap()));
    }

    #[test]
    fn deny_first_then_allow_at_every_level() {
        let nets = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect::<Vec<_>>();
        let listener = AccessRules {
            allow: nets(&["10.0.0.0/8"]),
            deny: nets(&["10.1.2.3/32"]),
        };
        let route = AccessRules {
            allow: vec![],
            deny: nets(&["10.9.0.0/16"]),
        };
        let access = Access::of([&listener, &route]).unwrap();
        let allows = |ip: &str| access.allows(ip.parse().unwrap());
        assert!(allows("10.0.0.1"));
        assert!(!allows("10.1.2.3"));
        assert!(!allows("10.9.1.1"));
        assert!(!allows("192.168.0.1"));
        assert!(Access::of([&AccessRules::default()]).is_none());
    }
}
