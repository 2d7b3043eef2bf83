//! The writer thread, `ginx-access-log`: takes lines off the queue, writes
//! them through a buffer, flushes often enough that lines show up promptly,
//! re-opens the file when asked (logrotate, SIGUSR1), and warns about lines
//! the queue had to drop.
//!
//! This module owns everything that does I/O; it never runs on a worker.
//! Deciding when to re-open is not its job: [`super::AccessLogger::reopen`]
//! only raises [`Shared::reopen`], which the thread looks at on every turn.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::AccessLog;

/// The longest a written line may sit in the writer's buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// The least time between two warnings about dropped lines.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(5);

/// Written by the request path and [`super::AccessLogger::reopen`], read by the
/// writer thread.
pub(super) struct Shared {
    /// Lines dropped because the queue was full.
    pub(super) dropped: AtomicU64,
    /// Set by `reopen`, cleared by the writer when it re-opens. A flag rather
    /// than a queue message, so a full queue cannot lose the request.
    pub(super) reopen: AtomicBool,
}

/// What the queue carries to the writer.
pub(super) enum Message {
    /// One formatted line, `\n`-terminated.
    Line(String),
    /// Makes the writer look at `Shared::reopen` now rather than at its next
    /// timeout. Losing it to a full queue is harmless: a busy writer looks at
    /// the flag on every turn anyway.
    Wake,
}

impl Shared {
    pub(super) fn new() -> Self {
        Shared {
            dropped: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
        }
    }
}

/// Where lines go.
pub(super) enum Sink {
    Stdout(io::Stdout),
    File(File),
    /// Any writer, for tests that need to stall or inspect the output.
    #[cfg(test)]
    Other(Box<dyn Write + Send>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(buf),
            Sink::File(out) => out.write(buf),
            #[cfg(test)]
            Sink::Other(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File(out) => out.flush(),
            #[cfg(test)]
            Sink::Other(out) => out.flush(),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    /// The sink `config` asks for: its file, opened with create + append,
    /// or stdout.
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub(super) fn open(config: &AccessLog) -> io::Result<Sink> {
        Ok(match &config.path {
            Some(path) => Sink::File(open_append(path)?),
            None => Sink::Stdout(io::stdout()),
        })
    }
}

/// Start the writer thread on `sink`, re-opening `path` when asked. The
/// receiver it returns disconnects when the thread has ended (after its
/// last flush), which is what [`super::AccessLogger::wait_on_drop`] waits
/// for.
///
/// # Errors
///
/// The thread cannot be spawned.
pub(super) fn spawn(
    sink: Sink,
    path: Option<PathBuf>,
    shared: Arc<Shared>,
    lines: Receiver<Message>,
) -> io::Result<Receiver<()>> {
    let (finished_tx, finished_rx) = mpsc::sync_channel::<()>(0);
    let writer = Writer {
        out: BufWriter::with_capacity(64 * 1024, sink),
        path,
        shared,
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
    Ok(finished_rx)
}

struct Writer {
    out: BufWriter<Sink>,
    /// The path to re-open; `None` for stdout.
    path: Option<PathBuf>,
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
                *self.out.get_mut() = Sink::File(file);
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
