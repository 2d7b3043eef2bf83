//! Recovering from unknown keys, so that one misspelt key does not hide the
//! rest of a file's problems.
//!
//! serde stops at the first unknown key. This module owns what happens
//! next: the whole `key = value` entry is blanked out (replaced by spaces,
//! so that every other byte keeps its offset and every later error its
//! line and column) and the file parsed again. That takes a small scanner
//! of TOML's lexical shapes (keys, strings, arrays, inline tables), which
//! refuses whatever it does not understand: then the error stands as toml
//! reported it. What a key means is [`super::raw`]'s (the shapes) and
//! [`super::validate`]'s (the checks); reporting the error is
//! [`super::load`](mod@super::load)'s.

use serde::de;

use super::raw;

/// At most this many unknown keys are skipped in one file; the next one is
/// reported and the file left unparsed.
const MAX_SKIPPED_KEYS: usize = 50;

/// Parse one file's text, skipping unknown keys so that they do not hide the
/// file's other problems: each unknown key error is passed to `unknown`, its
/// whole `key = value` entry blanked out (same offsets, see
/// [`blank_entry`]) and the text parsed again. Returns the text finally
/// parsed and the result: the file, or the error that stopped (another kind
/// of error, or an unknown key that cannot be delimited safely, e.g. a table
/// header).
pub(super) fn parse_skipping_unknown_keys(
    text: &str,
    mut unknown: impl FnMut(&toml::de::Error),
) -> (String, Result<raw::File, toml::de::Error>) {
    let mut text = text.to_owned();
    for _ in 0..MAX_SKIPPED_KEYS {
        let e = match raw::parse(&text) {
            Ok(file) => return (text, Ok(file)),
            Err(e) => e,
        };
        let blanked = match e.span() {
            Some(span) if is_unknown_field(&e) => blank_entry(&text, span.start),
            _ => None,
        };
        match blanked {
            Some(blanked) => {
                unknown(&e);
                text = blanked;
            }
            None => return (text, Err(e)),
        }
    }
    let result = raw::parse(&text);
    (text, result)
}

/// The offset of the `[` of the last table header (`[name]`, `[[name]]`)
/// on a line before the one of byte `offset` of `text`: the table a key
/// written there belongs to. `None` before any header.
pub(super) fn table_header(text: &str, offset: usize) -> Option<usize> {
    let before = text.get(..offset)?;
    let before = &before[..before.rfind('\n').map_or(0, |i| i + 1)];
    let mut header = None;
    let mut at = 0;
    for line in before.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let body = trimmed.split('#').next().unwrap_or("").trim_end();
        // Not a line of a multi-line array: no `,`, no `=`, no quoted value.
        let is_header = body.starts_with('[') && body.ends_with(']') && !body.contains([',', '=']);
        if is_header {
            header = Some(at + line.len() - trimmed.len());
        }
        at += line.len();
    }
    header
}

/// Whether `e` is an unknown key rejected by `deny_unknown_fields`, with
/// the key's position: one that [`blank_entry`] may be able to skip.
fn is_unknown_field(e: &toml::de::Error) -> bool {
    e.message().starts_with("unknown field `") && e.span().is_some()
}

/// `text` with the whole `key = value` entry whose key starts at byte `key`
/// replaced by spaces, line breaks kept: every other byte keeps its offset,
/// so every other line and column stays the same. `key` may be any part of a
/// dotted key (`global.log_levl = ...`); in an inline table the entry's comma
/// goes too.
///
/// `None` when the entry cannot be delimited safely: a table header
/// (`[global.foo]`, `[[listener.web.rout]]`), a shape not understood, or a
/// result that toml does not accept as a document (`text` itself must be a
/// valid document, as it is after any error other than a syntax error).
fn blank_entry(text: &str, key: usize) -> Option<String> {
    let b = text.as_bytes();
    let (start, before) = entry_start(b, key)?;
    // The key, dot by dot, then `=`.
    let mut i = start;
    loop {
        i = skip_blank(b, key_end(b, i)?);
        match b.get(i) {
            Some(b'.') => i = skip_blank(b, i + 1),
            Some(b'=') => break,
            _ => return None,
        }
    }
    let value_start = skip_blank(b, i + 1);
    let value_end = value_end(b, value_start)?;
    // The value on its own must be one, so that a scan stopping early is not
    // taken for the end.
    let value = text.get(value_start..value_end)?;
    toml::from_str::<de::IgnoredAny>(&format!("v = {value}")).ok()?;
    let range = match before {
        Before::LineStart => start..value_end,
        Before::Open | Before::Comma(_) => {
            let after = skip_blank(b, value_end);
            match (b.get(after), before) {
                (Some(b','), _) => start..after + 1,
                (Some(b'}'), Before::Comma(comma)) => comma..value_end,
                (Some(b'}'), _) => start..value_end,
                _ => return None,
            }
        }
    };
    let mut out = b.to_vec();
    for byte in &mut out[range] {
        if *byte != b'\n' && *byte != b'\r' {
            *byte = b' ';
        }
    }
    let out = String::from_utf8(out).ok()?;
    toml::from_str::<de::IgnoredAny>(&out).ok()?;
    Some(out)
}

/// What comes before an entry.
#[derive(Clone, Copy)]
enum Before {
    /// The start of a line: an entry of a table.
    LineStart,
    /// The `{` of an inline table: its first entry.
    Open,
    /// The `,` at this offset: a later entry of an inline table.
    Comma(usize),
}

/// Where the (possibly dotted) key that has a part starting at `key` starts,
/// and what comes before it. `None` in a table header.
fn entry_start(b: &[u8], key: usize) -> Option<(usize, Before)> {
    let mut start = key;
    loop {
        let i = skip_blank_back(b, start);
        if i > 0 && b[i - 1] == b'.' {
            start = key_start_back(b, skip_blank_back(b, i - 1))?;
            continue;
        }
        let before = match i.checked_sub(1).map(|j| b[j]) {
            None | Some(b'\n') => Before::LineStart,
            Some(b'{') => Before::Open,
            Some(b',') => Before::Comma(i - 1),
            _ => return None,
        };
        return Some((start, before));
    }
}

fn is_bare_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Spaces and tabs from `i` on.
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// Spaces and tabs before `i`.
fn skip_blank_back(b: &[u8], mut i: usize) -> usize {
    while i > 0 && matches!(b[i - 1], b' ' | b'\t') {
        i -= 1;
    }
    i
}

/// Spaces, tabs, line breaks and comments from `i` on (inside an array).
fn skip_space(b: &[u8], mut i: usize) -> usize {
    loop {
        match b.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'#') => {
                while !matches!(b.get(i), None | Some(b'\n')) {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// The end of one key part (bare or quoted) starting at `i`.
fn key_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' | b'\'' => quoted_end(b, i),
        _ => {
            let mut j = i;
            while b.get(j).is_some_and(|c| is_bare_key_byte(*c)) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The start of the key part (bare or quoted) that ends at `end`.
fn key_start_back(b: &[u8], end: usize) -> Option<usize> {
    let last = *b.get(end.checked_sub(1)?)?;
    if last == b'"' || last == b'\'' {
        let mut j = end - 1;
        loop {
            j = j.checked_sub(1)?;
            match b[j] {
                b'\n' => return None,
                c if c == last => {
                    let escapes = b[..j].iter().rev().take_while(|c| **c == b'\\').count();
                    if last == b'\'' || escapes % 2 == 0 {
                        // `j` must open a string that ends at `end`.
                        return (quoted_end(b, j) == Some(end)).then_some(j);
                    }
                }
                _ => {}
            }
        }
    }
    let mut j = end;
    while j > 0 && is_bare_key_byte(b[j - 1]) {
        j -= 1;
    }
    (j < end).then_some(j)
}

/// The end of the one-line string (basic or literal) opening at `i`.
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'\n' => return None,
            b'\\' if quote == b'"' => j += 2,
            c if c == quote => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end of the multi-line string (`"""` or `'''`) opening at `i`.
fn multiline_end(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    let delimiter = [quote; 3];
    let mut j = i + 3;
    loop {
        let rest = b.get(j..)?;
        if quote == b'"' && rest.first() == Some(&b'\\') {
            j += 2;
        } else if rest.starts_with(&delimiter) {
            // Up to two quotes just before the delimiter belong to the text.
            let mut end = j + 3;
            while end < j + 5 && b.get(end) == Some(&quote) {
                end += 1;
            }
            return Some(end);
        } else if rest.is_empty() {
            return None;
        } else {
            j += 1;
        }
    }
}

/// The end of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        q @ (b'"' | b'\'') if b.get(i..i + 3) == Some(&[q; 3]) => multiline_end(b, i),
        b'"' | b'\'' => quoted_end(b, i),
        b'[' => {
            let mut j = skip_space(b, i + 1);
            loop {
                if b.get(j) == Some(&b']') {
                    return Some(j + 1);
                }
                j = skip_space(b, value_end(b, j)?);
                match b.get(j)? {
                    b',' => j = skip_space(b, j + 1),
                    b']' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b'{' => {
            let mut j = skip_blank(b, i + 1);
            if b.get(j) == Some(&b'}') {
                return Some(j + 1);
            }
            loop {
                j = skip_blank(b, key_end(b, j)?);
                match b.get(j)? {
                    b'.' => {
                        j = skip_blank(b, j + 1);
                        continue;
                    }
                    b'=' => {}
                    _ => return None,
                }
                j = skip_blank(b, value_end(b, skip_blank(b, j + 1))?);
                match b.get(j)? {
                    b',' => j = skip_blank(b, j + 1),
                    b'}' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        _ => {
            let scalar = |mut j: usize| {
                while b
                    .get(j)
                    .is_some_and(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}' | b'#'))
                {
                    j += 1;
                }
                j
            };
            let mut j = scalar(i);
            // A date and a time may be separated by a space.
            let is_date = j == i + 10 && b[i..j].iter().filter(|c| **c == b'-').count() == 2;
            if is_date && b.get(j) == Some(&b' ') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j = scalar(j + 1);
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` with the entry of the key `bad` (its first occurrence)
    /// blanked out; a blanked text keeps its length and line breaks.
    fn blanked(text: &str) -> Option<String> {
        let out = blank_entry(text, text.find("bad").unwrap())?;
        assert_eq!(out.len(), text.len());
        assert_eq!(out.matches('\n').count(), text.matches('\n').count());
        Some(out)
    }

    #[test]
    fn blank_entry_shapes() {
        let cases: &[(&str, &str)] = &[
            // Simple, dotted (error on any part), trailing comment kept.
            ("a = 1\nbad = \"x\" # c\nb = 2\n", "a = 1\n          # c\nb = 2\n"),
            ("[g]\nx = 1\n\"q\" . bad = 'x'\n", "[g]\nx = 1\n               \n"),
            ("g.bad.c = 1\n", "           \n"),
            // Multi-line array with comments, brackets in strings and comments.
            (
                "bad = [\n  \"]\", # ]\n  [1, 2],\n]\nok = 1\n",
                "       \n          \n         \n \nok = 1\n",
            ),
            // Multi-line strings.
            (
                "bad = \"\"\"\na \\\"\"\" \"\"\"\"\nok = 1\n",
                "         \n           \nok = 1\n",
            ),
            ("bad = '''\n]''''\nok = 1\n", "         \n     \nok = 1\n"),
            // A date-time with a space.
            (
                "bad = 1979-05-27 07:32:00Z\nok = 1\n",
                "                          \nok = 1\n",
            ),
            // Inline tables: the comma goes with the entry.
            (
                "t = { a = 1, bad = [2, 3], c = 3 }\n",
                "t = { a = 1,               c = 3 }\n",
            ),
            (
                "t = { bad = { x = 1 }, c = 3 }\n",
                "t = {                  c = 3 }\n",
            ),
            ("t = { a = 1, bad = 2 }\n", "t = { a = 1          }\n"),
            ("t = [{ bad = 2 }]\n", "t = [{         }]\n"),
        ];
        for (text, expected) in cases {
            assert_eq!(blanked(text).as_deref(), Some(*expected), "{text:?}");
        }
    }

    #[test]
    fn blank_entry_refuses_headers() {
        for text in ["[g.bad]\nx = 1\n", "[[g . bad]]\nx = 1\n", "[bad]\nx = 1\n"] {
            assert_eq!(blanked(text), None, "{text:?}");
        }
    }

    #[test]
    fn unknown_keys_are_skipped_one_by_one() {
        let text = "[listener.a]\nbnd = \"x\"\nroute = [{ pth = \"/\", upstream = \"u\" }]\n";
        let e = raw::parse(text).unwrap_err();
        assert!(is_unknown_field(&e));
        let text = blank_entry(text, e.span().unwrap().start).unwrap();
        let e = raw::parse(&text).unwrap_err();
        assert!(is_unknown_field(&e));
        assert_eq!(&text[e.span().unwrap()], "pth");
        let text = blank_entry(&text, e.span().unwrap().start).unwrap();
        let f = raw::parse(&text).unwrap();
        let route = f.listener.0[0].1.route[0].get_ref();
        assert_eq!(route.upstream.as_ref().unwrap().get_ref(), "u");
        // Other errors are not unknown keys.
        let e = raw::parse("[listener.a]\nbind = 1\n").unwrap_err();
        assert!(!is_unknown_field(&e));
    }
}
