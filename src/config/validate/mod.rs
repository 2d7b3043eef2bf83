//! Semantic checks over all parsed files together: [raw::File] -> [`Config`].
//!
//! Every problem is collected; nothing stops at the first one. Doubtful but
//! valid choices become warnings, which never make a configuration invalid.
//! Files the configuration names (access log directories, PEM files) are
//! looked at through [`Fs`], so tests can keep everything in memory.
//!
//! This module owns the walk over the files, the [`Validator`] every
//! section adds to, what is only known once every file is read (references,
//! unused upstreams, no listener), and the value helpers the sections share.
//! One file per section: [`global`] (`[global]`, `[admin]`), [`upstream`],
//! [`listener`] (and routes), [`tls`] (both sides, PEM files); [`parse`]
//! holds the pure parsers.

mod global;
mod listener;
mod parse;
#[cfg(test)]
mod tests;
mod tls;
mod upstream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::error::{Error, Location};
use super::fs::Fs;
use super::raw;
use super::suggest;
use super::{Admin, DefinedAt, Global, Listener, LogFormat, Source, Upstream};

const DURATION_HINT: &str = "use a number with a unit, like \"250ms\", \"5s\" or \"2m\"";

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

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
