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
//!
//! In pipeline order:
//!
//! - [`fs`]: the file system as loading sees it (real, or texts in memory);
//! - [`load`](mod@load): includes, depth first, each file parsed on its own;
//! - [`raw`]: the shape of one file (serde, JSON Schema); [`recover`] skips
//!   unknown keys so that they hide nothing else;
//! - [`validate`]: every semantic check, one file per section; [`pem`]
//!   reads certificates and keys for it, [`names`] holds the words of every
//!   choice;
//! - here: the validated types, plain data; [`diff`] compares two of them;
//!   [`error`] locates and orders problems, [`suggest`] finds the word meant.

pub(crate) mod access;
mod diff;
mod error;
mod fs;
mod load;
mod names;
pub(crate) mod pem;
mod raw;
mod recover;
mod suggest;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use access::{AccessRules, ClientAddress};
pub(crate) use diff::Diff;
pub use error::Errors;
pub(crate) use error::{Error, Location};

/// Load and validate the configuration rooted at `path`, following includes.
///
/// # Errors
///
/// Returns every problem found, each located as `FILE:LINE:COL` (or just the
/// path when the file itself cannot be read).
pub(crate) fn load(path: &Path) -> Result<Config, Errors> {
    load::load(path)
}

/// Load and validate the configuration rooted at `main` from `texts` (path ->
/// text) instead of the disk: every configuration file, include globs
/// included, comes from `texts` only; any other file (certificates, keys,
/// access log directories) from the real file system. This is how
/// `--check --diff` rebuilds the configuration a running ginx serves.
///
/// # Errors
///
/// As [`load()`].
pub(crate) fn load_from_texts(main: &Path, texts: BTreeMap<PathBuf, String>) -> Result<Config, Errors> {
    load::load_with(&fs::TextsFs::new(texts), main)
}

/// Load and validate the configuration rooted at `main` from `files` (path
/// -> text) held in memory, and nothing else: a file not given does not
/// exist. For [`crate::fuzzing`]: no disk I/O per input.
///
/// # Errors
///
/// As [`load()`].
pub(crate) fn load_from_memory(main: &Path, files: &[(&str, &str)]) -> Result<Config, Errors> {
    load::load_with(&fs::mem::MemFs::new(files), main)
}

/// The JSON Schema of a configuration file (`ginx schema`), generated from
/// the types files are parsed into, so it cannot drift from what is accepted.
pub(crate) fn schema() -> serde_json::Value {
    let mut schema = raw::schema().to_value();
    drop_null(&mut schema);
    schema
}

/// TOML has no null: an optional key is one that is left out, so the
/// `null` alternatives schemars gives `Option` fields are removed.
fn drop_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = map.get_mut("anyOf") {
                any.retain(|s| s.get("type").is_none_or(|t| t != "null"));
                if any.len() == 1 {
                    if let Some(Value::Object(only)) = any.pop() {
                        map.remove("anyOf");
                        map.extend(only);
                    }
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// A complete, validated configuration. Plain data: no sockets, no atomics.
///
/// Reload decides whether anything changed by comparing [`Config::sources`]
/// (the texts read), and describes what changed by comparing the parts.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `[global]` settings, defaults filled in.
    pub(crate) global: Global,
    /// Listeners by name.
    pub(crate) listeners: BTreeMap<String, Listener>,
    /// Upstream pools by name.
    pub(crate) upstreams: BTreeMap<String, Upstream>,
    /// Every file that made up this configuration, main file first, then
    /// includes in the order they were read. Reload compares these texts with
    /// what is on disk to decide whether anything really changed.
    pub(crate) sources: Vec<Source>,
    /// Directories to watch: the parent of every source file and every
    /// directory an include glob points into (even if it matched nothing).
    pub(crate) watch_dirs: Vec<PathBuf>,
    /// `[admin]`: the admin endpoint (metrics, status, probes), if configured.
    pub(crate) admin: Option<Admin>,
    /// Valid but doubtful choices, located like errors. `--check` prints
    /// them (and still exits 0); a reload logs them.
    pub(crate) warnings: Vec<Error>,
    /// Where each listener and upstream is defined.
    pub(crate) defined_at: DefinedAt,
}

/// Where each `[listener.NAME]` and `[upstream.NAME]` is defined, so that
/// what fails after validation (a reload's plan: binding, building TLS) is
/// located as validation's errors are. Kept beside the settings, not in
/// them: moving a table to another line changes no setting.
#[derive(Debug, Clone, Default)]
pub(crate) struct DefinedAt {
    /// Listener name -> its table header.
    pub(crate) listeners: HashMap<String, Location>,
    /// Upstream name -> its table header.
    pub(crate) upstreams: HashMap<String, Location>,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admin {
    /// `bind`, default `127.0.0.1:9901`. Never a wildcard address unless
    /// written so.
    pub(crate) bind: SocketAddr,
    /// `allow` / `deny`, on the TCP peer's address.
    pub(crate) access: AccessRules,
}

/// One configuration file as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// Path as given (main file) or as produced by the include glob.
    pub(crate) path: PathBuf,
    /// Full text as read.
    pub(crate) text: String,
    /// What the file is: configuration files may be shown (`/config` on the
    /// admin endpoint), PEM files (certificates, keys, CAs) never are.
    pub(crate) kind: SourceKind,
}

/// What a [`Source`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// A TOML configuration file (the main file or an include).
    Config,
    /// A PEM file named by the configuration (certificate, key or CA).
    Pem,
}

/// `[global]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Global {
    /// `log_level`: one of trace, debug, info, warn, error. Default `info`.
    pub(crate) log_level: String,
    /// `log_format`: "text" (default) or "json", for ginx's own log (stderr).
    pub(crate) log_format: LogFormat,
    /// `access_log`: `false` (default, none), `true` (stdout, text format)
    /// or `{ path = "...", format = "combined" | "json" | "text" }` (path
    /// relative to the file that names it; no path = stdout; format default
    /// "combined").
    pub(crate) access_log: Option<AccessLog>,
    /// `shutdown_delay`, default 0s: after SIGTERM, keep serving this long
    /// while `/ready` answers 503 (so load balancers stop sending), then
    /// drain.
    pub(crate) shutdown_delay: Duration,
    /// `watch`: reload when configuration files change (file events plus a
    /// slow poll). Default `true`; with `false` only SIGHUP reloads.
    pub(crate) watch: bool,
    /// `resolver = "IP:PORT"`: the DNS server for host names in `servers`;
    /// `None` uses the system's (/etc/resolv.conf).
    pub(crate) resolver: Option<SocketAddr>,
    /// `resolve_min`, default 1s, > 0: the shortest re-resolution interval,
    /// whatever a record's TTL.
    pub(crate) resolve_min: Duration,
    /// `resolve_max`, default 5m, >= `resolve_min`: the longest.
    pub(crate) resolve_max: Duration,
    /// `send_timeout`, default 60s, > 0: how long a client may leave a
    /// response unread (ginx's writes to it blocked) before its connection
    /// is closed (nginx's `send_timeout`).
    pub(crate) send_timeout: Duration,
    /// `shutdown_timeout`: how long a graceful shutdown waits for in-flight
    /// requests. Default 30s.
    pub(crate) shutdown_timeout: Duration,
    /// `header_read_timeout`: how long a client connection may take to send
    /// a request head, counted from when the connection starts waiting for
    /// it (so it also closes idle keep-alive connections). Default 30s.
    pub(crate) header_read_timeout: Duration,
    /// `body_read_timeout`, default 60s, > 0: how long ginx waits for the
    /// next bytes of a client's request body while it is ready to take them
    /// (nginx's `client_body_timeout`); also the grace period of
    /// `min_upload_rate`.
    pub(crate) body_read_timeout: Duration,
    /// `min_upload_rate = "1KiB/s"`, in bytes per second, default none: once
    /// ginx has waited `body_read_timeout` in all for a body's bytes, the
    /// slowest average rate it accepts over that waiting time (as Apache's
    /// mod_reqtimeout `MinRate`).
    pub(crate) min_upload_rate: Option<u64>,

    // Connection limits (issue 11).
    /// `max_connections`, >= 1: client connections open at once over every
    /// listener. `None`: derived from the open-files limit when the workers
    /// start (`crate::server`), as HAProxy derives `maxconn`.
    pub(crate) max_connections: Option<u32>,
    /// `pid_file`, default none: where the serving process writes its pid
    /// (relative to the file that names it). The process an upgrade
    /// starts writes its own; `ginx upgrade` reads it.
    pub(crate) pid_file: Option<PathBuf>,
}

impl Default for Global {
    /// Every key left out: the defaults documented on each field.
    fn default() -> Self {
        Global {
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            access_log: None,
            shutdown_delay: Duration::ZERO,
            watch: true,
            resolver: None,
            resolve_min: Duration::from_secs(1),
            resolve_max: Duration::from_secs(300),
            send_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            min_upload_rate: None,
            max_connections: None,
            pid_file: None,
        }
    }
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `access_log = ...` when on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessLog {
    /// Where to write; `None` is stdout.
    pub(crate) path: Option<PathBuf>,
    /// Line format.
    pub(crate) format: AccessLogFormat,
}

/// An access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessLogFormat {
    /// `key=value` pairs, as ginx's own text log.
    Text,
    /// nginx's `combined` plus ginx's fields at the end.
    Combined,
    /// One JSON object per line.
    Json,
}

/// A PEM file named by the configuration, read with the configuration (it
/// is one of [`Config::sources`], so a changed file reloads like any other).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PemFile {
    /// The path, resolved relative to the file that names it.
    pub(crate) path: PathBuf,
    /// The file's text.
    pub(crate) pem: Arc<str>,
}

impl std::fmt::Debug for PemFile {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemFile({})", self.path.display())
    }
}

/// `tls = { cert, key }` or `[[listener.NAME.tls.certificates]]` (plus
/// `client_ca`). Every certificate and key has been parsed and matched
/// during validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerTls {
    /// One or more; the first is the default for clients that send no
    /// server name or one no certificate covers. Server names come from each
    /// certificate's subject alternative names.
    pub(crate) certificates: Vec<CertificateFiles>,
    /// `client_ca`: require client certificates signed by these CAs (mTLS).
    pub(crate) client_ca: Option<PemFile>,
}

/// A certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateFiles {
    /// `cert`: the chain, leaf first.
    pub(crate) cert: PemFile,
    /// `key`: PKCS#1, PKCS#8 or SEC1.
    pub(crate) key: PemFile,
}

/// `[listener.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    /// The `NAME` of `[listener.NAME]`.
    pub(crate) name: String,
    /// Address to bind; port 0 picks a free port.
    pub(crate) bind: SocketAddr,
    /// Default upstream, used when no route matches.
    pub(crate) upstream: Option<String>,
    /// Routes in file order.
    pub(crate) routes: Vec<Route>,
    /// `tls`: terminate TLS on this listener.
    pub(crate) tls: Option<ListenerTls>,
    /// `max_connections`, `max_connections_per_ip`, `max_requests_per_connection`.
    pub(crate) connection_limits: ConnectionLimits,
    /// `max_request_body`, `max_request_headers`, `max_request_line`,
    /// `max_request_head`, `max_h2_streams`, `max_h2_control_frames`.
    pub(crate) request_limits: RequestLimits,
    /// `trusted_proxies`, `client_ip_header`, `proxy_protocol`.
    pub(crate) client_address: ClientAddress,
    /// `allow` / `deny` for every request of the listener.
    pub(crate) access: AccessRules,
}

/// A listener's connection limits (issue 11: bounded by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// `max_connections`, >= 1: connections open at once on this listener;
    /// `None`: only `[global]`'s limit applies.
    pub(crate) max_connections: Option<u32>,
    /// `max_connections_per_ip`, >= 1: connections open at once from one
    /// client address; `None` (default): no limit, and no per-address table.
    pub(crate) max_connections_per_ip: Option<u32>,
    /// `max_requests_per_connection`, default 1000 (nginx's
    /// `keepalive_requests`); 0: no limit.
    pub(crate) max_requests_per_connection: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: None,
            max_connections_per_ip: None,
            max_requests_per_connection: 1000,
        }
    }
}

/// What one client request (and one HTTP/2 connection) may make ginx hold,
/// per listener: every one has a default but the body, which is streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestLimits {
    /// `max_request_body = "10MiB"`: the largest request body, in bytes;
    /// default none (bodies are streamed, never held whole). A route's own
    /// `max_request_body` overrides it.
    pub(crate) max_body: Option<u64>,
    /// `max_request_headers`, default 100 (hyper's and HAProxy's): header
    /// fields in one request head; more get 431.
    pub(crate) max_headers: usize,
    /// `max_request_line = "8KiB"`, default 8 KiB (nginx's buffer for
    /// it): the longest request target (path and query); longer gets 414.
    pub(crate) max_line: usize,
    /// `max_h2_control_frames`, default 1000: control frames (PING,
    /// SETTINGS, WINDOW_UPDATE, ...) one HTTP/2 connection may send within
    /// a second before it is closed as a flood.
    pub(crate) h2_control_frames: u32,
    /// `max_request_head = "32KiB"`, default [`RequestLimits::MAX_HEAD`]:
    /// the request line and headers (on HTTP/2 the uncompressed header
    /// list); larger gets 431.
    pub(crate) max_head: usize,
    /// `max_h2_streams`, default 256: streams one HTTP/2 client may have
    /// open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub(crate) h2_streams: u32,
}

impl RequestLimits {
    /// `max_request_headers`' default.
    pub(crate) const MAX_HEADERS: usize = 100;
    /// `max_request_headers`' largest value: hyper reserves that many
    /// header slots per request.
    pub(crate) const MAX_HEADERS_LIMIT: usize = 1024;
    /// `max_request_line`'s default.
    pub(crate) const MAX_LINE: usize = 8 * 1024;
    /// `max_request_head`'s default: 4 nginx buffers of 8 KiB (hyper's
    /// default, its whole read buffer of about 400 KiB, is far too
    /// generous).
    pub(crate) const MAX_HEAD: usize = 32 * 1024;
    /// `max_request_head`'s largest value.
    pub(crate) const MAX_HEAD_LIMIT: usize = 1024 * 1024;
    /// `max_h2_streams`' default (nginx: 128, Go: 250).
    pub(crate) const H2_STREAMS: u32 = 256;
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body: None,
            max_headers: Self::MAX_HEADERS,
            max_line: Self::MAX_LINE,
            h2_control_frames: 1000,
            max_head: Self::MAX_HEAD,
            h2_streams: Self::H2_STREAMS,
        }
    }
}

/// `[[listener.NAME.route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// Host the request must be for; `None` matches any host.
    pub(crate) host: Option<HostPattern>,
    /// Path prefix; always starts with `/`.
    pub(crate) path: Option<String>,
    /// What to do with a matching request.
    pub(crate) action: RouteAction,
    /// `max_request_body`: overrides the listener's for this route's
    /// upstream requests.
    pub(crate) max_request_body: Option<u64>,
    /// `allow` / `deny`, checked after the listener's.
    pub(crate) access: AccessRules,
}

/// A route's `host`: compared case-insensitively, port ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum HostPattern {
    /// `api.example.com`, stored lowercase.
    Exact(String),
    /// `*.example.com`, stored as the lowercase suffix `.example.com`.
    Wildcard(String),
}

/// What a route does with a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteAction {
    /// Proxy to an upstream (`upstream = "..."`, `strip_prefix = ...`).
    Proxy {
        /// The upstream's name (validated to exist).
        upstream: String,
        /// Remove the route's `path` prefix before forwarding.
        strip_prefix: bool,
    },
    /// Answer directly (`respond = { status, body, location }`).
    Respond {
        /// HTTP status, 200..=599 (a final response).
        status: u16,
        /// Response body; empty by default.
        body: String,
        /// `location`: a `Location` header template, where `{host}` is the
        /// request's host without its port and `{uri}` its path and query.
        location: Option<String>,
    },
}

/// How an upstream picks a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Balance {
    /// `round_robin` (default) or its alias `weighted_round_robin`: smooth
    /// weighted round robin, as nginx.
    RoundRobin,
    /// `least_conn`: fewest in-flight requests relative to weight; ties
    /// broken round robin.
    LeastConn,
    /// `random`: power of two choices over in-flight requests.
    Random,
    /// `hash` with `hash = "..."`: consistent hashing on a request key.
    Hash(HashKey),
}

/// `hash = "..."`: what consistent hashing hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashKey {
    /// `client_ip`: the TCP peer's address (not X-Forwarded-For).
    ClientIp,
    /// `header:NAME`: the value of a request header (name stored lowercase).
    Header(String),
    /// `cookie:NAME`: the value of a cookie (name as written).
    Cookie(String),
    /// `uri`: the request target, path and query.
    Uri,
}

/// `on_all_down`: what to do when no server of a pool is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnAllDown {
    /// `fail` (default): answer 502.
    Fail,
    /// `try_all`: ignore health and try every server (Envoy's panic mode).
    TryAll,
}

/// `retry_on`: which failures make a request move to another server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryOn {
    /// `connect`: the connection could not be established.
    pub(crate) connect: bool,
    /// `reset`: the connection closed or reset before a response header.
    pub(crate) reset: bool,
    /// `timeout`: connect or response-header timeout.
    pub(crate) timeout: bool,
    /// `5xx`: the server answered with a 5xx status.
    pub(crate) status_5xx: bool,
}

impl RetryOn {
    /// No failure is retried: what `retry_on = []` means.
    pub(crate) fn none() -> RetryOn {
        RetryOn {
            connect: false,
            reset: false,
            timeout: false,
            status_5xx: false,
        }
    }
}

impl Default for RetryOn {
    /// `["connect", "reset", "timeout"]`.
    fn default() -> Self {
        RetryOn {
            connect: true,
            reset: true,
            timeout: true,
            status_5xx: false,
        }
    }
}

/// `[upstream.NAME.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthCheck {
    /// `type` = "http" (default, with `path`) or "tcp" (connect only).
    pub(crate) kind: CheckKind,
    /// `interval`, default 5s, > 0.
    pub(crate) interval: Duration,
    /// `timeout`, default 1s, > 0.
    pub(crate) timeout: Duration,
    /// `expect_status = "200-399"` (default) or a single code `"200"`:
    /// inclusive range, each end 100..=599, low <= high.
    pub(crate) expect_status: (u16, u16),
    /// `rise`, default 2, >= 1: consecutive successes to mark a server up.
    pub(crate) rise: u32,
    /// `fall`, default 3, >= 1: consecutive failures to mark a server down.
    pub(crate) fall: u32,
    /// `initial_state`, default up: the state of a server seen for the first
    /// time, until its checks say otherwise.
    pub(crate) initial_up: bool,
}

/// What an active health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckKind {
    /// `type = "http"`: `GET path` (default `path` "/", must start with "/").
    Http {
        /// Path and optional query to request.
        path: String,
    },
    /// `type = "tcp"`: a TCP connect succeeds. `path` is an error here.
    Tcp,
}

/// `[upstream.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    /// The `NAME` of `[upstream.NAME]`.
    pub(crate) name: String,
    /// `balance`, default round robin; `hash` needs `hash = "..."` (and
    /// `hash` without `balance = "hash"` is an error).
    pub(crate) balance: Balance,
    /// At least one server (validated); at least one of them not a backup.
    pub(crate) servers: Vec<ServerSpec>,
    /// `connect_timeout`, default 5s.
    pub(crate) connect_timeout: Duration,
    /// `read_timeout`, default 60s, > 0: how long to wait for a response
    /// header once the request is sent (nginx `proxy_read_timeout`).
    pub(crate) read_timeout: Duration,
    /// `max_fails`, default 1: failures within `fail_timeout` that hold a
    /// server out; 0 never holds a server out.
    pub(crate) max_fails: u32,
    /// `fail_timeout`, default 10s, > 0: the failure window and the hold-out.
    pub(crate) fail_timeout: Duration,
    /// `eject_on_5xx = N` (>= 1): hold a server out for `fail_timeout` after
    /// N consecutive 5xx responses. Default off.
    pub(crate) eject_on_5xx: Option<u32>,
    /// `on_all_down`, default `fail`.
    pub(crate) on_all_down: OnAllDown,
    /// `retries`, default 1: extra attempts on other servers (0..=100).
    pub(crate) retries: u32,
    /// `retry_on`, default `["connect", "reset", "timeout"]`; allowed
    /// entries: "connect", "reset", "timeout", "5xx" (unknown entries and
    /// duplicates are errors).
    pub(crate) retry_on: RetryOn,
    /// `retry_non_idempotent`, default false.
    pub(crate) retry_non_idempotent: bool,
    /// `[upstream.NAME.health_check]`, if any.
    pub(crate) health_check: Option<HealthCheck>,
    /// `protocol`: "http1" (default), "h2" (HTTP/2 over TLS: servers must be
    /// `https://`) or "h2c" (HTTP/2 prior knowledge: servers must not be).
    pub(crate) protocol: UpstreamProtocol,
    /// `tls_ca`, `tls_server_name`, `tls_verify`: for `https://` servers.
    pub(crate) tls: UpstreamTls,
    /// `tunnel_timeout`, default 1h, > 0: how long an upgraded connection
    /// (WebSocket) may stay idle in both directions before it is closed.
    pub(crate) tunnel_timeout: Duration,
    /// `keepalive`, default [`DEFAULT_KEEPALIVE`]: most idle HTTP/1.1
    /// connections kept per server per worker thread (0: none).
    pub(crate) keepalive: u32,
}

/// Idle connections kept per server per worker by default: enough that the
/// requests in flight to a server at a few thousand client connections find
/// a connection when they come back, instead of one being closed after
/// each burst and opened again for the next.
pub(crate) const DEFAULT_KEEPALIVE: u32 = 1024;

/// `protocol` of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS for `https://` servers).
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
    /// HTTP/2 in the clear, prior knowledge.
    H2c,
}

/// TLS towards an upstream's `https://` servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamTls {
    /// `tls_ca`: trust these CAs instead of the system's roots.
    pub(crate) ca: Option<PemFile>,
    /// `tls_server_name`: the name to send (SNI) and verify, instead of the
    /// server's host.
    pub(crate) server_name: Option<String>,
    /// `tls_verify`, default true; false only when written so.
    pub(crate) verify: bool,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            ca: None,
            server_name: None,
            verify: true,
        }
    }
}

/// One entry of `servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerSpec {
    /// The address as written, minus any `http://` (for logs and identity).
    pub(crate) name: String,
    /// Where the server is: an IP address, or a host name that is resolved
    /// at run time (never during validation).
    pub(crate) endpoint: Endpoint,
    /// 1..=1000, default 1.
    pub(crate) weight: u32,
    /// `backup = true` (table form only): takes traffic only while no
    /// primary server is available.
    pub(crate) backup: bool,
    /// Written as `https://...`: connect with TLS.
    pub(crate) tls: bool,
}

/// Where a server is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A host name and port; every A/AAAA record becomes a member.
    /// `localhost` is a host name like any other.
    Dns {
        /// The name, lowercase, as written.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Config {
    /// Total number of servers over all upstreams.
    pub(crate) fn server_count(&self) -> usize {
        self.upstreams.values().map(|u| u.servers.len()).sum()
    }
}
