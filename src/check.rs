//! `ginx --check`: validate a configuration and explain what is wrong.
//!
//! This module owns how a check's result is shown, never what is checked
//! (that is [`crate::config`]):
//!
//! - text (the default): every problem as `FILE:LINE:COL: message`, the line
//!   editors and CI annotate, followed rustc-style by the source line and a
//!   caret under the problem; warnings after the errors as
//!   `FILE:LINE:COL: warning: message`; a summary line at the end;
//! - JSON (`--format json`): one document on stdout, for tools;
//! - `--diff`: what applying the local files would change in a running ginx,
//!   whose configuration is fetched from its admin endpoint.
//!
//! Every function here returns what to print instead of printing, so the
//! output is tested without spawning a process; [`run`] does the printing.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{self, Config, Diff, Error, Errors, Source};

/// How long `--diff` waits for the admin endpoint, to connect and then to
/// answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How `--check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Lines for people: located messages with the source line and a caret.
    #[default]
    Text,
    /// One JSON document on stdout, for tools.
    Json,
}

/// What `ginx --check` was asked to do.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The main configuration file.
    pub config: &'a Path,
    /// Output format.
    pub format: Format,
    /// `--diff`: compare with the configuration a running ginx serves.
    pub diff: bool,
    /// `--admin ADDR`: where that ginx's admin endpoint is, instead of the
    /// local configuration's `[admin] bind`.
    pub admin: Option<&'a str>,
}

/// What a check prints: `stdout` and `stderr` texts and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// For stdout: the summary, the JSON document or the diff.
    pub(crate) stdout: String,
    /// For stderr: the problems.
    pub(crate) stderr: String,
    /// True when the process should exit 0.
    pub(crate) ok: bool,
}

/// Run `--check` as `options` says, print its report and return the exit
/// code: 1 when the configuration has errors (or the diff could not be made).
pub fn run(options: &Options<'_>) -> ExitCode {
    let loaded = config::load(options.config);
    let report = match (options.diff, options.format) {
        (true, _) => diff(options.config, &loaded, options.admin),
        (false, Format::Text) => text(options.config, &loaded),
        (false, Format::Json) => Report {
            stdout: format!("{:#}\n", json(options.config, &loaded)),
            stderr: String::new(),
            ok: loaded.is_ok(),
        },
    };
    print(&report)
}

/// `ginx schema`: the JSON Schema of configuration files on stdout.
pub fn print_schema() -> ExitCode {
    print(&Report {
        stdout: format!("{:#}\n", config::schema()),
        stderr: String::new(),
        ok: true,
    })
}

/// Print a report and turn it into an exit code.
pub(crate) fn print(report: &Report) -> ExitCode {
    // A closed pipe (`ginx --check | head`) is not worth a panic.
    let _ = std::io::stderr().write_all(report.stderr.as_bytes());
    let _ = std::io::stdout().write_all(report.stdout.as_bytes());
    match report.ok {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// The text report of a load: problems with snippets on stderr; the summary
/// (success) on stdout or the failure line on stderr.
pub(crate) fn text(path: &Path, loaded: &Result<Config, Errors>) -> Report {
    let mut stderr = String::new();
    match loaded {
        Ok(config) => {
            problems(&mut stderr, &[], &config.warnings, &config.sources);
            Report {
                stdout: format!("{}\n", summary_line(path, config)),
                stderr,
                ok: true,
            }
        }
        Err(errors) => {
            let list: Vec<Error> = errors.iter().cloned().collect();
            problems(&mut stderr, &list, &errors.warnings, &errors.sources);
            stderr.push_str(&format!(
                "ginx: configuration {} test failed ({} error(s))\n",
                path.display(),
                errors.len()
            ));
            Report {
                stdout: String::new(),
                stderr,
                ok: false,
            }
        }
    }
}

/// `ginx: configuration PATH is ok (2 listeners, 1 upstream, 3 servers)`.
pub(crate) fn summary_line(path: &Path, config: &Config) -> String {
    format!(
        "ginx: configuration {} is ok ({}, {}, {})",
        path.display(),
        count(config.listeners.len(), "listener"),
        count(config.upstreams.len(), "upstream"),
        count(config.server_count(), "server")
    )
}

/// Errors, then warnings, each with its snippet and a blank line after it.
fn problems(out: &mut String, errors: &[Error], warnings: &[Error], sources: &[Source]) {
    for error in errors {
        out.push_str(&format!("{error}\n"));
        snippet(out, error, sources);
    }
    for warning in warnings {
        out.push_str(&format!("{}\n", warning_line(warning)));
        snippet(out, warning, sources);
    }
}

fn snippet(out: &mut String, problem: &Error, sources: &[Source]) {
    if let Some(snippet) = problem.snippet(sources) {
        out.push_str(&snippet);
        out.push_str("\n\n");
    }
}

/// `FILE:LINE:COL: warning: message` (or `PATH: warning: message`).
pub(crate) fn warning_line(warning: &Error) -> String {
    match warning.location() {
        Some(location) => format!("{location}: warning: {}", warning.message()),
        None => format!("{}: warning: {}", warning.path().display(), warning.message()),
    }
}

/// "1 listener", "2 listeners".
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// The JSON report of a load:
///
/// ```json
/// {"ok": false, "config": "ginx.toml",
///  "errors": [{"file": "ginx.toml", "line": 3, "column": 12,
///              "message": "...", "severity": "error"}],
///  "warnings": [...same, "severity": "warning"],
///  "summary": {"listeners": 1, "upstreams": 1, "servers": 2}}
/// ```
///
/// `line` and `column` are null for a problem with a whole file; `summary`
/// is null when the configuration has errors.
pub(crate) fn json(path: &Path, loaded: &Result<Config, Errors>) -> Value {
    let entries = |list: &[Error], severity: &str| -> Vec<Value> {
        list.iter()
            .map(|e| {
                let location = e.location();
                json!({
                    "file": e.path().display().to_string(),
                    "line": location.map(|l| l.line),
                    "column": location.map(|l| l.column),
                    "message": e.message(),
                    "severity": severity,
                })
            })
            .collect()
    };
    match loaded {
        Ok(config) => json!({
            "ok": true,
            "config": path.display().to_string(),
            "errors": [],
            "warnings": entries(&config.warnings, "warning"),
            "summary": {
                "listeners": config.listeners.len(),
                "upstreams": config.upstreams.len(),
                "servers": config.server_count(),
            },
        }),
        Err(errors) => {
            let list: Vec<Error> = errors.iter().cloned().collect();
            json!({
                "ok": false,
                "config": path.display().to_string(),
                "errors": entries(&list, "error"),
                "warnings": entries(&errors.warnings, "warning"),
                "summary": null,
            })
        }
    }
}

/// `--check --diff`: validate the local configuration (errors: as
/// `--check`), fetch the running one from the admin endpoint at `admin` (or
/// the local `[admin] bind`), and list what applying the local files would
/// change, or `no changes`.
pub(crate) fn diff(path: &Path, loaded: &Result<Config, Errors>, admin: Option<&str>) -> Report {
    let local = match loaded {
        Ok(local) => local,
        Err(_) => return text(path, loaded),
    };
    let mut stderr = String::new();
    problems(&mut stderr, &[], &local.warnings, &local.sources);
    let fail = |mut stderr: String, message: String| {
        stderr.push_str(&format!("ginx: {message}\n"));
        Report {
            stdout: String::new(),
            stderr,
            ok: false,
        }
    };
    let addr = match (admin, &local.admin) {
        (Some(addr), _) => addr.to_owned(),
        (None, Some(a)) => a.bind.to_string(),
        (None, None) => {
            return fail(
                stderr,
                format!(
                    "no admin address: {} has no [admin] table; pass --admin HOST:PORT, or add [admin] with bind = \"127.0.0.1:9901\"",
                    path.display()
                ),
            )
        }
    };
    let running = match fetch_running(&addr) {
        Ok(running) => running,
        Err(e) => return fail(stderr, e),
    };
    let main = running.config.clone();
    let running = match config::load_from_texts(&main, running.texts()) {
        Ok(running) => running,
        Err(errors) => {
            return fail(
                stderr,
                format!("the configuration running at {addr} does not load here:\n{errors}"),
            )
        }
    };
    let diff = Diff::between(&running, local);
    let stdout = match diff.is_empty() {
        true => "no changes\n".to_owned(),
        false => format!("{diff}\n"),
    };
    Report {
        stdout,
        stderr,
        ok: true,
    }
}

/// The answer of `GET /config` on the admin endpoint: the main path as the
/// running ginx loaded it and the text of every configuration file (never
/// PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Running {
    /// The main file's path, as loaded.
    pub(crate) config: PathBuf,
    /// Every configuration file.
    pub(crate) sources: Vec<RunningSource>,
}

/// One file of [`Running`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct RunningSource {
    /// As loaded.
    pub(crate) path: PathBuf,
    /// Its text.
    pub(crate) text: String,
}

impl Running {
    /// Parse the JSON body of `GET /config`.
    ///
    /// # Errors
    ///
    /// The body is not that JSON document.
    pub(crate) fn parse(body: &str) -> Result<Running, String> {
        serde_json::from_str(body).map_err(|e| format!("unexpected answer to GET /config: {e}"))
    }

    /// The texts by path.
    pub(crate) fn texts(self) -> BTreeMap<PathBuf, String> {
        self.sources.into_iter().map(|s| (s.path, s.text)).collect()
    }
}

/// `GET /config` on the admin endpoint at `addr`.
fn fetch_running(addr: &str) -> Result<Running, String> {
    let body = http_get(addr, "/config", ADMIN_TIMEOUT)?;
    Running::parse(&body).map_err(|e| format!("{addr}: {e}"))
}

/// A blocking HTTP/1.1 `GET` of `path` at `addr` (`HOST:PORT`, optionally
/// written `http://HOST:PORT`) returning the body of a 200 answer. Enough
/// for the admin endpoint: no TLS, no redirects, one request per connection.
///
/// # Errors
///
/// What went wrong, naming the address: resolving, connecting, a timeout, a
/// status other than 200 or an unreadable answer.
pub(crate) fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let host = addr.strip_prefix("http://").unwrap_or(addr).trim_end_matches('/');
    let unreachable = |e: &dyn std::fmt::Display| format!("cannot reach the admin endpoint at {host}: {e}");
    let targets: Vec<SocketAddr> = host
        .to_socket_addrs()
        .map_err(|e| unreachable(&format!("{e} (expected HOST:PORT, like 127.0.0.1:9901)")))?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for target in targets {
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        return Err(match last_error {
            Some(e) => unreachable(&e),
            None => unreachable(&"no address"),
        });
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| unreachable(&e))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| unreachable(&e))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| unreachable(&e))?;
    parse_response(&answer).map_err(|e| format!("admin endpoint at {host}: GET {path}: {e}"))
}

/// The body of a 200 HTTP/1.1 response read to its end (the connection was
/// closed by the server); chunked bodies are decoded.
fn parse_response(answer: &[u8]) -> Result<String, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete answer (no end of headers)")?;
    let head = std::str::from_utf8(&answer[..split]).map_err(|_| "answer headers are not text")?;
    let body = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("answered `{status_line}`"));
    }
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())
}

/// Decode a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size `{size_text}`"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunked body".to_owned());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serve one connection with `answer`, returning the address and what
    /// the client sent.
    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, handle)
    }

    #[test]
    fn http_get_plain_and_chunked() {
        let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(http_get(&addr, "/config", ADMIN_TIMEOUT).unwrap(), "hello");
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /config HTTP/1.1\r\n"), "{request}");
        assert!(request.contains(&format!("Host: {addr}\r\n")), "{request}");

        let (addr, _) = serve_once(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n");
        assert_eq!(
            http_get(&format!("http://{addr}/"), "/config", ADMIN_TIMEOUT).unwrap(),
            "hello world"
        );

        let (addr, _) = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            http_get(&addr, "/config", ADMIN_TIMEOUT).unwrap_err(),
            format!("admin endpoint at {addr}: GET /config: answered `HTTP/1.1 404 Not Found`")
        );
    }

    #[test]
    fn http_get_unreachable_names_the_address() {
        // A port nobody listens on: bind one, then free it.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let e = http_get(&addr, "/config", ADMIN_TIMEOUT).unwrap_err();
        assert!(
            e.starts_with(&format!("cannot reach the admin endpoint at {addr}: ")),
            "{e}"
        );
        let e = http_get("no-port", "/config", ADMIN_TIMEOUT).unwrap_err();
        assert!(e.contains("expected HOST:PORT"), "{e}");
    }

    #[test]
    fn running_config_from_json() {
        let running = Running::parse(
            r#"{"config": "/etc/ginx/ginx.toml", "sources": [{"path": "/etc/ginx/ginx.toml", "text": "x = 1\n"}]}"#,
        )
        .unwrap();
        assert_eq!(running.config, PathBuf::from("/etc/ginx/ginx.toml"));
        assert_eq!(
            running.texts()[Path::new("/etc/ginx/ginx.toml")],
            "x = 1
"
        );
        assert!(Running::parse("{}")
            .unwrap_err()
            .starts_with("unexpected answer to GET /config: "));
    }

    #[test]
    fn diff_against_a_running_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        let local_text = "include = [\"conf.d/*.toml\"]\n[admin]\n[listener.web]\nbind = \"127.0.0.1:80\"\nupstream = \"app\"\n";
        write(
            tmp.path(),
            &[
                ("ginx.toml", local_text),
                (
                    "conf.d/app.toml",
                    "[upstream.app]\nservers = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n",
                ),
            ],
        );
        let main = tmp.path().join("ginx.toml");
        let local = config::load(&main).unwrap();
        // What the running ginx answers: the same main file, one server less
        // (and no local-only include).
        let texts = BTreeMap::from([
            (main.clone(), local_text.to_owned()),
            (
                tmp.path().join("conf.d/app.toml"),
                "[upstream.app]\nservers = [\"127.0.0.1:9001\"]\n".to_owned(),
            ),
        ]);
        let running = config::load_from_texts(&main, texts).unwrap();
        assert_eq!(
            Diff::between(&running, &local).to_string(),
            "+server app/127.0.0.1:9002"
        );
        assert!(Diff::between(&local, &local).is_empty());

        // No admin address anywhere: a clear error.
        let no_admin = local_text.replace("[admin]\n", "");
        write(tmp.path(), &[("ginx.toml", &no_admin)]);
        let report = diff(&main, &config::load(&main), None);
        assert!(!report.ok);
        assert!(
            report.stderr.starts_with("ginx: no admin address: "),
            "{}",
            report.stderr
        );
        // An admin address nobody answers on: a clear error.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let report = diff(&main, &config::load(&main), Some(&addr));
        assert!(!report.ok);
        assert!(
            report
                .stderr
                .starts_with(&format!("ginx: cannot reach the admin endpoint at {addr}: ")),
            "{}",
            report.stderr
        );
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    #[test]
    fn text_report_has_carets_and_warnings() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[(
                "ginx.toml",
                "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"ap\"\n\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n[upstream.api]\nservers = [\"127.0.0.1:3\"]\n",
            )],
        );
        let main = tmp.path().join("ginx.toml");
        let report = text(&main, &config::load(&main));
        assert!(!report.ok);
        assert_eq!(report.stdout, "");
        let m = main.display();
        assert_eq!(
            report.stderr,
            format!(
                "{m}:3:12: unknown upstream `ap`: did you mean `app`?\n  |\n3 | upstream = \"ap\"\n  |            ^^^^\n\n\
                 ginx: configuration {m} test failed (1 error(s))\n"
            )
        );
    }

    /// Valid, with one warning: upstream `old` is not used.
    const WITH_UNUSED_UPSTREAM: &str = "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n[upstream.old]\nservers = [\"127.0.0.1:3\"]\n";

    #[test]
    fn text_report_success_with_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &[("ginx.toml", WITH_UNUSED_UPSTREAM)]);
        let main = tmp.path().join("ginx.toml");
        let report = text(&main, &config::load(&main));
        assert!(report.ok);
        let m = main.display();
        assert_eq!(
            report.stdout,
            format!("ginx: configuration {m} is ok (1 listener, 2 upstreams, 2 servers)\n")
        );
        assert_eq!(
            report.stderr,
            format!(
                "{m}:6:1: warning: upstream `old` is not used by any listener or route: reference it with upstream = \"old\" or remove it\n  |\n6 | [upstream.old]\n  | ^^^^^^^^^^^^^^\n\n"
            )
        );
    }

    #[test]
    fn json_report() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.toml");
        let value = json(&missing, &config::load(&missing));
        assert_eq!(value["ok"], false);
        assert_eq!(value["summary"], Value::Null);
        let error = &value["errors"][0];
        assert_eq!(error["file"], missing.display().to_string());
        assert_eq!(error["line"], Value::Null);
        assert_eq!(error["column"], Value::Null);
        assert_eq!(error["severity"], "error");
        assert!(error["message"].as_str().unwrap().starts_with("cannot read file"));

        write(tmp.path(), &[("ginx.toml", WITH_UNUSED_UPSTREAM)]);
        let main = tmp.path().join("ginx.toml");
        let value = json(&main, &config::load(&main));
        assert_eq!(value["config"], main.display().to_string());
        assert_eq!(value["ok"], true);
        assert_eq!(value["summary"]["servers"], 2);
        assert_eq!(value["errors"], json!([]));
        assert_eq!(
            value["warnings"],
            json!([{
                "file": main.display().to_string(),
                "line": 6,
                "column": 1,
                "message": "upstream `old` is not used by any listener or route: reference it with upstream = \"old\" or remove it",
                "severity": "warning",
            }])
        );
    }
}
