//! The access log: one line per request, written by a thread of its own.
//!
//! This folder owns the line formats ([`crate::config::AccessLogFormat`]) and the writer
//! thread; this file owns the API. The request path calls
//! [`AccessLogger::log`], which formats the
//! line on the calling thread and hands it over through a bounded queue: it
//! never blocks and never does I/O. When the writer falls behind (a slow
//! disk, a stdout nobody reads), lines are dropped and counted rather than
//! slowing requests down.
//!
//! It does not decide *what* a request's values are (the proxy fills an
//! [`AccessRecord`]), nor *when* to reopen or replace the logger (SIGUSR1 and
//! reload belong to the process lifecycle): [`AccessLogger::for_config`]
//! only answers which logger a configuration needs, keeping the running one
//! when it can.
//!
//! ```text
//! worker threads ── log(&record) ── format ── try_send ──▶ [queue] ──▶ "ginx-access-log"
//!                                                full: drop + count        BufWriter → file / stdout
//! reopen() ── AtomicBool (never lost) + wake-up ──────────────────────────▶ re-open the same path
//! ```
//!
//! The parts: [`format`](mod@format) (the line formats and escaping, on the calling
//! thread), [`writer`] (the thread and its file), [`civil`] (dates).

mod civil;
mod format;
mod writer;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

use crate::config::{AccessLog, Config};
use format::format_line;
use writer::{Message, Shared, Sink};

/// Lines that may wait for the writer. At a few hundred bytes a line this is
/// about a megabyte: enough to ride out a slow write of several hundred
/// milliseconds at tens of thousands of requests a second.
const QUEUE_LINES: usize = 4096;

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
        Self::with_sink(config, Sink::open(config)?, QUEUE_LINES)
    }

    /// The access logger `config` asks for: `running` when its settings are
    /// unchanged (a reload must not reopen the file, nor lose the lines
    /// queued in it), else a new one; `None` when the log is off.
    ///
    /// # Errors
    ///
    /// The log file cannot be opened, naming it.
    pub(crate) fn for_config(
        config: &Config,
        running: Option<&AccessLogger>,
    ) -> anyhow::Result<Option<AccessLogger>> {
        let Some(wanted) = &config.global.access_log else {
            return Ok(None);
        };
        if let Some(running) = running.filter(|r| r.config() == wanted) {
            return Ok(Some(running.clone()));
        }
        let logger = AccessLogger::start(wanted).map_err(|error| match &wanted.path {
            Some(path) => anyhow::anyhow!("opening the access log {}: {error}", path.display()),
            None => anyhow::anyhow!("starting the access log: {error}"),
        })?;
        Ok(Some(logger))
    }

    fn with_sink(config: &AccessLog, sink: Sink, queue_lines: usize) -> io::Result<AccessLogger> {
        let (queue, lines) = mpsc::sync_channel(queue_lines);
        let shared = Arc::new(Shared::new());
        let finished_rx = writer::spawn(sink, config.path.clone(), Arc::clone(&shared), lines)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessLogFormat;
    use format::tests::with_record;
    use std::io::Write;
    use std::path::Path;
    use std::sync::mpsc::Sender;
    use std::time::Instant;

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
        let sink = Sink::Other(Box::new(Stalled {
            entered: entered_tx,
            release: release_rx,
            written: Arc::clone(&written),
        }));
        let config = AccessLog {
            path: None,
            format: AccessLogFormat::Text,
        };
        let logger = AccessLogger::with_sink(&config, sink, 2).unwrap();

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
        let logger = AccessLogger::with_sink(&config, Sink::Other(Box::new(Failing)), 16).unwrap();
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
