//! `trusted_proxies`, `client_ip_header`, `proxy_protocol` (listeners) and
//! `allow` / `deny` (listeners, routes, `[admin]`).
//!
//! This module owns the checks of these keys: every address or network
//! located, with a hint for what an nginx user may have written (`all`),
//! and the warnings for settings that trust anyone (`proxy_protocol`
//! without `trusted_proxies`) or do nothing (`client_ip_header` alone).

use toml::Spanned;

use super::super::access::{parse_net, AccessRules, ClientAddress, IpNet, DEFAULT_CLIENT_IP_HEADER};
use super::super::raw;
use super::{suggest, At, Validator};

/// A list of addresses or networks as written.
type RawNets = Option<Spanned<Vec<Spanned<String>>>>;

/// The headers proxies and CDNs put a client's address in, for
/// did-you-mean.
const KNOWN_HEADERS: [&str; 6] = [
    "X-Forwarded-For",
    "X-Real-IP",
    "CF-Connecting-IP",
    "True-Client-IP",
    "Fastly-Client-IP",
    "X-Client-IP",
];

impl Validator<'_> {
    /// `deny` and `allow` of a listener, route or `[admin]`; `None` (and
    /// errors) when an entry is invalid.
    pub(super) fn access_rules(
        &mut self,
        at: At<'_>,
        allow: &RawNets,
        deny: &RawNets,
    ) -> Option<AccessRules> {
        let allow = self.nets(at, allow, "allow");
        let deny = self.nets(at, deny, "deny");
        Some(AccessRules {
            allow: allow?,
            deny: deny?,
        })
    }

    /// A listener's `trusted_proxies`, `client_ip_header` and
    /// `proxy_protocol`; `None` (and errors) when one is invalid.
    pub(super) fn client_address(
        &mut self,
        at: At<'_>,
        header: usize,
        l: &raw::Listener,
    ) -> Option<ClientAddress> {
        let trusted_proxies = self.nets(at, &l.trusted_proxies, "trusted_proxies");
        let proxy_protocol = l.proxy_protocol.as_ref().is_some_and(|p| *p.get_ref());
        let untrusting = trusted_proxies.as_ref().is_some_and(Vec::is_empty);
        if let (true, true) = (proxy_protocol, untrusting) {
            let span = l.proxy_protocol.as_ref().map_or(header..header, Spanned::span);
            self.config.warnings.push(at.error(
                span,
                "`proxy_protocol` is on without `trusted_proxies`: any client that connects can claim any address in its PROXY header; set trusted_proxies to your load balancers' addresses".to_owned(),
            ));
        }
        let name = match &l.client_ip_header {
            None => Some(DEFAULT_CLIENT_IP_HEADER.to_owned()),
            Some(h) => {
                if untrusting {
                    self.config.warnings.push(at.error(
                        h.span(),
                        "`client_ip_header` has no effect without `trusted_proxies`: the header is believed only from the peers listed there".to_owned(),
                    ));
                }
                self.client_ip_header(at, h)
            }
        };
        Some(ClientAddress {
            trusted_proxies: trusted_proxies?,
            header: name?,
            proxy_protocol,
        })
    }

    /// `client_ip_header`: a header name that carries addresses.
    fn client_ip_header(&mut self, at: At<'_>, h: &Spanned<String>) -> Option<String> {
        let text = h.get_ref().trim();
        if text.eq_ignore_ascii_case("forwarded") {
            self.errors.push(at.error(
                h.span(),
                "`Forwarded` (RFC 7239, `for=...`) is not supported as client_ip_header: use \"X-Forwarded-For\"".to_owned(),
            ));
            return None;
        }
        if http::HeaderName::from_bytes(text.as_bytes()).is_err() {
            self.errors.push(at.error(
                h.span(),
                format!("invalid client_ip_header `{text}`: use a header name like \"X-Forwarded-For\" or \"X-Real-IP\""),
            ));
            return None;
        }
        let known = KNOWN_HEADERS.iter().any(|k| k.eq_ignore_ascii_case(text));
        if !known {
            if let Some(hint) = suggest::did_you_mean(text, KNOWN_HEADERS) {
                self.config.warnings.push(at.error(
                    h.span(),
                    format!("client_ip_header `{text}` is not a header proxies usually send: {hint}"),
                ));
            }
        }
        Some(text.to_ascii_lowercase())
    }

    /// A list of addresses and networks (`key` names it in messages);
    /// empty when not written.
    fn nets(&mut self, at: At<'_>, list: &RawNets, key: &str) -> Option<Vec<IpNet>> {
        let Some(list) = list else {
            return Some(Vec::new());
        };
        let mut nets = Vec::with_capacity(list.get_ref().len());
        let mut ok = true;
        for entry in list.get_ref() {
            match parse_net(entry.get_ref()) {
                Ok(parsed) => {
                    if parsed.host_bits {
                        self.config.warnings.push(at.error(
                            entry.span(),
                            format!(
                                "`{}` in {key} has host bits set: it means the network {}; write that",
                                entry.get_ref(),
                                parsed.net
                            ),
                        ));
                    }
                    nets.push(parsed.net);
                }
                Err(message) => {
                    self.errors
                        .push(at.error(entry.span(), format!("{key}: {message}")));
                    ok = false;
                }
            }
        }
        ok.then_some(nets)
    }
}
