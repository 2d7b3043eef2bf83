//! The three access log line formats (nginx's `combined` plus ginx's
//! fields, JSON lines, logfmt text) and the escaping that keeps a hostile
//! value from splitting or forging a line.
//!
//! This module owns what a line looks like, byte for byte; what goes into it
//! is the request path's [`AccessRecord`], and where it goes is
//! [`super::writer`]'s job. It runs on the worker that served the request,
//! so it allocates one `String` per line and does no I/O.

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderValue, Uri, Version};
use serde::Serialize;

use super::civil::Civil;
use super::AccessRecord;
use crate::config::AccessLogFormat;

/// One complete line, `\n`-terminated.
pub(super) fn format_line(format: AccessLogFormat, record: &AccessRecord<'_>) -> String {
    let mut line = String::with_capacity(256);
    match format {
        AccessLogFormat::Combined => combined(&mut line, record),
        AccessLogFormat::Json => json(&mut line, record),
        AccessLogFormat::Text => text(&mut line, record),
    }
    line.push('\n');
    line
}

/// nginx's `combined`, then ginx's fields:
/// `IP - - [TIME] "REQUEST" STATUS BYTES "REFERER" "AGENT" rt= upstream= urt= rid= listener=`.
fn combined(out: &mut String, r: &AccessRecord<'_>) {
    let civil = Civil::from_system_time(r.time);
    let _ = write!(out, "{} - - [", r.client.ip());
    civil.write_clf(out);
    out.push_str("] \"");
    nginx_escape(out, r.method.as_str().as_bytes(), false);
    out.push(' ');
    nginx_escape(out, request_target(r.target, r.version).as_bytes(), false);
    out.push(' ');
    out.push_str(protocol(r.version));
    let _ = write!(out, "\" {} {} \"", r.status, r.bytes_sent);
    nginx_escape_or_dash(out, r.referer.map(HeaderValue::as_bytes), false);
    out.push_str("\" \"");
    nginx_escape_or_dash(out, r.user_agent.map(HeaderValue::as_bytes), false);
    out.push_str("\" rt=");
    seconds(out, r.duration);
    // The fields after the quoted ones are unquoted: a space in them would
    // split a field, so it is escaped too.
    out.push_str(" upstream=");
    nginx_escape_or_dash(out, r.upstream.map(str::as_bytes), true);
    out.push_str(" urt=");
    match r.upstream_time {
        Some(time) => seconds(out, time),
        None => out.push('-'),
    }
    out.push_str(" rid=");
    nginx_escape_or_dash(out, Some(r.request_id.as_bytes()), true);
    out.push_str(" listener=");
    nginx_escape_or_dash(out, Some(r.listener.as_bytes()), true);
}

/// Fields in a fixed order; absent values are `null`.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    client: String,
    listener: &'a str,
    method: &'a str,
    target: &'a str,
    protocol: &'static str,
    host: Option<&'a str>,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    upstream: Option<&'a str>,
    upstream_ms: Option<f64>,
    request_id: &'a str,
    referer: Option<std::borrow::Cow<'a, str>>,
    user_agent: Option<std::borrow::Cow<'a, str>>,
}

/// One JSON object. serde_json escapes quotes and control characters; header
/// bytes that are not UTF-8 become U+FFFD.
fn json(out: &mut String, r: &AccessRecord<'_>) {
    let mut time = String::with_capacity(24);
    Civil::from_system_time(r.time).write_rfc3339_millis(&mut time);
    let target = request_target(r.target, r.version);
    let line = JsonLine {
        time: &time,
        client: r.client.ip().to_string(),
        listener: r.listener,
        method: r.method.as_str(),
        target: &target,
        protocol: protocol(r.version),
        host: r.host,
        status: r.status,
        bytes: r.bytes_sent,
        duration_ms: millis(r.duration),
        upstream: r.upstream,
        upstream_ms: r.upstream_time.map(millis),
        request_id: r.request_id,
        referer: r.referer.map(|v| String::from_utf8_lossy(v.as_bytes())),
        user_agent: r.user_agent.map(|v| String::from_utf8_lossy(v.as_bytes())),
    };
    match serde_json::to_string(&line) {
        Ok(text) => out.push_str(&text),
        // Serializing plain strings and numbers cannot fail; should it ever,
        // an empty object keeps the file valid JSON lines.
        Err(_) => out.push_str("{}"),
    }
}

/// `key=value` pairs in the shape of ginx's own text log; optional request
/// headers come last and only when present.
fn text(out: &mut String, r: &AccessRecord<'_>) {
    out.push_str("time=");
    Civil::from_system_time(r.time).write_rfc3339_millis(out);
    out.push_str(" listener=");
    logfmt_value(out, r.listener.as_bytes());
    let _ = write!(out, " client={} method=", r.client.ip());
    logfmt_value(out, r.method.as_str().as_bytes());
    out.push_str(" target=");
    logfmt_value(out, request_target(r.target, r.version).as_bytes());
    let _ = write!(
        out,
        " protocol={} status={} bytes={} duration_ms={:.3} upstream=",
        protocol(r.version),
        r.status,
        r.bytes_sent,
        millis(r.duration)
    );
    match r.upstream {
        Some(upstream) => logfmt_value(out, upstream.as_bytes()),
        None => out.push('-'),
    }
    match r.upstream_time {
        Some(time) => {
            let _ = write!(out, " upstream_ms={:.3}", millis(time));
        }
        None => out.push_str(" upstream_ms=-"),
    }
    out.push_str(" request_id=");
    logfmt_value(out, r.request_id.as_bytes());
    let optional = [
        ("host", r.host.map(str::as_bytes)),
        ("referer", r.referer.map(HeaderValue::as_bytes)),
        ("user_agent", r.user_agent.map(HeaderValue::as_bytes)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            let _ = write!(out, " {key}=");
            logfmt_value(out, value);
        }
    }
}

/// The target as the client wrote it. hyper gives HTTP/2 requests an
/// absolute URI built from `:scheme`, `:authority` and `:path`; the client
/// sent `:path`, and the authority is logged as the host (nginx logs HTTP/2
/// requests the same way).
fn request_target(target: &Uri, version: Version) -> std::borrow::Cow<'_, str> {
    match (version, target.path_and_query()) {
        (Version::HTTP_2 | Version::HTTP_3, Some(path)) => path.as_str().into(),
        _ => target.to_string().into(),
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// Milliseconds, microsecond resolution: `1.234`, never `1.2340000000000002`.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// Seconds with millisecond resolution, as nginx's `$request_time`.
fn seconds(out: &mut String, duration: Duration) {
    let ms = duration.as_millis();
    let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_escape(out: &mut String, byte: u8) {
    out.push_str("\\x");
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xf)] as char);
}

/// nginx's escaping of logged variables: `"`, `\`, control characters and
/// bytes from 0x7F up as `\xHH`; with `space`, also ` ` (for unquoted fields).
fn nginx_escape(out: &mut String, bytes: &[u8], space: bool) {
    for &byte in bytes {
        match byte {
            b'"' | b'\\' | 0..=0x1f | 0x7f..=0xff => hex_escape(out, byte),
            b' ' if space => hex_escape(out, byte),
            _ => out.push(byte as char),
        }
    }
}

fn nginx_escape_or_dash(out: &mut String, bytes: Option<&[u8]>, space: bool) {
    match bytes {
        Some(bytes) if !bytes.is_empty() => nginx_escape(out, bytes, space),
        _ => out.push('-'),
    }
}

/// A logfmt value: bare when it is plain printable ASCII without spaces,
/// quotes or `=`, otherwise quoted, with `"` and `\` backslash-escaped and
/// other unprintable bytes as `\xHH`.
fn logfmt_value(out: &mut String, bytes: &[u8]) {
    let bare = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\');
    if bare {
        // All ASCII, checked above.
        out.extend(bytes.iter().map(|&b| b as char));
        return;
    }
    out.push('"');
    for &byte in bytes {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0..=0x1f | 0x7f..=0xff => hex_escape(out, byte),
            _ => out.push(byte as char),
        }
    }
    out.push('"');
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::observe::access_log::civil::tests::fixed_time;
    use http::Method;

    pub(crate) fn with_record<R>(f: impl FnOnce(&AccessRecord<'_>) -> R) -> R {
        let method = Method::GET;
        let target: Uri = "/x?y".parse().unwrap();
        let referer = HeaderValue::from_static("http://example.com/");
        let agent = HeaderValue::from_static("curl/8.5.0");
        let record = AccessRecord {
            time: fixed_time(),
            client: "127.0.0.1:50000".parse().unwrap(),
            listener: "web",
            method: &method,
            target: &target,
            version: Version::HTTP_11,
            host: Some("example.com"),
            status: 200,
            bytes_sent: 123,
            duration: Duration::from_micros(2_345),
            upstream: Some("127.0.0.1:9001"),
            upstream_time: Some(Duration::from_micros(987)),
            request_id: "abc",
            referer: Some(&referer),
            user_agent: Some(&agent),
        };
        f(&record)
    }

    #[test]
    fn combined_line() {
        let line = with_record(|r| format_line(AccessLogFormat::Combined, r));
        assert_eq!(
            line,
            "127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] \"GET /x?y HTTP/1.1\" 200 123 \
             \"http://example.com/\" \"curl/8.5.0\" rt=0.002 upstream=127.0.0.1:9001 urt=0.000 \
             rid=abc listener=web\n"
        );
    }

    #[test]
    fn combined_line_with_absent_values() {
        let line = with_record(|r| {
            let r = AccessRecord {
                upstream: None,
                upstream_time: None,
                referer: None,
                user_agent: None,
                client: "[::1]:4000".parse().unwrap(),
                ..r.clone()
            };
            format_line(AccessLogFormat::Combined, &r)
        });
        assert_eq!(
            line,
            "::1 - - [21/Nov/2026:10:00:00 +0000] \"GET /x?y HTTP/1.1\" 200 123 \"-\" \"-\" \
             rt=0.002 upstream=- urt=- rid=abc listener=web\n"
        );
    }

    #[test]
    fn json_line() {
        let line = with_record(|r| format_line(AccessLogFormat::Json, r));
        assert_eq!(
            line,
            r#"{"time":"2026-11-21T10:00:00.123Z","client":"127.0.0.1","listener":"web","method":"GET","target":"/x?y","protocol":"HTTP/1.1","host":"example.com","status":200,"bytes":123,"duration_ms":2.345,"upstream":"127.0.0.1:9001","upstream_ms":0.987,"request_id":"abc","referer":"http://example.com/","user_agent":"curl/8.5.0"}"#
                .to_owned()
                + "\n"
        );
        let absent = with_record(|r| {
            let r = AccessRecord {
                host: None,
                upstream: None,
                upstream_time: None,
                referer: None,
                ..r.clone()
            };
            format_line(AccessLogFormat::Json, &r)
        });
        let value: serde_json::Value = serde_json::from_str(&absent).unwrap();
        for key in ["host", "upstream", "upstream_ms", "referer"] {
            assert!(value[key].is_null(), "{key} in {absent}");
        }
    }

    #[test]
    fn text_line() {
        let line = with_record(|r| format_line(AccessLogFormat::Text, r));
        assert_eq!(
            line,
            "time=2026-11-21T10:00:00.123Z listener=web client=127.0.0.1 method=GET target=/x?y \
             protocol=HTTP/1.1 status=200 bytes=123 duration_ms=2.345 upstream=127.0.0.1:9001 \
             upstream_ms=0.987 request_id=abc host=example.com referer=http://example.com/ \
             user_agent=curl/8.5.0\n"
        );
    }

    #[test]
    fn http2_target_is_the_path() {
        let target: Uri = "https://example.com/a?b".parse().unwrap();
        assert_eq!(request_target(&target, Version::HTTP_2), "/a?b");
        assert_eq!(
            request_target(&target, Version::HTTP_11),
            "https://example.com/a?b"
        );
    }

    #[test]
    fn hostile_values_cannot_split_or_forge_a_line() {
        // The most a header value may hold: quotes, backslashes, a tab and
        // bytes above ASCII (hyper rejects newlines in headers).
        let agent = HeaderValue::from_bytes(b"evil\" \\ \"x\t\xff").unwrap();
        // A request id or a host name reaches the log as a plain string: if
        // one ever held a newline, it must not start a forged line.
        let forged = "a\n127.0.0.1 - - [forged]";
        let lines = with_record(|r| {
            let r = AccessRecord {
                user_agent: Some(&agent),
                request_id: forged,
                host: Some(forged),
                ..r.clone()
            };
            [
                AccessLogFormat::Combined,
                AccessLogFormat::Json,
                AccessLogFormat::Text,
            ]
            .map(|format| format_line(format, &r))
        });
        for line in &lines {
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(line.ends_with('\n'));
        }
        let [combined, json, text] = lines;
        assert!(
            combined.contains(r#" "evil\x22 \x5C \x22x\x09\xFF" rt="#),
            "{combined}"
        );
        assert!(
            combined.contains(r"rid=a\x0A127.0.0.1\x20-\x20-\x20[forged] listener=web"),
            "{combined}"
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["user_agent"], "evil\" \\ \"x\t\u{fffd}");
        assert_eq!(value["request_id"], forged);
        assert_eq!(value["host"], forged);
        assert!(
            text.contains(r#" request_id="a\n127.0.0.1 - - [forged]" "#),
            "{text}"
        );
        assert!(text.contains(r#" host="a\n127.0.0.1 - - [forged]" "#), "{text}");
        assert!(
            text.ends_with(" user_agent=\"evil\\\" \\\\ \\\"x\\t\\xFF\"\n"),
            "{text}"
        );
    }
}
