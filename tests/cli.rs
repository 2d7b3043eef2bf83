//! The command line: `--check` (every error class, with FILE:LINE:COL),
//! `--version`, and exit codes.

mod support;

use support::*;

const GOOD: &str = r#"
include = ["conf.d/*.toml"]

[listener.web]
bind = "127.0.0.1:8080"
upstream = "app"

[listener.admin]
bind = "127.0.0.1:8081"
upstream = "app"
"#;

#[test]
fn version() {
    let out = ginx_cli().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ginx {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_ok_prints_a_summary_and_binds_nothing() {
    // The port is taken: --check must not try to bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let main = GOOD.replace("127.0.0.1:8080", &taken.local_addr().unwrap().to_string());
    let dir = dir_with(&[
        ("ginx.toml", &main),
        (
            "conf.d/app.toml",
            "[upstream.app]\nservers = [\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", weight = 2 }]\n",
        ),
        (
            "conf.d/api.toml",
            "[upstream.api]\nservers = [\"http://127.0.0.1:9003\"]\n",
        ),
    ]);
    let (code, stdout, stderr) = check(dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "ginx: configuration ginx.toml is ok (2 listeners, 2 upstreams, 3 servers)"
    );
    // -t is the nginx-style alias.
    let out = ginx_cli()
        .current_dir(dir.path())
        .args(["-t", "--config", "ginx.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn check_reports_every_error_of_every_file() {
    let dir = dir_with(&[
        ("ginx.toml", GOOD),
        // A syntax error in one file ...
        ("conf.d/a.toml", "[upstream.app\nservers = []\n"),
        // ... does not hide the semantic errors of another.
        (
            "conf.d/b.toml",
            "[upstream.api]\nservers = [\"127.0.0.1:9001\"]\nconnect_timeout = \"5 parsecs\"\n\n[upstream.bad]\nservers = [\"127.0.0.1\", { addr = \"127.0.0.1:1\", weight = 0 }]\n",
        ),
    ]);
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(
        has("conf.d/a.toml:1:"),
        "syntax error located in a.toml:\n{stderr}"
    );
    assert!(has("conf.d/b.toml:3:19: "), "bad duration:\n{stderr}");
    assert!(has("conf.d/b.toml:6:12: "), "server without a port:\n{stderr}");
    assert!(has("conf.d/b.toml:6:"), "weight 0:\n{stderr}");
    assert!(stderr.lines().count() >= 4, "{stderr}");
}

#[test]
fn check_error_classes() {
    // (files, expected stderr line prefix, expected fragment)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        (
            &[("ginx.toml", "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"nope\"\n")],
            "ginx.toml:3:12: ",
            "nope",
        ),
        (
            &[("ginx.toml", "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\nbogus = 1\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n")],
            "ginx.toml:4:1: ",
            "bogus",
        ),
        (
            &[
                ("ginx.toml", "include = [\"conf.d/*.toml\"]\n[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n"),
                ("conf.d/dup.toml", "\n[upstream.app]\nservers = [\"127.0.0.1:3\"]\n"),
            ],
            "conf.d/dup.toml:2:",
            "ginx.toml:5:",
        ),
        (
            &[("ginx.toml", "[listener.web]\nbind = \"localhost\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n")],
            "ginx.toml:2:8: ",
            "bind",
        ),
        (
            &[("ginx.toml", "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n[upstream.app]\nservers = []\n")],
            "ginx.toml:",
            "server",
        ),
        (
            &[("ginx.toml", "[listener.web]\nbind = \"127.0.0.1:1\"\n[[listener.web.route]]\npath = \"/x\"\nrespond = { status = 99 }\n")],
            "ginx.toml:5:",
            "status",
        ),
        (
            &[("ginx.toml", "include = [\"missing.toml\"]\n[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n")],
            "ginx.toml:1:",
            "missing.toml",
        ),
        (
            &[("ginx.toml", "[global]\nshutdown_timeout = 30\n[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n")],
            "ginx.toml:2:",
            "",
        ),
    ];
    for (files, prefix, fragment) in cases {
        let dir = dir_with(files);
        let (code, _, stderr) = check(dir.path());
        assert_eq!(code, 1, "{files:?} should fail");
        let line = stderr
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stderr}"));
        assert!(line.contains(fragment), "{line:?} should mention {fragment:?}");
    }
}

#[test]
fn missing_config_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1);
    assert!(stderr.starts_with("ginx.toml: "), "{stderr}");
    // Running (not checking) fails the same way, before binding anything.
    let out = ginx_cli().current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ginx.toml: "));
}

#[test]
fn the_shipped_config_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = check(root);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("is ok"));
}
