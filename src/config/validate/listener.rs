//! `[listener.NAME]` and its routes: bind addresses, default upstreams,
//! connection limits, host patterns, paths and `respond` actions with their
//! location templates.
//!
//! This module owns the checks of one listener and of each of its routes
//! (including a route another one shadows). Whether an `upstream = "NAME"`
//! exists is only known once every file is read: it is noted here and
//! judged by [`super::Validator::check_references`]; a listener's `tls` is
//! [`super::tls`]'s.

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::Spanned;

use super::super::raw;
use super::super::{ConnectionLimits, HostPattern, Listener, Location, RequestLimits, Route, RouteAction};
use super::parse::{parse_bind, parse_size, BIND_HINT};
use super::{hinted, At, Validator};

/// Appended to an invalid `max_connections` (listener or `[global]`).
pub(super) const MAX_CONNECTIONS_HINT: &str = " (leave it out for the default)";

/// What the listener tables noted, for the checks that span files.
#[derive(Default)]
pub(super) struct ListenersSeen {
    /// How many `[listener.NAME]` tables, valid or not.
    pub(super) count: usize,
    /// Bind address -> (listener, where): one listener per address.
    pub(super) binds: HashMap<SocketAddr, (String, Location)>,
}

impl Validator<'_> {
    /// One `[listener.NAME]`, kept when it and its first definition are
    /// valid. Its routes are checked even when the listener is not kept.
    pub(super) fn listener(&mut self, at: At<'_>, name: &Spanned<String>, l: &raw::Listener) {
        self.listeners.count += 1;
        let header = at.header(name);
        let name = name.get_ref();
        let first = Self::define(
            self.errors,
            &mut self.config.defined_at.listeners,
            "listener",
            at.loc(header),
            name,
        );
        let bind = self.bind(at, name, header, l.bind.as_ref(), first);
        if let Some(u) = &l.upstream {
            self.reference(at, u);
        }
        if l.upstream.is_none() && l.route.is_empty() {
            self.errors.push(at.error(
                header..header,
                format!(
                    "listener `{name}` has no upstream and no route: add upstream = \"NAME\" or a [[listener.{name}.route]]"
                ),
            ));
        }
        // `Some(None)`: errors reported, the listener is not kept.
        let tls = match &l.tls {
            None => Some(None),
            Some(t) => self.listener_tls(at, name, header, t).map(Some),
        };
        let routes = self.routes(at, &l.route);
        let connection_limits = self.connection_limits(at, l);
        let request_limits = self.request_limits(at, l);
        let client_address = self.client_address(at, header, l);
        let access = self.access_rules(at, &l.allow, &l.deny);
        if let (
            true,
            Some(bind),
            Some(tls),
            Some(connection_limits),
            Some(request_limits),
            Some(client_address),
            Some(access),
        ) = (
            first,
            bind,
            tls,
            connection_limits,
            request_limits,
            client_address,
            access,
        ) {
            let listener = Listener {
                name: name.clone(),
                bind,
                upstream: l.upstream.as_ref().map(|u| u.get_ref().clone()),
                routes,
                tls,
                connection_limits,
                request_limits,
                client_address,
                access,
            };
            self.config.listeners.insert(name.clone(), listener);
        }
    }

    /// A listener's `max_connections`, `max_connections_per_ip` and
    /// `max_requests_per_connection`; `None` (and errors) when one is invalid.
    fn connection_limits(&mut self, at: At<'_>, l: &raw::Listener) -> Option<ConnectionLimits> {
        let mut limits = ConnectionLimits::default();
        let mut ok = true;
        let mut count = |this: &mut Self, value: &Option<Spanned<i64>>, key: &str, min: u32, extra: &str| {
            let value = value.as_ref()?;
            let n = this.number(at, value, key, (min, u32::MAX), extra);
            ok &= n.is_some();
            n
        };
        limits.max_connections = count(
            self,
            &l.max_connections,
            "max_connections",
            1,
            MAX_CONNECTIONS_HINT,
        );
        limits.max_connections_per_ip = count(
            self,
            &l.max_connections_per_ip,
            "max_connections_per_ip",
            1,
            " (leave it out for no per-address limit)",
        );
        if let Some(n) = count(
            self,
            &l.max_requests_per_connection,
            "max_requests_per_connection",
            0,
            " (0 for no limit)",
        ) {
            limits.max_requests_per_connection = n;
        }
        ok.then_some(limits)
    }

    /// A listener's `bind`: written, valid and, unless it is port 0 (a free
    /// port each time), not another listener's.
    fn bind(
        &mut self,
        at: At<'_>,
        name: &str,
        header: usize,
        bind: Option<&Spanned<String>>,
        first: bool,
    ) -> Option<SocketAddr> {
        let Some(b) = bind else {
            self.errors.push(at.error(
                header..header,
                format!("listener `{name}` has no `bind`: add bind = \"IP:PORT\""),
            ));
            return None;
        };
        let Some(addr) = parse_bind(b.get_ref()) else {
            self.errors.push(at.error(
                b.span(),
                format!("invalid bind address `{}`: {BIND_HINT}", b.get_ref()),
            ));
            return None;
        };
        if first && addr.port() != 0 {
            if let Some((other, there)) = self.listeners.binds.get(&addr) {
                self.errors.push(at.error(
                    b.span(),
                    format!(
                        "bind address {addr} is already used by listener `{other}` at {there}: give each listener its own address"
                    ),
                ));
            } else {
                self.listeners
                    .binds
                    .insert(addr, (name.to_owned(), at.loc(b.span().start)));
            }
        }
        Some(addr)
    }

    /// A listener's request limits, each key's default where it is left
    /// out; `None` (and errors) when one is invalid.
    fn request_limits(&mut self, at: At<'_>, l: &raw::Listener) -> Option<RequestLimits> {
        let mut limits = RequestLimits::default();
        let mut ok = true;
        if let Some(size) = &l.max_request_body {
            limits.max_body = self.size(at, size, "max_request_body");
            ok &= limits.max_body.is_some();
        }
        if let Some(n) = &l.max_request_headers {
            let most = RequestLimits::MAX_HEADERS_LIMIT as u32;
            match self.number(at, n, "max_request_headers", (1, most), "") {
                Some(n) => limits.max_headers = n as usize,
                None => ok = false,
            }
        }
        if let Some(size) = &l.max_request_head {
            let most = RequestLimits::MAX_HEAD_LIMIT as u64;
            match self.size(at, size, "max_request_head") {
                Some(bytes) if (1024..=most).contains(&bytes) => limits.max_head = bytes as usize,
                Some(_) => {
                    let message = format!(
                        "max_request_head `{}` is out of range: use \"1KiB\" to \"1MiB\"",
                        size.get_ref()
                    );
                    self.errors.push(at.error(size.span(), message));
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some(size) = &l.max_request_line {
            // A longer line could not fit in the request head anyway.
            let head = limits.max_head as u64;
            match self.size(at, size, "max_request_line") {
                Some(bytes) if bytes <= head => limits.max_line = bytes as usize,
                Some(_) => {
                    self.errors.push(at.error(
                        size.span(),
                        format!(
                            "max_request_line `{}` is larger than the whole request head may be ({} KiB): use at most \"{}KiB\"",
                            size.get_ref(),
                            head / 1024,
                            head / 1024
                        ),
                    ));
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some(n) = &l.max_h2_streams {
            match self.number(at, n, "max_h2_streams", (1, 65_536), "") {
                Some(n) => limits.h2_streams = n,
                None => ok = false,
            }
        }
        if let Some(n) = &l.max_h2_control_frames {
            match self.number(at, n, "max_h2_control_frames", (1, u32::MAX), " (per second)") {
                Some(n) => limits.h2_control_frames = n,
                None => ok = false,
            }
        }
        ok.then_some(limits)
    }

    /// A size in bytes (`"10MiB"`); `None` and an error if it is not one.
    fn size(&mut self, at: At<'_>, size: &Spanned<String>, key: &str) -> Option<u64> {
        parse_size(key, size.get_ref())
            .map_err(|message| self.errors.push(at.error(size.span(), message)))
            .ok()
    }

    /// A listener's valid routes, in file order; a route that an earlier one
    /// shadows is an error.
    fn routes(&mut self, at: At<'_>, raw_routes: &[Spanned<raw::Route>]) -> Vec<Route> {
        let mut routes: Vec<Route> = Vec::new();
        // Where each valid route is, to name the one that shadows another,
        // by (host, path): a map, so that a listener of 100,000 routes is
        // checked in linear time.
        let mut route_at: HashMap<(Option<HostPattern>, Option<String>), Location> = HashMap::new();
        for raw_route in raw_routes {
            let Some(route) = self.route(at, raw_route) else {
                continue;
            };
            let start = raw_route.span().start;
            // Equal host and path: routing takes the longest path prefix and
            // breaks ties by file order, so the later route never matches.
            let key = (route.host.clone(), route.path.clone());
            if let Some(first) = route_at.get(&key) {
                let what = match (&raw_route.get_ref().host, &raw_route.get_ref().path) {
                    (Some(h), Some(p)) => format!("host `{}` and path `{}`", h.get_ref(), p.get_ref()),
                    (Some(h), None) => format!("host `{}` (any path)", h.get_ref()),
                    (None, Some(p)) => format!("path `{}` (any host)", p.get_ref()),
                    (None, None) => "requests (any host, any path)".to_owned(),
                };
                self.errors.push(at.error(
                    at.line_span(start),
                    format!(
                        "this route can never match: the route at {first} matches the same {what} and comes first; remove one of them or change its host or path"
                    ),
                ));
            } else {
                route_at.insert(key, at.loc(start));
            }
            routes.push(route);
        }
        routes
    }

    /// One `[[listener.NAME.route]]`: what it matches and what it does;
    /// `None` (and errors) when any of it is invalid.
    fn route(&mut self, at: At<'_>, r: &Spanned<raw::Route>) -> Option<Route> {
        let start = r.span().start;
        let r = r.get_ref();
        let mut ok = true;
        let host = match &r.host {
            None => None,
            Some(h) => match parse_host(h.get_ref()) {
                Ok(p) => Some(p),
                Err(message) => {
                    self.errors.push(at.error(h.span(), message));
                    ok = false;
                    None
                }
            },
        };
        if let Some(p) = &r.path {
            if !p.get_ref().starts_with('/') {
                self.errors.push(at.error(
                    p.span(),
                    format!(
                        "invalid path `{}`: a route path must start with \"/\", like \"/api/\"",
                        p.get_ref()
                    ),
                ));
                ok = false;
            }
        }
        let max_request_body = match &r.max_request_body {
            None => None,
            Some(size) => {
                let bytes = self.size(at, size, "max_request_body");
                ok &= bytes.is_some();
                bytes
            }
        };
        let access = self.access_rules(at, &r.allow, &r.deny);
        let action = self.route_action(at, start, r)?;
        ok.then_some(())?;
        Some(Route {
            host,
            path: r.path.as_ref().map(|p| p.get_ref().clone()),
            action,
            max_request_body,
            access: access?,
        })
    }

    /// What a route does: `upstream` or `respond`, exactly one of them.
    fn route_action(&mut self, at: At<'_>, start: usize, r: &raw::Route) -> Option<RouteAction> {
        match (&r.upstream, &r.respond) {
            (Some(_), Some(_)) => {
                self.errors.push(at.error(
                    start..start,
                    "route has both `upstream` and `respond`: keep only one".to_owned(),
                ));
                None
            }
            (None, None) => {
                self.errors.push(at.error(
                    start..start,
                    "route has neither `upstream` nor `respond`: add upstream = \"NAME\" or respond = { status = 200 }".to_owned(),
                ));
                None
            }
            (Some(u), None) => {
                self.reference(at, u);
                let strip_prefix = r.strip_prefix.as_ref().is_some_and(|s| *s.get_ref());
                if strip_prefix && r.path.is_none() {
                    let s = r.strip_prefix.as_ref().map_or(start, |s| s.span().start);
                    self.errors.push(at.error(
                        s..s,
                        "`strip_prefix = true` needs a `path` to strip: add path = \"/prefix/\"".to_owned(),
                    ));
                    return None;
                }
                Some(RouteAction::Proxy {
                    upstream: u.get_ref().clone(),
                    strip_prefix,
                })
            }
            (None, Some(respond)) => {
                if let Some(s) = &r.strip_prefix {
                    self.errors.push(at.error(
                        s.span(),
                        "`strip_prefix` only applies to routes with `upstream`: remove it from this `respond` route".to_owned(),
                    ));
                }
                // The rest of `respond` is checked either way.
                let action = self.respond(at, respond);
                action.filter(|_| r.strip_prefix.is_none())
            }
        }
    }

    /// `respond = { status, body, location }`.
    fn respond(&mut self, at: At<'_>, respond: &raw::Respond) -> Option<RouteAction> {
        let status = &respond.status;
        let location = match &respond.location {
            None => Some(None),
            Some(l) => match check_location(l.get_ref()) {
                Ok(()) => Some(Some(l.get_ref().clone())),
                Err(message) => {
                    self.errors.push(at.error(l.span(), message));
                    None
                }
            },
        };
        match (u16::try_from(*status.get_ref()), location) {
            // 1xx are not final responses: hyper cannot send one as the
            // answer to a request.
            (Ok(code @ 200..=599), Some(location)) => {
                if let (Some(l), false) = (&respond.location, (300..400).contains(&code)) {
                    self.config.warnings.push(at.error(
                        l.span(),
                        format!(
                            "`location` with status {code} does not redirect: clients follow it only with a 3xx status, like 301, 302, 307 or 308"
                        ),
                    ));
                }
                Some(RouteAction::Respond {
                    status: code,
                    body: respond.body.clone(),
                    location,
                })
            }
            (Ok(200..=599), None) => None,
            _ => {
                self.errors.push(at.error(
                    status.span(),
                    format!(
                        "invalid status {}: use an HTTP status code from 200 to 599",
                        status.get_ref()
                    ),
                ));
                None
            }
        }
    }
}

/// A route's `host`: `name` or `*.suffix`, lowercased; no port, no other `*`.
fn parse_host(text: &str) -> Result<HostPattern, String> {
    if text.is_empty() {
        return Err(
            "empty host: remove `host` to match any host, or give a name like \"api.example.com\"".to_owned(),
        );
    }
    let is_ipv6_literal = text.starts_with('[') && text.ends_with(']');
    if text.contains(':') && !is_ipv6_literal {
        return Err(format!(
            "invalid host `{text}`: remove the port, a route matches the host name on any port"
        ));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!("invalid host `{text}`: a host name has no spaces"));
    }
    let lower = text.to_ascii_lowercase();
    match lower.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') => {
            Ok(HostPattern::Wildcard(suffix.to_owned()))
        }
        _ if lower.contains('*') => Err(format!(
            "invalid host `{text}`: a wildcard is only allowed as a leading \"*.\", like \"*.example.com\""
        )),
        _ => Ok(HostPattern::Exact(lower)),
    }
}

/// The placeholders a respond `location` may use.
const LOCATION_PLACEHOLDERS: [&str; 2] = ["host", "uri"];

/// A respond `location` template: text with `{host}` and `{uri}`.
fn check_location(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty location: remove it, or give a URL like \"https://{host}{uri}\"".to_owned());
    }
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!(
                "unmatched `}}` in location `{text}`: placeholders are written {{host}} and {{uri}}"
            ));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "unclosed `{{` in location `{text}`: placeholders are written {{host}} and {{uri}}"
            ));
        };
        let name = &after[..close];
        if !LOCATION_PLACEHOLDERS.contains(&name) {
            return Err(hinted(
                format!("unknown placeholder `{{{name}}}` in location"),
                name,
                LOCATION_PLACEHOLDERS,
                "use {host} for the request's host and {uri} for its path and query",
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host("Api.Example.COM"),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse_host("*.Example.com"),
            Ok(HostPattern::Wildcard(".example.com".into()))
        );
        assert_eq!(parse_host("[::1]"), Ok(HostPattern::Exact("[::1]".into())));
        for bad in [
            "", "*", "*.", "a.*.com", "*a.com", "**.a.com", "*.a*", "a.com:80", "a b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_host("a.*.com").unwrap_err(),
            "invalid host `a.*.com`: a wildcard is only allowed as a leading \"*.\", like \"*.example.com\""
        );
        assert_eq!(
            parse_host("a.com:80").unwrap_err(),
            "invalid host `a.com:80`: remove the port, a route matches the host name on any port"
        );
    }

    #[test]
    fn request_limits() {
        let config = ok(&format!("{WEB}{UP}"));
        assert_eq!(config.listeners["web"].request_limits, RequestLimits::default());
        let text = format!(
            "{WEB}max_request_body = \"1MiB\"\nmax_request_headers = 50\nmax_request_line = \"4KiB\"\n\
             max_h2_control_frames = 10\nmax_request_head = \"16KiB\"\nmax_h2_streams = 64\n\
             [[listener.web.route]]\npath = \"/up/\"\nupstream = \"app\"\nmax_request_body = \"1GiB\"\n{UP}"
        );
        let config = ok(&text);
        let web = &config.listeners["web"];
        assert_eq!(
            web.request_limits,
            RequestLimits {
                max_body: Some(1 << 20),
                max_headers: 50,
                max_line: 4096,
                h2_control_frames: 10,
                max_head: 16 << 10,
                h2_streams: 64,
            }
        );
        assert_eq!(web.routes[0].max_request_body, Some(1 << 30));
        let text = format!(
            "{WEB}max_request_body = \"0B\"\nmax_request_headers = 0\nmax_request_line = \"64KiB\"\n\
             max_h2_control_frames = -1\nmax_request_head = \"2MiB\"\nmax_h2_streams = 0\n\
             [[listener.web.route]]\npath = \"/up/\"\nupstream = \"app\"\nmax_request_body = \"lots\"\n{UP}"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:4:20: invalid max_request_body `0B`: it must be greater than zero; remove the key for no limit".to_owned(),
                "ginx.toml:5:23: invalid max_request_headers 0: use a number from 1 to 1024".to_owned(),
                "ginx.toml:6:20: max_request_line `64KiB` is larger than the whole request head may be (32 KiB): use at most \"32KiB\"".to_owned(),
                "ginx.toml:7:25: invalid max_h2_control_frames -1: use a number from 1 to 4294967295 (per second)".to_owned(),
                "ginx.toml:8:20: max_request_head `2MiB` is out of range: use \"1KiB\" to \"1MiB\"".to_owned(),
                "ginx.toml:9:18: invalid max_h2_streams 0: use a number from 1 to 65536".to_owned(),
                format!("ginx.toml:13:20: invalid max_request_body `lots`: {}", super::super::parse::SIZE_HINT),
            ]
        );
    }

    #[test]
    fn duplicate_bind() {
        let text = format!(
            "[listener.a]\nbind = \"127.0.0.1:80\"\nupstream = \"app\"\n\
             [listener.b]\nbind = \"127.0.0.1:80\"\nupstream = \"app\"\n\
             [listener.c]\nbind = \"localhost:0\"\nupstream = \"app\"\n\
             [listener.d]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n{UP}"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            ["ginx.toml:5:8: bind address 127.0.0.1:80 is already used by listener `a` at ginx.toml:2:8: give each listener its own address"]
        );
    }

    #[test]
    fn listener_problems() {
        let text = format!(
            "[listener.a]\nbind = \"127.0.0.1:1\"\n\
             [listener.b]\nupstream = \"app\"\n\
             [listener.c]\nbind = \"127.0.0.1\"\nupstream = \"app\"\n{UP}"
        );
        let hint = BIND_HINT;
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:1:1: listener `a` has no upstream and no route: add upstream = \"NAME\" or a [[listener.a.route]]".to_owned(),
                "ginx.toml:3:1: listener `b` has no `bind`: add bind = \"IP:PORT\"".to_owned(),
                format!("ginx.toml:6:8: invalid bind address `127.0.0.1`: {hint}"),
            ]
        );
    }

    #[test]
    fn route_problems() {
        let text = format!(
            "[listener.a]\nbind = \"127.0.0.1:1\"\n\
             [[listener.a.route]]\nupstream = \"app\"\nrespond = {{ status = 200 }}\n\
             [[listener.a.route]]\npath = \"/x\"\n\
             [[listener.a.route]]\nrespond = {{ status = 200 }}\nstrip_prefix = false\n\
             [[listener.a.route]]\nupstream = \"app\"\nstrip_prefix = true\n\
             [[listener.a.route]]\nrespond = {{ status = 600 }}\npath = \"x\"\n\
             [[listener.a.route]]\nhost = \"\"\nupstream = \"app\"\n\
             [[listener.a.route]]\nhost = \"*.a.com:8080\"\nupstream = \"app\"\n{UP}"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:3:1: route has both `upstream` and `respond`: keep only one",
                "ginx.toml:6:1: route has neither `upstream` nor `respond`: add upstream = \"NAME\" or respond = { status = 200 }",
                "ginx.toml:10:16: `strip_prefix` only applies to routes with `upstream`: remove it from this `respond` route",
                "ginx.toml:13:16: `strip_prefix = true` needs a `path` to strip: add path = \"/prefix/\"",
                "ginx.toml:15:22: invalid status 600: use an HTTP status code from 200 to 599",
                "ginx.toml:16:8: invalid path `x`: a route path must start with \"/\", like \"/api/\"",
                "ginx.toml:18:8: empty host: remove `host` to match any host, or give a name like \"api.example.com\"",
                "ginx.toml:21:8: invalid host `*.a.com:8080`: remove the port, a route matches the host name on any port",
            ]
        );
    }

    #[test]
    fn final_statuses_only() {
        let text =
            "[listener.web]\nbind = \"127.0.0.1:1\"\n[[listener.web.route]]\nrespond = { status = 101 }\n";
        assert_eq!(
            errors(&[("ginx.toml", text)]),
            ["ginx.toml:4:22: invalid status 101: use an HTTP status code from 200 to 599"]
        );
    }

    #[test]
    fn respond_status_is_required() {
        assert_eq!(
            errors(&[("ginx.toml", "[[listener.a.route]]\nrespond = { body = \"x\" }\n")]),
            ["ginx.toml:2:11: missing field `status`"]
        );
    }

    #[test]
    fn a_route_equal_to_an_earlier_one_is_dead() {
        let text = format!(
            "{WEB}{UP}\
             [[listener.web.route]]\nhost = \"api.example.com\"\npath = \"/api/\"\nupstream = \"app\"\n\
             [[listener.web.route]]\npath = \"/api/\"\nupstream = \"app\"\n\
             [[listener.web.route]]\nhost = \"API.example.com\"\npath = \"/api/\"\nrespond = {{ status = 404 }}\n\
             [[listener.web.route]]\nhost = \"api.example.com\"\npath = \"/api\"\nupstream = \"app\"\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            ["ginx.toml:13:1: this route can never match: the route at ginx.toml:6:1 matches the same host `API.example.com` and path `/api/` and comes first; remove one of them or change its host or path"]
        );
    }

    #[test]
    fn respond_location() {
        let route = |location: &str| {
            format!(
                "[listener.web]\nbind = \"127.0.0.1:1\"\n[[listener.web.route]]\nrespond = {{ status = 301, location = \"{location}\" }}\n"
            )
        };
        let config = ok(&route("https://{host}{uri}"));
        assert_eq!(
            config.listeners["web"].routes[0].action,
            RouteAction::Respond {
                status: 301,
                body: String::new(),
                location: Some("https://{host}{uri}".into())
            }
        );
        assert_eq!(
            errors(&[("ginx.toml", &route("https://{hots}{uri}"))]),
            ["ginx.toml:4:38: unknown placeholder `{hots}` in location: did you mean `host`? (use {host} for the request's host and {uri} for its path and query)"]
        );
        assert_eq!(
            errors(&[("ginx.toml", &route("https://{host"))]),
            ["ginx.toml:4:38: unclosed `{` in location `https://{host`: placeholders are written {host} and {uri}"]
        );
        assert_eq!(
            errors(&[("ginx.toml", &route("https://host}"))]),
            ["ginx.toml:4:38: unmatched `}` in location `https://host}`: placeholders are written {host} and {uri}"]
        );
    }

    #[test]
    fn connection_limits_defaults_and_bounds() {
        let config = ok(&format!("{WEB}{UP}"));
        assert_eq!(
            config.listeners["web"].connection_limits,
            ConnectionLimits::default()
        );
        assert_eq!(
            config.listeners["web"]
                .connection_limits
                .max_requests_per_connection,
            1000
        );
        assert_eq!(config.global.max_connections, None);
        let text = format!(
            "[global]\nmax_connections = 1\n{WEB}max_connections = 4294967295\n\
             max_connections_per_ip = 1\nmax_requests_per_connection = 0\n{UP}"
        );
        let config = ok(&text);
        assert_eq!(config.global.max_connections, Some(1));
        assert_eq!(
            config.listeners["web"].connection_limits,
            ConnectionLimits {
                max_connections: Some(u32::MAX),
                max_connections_per_ip: Some(1),
                max_requests_per_connection: 0,
            }
        );
        let text = format!("{WEB}max_connections = 0\nmax_connections_per_ip = 0\n{UP}");
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:4:19: invalid max_connections 0: use a number from 1 to 4294967295 (leave it out for the default)",
                "ginx.toml:5:26: invalid max_connections_per_ip 0: use a number from 1 to 4294967295 (leave it out for no per-address limit)",
            ]
        );
    }
}
