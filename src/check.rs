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
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;

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
    let loaded = load(options.config);
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

/// The configuration at `path` as a reload would take it: loaded,
/// validated, and its TLS built, so that what rustls refuses although
/// validation accepted it is an error here too. Binding is left out: the
/// addresses may be held by the running ginx.
fn load(path: &Path) -> Result<Config, Errors> {
    let config = config::load(path)?;
    match crate::table::prepare(&config, None) {
        Ok(_) => Ok(config),
        Err(mut errors) => {
            errors.warnings = config.warnings;
            Err(errors)
        }
    }
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
/// hyper speaks the protocol, on a runtime of its own: `--check` runs before
/// (and without) the proxy's runtimes.
///
/// # Errors
///
/// What went wrong, naming the address: resolving, connecting, a timeout
/// (`timeout` to connect, then `timeout` for the whole exchange), a status
/// other than 200 or an unreadable answer.
pub(crate) fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let host = addr.strip_prefix("http://").unwrap_or(addr).trim_end_matches('/');
    let unreachable = |e: &dyn std::fmt::Display| format!("cannot reach the admin endpoint at {host}: {e}");
    let targets: Vec<SocketAddr> = host
        .to_socket_addrs()
        .map_err(|e| unreachable(&format!("{e} (expected HOST:PORT, like 127.0.0.1:9901)")))?
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(&e))?;
    runtime.block_on(async {
        let stream = connect(&targets, timeout).await.map_err(|e| unreachable(&e))?;
        let exchange = tokio::time::timeout(timeout, get(stream, host, path));
        match exchange.await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(Failure::Unreachable(e))) => Err(unreachable(&e)),
            Ok(Err(Failure::Answer(e))) => Err(format!("admin endpoint at {host}: GET {path}: {e}")),
            Err(_) => Err(unreachable(&format!("no answer within {timeout:?}"))),
        }
    })
}

/// Connect to the first of `targets` that accepts within `timeout`.
async fn connect(targets: &[SocketAddr], timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last_error = None;
    for target in targets {
        match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => last_error = Some(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no address")))
}

/// Why [`get`] failed: the exchange itself, or what came back.
enum Failure {
    /// Sending the request or reading the answer failed.
    Unreachable(String),
    /// An answer came, but not a 200 with a text body.
    Answer(String),
}

/// `GET path` on `stream`: the body of a 200 answer, as text.
async fn get(stream: TcpStream, host: &str, path: &str) -> Result<String, Failure> {
    let failure = |e: hyper::Error| match e.is_parse() || e.is_incomplete_message() {
        true => Failure::Answer(e.to_string()),
        false => Failure::Unreachable(e.to_string()),
    };
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        // `Host:` as curl writes it rather than hyper's `host:`: the request
        // stays byte for byte what the hand-written client sent before.
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(failure)?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::ACCEPT, "application/json")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(failure)?;
    if response.status() != StatusCode::OK {
        return Err(Failure::Answer(format!("answered `{}`", status_line(&response))));
    }
    let body = response.into_body().collect().await.map_err(failure)?.to_bytes();
    String::from_utf8(body.into()).map_err(|_| Failure::Answer("the body is not UTF-8".to_owned()))
}

/// `HTTP/1.1 404 Not Found`: the status line as the server sent it.
fn status_line<B>(response: &Response<B>) -> String {
    let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => String::from_utf8_lossy(reason.as_bytes()).into_owned(),
        None => response
            .status()
            .canonical_reason()
            .unwrap_or_default()
            .to_owned(),
    };
    format!("{:?} {} {reason}", response.version(), response.status().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
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
