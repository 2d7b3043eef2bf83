//! The `ginx` process under test: started on a temporary directory of
//! configuration files, asked where it listens, watched through its log,
//! signalled, and killed when the test ends.
//!
//! # Where ginx listens
//!
//! Every listener binds port 0, so only ginx knows its ports. It tells them
//! in two places: its log and `/status` (`listeners[].address`). The
//! harness reads `/status`, which is meant to be read by programs; the
//! wording of a log line is not an interface tests should hang on. When the
//! test's configuration has no `[admin]`, the harness adds
//! [`ADMIN`](super::ADMIN) (port 0) to ginx.toml, and again to every
//! ginx.toml the test writes through [`Ginx::write`] or
//! [`Ginx::rename_over`], so that a reload does not take it away.
//!
//! That leaves the admin endpoint's own address, read from the one line
//! ginx logs when it binds it (`admin listening addr=…`, in text or JSON).
//! The alternatives are worse. A port the harness finds free and hands to
//! ginx can be taken in between by any of the tests running in parallel,
//! and the test that loses the race talks to the wrong process or fails for
//! reasons unrelated to what it tests. The sockets in `/proc/PID/fd` do not
//! say which of them is the admin endpoint.
//!
//! This module owns the process and what it publishes about itself. The
//! requests a test sends are [`super::client`]'s; the configuration text is
//! [`super::toml`]'s.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde_json::Value;

use super::toml::{has_admin, with_admin};
use super::{eventually, get, ginx_cli, send, write_file, DEADLINE};

/// A running `ginx` process with its configuration in a temporary directory.
pub struct Ginx {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread that copies ginx's stderr into `log`; it ends when the
    /// pipe closes, after ginx's last line.
    log_reader: std::thread::JoinHandle<()>,
    /// The harness added the admin endpoint to ginx.toml (see the module
    /// doc), and adds it to every ginx.toml written through [`Ginx::write`].
    added_admin: bool,
}

impl Ginx {
    /// Path of the main configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ginx.toml")
    }

    /// Write `ginx.toml` (and any `(relative path, text)` files) and start
    /// ginx, waiting until every listener named in `listeners` is bound.
    pub async fn start(main: &str, files: &[(&str, &str)], listeners: &[&str]) -> Ginx {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("ginx.toml"), main);
        for (path, text) in files {
            write_file(&dir.path().join(path), text);
        }
        Self::start_in(dir, listeners, &[]).await
    }

    /// Start ginx on an existing directory, with extra environment.
    pub async fn start_in(dir: tempfile::TempDir, listeners: &[&str], env: &[(&str, &str)]) -> Ginx {
        let added_admin = add_admin(dir.path());
        let mut command = ginx_cli();
        command
            .arg("-c")
            .arg(dir.path().join("ginx.toml"))
            .env_remove("RUST_LOG")
            .env("GINX_WORKERS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawning ginx");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("GINX_TEST_LOG").is_some() {
                    eprintln!("ginx| {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let ginx = Ginx {
            dir,
            child: Some(child),
            log,
            log_reader,
            added_admin,
        };
        for name in listeners {
            assert!(
                ginx.listener_addr(name).await.is_some(),
                "ginx did not bind listener {name}; log:\n{}",
                ginx.log_text()
            );
        }
        ginx
    }

    /// The address listener `listener` is bound to, as `/status` publishes
    /// it; waits for it up to [`DEADLINE`] (a listener added by a reload is
    /// published just after its `listening` line).
    pub fn addr(&self, listener: &str) -> SocketAddr {
        block_on(|| self.listener_addr(listener)).unwrap_or_else(|| {
            panic!(
                "/status shows no address for listener {listener} (is there an admin endpoint?); log:\n{}",
                self.log_text()
            )
        })
    }

    /// [`Ginx::addr`] from async code: `None` when `/status` shows no
    /// address for `listener` within [`DEADLINE`].
    pub async fn listener_addr(&self, listener: &str) -> Option<SocketAddr> {
        let mut found = None;
        eventually(DEADLINE, async || {
            found = self.published_addr(listener).await;
            found.is_some()
        })
        .await;
        found
    }

    /// The bound address of `listener` in `/status` now, if any.
    async fn published_addr(&self, listener: &str) -> Option<SocketAddr> {
        let status = fetch_status(self.find_admin_addr()?).await?;
        let entry = status["listeners"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == listener)?;
        entry["address"].as_str()?.parse().ok()
    }

    /// The address of the admin endpoint (the latest `admin listening`
    /// line); waits for that line up to [`DEADLINE`].
    pub fn admin_addr(&self) -> SocketAddr {
        block_on(|| eventually(DEADLINE, || self.find_admin_addr().is_some()));
        self.find_admin_addr()
            .unwrap_or_else(|| panic!("no admin listening line; log:\n{}", self.log_text()))
    }

    fn find_admin_addr(&self) -> Option<SocketAddr> {
        let log = self.log.lock().unwrap();
        log.iter().rev().find_map(|line| admin_listening(line))
    }

    /// The `/status` document (asserting it is served).
    pub async fn status(&self) -> Value {
        let reply = get(self.admin_addr(), "/status").await;
        assert_eq!(reply.status, StatusCode::OK);
        serde_json::from_slice(&reply.body).expect("/status is JSON")
    }

    /// Write a file relative to the config directory.
    pub fn write(&self, path: &str, text: &str) {
        write_file(&self.dir.path().join(path), &self.as_written(path, text));
    }

    /// Replace a file by writing a temporary file and renaming it over.
    pub fn rename_over(&self, path: &str, text: &str) {
        let target = self.dir.path().join(path);
        let tmp = target.with_extension("tmp-edit");
        std::fs::write(&tmp, self.as_written(path, text)).unwrap();
        std::fs::rename(&tmp, &target).unwrap();
    }

    /// `text` as the harness writes it to `path`: a new ginx.toml keeps the
    /// admin endpoint the harness added.
    fn as_written(&self, path: &str, text: &str) -> String {
        let added = if self.added_admin && path == "ginx.toml" {
            with_admin(text)
        } else {
            None
        };
        added.unwrap_or_else(|| text.to_owned())
    }

    /// Number of log lines so far (to wait for lines after a point).
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Log lines from index `from` on.
    pub fn log_since(&self, from: usize) -> Vec<String> {
        self.log.lock().unwrap()[from..].to_vec()
    }

    /// Wait for a log line containing `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_since(0, needle, timeout).await
    }

    /// Wait for a log line containing `needle` at index `from` or later.
    pub async fn wait_log_since(&self, from: usize, needle: &str, timeout: Duration) -> bool {
        eventually(timeout, || {
            self.log.lock().unwrap()[from..]
                .iter()
                .any(|l| l.contains(needle))
        })
        .await
    }

    /// Wait until generation `n` is applied: logged (so the lines logged
    /// with it are in [`Ginx::log_text`]), and published in `/status` when
    /// the admin endpoint answers (so [`Ginx::addr`] sees its listeners).
    pub async fn wait_generation(&self, n: u64) -> bool {
        self.wait_log(&format!("generation={n} "), DEADLINE).await
            && eventually(DEADLINE, async || {
                let status = match self.find_admin_addr() {
                    Some(admin) => fetch_status(admin).await,
                    None => None,
                };
                status.is_none_or(|s| s["generation"].as_u64() >= Some(n))
            })
            .await
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Send a signal (by name: "HUP", "TERM", ...) to ginx.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Wait for ginx to exit; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let mut code = None;
        eventually(timeout, || match child.try_wait().unwrap() {
            Some(status) => {
                code = status.code();
                true
            }
            None => false,
        })
        .await;
        // An exit is seen before the reader has copied ginx's last lines
        // (a test reading the log at once found it empty under load). Wait
        // for the pipe's end, bounded: a process ginx started (an upgrade's
        // new binary) may hold the pipe open.
        if code.is_some() {
            eventually(Duration::from_secs(5), || self.log_reader.is_finished()).await;
        }
        code
    }

    /// Peak resident memory of ginx in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Ginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Add the admin endpoint to `dir`'s ginx.toml unless a `.toml` file in
/// `dir` already has one (an included file may); whether it was added.
fn add_admin(dir: &Path) -> bool {
    let main = dir.join("ginx.toml");
    let Ok(text) = std::fs::read_to_string(&main) else {
        return false;
    };
    if defines_admin(dir) {
        return false;
    }
    let Some(with) = with_admin(&text) else {
        return false;
    };
    // Through a symbolic link, as ginx reads it.
    std::fs::write(&main, with).unwrap();
    true
}

/// Whether a `.toml` file in `dir` or below (not through links) has an
/// `admin` table.
fn defines_admin(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.map_while(Result::ok).any(|entry| {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => defines_admin(&path),
            Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "toml") => {
                has_admin(&std::fs::read_to_string(&path).unwrap_or_default())
            }
            _ => false,
        }
    })
}

/// The address in an `admin listening` log line, in ginx's text format
/// (`addr=127.0.0.1:9901`) or its JSON format (`"addr":"127.0.0.1:9901"`).
fn admin_listening(line: &str) -> Option<SocketAddr> {
    if !line.contains("admin listening") {
        return None;
    }
    let (_, value) = line
        .split_once("addr=")
        .or_else(|| line.split_once("\"addr\":\""))?;
    let end = value
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

/// `/status` from the admin endpoint at `admin`; `None` when it cannot be
/// had (not listening yet, or gone).
async fn fetch_status(admin: SocketAddr) -> Option<Value> {
    let req = Request::get("/status")
        .header("host", "localhost")
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = send(admin, req).await.ok()?;
    (reply.status == StatusCode::OK)
        .then(|| serde_json::from_slice(&reply.body).ok())
        .flatten()
}

/// Run the future `make` makes to its end on a runtime of its own, on a
/// thread of its own: [`Ginx::addr`] is sync and called from tests on
/// either runtime flavour, where blocking on the test's own runtime would
/// panic. (The future is made on that thread, so it need not be `Send`.)
fn block_on<F, T>(make: impl FnOnce() -> F + Send) -> T
where
    F: Future<Output = T>,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(make())
            })
            .join()
            .unwrap()
    })
}

/// The statuses of a JSON access log's lines so far (`access_log = { path
/// = ..., format = "json" }`).
pub fn logged_statuses(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()?["status"].as_u64())
        .collect()
}
