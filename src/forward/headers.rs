//! What ginx changes in a message's head on the way through.
//!
//! This module owns the header rewriting of both directions: hop-by-hop
//! headers removed (one bitset pass), `X-Forwarded-*` set, the request id
//! kept or made, the target put in origin form (a matched prefix stripped)
//! or, towards an HTTP/2 server, in absolute form. It decides nothing about
//! where a request goes: that is [`super::retry`]'s job, and the hash key of
//! a request is [`crate::balance`]'s.

use std::cell::RefCell;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};

use super::Connection;
use crate::balance::header_items;
use crate::balance::rng::random_u64;
use crate::config::UpstreamProtocol;
use crate::upstream::ServerState;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The host a request is for: an absolute-form target's authority
/// overrides `Host` (RFC 9112 3.2.2).
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(authority_host)
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// An authority as `Host` would say it: without user information
/// (`http://user@host/` is for `host`, RFC 9110 4.2.4), so that it can
/// neither dodge a host's routes nor reach the server as its `Host`.
fn authority_host(authority: &http::uri::Authority) -> &str {
    let text = authority.as_str();
    text.rsplit_once('@').map_or(text, |(_, host)| host)
}

/// Whether the request carries an `X-Request-Id` worth keeping.
pub(super) fn has_request_id(headers: &HeaderMap) -> bool {
    headers
        .get(&X_REQUEST_ID)
        .is_some_and(|id| !id.is_empty() && id.len() <= 200)
}

/// 32 hex digits, like nginx's `$request_id`: two draws of ginx's one
/// generator ([`crate::balance::rng`]). Not cryptographic: it only has to be
/// unique enough to find a request in logs.
///
/// Ids are cut from a per-thread slab, so making one allocates nothing (one
/// slab per 128 ids) and cloning one only counts a reference.
pub(super) fn new_request_id() -> HeaderValue {
    const SLAB: usize = 32 * 128;
    thread_local! {
        static IDS: RefCell<bytes::BytesMut> = RefCell::new(bytes::BytesMut::new());
    }
    let bits = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    // Formed on the stack and copied into the slab at once: one capacity
    // check, not one per byte.
    let mut hex = [0u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(bits.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    let id = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.capacity() < hex.len() {
            *ids = bytes::BytesMut::with_capacity(SLAB);
        }
        ids.extend_from_slice(&hex);
        ids.split().freeze()
    });
    HeaderValue::from_maybe_shared(id).expect("hex digits are a valid header value")
}

/// Two hex digits per byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [digits[i >> 4], digits[i & 0xf]];
        i += 1;
    }
    pairs
};

/// The request as sent to a server speaking `protocol`: its head rewritten
/// as [`upstream_request`] says and, for an HTTP/2 server, its target as
/// [`http2_target`] says.
pub(crate) fn for_upstream<B>(
    req: Request<B>,
    protocol: UpstreamProtocol,
    strip: Option<usize>,
    conn: &Connection,
    new_id: Option<HeaderValue>,
) -> Request<B> {
    // gRPC needs `TE: trailers` to reach an HTTP/2 server; towards an
    // HTTP/1.1 one it is a hop-by-hop header like any other.
    let te_trailers = protocol != UpstreamProtocol::Http1 && asks_for_trailers(req.headers());
    let mut req = upstream_request(req, strip, conn, new_id);
    if protocol != UpstreamProtocol::Http1 {
        http2_target(&mut req, protocol, te_trailers);
    }
    req
}

/// The request as it is sent upstream: origin-form target (prefix stripped
/// if asked), hop-by-hop headers removed, `X-Forwarded-*` set, HTTP/1.1.
pub(super) fn upstream_request<B>(
    req: Request<B>,
    strip: Option<usize>,
    conn: &Connection,
    new_id: Option<HeaderValue>,
) -> Request<B> {
    let client_ip = &conn.client_ip;
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;

    // An absolute-form target's authority overrides Host (RFC 9112 3.2.2).
    if let Some(value) = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(authority_host(a)).ok())
    {
        headers.insert(header::HOST, value);
    }
    if strip.is_some() || parts.uri.scheme().is_some() {
        parts.uri = origin_form(&parts.uri, strip.unwrap_or(0));
    }
    // `Expect: 100-continue` is not forwarded either: hyper answers it
    // towards the client when the body is first read, as nginx does.
    remove_hop_by_hop(headers, Message::Request);
    // Room for the X-Forwarded-* headers and the request id, so the map
    // grows at most once.
    headers.reserve(4);
    // A usable incoming id stays as it is; otherwise `new_id` replaces it.
    if let Some(id) = new_id {
        headers.insert(X_REQUEST_ID.clone(), id);
    }

    // From a peer outside `trusted_proxies`, X-Forwarded-For starts anew.
    super::client_ip::drop_forged(headers, conn);
    // One lookup (an entry), not a read and then an insert: most requests
    // have no `X-Forwarded-For` and get the client's address alone.
    match headers.entry(&X_FORWARDED_FOR) {
        header::Entry::Vacant(vacant) => {
            vacant.insert(client_ip.clone());
        }
        header::Entry::Occupied(mut occupied) => {
            let incoming = joined(occupied.iter()).filter(|_| !conn.distrusts_headers());
            let forwarded_for = match incoming {
                Some(previous) => {
                    let ip = client_ip.to_str().unwrap_or_default();
                    HeaderValue::from_str(&format!("{previous}, {ip}")).unwrap_or_else(|_| client_ip.clone())
                }
                None => client_ip.clone(),
            };
            occupied.insert(forwarded_for);
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), conn.proto.clone());
    match headers.get(header::HOST).cloned() {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        // No host to tell: the client's own value must not pass for ginx's.
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// Give a request that has no `Host` the server's.
pub(super) fn set_host<B>(req: &mut Request<B>, server: &ServerState) {
    if let Ok(host) = HeaderValue::from_str(server.host()) {
        req.headers_mut().insert(header::HOST, host);
    }
}

/// Whether a request's `TE` asks for trailers.
fn asks_for_trailers(headers: &HeaderMap) -> bool {
    header_items(headers, header::TE, ',').any(|t| t.eq_ignore_ascii_case("trailers"))
}

/// Make an upstream request fit for an HTTP/2 server: the target in
/// absolute form so that `:scheme` and `:authority` are right (`https` for
/// `h2`, which is always over TLS), and `TE: trailers` if the client sent it.
fn http2_target<B>(req: &mut Request<B>, protocol: UpstreamProtocol, te_trailers: bool) {
    let scheme = match protocol {
        UpstreamProtocol::H2 => "https",
        UpstreamProtocol::Http1 | UpstreamProtocol::H2c => "http",
    };
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    if let Some(authority) = authority {
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
        {
            *req.uri_mut() = uri;
            // `:authority` carries it now.
            req.headers_mut().remove(header::HOST);
        }
    }
    *req.version_mut() = Version::HTTP_2;
    if te_trailers {
        req.headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// `uri` as `/path?query`, with the first `strip` bytes of the path removed
/// (the matched prefix), keeping a leading `/`. Percent-encoding is kept.
fn origin_form(uri: &Uri, strip: usize) -> Uri {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let rest = path_and_query.get(strip..).unwrap_or("");
    let rewritten = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    // The input was a valid request target, and removing a prefix of its
    // path cannot make it invalid.
    rewritten.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// then `Expect`, which only requests lose. [`hop_by_hop_bit`] gives each
/// its bit: its index here.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
];
const CONNECTION_BIT: u16 = 1 << 0;
const EXPECT_BIT: u16 = 1 << 7;

/// The bit of `name` if it is one of [`HOP_BY_HOP`], else 0. One string
/// match (a length switch, then a compare): names are lowercase, and a
/// standard name's string is a table lookup.
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    match name.as_str() {
        "connection" => CONNECTION_BIT,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "te" => 1 << 3,
        "trailer" => 1 << 4,
        "transfer-encoding" => 1 << 5,
        "upgrade" => 1 << 6,
        "expect" => EXPECT_BIT,
        _ => 0,
    }
}

/// Which message [`remove_hop_by_hop`] cleans: a request also loses
/// `Expect` (hyper answers `100-continue` towards the client itself).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    Request,
    Response,
}

/// Remove hop-by-hop headers, including every header `Connection` names.
///
/// This runs twice per request, so it costs one pass over the names (no
/// hashing) when nothing is to be removed, and removes only what is there
/// otherwise.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, message: Message) {
    let mut present = headers.keys().fold(0, |bits, name| bits | hop_by_hop_bit(name));
    if message == Message::Response {
        present &= !EXPECT_BIT;
    }
    if present == 0 {
        return;
    }
    // `close` and `keep-alive` are the usual tokens of `Connection`, and
    // name nothing to remove beyond the list.
    // Split from the bytes: a value with a byte `to_str` refuses (obs-text)
    // still names headers, which must not get through.
    if present & CONNECTION_BIT != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// All `values` of a header joined by `, `, if any is text.
fn joined<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<String> {
    let mut values = values.filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |mut acc, v| {
        acc.push_str(", ");
        acc.push_str(v);
        acc
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_hex_and_distinct_across_slabs() {
        let ids: std::collections::HashSet<String> = (0..300)
            .map(|_| new_request_id().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 300);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn strip_prefix_keeps_query_and_encoding() {
        let uri: Uri = "/api/users%20x?q=1".parse().unwrap();
        assert_eq!(origin_form(&uri, 5), "/users%20x?q=1");
        let uri: Uri = "/api/".parse().unwrap();
        assert_eq!(origin_form(&uri, 5), "/");
        let uri: Uri = "/api?x".parse().unwrap();
        assert_eq!(origin_form(&uri, 4), "/?x");
        let uri: Uri = "http://h/p?q".parse().unwrap();
        assert_eq!(origin_form(&uri, 0), "/p?q");
    }

    #[test]
    fn hop_by_hop_removed_with_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, Message::Request);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_tokens_count_in_a_value_that_is_not_ascii() {
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"\xef\xefclose, X-Secret").unwrap();
        h.insert(header::CONNECTION, value);
        h.insert("x-secret", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, Message::Response);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn user_information_is_not_part_of_the_host() {
        let req = Request::get("http://user:pw@api.example.com:8080/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Some("api.example.com:8080"));
    }

    #[test]
    fn expect_is_removed_from_requests_only() {
        let with_expect = || {
            let mut h = HeaderMap::new();
            h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            h.insert(header::TE, HeaderValue::from_static("trailers"));
            h
        };
        let mut request = with_expect();
        remove_hop_by_hop(&mut request, Message::Request);
        assert!(request.is_empty());
        let mut response = with_expect();
        remove_hop_by_hop(&mut response, Message::Response);
        assert_eq!(response.keys().collect::<Vec<_>>(), [header::EXPECT]);
    }
}
