//! Validation as an operator meets it: TOML in, located messages out.
//!
//! The helpers every section's tests use, and the tests of what spans
//! sections and files: the full example, defaults, references, duplicate
//! definitions, syntax and type errors. Each section's own tests are in its
//! file.

use super::parse::BIND_HINT;
use super::*;
use crate::config::{Balance, Endpoint, HostPattern, Route, RouteAction, ServerSpec};

/// Parse and validate in-memory files (first is the main file); returns
/// the configuration and every error as a display string. A file toml rejects
/// makes the set incomplete, as in a real load.
pub(super) fn check(files: &[(&str, &str)]) -> (Config, Vec<String>) {
    check_with(files, &[])
}

/// As [`check`], with `other` files (PEM) readable but not parsed.
pub(super) fn check_with(files: &[(&str, &str)], other: &[(&str, &str)]) -> (Config, Vec<String>) {
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
                written: None,
                file,
            }
        })
        .collect();
    let all: Vec<(&str, &str)> = files.iter().chain(other).copied().collect();
    let fs = super::super::fs::mem::MemFs::new(&all);
    let config = validate(&fs, &parsed, Path::new(files[0].0), complete, &mut errors);
    let order: Vec<PathBuf> = files.iter().map(|(p, _)| PathBuf::from(p)).collect();
    let errors = super::super::Errors::new(errors, Vec::new(), &order);
    (config, errors.iter().map(ToString::to_string).collect())
}

pub(super) fn errors(files: &[(&str, &str)]) -> Vec<String> {
    check(files).1
}

pub(super) fn ok(text: &str) -> Config {
    let (config, errors) = check(&[("ginx.toml", text)]);
    assert!(errors.is_empty(), "{errors:#?}");
    config
}

pub(super) const UP: &str = "[upstream.app]\nservers = [\"127.0.0.1:9001\"]\n";

pub(super) const WEB: &str = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n";

pub(super) fn warnings(files: &[(&str, &str)]) -> Vec<String> {
    let (mut config, errors) = check(files);
    assert!(errors.is_empty(), "{errors:#?}");
    let order: Vec<PathBuf> = files.iter().map(|(p, _)| PathBuf::from(p)).collect();
    super::super::error::sort(&mut config.warnings, &order);
    config.warnings.iter().map(ToString::to_string).collect()
}

pub(super) fn warnings_of(text: &str) -> Vec<String> {
    warnings(&[("ginx.toml", text)])
}

#[test]
fn defaults() {
    let config = ok(&format!(
        "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n{UP}"
    ));
    assert_eq!(config.global.log_level, "info");
    assert!(config.global.access_log.is_none());
    assert_eq!(config.global.shutdown_timeout, Duration::from_secs(30));
    let up = &config.upstreams["app"];
    assert_eq!(up.name, "app");
    assert_eq!(up.balance, Balance::RoundRobin);
    assert_eq!(up.connect_timeout, Duration::from_secs(5));
    assert_eq!(up.servers[0].weight, 1);
    let l = &config.listeners["web"];
    assert_eq!(l.name, "web");
    assert_eq!(l.bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(l.upstream.as_deref(), Some("app"));
    assert!(l.routes.is_empty());
}

#[test]
fn full_example() {
    let config = ok(r#"
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
    assert_eq!(config.global.log_level, "debug");
    assert!(config.global.access_log.is_some());
    assert_eq!(config.global.shutdown_timeout, Duration::ZERO);
    let l = &config.listeners["web"];
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
                max_request_body: None,
                access: Default::default(),
            },
            Route {
                host: Some(HostPattern::Wildcard(".example.com".into())),
                path: Some("/health".into()),
                action: RouteAction::Respond {
                    status: 204,
                    body: String::new(),
                    location: None,
                },
                max_request_body: None,
                access: Default::default(),
            },
            Route {
                host: None,
                path: None,
                action: RouteAction::Respond {
                    status: 200,
                    body: "ok\n".into(),
                    location: None,
                },
                max_request_body: None,
                access: Default::default(),
            },
        ]
    );
    let app = &config.upstreams["app"];
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
        config.upstreams["api"].servers[0].endpoint,
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
        ["ginx.toml:3:1: unknown field `upstreem`: did you mean `upstream`? (expected one of `bind`, `upstream`, `route`, `tls`, `max_connections`, `max_connections_per_ip`, `max_requests_per_connection`, `max_request_body`, `max_request_headers`, `max_request_line`, `max_h2_control_frames`, `max_request_head`, `max_h2_streams`, `trusted_proxies`, `client_ip_header`, `proxy_protocol`, `allow`, `deny`)"]
    );
    assert_eq!(
        errors(&[("ginx.toml", "[global]\nlog = 1\n")]),
        ["ginx.toml:2:1: unknown field `log`, expected one of `log_level`, `log_format`, `access_log`, `shutdown_delay`, `watch`, `send_timeout`, `shutdown_timeout`, `header_read_timeout`, `resolver`, `resolve_min`, `resolve_max`, `body_read_timeout`, `min_upload_rate`, `max_connections`, `pid_file`"]
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
        ["ginx.toml:2:1: unknown field `retry`, expected one of `balance`, `hash`, `servers`, `connect_timeout`, `read_timeout`, `max_fails`, `fail_timeout`, `eject_on_5xx`, `on_all_down`, `retries`, `retry_on`, `retry_non_idempotent`, `health_check`, `protocol`, `tls_ca`, `tls_server_name`, `tls_verify`, `tunnel_timeout`, `keepalive`"]
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
    let (config, _) = check(&[("ginx.toml", text), ("b.toml", "[x\n")]);
    assert_eq!(config.warnings.len(), 2);
}

pub(super) fn pair(name: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}
