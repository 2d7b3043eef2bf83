//! `ginx --check` as people and tools see it: carets under the problem,
//! "did you mean", semantic errors, warnings that do not fail, JSON output;
//! and `ginx schema`.

mod support;

use support::*;

const MAIN: &str =
    "include = [\"conf.d/*.toml\"]\n\n[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n";
const APP: &str = "[upstream.app]\nservers = [\"127.0.0.1:9001\"]\n";

#[test]
fn errors_show_the_line_and_a_caret() {
    let dir = dir_with(&[
        ("ginx.toml", MAIN),
        ("conf.d/app.toml", APP),
        (
            "conf.d/api.toml",
            "[listener.api]\nbind = \"127.0.0.1:8081\"\nupstream = \"ap\"\n",
        ),
    ]);
    let (code, stdout, stderr) = check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(
            "conf.d/api.toml:3:12: unknown upstream `ap`: did you mean `app`?\n  |\n3 | upstream = \"ap\"\n  |            ^^^^\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("ginx: configuration ginx.toml test failed (1 error(s))\n"),
        "{stderr}"
    );
}

#[test]
fn a_misspelt_key_gets_a_suggestion() {
    let dir = dir_with(&[(
        "ginx.toml",
        "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstreem = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:9001\"]\n",
    )]);
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1);
    let first = stderr.lines().next().unwrap();
    assert_eq!(
        first,
        "ginx.toml:3:1: unknown field `upstreem`: did you mean `upstream`? (expected one of `bind`, `upstream`, `route`, `tls`, `max_connections`, `max_connections_per_ip`, `max_requests_per_connection`, `max_request_body`, `max_request_headers`, `max_request_line`, `max_h2_control_frames`, `max_request_head`, `max_h2_streams`, `trusted_proxies`, `client_ip_header`, `proxy_protocol`, `allow`, `deny`)"
    );
    assert!(
        stderr.contains("3 | upstreem = \"app\"\n  | ^^^^^^^^\n"),
        "{stderr}"
    );
}

#[test]
fn a_route_shadowed_by_an_earlier_one_is_an_error() {
    let dir = dir_with(&[(
        "ginx.toml",
        &format!(
            "[listener.web]\nbind = \"127.0.0.1:8080\"\n\n[[listener.web.route]]\npath = \"/api/\"\nupstream = \"app\"\n\n[[listener.web.route]]\npath = \"/api/\"\nrespond = {{ status = 404 }}\n{APP}"
        ),
    )]);
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "ginx.toml:8:1: this route can never match: the route at ginx.toml:4:1 matches the same path `/api/` (any host) and comes first"
        ),
        "{stderr}"
    );
}

#[test]
fn two_listeners_on_one_address() {
    let dir = dir_with(&[(
        "ginx.toml",
        &format!(
            "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n[listener.other]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n{APP}"
        ),
    )]);
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "ginx.toml:5:8: bind address 127.0.0.1:8080 is already used by listener `web` at ginx.toml:2:8"
        ),
        "{stderr}"
    );
}

#[test]
fn warnings_do_not_fail_the_check() {
    let dir = dir_with(&[
        ("ginx.toml", MAIN),
        (
            "conf.d/app.toml",
            &format!("{APP}[upstream.spare]\nservers = [\"127.0.0.1:9002\"]\n"),
        ),
    ]);
    let (code, stdout, stderr) = check(dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "ginx: configuration ginx.toml is ok (1 listener, 2 upstreams, 2 servers)\n"
    );
    assert_eq!(
        stderr,
        "conf.d/app.toml:3:1: warning: upstream `spare` is not used by any listener or route: reference it with upstream = \"spare\" or remove it\n  |\n3 | [upstream.spare]\n  | ^^^^^^^^^^^^^^^^\n\n"
    );
}

#[test]
fn json_output_for_tools() {
    let dir = dir_with(&[
        ("ginx.toml", MAIN),
        ("conf.d/app.toml", "[upstream.app]\nservers = [\"127.0.0.1\"]\n"),
    ]);
    let (code, stdout, stderr) = run_ginx(dir.path(), &["--check", "--format", "json"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["config"], "ginx.toml");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["file"], "conf.d/app.toml");
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["column"], 12);
    assert_eq!(errors[0]["severity"], "error");
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid server address `127.0.0.1`: missing port"));

    write_file(&dir.path().join("conf.d/app.toml"), APP);
    let (code, stdout, _) = run_ginx(dir.path(), &["--check", "--format", "json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["summary"],
        serde_json::json!({"listeners": 1, "upstreams": 1, "servers": 1})
    );
    assert_eq!(report["warnings"], serde_json::json!([]));

    // A missing file: no position.
    let (code, stdout, _) = run_ginx(dir.path(), &["--check", "--format", "json", "-c", "nope.toml"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["errors"][0]["file"], "nope.toml");
    assert_eq!(report["errors"][0]["line"], serde_json::Value::Null);
}

#[test]
fn diff_needs_a_reachable_admin_endpoint() {
    let dir = dir_with(&[("ginx.toml", MAIN), ("conf.d/app.toml", APP)]);
    let (code, stdout, stderr) = run_ginx(dir.path(), &["--check", "--diff"]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(stderr.starts_with("ginx: no admin address: "), "{stderr}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (code, _, stderr) = run_ginx(dir.path(), &["--check", "--diff", "--admin", &closed]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!("ginx: cannot reach the admin endpoint at {closed}: ")),
        "{stderr}"
    );

    // Errors in the local files come first, as with --check.
    write_file(
        &dir.path().join("conf.d/app.toml"),
        "[upstream.app]\nservers = []\n",
    );
    let (code, _, stderr) = run_ginx(dir.path(), &["--check", "--diff", "--admin", &closed]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("conf.d/app.toml:2:11: upstream `app` has no servers"),
        "{stderr}"
    );
}

#[test]
fn schema_describes_the_configuration_file() {
    // No configuration file needed.
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_ginx(dir.path(), &["schema"]);
    assert_eq!(code, 0, "{stderr}");
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for key in ["listener", "upstream", "global", "admin", "include"] {
        assert!(properties.contains_key(key), "no {key} in {properties:?}");
    }
    // Durations are strings.
    let defs = &schema["$defs"];
    assert_eq!(defs["Duration"]["type"], "string");
    let global = &defs["Global"]["properties"];
    let timeout = serde_json::to_string(&global["shutdown_timeout"]).unwrap();
    assert!(timeout.contains("#/$defs/Duration"), "{timeout}");
    let body = serde_json::to_string(&global["body_read_timeout"]).unwrap();
    assert!(body.contains("#/$defs/Duration"), "{body}");
    assert_eq!(global["min_upload_rate"]["type"], "string");
    // Unknown keys are rejected, as ginx does.
    assert_eq!(defs["Listener"]["additionalProperties"], false);
}

#[test]
fn unknown_keys_are_reported_with_the_other_errors() {
    let dir = dir_with(&[
        ("ginx.toml", MAIN),
        ("conf.d/app.toml", APP),
        (
            "conf.d/api.toml",
            "[global]\nlog_levl = \"info\"\n\n[listener.api]\nbind = \"127.0.0.1:8081\"\nupstream = \"ap\"\nlistn = [\n  \"a\",\n  \"b\",\n]\n\n[[listener.api.route]]\npath = \"/v1/\"\nupstream = \"app\"\n\n[[listener.api.route]]\npath = \"/v1/\"\nupstream = \"app\"\n",
        ),
    ]);
    let (code, stdout, stderr) = run_ginx(dir.path(), &["--check", "--format", "json"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let errors: Vec<(String, u64, u64, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["file"].as_str().unwrap().to_owned(),
                e["line"].as_u64().unwrap(),
                e["column"].as_u64().unwrap(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let at: Vec<(&str, u64, u64)> = errors.iter().map(|(f, l, c, _)| (f.as_str(), *l, *c)).collect();
    assert_eq!(
        at,
        [
            ("conf.d/api.toml", 2, 1),
            ("conf.d/api.toml", 6, 12),
            ("conf.d/api.toml", 7, 1),
            ("conf.d/api.toml", 16, 1),
        ],
        "{errors:?}"
    );
    assert!(errors[0]
        .3
        .starts_with("unknown field `log_levl`: did you mean `log_level`? (expected one of `log_level`,"));
    assert!(errors[1]
        .3
        .starts_with("unknown upstream `ap`: did you mean `app`?"));
    assert!(
        errors[2]
            .3
            .starts_with("unknown field `listn`, expected one of `bind`,"),
        "{errors:?}"
    );
    assert!(errors[3]
        .3
        .starts_with("this route can never match: the route at conf.d/api.toml:12:1"));

    // As text, the unknown key is shown in the file as written.
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("conf.d/api.toml:2:1: unknown field `log_levl`: did you mean `log_level`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 | log_levl = \"info\"\n  | ^^^^^^^^\n"),
        "{stderr}"
    );
    assert!(stderr.ends_with("test failed (4 error(s))\n"), "{stderr}");
}
