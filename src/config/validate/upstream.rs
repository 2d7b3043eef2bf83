//! `[upstream.NAME]`: its servers, balance policy, timeouts, passive health
//! (`max_fails`, `eject_on_5xx`), retries and `[upstream.NAME.health_check]`.
//!
//! This module owns the checks of one upstream table and of each of its
//! servers. An upstream's TLS keys are [`super::tls`]'s; whether anything
//! uses the upstream is judged once every file is read
//! ([`super::Validator::check_unused_upstreams`]).

use std::time::Duration;

use toml::Spanned;

use super::super::names;
use super::super::raw;
use super::super::{
    Balance, CheckKind, HashKey, HealthCheck, OnAllDown, RetryOn, ServerSpec, Upstream, UpstreamProtocol,
};
use super::parse::{parse_hash_key, parse_server, parse_status_range};
use super::{hinted, quoted_list, At, Validator};

impl Validator<'_> {
    /// One `[upstream.NAME]`, kept when it is its name's first definition.
    pub(super) fn upstream(&mut self, at: At<'_>, name: &Spanned<String>, u: &raw::Upstream) {
        let header = at.header(name);
        let name = name.get_ref();
        let first = Self::define(
            self.errors,
            &mut self.config.defined_at.upstreams,
            "upstream",
            at.loc(header),
            name,
        );
        if first {
            let width = u32::try_from(at.line_span(header).len()).unwrap_or(0);
            self.upstreams.push((name.clone(), at.loc(header), width));
        }
        let balance = self.balance(at, u);
        let protocol = u
            .protocol
            .as_ref()
            .and_then(|p| self.choice(at, p, "protocol", &names::PROTOCOL))
            .unwrap_or(UpstreamProtocol::Http1);
        let servers = self.servers(at, name, header, u, protocol);
        let upstream = self.upstream_settings(at, name, u, balance, protocol, servers);
        if first {
            self.config.upstreams.insert(name.clone(), upstream);
        }
    }

    /// The rest of an upstream around its policy, protocol and servers:
    /// timeouts, passive health, retries, health checks and TLS.
    fn upstream_settings(
        &mut self,
        at: At<'_>,
        name: &str,
        u: &raw::Upstream,
        balance: Balance,
        protocol: UpstreamProtocol,
        servers: Vec<ServerSpec>,
    ) -> Upstream {
        let connect_timeout = self.timeout(at, &u.connect_timeout, "connect_timeout", Duration::from_secs(5));
        let read_timeout = self.timeout(at, &u.read_timeout, "read_timeout", Duration::from_secs(60));
        let fail_timeout = self.timeout(at, &u.fail_timeout, "fail_timeout", Duration::from_secs(10));
        let max_fails = u
            .max_fails
            .as_ref()
            .and_then(|n| self.number(at, n, "max_fails", (0, u32::MAX), ""))
            .unwrap_or(1);
        let eject_on_5xx = u.eject_on_5xx.as_ref().and_then(|n| {
            self.number(
                at,
                n,
                "eject_on_5xx",
                (1, u32::MAX),
                " (remove `eject_on_5xx` to never eject on 5xx)",
            )
        });
        let on_all_down = u
            .on_all_down
            .as_ref()
            .and_then(|v| self.choice(at, v, "on_all_down", &names::ON_ALL_DOWN))
            .unwrap_or(OnAllDown::Fail);
        let retries = u
            .retries
            .as_ref()
            .and_then(|n| self.number(at, n, "retries", (0, 100), ""))
            .unwrap_or(1);
        let retry_on = match &u.retry_on {
            None => RetryOn::default(),
            Some(list) => self.retry_on(at, list.get_ref()),
        };
        let retry_non_idempotent = u.retry_non_idempotent.as_ref().is_some_and(|b| *b.get_ref());
        let health_check = u.health_check.as_ref().map(|h| self.health_check(at, h));
        let tls = self.upstream_tls(at, name, u, servers.iter().any(|s| s.tls));
        let tunnel_timeout = self.timeout(at, &u.tunnel_timeout, "tunnel_timeout", Duration::from_secs(3600));
        Upstream {
            name: name.to_owned(),
            balance,
            servers,
            connect_timeout,
            read_timeout,
            max_fails,
            fail_timeout,
            eject_on_5xx,
            on_all_down,
            retries,
            retry_on,
            retry_non_idempotent,
            health_check,
            protocol,
            tls,
            tunnel_timeout,
        }
    }

    /// `servers`: at least one, not all backups, each valid, listed once and
    /// speaking TLS exactly when `protocol` says so.
    fn servers(
        &mut self,
        at: At<'_>,
        name: &str,
        header: usize,
        u: &raw::Upstream,
        protocol: UpstreamProtocol,
    ) -> Vec<ServerSpec> {
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
        let entries = u.servers.as_ref().map_or(&[][..], |l| l.get_ref());
        let is_backup = |e: &Spanned<raw::Server>| match e.get_ref() {
            raw::Server::Table { backup: Some(b), .. } => *b.get_ref(),
            _ => false,
        };
        if let (Some(list), false) = (&u.servers, entries.is_empty()) {
            if entries.iter().all(is_backup) {
                let start = list.span().start;
                self.errors.push(at.error(
                    start..start,
                    format!(
                        "upstream `{name}` has only backup servers: at least one server must not be a backup"
                    ),
                ));
            }
        }
        let mut servers: Vec<ServerSpec> = Vec::new();
        for entry in entries {
            let Some(s) = self.server(at, entry) else {
                continue;
            };
            self.check_server_protocol(at, name, protocol, entry, &s);
            // A server's state is keyed by its endpoint: listing it twice
            // would make two entries share one state.
            if servers.iter().any(|seen| seen.endpoint == s.endpoint) {
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
        servers
    }

    /// `h2` is HTTP/2 over TLS and `h2c` without: a server written the other
    /// way is a mistake either way.
    fn check_server_protocol(
        &mut self,
        at: At<'_>,
        name: &str,
        protocol: UpstreamProtocol,
        entry: &Spanned<raw::Server>,
        s: &ServerSpec,
    ) {
        let message = match (protocol, s.tls) {
            (UpstreamProtocol::H2, false) => format!(
                "upstream `{name}` has protocol = \"h2\", which is HTTP/2 over TLS: write this server as \"https://{}\", or use protocol = \"h2c\" for HTTP/2 without TLS",
                s.name
            ),
            (UpstreamProtocol::H2c, true) => format!(
                "upstream `{name}` has protocol = \"h2c\", which is HTTP/2 without TLS: write this server as \"{}\", or use protocol = \"h2\" for HTTP/2 over TLS",
                s.name
            ),
            _ => return,
        };
        self.errors.push(at.error(entry.span(), message));
    }

    /// An optional duration that must be greater than zero, `default` when
    /// absent or invalid (the error is then reported).
    fn timeout(
        &mut self,
        at: At<'_>,
        value: &Option<Spanned<raw::DurationText>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        value
            .as_ref()
            .and_then(|v| self.positive_duration(at, v, key))
            .unwrap_or(default)
    }

    /// `balance` and `hash` together.
    fn balance(&mut self, at: At<'_>, u: &raw::Upstream) -> Balance {
        let policy = match &u.balance {
            None => Some(Balance::RoundRobin),
            Some(b) => self.choice(at, b, "balance", &names::BALANCE),
        };
        let key = u.hash.as_ref().and_then(|h| match parse_hash_key(h.get_ref()) {
            Ok(key) => Some(key),
            Err(message) => {
                self.errors.push(at.error(h.span(), message));
                None
            }
        });
        let is_hash = matches!(policy, Some(Balance::Hash(_)));
        match (&policy, &u.balance, &u.hash) {
            (Some(_), Some(b), None) if is_hash => self.errors.push(at.error(
                b.span(),
                "balance = \"hash\" needs a `hash` key: add hash = \"client_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\""
                    .to_owned(),
            )),
            // An unknown `balance` has its own error; `hash` may be right.
            (Some(_), _, Some(h)) if !is_hash => self.errors.push(at.error(
                h.span(),
                "`hash` only applies with balance = \"hash\": add balance = \"hash\" or remove `hash`".to_owned(),
            )),
            _ => {}
        }
        match policy {
            None => Balance::RoundRobin,
            // Without a valid key an error has been reported.
            Some(Balance::Hash(_)) => Balance::Hash(key.unwrap_or(HashKey::ClientIp)),
            Some(policy) => policy,
        }
    }

    /// `retry_on = [...]`: each entry known and listed once.
    fn retry_on(&mut self, at: At<'_>, entries: &[Spanned<String>]) -> RetryOn {
        let mut on = RetryOn::none();
        for entry in entries {
            let text = entry.get_ref();
            let mut flags = on.flags_mut();
            let Some((_, flag)) = flags.iter_mut().find(|(word, _)| word == text) else {
                let known = RetryOn::none().flags().map(|(word, _)| word);
                self.errors.push(at.error(
                    entry.span(),
                    hinted(
                        format!("unknown retry_on entry `{text}`"),
                        text,
                        known,
                        &format!("use {}", quoted_list(&known)),
                    ),
                ));
                continue;
            };
            if **flag {
                self.errors.push(at.error(
                    entry.span(),
                    format!("`{text}` is listed twice in retry_on: list it once"),
                ));
            }
            **flag = true;
        }
        on
    }

    /// `[upstream.NAME.health_check]`.
    fn health_check(&mut self, at: At<'_>, h: &raw::HealthCheck) -> HealthCheck {
        let kind = self.check_kind(at, h);
        let interval = self.timeout(at, &h.interval, "interval", Duration::from_secs(5));
        let timeout = self.timeout(at, &h.timeout, "timeout", Duration::from_secs(1));
        if timeout >= interval {
            if let Some(span) = h.timeout.as_ref().or(h.interval.as_ref()).map(Spanned::span) {
                self.config.warnings.push(at.error(
                    span,
                    format!(
                        "health check timeout {} is not shorter than its interval {}: a slow check runs into the next one; make the timeout shorter",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                ));
            }
        }
        let expect_status = match &h.expect_status {
            None => (200, 399),
            Some(s) => match parse_status_range(s.get_ref()) {
                Ok(range) => range,
                Err(message) => {
                    self.errors.push(at.error(s.span(), message));
                    (200, 399)
                }
            },
        };
        let rise = h
            .rise
            .as_ref()
            .and_then(|n| self.number(at, n, "rise", (1, u32::MAX), ""))
            .unwrap_or(2);
        let fall = h
            .fall
            .as_ref()
            .and_then(|n| self.number(at, n, "fall", (1, u32::MAX), ""))
            .unwrap_or(3);
        let initial_up = h
            .initial_state
            .as_ref()
            .and_then(|v| self.choice(at, v, "initial_state", &names::INITIAL_STATE))
            .unwrap_or(true);
        HealthCheck {
            kind,
            interval,
            timeout,
            expect_status,
            rise,
            fall,
            initial_up,
        }
    }

    /// A health check's `type` and the `path` that goes with `http`.
    fn check_kind(&mut self, at: At<'_>, h: &raw::HealthCheck) -> CheckKind {
        let kind = match &h.kind {
            None => Some(CheckKind::Http { path: String::new() }),
            Some(k) => self.choice(at, k, "health_check type", &names::CHECK_KIND),
        };
        let is_tcp = matches!(kind, Some(CheckKind::Tcp));
        if let Some(p) = &h.path {
            if is_tcp {
                self.errors.push(at.error(
                    p.span(),
                    "`path` only applies to type = \"http\" health checks: remove it or use type = \"http\""
                        .to_owned(),
                ));
            } else if !p.get_ref().starts_with('/') {
                self.errors.push(at.error(
                    p.span(),
                    format!(
                        "invalid health_check path `{}`: it must start with \"/\", like \"/health\"",
                        p.get_ref()
                    ),
                ));
            }
        }
        if is_tcp {
            return CheckKind::Tcp;
        }
        // An unknown `type` has its own error.
        CheckKind::Http {
            path: h
                .path
                .as_ref()
                .map_or_else(|| "/".to_owned(), |p| p.get_ref().clone()),
        }
    }

    fn server(&mut self, at: At<'_>, entry: &Spanned<raw::Server>) -> Option<ServerSpec> {
        let (text, span, weight, backup) = match entry.get_ref() {
            raw::Server::Text(t) => (t.as_str(), entry.span(), None, None),
            raw::Server::Table { addr, weight, backup } => (
                addr.get_ref().as_str(),
                addr.span(),
                weight.as_ref(),
                backup.as_ref(),
            ),
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
        let (name, endpoint, tls) = addr?;
        Some(ServerSpec {
            name,
            endpoint,
            weight: weight?,
            backup: backup.is_some_and(|b| *b.get_ref()),
            tls,
        })
    }
}
