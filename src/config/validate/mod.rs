//! Semantic checks over all parsed files together: [`raw::File`]s -> [`Config`].
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

mod access;
mod global;
mod listener;
mod parse;
#[cfg(test)]
mod tests;
mod tls;
mod upstream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::error::{Error, LineIndex, Location};
use super::fs::Fs;
use super::names::Words;
use super::raw;
use super::suggest;
use super::{Config, DefinedAt, Global};
use global::GlobalSeen;
use listener::ListenersSeen;

/// The longest duration any setting takes. Every deadline ginx forms is
/// `now + setting`; a bound far below `Instant`'s range keeps that sum from
/// overflowing (it would panic in every connection), and no timeout of a
/// proxy needs more.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const DURATION_HINT: &str = "use a number with a unit, like \"250ms\", \"5s\" or \"2m\"";

/// One file after parsing: `file` is `None` when toml rejected it (that error
/// has already been reported).
pub(crate) struct Parsed {
    pub(crate) path: PathBuf,
    /// The text parsed: as written, or with unknown keys blanked out.
    pub(crate) text: String,
    /// The text as written when it differs from `text` (the same bytes
    /// offsets, but a blanked `é` is one space per byte): columns are
    /// counted in it, so that they match what the user sees.
    pub(crate) written: Option<String>,
    pub(crate) file: Option<raw::File>,
}

/// Check all files together, pushing every problem onto `errors`.
///
/// `complete` is false when some file could not be read or parsed: checks
/// that such a file might have satisfied (unknown upstream, no listener) are
/// then skipped, to avoid false alarms.
///
/// Returns the configuration as far as it is valid (all of it when no error
/// was pushed). Validation knows only the files the configuration *names*:
/// the returned `sources` are the PEM files read, in the order they are
/// first named, and `watch_dirs` the directory of every PEM path named (read
/// or not: creating a missing file reloads). [`super::load`](mod@super::load) puts the
/// configuration files in front of both, and sorts the warnings.
pub(crate) fn validate(
    fs: &dyn Fs,
    files: &[Parsed],
    main: &Path,
    complete: bool,
    errors: &mut Vec<Error>,
) -> Config {
    let mut v = Validator::new(fs, errors);
    for f in files {
        if let Some(raw) = &f.file {
            let lines = LineIndex::new(&f.text);
            let at = At {
                path: &f.path,
                text: &f.text,
                written: f.written.as_deref().unwrap_or(&f.text),
                lines: &lines,
            };
            v.file(at, raw);
        }
    }
    v.finish(main, complete)
}

/// A file being checked: turns spans into located errors.
#[derive(Clone, Copy)]
struct At<'a> {
    path: &'a Path,
    text: &'a str,
    /// `text` as written: where columns and widths are counted.
    written: &'a str,
    lines: &'a LineIndex,
}

impl At<'_> {
    fn loc(&self, offset: usize) -> Location {
        self.lines.locate(self.path, self.written, offset)
    }

    fn error(&self, span: Range<usize>, message: String) -> Error {
        Error::at_located(self.loc(span.start), self.written, span, message)
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

/// What validation has built and noted so far, over all files.
struct Validator<'e> {
    fs: &'e dyn Fs,
    errors: &'e mut Vec<Error>,
    /// What passed, section by section, and what goes with it: the PEM files
    /// read, their directories, the warnings, where each table is defined.
    config: Config,
    /// Each PEM path read so far: its text or why it could not be read. A
    /// file named twice is read once.
    pem_reads: HashMap<PathBuf, Result<Arc<str>, String>>,
    /// Where `[global]` keys and `[admin]` are set.
    global: GlobalSeen,
    /// Listener tables and the addresses they bind.
    listeners: ListenersSeen,
    /// Every upstream defined, in definition order, with where its header
    /// is and how wide: for messages and the unused-upstream warning.
    upstreams: Vec<(String, Location, u32)>,
    /// Every `upstream = "NAME"` reference (where, how wide, the name),
    /// checked once all files are read.
    references: Vec<(Location, u32, String)>,
}

impl<'e> Validator<'e> {
    fn new(fs: &'e dyn Fs, errors: &'e mut Vec<Error>) -> Self {
        Validator {
            fs,
            errors,
            config: Config {
                global: Global::default(),
                listeners: BTreeMap::new(),
                upstreams: BTreeMap::new(),
                sources: Vec::new(),
                watch_dirs: Vec::new(),
                admin: None,
                warnings: Vec::new(),
                defined_at: DefinedAt::default(),
            },
            pem_reads: HashMap::new(),
            global: GlobalSeen::default(),
            listeners: ListenersSeen::default(),
            upstreams: Vec::new(),
            references: Vec::new(),
        }
    }

    /// Every section of one file, in the order their errors are listed.
    fn file(&mut self, at: At<'_>, raw: &raw::File) {
        if let Some(g) = &raw.global {
            self.global(at, g);
        }
        if let Some(a) = &raw.admin {
            self.admin(at, a);
        }
        for (name, u) in &raw.upstream.0 {
            self.upstream(at, name, u);
        }
        for (name, l) in &raw.listener.0 {
            self.listener(at, name, l);
        }
    }

    /// The checks that need every file: what a missing file might satisfy
    /// only when `complete`.
    fn finish(mut self, main: &Path, complete: bool) -> Config {
        self.check_resolve_range(complete);
        self.check_admin_bind();
        if complete {
            self.check_references();
            self.check_unused_upstreams();
            if self.listeners.count == 0 {
                self.errors.push(Error::file(
                    main,
                    "no listener defined: add a [listener.NAME] table with bind = \"IP:PORT\"".to_owned(),
                ));
            }
        }
        self.config
    }
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
    fn choice<T: Clone>(
        &mut self,
        at: At<'_>,
        value: &Spanned<String>,
        key: &str,
        words: &Words<T>,
    ) -> Option<T> {
        let text = value.get_ref();
        if let Some(v) = words.value(text) {
            return Some(v.clone());
        }
        let names = words.all();
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
            Ok(d) if d > MAX_DURATION => {
                self.errors.push(at.error(
                    value.span(),
                    format!("duration `{text}` for `{key}` is too long: at most 365 days (\"365d\")"),
                ));
                None
            }
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
        let defined = &self.config.defined_at.upstreams;
        let names = || self.upstreams.iter().map(|(name, _, _)| name.as_str());
        for (location, width, name) in &self.references {
            if defined.contains_key(name) {
                continue;
            }
            let message = if defined.is_empty() {
                format!("unknown upstream `{name}` (no upstream is defined: add an [upstream.{name}] table)")
            } else if let Some(hint) = suggest::did_you_mean(name, names()) {
                format!("unknown upstream `{name}`: {hint}")
            } else {
                format!(
                    "unknown upstream `{name}` (defined upstreams: {})",
                    names().collect::<Vec<_>>().join(", ")
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
        if used
            .iter()
            .any(|n| !self.config.defined_at.upstreams.contains_key(*n))
        {
            return;
        }
        for (name, location, width) in &self.upstreams {
            if used.contains(name.as_str()) {
                continue;
            }
            self.config.warnings.push(Error::located(
                location.clone(),
                *width,
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
