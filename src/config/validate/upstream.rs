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
    DEFAULT_KEEPALIVE,
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
        let keepalive = u
            .keepalive
            .as_ref()
            .and_then(|n| self.number(at, n, "keepalive", (0, 65_536), ""))
            .unwrap_or(DEFAULT_KEEPALIVE);
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
            keepalive,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::parse::SERVER_HINT;
    use super::super::tests::*;
    use crate::config::{
        Balance, CheckKind, Endpoint, HashKey, HealthCheck, OnAllDown, RetryOn, UpstreamProtocol, UpstreamTls,
    };

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
    fn upstream_problems() {
        let text = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"a\"\n\
                    [upstream.a]\nservers = []\n\
                    [upstream.b]\nbalance = \"fastest\"\n\
                    [upstream.c]\nservers = [{ addr = \"127.0.0.1:1\", weight = 0 }, { addr = \"127.0.0.1:2\", weight = 1001 }, \"127.0.0.1\"]\nconnect_timeout = \"0s\"\n\
                    [upstream.d]\nservers = [\"127.0.0.1:1\"]\nconnect_timeout = \"5 parsecs\"\n\
                    [upstream.e]\nservers = [\"127.0.0.1:1\"]\nconnect_timeout = 5\n";
        let hint = SERVER_HINT;
        assert_eq!(
            errors(&[("ginx.toml", text)]),
            [
                "ginx.toml:5:11: upstream `a` has no servers: add servers = [\"HOST:PORT\"]".to_owned(),
                "ginx.toml:6:1: upstream `b` has no servers: add servers = [\"HOST:PORT\"]".to_owned(),
                "ginx.toml:7:11: unknown balance `fastest`: use \"round_robin\", \"weighted_round_robin\", \"least_conn\", \"random\" or \"hash\"".to_owned(),
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
    fn new_upstream_keys() {
        let config = ok(&format!(
            "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\nread_timeout = \"90s\"\nmax_fails = 0\n\
             fail_timeout = \"30s\"\neject_on_5xx = 5\non_all_down = \"try_all\"\nretries = 100\n\
             retry_on = [\"5xx\", \"timeout\"]\nretry_non_idempotent = true\n\
             [upstream.b]\nservers = [\"127.0.0.1:1\"]\nretries = 0\nretry_on = []\non_all_down = \"fail\"\n\
             max_fails = 4294967295\neject_on_5xx = 1\n"
        ));
        let up = &config.upstreams["app"];
        assert_eq!(up.read_timeout, Duration::from_secs(90));
        assert_eq!(up.max_fails, 0);
        assert_eq!(up.fail_timeout, Duration::from_secs(30));
        assert_eq!(up.eject_on_5xx, Some(5));
        assert_eq!(up.on_all_down, OnAllDown::TryAll);
        assert_eq!(up.retries, 100);
        assert_eq!(
            up.retry_on,
            RetryOn {
                connect: false,
                reset: false,
                timeout: true,
                status_5xx: true,
            }
        );
        assert!(up.retry_non_idempotent);
        let b = &config.upstreams["b"];
        assert_eq!(b.retries, 0);
        assert_eq!(
            b.retry_on,
            RetryOn {
                connect: false,
                reset: false,
                timeout: false,
                status_5xx: false,
            }
        );
        assert_eq!(b.on_all_down, OnAllDown::Fail);
        assert_eq!(b.max_fails, u32::MAX);
        assert_eq!(b.eject_on_5xx, Some(1));
    }

    #[test]
    fn balance_forms() {
        let cases = [
            ("", Balance::RoundRobin),
            ("balance = \"round_robin\"\n", Balance::RoundRobin),
            ("balance = \"weighted_round_robin\"\n", Balance::RoundRobin),
            ("balance = \"least_conn\"\n", Balance::LeastConn),
            ("balance = \"random\"\n", Balance::Random),
            (
                "balance = \"hash\"\nhash = \"client_ip\"\n",
                Balance::Hash(HashKey::ClientIp),
            ),
            (
                "balance = \"hash\"\nhash = \"uri\"\n",
                Balance::Hash(HashKey::Uri),
            ),
            (
                "balance = \"hash\"\nhash = \"header:X-User_ID\"\n",
                Balance::Hash(HashKey::Header("x-user_id".into())),
            ),
            (
                "balance = \"hash\"\nhash = \"cookie:SessionID\"\n",
                Balance::Hash(HashKey::Cookie("SessionID".into())),
            ),
        ];
        for (keys, balance) in cases {
            let config = ok(&format!(
                "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\n{keys}"
            ));
            assert_eq!(config.upstreams["app"].balance, balance, "{keys}");
        }
    }

    #[test]
    fn balance_and_hash_problems() {
        let text = format!(
            "{WEB}[upstream.a]\nservers = [\"127.0.0.1:1\"]\nhash = \"client_ip\"\n\
             [upstream.b]\nservers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\n\
             [upstream.c]\nservers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\nhash = \"ip\"\n\
             [upstream.d]\nservers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\nhash = \"header:\"\n\
             [upstream.e]\nservers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\nhash = \"header:x user\"\n\
             [upstream.f]\nservers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\nhash = \"cookie:\"\n\
             [upstream.g]\nservers = [\"127.0.0.1:1\"]\nbalance = \"least_conn\"\nhash = \"uri\"\n\
             [upstream.h]\nservers = [\"127.0.0.1:1\"]\nbalance = \"fastest\"\nhash = \"uri\"\n\
             [upstream.app]\nservers = [\"127.0.0.1:1\"]\nhash = \"url\"\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:6:8: `hash` only applies with balance = \"hash\": add balance = \"hash\" or remove `hash`",
                "ginx.toml:9:11: balance = \"hash\" needs a `hash` key: add hash = \"client_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\"",
                "ginx.toml:13:8: invalid hash `ip`: use \"client_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\"",
                "ginx.toml:17:8: invalid hash `header:`: the header name is missing, like \"header:x-user-id\"",
                "ginx.toml:21:8: invalid hash `header:x user`: `x user` is not a valid header name, use letters, digits and `-`, like \"header:x-user-id\"",
                "ginx.toml:25:8: invalid hash `cookie:`: the cookie name is missing, like \"cookie:session\"",
                "ginx.toml:29:8: `hash` only applies with balance = \"hash\": add balance = \"hash\" or remove `hash`",
                // An unknown balance: no second error about `hash`.
                "ginx.toml:32:11: unknown balance `fastest`: use \"round_robin\", \"weighted_round_robin\", \"least_conn\", \"random\" or \"hash\"",
                // Both problems of a bad `hash` without balance = "hash".
                "ginx.toml:36:8: invalid hash `url`: use \"client_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\"",
                "ginx.toml:36:8: `hash` only applies with balance = \"hash\": add balance = \"hash\" or remove `hash`",
            ]
        );
    }

    #[test]
    fn number_and_choice_problems() {
        let text = format!(
            "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\nmax_fails = -1\nretries = 101\neject_on_5xx = 0\n\
             read_timeout = \"0s\"\nfail_timeout = \"ten seconds\"\non_all_down = \"retry\"\n\
             [upstream.b]\nservers = [\"127.0.0.1:1\"]\nmax_fails = 4294967296\nretries = -1\neject_on_5xx = 4294967296\n\
             fail_timeout = \"0ms\"\nread_timeout = 60\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:6:13: invalid max_fails -1: use a number from 0 to 4294967295",
                "ginx.toml:7:11: invalid retries 101: use a number from 0 to 100",
                "ginx.toml:8:16: invalid eject_on_5xx 0: use a number from 1 to 4294967295 (remove `eject_on_5xx` to never eject on 5xx)",
                "ginx.toml:9:16: invalid duration `0s` for `read_timeout`: it must be greater than zero, like \"5s\"",
                "ginx.toml:10:16: invalid duration `ten seconds` for `fail_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
                "ginx.toml:11:15: unknown on_all_down `retry`: use \"fail\" or \"try_all\"",
                "ginx.toml:14:13: invalid max_fails 4294967296: use a number from 0 to 4294967295",
                "ginx.toml:15:11: invalid retries -1: use a number from 0 to 100",
                "ginx.toml:16:16: invalid eject_on_5xx 4294967296: use a number from 1 to 4294967295 (remove `eject_on_5xx` to never eject on 5xx)",
                "ginx.toml:17:16: invalid duration `0ms` for `fail_timeout`: it must be greater than zero, like \"5s\"",
                "ginx.toml:18:16: invalid duration `60` for `read_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
            ]
        );
    }

    #[test]
    fn keepalive_default_bounds_and_zero() {
        let text = format!(
            "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\n\
             [upstream.none]\nservers = [\"127.0.0.1:1\"]\nkeepalive = 0\n"
        );
        let config = ok(&text);
        assert_eq!(
            config.upstreams["app"].keepalive,
            crate::config::DEFAULT_KEEPALIVE
        );
        assert_eq!(config.upstreams["none"].keepalive, 0);
        let text = format!("{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\nkeepalive = 100000\n");
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            ["ginx.toml:6:13: invalid keepalive 100000: use a number from 0 to 65536"]
        );
    }

    #[test]
    fn retry_on_problems() {
        let text = format!(
            "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\nretry_on = [\"connect\", \"5XX\", \"connect\", \"reset\"]\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:6:24: unknown retry_on entry `5XX`: did you mean `5xx`? (use \"connect\", \"reset\", \"timeout\" or \"5xx\")",
                "ginx.toml:6:31: `connect` is listed twice in retry_on: list it once",
            ]
        );
    }

    #[test]
    fn backup_servers() {
        let config = ok(&format!(
            "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\", {{ addr = \"spare.internal:80\", backup = true, weight = 3 }}, \
             {{ addr = \"127.0.0.1:3\", backup = false }}]\n"
        ));
        let servers = &config.upstreams["app"].servers;
        let backups: Vec<bool> = servers.iter().map(|s| s.backup).collect();
        assert_eq!(backups, [false, true, false]);
        assert_eq!(servers[1].weight, 3);
        assert_eq!(
            servers[1].endpoint,
            Endpoint::Dns {
                host: "spare.internal".into(),
                port: 80
            }
        );

        let text = format!(
            "{WEB}[upstream.app]\nservers = [{{ addr = \"127.0.0.1:1\", backup = true }}, {{ addr = \"127.0.0.1:2\", backup = true }}]\n\
             [upstream.b]\nservers = [{{ addr = \"127.0.0.1:x\", backup = true }}]\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:5:11: upstream `app` has only backup servers: at least one server must not be a backup".to_owned(),
                // Reported even when an address is wrong: `backup` is as written.
                "ginx.toml:7:11: upstream `b` has only backup servers: at least one server must not be a backup".to_owned(),
                format!("ginx.toml:7:21: invalid server address `127.0.0.1:x`: bad port `x`; {SERVER_HINT}"),
            ]
        );
    }

    #[test]
    fn host_names_are_not_resolved() {
        let config = ok(&format!(
            "{WEB}[upstream.app]\nservers = [\"no-such-host.invalid:80\", \"http://LocalHost:8080/\"]\n"
        ));
        let servers = &config.upstreams["app"].servers;
        assert_eq!(servers[0].name, "no-such-host.invalid:80");
        assert_eq!(
            servers[0].endpoint,
            Endpoint::Dns {
                host: "no-such-host.invalid".into(),
                port: 80
            }
        );
        assert_eq!(servers[1].name, "LocalHost:8080");
        assert_eq!(
            servers[1].endpoint,
            Endpoint::Dns {
                host: "localhost".into(),
                port: 8080
            }
        );
    }

    #[test]
    fn invalid_host_names_are_located() {
        let text = format!(
            "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\", {{ addr = \"my+app:80\" }}, \"a..b:1\"]\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                format!("ginx.toml:5:36: invalid server address `my+app:80`: host name `my+app` may only contain letters, digits, `-`, `_` and `.`; {SERVER_HINT}"),
                format!("ginx.toml:5:51: invalid server address `a..b:1`: host name `a..b` has an empty part between dots; {SERVER_HINT}"),
            ]
        );
    }

    #[test]
    fn duplicate_servers_compare_endpoints() {
        let text = format!(
            "{WEB}[upstream.app]\nservers = [\"Backend.local:80\", \"backend.local:80\", \"localhost:80\", \"127.0.0.1:80\"]\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            ["ginx.toml:5:32: server `backend.local:80` is listed twice in upstream `app`: list it once and give it a weight instead"]
        );
        // A name and an address are different servers, even if the name
        // resolves to that address.
        let config = ok(&format!(
            "{WEB}[upstream.app]\nservers = [\"localhost:80\", \"127.0.0.1:80\"]\n"
        ));
        assert_eq!(config.upstreams["app"].servers.len(), 2);
    }

    #[test]
    fn health_check_forms() {
        let config = ok(&format!(
            "{WEB}{UP}[upstream.app.health_check]\n\
             [upstream.full]\nservers = [\"127.0.0.1:1\"]\n\
             [upstream.full.health_check]\ntype = \"http\"\npath = \"/healthz?deep=1\"\ninterval = \"2s\"\n\
             timeout = \"500ms\"\nexpect_status = \"204\"\nrise = 1\nfall = 5\ninitial_state = \"down\"\n\
             [upstream.tcp]\nservers = [\"127.0.0.1:1\"]\nhealth_check = {{ type = \"tcp\", initial_state = \"up\" }}\n"
        ));
        assert_eq!(
            config.upstreams["app"].health_check,
            Some(HealthCheck {
                kind: CheckKind::Http { path: "/".into() },
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                expect_status: (200, 399),
                rise: 2,
                fall: 3,
                initial_up: true,
            })
        );
        assert_eq!(
            config.upstreams["full"].health_check,
            Some(HealthCheck {
                kind: CheckKind::Http {
                    path: "/healthz?deep=1".into()
                },
                interval: Duration::from_secs(2),
                timeout: Duration::from_millis(500),
                expect_status: (204, 204),
                rise: 1,
                fall: 5,
                initial_up: false,
            })
        );
        let tcp = config.upstreams["tcp"].health_check.as_ref().unwrap();
        assert_eq!(tcp.kind, CheckKind::Tcp);
        assert!(tcp.initial_up);
    }

    #[test]
    fn health_check_problems() {
        let text = format!(
            "{WEB}{UP}[upstream.app.health_check]\ntype = \"tcp\"\npath = \"/health\"\ninterval = \"0s\"\n\
             timeout = \"soon\"\nexpect_status = \"200-99\"\nrise = 0\nfall = -3\ninitial_state = \"sick\"\n\
             [upstream.b]\nservers = [\"127.0.0.1:2\"]\nhealth_check = {{ type = \"udp\", path = \"health\" }}\n\
             [upstream.c]\nservers = [\"127.0.0.1:3\"]\nhealth_check = {{ path = \"health\", expect_status = 204 }}\n"
        );
        assert_eq!(
            errors(&[("ginx.toml", &text)]),
            [
                "ginx.toml:8:8: `path` only applies to type = \"http\" health checks: remove it or use type = \"http\"",
                "ginx.toml:9:12: invalid duration `0s` for `interval`: it must be greater than zero, like \"5s\"",
                "ginx.toml:10:11: invalid duration `soon` for `timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\"",
                "ginx.toml:11:17: invalid expect_status `200-99`: use a status code or an inclusive range as a string, like \"204\" or \"200-399\", each from 100 to 599, low end first",
                "ginx.toml:12:8: invalid rise 0: use a number from 1 to 4294967295",
                "ginx.toml:13:8: invalid fall -3: use a number from 1 to 4294967295",
                "ginx.toml:14:17: unknown initial_state `sick`: use \"up\" or \"down\"",
                "ginx.toml:17:25: unknown health_check type `udp`: use \"http\" or \"tcp\"",
                "ginx.toml:17:39: invalid health_check path `health`: it must start with \"/\", like \"/health\"",
                "ginx.toml:20:25: invalid health_check path `health`: it must start with \"/\", like \"/health\"",
                "ginx.toml:20:51: invalid expect_status 204: write it as a string, like \"204\" or \"200-399\"",
            ]
        );
        assert_eq!(
            errors(&[("ginx.toml", "[upstream.a.health_check]\nintervall = \"1s\"\n")]),
            ["ginx.toml:2:1: unknown field `intervall`: did you mean `interval`? (expected one of `type`, `path`, `interval`, `timeout`, `expect_status`, `rise`, `fall`, `initial_state`)"]
        );
        assert_eq!(
            errors(&[("ginx.toml", "[upstream.a.health_check]\nexpect_status = 2.5\n")]),
            ["ginx.toml:2:17: invalid type: floating point `2.5`, expected a status code or range as a string, like \"200\" or \"200-399\""]
        );
    }

    #[test]
    fn upstream_protocol_keys() {
        let (ca, _) = pair("ca.internal");
        let main = format!(
            "{WEB}[upstream.app]\nprotocol = \"h2\"\nservers = [\"https://127.0.0.1:8443\", {{ addr = \"https://10.0.0.2\", weight = 2 }}]\n\
             tls_ca = \"ca.pem\"\ntls_server_name = \"api.internal\"\ntunnel_timeout = \"10m\"\n"
        );
        let (config, errs) = check_with(&[("ginx.toml", &main)], &[("ca.pem", &ca)]);
        assert!(errs.is_empty(), "{errs:?}");
        let up = &config.upstreams["app"];
        assert_eq!(up.protocol, UpstreamProtocol::H2);
        assert!(up.servers.iter().all(|s| s.tls));
        assert_eq!(up.tls.ca.as_ref().unwrap().path, PathBuf::from("ca.pem"));
        assert_eq!(up.tls.server_name.as_deref(), Some("api.internal"));
        assert!(up.tls.verify);
        assert_eq!(up.tunnel_timeout, Duration::from_secs(600));
        assert!(config.warnings.is_empty());

        let defaults = ok(&format!("{WEB}{UP}"));
        let up = &defaults.upstreams["app"];
        assert_eq!(up.protocol, UpstreamProtocol::Http1);
        assert_eq!(up.tls, UpstreamTls::default());
        assert_eq!(up.tunnel_timeout, Duration::from_secs(3600));
        assert!(ok(&format!(
            "{WEB}[upstream.app]\nprotocol = \"h2c\"\nservers = [\"127.0.0.1:1\"]\n"
        ))
        .upstreams["app"]
            .servers
            .iter()
            .all(|s| !s.tls));
    }

    #[test]
    fn upstream_protocol_problems() {
        let up = |keys: &str| format!("{WEB}[upstream.app]\n{keys}\n");
        let cases = [
            (
                "protocol = \"h2\"\nservers = [\"127.0.0.1:1\"]",
                "ginx.toml:6:12: upstream `app` has protocol = \"h2\", which is HTTP/2 over TLS: write this server as \"https://127.0.0.1:1\", or use protocol = \"h2c\" for HTTP/2 without TLS",
            ),
            (
                "protocol = \"h2c\"\nservers = [\"https://127.0.0.1:1\"]",
                "ginx.toml:6:12: upstream `app` has protocol = \"h2c\", which is HTTP/2 without TLS: write this server as \"127.0.0.1:1\", or use protocol = \"h2\" for HTTP/2 over TLS",
            ),
            (
                "protocol = \"http2\"\nservers = [\"127.0.0.1:1\"]",
                "ginx.toml:5:12: unknown protocol `http2`: did you mean `http1`? (use \"http1\", \"h2\" or \"h2c\")",
            ),
            (
                "servers = [\"https://127.0.0.1:1\"]\ntls_ca = \"junk.pem\"",
                "ginx.toml:6:10: tls_ca `junk.pem`: no certificate found: expected one or more `-----BEGIN CERTIFICATE-----` blocks",
            ),
            (
                "servers = [\"https://127.0.0.1:1\"]\ntls_server_name = \"not a name\"",
                "ginx.toml:6:19: invalid tls_server_name `not a name`: use the DNS name the servers' certificates are for, like \"api.internal\", or an IP address",
            ),
            (
                "servers = [\"127.0.0.1:1\"]\ntunnel_timeout = \"0s\"",
                "ginx.toml:6:18: invalid duration `0s` for `tunnel_timeout`: it must be greater than zero, like \"5s\"",
            ),
        ];
        for (keys, expected) in cases {
            let (_, errs) = check_with(&[("ginx.toml", &up(keys))], &[("junk.pem", "hello")]);
            assert_eq!(errs, [expected], "{keys}");
        }
        let (config, errs) = check(&[(
            "ginx.toml",
            &up("servers = [\"127.0.0.1:1\"]\ntls_server_name = \"a\"\ntls_verify = false"),
        )]);
        assert!(errs.is_empty());
        let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "ginx.toml:6:19: `tls_server_name` has no effect: upstream `app` has no https:// server; remove it or write the servers as \"https://HOST:PORT\"",
                "ginx.toml:7:14: `tls_verify` has no effect: upstream `app` has no https:// server; remove it or write the servers as \"https://HOST:PORT\"",
            ]
        );
        assert_eq!(
            warnings_of(&up("servers = [\"https://127.0.0.1:1\"]\ntls_verify = false")),
            ["ginx.toml:6:14: tls_verify = false: any certificate is accepted from the servers of upstream `app`, so anyone on the network path can impersonate them; trust a private CA with tls_ca = \"ca.pem\" instead"]
        );
    }
}
