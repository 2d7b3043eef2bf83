//! Semantic checks over all parsed files together: raw::File -> Config parts.
//!
//! Every problem is collected; nothing stops at the first one. Doubtful but
//! valid choices become warnings, which never make a configuration invalid.
//! Files the configuration names (access log directories) are looked at
//! through [`Fs`], so tests can keep everything in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::error::{Error, Location};
use super::fs::Fs;
use super::raw;
use super::suggest;
use super::{
    AccessLog, AccessLogFormat, Admin, Balance, CertificateFiles, CheckKind, DefinedAt, Endpoint, Global,
    HashKey, HealthCheck, HostPattern, Listener, ListenerTls, LogFormat, OnAllDown, PemFile, RetryOn, Route,
    RouteAction, ServerSpec, Source, SourceKind, Upstream, UpstreamProtocol, UpstreamTls,
};

const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
const DURATION_HINT: &str = "use a number with a unit, like \"250ms\", \"5s\" or \"2m\"";
const SERVER_HINT: &str =
    "use \"HOST:PORT\", \"http://HOST:PORT\" or \"https://HOST:PORT\", like \"127.0.0.1:9001\"";
const HASH_HINT: &str = "use \"client_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\"";
const RESOLVER_HINT: &str = "use the IP:PORT of a DNS server, like \"127.0.0.53:53\" or \"[::1]:53\"";
const STATUS_HINT: &str =
    "use a status code or an inclusive range as a string, like \"204\" or \"200-399\", each from 100 to 599, low end first";
/// Where `[admin]` listens when the table has no `bind`: loopback only, as
/// the endpoint shows the configuration.
const ADMIN_DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
const BIND_HINT: &str =
    "use IP:PORT, like \"127.0.0.1:8080\", \"[::1]:8080\", \"0.0.0.0:80\" or \"localhost:8080\"";

/// One file after parsing: `file` is `None` when toml rejected it (that error
/// has already been reported).
pub(crate) struct Parsed {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    pub(crate) file: Option<raw::File>,
}

/// The validated contents, ready to become a [`super::Config`].
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) global: Global,
    pub(crate) listeners: BTreeMap<String, Listener>,
    pub(crate) upstreams: BTreeMap<String, Upstream>,
    pub(crate) admin: Option<Admin>,
    /// Unsorted; the loader sorts them with the errors' file order.
    pub(crate) warnings: Vec<Error>,
    /// The PEM files read, in the order they are first named.
    pub(crate) pem_sources: Vec<Source>,
    /// Every PEM path named, read or not: their directories are watched so
    /// that creating a missing file reloads.
    pub(crate) pem_paths: Vec<PathBuf>,
    pub(crate) defined_at: DefinedAt,
}

/// Check all files together, pushing every problem onto `errors`.
///
/// `complete` is false when some file could not be read or parsed: checks
/// that such a file might have satisfied (unknown upstream, no listener) are
/// then skipped, to avoid false alarms.
pub(crate) fn validate(
    fs: &dyn Fs,
    files: &[Parsed],
    main: &Path,
    complete: bool,
    errors: &mut Vec<Error>,
) -> Parts {
    let mut v = Validator {
        fs,
        errors,
        warnings: Vec::new(),
        admin: None,
        admin_at: None,
        pem_reads: HashMap::new(),
        pem_sources: Vec::new(),
        pem_paths: Vec::new(),
        global: Global {
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            access_log: None,
            shutdown_delay: Duration::ZERO,
            watch: true,
            shutdown_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            resolver: None,
            resolve_min: Duration::from_secs(1),
            resolve_max: Duration::from_secs(300),
        },
        global_set: HashMap::new(),
        listeners: BTreeMap::new(),
        listener_defs: HashMap::new(),
        listener_count: 0,
        binds: HashMap::new(),
        upstreams: BTreeMap::new(),
        upstream_defs: HashMap::new(),
        upstream_at: HashMap::new(),
        upstream_order: Vec::new(),
        references: Vec::new(),
        resolve_min_at: None,
        resolve_max_at: None,
        resolve_invalid: false,
    };
    for f in files {
        if let Some(raw) = &f.file {
            let at = At {
                path: &f.path,
                text: &f.text,
            };
            if let Some(g) = &raw.global {
                v.global(at, g);
            }
            if let Some(a) = &raw.admin {
                v.admin(at, a);
            }
            for (name, u) in &raw.upstream.0 {
                v.upstream(at, name, u);
            }
            for (name, l) in &raw.listener.0 {
                v.listener(at, name, l);
            }
        }
    }
    v.check_resolve_range(complete);
    v.check_admin_bind();
    if complete {
        v.check_references();
        v.check_unused_upstreams();
        if v.listener_count == 0 {
            v.errors.push(Error::file(
                main,
                "no listener defined: add a [listener.NAME] table with bind = \"IP:PORT\"".to_owned(),
            ));
        }
    }
    Parts {
        global: v.global,
        listeners: v.listeners,
        upstreams: v.upstreams,
        admin: v.admin,
        warnings: v.warnings,
        pem_sources: v.pem_sources,
        pem_paths: v.pem_paths,
        defined_at: DefinedAt {
            listeners: v.listener_defs,
            upstreams: v.upstream_defs,
        },
    }
}

/// A file being checked: turns spans into located errors.
#[derive(Clone, Copy)]
struct At<'a> {
    path: &'a Path,
    text: &'a str,
}

impl At<'_> {
    fn loc(&self, offset: usize) -> Location {
        Location::at(self.path, self.text, offset)
    }

    fn error(&self, span: Range<usize>, message: String) -> Error {
        Error::at(self.path, self.text, span, message)
    }

    /// From `offset` to the end of its line: what a caret under a table
    /// header spans.
    fn line_span(&self, offset: usize) -> Range<usize> {
        let offset = offset.min(self.text.len());
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        offset..end
    }

    /// `path` as written in this file: relative to the file's directory
    /// unless absolute.
    fn relative(&self, path: &str) -> PathBuf {
        match self.path.parent() {
            Some(dir) => dir.join(path),
            None => PathBuf::from(path),
        }
    }

    /// Where `key` of `[table]` is written, for values that toml cannot give
    /// a span (tables that may be made of dotted keys): the first line that
    /// starts with `key`, `table.key`, `[key` or `[table.key`. An empty
    /// `table` is the top level. The whole file start when not found.
    fn key_span(&self, table: &str, key: &str) -> Range<usize> {
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let mut rest = trimmed.trim_start_matches('[').trim_start();
            let mut skipped = trimmed.len() - rest.len();
            if !table.is_empty() {
                if let Some(after) = rest.strip_prefix(table).and_then(|r| r.strip_prefix('.')) {
                    skipped += rest.len() - after.len();
                    rest = after;
                }
            }
            let is_key = rest
                .strip_prefix(key)
                .is_some_and(|after| after.starts_with([' ', '\t', '=', '.', ']']));
            if is_key {
                let start = offset + indent + skipped;
                return start..start + key.len();
            }
            offset += line.len();
        }
        0..0
    }
}

/// `message`, with `: did you mean `X`? (rest)` when `word` is close to one
/// of `candidates`, else `message: rest`.
fn hinted<'a>(
    message: String,
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    rest: &str,
) -> String {
    match suggest::did_you_mean(word, candidates) {
        Some(hint) => format!("{message}: {hint} ({rest})"),
        None => format!("{message}: {rest}"),
    }
}

impl At<'_> {
    /// Where a named table starts: the `[` of its `[kind.NAME]` header when it
    /// has one, else the name itself (`NAME = { ... }`, `kind.NAME.key = ...`).
    fn header(&self, name: &Spanned<String>) -> usize {
        let key = name.span().start.min(self.text.len());
        let line_start = self.text[..key].rfind('\n').map_or(0, |i| i + 1);
        let before = &self.text[line_start..key];
        let trimmed = before.trim_start();
        if trimmed.starts_with('[') {
            line_start + (before.len() - trimmed.len())
        } else {
            key
        }
    }
}

struct Validator<'e> {
    fs: &'e dyn Fs,
    errors: &'e mut Vec<Error>,
    warnings: Vec<Error>,
    admin: Option<Admin>,
    /// Where the first `[admin]` is, and where its `bind` is (if written).
    admin_at: Option<(Location, Option<(Location, u32)>)>,
    /// Each PEM path read so far: its text or why it could not be read. A
    /// file named twice is read once.
    pem_reads: HashMap<PathBuf, Result<Arc<str>, String>>,
    pem_sources: Vec<Source>,
    pem_paths: Vec<PathBuf>,
    global: Global,
    /// `[global]` key -> where it was first set.
    global_set: HashMap<&'static str, Location>,
    listeners: BTreeMap<String, Listener>,
    /// Listener name -> where it was first defined.
    listener_defs: HashMap<String, Location>,
    listener_count: usize,
    /// Bind address -> (listener, where).
    binds: HashMap<SocketAddr, (String, Location)>,
    upstreams: BTreeMap<String, Upstream>,
    upstream_defs: HashMap<String, Location>,
    /// Upstream name -> its header and the header's width, for warnings.
    upstream_at: HashMap<String, (Location, u32)>,
    /// Upstream names in definition order, for messages.
    upstream_order: Vec<String>,
    /// Every `upstream = "NAME"` reference (where, how wide, the name),
    /// checked once all files are read.
    references: Vec<(Location, u32, String)>,
    /// Where valid `resolve_min` / `resolve_max` values were set, and their
    /// text, for the check that the range is not empty.
    resolve_min_at: Option<(Location, String)>,
    resolve_max_at: Option<(Location, String)>,
    /// A `resolve_min` or `resolve_max` was invalid: skip the range check.
    resolve_invalid: bool,
}

impl Validator<'_> {
    /// Record that `[global]` key `key` is set at `span`; false (and an
    /// error) if another file or table already set it.
    fn global_once(&mut self, at: At<'_>, key: &'static str, span: Range<usize>) -> bool {
        let here = at.loc(span.start);
        if let Some(first) = self.global_set.get(key) {
            let width = u32::try_from(span.len()).unwrap_or(0);
            self.errors.push(Error::located(
                here,
                width,
                format!("`{key}` in [global] is already set at {first}: keep only one"),
            ));
            return false;
        }
        self.global_set.insert(key, here);
        true
    }

    fn global(&mut self, at: At<'_>, g: &raw::Global) {
        if let Some(level) = &g.log_level {
            if self.global_once(at, "log_level", level.span()) {
                let lower = level.get_ref().to_ascii_lowercase();
                if LOG_LEVELS.contains(&lower.as_str()) {
                    self.global.log_level = lower;
                } else {
                    self.errors.push(at.error(
                        level.span(),
                        hinted(
                            format!("invalid log_level `{}`", level.get_ref()),
                            &lower,
                            LOG_LEVELS,
                            &format!("use one of {}", LOG_LEVELS.join(", ")),
                        ),
                    ));
                }
            }
        }
        if let Some(format) = &g.log_format {
            if self.global_once(at, "log_format", format.span()) {
                let options = [("text", LogFormat::Text), ("json", LogFormat::Json)];
                if let Some(f) = self.choice(at, format, "log_format", &options) {
                    self.global.log_format = f;
                }
            }
        }
        if let Some(access_log) = &g.access_log {
            let span = match access_log {
                raw::AccessLog::Table { path: Some(p), .. } => p.span(),
                raw::AccessLog::Table { format: Some(f), .. } => f.span(),
                _ => at.key_span("global", "access_log"),
            };
            if self.global_once(at, "access_log", span) {
                self.global.access_log = self.access_log(at, access_log);
            }
        }
        if let Some(delay) = &g.shutdown_delay {
            if self.global_once(at, "shutdown_delay", delay.span()) {
                if let Some(d) = self.duration(at, delay, "shutdown_delay") {
                    self.global.shutdown_delay = d;
                }
            }
        }
        if let Some(watch) = &g.watch {
            if self.global_once(at, "watch", watch.span()) {
                self.global.watch = *watch.get_ref();
            }
        }
        if let Some(timeout) = &g.shutdown_timeout {
            if self.global_once(at, "shutdown_timeout", timeout.span()) {
                if let Some(d) = self.duration(at, timeout, "shutdown_timeout") {
                    self.global.shutdown_timeout = d;
                }
            }
        }
        if let Some(timeout) = &g.header_read_timeout {
            if self.global_once(at, "header_read_timeout", timeout.span()) {
                if let Some(d) = self.positive_duration(at, timeout, "header_read_timeout") {
                    self.global.header_read_timeout = d;
                }
            }
        }
        if let Some(resolver) = &g.resolver {
            if self.global_once(at, "resolver", resolver.span()) {
                match parse_resolver(resolver.get_ref()) {
                    Ok(addr) => self.global.resolver = Some(addr),
                    Err(message) => self.errors.push(at.error(resolver.span(), message)),
                }
            }
        }
        if let Some(min) = &g.resolve_min {
            if self.global_once(at, "resolve_min", min.span()) {
                match self.positive_duration(at, min, "resolve_min") {
                    Some(d) => {
                        self.global.resolve_min = d;
                        self.resolve_min_at = Some((at.loc(min.span().start), min.get_ref().0.clone()));
                    }
                    None => self.resolve_invalid = true,
                }
            }
        }
        if let Some(max) = &g.resolve_max {
            if self.global_once(at, "resolve_max", max.span()) {
                match self.positive_duration(at, max, "resolve_max") {
                    Some(d) => {
                        self.global.resolve_max = d;
                        self.resolve_max_at = Some((at.loc(max.span().start), max.get_ref().0.clone()));
                    }
                    None => self.resolve_invalid = true,
                }
            }
        }
    }

    /// `access_log = true | false | { path, format }`.
    fn access_log(&mut self, at: At<'_>, value: &raw::AccessLog) -> Option<AccessLog> {
        let (path, format) = match value {
            raw::AccessLog::Switch(false) => return None,
            raw::AccessLog::Switch(true) => {
                return Some(AccessLog {
                    path: None,
                    format: AccessLogFormat::Text,
                })
            }
            raw::AccessLog::Table { path, format } => (path, format),
        };
        let format = match format {
            None => AccessLogFormat::Combined,
            Some(f) => {
                let options = [
                    ("combined", AccessLogFormat::Combined),
                    ("json", AccessLogFormat::Json),
                    ("text", AccessLogFormat::Text),
                ];
                self.choice(at, f, "access_log format", &options)
                    .unwrap_or(AccessLogFormat::Combined)
            }
        };
        let path = match path {
            None => None,
            Some(p) if p.get_ref().is_empty() => {
                self.errors.push(at.error(
                    p.span(),
                    "empty access_log path: remove `path` to log to stdout, or name a file like \"access.log\""
                        .to_owned(),
                ));
                None
            }
            Some(p) => {
                let file = at.relative(p.get_ref());
                let dir = match file.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                if !self.fs.exists(&dir) {
                    self.errors.push(at.error(
                        p.span(),
                        format!(
                            "the directory {} of access_log path `{}` does not exist: create it or log somewhere else (the path is relative to this file)",
                            dir.display(),
                            p.get_ref()
                        ),
                    ));
                }
                Some(file)
            }
        };
        Some(AccessLog { path, format })
    }

    /// `[admin]`: at most one over all files.
    fn admin(&mut self, at: At<'_>, a: &raw::Admin) {
        let table = at.key_span("", "admin");
        let here = at.loc(table.start);
        if let Some((first, _)) = &self.admin_at {
            self.errors.push(Error::located(
                here,
                u32::try_from(table.len()).unwrap_or(0),
                format!("[admin] is already set at {first}: keep only one"),
            ));
            return;
        }
        let mut bind_at = None;
        let bind = match &a.bind {
            None => Some(ADMIN_DEFAULT_BIND),
            Some(b) => {
                bind_at = Some((at.loc(b.span().start), u32::try_from(b.span().len()).unwrap_or(0)));
                match parse_bind(b.get_ref()) {
                    Some(addr) => {
                        if !addr.ip().is_loopback() {
                            self.warnings.push(at.error(
                                b.span(),
                                format!(
                                    "the admin endpoint is bound to {addr}, which is not a loopback address: anyone who can reach it can read the configuration; bind it to 127.0.0.1 unless a firewall protects it"
                                ),
                            ));
                        }
                        Some(addr)
                    }
                    None => {
                        self.errors.push(at.error(
                            b.span(),
                            format!("invalid admin bind address `{}`: {BIND_HINT}", b.get_ref()),
                        ));
                        None
                    }
                }
            }
        };
        self.admin_at = Some((here, bind_at));
        // Invalid: reported; `admin` stays `None` but the load fails anyway.
        self.admin = bind.map(|bind| Admin { bind });
    }

    /// The admin endpoint needs an address of its own.
    fn check_admin_bind(&mut self) {
        let (Some(admin), Some((table_at, bind_at))) = (&self.admin, &self.admin_at) else {
            return;
        };
        if admin.bind.port() == 0 {
            return;
        }
        if let Some((listener, there)) = self.binds.get(&admin.bind) {
            let (location, width) = bind_at.clone().unwrap_or((table_at.clone(), 0));
            self.errors.push(Error::located(
                location,
                width,
                format!(
                    "admin bind address {} is already used by listener `{listener}` at {there}: give the admin endpoint its own address",
                    admin.bind
                ),
            ));
        }
    }

    /// `resolve_max` must not be shorter than `resolve_min`. The error is at
    /// `resolve_max` when it is set, else at `resolve_min`. With a file
    /// missing, a key set only there might fix it: then only checked when
    /// both are set.
    fn check_resolve_range(&mut self, complete: bool) {
        let (min, max) = (self.global.resolve_min, self.global.resolve_max);
        if self.resolve_invalid || max >= min {
            return;
        }
        let error = match (&self.resolve_min_at, &self.resolve_max_at) {
            (Some((_, min_text)), Some((max_at, max_text))) => (
                max_at.clone(),
                format!(
                    "resolve_max `{max_text}` is shorter than resolve_min `{min_text}`: make resolve_max at least resolve_min"
                ),
            ),
            (None, Some((max_at, max_text))) if complete => (
                max_at.clone(),
                format!(
                    "resolve_max `{max_text}` is shorter than resolve_min (default `{}`): make resolve_max at least resolve_min",
                    humantime::format_duration(min)
                ),
            ),
            (Some((min_at, min_text)), None) if complete => (
                min_at.clone(),
                format!(
                    "resolve_min `{min_text}` is longer than resolve_max (default `{}`): shorten resolve_min or set a longer resolve_max",
                    humantime::format_duration(max)
                ),
            ),
            _ => return,
        };
        self.errors.push(Error::located(error.0, 0, error.1));
    }

    /// A toml integer that must be in `min..=max`. `extra` is appended to
    /// the message (empty, or a hint starting with a space).
    fn number(
        &mut self,
        at: At<'_>,
        value: &Spanned<i64>,
        key: &str,
        range: (u32, u32),
        extra: &str,
    ) -> Option<u32> {
        let (min, max) = range;
        match u32::try_from(*value.get_ref()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.errors.push(at.error(
                    value.span(),
                    format!(
                        "invalid {key} {}: use a number from {min} to {max}{extra}",
                        value.get_ref()
                    ),
                ));
                None
            }
        }
    }

    /// One of a fixed set of strings; `None` (and an error listing the
    /// accepted values) otherwise.
    fn choice<T: Copy>(
        &mut self,
        at: At<'_>,
        value: &Spanned<String>,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let text = value.get_ref();
        if let Some((_, v)) = options.iter().find(|(name, _)| name == text) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.errors.push(at.error(
            value.span(),
            hinted(
                format!("unknown {key} `{text}`"),
                text,
                names.iter().copied(),
                &format!("use {}", quoted_list(&names)),
            ),
        ));
        None
    }

    /// A duration that must not be zero (a timeout of nothing would fail
    /// everything).
    fn positive_duration(
        &mut self,
        at: At<'_>,
        value: &Spanned<raw::DurationText>,
        key: &str,
    ) -> Option<Duration> {
        let d = self.duration(at, value, key)?;
        if d.is_zero() {
            self.errors.push(at.error(
                value.span(),
                format!(
                    "invalid duration `{}` for `{key}`: it must be greater than zero, like \"5s\"",
                    value.get_ref().0
                ),
            ));
            return None;
        }
        Some(d)
    }

    fn duration(&mut self, at: At<'_>, value: &Spanned<raw::DurationText>, key: &str) -> Option<Duration> {
        let text = &value.get_ref().0;
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(_) => {
                self.errors.push(at.error(
                    value.span(),
                    format!("invalid duration `{text}` for `{key}`: {DURATION_HINT}"),
                ));
                None
            }
        }
    }

    /// Record the definition of `kind` `name`; false (and an error) if it is
    /// already defined.
    fn define(
        errors: &mut Vec<Error>,
        defs: &mut HashMap<String, Location>,
        kind: &str,
        here: Location,
        name: &str,
    ) -> bool {
        if let Some(first) = defs.get(name) {
            errors.push(Error::located(
                here,
                0,
                format!("{kind} `{name}` is already defined at {first}: rename one of them or remove it"),
            ));
            return false;
        }
        defs.insert(name.to_owned(), here);
        true
    }

    fn upstream(&mut self, at: At<'_>, name: &Spanned<String>, u: &raw::Upstream) {
        let header = at.header(name);
        let name = name.get_ref();
        let first = Self::define(
            self.errors,
            &mut self.upstream_defs,
            "upstream",
            at.loc(header),
            name,
        );
        if first {
            self.upstream_order.push(name.clone());
            let width = u32::try_from(at.line_span(header).len()).unwrap_or(0);
            self.upstream_at.insert(name.clone(), (at.loc(header), width));
        }

        let balance = self.balance(at, u);
        let protocol = u
            .protocol
            .as_ref()
            .and_then(|p| {
                let options = [
                    ("http1", UpstreamProtocol::Http1),
                    ("h2", UpstreamProtocol::H2),
                    ("h2c", UpstreamProtocol::H2c),
                ];
                self.choice(at, p, "protocol", &options)
            })
            .unwrap_or(UpstreamProtocol::Http1);

        let mut servers = Vec::new();
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
        if let Some(list) = &u.servers {
            let is_backup = |e: &Spanned<raw::Server>| match e.get_ref() {
                raw::Server::Table { backup: Some(b), .. } => *b.get_ref(),
                _ => false,
            };
            if !list.get_ref().is_empty() && list.get_ref().iter().all(is_backup) {
                let start = list.span().start;
                self.errors.push(at.error(
                    start..start,
                    format!(
                        "upstream `{name}` has only backup servers: at least one server must not be a backup"
                    ),
                ));
            }
        }
        for entry in u.servers.iter().flat_map(|l| l.get_ref()) {
            if let Some(s) = self.server(at, entry) {
                match (protocol, s.tls) {
                    (UpstreamProtocol::H2, false) => self.errors.push(at.error(
                        entry.span(),
                        format!(
                            "upstream `{name}` has protocol = \"h2\", which is HTTP/2 over TLS: write this server as \"https://{}\", or use protocol = \"h2c\" for HTTP/2 without TLS",
                            s.name
                        ),
                    )),
                    (UpstreamProtocol::H2c, true) => self.errors.push(at.error(
                        entry.span(),
                        format!(
                            "upstream `{name}` has protocol = \"h2c\", which is HTTP/2 without TLS: write this server as \"{}\", or use protocol = \"h2\" for HTTP/2 over TLS",
                            s.name
                        ),
                    )),
                    _ => {}
                }
                // A server's state is keyed by its endpoint: listing it twice
                // would make two entries share one state.
                if servers
                    .iter()
                    .any(|seen: &ServerSpec| seen.endpoint == s.endpoint)
                {
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
        }

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
            .and_then(|v| {
                self.choice(
                    at,
                    v,
                    "on_all_down",
                    &[("fail", OnAllDown::Fail), ("try_all", OnAllDown::TryAll)],
                )
            })
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

        if first {
            self.upstreams.insert(
                name.clone(),
                Upstream {
                    name: name.clone(),
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
                },
            );
        }
    }

    /// `tls_ca`, `tls_server_name` and `tls_verify` of an upstream; `has_https`
    /// tells whether any server uses them.
    fn upstream_tls(&mut self, at: At<'_>, name: &str, u: &raw::Upstream, has_https: bool) -> UpstreamTls {
        let mut tls = UpstreamTls::default();
        let any_server = u.servers.as_ref().is_some_and(|l| !l.get_ref().is_empty());
        if !has_https && any_server {
            let keys = [
                ("tls_ca", u.tls_ca.as_ref().map(Spanned::span)),
                ("tls_server_name", u.tls_server_name.as_ref().map(Spanned::span)),
                ("tls_verify", u.tls_verify.as_ref().map(Spanned::span)),
            ];
            for (key, span) in keys {
                if let Some(span) = span {
                    self.warnings.push(at.error(
                        span,
                        format!(
                            "`{key}` has no effect: upstream `{name}` has no https:// server; remove it or write the servers as \"https://HOST:PORT\""
                        ),
                    ));
                }
            }
        }
        if let Some(ca) = &u.tls_ca {
            if let Some(file) = self.pem(at, ca, "tls_ca") {
                match super::pem::parse_certificates(&file.pem) {
                    Ok(_) => tls.ca = Some(file),
                    Err(m) => self
                        .errors
                        .push(at.error(ca.span(), format!("tls_ca `{}`: {m}", file.path.display()))),
                }
            }
        }
        if let Some(server_name) = &u.tls_server_name {
            let text = server_name.get_ref();
            match rustls_pki_types::ServerName::try_from(text.as_str()) {
                Ok(_) => tls.server_name = Some(text.clone()),
                Err(_) => self.errors.push(at.error(
                    server_name.span(),
                    format!(
                        "invalid tls_server_name `{text}`: use the DNS name the servers' certificates are for, like \"api.internal\", or an IP address"
                    ),
                )),
            }
        }
        if let Some(verify) = &u.tls_verify {
            tls.verify = *verify.get_ref();
            if !tls.verify && has_https {
                self.warnings.push(at.error(
                    verify.span(),
                    format!(
                        "tls_verify = false: any certificate is accepted from the servers of upstream `{name}`, so anyone on the network path can impersonate them; trust a private CA with tls_ca = \"ca.pem\" instead"
                    ),
                ));
            }
        }
        tls
    }

    /// A listener's `tls`: one `cert` and `key`, or `certificates` entries,
    /// every pair read and checked to belong together; `None` (and errors)
    /// otherwise.
    fn listener_tls(
        &mut self,
        at: At<'_>,
        name: &str,
        header: usize,
        t: &raw::ListenerTls,
    ) -> Option<ListenerTls> {
        let pairs: Vec<(&Spanned<String>, &Spanned<String>)> = match (&t.cert, &t.key, &t.certificates) {
            (Some(cert), Some(key), None) => vec![(cert, key)],
            (None, None, Some(list)) if !list.is_empty() => list
                .iter()
                .map(|p| (&p.get_ref().cert, &p.get_ref().key))
                .collect(),
            (None, None, Some(_)) => {
                self.errors.push(at.error(
                    at.line_span(header),
                    format!(
                        "listener `{name}` has an empty tls.certificates: add [[listener.{name}.tls.certificates]] tables with cert and key"
                    ),
                ));
                return None;
            }
            (cert, key, Some(_)) => {
                let span = cert
                    .as_ref()
                    .or(key.as_ref())
                    .map_or(header..header, Spanned::span);
                self.errors.push(at.error(
                    span,
                    format!(
                        "the tls of listener `{name}` has both `cert`/`key` and `certificates`: use cert and key for one certificate, or only [[listener.{name}.tls.certificates]] tables for several"
                    ),
                ));
                return None;
            }
            (Some(cert), None, None) => {
                self.errors.push(at.error(
                    cert.span(),
                    "`cert` needs its private key: add key = \"PATH\" next to it".to_owned(),
                ));
                return None;
            }
            (None, Some(key), None) => {
                self.errors.push(at.error(
                    key.span(),
                    "`key` needs its certificate: add cert = \"PATH\" next to it".to_owned(),
                ));
                return None;
            }
            (None, None, None) => {
                self.errors.push(at.error(
                    at.line_span(header),
                    format!(
                        "listener `{name}` has `tls` without a certificate: add cert = \"cert.pem\" and key = \"key.pem\" to it"
                    ),
                ));
                return None;
            }
        };
        let mut ok = true;
        let mut certificates = Vec::new();
        for (cert, key) in pairs {
            let cert_file = self.pem(at, cert, "certificate");
            let key_file = self.pem(at, key, "key");
            let (Some(cert_file), Some(key_file)) = (cert_file, key_file) else {
                ok = false;
                continue;
            };
            match super::pem::certified_key(&cert_file.pem, &key_file.pem) {
                Ok(_) => certificates.push(CertificateFiles {
                    cert: cert_file,
                    key: key_file,
                }),
                Err(super::pem::CertError::Cert(m)) => {
                    ok = false;
                    self.errors.push(at.error(
                        cert.span(),
                        format!("certificate `{}`: {m}", cert_file.path.display()),
                    ));
                }
                Err(super::pem::CertError::Key(m)) => {
                    ok = false;
                    self.errors
                        .push(at.error(key.span(), format!("key `{}`: {m}", key_file.path.display())));
                }
            }
        }
        let client_ca = match &t.client_ca {
            None => None,
            Some(ca) => match self.pem(at, ca, "client_ca") {
                None => {
                    ok = false;
                    None
                }
                Some(file) => match super::pem::parse_certificates(&file.pem) {
                    Ok(_) => Some(file),
                    Err(m) => {
                        ok = false;
                        self.errors
                            .push(at.error(ca.span(), format!("client_ca `{}`: {m}", file.path.display())));
                        None
                    }
                },
            },
        };
        ok.then_some(ListenerTls {
            certificates,
            client_ca,
        })
    }

    /// The PEM file `value` names (relative to this file), read once per
    /// path through the loader's file system and kept as a source.
    fn pem(&mut self, at: At<'_>, value: &Spanned<String>, key: &str) -> Option<PemFile> {
        let text = value.get_ref();
        if text.is_empty() {
            self.errors.push(at.error(
                value.span(),
                format!("empty `{key}` path: give the path of a PEM file, relative to this file or absolute"),
            ));
            return None;
        }
        let path = at.relative(text);
        let read = match self.pem_reads.get(&path) {
            Some(read) => read.clone(),
            None => {
                let read = self
                    .fs
                    .read(&path)
                    .map(Arc::<str>::from)
                    .map_err(|e| e.to_string());
                if let Ok(pem) = &read {
                    self.pem_sources.push(Source {
                        path: path.clone(),
                        text: pem.to_string(),
                        kind: SourceKind::Pem,
                    });
                }
                self.pem_paths.push(path.clone());
                self.pem_reads.insert(path.clone(), read.clone());
                read
            }
        };
        match read {
            Ok(pem) => Some(PemFile { path, pem }),
            Err(e) => {
                self.errors.push(at.error(
                    value.span(),
                    format!("cannot read {key} file {}: {e}", path.display()),
                ));
                None
            }
        }
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
        #[derive(Clone, Copy, PartialEq)]
        enum Kind {
            RoundRobin,
            LeastConn,
            Random,
            Hash,
        }
        let kind = match &u.balance {
            None => Some(Kind::RoundRobin),
            Some(b) => self.choice(
                at,
                b,
                "balance",
                &[
                    ("round_robin", Kind::RoundRobin),
                    ("weighted_round_robin", Kind::RoundRobin),
                    ("least_conn", Kind::LeastConn),
                    ("random", Kind::Random),
                    ("hash", Kind::Hash),
                ],
            ),
        };
        let key = u.hash.as_ref().and_then(|h| match parse_hash_key(h.get_ref()) {
            Ok(key) => Some(key),
            Err(message) => {
                self.errors.push(at.error(h.span(), message));
                None
            }
        });
        match (kind, &u.balance, &u.hash) {
            (Some(Kind::Hash), Some(b), None) => self.errors.push(at.error(
                b.span(),
                "balance = \"hash\" needs a `hash` key: add hash = \"client_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\""
                    .to_owned(),
            )),
            // An unknown `balance` has its own error; `hash` may be right.
            (Some(k), _, Some(h)) if k != Kind::Hash => self.errors.push(at.error(
                h.span(),
                "`hash` only applies with balance = \"hash\": add balance = \"hash\" or remove `hash`".to_owned(),
            )),
            _ => {}
        }
        match kind {
            None | Some(Kind::RoundRobin) => Balance::RoundRobin,
            Some(Kind::LeastConn) => Balance::LeastConn,
            Some(Kind::Random) => Balance::Random,
            // Without a valid key an error has been reported.
            Some(Kind::Hash) => Balance::Hash(key.unwrap_or(HashKey::ClientIp)),
        }
    }

    /// `retry_on = [...]`: each entry known and listed once.
    fn retry_on(&mut self, at: At<'_>, entries: &[Spanned<String>]) -> RetryOn {
        let mut on = RetryOn {
            connect: false,
            reset: false,
            timeout: false,
            status_5xx: false,
        };
        for entry in entries {
            let text = entry.get_ref();
            let flag = match text.as_str() {
                "connect" => &mut on.connect,
                "reset" => &mut on.reset,
                "timeout" => &mut on.timeout,
                "5xx" => &mut on.status_5xx,
                _ => {
                    let known = ["connect", "reset", "timeout", "5xx"];
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
                }
            };
            if *flag {
                self.errors.push(at.error(
                    entry.span(),
                    format!("`{text}` is listed twice in retry_on: list it once"),
                ));
            }
            *flag = true;
        }
        on
    }

    fn health_check(&mut self, at: At<'_>, h: &raw::HealthCheck) -> HealthCheck {
        #[derive(Clone, Copy, PartialEq)]
        enum Kind {
            Http,
            Tcp,
        }
        let kind = match &h.kind {
            None => Some(Kind::Http),
            Some(k) => self.choice(
                at,
                k,
                "health_check type",
                &[("http", Kind::Http), ("tcp", Kind::Tcp)],
            ),
        };
        if let Some(p) = &h.path {
            if kind == Some(Kind::Tcp) {
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
        let kind = match kind {
            Some(Kind::Tcp) => CheckKind::Tcp,
            _ => CheckKind::Http {
                path: h
                    .path
                    .as_ref()
                    .map_or_else(|| "/".to_owned(), |p| p.get_ref().clone()),
            },
        };
        let interval = self.timeout(at, &h.interval, "interval", Duration::from_secs(5));
        let timeout = self.timeout(at, &h.timeout, "timeout", Duration::from_secs(1));
        if timeout >= interval {
            if let Some(span) = h.timeout.as_ref().or(h.interval.as_ref()).map(Spanned::span) {
                self.warnings.push(at.error(
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
            .and_then(|v| self.choice(at, v, "initial_state", &[("up", true), ("down", false)]))
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

    fn listener(&mut self, at: At<'_>, name: &Spanned<String>, l: &raw::Listener) {
        self.listener_count += 1;
        let header = at.header(name);
        let name = name.get_ref();
        let first = Self::define(
            self.errors,
            &mut self.listener_defs,
            "listener",
            at.loc(header),
            name,
        );

        let bind = match &l.bind {
            None => {
                self.errors.push(at.error(
                    header..header,
                    format!("listener `{name}` has no `bind`: add bind = \"IP:PORT\""),
                ));
                None
            }
            Some(b) => match parse_bind(b.get_ref()) {
                Some(addr) => Some(addr),
                None => {
                    self.errors.push(at.error(
                        b.span(),
                        format!("invalid bind address `{}`: {BIND_HINT}", b.get_ref()),
                    ));
                    None
                }
            },
        };
        if let (true, Some(addr), Some(b)) = (first, bind, &l.bind) {
            if addr.port() != 0 {
                let here = at.loc(b.span().start);
                if let Some((other, there)) = self.binds.get(&addr) {
                    self.errors.push(at.error(
                        b.span(),
                        format!(
                            "bind address {addr} is already used by listener `{other}` at {there}: give each listener its own address"
                        ),
                    ));
                } else {
                    self.binds.insert(addr, (name.clone(), here));
                }
            }
        }

        if let Some(u) = &l.upstream {
            self.reference(at, u);
        }
        if l.upstream.is_none() && l.route.is_empty() {
            self.errors.push(at.error(
                header..header,
                format!(
                    "listener `{name}` has no upstream and no route: add upstream = \"NAME\" or a [[listener.{name}.route]]"
                ),
            ));
        }

        // `None` inside: errors reported, the listener is not kept (but its
        // routes are still checked).
        let tls = l.tls.as_ref().map(|t| self.listener_tls(at, name, header, t));
        let mut routes: Vec<Route> = Vec::new();
        // Where each valid route is, to name the one that shadows another.
        let mut route_at: Vec<Location> = Vec::new();
        for raw_route in &l.route {
            let Some(route) = self.route(at, raw_route) else {
                continue;
            };
            let start = raw_route.span().start;
            // Equal host and path: routing takes the longest path prefix and
            // breaks ties by file order, so the later route never matches.
            if let Some(i) = routes
                .iter()
                .position(|r| r.host == route.host && r.path == route.path)
            {
                let what = match (&raw_route.get_ref().host, &raw_route.get_ref().path) {
                    (Some(h), Some(p)) => format!("host `{}` and path `{}`", h.get_ref(), p.get_ref()),
                    (Some(h), None) => format!("host `{}` (any path)", h.get_ref()),
                    (None, Some(p)) => format!("path `{}` (any host)", p.get_ref()),
                    (None, None) => "requests (any host, any path)".to_owned(),
                };
                self.errors.push(at.error(
                    at.line_span(start),
                    format!(
                        "this route can never match: the route at {} matches the same {what} and comes first; remove one of them or change its host or path",
                        route_at[i]
                    ),
                ));
            }
            route_at.push(at.loc(start));
            routes.push(route);
        }

        let tls = match tls {
            None => Some(None),
            Some(Some(t)) => Some(Some(t)),
            Some(None) => None,
        };
        if let (true, Some(bind), Some(tls)) = (first, bind, tls) {
            self.listeners.insert(
                name.clone(),
                Listener {
                    name: name.clone(),
                    bind,
                    upstream: l.upstream.as_ref().map(|u| u.get_ref().clone()),
                    routes,
                    tls,
                },
            );
        }
    }

    fn route(&mut self, at: At<'_>, r: &Spanned<raw::Route>) -> Option<Route> {
        let start = r.span().start;
        let r = r.get_ref();
        let mut ok = true;

        let host = match &r.host {
            None => None,
            Some(h) => match parse_host(h.get_ref()) {
                Ok(p) => Some(p),
                Err(message) => {
                    self.errors.push(at.error(h.span(), message));
                    ok = false;
                    None
                }
            },
        };

        if let Some(p) = &r.path {
            if !p.get_ref().starts_with('/') {
                self.errors.push(at.error(
                    p.span(),
                    format!(
                        "invalid path `{}`: a route path must start with \"/\", like \"/api/\"",
                        p.get_ref()
                    ),
                ));
                ok = false;
            }
        }

        let action = match (&r.upstream, &r.respond) {
            (Some(_), Some(_)) => {
                self.errors.push(at.error(
                    start..start,
                    "route has both `upstream` and `respond`: keep only one".to_owned(),
                ));
                None
            }
            (None, None) => {
                self.errors.push(at.error(
                    start..start,
                    "route has neither `upstream` nor `respond`: add upstream = \"NAME\" or respond = { status = 200 }".to_owned(),
                ));
                None
            }
            (Some(u), None) => {
                self.reference(at, u);
                let strip_prefix = r.strip_prefix.as_ref().is_some_and(|s| *s.get_ref());
                if strip_prefix && r.path.is_none() {
                    let s = r.strip_prefix.as_ref().map_or(start, |s| s.span().start);
                    self.errors.push(at.error(
                        s..s,
                        "`strip_prefix = true` needs a `path` to strip: add path = \"/prefix/\"".to_owned(),
                    ));
                    ok = false;
                }
                Some(RouteAction::Proxy {
                    upstream: u.get_ref().clone(),
                    strip_prefix,
                })
            }
            (None, Some(respond)) => {
                if let Some(s) = &r.strip_prefix {
                    self.errors.push(at.error(
                        s.span(),
                        "`strip_prefix` only applies to routes with `upstream`: remove it from this `respond` route".to_owned(),
                    ));
                    ok = false;
                }
                let status = &respond.status;
                let location = match &respond.location {
                    None => Some(None),
                    Some(l) => match check_location(l.get_ref()) {
                        Ok(()) => Some(Some(l.get_ref().clone())),
                        Err(message) => {
                            self.errors.push(at.error(l.span(), message));
                            None
                        }
                    },
                };
                match (u16::try_from(*status.get_ref()), location) {
                    // 1xx are not final responses: hyper cannot send one as
                    // the answer to a request.
                    (Ok(code @ 200..=599), Some(location)) => {
                        if let (Some(l), false) = (&respond.location, (300..400).contains(&code)) {
                            self.warnings.push(at.error(
                                l.span(),
                                format!(
                                    "`location` with status {code} does not redirect: clients follow it only with a 3xx status, like 301, 302, 307 or 308"
                                ),
                            ));
                        }
                        Some(RouteAction::Respond {
                            status: code,
                            body: respond.body.clone(),
                            location,
                        })
                    }
                    (Ok(200..=599), None) => None,
                    _ => {
                        self.errors.push(at.error(
                            status.span(),
                            format!(
                                "invalid status {}: use an HTTP status code from 200 to 599",
                                status.get_ref()
                            ),
                        ));
                        None
                    }
                }
            }
        };

        let action = action?;
        ok.then(|| Route {
            host,
            path: r.path.as_ref().map(|p| p.get_ref().clone()),
            action,
        })
    }

    /// Note an `upstream = "NAME"` reference, checked once all files are read.
    fn reference(&mut self, at: At<'_>, name: &Spanned<String>) {
        let width = u32::try_from(name.span().len()).unwrap_or(0);
        self.references
            .push((at.loc(name.span().start), width, name.get_ref().clone()));
    }

    fn check_references(&mut self) {
        for (location, width, name) in &self.references {
            if self.upstream_defs.contains_key(name) {
                continue;
            }
            let message = if self.upstream_order.is_empty() {
                format!("unknown upstream `{name}` (no upstream is defined: add an [upstream.{name}] table)")
            } else if let Some(hint) =
                suggest::did_you_mean(name, self.upstream_order.iter().map(String::as_str))
            {
                format!("unknown upstream `{name}`: {hint}")
            } else {
                format!(
                    "unknown upstream `{name}` (defined upstreams: {})",
                    self.upstream_order.join(", ")
                )
            };
            self.errors
                .push(Error::located(location.clone(), *width, message));
        }
    }

    /// An upstream nothing sends requests to is most likely a leftover or a
    /// misspelt reference.
    /// Not judged while a reference is unknown: a misspelt name would make
    /// the upstream it meant look unused, a second message for one mistake.
    fn check_unused_upstreams(&mut self) {
        let used: HashSet<&str> = self.references.iter().map(|(_, _, n)| n.as_str()).collect();
        if used.iter().any(|n| !self.upstream_defs.contains_key(*n)) {
            return;
        }
        for name in &self.upstream_order {
            if used.contains(name.as_str()) {
                continue;
            }
            let (location, width) = self.upstream_at[name].clone();
            self.warnings.push(Error::located(
                location,
                width,
                format!(
                    "upstream `{name}` is not used by any listener or route: reference it with upstream = \"{name}\" or remove it"
                ),
            ));
        }
    }
}

/// `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
fn parse_bind(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let port = text.strip_prefix("localhost:")?.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// A route's `host`: `name` or `*.suffix`, lowercased; no port, no other `*`.
fn parse_host(text: &str) -> Result<HostPattern, String> {
    if text.is_empty() {
        return Err(
            "empty host: remove `host` to match any host, or give a name like \"api.example.com\"".to_owned(),
        );
    }
    let is_ipv6_literal = text.starts_with('[') && text.ends_with(']');
    if text.contains(':') && !is_ipv6_literal {
        return Err(format!(
            "invalid host `{text}`: remove the port, a route matches the host name on any port"
        ));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!("invalid host `{text}`: a host name has no spaces"));
    }
    let lower = text.to_ascii_lowercase();
    match lower.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') => {
            Ok(HostPattern::Wildcard(suffix.to_owned()))
        }
        _ if lower.contains('*') => Err(format!(
            "invalid host `{text}`: a wildcard is only allowed as a leading \"*.\", like \"*.example.com\""
        )),
        _ => Ok(HostPattern::Exact(lower)),
    }
}

/// The placeholders a respond `location` may use.
const LOCATION_PLACEHOLDERS: [&str; 2] = ["host", "uri"];

/// A respond `location` template: text with `{host}` and `{uri}`.
fn check_location(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty location: remove it, or give a URL like \"https://{host}{uri}\"".to_owned());
    }
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!(
                "unmatched `}}` in location `{text}`: placeholders are written {{host}} and {{uri}}"
            ));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "unclosed `{{` in location `{text}`: placeholders are written {{host}} and {{uri}}"
            ));
        };
        let name = &after[..close];
        if !LOCATION_PLACEHOLDERS.contains(&name) {
            return Err(hinted(
                format!("unknown placeholder `{{{name}}}` in location"),
                name,
                LOCATION_PLACEHOLDERS,
                "use {host} for the request's host and {uri} for its path and query",
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// `resolver = "IP:PORT"`: an IP literal and a non-zero port.
fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        Ok(_) => Err(format!(
            "invalid resolver `{text}`: port 0 is not a DNS server's port; {RESOLVER_HINT}"
        )),
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => Err(format!(
                "invalid resolver `{text}`: add the port, like \"{}\"",
                SocketAddr::new(ip, 53)
            )),
            Err(_) => Err(format!("invalid resolver `{text}`: {RESOLVER_HINT}")),
        },
    }
}

/// `hash = "..."`: `client_ip`, `uri`, `header:NAME` or `cookie:NAME`.
fn parse_hash_key(text: &str) -> Result<HashKey, String> {
    match text {
        "client_ip" => return Ok(HashKey::ClientIp),
        "uri" => return Ok(HashKey::Uri),
        _ => {}
    }
    if let Some(name) = text.strip_prefix("header:") {
        if name.is_empty() {
            return Err(format!(
                "invalid hash `{text}`: the header name is missing, like \"header:x-user-id\""
            ));
        }
        if !name.bytes().all(is_token_byte) {
            return Err(format!(
                "invalid hash `{text}`: `{name}` is not a valid header name, use letters, digits and `-`, like \"header:x-user-id\""
            ));
        }
        return Ok(HashKey::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        if name.is_empty() {
            return Err(format!(
                "invalid hash `{text}`: the cookie name is missing, like \"cookie:session\""
            ));
        }
        return Ok(HashKey::Cookie(name.to_owned()));
    }
    Err(format!("invalid hash `{text}`: {HASH_HINT}"))
}

/// A byte of an HTTP token (RFC 9110 `tchar`): what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `expect_status`: `"204"` or `"200-399"`, each end three digits in
/// 100..=599, low <= high.
fn parse_status_range(s: &raw::StatusText) -> Result<(u16, u16), String> {
    let text = &s.text;
    if !s.quoted {
        return Err(format!(
            "invalid expect_status {text}: write it as a string, like \"{text}\" or \"200-399\""
        ));
    }
    let code = |part: &str| -> Option<u16> {
        if part.len() != 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|c| (100..=599).contains(c))
    };
    let range = match text.split_once('-') {
        None => code(text).map(|c| (c, c)),
        Some((low, high)) => code(low).zip(code(high)),
    };
    match range {
        Some((low, high)) if low <= high => Ok((low, high)),
        _ => Err(format!("invalid expect_status `{text}`: {STATUS_HINT}")),
    }
}

/// A server entry: `HOST:PORT`, `http://HOST[:PORT]` or `https://HOST[:PORT]`,
/// optional trailing `/`. With a scheme the port defaults to the scheme's
/// (80, 443), as in a URL; without one it must be written. Returns the name
/// (without scheme and `/`: health checks take their `Host` from it), the
/// endpoint and whether it is `https://`. A host name is only checked for
/// syntax, never resolved.
fn parse_server(text: &str) -> Result<(String, Endpoint, bool), String> {
    let (name, endpoint, default_port) = parse_server_address(text)?;
    let tls = default_port == Some(443);
    Ok((name, endpoint, tls))
}

fn parse_server_address(text: &str) -> Result<(String, Endpoint, Option<u16>), String> {
    let invalid = |why: &str| format!("invalid server address `{text}`: {why}; {SERVER_HINT}");
    let (rest, default_port) = match text.split_once("://") {
        None => (text, None),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, Some(80)),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (rest, Some(443)),
        Some((scheme, _)) => return Err(invalid(&format!("unsupported scheme `{scheme}`"))),
    };
    let name = rest.strip_suffix('/').unwrap_or(rest);
    if name.contains('/') {
        return Err(invalid("a path is not allowed"));
    }
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if let Ok(addr) = name.parse::<SocketAddr>() {
        return Ok((name.to_owned(), Endpoint::Ip(addr), default_port));
    }
    // `[IPv6]` or `[IPv6]:PORT`: the port is missing or bad, or the address.
    if let Some(bracketed) = name.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return Err(invalid("missing `]` after the IPv6 address"));
        };
        let Ok(ip) = ip.parse::<Ipv6Addr>() else {
            return Err(invalid(&format!("bad IPv6 address `{ip}`")));
        };
        return match after.strip_prefix(':') {
            None if after.is_empty() => match default_port {
                Some(port) => Ok((
                    name.to_owned(),
                    Endpoint::Ip(SocketAddr::new(IpAddr::V6(ip), port)),
                    default_port,
                )),
                None => Err(invalid("missing port")),
            },
            None => Err(invalid(&format!("unexpected `{after}` after the IPv6 address"))),
            Some(port) => Err(invalid(&format!("bad port `{port}`"))),
        };
    }
    let (host, port) = match (name.rsplit_once(':'), default_port) {
        (Some(parts), _) => parts,
        (None, Some(_)) => (name, ""),
        (None, None) => return Err(invalid("missing port")),
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    if host.contains(':') {
        return Err(invalid(
            "an IPv6 address must be in brackets, like \"[::1]:9001\"",
        ));
    }
    enum Host {
        Ip(Ipv4Addr),
        Name(String),
    }
    let host = match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(check_host_name(host).map_err(|why| invalid(&why))?),
    };
    // Digits only: `u16::from_str` would take a leading `+`.
    let port = match (port.parse::<u16>(), default_port) {
        (Ok(p), _) if port.bytes().all(|b| b.is_ascii_digit()) => p,
        (_, Some(p)) if port.is_empty() && !name.contains(':') => p,
        _ => return Err(invalid(&format!("bad port `{port}`"))),
    };
    let endpoint = match host {
        Host::Ip(ip) => Endpoint::Ip(SocketAddr::new(IpAddr::V4(ip), port)),
        Host::Name(host) => Endpoint::Dns { host, port },
    };
    Ok((name.to_owned(), endpoint, default_port))
}

/// A DNS name: letters, digits, `-`, `_` and `.` (underscores are not valid
/// in host names, but Docker Compose service names use them and resolvers
/// answer for them); labels of 1 to 63 characters
/// not starting or ending with `-`; at most 253 characters; not all-numeric
/// at the end (that is a mistyped IP address). Returned lowercase.
fn check_host_name(host: &str) -> Result<String, String> {
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".to_owned());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "host name `{host}` may only contain letters, digits, `-`, `_` and `.`"
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!("host name `{host}` has an empty part between dots"));
        }
        if label.len() > 63 {
            return Err(format!("host name `{host}` has a part longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "host name `{host}` has a part starting or ending with `-`"
            ));
        }
    }
    // `10.0.0.300`, `127.1`: a mistyped IP address, not a name to look up.
    if host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{host}` is not a valid IP address"));
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse and validate in-memory files (first is the main file); returns
    /// the parts and every error as a display string. A file toml rejects
    /// makes the set incomplete, as in a real load.
    fn check(files: &[(&str, &str)]) -> (Parts, Vec<String>) {
        check_with(files, &[])
    }

    /// As [`check`], with `other` files (PEM) readable but not parsed.
    fn check_with(files: &[(&str, &str)], other: &[(&str, &str)]) -> (Parts, Vec<String>) {
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

    fn ok(text: &str) -> Parts {
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
    fn server_forms() {
        let ip = |a: &str| Endpoint::Ip(a.parse().unwrap());
        let dns = |h: &str, port| Endpoint::Dns { host: h.into(), port };
        let ok_cases = [
            ("127.0.0.1:1", "127.0.0.1:1", ip("127.0.0.1:1")),
            ("http://127.0.0.1:2", "127.0.0.1:2", ip("127.0.0.1:2")),
            ("http://127.0.0.1:3/", "127.0.0.1:3", ip("127.0.0.1:3")),
            ("HTTP://[::1]:4", "[::1]:4", ip("[::1]:4")),
            ("[2001:db8::1]:80", "[2001:db8::1]:80", ip("[2001:db8::1]:80")),
            // Host names are kept, never resolved; localhost is no exception.
            ("localhost:5", "localhost:5", dns("localhost", 5)),
            ("http://localhost:6/", "localhost:6", dns("localhost", 6)),
            (
                "no-such-host.invalid:80",
                "no-such-host.invalid:80",
                dns("no-such-host.invalid", 80),
            ),
            (
                "App-1.Svc.Cluster.Local:8080",
                "App-1.Svc.Cluster.Local:8080",
                dns("app-1.svc.cluster.local", 8080),
            ),
            (
                "1password.com:443",
                "1password.com:443",
                dns("1password.com", 443),
            ),
            ("a.b2:0", "a.b2:0", dns("a.b2", 0)),
        ];
        for (text, name, endpoint) in ok_cases {
            let (n, e, tls) = parse_server(text).unwrap();
            assert!(!tls, "{text}");
            assert_eq!(n, name, "{text}");
            assert_eq!(e, endpoint, "{text}");
        }
        let long_label = "a".repeat(64);
        let max_label = "a".repeat(63);
        let max_name = format!("{max_label}.{max_label}.{max_label}.{}", "b".repeat(61)); // 253
        assert_eq!(max_name.len(), 253);
        assert!(parse_server(&format!("{max_name}:1")).is_ok());
        assert!(parse_server(&format!("{max_label}:1")).is_ok());
        let hint = SERVER_HINT;
        let bad_cases = [
            ("127.0.0.1", format!("invalid server address `127.0.0.1`: missing port; {hint}")),
            (
                "https://a:x",
                format!("invalid server address `https://a:x`: bad port `x`; {hint}"),
            ),
            (
                "http://a:1/x",
                format!("invalid server address `http://a:1/x`: a path is not allowed; {hint}"),
            ),
            (
                "ftp://a:1",
                format!("invalid server address `ftp://a:1`: unsupported scheme `ftp`; {hint}"),
            ),
            ("a:99999", format!("invalid server address `a:99999`: bad port `99999`; {hint}")),
            ("http://", format!("invalid server address `http://`: it is empty; {hint}")),
            ("a:+80", format!("invalid server address `a:+80`: bad port `+80`; {hint}")),
            ("1.2.3.4:+80", format!("invalid server address `1.2.3.4:+80`: bad port `+80`; {hint}")),
            ("1.2.3.4:", format!("invalid server address `1.2.3.4:`: bad port ``; {hint}")),
            (":80", format!("invalid server address `:80`: missing host; {hint}")),
            (
                "::1:80",
                format!("invalid server address `::1:80`: an IPv6 address must be in brackets, like \"[::1]:9001\"; {hint}"),
            ),
            ("[::1]", format!("invalid server address `[::1]`: missing port; {hint}")),
            ("[::1]:x", format!("invalid server address `[::1]:x`: bad port `x`; {hint}")),
            (
                "[::1]x",
                format!("invalid server address `[::1]x`: unexpected `x` after the IPv6 address; {hint}"),
            ),
            ("[::1:80", format!("invalid server address `[::1:80`: missing `]` after the IPv6 address; {hint}")),
            ("[zz]:80", format!("invalid server address `[zz]:80`: bad IPv6 address `zz`; {hint}")),
            (
                "a b:80",
                format!("invalid server address `a b:80`: host name `a b` may only contain letters, digits, `-`, `_` and `.`; {hint}"),
            ),
            (
                "a..b:80",
                format!("invalid server address `a..b:80`: host name `a..b` has an empty part between dots; {hint}"),
            ),
            (
                "example.com.:80",
                format!("invalid server address `example.com.:80`: host name `example.com.` has an empty part between dots; {hint}"),
            ),
            (
                "-a.com:80",
                format!("invalid server address `-a.com:80`: host name `-a.com` has a part starting or ending with `-`; {hint}"),
            ),
            (
                "a-.com:80",
                format!("invalid server address `a-.com:80`: host name `a-.com` has a part starting or ending with `-`; {hint}"),
            ),
            (
                "10.0.0.300:80",
                format!("invalid server address `10.0.0.300:80`: `10.0.0.300` is not a valid IP address; {hint}"),
            ),
            (
                "127.1:80",
                format!("invalid server address `127.1:80`: `127.1` is not a valid IP address; {hint}"),
            ),
            (
                "bücher.de:80",
                format!("invalid server address `bücher.de:80`: host name `bücher.de` may only contain letters, digits, `-`, `_` and `.`; {hint}"),
            ),
        ];
        for (text, message) in bad_cases {
            assert_eq!(parse_server(text).unwrap_err(), message, "{text}");
        }
        let text = format!("{long_label}.com:80");
        assert_eq!(
            parse_server(&text).unwrap_err(),
            format!("invalid server address `{text}`: host name `{long_label}.com` has a part longer than 63 characters; {hint}")
        );
        let text = format!("{max_name}a:80");
        assert_eq!(
            parse_server(&text).unwrap_err(),
            format!("invalid server address `{text}`: the host name is longer than 253 characters; {hint}")
        );
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host("Api.Example.COM"),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse_host("*.Example.com"),
            Ok(HostPattern::Wildcard(".example.com".into()))
        );
        assert_eq!(parse_host("[::1]"), Ok(HostPattern::Exact("[::1]".into())));
        for bad in [
            "", "*", "*.", "a.*.com", "*a.com", "**.a.com", "*.a*", "a.com:80", "a b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_host("a.*.com").unwrap_err(),
            "invalid host `a.*.com`: a wildcard is only allowed as a leading \"*.\", like \"*.example.com\""
        );
        assert_eq!(
            parse_host("a.com:80").unwrap_err(),
            "invalid host `a.com:80`: remove the port, a route matches the host name on any port"
        );
    }

    #[test]
    fn bind_forms() {
        assert_eq!(parse_bind("0.0.0.0:80"), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(parse_bind("[::1]:8080"), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(parse_bind("localhost:0"), Some("127.0.0.1:0".parse().unwrap()));
        for bad in ["127.0.0.1", ":80", "localhost", "example.com:80", "1.2.3.4:70000"] {
            assert_eq!(parse_bind(bad), None, "{bad}");
        }
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
        let text =
            "[listener.web]\nbind = \"127.0.0.1:1\"\n[[listener.web.route]]\nrespond = { status = 101 }\n";
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
    fn expect_status_forms() {
        let status = |text: &str| {
            parse_status_range(&raw::StatusText {
                text: text.to_owned(),
                quoted: true,
            })
        };
        for (text, range) in [
            ("200-399", (200, 399)),
            ("204", (204, 204)),
            ("100-599", (100, 599)),
            ("599", (599, 599)),
            ("301-301", (301, 301)),
        ] {
            assert_eq!(status(text), Ok(range), "{text}");
        }
        for bad in [
            "",
            "99",
            "600",
            "399-200",
            "2xx",
            "200-",
            "-200",
            "+200",
            "200-+399",
            " 200",
            "200 - 399",
            "200-399-500",
            "0200",
            "65736",
        ] {
            assert_eq!(
                status(bad),
                Err(format!("invalid expect_status `{bad}`: {STATUS_HINT}")),
                "{bad:?}"
            );
        }
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
        let paths: Vec<&Path> = parts.pem_sources.iter().map(|s| s.path.as_path()).collect();
        assert_eq!(
            paths,
            [Path::new("conf.d/certs/a.pem"), Path::new("conf.d/certs/a.key")]
        );
        assert!(parts.pem_sources.iter().all(|s| s.kind == SourceKind::Pem));

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
        assert_eq!(parts.pem_sources.len(), 4);
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
    fn server_schemes_and_default_ports() {
        let ip = |a: &str| Endpoint::Ip(a.parse().unwrap());
        let cases = [
            (
                "https://127.0.0.1:8443",
                "127.0.0.1:8443",
                ip("127.0.0.1:8443"),
                true,
            ),
            ("https://127.0.0.1", "127.0.0.1", ip("127.0.0.1:443"), true),
            ("HTTPS://[::1]/", "[::1]", ip("[::1]:443"), true),
            ("http://127.0.0.1", "127.0.0.1", ip("127.0.0.1:80"), false),
            (
                "https://api.example.com",
                "api.example.com",
                Endpoint::Dns {
                    host: "api.example.com".into(),
                    port: 443,
                },
                true,
            ),
        ];
        for (text, name, endpoint, tls) in cases {
            assert_eq!(parse_server(text), Ok((name.to_owned(), endpoint, tls)), "{text}");
        }
        // Without a scheme the port stays required.
        assert!(parse_server("api.example.com").is_err());
        assert!(parse_server("https://a:").is_err());
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
}
