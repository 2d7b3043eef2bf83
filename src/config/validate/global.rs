//! `[global]` (logging, the access log, shutdown, DNS re-resolution, the
//! client body's timeout and minimum rate, the process's connection limit) and
//! `[admin]`: the settings of the process rather than of its traffic.
//!
//! This module owns that each of them is set at most once over all files,
//! and the checks between them once every file is read: the resolve range
//! is not empty, and the admin endpoint does not share a listener's
//! address. Applying them (log level, access log file) is the reload's job.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::super::names::{self, LOG_LEVELS};
use super::super::raw;
use super::super::{AccessLog, AccessLogFormat, Admin, Error, Location};
use super::listener::MAX_CONNECTIONS_HINT;
use super::parse::{parse_bind, parse_rate, parse_resolver, BIND_HINT};
use super::{hinted, At, Validator};

/// Where `[admin]` listens when the table has no `bind`: loopback only, as
/// the endpoint shows the configuration.
const ADMIN_DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);

/// What `[global]` and `[admin]` noted, for the checks that come later: a
/// key set twice, an empty resolve range, an admin address a listener has.
#[derive(Default)]
pub(super) struct GlobalSeen {
    /// `[global]` key -> where it was first set.
    set: HashMap<&'static str, Location>,
    /// Where the first `[admin]` is, and where its `bind` is (if written).
    admin_at: Option<(Location, Option<(Location, u32)>)>,
    /// Where valid `resolve_min` / `resolve_max` values were set, and their
    /// text, for the check that the range is not empty.
    resolve_min_at: Option<(Location, String)>,
    resolve_max_at: Option<(Location, String)>,
    /// A `resolve_min` or `resolve_max` was invalid: skip the range check.
    resolve_invalid: bool,
}

impl Validator<'_> {
    /// `value` if it is written and no other file or table already set
    /// `[global]` key `key` (that is an error, and `None`).
    fn once<'v, T>(
        &mut self,
        at: At<'_>,
        key: &'static str,
        value: &'v Option<Spanned<T>>,
    ) -> Option<&'v Spanned<T>> {
        let value = value.as_ref()?;
        self.global_once(at, key, value.span()).then_some(value)
    }

    /// Record that `[global]` key `key` is set at `span`; false (and an
    /// error) if another file or table already set it.
    fn global_once(&mut self, at: At<'_>, key: &'static str, span: Range<usize>) -> bool {
        let here = at.loc(span.start);
        if let Some(first) = self.global.set.get(key) {
            let width = u32::try_from(span.len()).unwrap_or(0);
            self.errors.push(Error::located(
                here,
                width,
                format!("`{key}` in [global] is already set at {first}: keep only one"),
            ));
            return false;
        }
        self.global.set.insert(key, here);
        true
    }

    /// `[global]`, in the order its keys are listed.
    pub(super) fn global(&mut self, at: At<'_>, g: &raw::Global) {
        self.logging(at, g);
        self.lifecycle(at, g);
        self.resolver(at, g);
        self.client_body(at, g);
        self.global_limits(at, g);
    }

    /// `max_connections`: client connections open at once, all listeners.
    fn global_limits(&mut self, at: At<'_>, g: &raw::Global) {
        if let Some(n) = self.once(at, "max_connections", &g.max_connections) {
            if let Some(n) = self.number(at, n, "max_connections", (1, u32::MAX), MAX_CONNECTIONS_HINT) {
                self.config.global.max_connections = Some(n);
            }
        }
    }

    /// `body_read_timeout` and `min_upload_rate`: how slow a client's
    /// request body may be.
    fn client_body(&mut self, at: At<'_>, g: &raw::Global) {
        if let Some(timeout) = self.once(at, "body_read_timeout", &g.body_read_timeout) {
            if let Some(d) = self.positive_duration(at, timeout, "body_read_timeout") {
                self.config.global.body_read_timeout = d;
            }
        }
        if let Some(rate) = self.once(at, "min_upload_rate", &g.min_upload_rate) {
            match parse_rate(rate.get_ref()) {
                Ok(rate) => self.config.global.min_upload_rate = Some(rate),
                Err(message) => self.errors.push(at.error(rate.span(), message)),
            }
        }
    }

    /// `log_level`, `log_format` and `access_log`.
    fn logging(&mut self, at: At<'_>, g: &raw::Global) {
        if let Some(level) = self.once(at, "log_level", &g.log_level) {
            let lower = level.get_ref().to_ascii_lowercase();
            if LOG_LEVELS.contains(&lower.as_str()) {
                self.config.global.log_level = lower;
            } else {
                self.errors.push(at.error(
                    level.span(),
                    hinted(
                        format!("invalid log_level `{}`", level.get_ref()),
                        &lower,
                        LOG_LEVELS,
                        &format!("use one of {}", LOG_LEVELS.join(", ")),
                    ),
                ));
            }
        }
        if let Some(format) = self.once(at, "log_format", &g.log_format) {
            if let Some(f) = self.choice(at, format, "log_format", &names::LOG_FORMAT) {
                self.config.global.log_format = f;
            }
        }
        if let Some(access_log) = &g.access_log {
            // Not `Spanned` (it may be a table): located at what is written.
            let span = match access_log {
                raw::AccessLog::Table { path: Some(p), .. } => p.span(),
                raw::AccessLog::Table { format: Some(f), .. } => f.span(),
                _ => at.key_span("global", "access_log"),
            };
            if self.global_once(at, "access_log", span) {
                self.config.global.access_log = self.access_log(at, access_log);
            }
        }
    }

    /// `shutdown_delay`, `watch`, `send_timeout`, `shutdown_timeout`,
    /// `header_read_timeout` and `pid_file`: how the process runs and stops.
    fn lifecycle(&mut self, at: At<'_>, g: &raw::Global) {
        if let Some(delay) = self.once(at, "shutdown_delay", &g.shutdown_delay) {
            if let Some(d) = self.duration(at, delay, "shutdown_delay") {
                self.config.global.shutdown_delay = d;
            }
        }
        if let Some(watch) = self.once(at, "watch", &g.watch) {
            self.config.global.watch = *watch.get_ref();
        }
        if let Some(timeout) = self.once(at, "send_timeout", &g.send_timeout) {
            if let Some(d) = self.positive_duration(at, timeout, "send_timeout") {
                self.config.global.send_timeout = d;
            }
        }
        if let Some(timeout) = self.once(at, "shutdown_timeout", &g.shutdown_timeout) {
            if let Some(d) = self.duration(at, timeout, "shutdown_timeout") {
                self.config.global.shutdown_timeout = d;
            }
        }
        if let Some(timeout) = self.once(at, "header_read_timeout", &g.header_read_timeout) {
            if let Some(d) = self.positive_duration(at, timeout, "header_read_timeout") {
                self.config.global.header_read_timeout = d;
            }
        }
        if let Some(path) = self.once(at, "pid_file", &g.pid_file) {
            if path.get_ref().is_empty() {
                self.errors.push(at.error(
                    path.span(),
                    "empty pid_file: remove it, or name a file like \"/run/ginx/ginx.pid\"".to_owned(),
                ));
            } else {
                self.config.global.pid_file = Some(at.relative(path.get_ref()));
            }
        }
    }

    /// `resolver`, `resolve_min` and `resolve_max`: DNS for host names in
    /// `servers`.
    fn resolver(&mut self, at: At<'_>, g: &raw::Global) {
        if let Some(resolver) = self.once(at, "resolver", &g.resolver) {
            match parse_resolver(resolver.get_ref()) {
                Ok(addr) => self.config.global.resolver = Some(addr),
                Err(message) => self.errors.push(at.error(resolver.span(), message)),
            }
        }
        if let Some((d, seen)) = self.resolve_bound(at, "resolve_min", &g.resolve_min) {
            self.config.global.resolve_min = d;
            self.global.resolve_min_at = Some(seen);
        }
        if let Some((d, seen)) = self.resolve_bound(at, "resolve_max", &g.resolve_max) {
            self.config.global.resolve_max = d;
            self.global.resolve_max_at = Some(seen);
        }
    }

    /// `resolve_min` or `resolve_max`: the duration, and where and how it is
    /// written for [`Validator::check_resolve_range`]'s message. An invalid
    /// one turns that check off: it has its own error.
    fn resolve_bound(
        &mut self,
        at: At<'_>,
        key: &'static str,
        value: &Option<Spanned<raw::DurationText>>,
    ) -> Option<(Duration, (Location, String))> {
        let value = self.once(at, key, value)?;
        let Some(d) = self.positive_duration(at, value, key) else {
            self.global.resolve_invalid = true;
            return None;
        };
        Some((d, (at.loc(value.span().start), value.get_ref().0.clone())))
    }

    /// `access_log = true | false | { path, format }`.
    fn access_log(&mut self, at: At<'_>, value: &raw::AccessLog) -> Option<AccessLog> {
        let (path, format) = match value {
            raw::AccessLog::Switch(false) => return None,
            raw::AccessLog::Switch(true) => {
                return Some(AccessLog {
                    path: None,
                    format: AccessLogFormat::Text,
                })
            }
            raw::AccessLog::Table { path, format } => (path, format),
        };
        let format = match format {
            None => AccessLogFormat::Combined,
            Some(f) => self
                .choice(at, f, "access_log format", &names::ACCESS_LOG_FORMAT)
                .unwrap_or(AccessLogFormat::Combined),
        };
        let path = match path {
            None => None,
            Some(p) if p.get_ref().is_empty() => {
                self.errors.push(at.error(
                    p.span(),
                    "empty access_log path: remove `path` to log to stdout, or name a file like \"access.log\""
                        .to_owned(),
                ));
                None
            }
            Some(p) => {
                let file = at.relative(p.get_ref());
                let dir = match file.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                if !self.fs.exists(&dir) {
                    self.errors.push(at.error(
                        p.span(),
                        format!(
                            "the directory {} of access_log path `{}` does not exist: create it or log somewhere else (the path is relative to this file)",
                            dir.display(),
                            p.get_ref()
                        ),
                    ));
                }
                Some(file)
            }
        };
        Some(AccessLog { path, format })
    }

    /// `[admin]`: at most one over all files.
    pub(super) fn admin(&mut self, at: At<'_>, a: &raw::Admin) {
        let table = at.key_span("", "admin");
        let here = at.loc(table.start);
        if let Some((first, _)) = &self.global.admin_at {
            self.errors.push(Error::located(
                here,
                u32::try_from(table.len()).unwrap_or(0),
                format!("[admin] is already set at {first}: keep only one"),
            ));
            return;
        }
        let mut bind_at = None;
        let bind = match &a.bind {
            None => Some(ADMIN_DEFAULT_BIND),
            Some(b) => {
                bind_at = Some((at.loc(b.span().start), u32::try_from(b.span().len()).unwrap_or(0)));
                match parse_bind(b.get_ref()) {
                    Some(addr) => {
                        if !addr.ip().is_loopback() {
                            self.config.warnings.push(at.error(
                                b.span(),
                                format!(
                                    "the admin endpoint is bound to {addr}, which is not a loopback address: anyone who can reach it can read the configuration; bind it to 127.0.0.1 unless a firewall protects it"
                                ),
                            ));
                        }
                        Some(addr)
                    }
                    None => {
                        self.errors.push(at.error(
                            b.span(),
                            format!("invalid admin bind address `{}`: {BIND_HINT}", b.get_ref()),
                        ));
                        None
                    }
                }
            }
        };
        self.global.admin_at = Some((here, bind_at));
        let access = self.access_rules(at, &a.allow, &a.deny);
        // Invalid: reported; `admin` stays `None` but the load fails anyway.
        self.config.admin = bind.zip(access).map(|(bind, access)| Admin { bind, access });
    }

    /// The admin endpoint needs an address of its own.
    pub(super) fn check_admin_bind(&mut self) {
        let (Some(admin), Some((table_at, bind_at))) = (&self.config.admin, &self.global.admin_at) else {
            return;
        };
        if admin.bind.port() == 0 {
            return;
        }
        if let Some((listener, there)) = self.listeners.binds.get(&admin.bind) {
            let (location, width) = bind_at.clone().unwrap_or((table_at.clone(), 0));
            self.errors.push(Error::located(
                location,
                width,
                format!(
                    "admin bind address {} is already used by listener `{listener}` at {there}: give the admin endpoint its own address",
                    admin.bind
                ),
            ));
        }
    }

    /// `resolve_max` must not be shorter than `resolve_min`. The error is at
    /// `resolve_max` when it is set, else at `resolve_min`. With a file
    /// missing, a key set only there might fix it: then only checked when
    /// both are set.
    pub(super) fn check_resolve_range(&mut self, complete: bool) {
        let (min, max) = (self.config.global.resolve_min, self.config.global.resolve_max);
        if self.global.resolve_invalid || max >= min {
            return;
        }
        let error = match (&self.global.resolve_min_at, &self.global.resolve_max_at) {
            (Some((_, min_text)), Some((max_at, max_text))) => (
                max_at.clone(),
                format!(
                    "resolve_max `{max_text}` is shorter than resolve_min `{min_text}`: make resolve_max at least resolve_min"
                ),
            ),
            (None, Some((max_at, max_text))) if complete => (
                max_at.clone(),
                format!(
                    "resolve_max `{max_text}` is shorter than resolve_min (default `{}`): make resolve_max at least resolve_min",
                    humantime::format_duration(min)
                ),
            ),
            (Some((min_at, min_text)), None) if complete => (
                min_at.clone(),
                format!(
                    "resolve_min `{min_text}` is longer than resolve_max (default `{}`): shorten resolve_min or set a longer resolve_max",
                    humantime::format_duration(max)
                ),
            ),
            _ => return,
        };
        self.errors.push(Error::located(error.0, 0, error.1));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::parse::{parse_resolver, BIND_HINT, RESOLVER_HINT};
    use super::super::tests::*;
    use crate::config::{AccessLog, AccessLogFormat, Endpoint, LogFormat, OnAllDown, RetryOn, ServerSpec};

    #[test]
    fn durations_are_bounded() {
        // Accepted, this would panic every connection task on forming its
        // header-read deadline (`Instant + Duration` overflow).
        let main = format!(
            "[global]\nheader_read_timeout = \"10000000000000000000s\"\nshutdown_timeout = \"365d\"\n\
             [listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n{UP}"
        );
        assert_eq!(
            errors(&[("ginx.toml", &main)]),
            ["ginx.toml:2:23: duration `10000000000000000000s` for `header_read_timeout` is too long: at most 365 days (\"365d\")"]
        );
    }

    #[test]
    fn client_body_keys() {
        let g = ok(&format!("{WEB}{UP}")).global;
        assert_eq!(
            (g.body_read_timeout, g.min_upload_rate),
            (Duration::from_secs(60), None)
        );
        let main = format!("[global]\nbody_read_timeout = \"5s\"\nmin_upload_rate = \"2KiB/s\"\n{WEB}{UP}");
        let g = ok(&main).global;
        assert_eq!(
            (g.body_read_timeout, g.min_upload_rate),
            (Duration::from_secs(5), Some(2048))
        );
        let main = format!("[global]\nbody_read_timeout = \"0s\"\nmin_upload_rate = \"1KiB\"\n{WEB}{UP}");
        assert_eq!(
            errors(&[("ginx.toml", &main)]),
            [
                "ginx.toml:2:21: invalid duration `0s` for `body_read_timeout`: it must be greater than zero, like \"5s\"",
                "ginx.toml:3:19: invalid min_upload_rate `1KiB`: a rate ends with \"/s\"; use a whole number of bytes per second with a unit, like \"500B/s\", \"1KiB/s\" or \"1MB/s\" (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)",
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
        let (config, errs) = check(&[("ginx.toml", &main), ("conf.d/g.toml", other)]);
        assert_eq!(
            errs,
            [
                "ginx.toml:2:13: invalid log_level `loud`: use one of trace, debug, info, warn, error",
                "ginx.toml:3:20: invalid duration `soon` for `shutdown_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
                "conf.d/g.toml:1:20: `log_level` in [global] is already set at ginx.toml:2:13: keep only one",
            ]
        );
        // Keys not set elsewhere may come from any file.
        assert!(config.global.access_log.is_some());
    }

    #[test]
    fn new_keys_defaults() {
        let config = ok(&format!("{WEB}{UP}"));
        let g = &config.global;
        assert_eq!(g.resolver, None);
        assert_eq!(g.resolve_min, Duration::from_secs(1));
        assert_eq!(g.resolve_max, Duration::from_secs(300));
        let up = &config.upstreams["app"];
        assert_eq!(up.read_timeout, Duration::from_secs(60));
        assert_eq!(up.max_fails, 1);
        assert_eq!(up.fail_timeout, Duration::from_secs(10));
        assert_eq!(up.eject_on_5xx, None);
        assert_eq!(up.on_all_down, OnAllDown::Fail);
        assert_eq!(up.retries, 1);
        assert_eq!(up.retry_on, RetryOn::default());
        assert!(up.retry_on.connect && up.retry_on.reset && up.retry_on.timeout && !up.retry_on.status_5xx);
        assert!(!up.retry_non_idempotent);
        assert_eq!(up.health_check, None);
        assert_eq!(
            up.servers,
            [ServerSpec {
                name: "127.0.0.1:9001".into(),
                endpoint: Endpoint::Ip("127.0.0.1:9001".parse().unwrap()),
                weight: 1,
                backup: false,
                tls: false,
            }]
        );
    }

    #[test]
    fn global_resolver_keys() {
        let config = ok(&format!(
            "[global]\nresolver = \"127.0.0.53:53\"\nresolve_min = \"2s\"\nresolve_max = \"1m\"\n{WEB}{UP}"
        ));
        assert_eq!(config.global.resolver, Some("127.0.0.53:53".parse().unwrap()));
        assert_eq!(config.global.resolve_min, Duration::from_secs(2));
        assert_eq!(config.global.resolve_max, Duration::from_secs(60));
        let config = ok(&format!(
            "[global]\nresolver = \"[::1]:5353\"\nresolve_min = \"1m\"\nresolve_max = \"1m\"\n{WEB}{UP}"
        ));
        assert_eq!(config.global.resolver, Some("[::1]:5353".parse().unwrap()));
        assert_eq!(config.global.resolve_max, config.global.resolve_min);

        assert_eq!(parse_resolver("1.1.1.1:53"), Ok("1.1.1.1:53".parse().unwrap()));
        let cases = [
            (
                "1.1.1.1",
                "invalid resolver `1.1.1.1`: add the port, like \"1.1.1.1:53\"".to_owned(),
            ),
            (
                "::1",
                "invalid resolver `::1`: add the port, like \"[::1]:53\"".to_owned(),
            ),
            (
                "1.1.1.1:0",
                format!("invalid resolver `1.1.1.1:0`: port 0 is not a DNS server's port; {RESOLVER_HINT}"),
            ),
            (
                "dns.google:53",
                format!("invalid resolver `dns.google:53`: {RESOLVER_HINT}"),
            ),
            ("", format!("invalid resolver ``: {RESOLVER_HINT}")),
        ];
        for (text, message) in cases {
            assert_eq!(parse_resolver(text), Err(message), "{text}");
        }
    }

    #[test]
    fn global_resolver_problems() {
        let main = format!(
            "[global]\nresolver = \"localhost:53\"\nresolve_min = \"0s\"\nresolve_max = \"forever\"\n{WEB}{UP}"
        );
        let other = "global.resolver = \"127.0.0.1:53\"\n";
        assert_eq!(
            errors(&[("ginx.toml", &main), ("conf.d/g.toml", other)]),
            [
                "ginx.toml:2:12: invalid resolver `localhost:53`: use the IP:PORT of a DNS server, like \"127.0.0.53:53\" or \"[::1]:53\"",
                "ginx.toml:3:15: invalid duration `0s` for `resolve_min`: it must be greater than zero, like \"5s\"",
                "ginx.toml:4:15: invalid duration `forever` for `resolve_max`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
                "conf.d/g.toml:1:19: `resolver` in [global] is already set at ginx.toml:2:12: keep only one",
            ]
        );
    }

    #[test]
    fn resolve_range() {
        let with = |global: &str| format!("[global]\n{global}{WEB}{UP}");
        assert_eq!(
            errors(&[("ginx.toml", &with("resolve_min = \"10s\"\nresolve_max = \"5s\"\n"))]),
            ["ginx.toml:3:15: resolve_max `5s` is shorter than resolve_min `10s`: make resolve_max at least resolve_min"]
        );
        assert_eq!(
            errors(&[("ginx.toml", &with("resolve_max = \"500ms\"\n"))]),
            ["ginx.toml:2:15: resolve_max `500ms` is shorter than resolve_min (default `1s`): make resolve_max at least resolve_min"]
        );
        assert_eq!(
            errors(&[("ginx.toml", &with("resolve_min = \"10m\"\n"))]),
            ["ginx.toml:2:15: resolve_min `10m` is longer than resolve_max (default `5m`): shorten resolve_min or set a longer resolve_max"]
        );
        // Across files.
        let main = with("resolve_min = \"10m\"\n");
        assert!(errors(&[("ginx.toml", &main), ("g.toml", "global.resolve_max = \"1h\"\n")]).is_empty());
        assert_eq!(
            errors(&[("ginx.toml", &main), ("g.toml", "global.resolve_max = \"2m\"\n")]),
            ["g.toml:1:22: resolve_max `2m` is shorter than resolve_min `10m`: make resolve_max at least resolve_min"]
        );
        // A broken file might set the other one: no false alarm.
        assert_eq!(
            errors(&[("ginx.toml", &main), ("g.toml", "[global\n")]),
            ["g.toml:1:8: invalid table header: expected `.`, `]`"]
        );
    }

    #[test]
    fn admin_forms() {
        assert_eq!(ok(&format!("{WEB}{UP}")).admin, None);
        let config = ok(&format!("{WEB}{UP}[admin]\n"));
        assert_eq!(config.admin.unwrap().bind, "127.0.0.1:9901".parse().unwrap());
        let config = ok(&format!("admin.bind = \"localhost:9000\"\n{WEB}{UP}"));
        assert_eq!(config.admin.unwrap().bind, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            warnings(&[("ginx.toml", &format!("{WEB}{UP}[admin]\nbind = \"0.0.0.0:9901\"\n"))]),
            ["ginx.toml:7:8: the admin endpoint is bound to 0.0.0.0:9901, which is not a loopback address: anyone who can reach it can read the configuration; bind it to 127.0.0.1 unless a firewall protects it"]
        );
    }

    #[test]
    fn admin_problems() {
        assert_eq!(
            errors(&[
                ("ginx.toml", &format!("{WEB}{UP}\n[admin]\n")),
                ("conf.d/a.toml", "# admin\n  [ admin ]\nbind = \"127.0.0.1:2\"\n"),
            ]),
            ["conf.d/a.toml:2:5: [admin] is already set at ginx.toml:7:2: keep only one"]
        );
        assert_eq!(
            errors(&[("ginx.toml", &format!("{WEB}{UP}[admin]\nbind = \"127.0.0.1:1\"\n"))]),
            ["ginx.toml:7:8: admin bind address 127.0.0.1:1 is already used by listener `web` at ginx.toml:2:8: give the admin endpoint its own address"]
        );
        assert_eq!(
            errors(&[(
                "ginx.toml",
                &format!("{WEB}{UP}[admin]\nbind = \"9901\"\nport = 1\n")
            )]),
            ["ginx.toml:8:1: unknown field `port`, expected one of `bind`, `allow`, `deny`"]
        );
        assert_eq!(
            errors(&[("ginx.toml", &format!("{WEB}{UP}[admin]\nbind = \"9901\"\n"))]),
            [format!(
                "ginx.toml:7:8: invalid admin bind address `9901`: {BIND_HINT}"
            )]
        );
    }

    #[test]
    fn pid_file_is_relative_to_its_file_and_not_empty() {
        let g = ok(&format!("[global]\npid_file = \"run/ginx.pid\"\n{WEB}{UP}")).global;
        let path = g.pid_file.expect("a pid file");
        assert!(path.ends_with("run/ginx.pid"), "{}", path.display());
        assert_eq!(
            errors(&[("ginx.toml", &format!("[global]\npid_file = \"\"\n{WEB}{UP}"))]),
            ["ginx.toml:2:12: empty pid_file: remove it, or name a file like \"/run/ginx/ginx.pid\""]
        );
    }

    #[test]
    fn operations_keys_in_global() {
        let g = ok(&format!(
            "[global]\nlog_format = \"json\"\naccess_log = true\nshutdown_delay = \"5s\"\n{WEB}{UP}"
        ))
        .global;
        assert_eq!(g.log_format, LogFormat::Json);
        assert_eq!(
            g.access_log,
            Some(AccessLog {
                path: None,
                format: AccessLogFormat::Text
            })
        );
        assert_eq!(g.shutdown_delay, Duration::from_secs(5));
        let g = ok(&format!(
            "[global]\naccess_log = false\nshutdown_delay = \"0s\"\n{WEB}{UP}"
        ))
        .global;
        assert_eq!(g.access_log, None);
        assert_eq!(g.shutdown_delay, Duration::ZERO);
        assert_eq!(g.log_format, LogFormat::Text);
        let g = ok(&format!("[global]\naccess_log = {{}}\n{WEB}{UP}")).global;
        assert_eq!(
            g.access_log,
            Some(AccessLog {
                path: None,
                format: AccessLogFormat::Combined
            })
        );
        // A path is relative to the file that names it; its directory must exist.
        let (config, errs) = check(&[
            ("ginx.toml", &format!("include = [\"conf.d/*.toml\"]\n{WEB}{UP}")),
            (
                "conf.d/log.toml",
                "[global.access_log]\npath = \"access.log\"\nformat = \"json\"\n",
            ),
        ]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            config.global.access_log,
            Some(AccessLog {
                path: Some(PathBuf::from("conf.d/access.log")),
                format: AccessLogFormat::Json
            })
        );
    }

    #[test]
    fn operations_key_problems() {
        let main = format!(
            "[global]\nlog_format = \"jsn\"\naccess_log = {{ path = \"logs/a.log\", format = \"common\" }}\nshutdown_delay = \"soon\"\n{WEB}{UP}"
        );
        assert_eq!(
            errors(&[("ginx.toml", &main)]),
            [
                "ginx.toml:2:14: unknown log_format `jsn`: did you mean `json`? (use \"text\" or \"json\")",
                "ginx.toml:3:23: the directory logs of access_log path `logs/a.log` does not exist: create it or log somewhere else (the path is relative to this file)",
                "ginx.toml:3:46: unknown access_log format `common`: use \"combined\", \"json\" or \"text\"",
                "ginx.toml:4:18: invalid duration `soon` for `shutdown_delay`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
            ]
        );
        assert_eq!(
            errors(&[
                ("ginx.toml", &format!("[global]\naccess_log = true\n{WEB}{UP}")),
                ("b.toml", "global.access_log = false\n"),
            ]),
            ["b.toml:1:8: `access_log` in [global] is already set at ginx.toml:2:1: keep only one"]
        );
        assert_eq!(
            errors(&[(
                "ginx.toml",
                &format!("[global]\naccess_log = {{ file = \"x\" }}\n{WEB}{UP}")
            )]),
            ["ginx.toml:2:16: unknown field `file`, expected `path` or `format`"]
        );
        assert_eq!(
            errors(&[("ginx.toml", &format!("[global]\naccess_log = {{ path = \"\" }}\n{WEB}{UP}"))]),
            ["ginx.toml:2:23: empty access_log path: remove `path` to log to stdout, or name a file like \"access.log\""]
        );
    }
}
