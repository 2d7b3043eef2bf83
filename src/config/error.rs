//! Located configuration problems (errors and warnings), and how they are
//! shown: the `FILE:LINE:COL: message` line every log and editor understands,
//! plus, for a terminal, the source line with a caret under the problem.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::Source;

/// A position in a configuration file: `FILE:LINE:COL`, 1-based, the column
/// counted in characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file, as given (main file) or as produced by an include glob.
    pub(crate) file: PathBuf,
    /// 1-based line.
    pub(crate) line: u32,
    /// 1-based column, in characters.
    pub(crate) column: u32,
}

impl Location {
    /// The location of byte `offset` in `text` (the contents of `file`).
    ///
    /// An offset past the end or inside a character is moved back to the
    /// nearest character boundary. This counts the lines before `offset`:
    /// fine for one error, but a file whose every table is located (as
    /// validation does) wants a [`LineIndex`].
    pub(crate) fn at(file: &Path, text: &str, offset: usize) -> Location {
        LineIndex::new(&text[..boundary(text, offset)]).locate(file, text, offset)
    }
}

/// `offset` clamped to `text` and moved back to a character boundary.
fn boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Where each line of a text starts, so that locating an offset is a
/// binary search rather than a count of every newline before it: with one
/// located item per route, counting made `--check` of 10,000 routes
/// quadratic in the file's size.
#[derive(Debug, Clone, Default)]
pub(crate) struct LineIndex {
    /// Byte offset of the start of every line; the first is 0.
    starts: Vec<usize>,
}

impl LineIndex {
    /// The index of `text`.
    pub(crate) fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// The location of byte `offset` in `text` (the text this indexes, the
    /// contents of `file`), as [`Location::at`] finds it.
    pub(crate) fn locate(&self, file: &Path, text: &str, offset: usize) -> Location {
        let offset = boundary(text, offset);
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let line_start = self.starts[line - 1];
        let column = text[line_start..offset].chars().count() + 1;
        Location {
            file: file.to_path_buf(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A problem at a position in a file: displays as `FILE:LINE:COL: message`.
    #[error("{location}: {message}")]
    At {
        /// Where the problem is.
        location: Location,
        /// How many characters the problem spans from `location` (0 for a
        /// point), for the caret under it; clipped to the line when shown.
        width: u32,
        /// What is wrong and what to do, lowercase.
        message: String,
    },
    /// A problem with a whole file (e.g. it cannot be read): displays as
    /// `PATH: message`.
    #[error("{}: {message}", path.display())]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong and what to do, lowercase.
        message: String,
    },
}

impl Error {
    /// An error at byte `span.start` of `text`, the contents of `file`.
    pub(crate) fn at(file: &Path, text: &str, span: Range<usize>, message: String) -> Error {
        Error::at_located(Location::at(file, text, span.start), text, span, message)
    }

    /// [`Error::at`] with `location` already found (for `span.start`).
    pub(crate) fn at_located(location: Location, text: &str, span: Range<usize>, message: String) -> Error {
        let width = text
            .get(span.start.min(text.len())..span.end.min(text.len()))
            .map_or(0, |s| s.chars().take_while(|&c| c != '\n').count());
        Error::At {
            location,
            width: u32::try_from(width).unwrap_or(u32::MAX),
            message,
        }
    }

    /// An error at an already computed `location`, spanning `width`
    /// characters.
    pub(crate) fn located(location: Location, width: u32, message: String) -> Error {
        Error::At {
            location,
            width,
            message,
        }
    }

    /// An error about the whole file `path`.
    pub(crate) fn file(path: &Path, message: String) -> Error {
        Error::File {
            path: path.to_path_buf(),
            message,
        }
    }

    /// The file the problem is in.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Error::At { location, .. } => &location.file,
            Error::File { path, .. } => path,
        }
    }

    /// The position of the problem, if it has one.
    pub(crate) fn location(&self) -> Option<&Location> {
        match self {
            Error::At { location, .. } => Some(location),
            Error::File { .. } => None,
        }
    }

    /// The message, without the location.
    pub(crate) fn message(&self) -> &str {
        match self {
            Error::At { message, .. } | Error::File { message, .. } => message,
        }
    }

    /// The source line of the problem with a caret under it, rustc-style,
    /// taken from the text of its file in `sources`:
    ///
    /// ```text
    ///   |
    /// 3 | upstream = "ap"
    ///   |            ^^^^
    /// ```
    ///
    /// `None` for a whole-file problem or when the text is not in `sources`.
    pub(crate) fn snippet(&self, sources: &[Source]) -> Option<String> {
        let Error::At { location, width, .. } = self else {
            return None;
        };
        let text = &sources.iter().find(|s| s.path == location.file)?.text;
        let line = text
            .lines()
            .nth(usize::try_from(location.line).ok()?.checked_sub(1)?)?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let number = location.line.to_string();
        let pad = " ".repeat(number.len());
        let column = usize::try_from(location.column).unwrap_or(1).saturating_sub(1);
        // Keep tabs before the caret so it lines up under the same text.
        let indent: String = line
            .chars()
            .take(column)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let rest = line.chars().count().saturating_sub(column);
        let carets = usize::try_from(*width).unwrap_or(1).min(rest).max(1);
        Some(format!(
            "{pad} |\n{number} | {line}\n{pad} | {indent}{}",
            "^".repeat(carets)
        ))
    }

    /// `(line, column)` for sorting; whole-file errors come first.
    fn position(&self) -> (u32, u32) {
        self.location().map_or((0, 0), |l| (l.line, l.column))
    }
}

/// Every problem found while loading a configuration, one per line when
/// displayed, sorted by file (in the order the files were read) then position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors {
    errors: Vec<Error>,
    /// The files that were read in this attempt (main file first), so that a
    /// caller can tell whether a failed configuration changed since, and
    /// `--check` can show the lines the errors point at.
    pub(crate) sources: Vec<Source>,
    /// Doubtful but valid choices found along the way (as
    /// [`super::Config::warnings`]), sorted like the errors.
    pub(crate) warnings: Vec<Error>,
}

impl Errors {
    /// Collects `errors`, sorting them by the position of their file in
    /// `file_order` (files not in it last), then by line and column.
    pub(crate) fn new(mut errors: Vec<Error>, sources: Vec<Source>, file_order: &[PathBuf]) -> Errors {
        sort(&mut errors, file_order);
        Errors {
            errors,
            sources,
            warnings: Vec::new(),
        }
    }

    /// The errors, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Error> {
        self.errors.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there is no error (never the case for a failed load).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Sort `errors` by the position of their file in `file_order` (files not in
/// it last), then by line and column, and drop duplicates.
pub(crate) fn sort(errors: &mut Vec<Error>, file_order: &[PathBuf]) {
    let rank = |e: &Error| {
        let file = file_order
            .iter()
            .position(|p| p == e.path())
            .unwrap_or(usize::MAX);
        (file, e.position())
    };
    errors.sort_by_key(rank);
    errors.dedup();
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl<'a> IntoIterator for &'a Errors {
    type Item = &'a Error;
    type IntoIter = std::slice::Iter<'a, Error>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl IntoIterator for Errors {
    type Item = Error;
    type IntoIter = std::vec::IntoIter<Error>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_line_index_locates_as_counting_does() {
        let text = "a = 1\nbé = \"x\"\n\n[t]\nk = 2";
        let index = LineIndex::new(text);
        let file = Path::new("f.toml");
        for offset in 0..=text.len() + 3 {
            let counted = {
                let offset = boundary(text, offset);
                let before = &text[..offset];
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                (
                    before.matches('\n').count() + 1,
                    before[line_start..].chars().count() + 1,
                )
            };
            let found = index.locate(file, text, offset);
            assert_eq!(
                (found.line as usize, found.column as usize),
                counted,
                "offset {offset}"
            );
            assert_eq!(Location::at(file, text, offset), found, "offset {offset}");
        }
    }
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let text = "ab\nçé = 1\n";
        let at = |o| Location::at(Path::new("f.toml"), text, o).to_string();
        assert_eq!(at(0), "f.toml:1:1");
        assert_eq!(at(2), "f.toml:1:3");
        assert_eq!(at(3), "f.toml:2:1");
        // "çé" is 4 bytes, 2 characters.
        assert_eq!(at(7), "f.toml:2:3");
        // Inside a character: moved back to its start.
        assert_eq!(at(4), "f.toml:2:1");
        // Past the end: the end.
        assert_eq!(at(100), "f.toml:3:1");
    }

    #[test]
    fn error_display_forms() {
        let e = Error::at(Path::new("conf.d/a.toml"), "x\ny", 2..3, "bad".into());
        assert_eq!(e.to_string(), "conf.d/a.toml:2:1: bad");
        assert_eq!(e.message(), "bad");
        assert_eq!(e.path(), Path::new("conf.d/a.toml"));
        let e = Error::file(Path::new("ginx.toml"), "cannot read file".into());
        assert_eq!(e.to_string(), "ginx.toml: cannot read file");
        assert!(e.location().is_none());
    }

    fn source(path: &str, text: &str) -> Source {
        Source {
            path: PathBuf::from(path),
            text: text.to_owned(),
            kind: super::super::SourceKind::Config,
        }
    }

    #[test]
    fn snippet_carets_span_the_problem() {
        let text = "[listener.web]\nbind = \"x\"\nupstream = \"ap\"\n";
        let sources = [source("a.toml", text)];
        let start = text.find("\"ap\"").unwrap();
        let e = Error::at(Path::new("a.toml"), text, start..start + 4, "unknown".into());
        assert_eq!(e.to_string(), "a.toml:3:12: unknown");
        assert_eq!(
            e.snippet(&sources).unwrap(),
            "  |\n3 | upstream = \"ap\"\n  |            ^^^^"
        );
        // A point gets one caret; a span past the line end is clipped.
        let e = Error::at(Path::new("a.toml"), text, 0..0, "x".into());
        assert_eq!(e.snippet(&sources).unwrap(), "  |\n1 | [listener.web]\n  | ^");
        let e = Error::at(Path::new("a.toml"), text, 15..40, "x".into());
        assert_eq!(
            e.snippet(&sources).unwrap(),
            "  |\n2 | bind = \"x\"\n  | ^^^^^^^^^^"
        );
        // Tabs before the column are kept so the caret lines up.
        let text = "\tkey = 1\n";
        let e = Error::at(Path::new("t.toml"), text, 7..8, "x".into());
        assert_eq!(
            e.snippet(&[source("t.toml", text)]).unwrap(),
            "  |\n1 | \tkey = 1\n  | \t      ^"
        );
        // No text, no snippet; whole-file errors have none.
        assert!(e.snippet(&[]).is_none());
        assert!(Error::file(Path::new("a.toml"), "x".into())
            .snippet(&sources)
            .is_none());
    }

    #[test]
    fn errors_sorted_by_file_order_then_position() {
        let b = Path::new("b.toml");
        let a = Path::new("a.toml");
        let text = "1\n2\n3\n";
        let errs = Errors::new(
            vec![
                Error::at(a, text, 4..5, "a3".into()),
                Error::at(b, text, 2..3, "b2".into()),
                Error::at(a, text, 0..1, "a1".into()),
                Error::file(b, "b".into()),
            ],
            Vec::new(),
            &[b.to_path_buf(), a.to_path_buf()],
        );
        assert_eq!(
            errs.to_string(),
            "b.toml: b\nb.toml:2:1: b2\na.toml:1:1: a1\na.toml:3:1: a3"
        );
        assert_eq!(errs.len(), 4);
        assert!(!errs.is_empty());
        assert_eq!(errs.iter().count(), 4);
    }
}
