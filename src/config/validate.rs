//! Semantic checks over all parsed files together: raw::File -> Config parts.
//!
//! Every problem is collected; nothing stops at the first one.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{Error, Location};
use super::raw;
use super::{Balance, Global, HostPattern, Listener, Route, RouteAction, ServerSpec, Upstream};

const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
const DURATION_HINT: &str = "use a number with a unit, like \"250ms\", \"5s\" or \"2m\"";
const SERVER_HINT: &str = "use \"HOST:PORT\" or \"http://HOST:PORT\", like \"127.0.0.1:9001\"";
const BIND_HINT: &str =
    "use IP:PORT, like \"127.0.0.1:8080\", \"[::1]:8080\", \"0.0.0.0:80\" or \"localhost:8080\"";

/// One file after parsing: `file` is `None` when toml rejected it (that error
/// has already been reported).
pub(crate) struct Parsed {
    pub path: PathBuf,
    pub text: String,
    pub file: Option<raw::File>,
}

/// The validated contents, ready to become a [`super::Config`].
#[derive(Debug)]
pub(crate) struct Parts {
    pub global: Global,
    pub listeners: BTreeMap<String, Listener>,
    pub upstreams: BTreeMap<String, Upstream>,
}

/// Check all files together, pushing every problem onto `errors`.
///
/// `complete` is false when some file could not be read or parsed: checks
/// that such a file might have satisfied (unknown upstream, no listener) are
/// then skipped, to avoid false alarms.
pub(crate) fn validate(files: &[Parsed], main: &Path, complete: bool, errors: &mut Vec<Error>) -> Parts {
    let mut v = Validator {
        errors,
        global: Global {
            log_level: "info".to_owned(),
            access_log: false,
            watch: true,
            shutdown_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
        },
        global_set: HashMap::new(),
        listeners: BTreeMap::new(),
        listener_defs: HashMap::new(),
        listener_count: 0,
        binds: HashMap::new(),
        upstreams: BTreeMap::new(),
        upstream_defs: HashMap::new(),
        upstream_order: Vec::new(),
        references: Vec::new(),
    };
    for f in files {
        if let Some(raw) = &f.file {
            let at = At {
                path: &f.path,
                text: &f.text,
            };
            if let Some(g) = &raw.global {
                v.global(at, g);
            }
            for (name, u) in &raw.upstream.0 {
                v.upstream(at, name, u);
            }
            for (name, l) in &raw.listener.0 {
                v.listener(at, name, l);
            }
        }
    }
    if complete {
        v.check_references();
        if v.listener_count == 0 {
            v.errors.push(Error::file(
                main,
                "no listener defined: add a [listener.NAME] table with bind = \"IP:PORT\"".to_owned(),
            ));
        }
    }
    Parts {
        global: v.global,
        listeners: v.listeners,
        upstreams: v.upstreams,
    }
}

/// A file being checked: turns spans into located errors.
#[derive(Clone, Copy)]
struct At<'a> {
    path: &'a Path,
    text: &'a str,
}

impl At<'_> {
    fn loc(&self, offset: usize) -> Location {
        Location::at(self.path, self.text, offset)
    }

    fn error(&self, span: Range<usize>, message: String) -> Error {
        Error::at(self.path, self.text, span, message)
    }

    /// Where a named table starts: the `[` of its `[kind.NAME]` header when it
    /// has one, else the name itself (`NAME = { ... }`, `kind.NAME.key = ...`).
    fn header(&self, name: &Spanned<String>) -> usize {
        let key = name.span().start.min(self.text.len());
        let line_start = self.text[..key].rfind('\n').map_or(0, |i| i + 1);
        let before = &self.text[line_start..key];
        let trimmed = before.trim_start();
        if trimmed.starts_with('[') {
            line_start + (before.len() - trimmed.len())
        } else {
            key
        }
    }
}

struct Validator<'e> {
    errors: &'e mut Vec<Error>,
    global: Global,
    /// `[global]` key -> where it was first set.
    global_set: HashMap<&'static str, Location>,
    listeners: BTreeMap<String, Listener>,
    /// Listener name -> where it was first defined.
    listener_defs: HashMap<String, Location>,
    listener_count: usize,
    /// Bind address -> (listener, where).
    binds: HashMap<SocketAddr, (String, Location)>,
    upstreams: BTreeMap<String, Upstream>,
    upstream_defs: HashMap<String, Location>,
    /// Upstream names in definition order, for messages.
    upstream_order: Vec<String>,
    /// Every `upstream = "NAME"` reference, checked once all files are read.
    references: Vec<(Location, String)>,
}

impl Validator<'_> {
    /// Record that `[global]` key `key` is set at `span`; false (and an
    /// error) if another file or table already set it.
    fn global_once(&mut self, at: At<'_>, key: &'static str, span: Range<usize>) -> bool {
        let here = at.loc(span.start);
        if let Some(first) = self.global_set.get(key) {
            self.errors.push(Error::At {
                location: here,
                message: format!("`{key}` in [global] is already set at {first}: keep only one"),
            });
            return false;
        }
        self.global_set.insert(key, here);
        true
    }

    fn global(&mut self, at: At<'_>, g: &raw::Global) {
        if let Some(level) = &g.log_level {
            if self.global_once(at, "log_level", level.span()) {
                let lower = level.get_ref().to_ascii_lowercase();
                if LOG_LEVELS.contains(&lower.as_str()) {
                    self.global.log_level = lower;
                } else {
                    self.errors.push(at.error(
                        level.span(),
                        format!(
                            "invalid log_level `{}`: use one of {}",
                            level.get_ref(),
                            LOG_LEVELS.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(access_log) = &g.access_log {
            if self.global_once(at, "access_log", access_log.span()) {
                self.global.access_log = *access_log.get_ref();
            }
        }
        if let Some(watch) = &g.watch {
            if self.global_once(at, "watch", watch.span()) {
                self.global.watch = *watch.get_ref();
            }
        }
        if let Some(timeout) = &g.shutdown_timeout {
            if self.global_once(at, "shutdown_timeout", timeout.span()) {
                if let Some(d) = self.duration(at, timeout, "shutdown_timeout") {
                    self.global.shutdown_timeout = d;
                }
            }
        }
        if let Some(timeout) = &g.header_read_timeout {
            if self.global_once(at, "header_read_timeout", timeout.span()) {
                if let Some(d) = self.positive_duration(at, timeout, "header_read_timeout") {
                    self.global.header_read_timeout = d;
                }
            }
        }
    }

    /// A duration that must not be zero (a timeout of nothing would fail
    /// everything).
    fn positive_duration(
        &mut self,
        at: At<'_>,
        value: &Spanned<raw::DurationText>,
        key: &str,
    ) -> Option<Duration> {
        let d = self.duration(at, value, key)?;
        if d.is_zero() {
            self.errors.push(at.error(
                value.span(),
                format!(
                    "invalid duration `{}` for `{key}`: it must be greater than zero, like \"5s\"",
                    value.get_ref().0
                ),
            ));
            return None;
        }
        Some(d)
    }

    fn duration(&mut self, at: At<'_>, value: &Spanned<raw::DurationText>, key: &str) -> Option<Duration> {
        let text = &value.get_ref().0;
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(_) => {
                self.errors.push(at.error(
                    value.span(),
                    format!("invalid duration `{text}` for `{key}`: {DURATION_HINT}"),
                ));
                None
            }
        }
    }

    /// Record the definition of `kind` `name`; false (and an error) if it is
    /// already defined.
    fn define(
        errors: &mut Vec<Error>,
        defs: &mut HashMap<String, Location>,
        kind: &str,
        here: Location,
        name: &str,
    ) -> bool {
        if let Some(first) = defs.get(name) {
            errors.push(Error::At {
                location: here,
                message: format!(
                    "{kind} `{name}` is already defined at {first}: rename one of them or remove it"
                ),
            });
            return false;
        }
        defs.insert(name.to_owned(), here);
        true
    }

    fn upstream(&mut self, at: At<'_>, name: &Spanned<String>, u: &raw::Upstream) {
        let header = at.header(name);
        let name = name.get_ref();
        let first = Self::define(
            self.errors,
            &mut self.upstream_defs,
            "upstream",
            at.loc(header),
            name,
        );
        if first {
            self.upstream_order.push(name.clone());
        }

        let balance = match &u.balance {
            None => Balance::RoundRobin,
            Some(b) => match b.get_ref().as_str() {
                "round_robin" | "weighted_round_robin" => Balance::RoundRobin,
                other => {
                    self.errors.push(at.error(
                        b.span(),
                        format!("unknown balance `{other}`: use \"round_robin\" or \"weighted_round_robin\""),
                    ));
                    Balance::RoundRobin
                }
            },
        };

        let mut servers = Vec::new();
        let empty_at = match &u.servers {
            None => Some(header),
            Some(list) if list.get_ref().is_empty() => Some(list.span().start),
            Some(_) => None,
        };
        if let Some(offset) = empty_at {
            self.errors.push(at.error(
                offset..offset,
                format!("upstream `{name}` has no servers: add servers = [\"HOST:PORT\"]"),
            ));
        }
        for entry in u.servers.iter().flat_map(|l| l.get_ref()) {
            if let Some(s) = self.server(at, entry) {
                // A server's state is keyed by its address: listing it twice
                // would make two entries share one state.
                if servers.iter().any(|seen: &ServerSpec| seen.addr == s.addr) {
                    self.errors.push(at.error(
                        entry.span(),
                        format!(
                            "server `{}` is listed twice in upstream `{name}`: list it once and give it a weight instead",
                            s.name
                        ),
                    ));
                    continue;
                }
                servers.push(s);
            }
        }

        let connect_timeout = match &u.connect_timeout {
            None => Duration::from_secs(5),
            Some(t) => self
                .positive_duration(at, t, "connect_timeout")
                .unwrap_or(Duration::from_secs(5)),
        };

        if first {
            self.upstreams.insert(
                name.clone(),
                Upstream {
                    name: name.clone(),
                    balance,
                    servers,
                    connect_timeout,
                },
            );
        }
    }

    fn server(&mut self, at: At<'_>, entry: &Spanned<raw::Server>) -> Option<ServerSpec> {
        let (text, span, weight) = match entry.get_ref() {
            raw::Server::Text(t) => (t.as_str(), entry.span(), None),
            raw::Server::Table { addr, weight } => (addr.get_ref().as_str(), addr.span(), weight.as_ref()),
        };
        let weight = match weight {
            None => Some(1),
            Some(w) => match u32::try_from(*w.get_ref()) {
                Ok(n @ 1..=1000) => Some(n),
                _ => {
                    self.errors.push(at.error(
                        w.span(),
                        format!(
                            "invalid weight {} for server `{text}`: use a number from 1 to 1000",
                            w.get_ref()
                        ),
                    ));
                    None
                }
            },
        };
        let addr = match parse_server(text) {
            Ok(a) => Some(a),
            Err(message) => {
                self.errors.push(at.error(span, message));
                None
            }
        };
        let (name, addr) = addr?;
        Some(ServerSpec {
            name,
            addr,
            weight: weight?,
        })
    }

    fn listener(&mut self, at: At<'_>, name: &Spanned<String>, l: &raw::Listener) {
        self.listener_count += 1;
        let header = at.header(name);
        let name = name.get_ref();
        let first = Self::define(
            self.errors,
            &mut self.listener_defs,
            "listener",
            at.loc(header),
            name,
        );

        let bind = match &l.bind {
            None => {
                self.errors.push(at.error(
                    header..header,
                    format!("listener `{name}` has no `bind`: add bind = \"IP:PORT\""),
                ));
                None
            }
            Some(b) => match parse_bind(b.get_ref()) {
                Some(addr) => Some(addr),
                None => {
                    self.errors.push(at.error(
                        b.span(),
                        format!("invalid bind address `{}`: {BIND_HINT}", b.get_ref()),
                    ));
                    None
                }
            },
        };
        if let (true, Some(addr), Some(b)) = (first, bind, &l.bind) {
            if addr.port() != 0 {
                let here = at.loc(b.span().start);
                if let Some((other, there)) = self.binds.get(&addr) {
                    self.errors.push(Error::At {
                        location: here,
                        message: format!(
                            "bind address {addr} is already used by listener `{other}` at {there}: give each listener its own address"
                        ),
                    });
                } else {
                    self.binds.insert(addr, (name.clone(), here));
                }
            }
        }

        if let Some(u) = &l.upstream {
            self.references
                .push((at.loc(u.span().start), u.get_ref().clone()));
        }
        if l.upstream.is_none() && l.route.is_empty() {
            self.errors.push(at.error(
                header..header,
                format!(
                    "listener `{name}` has no upstream and no route: add upstream = \"NAME\" or a [[listener.{name}.route]]"
                ),
            ));
        }

        let routes: Vec<Route> = l.route.iter().filter_map(|r| self.route(at, r)).collect();

        if let (true, Some(bind)) = (first, bind) {
            self.listeners.insert(
                name.clone(),
                Listener {
                    name: name.clone(),
                    bind,
                    upstream: l.upstream.as_ref().map(|u| u.get_ref().clone()),
                    routes,
                },
            );
        }
    }

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

        let action = match (&r.upstream, &r.respond) {
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
                self.references
                    .push((at.loc(u.span().start), u.get_ref().clone()));
                let strip_prefix = r.strip_prefix.as_ref().is_some_and(|s| *s.get_ref());
                if strip_prefix && r.path.is_none() {
                    let s = r.strip_prefix.as_ref().map_or(start, |s| s.span().start);
                    self.errors.push(at.error(
                        s..s,
                        "`strip_prefix = true` needs a `path` to strip: add path = \"/prefix/\"".to_owned(),
                    ));
                    ok = false;
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
                    ok = false;
                }
                let status = &respond.status;
                match u16::try_from(*status.get_ref()) {
                    // 1xx are not final responses: hyper cannot send one as
                    // the answer to a request.
                    Ok(code @ 200..=599) => Some(RouteAction::Respond {
                        status: code,
                        body: respond.body.clone(),
                    }),
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
        };

        let action = action?;
        ok.then(|| Route {
            host,
            path: r.path.as_ref().map(|p| p.get_ref().clone()),
            action,
        })
    }

    fn check_references(&mut self) {
        for (location, name) in &self.references {
            if self.upstream_defs.contains_key(name) {
                continue;
            }
            let defined = if self.upstream_order.is_empty() {
                format!("no upstream is defined: add an [upstream.{name}] table")
            } else {
                format!("defined upstreams: {}", self.upstream_order.join(", "))
            };
            self.errors.push(Error::At {
                location: location.clone(),
                message: format!("unknown upstream `{name}` ({defined})"),
            });
        }
    }
}

/// `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
fn parse_bind(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let port = text.strip_prefix("localhost:")?.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
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

/// A server entry: `HOST:PORT` or `http://HOST:PORT`, optional trailing `/`.
/// Returns the name (without scheme and `/`) and the resolved address.
fn parse_server(text: &str) -> Result<(String, SocketAddr), String> {
    let invalid = |why: &str| format!("invalid server address `{text}`: {why}; {SERVER_HINT}");
    let rest = match text.split_once("://") {
        None => text,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(invalid(
                "https is not supported, servers are reached over plain http",
            ))
        }
        Some((scheme, _)) => return Err(invalid(&format!("unsupported scheme `{scheme}`"))),
    };
    let name = rest.strip_suffix('/').unwrap_or(rest);
    if name.contains('/') {
        return Err(invalid("a path is not allowed"));
    }
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if let Ok(addr) = name.parse::<SocketAddr>() {
        return Ok((name.to_owned(), addr));
    }
    let Some((host, port)) = name.rsplit_once(':') else {
        return Err(invalid("missing port"));
    };
    if host.is_empty() || host.contains([':', '[', ']']) || host.chars().any(char::is_whitespace) {
        return Err(invalid("bad host"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(invalid(&format!("bad port `{port}`")));
    };
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(format!("cannot resolve `{host}` for server `{name}`: {e}")),
    };
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve `{host}` for server `{name}`: no address found"))?;
    Ok((name.to_owned(), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse and validate in-memory files (first is the main file); returns
    /// the parts and every error as a display string. A file toml rejects
    /// makes the set incomplete, as in a real load.
    fn check(files: &[(&str, &str)]) -> (Parts, Vec<String>) {
        let mut errors = Vec::new();
        let mut complete = true;
        let parsed: Vec<Parsed> = files
            .iter()
            .map(|(path, text)| {
                let file = match raw::parse(text) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        complete = false;
                        errors.push(super::super::load::toml_error(Path::new(path), text, &e));
                        None
                    }
                };
                Parsed {
                    path: PathBuf::from(path),
                    text: (*text).to_owned(),
                    file,
                }
            })
            .collect();
        let parts = validate(&parsed, Path::new(files[0].0), complete, &mut errors);
        let order: Vec<PathBuf> = files.iter().map(|(p, _)| PathBuf::from(p)).collect();
        let errors = super::super::Errors::new(errors, Vec::new(), &order);
        (parts, errors.iter().map(ToString::to_string).collect())
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        check(files).1
    }

    fn ok(text: &str) -> Parts {
        let (parts, errors) = check(&[("ginx.toml", text)]);
        assert!(errors.is_empty(), "{errors:#?}");
        parts
    }

    const UP: &str = "[upstream.app]\nservers = [\"127.0.0.1:9001\"]\n";

    #[test]
    fn defaults() {
        let parts = ok(&format!(
            "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n{UP}"
        ));
        assert_eq!(parts.global.log_level, "info");
        assert!(!parts.global.access_log);
        assert_eq!(parts.global.shutdown_timeout, Duration::from_secs(30));
        let up = &parts.upstreams["app"];
        assert_eq!(up.name, "app");
        assert_eq!(up.balance, Balance::RoundRobin);
        assert_eq!(up.connect_timeout, Duration::from_secs(5));
        assert_eq!(up.servers[0].weight, 1);
        let l = &parts.listeners["web"];
        assert_eq!(l.name, "web");
        assert_eq!(l.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(l.upstream.as_deref(), Some("app"));
        assert!(l.routes.is_empty());
    }

    #[test]
    fn full_example() {
        let parts = ok(r#"
[global]
log_level = "debug"
access_log = true
shutdown_timeout = "0s"

[listener.web]
bind = "localhost:0"
upstream = "app"

[[listener.web.route]]
host = "API.Example.com"
path = "/api/"
upstream = "api"
strip_prefix = true

[[listener.web.route]]
host = "*.Example.com"
path = "/health"
respond = { status = 204 }

[[listener.web.route]]
respond = { status = 200, body = "ok\n" }

[upstream.app]
balance = "weighted_round_robin"
servers = ["127.0.0.1:9001", { addr = "http://127.0.0.1:9002/", weight = 2 }]
connect_timeout = "250ms"

[upstream.api]
servers = ["[::1]:9003"]
"#);
        assert_eq!(parts.global.log_level, "debug");
        assert!(parts.global.access_log);
        assert_eq!(parts.global.shutdown_timeout, Duration::ZERO);
        let l = &parts.listeners["web"];
        assert_eq!(l.bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            l.routes,
            vec![
                Route {
                    host: Some(HostPattern::Exact("api.example.com".into())),
                    path: Some("/api/".into()),
                    action: RouteAction::Proxy {
                        upstream: "api".into(),
                        strip_prefix: true
                    },
                },
                Route {
                    host: Some(HostPattern::Wildcard(".example.com".into())),
                    path: Some("/health".into()),
                    action: RouteAction::Respond {
                        status: 204,
                        body: String::new()
                    },
                },
                Route {
                    host: None,
                    path: None,
                    action: RouteAction::Respond {
                        status: 200,
                        body: "ok\n".into()
                    },
                },
            ]
        );
        let app = &parts.upstreams["app"];
        assert_eq!(app.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            app.servers,
            vec![
                ServerSpec {
                    name: "127.0.0.1:9001".into(),
                    addr: "127.0.0.1:9001".parse().unwrap(),
                    weight: 1
                },
                ServerSpec {
                    name: "127.0.0.1:9002".into(),
                    addr: "127.0.0.1:9002".parse().unwrap(),
                    weight: 2
                },
            ]
        );
        assert_eq!(
            parts.upstreams["api"].servers[0].addr,
            "[::1]:9003".parse().unwrap()
        );
    }

    #[test]
    fn server_forms() {
        let ok_cases = [
            ("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1"),
            ("http://127.0.0.1:2", "127.0.0.1:2", "127.0.0.1:2"),
            ("http://127.0.0.1:3/", "127.0.0.1:3", "127.0.0.1:3"),
            ("HTTP://[::1]:4", "[::1]:4", "[::1]:4"),
            ("localhost:5", "localhost:5", "127.0.0.1:5"),
            ("http://localhost:6/", "localhost:6", "127.0.0.1:6"),
        ];
        for (text, name, addr) in ok_cases {
            let (n, a) = parse_server(text).unwrap();
            assert_eq!(n, name, "{text}");
            assert_eq!(a, addr.parse().unwrap(), "{text}");
        }
        let hint = SERVER_HINT;
        let bad_cases = [
            ("127.0.0.1", format!("invalid server address `127.0.0.1`: missing port; {hint}")),
            (
                "https://a:1",
                format!("invalid server address `https://a:1`: https is not supported, servers are reached over plain http; {hint}"),
            ),
            (
                "http://a:1/x",
                format!("invalid server address `http://a:1/x`: a path is not allowed; {hint}"),
            ),
            (
                "ftp://a:1",
                format!("invalid server address `ftp://a:1`: unsupported scheme `ftp`; {hint}"),
            ),
            ("a:99999", format!("invalid server address `a:99999`: bad port `99999`; {hint}")),
            ("http://", format!("invalid server address `http://`: it is empty; {hint}")),
        ];
        for (text, message) in bad_cases {
            assert_eq!(parse_server(text).unwrap_err(), message);
        }
        let e = parse_server("no-such-host.invalid:80").unwrap_err();
        assert!(
            e.starts_with("cannot resolve `no-such-host.invalid` for server `no-such-host.invalid:80`: "),
            "{e}"
        );
    }

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
    fn bind_forms() {
        assert_eq!(parse_bind("0.0.0.0:80"), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(parse_bind("[::1]:8080"), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(parse_bind("localhost:0"), Some("127.0.0.1:0".parse().unwrap()));
        for bad in ["127.0.0.1", ":80", "localhost", "example.com:80", "1.2.3.4:70000"] {
            assert_eq!(parse_bind(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_key() {
        assert_eq!(
            errors(&[(
                "ginx.toml",
                "[listener.web]\nbind = \"127.0.0.1:1\"\nupstreem = \"a\"\n"
            )]),
            ["ginx.toml:3:1: unknown field `upstreem`, expected one of `bind`, `upstream`, `route`"]
        );
        assert_eq!(
            errors(&[("ginx.toml", "[global]\nlog = 1\n")]),
            ["ginx.toml:2:1: unknown field `log`, expected one of `log_level`, `access_log`, `watch`, `shutdown_timeout`, `header_read_timeout`"]
        );
        assert_eq!(
            errors(&[("ginx.toml", "listeners = 1\n")]),
            ["ginx.toml:1:1: unknown field `listeners`, expected one of `include`, `global`, `listener`, `upstream`"]
        );
        assert_eq!(
            errors(&[(
                "ginx.toml",
                "[upstream.a]\nservers = [{ addr = \"127.0.0.1:1\", wieght = 2 }]\n"
            )]),
            ["ginx.toml:2:36: unknown field `wieght`, expected `addr` or `weight`"]
        );
        assert_eq!(
            errors(&[(
                "ginx.toml",
                "[[listener.a.route]]\nrespond = { status = 200, bdy = \"\" }\n"
            )]),
            ["ginx.toml:2:27: unknown field `bdy`, expected `status` or `body`"]
        );
    }

    #[test]
    fn syntax_and_type_errors() {
        assert_eq!(
            errors(&[("ginx.toml", "[listener.web]\nbind = \"127.0.0.1:1\n")]),
            ["ginx.toml:2:20: invalid basic string"]
        );
        assert_eq!(
            errors(&[("ginx.toml", "[listener.web]\nbind = 80\n")]),
            ["ginx.toml:2:8: invalid type: integer `80`, expected a string"]
        );
        // Multi-line toml messages are joined on one line.
        assert_eq!(
            errors(&[(
                "ginx.toml",
                "[listener.a]\nbind = \"127.0.0.1:1\"\n[listener.a]\n"
            )]),
            ["ginx.toml:3:1: invalid table header: duplicate key `a` in table `listener`"]
        );
    }

    #[test]
    fn unknown_upstream() {
        let text = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"nope\"\n\
                    [[listener.web.route]]\nupstream = \"gone\"\n\
                    [upstream.app]\nservers = [\"127.0.0.1:2\"]\n[upstream.api]\nservers = [\"127.0.0.1:3\"]\n";
        assert_eq!(
            errors(&[("ginx.toml", text)]),
            [
                "ginx.toml:3:12: unknown upstream `nope` (defined upstreams: app, api)",
                "ginx.toml:5:12: unknown upstream `gone` (defined upstreams: app, api)",
            ]
        );
        assert_eq!(
            errors(&[(
                "ginx.toml",
                "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"x\"\n"
            )]),
            ["ginx.toml:3:12: unknown upstream `x` (no upstream is defined: add an [upstream.x] table)"]
        );
    }

    #[test]
    fn references_across_files() {
        let main = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n";
        assert!(errors(&[("ginx.toml", main), ("conf.d/up.toml", UP)]).is_empty());
    }

    #[test]
    fn reference_checks_skipped_when_a_file_is_broken() {
        let main = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n";
        assert_eq!(
            errors(&[("ginx.toml", main), ("conf.d/up.toml", "[upstream.app\n")]),
            ["conf.d/up.toml:1:14: invalid table header: expected `.`, `]`"]
        );
        // Nor "no listener defined" when the main file is broken.
        assert_eq!(
            errors(&[("ginx.toml", "[listener.web\n")]),
            ["ginx.toml:1:14: invalid table header: expected `.`, `]`"]
        );
    }

    #[test]
    fn duplicate_listener_across_files() {
        let a = "# listeners\n\n[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n";
        let b = "[upstream.app]\nservers = [\"127.0.0.1:9\"]\n\n  [ listener.web ]\nbind = \"127.0.0.1:2\"\nupstream = \"app\"\n";
        assert_eq!(
            errors(&[("ginx.toml", a), ("conf.d/b.toml", b)]),
            ["conf.d/b.toml:4:3: listener `web` is already defined at ginx.toml:3:1: rename one of them or remove it"]
        );
    }

    #[test]
    fn duplicate_upstream_and_position_forms() {
        let a = "[upstream]\napp = { servers = [\"127.0.0.1:1\"] }\n[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n";
        let b = "upstream.app.servers = [\"127.0.0.1:2\"]\n";
        assert_eq!(
            errors(&[("ginx.toml", a), ("b.toml", b)]),
            ["b.toml:1:10: upstream `app` is already defined at ginx.toml:2:1: rename one of them or remove it"]
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
    fn a_server_is_listed_once_per_upstream() {
        let text = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"a\"\n\
                    [upstream.a]\nservers = [\"127.0.0.1:2\", { addr = \"http://127.0.0.1:2\", weight = 2 }]\n";
        assert_eq!(
            errors(&[("ginx.toml", text)]),
            ["ginx.toml:5:27: server `127.0.0.1:2` is listed twice in upstream `a`: list it once and give it a weight instead"]
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
    fn upstream_problems() {
        let text = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"a\"\n\
                    [upstream.a]\nservers = []\n\
                    [upstream.b]\nbalance = \"random\"\n\
                    [upstream.c]\nservers = [{ addr = \"127.0.0.1:1\", weight = 0 }, { addr = \"127.0.0.1:2\", weight = 1001 }, \"127.0.0.1\"]\nconnect_timeout = \"0s\"\n\
                    [upstream.d]\nservers = [\"127.0.0.1:1\"]\nconnect_timeout = \"5 parsecs\"\n\
                    [upstream.e]\nservers = [\"127.0.0.1:1\"]\nconnect_timeout = 5\n";
        let hint = SERVER_HINT;
        assert_eq!(
            errors(&[("ginx.toml", text)]),
            [
                "ginx.toml:5:11: upstream `a` has no servers: add servers = [\"HOST:PORT\"]".to_owned(),
                "ginx.toml:6:1: upstream `b` has no servers: add servers = [\"HOST:PORT\"]".to_owned(),
                "ginx.toml:7:11: unknown balance `random`: use \"round_robin\" or \"weighted_round_robin\"".to_owned(),
                "ginx.toml:9:45: invalid weight 0 for server `127.0.0.1:1`: use a number from 1 to 1000".to_owned(),
                "ginx.toml:9:83: invalid weight 1001 for server `127.0.0.1:2`: use a number from 1 to 1000".to_owned(),
                format!("ginx.toml:9:91: invalid server address `127.0.0.1`: missing port; {hint}"),
                "ginx.toml:10:19: invalid duration `0s` for `connect_timeout`: it must be greater than zero, like \"5s\"".to_owned(),
                "ginx.toml:13:19: invalid duration `5 parsecs` for `connect_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"".to_owned(),
                "ginx.toml:16:19: invalid duration `5` for `connect_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"".to_owned(),
            ]
        );
    }

    #[test]
    fn global_problems() {
        let main = format!(
            "[global]\nlog_level = \"loud\"\nshutdown_timeout = \"soon\"\n\
             [listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n{UP}"
        );
        let other = "global.log_level = \"warn\"\nglobal.access_log = true\n";
        let (parts, errs) = check(&[("ginx.toml", &main), ("conf.d/g.toml", other)]);
        assert_eq!(
            errs,
            [
                "ginx.toml:2:13: invalid log_level `loud`: use one of trace, debug, info, warn, error",
                "ginx.toml:3:20: invalid duration `soon` for `shutdown_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
                "conf.d/g.toml:1:20: `log_level` in [global] is already set at ginx.toml:2:13: keep only one",
            ]
        );
        // Keys not set elsewhere may come from any file.
        assert!(parts.global.access_log);
    }

    #[test]
    fn no_listener() {
        assert_eq!(
            errors(&[("ginx.toml", UP), ("conf.d/a.toml", "")]),
            ["ginx.toml: no listener defined: add a [listener.NAME] table with bind = \"IP:PORT\""]
        );
        // A listener with errors still counts as defined.
        assert_eq!(
            errors(&[
                ("ginx.toml", "[listener.a]\nbind = \"x\"\nupstream = \"app\"\n"),
                ("b.toml", UP)
            ]),
            [format!("ginx.toml:2:8: invalid bind address `x`: {BIND_HINT}")]
        );
    }

    #[test]
    fn errors_across_files_all_reported() {
        let main = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n";
        let a = "[upstream.x]\nservers = [\"127.0.0.1:1\"\n";
        let b = "[upstream.app]\nservers = [\"127.0.0.1:1\"]\nconnect_timeout = \"5x\"\n";
        assert_eq!(
            errors(&[("ginx.toml", main), ("conf.d/a.toml", a), ("conf.d/b.toml", b)]),
            [
                "conf.d/a.toml:3:1: invalid array: expected `]`",
                "conf.d/b.toml:3:19: invalid duration `5x` for `connect_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
            ]
        );
    }
}
