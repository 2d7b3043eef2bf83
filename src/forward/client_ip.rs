//! The one client address of a request, and who is believed about it.
//!
//! A connection's client is its TCP peer, or the source its PROXY header
//! gives when that header is believed ([`Connection::proxied_from`]). A
//! request's client is that address, or, when the connection's client is
//! one of the listener's `trusted_proxies`, the right-most address of
//! `client_ip_header` that is not itself trusted (nginx's
//! `real_ip_recursive on`; all of them trusted: the left-most). That
//! address, [`Connection::client_of`], is the one `allow` / `deny`, the
//! access log and `hash = "client_ip"` read; it is a [`SocketAddr`], cheap
//! to copy (port 0 when a header gave no port).
//!
//! This module owns those rules and what they mean for the forwarding
//! headers sent upstream ([`drop_forged`]); writing `X-Forwarded-For` is
//! [`super::headers`]'s job, reading the PROXY header
//! [`crate::server`]'s. With none of the keys set, a request pays one
//! branch: no header is read.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Request;

use super::Connection;
use crate::balance::request_key;
use crate::config::HashKey;
use crate::table::access::{AddrSet, Addressing};

static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// An IP address as a header value.
pub(super) fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// Whether the peer at `ip` is believed under `addressing`: always when
/// `trusted_proxies` is not set (for the PROXY header), else when it is
/// listed.
fn believed(addressing: &Addressing, ip: IpAddr) -> bool {
    addressing.trusted.is_empty() || addressing.trusted.contains(ip)
}

/// Whether headers from the peer at `ip` name the client: only when it is
/// one of `trusted_proxies`.
pub(super) fn trusts_headers(addressing: Option<&Addressing>, ip: IpAddr) -> bool {
    addressing.is_some_and(|a| a.trusted.contains(ip))
}

impl Connection {
    /// Whether this connection must start with a PROXY header.
    pub(crate) fn expects_proxy_header(&self) -> bool {
        self.addressing.as_ref().is_some_and(|a| a.proxy_protocol)
    }

    /// The connection's PROXY header says it comes from `source`: believed
    /// when its TCP peer may say so (with `trusted_proxies` set, only a
    /// listed peer), ignored otherwise (the TCP peer stays the client).
    pub(crate) fn proxied_from(&mut self, source: SocketAddr) {
        let Some(addressing) = &self.addressing else {
            return;
        };
        if !believed(addressing, self.client.ip()) {
            tracing::debug!(peer = %self.client, claimed = %source, "PROXY header from a peer outside trusted_proxies ignored");
            return;
        }
        self.trusts_headers = addressing.trusted.contains(source.ip());
        self.client = source;
        self.client_ip = ip_value(source.ip());
    }

    /// The client address of a request with `headers` on this connection.
    pub(crate) fn client_of(&self, headers: &HeaderMap) -> SocketAddr {
        match &self.addressing {
            Some(addressing) if self.trusts_headers => {
                from_header(headers, &addressing.header, &addressing.trusted).unwrap_or(self.client)
            }
            _ => self.client,
        }
    }

    /// Whether the forwarding headers a request comes with are to be
    /// replaced: `trusted_proxies` is set and this client is not in it.
    pub(super) fn distrusts_headers(&self) -> bool {
        !self.trusts_headers && self.addressing.as_ref().is_some_and(|a| !a.trusted.is_empty())
    }
}

/// Remove what a client outside `trusted_proxies` may have forged for the
/// servers behind ginx: `X-Real-IP` and the listener's `client_ip_header`
/// (`X-Forwarded-*` are replaced by [`super::headers`]). Nothing when the
/// client is trusted or no `trusted_proxies` are set.
pub(super) fn drop_forged(headers: &mut HeaderMap, conn: &Connection) {
    if !conn.distrusts_headers() {
        return;
    }
    headers.remove(&X_REAL_IP);
    if let Some(addressing) = &conn.addressing {
        if addressing.header != X_FORWARDED_FOR {
            headers.remove(&addressing.header);
        }
    }
}

/// The client `name` says, walking its items from the right: the first
/// address not in `trusted`, or the left-most if all are. An item that is
/// not an address stops the walk at the address right of it (or `None`
/// when it is the right-most): what is left of it cannot be believed.
fn from_header(headers: &HeaderMap, name: &HeaderName, trusted: &AddrSet) -> Option<SocketAddr> {
    let mut last = None;
    for value in headers.get_all(name).iter().rev() {
        let Ok(text) = value.to_str() else {
            return last;
        };
        for item in text.rsplit(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some(addr) = parse_item(item) else {
                return last;
            };
            last = Some(addr);
            if !trusted.contains(addr.ip()) {
                return last;
            }
        }
    }
    last
}

/// One item of a forwarding header: `1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]` or `[::1]:80` (port 0 when none is given).
fn parse_item(item: &str) -> Option<SocketAddr> {
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = item.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = item
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<IpAddr>()
        .ok()?;
    Some(SocketAddr::new(ip, 0))
}

/// The hash of `req` under `key`, with `client` as the request's client:
/// the connection's header value when it is the connection's client, else
/// its text written on the stack.
pub(super) fn request_hash<B>(key: &HashKey, req: &Request<B>, conn: &Connection, client: IpAddr) -> u64 {
    if client == conn.client.ip() {
        return request_key(key, req, conn.client_ip.as_bytes());
    }
    let mut text = [0u8; 48];
    let len = {
        let mut cursor = &mut text[..];
        let _ = write!(cursor, "{client}");
        48 - cursor.len()
    };
    request_key(key, req, &text[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> AddrSet {
        AddrSet::new(&nets.iter().map(|n| n.parse().unwrap()).collect::<Vec<_>>())
    }

    fn client(values: &[&str], nets: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        from_header(&headers, &X_FORWARDED_FOR, &trusted(nets)).map(|a| a.to_string())
    }

    #[test]
    fn right_most_untrusted_address() {
        let nets = ["10.0.0.0/8"];
        assert_eq!(
            client(&["1.1.1.1, 2.2.2.2, 10.0.0.2"], &nets).as_deref(),
            Some("2.2.2.2:0")
        );
        assert_eq!(
            client(&["1.1.1.1", "10.0.0.3, 10.0.0.2"], &nets).as_deref(),
            Some("1.1.1.1:0")
        );
        // All trusted: the left-most.
        assert_eq!(
            client(&["10.0.0.9, 10.0.0.2"], &nets).as_deref(),
            Some("10.0.0.9:0")
        );
        // Garbage stops the walk at the address right of it.
        assert_eq!(
            client(&["1.1.1.1, unknown, 10.0.0.2"], &nets).as_deref(),
            Some("10.0.0.2:0")
        );
        assert_eq!(client(&["nonsense"], &nets), None);
        assert_eq!(client(&[], &nets), None);
        assert_eq!(
            client(&["[2001:db8::1]:443, 10.0.0.2"], &nets).as_deref(),
            Some("[2001:db8::1]:443")
        );
        assert_eq!(client(&["5.6.7.8:9000"], &nets).as_deref(), Some("5.6.7.8:9000"));
    }
}
