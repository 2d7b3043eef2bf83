//! The balancing input of a request: the hash key consistent hashing
//! places on its ring.
//!
//! This module owns which bytes of a request are hashed for each configured
//! [`HashKey`] and how they are hashed; where the hash lands is
//! [`super::hash`]'s job, and which servers are up is [`crate::upstream`]'s.
//!
//! It also holds [`header_items`], the one reader of header lists
//! (`Connection: close, X-Foo`, `Cookie: a=1; b=2`): this is the lowest layer
//! that parses request headers, so [`crate::forward`]'s header rewriting
//! reads its lists through the same function.

use http::header::{self, AsHeaderName, HeaderMap};
use http::Request;

use crate::config::HashKey;

/// A stable 64-bit hash of a request key (client IP, header or cookie
/// value, URI): the same in every ginx process, so two proxies with one
/// configuration send a key to the same server.
pub(crate) fn hash_key(bytes: &[u8]) -> u64 {
    // FNV-1a, 64 bit: tiny, stable, and good enough to place keys on a
    // ring whose points are themselves well spread.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The hash of the part of `req` that `key` names; `client_ip` is the
/// request's client address as text. A missing header,
/// cookie or target hashes as the empty string (or `/`), so such requests
/// still all go to one server.
pub(crate) fn request_key<B>(key: &HashKey, req: &Request<B>, client_ip: &[u8]) -> u64 {
    match key {
        HashKey::ClientIp => hash_key(client_ip),
        HashKey::Uri => hash_key(
            req.uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .as_bytes(),
        ),
        HashKey::Header(name) => hash_key(req.headers().get(name.as_str()).map_or(&[][..], |v| v.as_bytes())),
        HashKey::Cookie(name) => {
            let value = header_items(req.headers(), header::COOKIE, ';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(n, _)| *n == name)
                .map_or("", |(_, v)| v);
            hash_key(value.as_bytes())
        }
    }
}

/// The items of the list that the fields `name` of `headers` make up
/// together, split at `separator` (`,` for most lists, `;` for cookies)
/// and trimmed, empty ones left out. A field that is not visible ASCII
/// names nothing and is skipped.
pub(crate) fn header_items(
    headers: &HeaderMap,
    name: impl AsHeaderName,
    separator: char,
) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(move |v| v.split(separator))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn hash_key_is_stable() {
        // Fixed values: a change here would remap every key in production.
        assert_eq!(hash_key(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_key(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn items_span_fields_and_skip_blanks() {
        let mut headers = HeaderMap::new();
        headers.append(header::CONNECTION, HeaderValue::from_static(" close ,, X-A"));
        headers.append(header::CONNECTION, HeaderValue::from_static("x-b"));
        let items: Vec<_> = header_items(&headers, header::CONNECTION, ',').collect();
        assert_eq!(items, ["close", "X-A", "x-b"]);
    }

    #[test]
    fn cookie_key_is_the_named_value() {
        let req = Request::builder()
            .header(header::COOKIE, "a=1; sid=xyz")
            .header(header::COOKIE, "b=2")
            .body(())
            .unwrap();
        let key = |name: &str| request_key(&HashKey::Cookie(name.into()), &req, b"127.0.0.1");
        assert_eq!(key("sid"), hash_key(b"xyz"));
        assert_eq!(key("b"), hash_key(b"2"));
        assert_eq!(key("none"), hash_key(b""));
    }
}
