//! Configuration: files on disk -> a validated [`Config`].
//!
//! This module owns everything between the bytes of `ginx.toml` (plus its
//! includes) and a plain, validated value. It never touches a socket, a
//! runtime or the running proxy: the runtime form is built from a [`Config`]
//! by [`crate::table`], and applying it is [`crate::reload`]'s job.
//!
//! ```text
//! ginx.toml + includes ──load──▶ [(path, text)] ──parse (per file)──▶ raw::File
//!                                                      │ validate (all files together)
//!                                                      ▼
//!                                               Config (this file)
//! ```
//!
//! Every error carries the file, line and column where the problem is, and
//! loading reports *every* error it finds: each file is parsed on its own, so
//! a syntax error in one file does not hide the semantic errors of another.

mod error;
mod load;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{Error, Errors, Location};

/// Load and validate the configuration rooted at `path`, following includes.
///
/// # Errors
///
/// Returns every problem found, each located as `FILE:LINE:COL` (or just the
/// path when the file itself cannot be read).
pub fn load(path: &Path) -> Result<Config, Errors> {
    load::load(path)
}

/// A complete, validated configuration. Plain data: no sockets, no atomics.
///
/// Reload decides whether anything changed by comparing [`Config::sources`]
/// (the texts read), and describes what changed by comparing the parts.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[global]` settings, defaults filled in.
    pub global: Global,
    /// Listeners by name.
    pub listeners: BTreeMap<String, Listener>,
    /// Upstream pools by name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Every file that made up this configuration, main file first, then
    /// includes in the order they were read. Reload compares these texts with
    /// what is on disk to decide whether anything really changed.
    pub sources: Vec<Source>,
    /// Directories to watch: the parent of every source file and every
    /// directory an include glob points into (even if it matched nothing).
    pub watch_dirs: Vec<PathBuf>,
}

/// One configuration file as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Path as given (main file) or as produced by the include glob.
    pub path: PathBuf,
    /// Full text as read.
    pub text: String,
}

/// `[global]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// `log_level`: one of trace, debug, info, warn, error. Default `info`.
    pub log_level: String,
    /// `access_log`: log one line per request. Default `false`.
    pub access_log: bool,
    /// `watch`: reload when configuration files change (file events plus a
    /// slow poll). Default `true`; with `false` only SIGHUP reloads.
    pub watch: bool,
    /// `shutdown_timeout`: how long a graceful shutdown waits for in-flight
    /// requests. Default 30s.
    pub shutdown_timeout: Duration,
    /// `header_read_timeout`: how long a client connection may take to send
    /// a request head, counted from when the connection starts waiting for
    /// it (so it also closes idle keep-alive connections). Default 30s.
    pub header_read_timeout: Duration,
}

/// `[listener.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The `NAME` of `[listener.NAME]`.
    pub name: String,
    /// Address to bind; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Default upstream, used when no route matches.
    pub upstream: Option<String>,
    /// Routes in file order.
    pub routes: Vec<Route>,
}

/// `[[listener.NAME.route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Host the request must be for; `None` matches any host.
    pub host: Option<HostPattern>,
    /// Path prefix; always starts with `/`.
    pub path: Option<String>,
    /// What to do with a matching request.
    pub action: RouteAction,
}

/// A route's `host`: compared case-insensitively, port ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `api.example.com`, stored lowercase.
    Exact(String),
    /// `*.example.com`, stored as the lowercase suffix `.example.com`.
    Wildcard(String),
}

/// What a route does with a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Proxy to an upstream (`upstream = "..."`, `strip_prefix = ...`).
    Proxy {
        /// The upstream's name (validated to exist).
        upstream: String,
        /// Remove the route's `path` prefix before forwarding.
        strip_prefix: bool,
    },
    /// Answer directly (`respond = { status, body }`).
    Respond {
        /// HTTP status, 200..=599 (a final response).
        status: u16,
        /// Response body; empty by default.
        body: String,
    },
}

/// How an upstream picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// `round_robin` (default) or its alias `weighted_round_robin`: smooth
    /// weighted round robin, as nginx.
    RoundRobin,
}

/// `[upstream.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The `NAME` of `[upstream.NAME]`.
    pub name: String,
    /// `balance`, default round robin.
    pub balance: Balance,
    /// At least one server (validated).
    pub servers: Vec<ServerSpec>,
    /// `connect_timeout`, default 5s.
    pub connect_timeout: Duration,
}

/// One entry of `servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The address as written, minus any `http://` (for logs and identity).
    pub name: String,
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// 1..=1000, default 1.
    pub weight: u32,
}

impl Config {
    /// Total number of servers over all upstreams.
    pub fn server_count(&self) -> usize {
        self.upstreams.values().map(|u| u.servers.len()).sum()
    }
}
