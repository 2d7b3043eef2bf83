//! What changes between two configurations, one line per change.
//!
//! Used by reload (to log what a new generation changed) and by
//! `ginx --check --diff` (what applying the local files would change in a
//! running ginx). Only settings are compared, never file texts: a comment
//! edit is no change.
//!
//! ```text
//! +listener api
//! ~listener web: bind 127.0.0.1:80 -> 127.0.0.1:81
//! +route web host=api.example.com path=/api/ -> upstream app
//! ~upstream app: balance round_robin -> least_conn
//! +server app/127.0.0.1:9003
//! ~server app/127.0.0.1:9001: weight 1 -> 3
//! ~global: log_level info -> debug
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use super::access::{AccessRules, ClientAddress, NetList};
use super::names;
use super::{
    AccessLog, Balance, CheckKind, Config, HealthCheck, HostPattern, Listener, ListenerTls, PemFile, RetryOn,
    Route, RouteAction, ServerSpec, Upstream, UpstreamTls,
};

/// The changes from one configuration to another, in a stable order:
/// listeners and their routes, upstreams and their servers, global, admin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    lines: Vec<String>,
}

impl Diff {
    /// What going from `old` to `new` changes.
    pub(crate) fn between(old: &Config, new: &Config) -> Diff {
        let mut diff = Diff::default();
        diff.listeners(&old.listeners, &new.listeners);
        diff.upstreams(&old.upstreams, &new.upstreams);
        diff.global(old, new);
        match (&old.admin, &new.admin) {
            (None, Some(a)) => diff.lines.push(format!("+admin {}", a.bind)),
            (Some(a), None) => diff.lines.push(format!("-admin {}", a.bind)),
            (Some(a), Some(b)) => {
                if a.bind != b.bind {
                    diff.lines.push(format!("~admin: bind {} -> {}", a.bind, b.bind));
                }
                diff.access("~admin", &a.access, &b.access);
            }
            _ => {}
        }
        diff
    }

    /// No setting changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The changes, one per entry, as displayed.
    pub(crate) fn lines(&self) -> &[String] {
        &self.lines
    }

    fn listeners(&mut self, old: &BTreeMap<String, Listener>, new: &BTreeMap<String, Listener>) {
        for (name, l) in new {
            let Some(before) = old.get(name) else {
                self.lines.push(format!("+listener {name}"));
                for route in &l.routes {
                    self.lines.push(format!("+route {name} {}", route_text(route)));
                }
                continue;
            };
            let prefix = format!("~listener {name}");
            self.setting(&prefix, "bind", &before.bind, &l.bind, |a| a.to_string());
            self.setting(&prefix, "upstream", &before.upstream, &l.upstream, |u| {
                u.clone().unwrap_or_else(|| "(none)".to_owned())
            });
            self.listener_tls(&prefix, &before.tls, &l.tls);
            self.connection_limits(&prefix, &before.connection_limits, &l.connection_limits);
            self.request_limits(&prefix, &before.request_limits, &l.request_limits);
            self.client_address(&prefix, &before.client_address, &l.client_address);
            self.access(&prefix, &before.access, &l.access);
            self.routes(name, &before.routes, &l.routes);
        }
        for name in old.keys().filter(|n| !new.contains_key(*n)) {
            self.lines.push(format!("-listener {name}"));
        }
    }

    /// Routes removed and added; when only their order changed, say so
    /// (order decides ties).
    fn routes(&mut self, listener: &str, old: &[Route], new: &[Route]) {
        let removed = missing(old, new);
        let added = missing(new, old);
        for route in &removed {
            self.lines
                .push(format!("-route {listener} {}", route_text(route)));
        }
        for route in &added {
            self.lines
                .push(format!("+route {listener} {}", route_text(route)));
        }
        if removed.is_empty() && added.is_empty() && old != new {
            self.lines
                .push(format!("~listener {listener}: route order changed"));
        }
    }

    fn client_address(&mut self, prefix: &str, old: &ClientAddress, new: &ClientAddress) {
        let nets = |n: &Vec<_>| NetList(n).to_string();
        self.setting(
            prefix,
            "trusted_proxies",
            &old.trusted_proxies,
            &new.trusted_proxies,
            nets,
        );
        self.setting(
            prefix,
            "client_ip_header",
            &old.header,
            &new.header,
            String::clone,
        );
        self.setting(
            prefix,
            "proxy_protocol",
            &old.proxy_protocol,
            &new.proxy_protocol,
            bool::to_string,
        );
    }

    fn access(&mut self, prefix: &str, old: &AccessRules, new: &AccessRules) {
        let nets = |n: &Vec<_>| NetList(n).to_string();
        self.setting(prefix, "allow", &old.allow, &new.allow, nets);
        self.setting(prefix, "deny", &old.deny, &new.deny, nets);
    }

    fn listener_tls(&mut self, prefix: &str, old: &Option<ListenerTls>, new: &Option<ListenerTls>) {
        match (old, new) {
            (None, Some(_)) => self.lines.push(format!("{prefix}: tls off -> on")),
            (Some(_), None) => self.lines.push(format!("{prefix}: tls on -> off")),
            (Some(a), Some(b)) => {
                let certs = |t: &ListenerTls| {
                    t.certificates
                        .iter()
                        .map(|c| format!("{}+{}", c.cert.path.display(), c.key.path.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                self.setting(prefix, "tls certificates", a, b, certs);
                let same_paths = certs(a) == certs(b);
                if same_paths && a.certificates != b.certificates {
                    self.lines
                        .push(format!("{prefix}: tls certificate files changed"));
                }
                self.setting(prefix, "client_ca", &a.client_ca, &b.client_ca, pem_path);
            }
            (None, None) => {}
        }
    }

    fn upstreams(&mut self, old: &BTreeMap<String, Upstream>, new: &BTreeMap<String, Upstream>) {
        for (name, u) in new {
            let Some(before) = old.get(name) else {
                self.lines.push(format!("+upstream {name}"));
                continue;
            };
            let p = format!("~upstream {name}");
            self.upstream_requests(&p, before, u);
            self.upstream_failures(&p, before, u);
            self.upstream_tls(&p, &before.tls, &u.tls);
            self.setting(
                &p,
                "tunnel_timeout",
                &before.tunnel_timeout,
                &u.tunnel_timeout,
                duration,
            );
            self.setting(&p, "keepalive", &before.keepalive, &u.keepalive, u32::to_string);
            self.servers(name, &before.servers, &u.servers);
        }
        for name in old.keys().filter(|n| !new.contains_key(*n)) {
            self.lines.push(format!("-upstream {name}"));
        }
    }

    /// How requests reach a server: the policy, the protocol, the timeouts.
    fn upstream_requests(&mut self, p: &str, before: &Upstream, u: &Upstream) {
        self.setting(p, "balance", &before.balance, &u.balance, balance_text);
        self.setting(p, "protocol", &before.protocol, &u.protocol, |p| {
            p.name().to_owned()
        });
        self.setting(
            p,
            "connect_timeout",
            &before.connect_timeout,
            &u.connect_timeout,
            duration,
        );
        self.setting(p, "read_timeout", &before.read_timeout, &u.read_timeout, duration);
    }

    /// What failures do: hold servers out, retry, check.
    fn upstream_failures(&mut self, p: &str, before: &Upstream, u: &Upstream) {
        self.setting(
            p,
            "max_fails",
            &before.max_fails,
            &u.max_fails,
            ToString::to_string,
        );
        self.setting(p, "fail_timeout", &before.fail_timeout, &u.fail_timeout, duration);
        self.setting(p, "eject_on_5xx", &before.eject_on_5xx, &u.eject_on_5xx, |e| {
            e.map_or_else(|| "off".to_owned(), |n| n.to_string())
        });
        self.setting(p, "on_all_down", &before.on_all_down, &u.on_all_down, |o| {
            o.name().to_owned()
        });
        self.setting(p, "retries", &before.retries, &u.retries, ToString::to_string);
        self.setting(p, "retry_on", &before.retry_on, &u.retry_on, retry_on_text);
        self.setting(
            p,
            "retry_non_idempotent",
            &before.retry_non_idempotent,
            &u.retry_non_idempotent,
            ToString::to_string,
        );
        self.setting(
            p,
            "health_check",
            &before.health_check,
            &u.health_check,
            health_text,
        );
    }

    fn upstream_tls(&mut self, prefix: &str, old: &UpstreamTls, new: &UpstreamTls) {
        self.setting(prefix, "tls_ca", &old.ca, &new.ca, pem_path);
        if old.ca.as_ref().map(|c| &c.path) == new.ca.as_ref().map(|c| &c.path) && old.ca != new.ca {
            self.lines.push(format!("{prefix}: tls_ca file changed"));
        }
        self.setting(
            prefix,
            "tls_server_name",
            &old.server_name,
            &new.server_name,
            |n| n.clone().unwrap_or_else(|| "(server host)".to_owned()),
        );
        self.setting(
            prefix,
            "tls_verify",
            &old.verify,
            &new.verify,
            ToString::to_string,
        );
    }

    /// Servers by name, so a changed weight is one change, not two.
    fn servers(&mut self, upstream: &str, old: &[ServerSpec], new: &[ServerSpec]) {
        let find = |list: &'_ [ServerSpec], name: &str| list.iter().position(|s| s.name == name);
        for s in new {
            let Some(i) = find(old, &s.name) else {
                self.lines.push(format!("+server {upstream}/{}", server_text(s)));
                continue;
            };
            let before = &old[i];
            let p = format!("~server {upstream}/{}", server_text(before));
            self.setting(&p, "weight", &before.weight, &s.weight, ToString::to_string);
            self.setting(&p, "backup", &before.backup, &s.backup, ToString::to_string);
            self.setting(&p, "tls", &before.tls, &s.tls, ToString::to_string);
            if before.endpoint != s.endpoint {
                self.lines.push(format!("{p}: address changed"));
            }
        }
        for s in old.iter().filter(|s| find(new, &s.name).is_none()) {
            self.lines.push(format!("-server {upstream}/{}", server_text(s)));
        }
    }

    fn global(&mut self, old: &Config, new: &Config) {
        let (a, b) = (&old.global, &new.global);
        let p = "~global";
        self.setting(p, "log_level", &a.log_level, &b.log_level, Clone::clone);
        self.setting(p, "log_format", &a.log_format, &b.log_format, |f| {
            f.name().to_owned()
        });
        self.setting(p, "access_log", &a.access_log, &b.access_log, access_log_text);
        self.setting(
            p,
            "shutdown_delay",
            &a.shutdown_delay,
            &b.shutdown_delay,
            duration,
        );
        self.setting(p, "watch", &a.watch, &b.watch, ToString::to_string);
        self.setting(p, "pid_file", &a.pid_file, &b.pid_file, |f| {
            f.as_ref()
                .map_or_else(|| "(none)".to_owned(), |f| f.display().to_string())
        });
        self.setting(p, "resolver", &a.resolver, &b.resolver, |r| {
            r.map_or_else(|| "(system)".to_owned(), |r| r.to_string())
        });
        self.setting(p, "resolve_min", &a.resolve_min, &b.resolve_min, duration);
        self.setting(p, "resolve_max", &a.resolve_max, &b.resolve_max, duration);
        self.setting(p, "send_timeout", &a.send_timeout, &b.send_timeout, duration);
        self.setting(
            p,
            "shutdown_timeout",
            &a.shutdown_timeout,
            &b.shutdown_timeout,
            duration,
        );
        self.setting(
            p,
            "header_read_timeout",
            &a.header_read_timeout,
            &b.header_read_timeout,
            duration,
        );
        self.client_body(p, a, b);
        self.setting(
            p,
            "max_connections",
            &a.max_connections,
            &b.max_connections,
            |n| n.map_or_else(|| "(from the open-files limit)".to_owned(), |n| n.to_string()),
        );
    }

    /// A listener's `max_connections`, `max_connections_per_ip` and
    /// `max_requests_per_connection`.
    fn connection_limits(&mut self, p: &str, a: &super::ConnectionLimits, b: &super::ConnectionLimits) {
        self.setting(
            p,
            "max_connections",
            &a.max_connections,
            &b.max_connections,
            limit_text,
        );
        self.setting(
            p,
            "max_connections_per_ip",
            &a.max_connections_per_ip,
            &b.max_connections_per_ip,
            limit_text,
        );
        self.setting(
            p,
            "max_requests_per_connection",
            &a.max_requests_per_connection,
            &b.max_requests_per_connection,
            ToString::to_string,
        );
    }

    /// `max_request_body`, `max_request_headers`, `max_request_line`,
    /// `max_request_head`, `max_h2_streams`, `max_h2_control_frames`.
    fn request_limits(&mut self, p: &str, a: &super::RequestLimits, b: &super::RequestLimits) {
        let bytes = |n: &Option<u64>| n.map_or_else(|| "(none)".to_owned(), |n| format!("{n} bytes"));
        self.setting(p, "max_request_body", &a.max_body, &b.max_body, bytes);
        let count = |n: &usize| n.to_string();
        self.setting(p, "max_request_headers", &a.max_headers, &b.max_headers, count);
        let size = |n: &usize| format!("{n} bytes");
        self.setting(p, "max_request_line", &a.max_line, &b.max_line, size);
        self.setting(p, "max_request_head", &a.max_head, &b.max_head, size);
        let count = |n: &u32| n.to_string();
        self.setting(p, "max_h2_streams", &a.h2_streams, &b.h2_streams, count);
        self.setting(
            p,
            "max_h2_control_frames",
            &a.h2_control_frames,
            &b.h2_control_frames,
            count,
        );
    }

    /// `body_read_timeout` and `min_upload_rate`.
    fn client_body(&mut self, p: &str, a: &super::Global, b: &super::Global) {
        self.setting(
            p,
            "body_read_timeout",
            &a.body_read_timeout,
            &b.body_read_timeout,
            duration,
        );
        self.setting(
            p,
            "min_upload_rate",
            &a.min_upload_rate,
            &b.min_upload_rate,
            |r| r.map_or_else(|| "(none)".to_owned(), |r| format!("{r}B/s")),
        );
    }

    /// `PREFIX: KEY OLD -> NEW` when the values differ.
    fn setting<T: PartialEq>(
        &mut self,
        prefix: &str,
        key: &str,
        old: &T,
        new: &T,
        show: impl Fn(&T) -> String,
    ) {
        if old != new {
            let (a, b) = (show(old), show(new));
            // Different values that print alike (a certificate's content):
            // say that it changed rather than `x -> x`.
            if a == b {
                self.lines.push(format!("{prefix}: {key} changed"));
            } else {
                self.lines.push(format!("{prefix}: {key} {a} -> {b}"));
            }
        }
    }
}

impl fmt::Display for Diff {
    /// One change per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

/// The routes of `from` that `other` does not have, in `from`'s order.
/// Compared within the same host and path only, so that a diff of two
/// 100,000-route listeners takes linear time, not quadratic.
fn missing<'a>(from: &'a [Route], other: &[Route]) -> Vec<&'a Route> {
    let mut by_match: HashMap<(&Option<HostPattern>, &Option<String>), Vec<&Route>> = HashMap::new();
    for route in other {
        by_match
            .entry((&route.host, &route.path))
            .or_default()
            .push(route);
    }
    from.iter()
        .filter(|route| {
            by_match
                .get(&(&route.host, &route.path))
                .is_none_or(|same| !same.contains(route))
        })
        .collect()
}

/// `host=api.example.com path=/api/ -> upstream app`.
fn route_text(route: &Route) -> String {
    let mut parts = Vec::new();
    match &route.host {
        Some(HostPattern::Exact(h)) => parts.push(format!("host={h}")),
        Some(HostPattern::Wildcard(suffix)) => parts.push(format!("host=*{suffix}")),
        None => {}
    }
    if let Some(path) = &route.path {
        parts.push(format!("path={path}"));
    }
    if parts.is_empty() {
        parts.push("(any)".to_owned());
    }
    if !route.access.is_empty() {
        parts.push(route.access.to_string());
    }
    let action = match &route.action {
        RouteAction::Proxy {
            upstream,
            strip_prefix: true,
        } => format!("upstream {upstream} (strip_prefix)"),
        RouteAction::Proxy { upstream, .. } => format!("upstream {upstream}"),
        RouteAction::Respond {
            status,
            location: Some(l),
            ..
        } => format!("respond {status} location={l}"),
        RouteAction::Respond { status, .. } => format!("respond {status}"),
    };
    format!("{} -> {action}", parts.join(" "))
}

fn server_text(s: &ServerSpec) -> String {
    match s.tls {
        true => format!("https://{}", s.name),
        false => s.name.clone(),
    }
}

fn duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

/// A listener's connection limit; `(none)` when not set.
fn limit_text(n: &Option<u32>) -> String {
    n.map_or_else(|| "(none)".to_owned(), |n| n.to_string())
}

fn pem_path(file: &Option<PemFile>) -> String {
    file.as_ref()
        .map_or_else(|| "(none)".to_owned(), |f| f.path.display().to_string())
}

/// `round_robin`, ..., `hash(header:x-user)`.
fn balance_text(b: &Balance) -> String {
    match b {
        Balance::Hash(key) => format!("{}({key})", b.name()),
        other => other.name().to_owned(),
    }
}

fn retry_on_text(r: &RetryOn) -> String {
    let on: Vec<&str> = r
        .flags()
        .iter()
        .filter(|(_, on)| *on)
        .map(|(word, _)| *word)
        .collect();
    format!("[{}]", on.join(", "))
}

fn health_text(h: &Option<HealthCheck>) -> String {
    let Some(h) = h else {
        return "off".to_owned();
    };
    let kind = match &h.kind {
        CheckKind::Http { path } => format!("{} {path}", h.kind.name()),
        CheckKind::Tcp => h.kind.name().to_owned(),
    };
    format!(
        "{kind} every {} (timeout {}, expect {}-{}, rise {}, fall {}, initially {})",
        duration(&h.interval),
        duration(&h.timeout),
        h.expect_status.0,
        h.expect_status.1,
        h.rise,
        h.fall,
        names::initial_state(h.initial_up)
    )
}

fn access_log_text(a: &Option<AccessLog>) -> String {
    let Some(a) = a else {
        return "off".to_owned();
    };
    let format = a.format.name();
    let path = a
        .path
        .as_ref()
        .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    format!("{path} ({format})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fs::mem::MemFs;
    use crate::config::load::load_with;
    use std::path::Path;

    fn config(text: &str) -> Config {
        load_with(&MemFs::new(&[("ginx.toml", text)]), Path::new("ginx.toml")).unwrap()
    }

    fn diff(old: &str, new: &str) -> Vec<String> {
        Diff::between(&config(old), &config(new)).lines().to_vec()
    }

    const BASE: &str = "[listener.web]\nbind = \"127.0.0.1:80\"\nupstream = \"app\"\n\
                        [upstream.app]\nservers = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n";

    #[test]
    fn same_settings_no_changes() {
        let d = Diff::between(&config(BASE), &config(&format!("# a comment\n{BASE}")));
        assert!(d.is_empty());
        assert_eq!(d.to_string(), "");
    }

    #[test]
    fn client_address_and_access() {
        let new = "[listener.web]\nbind = \"127.0.0.1:80\"\nupstream = \"app\"\n\
                   trusted_proxies = [\"10.0.0.0/8\"]\nclient_ip_header = \"X-Real-IP\"\nproxy_protocol = true\n\
                   deny = [\"10.1.2.3\"]\n\
                   [[listener.web.route]]\npath = \"/ops/\"\nupstream = \"app\"\nallow = [\"192.168.0.0/16\"]\n\
                   [upstream.app]\nservers = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n\
                   [admin]\nallow = [\"127.0.0.1\"]\n";
        let old = format!("{BASE}[admin]\n");
        assert_eq!(
            diff(&old, new),
            [
                "~listener web: trusted_proxies [] -> [10.0.0.0/8]",
                "~listener web: client_ip_header x-forwarded-for -> x-real-ip",
                "~listener web: proxy_protocol false -> true",
                "~listener web: deny [] -> [10.1.2.3/32]",
                "+route web path=/ops/ allow=[192.168.0.0/16] -> upstream app",
                "~admin: allow [] -> [127.0.0.1/32]",
            ]
        );
    }

    #[test]
    fn listeners_and_routes() {
        let new = "[listener.web]\nbind = \"127.0.0.1:81\"\nupstream = \"app\"\n\
                   [[listener.web.route]]\nhost = \"api.example.com\"\npath = \"/api/\"\nupstream = \"app\"\n\
                   [[listener.web.route]]\npath = \"/old\"\nrespond = { status = 301, location = \"https://{host}/\" }\n\
                   [listener.api]\nbind = \"127.0.0.1:82\"\n[[listener.api.route]]\nhost = \"*.example.com\"\nupstream = \"app\"\nstrip_prefix = false\n\
                   [upstream.app]\nservers = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n";
        assert_eq!(
            diff(BASE, new),
            [
                "+listener api",
                "+route api host=*.example.com -> upstream app",
                "~listener web: bind 127.0.0.1:80 -> 127.0.0.1:81",
                "+route web host=api.example.com path=/api/ -> upstream app",
                "+route web path=/old -> respond 301 location=https://{host}/",
            ]
        );
        assert_eq!(
            diff(new, BASE),
            [
                "~listener web: bind 127.0.0.1:81 -> 127.0.0.1:80",
                "-route web host=api.example.com path=/api/ -> upstream app",
                "-route web path=/old -> respond 301 location=https://{host}/",
                "-listener api",
            ]
        );
    }

    #[test]
    fn route_order() {
        let a = "[listener.web]\nbind = \"127.0.0.1:80\"\n\
                 [[listener.web.route]]\npath = \"/a\"\nrespond = { status = 200 }\n\
                 [[listener.web.route]]\npath = \"/b\"\nrespond = { status = 200 }\n";
        let b = "[listener.web]\nbind = \"127.0.0.1:80\"\n\
                 [[listener.web.route]]\npath = \"/b\"\nrespond = { status = 200 }\n\
                 [[listener.web.route]]\npath = \"/a\"\nrespond = { status = 200 }\n";
        assert_eq!(diff(a, b), ["~listener web: route order changed"]);
    }

    #[test]
    fn upstreams_and_servers() {
        let new = "[listener.web]\nbind = \"127.0.0.1:80\"\nupstream = \"app\"\n\
                   [upstream.app]\nbalance = \"least_conn\"\nretry_on = [\"5xx\"]\n\
                   servers = [{ addr = \"127.0.0.1:9001\", weight = 3 }, \"127.0.0.1:9003\"]\n\
                   [upstream.spare]\nservers = [\"127.0.0.1:9009\"]\n";
        assert_eq!(
            diff(BASE, new),
            [
                "~upstream app: balance round_robin -> least_conn",
                "~upstream app: retry_on [connect, reset, timeout] -> [5xx]",
                "~server app/127.0.0.1:9001: weight 1 -> 3",
                "+server app/127.0.0.1:9003",
                "-server app/127.0.0.1:9002",
                "+upstream spare",
            ]
        );
        assert_eq!(
            diff(new, BASE),
            [
                "~upstream app: balance least_conn -> round_robin",
                "~upstream app: retry_on [5xx] -> [connect, reset, timeout]",
                "~server app/127.0.0.1:9001: weight 3 -> 1",
                "+server app/127.0.0.1:9002",
                "-server app/127.0.0.1:9003",
                "-upstream spare",
            ]
        );
    }

    #[test]
    fn global_and_admin() {
        let new = format!(
            "[global]\nlog_level = \"debug\"\naccess_log = true\nshutdown_timeout = \"5s\"\n[admin]\n{BASE}"
        );
        let d = Diff::between(&config(BASE), &config(&new));
        assert_eq!(
            d.to_string(),
            "~global: log_level info -> debug\n\
             ~global: access_log off -> stdout (text)\n\
             ~global: shutdown_timeout 30s -> 5s\n\
             +admin 127.0.0.1:9901"
        );
        let moved = new.replace("[admin]\n", "[admin]\nbind = \"127.0.0.1:9902\"\n");
        assert_eq!(
            diff(&new, &moved),
            ["~admin: bind 127.0.0.1:9901 -> 127.0.0.1:9902"]
        );
        assert_eq!(diff(&new, BASE).last().unwrap(), "-admin 127.0.0.1:9901");
    }

    #[test]
    fn connection_limits() {
        let new = format!("[global]\nmax_connections = 100\n{BASE}").replace(
            "upstream = \"app\"\n",
            "upstream = \"app\"\nmax_connections_per_ip = 5\nmax_requests_per_connection = 0\n",
        );
        assert_eq!(
            diff(BASE, &new),
            [
                "~listener web: max_connections_per_ip (none) -> 5",
                "~listener web: max_requests_per_connection 1000 -> 0",
                "~global: max_connections (from the open-files limit) -> 100",
            ]
        );
    }

    #[test]
    fn request_limits() {
        let new = BASE.replace(
            "upstream = \"app\"\n",
            "upstream = \"app\"\nmax_request_body = \"1KiB\"\nmax_h2_streams = 8\n",
        );
        assert_eq!(
            diff(BASE, &new),
            [
                "~listener web: max_request_body (none) -> 1024 bytes",
                "~listener web: max_h2_streams 256 -> 8",
            ]
        );
    }
}
