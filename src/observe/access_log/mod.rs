//! The access log: one line per request, written by a thread of its own.
//!
//! This module owns the line formats ([`AccessLogFormat`]) and the writer
//! thread. The request path calls [`AccessLogger::log`], which formats the
//! line on the calling thread and hands it over through a bounded queue: it
//! never blocks and never does I/O. When the writer falls behind (a slow
//! disk, a stdout nobody reads), lines are dropped and counted rather than
//! slowing requests down.
//!
//! It does not decide *what* a request's values are (the proxy fills an
//! [`AccessRecord`]), nor *when* to reopen or replace the logger (SIGUSR1 and
//! reload belong to the process lifecycle).
//!
//! ```text
//! worker threads ── log(&record) ── format ── try_send ──▶ [queue] ──▶ "ginx-access-log"
//!                                                full: drop + count        BufWriter → file / stdout
//! reopen() ── AtomicBool (never lost) + wake-up ──────────────────────────▶ re-open the same path
//! ```

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Uri, Version};
use serde::Serialize;

use crate::config::{AccessLog, AccessLogFormat};

/// Lines that may wait for the writer. At a few hundred bytes a line this is
/// about a megabyte: enough to ride out a slow write of several hundred
/// milliseconds at tens of thousands of requests a second.
const QUEUE_LINES: usize = 4096;

/// The longest a written line may sit in the writer's buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// The least time between two warnings about dropped lines.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(5);

/// How long dropping the last [`AccessLogger`] waits for the writer to
/// flush, once [`AccessLogger::wait_on_drop`] asked it to. Bounded so that
/// a stdout nobody reads cannot hang an exit.
const FLUSH_ON_DROP_WAIT: Duration = Duration::from_secs(1);

/// What one request leaves in the access log. Borrowed from the request path:
/// building one allocates nothing.
#[derive(Debug, Clone)]
pub(crate) struct AccessRecord<'a> {
    /// When the request started.
    pub(crate) time: SystemTime,
    /// The client's address (only the IP is logged, as nginx's `$remote_addr`).
    pub(crate) client: SocketAddr,
    /// The listener's name.
    pub(crate) listener: &'a str,
    /// The request method.
    pub(crate) method: &'a Method,
    /// The request target as received.
    pub(crate) target: &'a Uri,
    /// The request's protocol version.
    pub(crate) version: Version,
    /// The `Host` header (or the HTTP/2 authority).
    pub(crate) host: Option<&'a str>,
    /// The response status sent to the client.
    pub(crate) status: u16,
    /// Response body bytes sent to the client.
    pub(crate) bytes_sent: u64,
    /// From the request's start until the response body ended.
    pub(crate) duration: Duration,
    /// The server that answered; `None` for `respond` routes and errors.
    pub(crate) upstream: Option<&'a str>,
    /// From the request's start until the upstream's response header.
    pub(crate) upstream_time: Option<Duration>,
    /// The request's id (which may come from the client).
    pub(crate) request_id: &'a str,
    /// The `Referer` header.
    pub(crate) referer: Option<&'a HeaderValue>,
    /// The `User-Agent` header.
    pub(crate) user_agent: Option<&'a HeaderValue>,
}

/// The access log writer. Cheap to clone; every clone feeds the same writer
/// thread, which ends (flushing first) when the last clone is dropped.
/// Dropping the last clone does not wait for that flush (it may happen on a
/// worker, in a request that outlived a reload) unless
/// [`AccessLogger::wait_on_drop`] was called: the end of `run` does, so
/// that the last lines are written before the process exits.
#[derive(Clone)]
pub(crate) struct AccessLogger {
    inner: Arc<Inner>,
}

/// Field order matters: `queue` is dropped before `finished`, so the writer
/// sees the queue disconnect, flushes and ends while `finished` waits for it.
struct Inner {
    queue: SyncSender<Message>,
    shared: Arc<Shared>,
    config: AccessLog,
    finished: WriterFinished,
}

/// Written by the request path and [`AccessLogger::reopen`], read by the
/// writer thread.
struct Shared {
    /// Lines dropped because the queue was full.
    dropped: AtomicU64,
    /// Set by `reopen`, cleared by the writer when it re-opens. A flag rather
    /// than a queue message, so a full queue cannot lose the request.
    reopen: AtomicBool,
}

enum Message {
    Line(String),
    /// Makes the writer look at `Shared::reopen` now rather than at its next
    /// timeout. Losing it to a full queue is harmless: a busy writer looks at
    /// the flag on every turn anyway.
    Wake,
}

/// Waits, when dropped and if asked to, until the writer thread has ended
/// (or gives up after [`FLUSH_ON_DROP_WAIT`]). The writer holds the sending
/// half and ends without sending anything, so its end is the channel
/// disconnecting.
struct WriterFinished {
    finished: Mutex<Receiver<()>>,
    wait: AtomicBool,
}

impl Drop for WriterFinished {
    fn drop(&mut self) {
        if !*self.wait.get_mut() {
            return;
        }
        let receiver = match self.finished.get_mut() {
            Ok(receiver) => receiver,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = receiver.recv_timeout(FLUSH_ON_DROP_WAIT);
    }
}

impl AccessLogger {
    /// Open the log (the file with create + append, or stdout) and start the
    /// writer thread, `ginx-access-log`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, or the thread cannot be spawned.
    pub(crate) fn start(config: &AccessLog) -> io::Result<AccessLogger> {
        let target = match &config.path {
            Some(path) => Target::File(open_append(path)?),
            None => Target::Stdout(io::stdout()),
        };
        Self::with_target(config, target, QUEUE_LINES)
    }

    fn with_target(config: &AccessLog, target: Target, queue_lines: usize) -> io::Result<AccessLogger> {
        let (queue, lines) = mpsc::sync_channel(queue_lines);
        let (finished_tx, finished_rx) = mpsc::sync_channel::<()>(0);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
        });
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, target),
            path: config.path.clone(),
            shared: Arc::clone(&shared),
            dropped_reported: 0,
            last_drop_warning: None,
            failing: false,
        };
        std::thread::Builder::new()
            .name("ginx-access-log".into())
            .spawn(move || {
                writer.run(lines);
                drop(finished_tx);
            })?;
        Ok(AccessLogger {
            inner: Arc::new(Inner {
                queue,
                shared,
                config: config.clone(),
                finished: WriterFinished {
                    finished: Mutex::new(finished_rx),
                    wait: AtomicBool::new(false),
                },
            }),
        })
    }

    /// Log one request. Formats on the calling thread, then queues the line
    /// without waiting: when the writer is behind, the line is dropped and
    /// counted ([`AccessLogger::dropped`]).
    pub(crate) fn log(&self, record: &AccessRecord<'_>) {
        let line = format_line(self.inner.config.format, record);
        // Full: the writer is behind. Disconnected cannot happen while a
        // logger exists unless the writer panicked; either way the line has
        // nowhere to go now.
        if self.inner.queue.try_send(Message::Line(line)).is_err() {
            self.inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Make dropping the last clone wait (up to one second) until the
    /// writer has flushed and ended: for the end of the process, where
    /// blocking is fine and unwritten lines would be lost.
    pub(crate) fn wait_on_drop(&self) {
        self.inner.finished.wait.store(true, Ordering::Relaxed);
    }

    /// Make the writer re-open its path (after logrotate renamed the file):
    /// lines queued before go to the old file, later ones to a new file at
    /// the same path. Does nothing when logging to stdout.
    pub(crate) fn reopen(&self) {
        if self.inner.config.path.is_none() {
            return;
        }
        self.inner.shared.reopen.store(true, Ordering::Release);
        let _ = self.inner.queue.try_send(Message::Wake);
    }

    /// Lines dropped so far because the writer fell behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.inner.shared.dropped.load(Ordering::Relaxed)
    }

    /// The configuration this logger was started with, so a reload can tell
    /// whether it needs a new one.
    pub(crate) fn config(&self) -> &AccessLog {
        &self.inner.config
    }
}

impl std::fmt::Debug for AccessLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogger")
            .field("config", &self.inner.config)
            .field("dropped", &self.dropped())
            .finish()
    }
}

// === the writer thread ===

/// Where lines go.
enum Target {
    Stdout(io::Stdout),
    File(File),
    /// Any writer, for tests that need to stall or inspect the output.
    #[cfg(test)]
    Other(Box<dyn Write + Send>),
}

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Target::Stdout(out) => out.write(buf),
            Target::File(out) => out.write(buf),
            #[cfg(test)]
            Target::Other(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stdout(out) => out.flush(),
            Target::File(out) => out.flush(),
            #[cfg(test)]
            Target::Other(out) => out.flush(),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    out: BufWriter<Target>,
    /// The path to re-open; `None` for stdout.
    path: Option<std::path::PathBuf>,
    shared: Arc<Shared>,
    /// `Shared::dropped` as of the last warning.
    dropped_reported: u64,
    last_drop_warning: Option<Instant>,
    /// A write failed and no write has succeeded since: warn once per burst
    /// of failures, not once per line.
    failing: bool,
}

impl Writer {
    fn run(mut self, lines: Receiver<Message>) {
        let mut last_flush = Instant::now();
        loop {
            if self.shared.reopen.load(Ordering::Relaxed) && self.shared.reopen.swap(false, Ordering::AcqRel)
            {
                self.reopen();
            }
            // Flush whenever the queue is momentarily empty, before waiting,
            // so lines appear promptly; under a steady stream the queue may
            // never empty, hence also the FLUSH_INTERVAL check below.
            let message = match lines.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Empty) => {
                    self.flush();
                    last_flush = Instant::now();
                    lines.recv_timeout(FLUSH_INTERVAL)
                }
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(Message::Line(line)) => {
                    self.write(line.as_bytes());
                    if last_flush.elapsed() >= FLUSH_INTERVAL {
                        self.flush();
                        last_flush = Instant::now();
                    }
                }
                // Only here to end the wait; the flag is looked at above.
                Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    self.warn_drops(true);
                    return;
                }
            }
            self.warn_drops(false);
        }
    }

    fn write(&mut self, line: &[u8]) {
        let result = self.out.write_all(line);
        self.outcome(result, "write");
    }

    fn flush(&mut self) {
        if self.out.buffer().is_empty() {
            return;
        }
        let result = self.out.flush();
        self.outcome(result, "flush");
    }

    fn outcome(&mut self, result: io::Result<()>, what: &str) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = ?self.path, "access log writes succeed again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(path = ?self.path, %error, "access log {what} failed; lines are being lost");
            }
            Err(_) => {}
        }
    }

    /// Flush what went to the old file, then open the path again. If that
    /// fails, keep writing to the old file: its lines end up in the rotated
    /// file rather than nowhere.
    fn reopen(&mut self) {
        let Some(path) = self.path.clone() else { return };
        let result = self.out.flush();
        self.outcome(result, "flush");
        match open_append(&path) {
            Ok(file) => {
                *self.out.get_mut() = Target::File(file);
                tracing::debug!(path = %path.display(), "access log reopened");
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot reopen the access log; still writing to the old file");
            }
        }
    }

    fn warn_drops(&mut self, last: bool) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped == self.dropped_reported {
            return;
        }
        let due = self
            .last_drop_warning
            .is_none_or(|at| at.elapsed() >= DROP_WARN_INTERVAL);
        if due || last {
            tracing::warn!(
                dropped = dropped - self.dropped_reported,
                total = dropped,
                "access log writer fell behind; lines dropped"
            );
            self.dropped_reported = dropped;
            self.last_drop_warning = Some(Instant::now());
        }
    }
}

// === formats ===

/// One complete line, `\n`-terminated.
fn format_line(format: AccessLogFormat, record: &AccessRecord<'_>) -> String {
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

// === dates, without a date crate ===

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millisecond: u32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    /// Times before 1970 (a clock set very wrong) are logged as the epoch.
    fn from_system_time(time: SystemTime) -> Civil {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_epoch.as_secs();
        let days = (secs / 86_400) as i64;
        let of_day = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            millisecond: since_epoch.subsec_millis(),
        }
    }

    /// `21/Nov/2026:10:00:00 +0000`, nginx's `$time_local` in UTC.
    fn write_clf(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            self.day,
            MONTHS[self.month as usize - 1],
            self.year,
            self.hour,
            self.minute,
            self.second
        );
    }

    /// `2026-11-21T10:00:00.123Z`.
    fn write_rfc3339_millis(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond
        );
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`: counts in 400-year
/// eras starting on March 1st, so the leap day is the last day of a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Sender;

    /// 2026-11-21T10:00:00.123Z
    fn fixed_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_255_200_123)
    }

    fn with_record<R>(f: impl FnOnce(&AccessRecord<'_>) -> R) -> R {
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
    fn civil_dates() {
        let date = civil_from_days;
        assert_eq!(date(0), (1970, 1, 1));
        assert_eq!(date(-1), (1969, 12, 31));
        assert_eq!(date(10_956), (1999, 12, 31));
        assert_eq!(date(11_016), (2000, 2, 29)); // leap day of a year divisible by 400
        assert_eq!(date(11_017), (2000, 3, 1));
        assert_eq!(date(19_782), (2024, 2, 29));
        assert_eq!(date(19_783), (2024, 3, 1));
        assert_eq!(date(20_778), (2026, 11, 21));
        assert_eq!(date(47_540), (2100, 2, 28)); // 2100 is not a leap year
        assert_eq!(date(47_541), (2100, 3, 1));
    }

    #[test]
    fn time_formats() {
        let civil = Civil::from_system_time(fixed_time());
        let (mut clf, mut rfc) = (String::new(), String::new());
        civil.write_clf(&mut clf);
        civil.write_rfc3339_millis(&mut rfc);
        assert_eq!(clf, "21/Nov/2026:10:00:00 +0000");
        assert_eq!(rfc, "2026-11-21T10:00:00.123Z");

        let leap = Civil::from_system_time(UNIX_EPOCH + Duration::from_secs(1_709_251_199));
        let mut rfc = String::new();
        leap.write_rfc3339_millis(&mut rfc);
        assert_eq!(rfc, "2024-02-29T23:59:59.000Z");
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

    /// Polls until `check` holds (the writer thread works asynchronously).
    fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_with_id(logger: &AccessLogger, id: &str) {
        with_record(|r| {
            logger.log(&AccessRecord {
                request_id: id,
                ..r.clone()
            })
        });
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn writes_to_a_file_and_reopens_after_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let config = AccessLog {
            path: Some(path.clone()),
            format: AccessLogFormat::Json,
        };
        let logger = AccessLogger::start(&config).unwrap();
        assert_eq!(logger.config(), &config);

        log_with_id(&logger, "first");
        eventually("the first line", || read(&path).contains("\"first\""));

        std::fs::rename(&path, &rotated).unwrap();
        // Until the reopen, the writer still holds the renamed file.
        log_with_id(&logger, "second");
        eventually("the second line", || read(&rotated).contains("\"second\""));
        logger.reopen();
        log_with_id(&logger, "third");
        eventually("the reopened file", || read(&path).contains("\"third\""));

        let old = read(&rotated);
        let new = read(&path);
        assert_eq!(old.lines().count(), 2, "{old}");
        assert!(old.contains("\"first\"") && old.contains("\"second\""));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert_eq!(logger.dropped(), 0);
    }

    /// A writer that blocks in `write` until the test lets it go.
    struct Stalled {
        entered: Sender<()>,
        release: Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.release.recv();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn drops_and_counts_lines_when_the_writer_is_stalled() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let target = Target::Other(Box::new(Stalled {
            entered: entered_tx,
            release: release_rx,
            written: Arc::clone(&written),
        }));
        let config = AccessLog {
            path: None,
            format: AccessLogFormat::Text,
        };
        let logger = AccessLogger::with_target(&config, target, 2).unwrap();

        log_with_id(&logger, "one");
        // The writer took "one", found the queue empty and is now stuck
        // flushing it.
        entered.recv_timeout(Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        for id in ["two", "three", "four", "five", "six"] {
            log_with_id(&logger, id);
        }
        assert!(started.elapsed() < Duration::from_secs(1), "log() must not wait");
        assert_eq!(logger.dropped(), 3, "a queue of 2 keeps two, drops three");

        // Let every write through (one per flush, at most three flushes).
        for _ in 0..3 {
            let _ = release.send(());
        }
        logger.wait_on_drop();
        drop(logger);
        let written = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let ids: Vec<_> = written
            .lines()
            .map(|line| {
                line.split(" request_id=")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, ["one", "two", "three"]);
    }

    #[test]
    fn dropping_the_last_clone_flushes_and_ends_the_writer_when_asked_to_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLog {
            path: Some(path.clone()),
            format: AccessLogFormat::Combined,
        };
        let logger = AccessLogger::start(&config).unwrap();
        let clone = logger.clone();
        for i in 0..1000 {
            log_with_id(&clone, &format!("r{i}"));
        }
        // Any clone may ask; the wait happens when the last one goes.
        clone.wait_on_drop();
        drop(clone);
        drop(logger);
        // No polling: dropping the last clone returned after the flush.
        let text = read(&path);
        assert_eq!(text.lines().count(), 1000);
        assert!(text.ends_with("rid=r999 listener=web\n"));
    }

    /// A disk that is full: every write fails.
    struct Failing;

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_survived() {
        let config = AccessLog {
            path: None,
            format: AccessLogFormat::Combined,
        };
        let logger = AccessLogger::with_target(&config, Target::Other(Box::new(Failing)), 16).unwrap();
        for i in 0..10 {
            log_with_id(&logger, &format!("r{i}"));
            std::thread::sleep(Duration::from_millis(1));
        }
        // The writer is still there, taking lines off the queue.
        eventually("the queue to drain", || {
            log_with_id(&logger, "probe");
            logger.inner.queue.try_send(Message::Wake).is_ok()
        });
        drop(logger);
    }

    #[test]
    fn reopen_is_a_no_op_for_stdout() {
        let config = AccessLog {
            path: None,
            format: AccessLogFormat::Text,
        };
        let logger = AccessLogger::start(&config).unwrap();
        logger.reopen();
        assert!(!logger.inner.shared.reopen.load(Ordering::Acquire));
    }
}
