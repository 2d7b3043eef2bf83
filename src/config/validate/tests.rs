//! Validation as an operator meets it: TOML in, located messages out.

use super::parse::{parse_resolver, BIND_HINT, RESOLVER_HINT, SERVER_HINT};
use super::*;
use crate::config::{
    AccessLog, AccessLogFormat, Balance, CheckKind, Endpoint, HashKey, HealthCheck, HostPattern, LogFormat,
    OnAllDown, RetryOn, Route, RouteAction, ServerSpec, SourceKind, UpstreamProtocol, UpstreamTls,
};

/// Parse and validate in-memory files (first is the main file); returns
/// the parts and every error as a display string. A file toml rejects
/// makes the set incomplete, as in a real load.
fn check(files: &[(&str, &str)]) -> (Config, Vec<String>) {
    check_with(files, &[])
}

/// As [`check`], with `other` files (PEM) readable but not parsed.
fn check_with(files: &[(&str, &str)], other: &[(&str, &str)]) -> (Config, Vec<String>) {
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
    let all: Vec<(&str, &str)> = files.iter().chain(other).copied().collect();
    let fs = super::super::fs::mem::MemFs::new(&all);
    let parts = validate(&fs, &parsed, Path::new(files[0].0), complete, &mut errors);
    let order: Vec<PathBuf> = files.iter().map(|(p, _)| PathBuf::from(p)).collect();
    let errors = super::super::Errors::new(errors, Vec::new(), &order);
    (parts, errors.iter().map(ToString::to_string).collect())
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    check(files).1
}

fn ok(text: &str) -> Config {
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
    assert!(parts.global.access_log.is_none());
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
    assert!(parts.global.access_log.is_some());
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
                    body: String::new(),
                    location: None,
                },
            },
            Route {
                host: None,
                path: None,
                action: RouteAction::Respond {
                    status: 200,
                    body: "ok\n".into(),
                    location: None,
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
                endpoint: Endpoint::Ip("127.0.0.1:9001".parse().unwrap()),
                weight: 1,
                backup: false,
                tls: false,
            },
            ServerSpec {
                name: "127.0.0.1:9002".into(),
                endpoint: Endpoint::Ip("127.0.0.1:9002".parse().unwrap()),
                weight: 2,
                backup: false,
                tls: false,
            },
        ]
    );
    assert_eq!(
        parts.upstreams["api"].servers[0].endpoint,
        Endpoint::Ip("[::1]:9003".parse().unwrap())
    );
}

#[test]
fn unknown_key() {
    assert_eq!(
        errors(&[(
            "ginx.toml",
            "[listener.web]\nbind = \"127.0.0.1:1\"\nupstreem = \"a\"\n"
        )]),
        ["ginx.toml:3:1: unknown field `upstreem`: did you mean `upstream`? (expected one of `bind`, `upstream`, `route`, `tls`)"]
    );
    assert_eq!(
        errors(&[("ginx.toml", "[global]\nlog = 1\n")]),
        ["ginx.toml:2:1: unknown field `log`, expected one of `log_level`, `log_format`, `access_log`, `shutdown_delay`, `watch`, `shutdown_timeout`, `header_read_timeout`, `resolver`, `resolve_min`, `resolve_max`"]
    );
    assert_eq!(
        errors(&[("ginx.toml", "listeners = 1\n")]),
        ["ginx.toml:1:1: unknown field `listeners`: did you mean `listener`? (expected one of `include`, `global`, `listener`, `upstream`, `admin`)"]
    );
    assert_eq!(
        errors(&[(
            "ginx.toml",
            "[upstream.a]\nservers = [{ addr = \"127.0.0.1:1\", wieght = 2 }]\n"
        )]),
        ["ginx.toml:2:36: unknown field `wieght`: did you mean `weight`? (expected one of `addr`, `weight`, `backup`)"]
    );
    assert_eq!(
        errors(&[(
            "ginx.toml",
            "[[listener.a.route]]\nrespond = { status = 200, bdy = \"\" }\n"
        )]),
        ["ginx.toml:2:27: unknown field `bdy`: did you mean `body`? (expected one of `status`, `body`, `location`)"]
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
    let text = "[listener.web]\nbind = \"127.0.0.1:1\"\n[[listener.web.route]]\nrespond = { status = 101 }\n";
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
    assert!(parts.global.access_log.is_some());
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

const WEB: &str = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n";

#[test]
fn new_keys_defaults() {
    let parts = ok(&format!("{WEB}{UP}"));
    let g = &parts.global;
    assert_eq!(g.resolver, None);
    assert_eq!(g.resolve_min, Duration::from_secs(1));
    assert_eq!(g.resolve_max, Duration::from_secs(300));
    let up = &parts.upstreams["app"];
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
fn new_upstream_keys() {
    let parts = ok(&format!(
        "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\nread_timeout = \"90s\"\nmax_fails = 0\n\
         fail_timeout = \"30s\"\neject_on_5xx = 5\non_all_down = \"try_all\"\nretries = 100\n\
         retry_on = [\"5xx\", \"timeout\"]\nretry_non_idempotent = true\n\
         [upstream.b]\nservers = [\"127.0.0.1:1\"]\nretries = 0\nretry_on = []\non_all_down = \"fail\"\n\
         max_fails = 4294967295\neject_on_5xx = 1\n"
    ));
    let up = &parts.upstreams["app"];
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
    let b = &parts.upstreams["b"];
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
        let parts = ok(&format!(
            "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\"]\n{keys}"
        ));
        assert_eq!(parts.upstreams["app"].balance, balance, "{keys}");
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
fn type_errors_in_new_keys() {
    assert_eq!(
        errors(&[(
            "ginx.toml",
            "[upstream.a]\nservers = [{ addr = \"127.0.0.1:1\", backup = \"yes\" }]\n"
        )]),
        ["ginx.toml:2:45: invalid type: string \"yes\", expected a boolean"]
    );
    assert_eq!(
        errors(&[("ginx.toml", "[upstream.a]\nretry_on = \"connect\"\n")]),
        ["ginx.toml:2:12: invalid type: string \"connect\", expected a sequence"]
    );
    assert_eq!(
        errors(&[("ginx.toml", "[upstream.a]\nretries = 1.5\n")]),
        ["ginx.toml:2:11: invalid type: floating point `1.5`, expected i64"]
    );
    assert_eq!(
        errors(&[("ginx.toml", "[upstream.a]\nretry = 1\n")]),
        ["ginx.toml:2:1: unknown field `retry`, expected one of `balance`, `hash`, `servers`, `connect_timeout`, `read_timeout`, `max_fails`, `fail_timeout`, `eject_on_5xx`, `on_all_down`, `retries`, `retry_on`, `retry_non_idempotent`, `health_check`, `protocol`, `tls_ca`, `tls_server_name`, `tls_verify`, `tunnel_timeout`"]
    );
}

#[test]
fn backup_servers() {
    let parts = ok(&format!(
        "{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\", {{ addr = \"spare.internal:80\", backup = true, weight = 3 }}, \
         {{ addr = \"127.0.0.1:3\", backup = false }}]\n"
    ));
    let servers = &parts.upstreams["app"].servers;
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
    let parts = ok(&format!(
        "{WEB}[upstream.app]\nservers = [\"no-such-host.invalid:80\", \"http://LocalHost:8080/\"]\n"
    ));
    let servers = &parts.upstreams["app"].servers;
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
    let text =
        format!("{WEB}[upstream.app]\nservers = [\"127.0.0.1:1\", {{ addr = \"my+app:80\" }}, \"a..b:1\"]\n");
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
    let parts = ok(&format!(
        "{WEB}[upstream.app]\nservers = [\"localhost:80\", \"127.0.0.1:80\"]\n"
    ));
    assert_eq!(parts.upstreams["app"].servers.len(), 2);
}

#[test]
fn health_check_forms() {
    let parts = ok(&format!(
        "{WEB}{UP}[upstream.app.health_check]\n\
         [upstream.full]\nservers = [\"127.0.0.1:1\"]\n\
         [upstream.full.health_check]\ntype = \"http\"\npath = \"/healthz?deep=1\"\ninterval = \"2s\"\n\
         timeout = \"500ms\"\nexpect_status = \"204\"\nrise = 1\nfall = 5\ninitial_state = \"down\"\n\
         [upstream.tcp]\nservers = [\"127.0.0.1:1\"]\nhealth_check = {{ type = \"tcp\", initial_state = \"up\" }}\n"
    ));
    assert_eq!(
        parts.upstreams["app"].health_check,
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
        parts.upstreams["full"].health_check,
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
    let tcp = parts.upstreams["tcp"].health_check.as_ref().unwrap();
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
fn global_resolver_keys() {
    let parts = ok(&format!(
        "[global]\nresolver = \"127.0.0.53:53\"\nresolve_min = \"2s\"\nresolve_max = \"1m\"\n{WEB}{UP}"
    ));
    assert_eq!(parts.global.resolver, Some("127.0.0.53:53".parse().unwrap()));
    assert_eq!(parts.global.resolve_min, Duration::from_secs(2));
    assert_eq!(parts.global.resolve_max, Duration::from_secs(60));
    let parts = ok(&format!(
        "[global]\nresolver = \"[::1]:5353\"\nresolve_min = \"1m\"\nresolve_max = \"1m\"\n{WEB}{UP}"
    ));
    assert_eq!(parts.global.resolver, Some("[::1]:5353".parse().unwrap()));
    assert_eq!(parts.global.resolve_max, parts.global.resolve_min);

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

fn warnings(files: &[(&str, &str)]) -> Vec<String> {
    let (mut parts, errors) = check(files);
    assert!(errors.is_empty(), "{errors:#?}");
    let order: Vec<PathBuf> = files.iter().map(|(p, _)| PathBuf::from(p)).collect();
    super::super::error::sort(&mut parts.warnings, &order);
    parts.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn admin_forms() {
    assert_eq!(ok(&format!("{WEB}{UP}")).admin, None);
    let parts = ok(&format!("{WEB}{UP}[admin]\n"));
    assert_eq!(parts.admin.unwrap().bind, "127.0.0.1:9901".parse().unwrap());
    let parts = ok(&format!("admin.bind = \"localhost:9000\"\n{WEB}{UP}"));
    assert_eq!(parts.admin.unwrap().bind, "127.0.0.1:9000".parse().unwrap());
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
        ["ginx.toml:8:1: unknown field `port`, expected `bind`"]
    );
    assert_eq!(
        errors(&[("ginx.toml", &format!("{WEB}{UP}[admin]\nbind = \"9901\"\n"))]),
        [format!(
            "ginx.toml:7:8: invalid admin bind address `9901`: {BIND_HINT}"
        )]
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
    let (parts, errs) = check(&[
        ("ginx.toml", &format!("include = [\"conf.d/*.toml\"]\n{WEB}{UP}")),
        (
            "conf.d/log.toml",
            "[global.access_log]\npath = \"access.log\"\nformat = \"json\"\n",
        ),
    ]);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(
        parts.global.access_log,
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

#[test]
fn unknown_upstream_suggests_the_closest() {
    let text = format!("[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"ap\"\n{UP}");
    assert_eq!(
        errors(&[("ginx.toml", &text)]),
        ["ginx.toml:3:12: unknown upstream `ap`: did you mean `app`?"]
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
fn doubtful_choices_are_warnings() {
    let text = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n\
                [[listener.web.route]]\npath = \"/old\"\nrespond = { status = 200, location = \"https://{host}/\" }\n\
                [upstream.app]\nservers = [\"127.0.0.1:2\"]\n\
                [upstream.app.health_check]\ninterval = \"1s\"\ntimeout = \"2s\"\n\
                [upstream.spare]\nservers = [\"127.0.0.1:3\"]\n";
    assert_eq!(
        warnings(&[("ginx.toml", text)]),
        [
            "ginx.toml:6:38: `location` with status 200 does not redirect: clients follow it only with a 3xx status, like 301, 302, 307 or 308",
            "ginx.toml:11:11: health check timeout 2s is not shorter than its interval 1s: a slow check runs into the next one; make the timeout shorter",
            "ginx.toml:12:1: upstream `spare` is not used by any listener or route: reference it with upstream = \"spare\" or remove it",
        ]
    );
    // Unused upstreams are not judged while a file is missing.
    let (parts, _) = check(&[("ginx.toml", text), ("b.toml", "[x\n")]);
    assert_eq!(parts.warnings.len(), 2);
}

#[test]
fn respond_location() {
    let route = |location: &str| {
        format!(
            "[listener.web]\nbind = \"127.0.0.1:1\"\n[[listener.web.route]]\nrespond = {{ status = 301, location = \"{location}\" }}\n"
        )
    };
    let parts = ok(&route("https://{host}{uri}"));
    assert_eq!(
        parts.listeners["web"].routes[0].action,
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

/// A self-signed certificate for `name` and its key, as PEM.
fn pair(name: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

#[test]
fn listener_tls_forms() {
    let (a_cert, a_key) = pair("a.example.com");
    let (b_cert, b_key) = pair("b.example.com");
    let pems = [
        ("conf.d/certs/a.pem", a_cert.as_str()),
        ("conf.d/certs/a.key", a_key.as_str()),
        ("/etc/b.pem", b_cert.as_str()),
        ("/etc/b.key", b_key.as_str()),
    ];
    let one = "[listener.web]\nbind = \"127.0.0.1:443\"\nupstream = \"app\"\ntls = { cert = \"certs/a.pem\", key = \"certs/a.key\" }\n";
    let (parts, errs) = check_with(&[("ginx.toml", UP), ("conf.d/web.toml", one)], &pems);
    assert!(errs.is_empty(), "{errs:?}");
    let tls = parts.listeners["web"].tls.as_ref().unwrap();
    assert_eq!(tls.certificates.len(), 1);
    assert_eq!(tls.certificates[0].cert.path, PathBuf::from("conf.d/certs/a.pem"));
    assert_eq!(&*tls.certificates[0].key.pem, a_key.as_str());
    assert_eq!(tls.client_ca, None);
    // Each file is read once and kept as a source, even when named twice.
    let paths: Vec<&Path> = parts.sources.iter().map(|s| s.path.as_path()).collect();
    assert_eq!(
        paths,
        [Path::new("conf.d/certs/a.pem"), Path::new("conf.d/certs/a.key")]
    );
    assert!(parts.sources.iter().all(|s| s.kind == SourceKind::Pem));

    let several = "[listener.web]\nbind = \"127.0.0.1:443\"\nupstream = \"app\"\n\
                   [listener.web.tls]\nclient_ca = \"certs/a.pem\"\n\
                   [[listener.web.tls.certificates]]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n\
                   [[listener.web.tls.certificates]]\ncert = \"/etc/b.pem\"\nkey = \"/etc/b.key\"\n";
    let (parts, errs) = check_with(&[("ginx.toml", UP), ("conf.d/web.toml", several)], &pems);
    assert!(errs.is_empty(), "{errs:?}");
    let tls = parts.listeners["web"].tls.as_ref().unwrap();
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.certificates[1].key.path, PathBuf::from("/etc/b.key"));
    assert_eq!(
        tls.client_ca.as_ref().unwrap().path,
        PathBuf::from("conf.d/certs/a.pem")
    );
    assert_eq!(parts.sources.len(), 4);
}

#[test]
fn listener_tls_problems() {
    let (a_cert, a_key) = pair("a.example.com");
    let (_, b_key) = pair("b.example.com");
    let pems = [
        ("a.pem", a_cert.as_str()),
        ("a.key", a_key.as_str()),
        ("b.key", b_key.as_str()),
        ("junk.pem", "hello"),
    ];
    let web = |tls: &str| {
        format!("[listener.web]\nbind = \"127.0.0.1:443\"\nupstream = \"app\"\ntls = {tls}\n{UP}")
    };
    let cases = [
        (
            "{ cert = \"a.pem\", key = \"b.key\" }",
            "ginx.toml:4:31: key `b.key`: the private key does not match the certificate".to_owned(),
        ),
        (
            "{ cert = \"junk.pem\", key = \"a.key\" }",
            format!(
                "ginx.toml:4:16: certificate `junk.pem`: {}",
                crate::config::pem::parse_certificates("hello").unwrap_err()
            ),
        ),
        (
            "{ cert = \"none.pem\", key = \"a.key\" }",
            format!(
                "ginx.toml:4:16: cannot read certificate file none.pem: {}",
                std::io::Error::from(std::io::ErrorKind::NotFound)
            ),
        ),
        (
            "{ cert = \"a.pem\", key = \"a.key\", client_ca = \"junk.pem\" }",
            format!(
                "ginx.toml:4:52: client_ca `junk.pem`: {}",
                crate::config::pem::parse_certificates("hello").unwrap_err()
            ),
        ),
        (
            "{ cert = \"a.pem\" }",
            "ginx.toml:4:16: `cert` needs its private key: add key = \"PATH\" next to it".to_owned(),
        ),
        (
            "{ key = \"a.key\" }",
            "ginx.toml:4:15: `key` needs its certificate: add cert = \"PATH\" next to it".to_owned(),
        ),
        (
            "{ client_ca = \"a.pem\" }",
            "ginx.toml:1:1: listener `web` has `tls` without a certificate: add cert = \"cert.pem\" and key = \"key.pem\" to it".to_owned(),
        ),
        (
            "{ cert = \"a.pem\", key = \"a.key\", certificates = [{ cert = \"a.pem\", key = \"a.key\" }] }",
            "ginx.toml:4:16: the tls of listener `web` has both `cert`/`key` and `certificates`: use cert and key for one certificate, or only [[listener.web.tls.certificates]] tables for several".to_owned(),
        ),
        (
            "{ certificates = [] }",
            "ginx.toml:1:1: listener `web` has an empty tls.certificates: add [[listener.web.tls.certificates]] tables with cert and key".to_owned(),
        ),
        (
            "{ cert = \"\", key = \"a.key\" }",
            "ginx.toml:4:16: empty `certificate` path: give the path of a PEM file, relative to this file or absolute".to_owned(),
        ),
        (
            "{ cert = \"a.pem\", key = \"a.key\", ca = \"a.pem\" }",
            "ginx.toml:4:40: unknown field `ca`, expected one of `cert`, `key`, `certificates`, `client_ca`".to_owned(),
        ),
    ];
    for (tls, expected) in cases {
        let (_, errs) = check_with(&[("ginx.toml", &web(tls))], &pems);
        assert_eq!(errs, [expected], "{tls}");
    }
}

#[test]
fn upstream_protocol_keys() {
    let (ca, _) = pair("ca.internal");
    let main = format!(
        "{WEB}[upstream.app]\nprotocol = \"h2\"\nservers = [\"https://127.0.0.1:8443\", {{ addr = \"https://10.0.0.2\", weight = 2 }}]\n\
         tls_ca = \"ca.pem\"\ntls_server_name = \"api.internal\"\ntunnel_timeout = \"10m\"\n"
    );
    let (parts, errs) = check_with(&[("ginx.toml", &main)], &[("ca.pem", &ca)]);
    assert!(errs.is_empty(), "{errs:?}");
    let up = &parts.upstreams["app"];
    assert_eq!(up.protocol, UpstreamProtocol::H2);
    assert!(up.servers.iter().all(|s| s.tls));
    assert_eq!(up.tls.ca.as_ref().unwrap().path, PathBuf::from("ca.pem"));
    assert_eq!(up.tls.server_name.as_deref(), Some("api.internal"));
    assert!(up.tls.verify);
    assert_eq!(up.tunnel_timeout, Duration::from_secs(600));
    assert!(parts.warnings.is_empty());

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
    let (parts, errs) = check(&[(
        "ginx.toml",
        &up("servers = [\"127.0.0.1:1\"]\ntls_server_name = \"a\"\ntls_verify = false"),
    )]);
    assert!(errs.is_empty());
    let warnings: Vec<String> = parts.warnings.iter().map(ToString::to_string).collect();
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

fn warnings_of(text: &str) -> Vec<String> {
    warnings(&[("ginx.toml", text)])
}
