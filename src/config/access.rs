//! Who the client is and who may come in, as configured: `trusted_proxies`,
//! `client_ip_header`, `proxy_protocol` (a listener's [`ClientAddress`])
//! and `allow` / `deny` (listeners, routes and `[admin]`: [`AccessRules`]).
//!
//! This module owns the validated, plain form of these keys and the parser
//! of one address or network ([`parse_net`]). It compiles nothing for the
//! request path: the sorted ranges a request is checked against are built
//! by [`crate::table`], and resolving a request's client address is
//! [`crate::forward`]'s job.

use std::fmt;
use std::net::IpAddr;

pub(crate) use ipnet::IpNet;

/// The default `client_ip_header`.
pub(crate) const DEFAULT_CLIENT_IP_HEADER: &str = "x-forwarded-for";

/// A listener's `trusted_proxies`, `client_ip_header` and `proxy_protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ClientAddress {
    /// Peers whose forwarding headers (and PROXY header) are believed, as
    /// written (networks with their host bits cleared). Empty: not set.
    pub(crate) trusted_proxies: Vec<IpNet>,
    /// `client_ip_header`, lowercase; `x-forwarded-for` by default.
    pub(crate) header: String,
    /// Every connection starts with a PROXY protocol (v1 or v2) header.
    pub(crate) proxy_protocol: bool,
}

impl ClientAddress {
    /// None of the keys is set: the client is the TCP peer, as before.
    pub(crate) fn is_default(&self) -> bool {
        self.trusted_proxies.is_empty() && !self.proxy_protocol && self.header == DEFAULT_CLIENT_IP_HEADER
    }
}

/// `allow` and `deny`: `deny` first, then a non-empty `allow` must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AccessRules {
    /// `allow`; empty: everyone not denied.
    pub(crate) allow: Vec<IpNet>,
    /// `deny`.
    pub(crate) deny: Vec<IpNet>,
}

impl AccessRules {
    /// Neither list is set: nothing to check.
    pub(crate) fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

impl fmt::Display for AccessRules {
    /// `allow=[10.0.0.0/8] deny=[10.1.2.3/32]`, the lists that are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut space = "";
        for (key, nets) in [("allow", &self.allow), ("deny", &self.deny)] {
            if !nets.is_empty() {
                write!(f, "{space}{key}={}", NetList(nets))?;
                space = " ";
            }
        }
        Ok(())
    }
}

/// A list of networks as `[a, b]`, for `--diff` and reload logs.
pub(crate) struct NetList<'a>(pub(crate) &'a [IpNet]);

impl fmt::Display for NetList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        f.write_str("]")
    }
}

/// What [`parse_net`] made of a text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) net: IpNet,
    /// The text was a network with host bits set (`10.0.0.1/8`): they are
    /// ignored, which deserves a warning.
    pub(crate) host_bits: bool,
}

/// One entry of `trusted_proxies`, `allow` or `deny`: an address
/// (`192.168.1.7`, `::1`) or a network in CIDR form (`10.0.0.0/8`,
/// `2001:db8::/32`). The error says what to write instead, and names what
/// an nginx or Caddy user may have meant (`all`, `localhost`).
pub(crate) fn parse_net(text: &str) -> Result<Parsed, String> {
    let trimmed = text.trim();
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(Parsed {
            net: IpNet::from(ip),
            host_bits: false,
        });
    }
    if let Ok(net) = trimmed.parse::<IpNet>() {
        let truncated = net.trunc();
        return Ok(Parsed {
            net: truncated,
            host_bits: truncated != net,
        });
    }
    let meant = match trimmed.to_ascii_lowercase().as_str() {
        "all" | "any" | "*" => Some("\"0.0.0.0/0\" and \"::/0\" (every IPv4 and IPv6 address)"),
        "localhost" => Some("\"127.0.0.1\" and \"::1\""),
        "private" | "private_ranges" => {
            Some("\"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\" and \"fc00::/7\"")
        }
        _ => None,
    };
    if let Some(meant) = meant {
        return Err(format!("invalid address `{text}`: did you mean {meant}?"));
    }
    let hint = match trimmed.split_once('/') {
        Some((ip, bits)) if ip.parse::<IpAddr>().is_ok() => {
            let most = if ip.contains(':') { 128 } else { 32 };
            format!("the prefix length `{bits}` must be a number from 0 to {most}")
        }
        _ => "use an IP address like \"192.168.1.7\" or a network like \"10.0.0.0/8\"".to_owned(),
    };
    Err(format!("invalid address `{text}`: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks() {
        let net = |t: &str| parse_net(t).unwrap();
        assert_eq!(net("192.168.1.7").net.to_string(), "192.168.1.7/32");
        assert_eq!(net("::1").net.to_string(), "::1/128");
        assert_eq!(
            net("10.0.0.0/8"),
            Parsed {
                net: "10.0.0.0/8".parse().unwrap(),
                host_bits: false
            }
        );
        assert_eq!(
            net("10.1.2.3/8"),
            Parsed {
                net: "10.0.0.0/8".parse().unwrap(),
                host_bits: true
            }
        );
        assert!(parse_net("all")
            .unwrap_err()
            .contains("did you mean \"0.0.0.0/0\""));
        assert!(parse_net("10.0.0.0/33").unwrap_err().contains("from 0 to 32"));
        assert!(parse_net("10.0.0").unwrap_err().contains("like \"10.0.0.0/8\""));
    }

    #[test]
    fn rules_display_only_what_is_set() {
        let rules = AccessRules {
            allow: vec![],
            deny: vec!["10.1.2.3/32".parse().unwrap()],
        };
        assert_eq!(rules.to_string(), "deny=[10.1.2.3/32]");
    }
}
