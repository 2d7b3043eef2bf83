//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpus.rs`.
//! **Not API**: hidden from the docs, free to change with any commit.
//!
//! Each function runs one step of the pipeline on input that may be
//! anything, checks what must hold for every input, and panics only on a
//! real bug (a panic inside ginx, or a broken property). They take bytes or
//! text so that the crate's types stay `pub(crate)`; the structure-aware
//! generators and the reference router live in `fuzz/src/targets.rs`.
//!
//! - [`config_bytes`], [`config_text`]: a main configuration file (in
//!   memory, no disk I/O) → `config::load` → `--check`'s renderings →
//!   `table::prepare` → `RoutingTable::build`. Every error is located
//!   inside the text.
//! - [`route`]: a configuration and one request → `Router::route`, as
//!   `forward::handle` calls it.
//! - [`headers`]: a request head and a response head → the header
//!   rewriting of both directions. Nothing hop-by-hop gets through, every
//!   end-to-end header does.
//!
//! This module must not grow a second implementation of anything it
//! checks: it calls ginx's own functions and states properties.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Errors, UpstreamProtocol};
use crate::dns::Resolved;
use crate::forward::headers::{for_upstream, remove_hop_by_hop, request_host, Message};
use crate::forward::{Accepted, Connection};
use crate::observe::metrics::ListenerStats;
use crate::table::{RoutingTable, Target};

/// The main file's name: errors must point into it.
const MAIN: &str = "ginx.toml";

/// Errors about the configuration as a whole, which have no place in a
/// file: the only ones allowed to name the main file without a position.
const WHOLE_CONFIGURATION: &[&str] = &["no listener defined"];

/// Arbitrary bytes as the main configuration file. Invalid UTF-8 becomes
/// U+FFFD: the real loader rejects such a file as a whole before parsing
/// (`read_to_string`), so only the text can reach anything else.
pub fn config_bytes(data: &[u8]) {
    config_text(&String::from_utf8_lossy(data));
}

/// `text` as the main configuration file: loaded and validated, every
/// error and warning located inside `text`, shown as `--check` shows it
/// (text and JSON); an accepted configuration is prepared (without TLS)
/// and built into a table, twice (the second carries the first's state).
/// Returns whether the configuration was accepted.
pub fn config_text(text: &str) -> bool {
    let main = Path::new(MAIN);
    let loaded = load(text);
    crate::check::text(main, &loaded);
    let json = crate::check::json(main, &loaded);
    match &loaded {
        Err(errors) => {
            let list: Vec<_> = errors.iter().cloned().collect();
            assert_located(text, &list, "error");
            assert_located(text, &errors.warnings, "warning");
            assert_eq!(json["errors"].as_array().map(Vec::len), Some(errors.len()));
            false
        }
        Ok(config) => {
            assert_located(text, &config.warnings, "warning");
            let table = build(config);
            let again = RoutingTable::build(
                config,
                table.prepared().clone(),
                None,
                &Resolved::default(),
                Some(&table),
                2,
            );
            for name in config.listeners.keys() {
                let router = again.router(name).expect("every listener has a router");
                router.route(Some("Example.COM:80"), "/");
                router.route(None, "");
            }
            true
        }
    }
}

/// What [`Router::route`](crate::table::Router::route) chose for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// hyper would refuse the request before routing (target or `Host`
    /// not valid).
    BadRequest,
    /// No route and no default upstream: 404.
    NoRoute,
    /// A `respond` route: its body.
    Respond(String),
    /// A proxy route or the default: the upstream's name.
    Proxy(String),
}

/// Route one request, with `Host` `host` (if any) and request target
/// `target` (origin or absolute form), on listener `listener` of the
/// configuration `config` (a main file, in memory).
///
/// # Errors
///
/// The configuration's errors, one per line, when it is rejected.
pub fn route(config: &str, listener: &str, host: Option<&[u8]>, target: &[u8]) -> Result<Routed, String> {
    let table = cached_table(config)?;
    let Some(router) = table.router(listener) else {
        return Err(format!("no listener `{listener}`"));
    };
    let Ok(uri) = Uri::try_from(target) else {
        return Ok(Routed::BadRequest);
    };
    let mut req = Request::new(());
    *req.uri_mut() = uri;
    if let Some(host) = host {
        let Ok(value) = HeaderValue::from_bytes(host) else {
            return Ok(Routed::BadRequest);
        };
        req.headers_mut().insert(header::HOST, value);
    }
    Ok(match router.route(request_host(&req), req.uri().path()) {
        None => Routed::NoRoute,
        Some(Target::Respond { body, .. }) => Routed::Respond(String::from_utf8_lossy(body).into_owned()),
        Some(Target::Proxy { pool, .. }) => Routed::Proxy(pool.name.to_string()),
    })
}

/// A request head and a response head, taken from `data`, through the
/// header rewriting: towards the upstream (`for_upstream`, as
/// `forward/retry.rs` calls it) and back (hop-by-hop removal).
///
/// `data`: one byte of switches (upstream protocol, TLS listener, new
/// request id, IPv6 client, strip a prefix), one byte of prefix length,
/// then lines: the request target, then `name: value` headers (lines
/// that are not a valid header are skipped, as hyper would refuse them).
pub fn headers(data: &[u8]) {
    let [switches, strip, rest @ ..] = data else {
        return;
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let Some(Ok(uri)) = lines.next().map(Uri::try_from) else {
        return;
    };
    let mut input = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            input.append(name, value);
        }
    }
    let protocol = match switches & 3 {
        1 => UpstreamProtocol::H2,
        2 => UpstreamProtocol::H2c,
        _ => UpstreamProtocol::Http1,
    };
    let strip = (switches & 0x20 != 0).then(|| usize::from(*strip).min(uri.path().len()));
    let new_id = (switches & 8 != 0).then(|| HeaderValue::from_static("0123456789abcdef0123456789abcdef"));
    let conn = connection(switches & 4 != 0, switches & 0x10 != 0);

    let mut req = Request::new(());
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = input.clone();
    let out = for_upstream(req, protocol, strip, &conn, new_id.clone());
    check_request(&input, &uri, protocol, &out, &conn, new_id.as_ref());

    let mut response = input.clone();
    remove_hop_by_hop(&mut response, Message::Response);
    assert_hop_by_hop_gone(&input, &response, &[header::EXPECT]);
    assert_end_to_end_kept(&input, &response, &[header::EXPECT]);
}

/// The properties of a rewritten request head.
fn check_request(
    input: &HeaderMap,
    uri: &Uri,
    protocol: UpstreamProtocol,
    out: &Request<()>,
    conn: &Connection,
    new_id: Option<&HeaderValue>,
) {
    let headers = out.headers();
    // ginx sets these itself; `te: trailers` goes to HTTP/2 servers (gRPC);
    // `expect` is answered by hyper towards the client, never forwarded.
    assert!(!headers.contains_key(header::EXPECT), "Expect sent upstream");
    let set_by_ginx = [
        header::EXPECT,
        header::HOST,
        header::TE,
        HeaderName::from_static("x-forwarded-for"),
        HeaderName::from_static("x-forwarded-proto"),
        HeaderName::from_static("x-forwarded-host"),
        HeaderName::from_static("x-request-id"),
    ];
    assert_hop_by_hop_gone(input, headers, &set_by_ginx);
    assert_end_to_end_kept(input, headers, &set_by_ginx);
    for te in headers.get_all(header::TE) {
        assert!(
            protocol != UpstreamProtocol::Http1 && te == "trailers",
            "TE {te:?} sent upstream"
        );
    }
    let client_ip = conn.client.ip().to_string();
    let xff = headers
        .get("x-forwarded-for")
        .expect("X-Forwarded-For is always set");
    let xff = xff.to_str().expect("X-Forwarded-For is ASCII");
    assert!(
        xff == client_ip || xff.ends_with(&format!(", {client_ip}")),
        "X-Forwarded-For {xff:?}"
    );
    // The client's id is kept, unless its `Connection` made it hop-by-hop.
    let named = named_by_connection(input);
    let kept = input
        .get("x-request-id")
        .filter(|_| !named.iter().any(|n| n == "x-request-id"));
    assert_eq!(headers.get("x-request-id"), new_id.or(kept));
    // An absolute target's authority, without user information, is the host.
    let host = uri
        .authority()
        .and_then(|a| a.as_str().rsplit('@').next())
        .and_then(|a| HeaderValue::from_str(a).ok())
        .or_else(|| input.get(header::HOST).cloned())
        .filter(|_| !named.contains(&header::HOST));
    match protocol {
        UpstreamProtocol::Http1 => {
            assert_eq!(out.version(), Version::HTTP_11);
            assert_eq!(headers.get(header::HOST), host.as_ref());
            assert_eq!(headers.get("x-forwarded-host"), host.as_ref());
        }
        // An authority-form target (`host:port`, CONNECT's) is sent as it
        // is, whatever `Host` says.
        UpstreamProtocol::H2 | UpstreamProtocol::H2c
            if uri.scheme().is_none() && uri.authority().is_some() => {}
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
            assert_eq!(out.version(), Version::HTTP_2);
            // The host is `:authority` now, or kept when it cannot be one.
            let carried = out.uri().authority().map(|a| a.as_str().as_bytes());
            let kept = headers.get(header::HOST).map(HeaderValue::as_bytes);
            assert_eq!(carried.or(kept), host.as_ref().map(HeaderValue::as_bytes));
        }
    }
}

/// No header of `out` is hop-by-hop for `input`: a fixed one, or one
/// `input`'s `Connection` names; `allowed` are exceptions (set again).
fn assert_hop_by_hop_gone(input: &HeaderMap, out: &HeaderMap, allowed: &[HeaderName]) {
    for name in hop_by_hop(input) {
        assert!(
            allowed.contains(&name) || !out.contains_key(&name),
            "hop-by-hop `{name}` kept: {out:?}"
        );
    }
}

/// Every header of `input` that is not hop-by-hop and not in `rewritten`
/// is in `out` with the same values in the same order.
fn assert_end_to_end_kept(input: &HeaderMap, out: &HeaderMap, rewritten: &[HeaderName]) {
    let hop = hop_by_hop(input);
    for name in input.keys() {
        if hop.contains(name) || rewritten.contains(name) {
            continue;
        }
        let before: Vec<_> = input.get_all(name).iter().collect();
        let after: Vec<_> = out.get_all(name).iter().collect();
        assert_eq!(before, after, "end-to-end `{name}` changed");
    }
}

/// The hop-by-hop headers of `input` (RFC 9110 7.6.1), written out here
/// as the RFC says rather than taken from ginx: the fixed ones and every
/// name in `Connection`.
fn hop_by_hop(input: &HeaderMap) -> Vec<HeaderName> {
    let fixed = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let mut names: Vec<HeaderName> = fixed.iter().map(|n| HeaderName::from_static(n)).collect();
    names.extend(named_by_connection(input));
    names
}

/// The header names `Connection` lists, from its bytes: a value need not
/// be ASCII for its tokens to be meant. `close` is an option, not a name.
fn named_by_connection(input: &HeaderMap) -> Vec<HeaderName> {
    input
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.eq_ignore_ascii_case(b"close"))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect()
}

/// A client connection as `forward` sees it (the table is not used).
fn connection(tls: bool, ipv6: bool) -> Connection {
    let ip = if ipv6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    Connection::new(
        "web".into(),
        SocketAddr::new(ip, 40000),
        Arc::new(ArcSwap::from_pointee(RoutingTable::empty())),
        TaskTracker::new(),
        CancellationToken::new(),
        Accepted {
            open: Arc::new(ListenerStats::default()).open(),
            admitted: Box::new(()),
            max_requests: 0,
            tls,
            addressing: None,
        },
    )
}

/// `text` as the main file, loaded from memory.
fn load(text: &str) -> Result<Config, Errors> {
    crate::config::load_from_memory(Path::new(MAIN), &[(MAIN, text)])
}

/// The table of an accepted `config`. `prepare` runs unless an upstream
/// has `https://` servers: their TLS client would read the system's CA
/// files for every input (and TLS listeners cannot validate in memory).
fn build(config: &Config) -> RoutingTable {
    let https = config.upstreams.values().any(|u| u.servers.iter().any(|s| s.tls));
    let prepared = if https {
        crate::table::Prepared::default()
    } else {
        match crate::table::prepare(config, None) {
            Ok(prepared) => prepared,
            Err(errors) => {
                let list: Vec<_> = errors.iter().cloned().collect();
                assert_located(&config.sources[0].text, &list, "prepare error");
                crate::table::Prepared::default()
            }
        }
    };
    RoutingTable::build(config, prepared, None, &Resolved::default(), None, 1)
}

/// The table of `config`, built once for a run of requests on it.
fn cached_table(config: &str) -> Result<Arc<RoutingTable>, String> {
    thread_local! {
        static LAST: RefCell<Option<(String, Arc<RoutingTable>)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((text, table)) = &*last {
            if text == config {
                return Ok(table.clone());
            }
        }
        let loaded = load(config).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let table = Arc::new(build(&loaded));
        *last = Some((config.to_owned(), table.clone()));
        Ok(table)
    })
}

/// Every problem in `list` points inside `text` (the main file): a line
/// that exists and a column within it, or is about the configuration as a
/// whole.
fn assert_located(text: &str, list: &[crate::config::Error], what: &str) {
    let lines: Vec<&str> = text.split('\n').collect();
    for problem in list {
        let Some(location) = problem.location() else {
            let whole = problem.path() == Path::new(MAIN)
                && WHOLE_CONFIGURATION
                    .iter()
                    .any(|m| problem.message().starts_with(m));
            // Another path: a file the text names (an include) that
            // cannot be read; that file has no text to point into.
            assert!(
                whole || problem.path() != Path::new(MAIN),
                "{what} without a location: {problem}"
            );
            continue;
        };
        assert_eq!(
            location.file,
            Path::new(MAIN),
            "{what} in another file: {problem}"
        );
        let line = usize::try_from(location.line).unwrap_or(usize::MAX);
        assert!(
            (1..=lines.len()).contains(&line),
            "{what} at line {line} of {}: {problem}",
            lines.len()
        );
        let columns = lines[line - 1].chars().count() + 1;
        let column = usize::try_from(location.column).unwrap_or(usize::MAX);
        assert!(
            (1..=columns).contains(&column),
            "{what} at column {column} of {columns}: {problem}"
        );
    }
}
