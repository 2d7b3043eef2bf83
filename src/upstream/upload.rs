//! How far and how fast a client's request body has come on its way
//! upstream.
//!
//! This module owns [`Upload`]: written by [`super::UpstreamBody`] as the
//! upstream connection's task takes the body, read by the request's attempt
//! loop in [`crate::forward`], which runs on the client connection's task.
//! It only exists for requests that have a body; a bodiless request pays
//! nothing. It also holds the body to its `max_request_body` (one branch
//! per frame when there is none). Everything is a relaxed atomic: one writer, and a reader that
//! only needs a recent value, checked about once a second.
//!
//! Slowness is measured only while ginx *waits for the client*: from the
//! moment the body said "nothing yet" (`Pending`) to the moment its next
//! frame came. Time during which the upstream is not taking the body (its
//! TCP window is full, it is slow to read) is not the client's doing and
//! is not counted, so `body_read_timeout` and `min_upload_rate` never blame
//! a client for a slow server, the way nginx's `client_body_timeout` only
//! runs while a read from the client would block.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;

use crate::observe::clock::millis;

/// How slow a client's body may be: `[global] body_read_timeout` and
/// `min_upload_rate`, carried by the routing table to each request; and how
/// large: the route's `max_request_body`, set per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyLimits {
    /// The longest single wait for the client's next bytes; also the grace
    /// period of `min_rate` (total waiting time before it applies).
    pub(crate) timeout: Duration,
    /// The slowest average rate accepted over the time spent waiting, in
    /// bytes per second.
    pub(crate) min_rate: Option<u64>,
    /// The most body bytes accepted; `None`, no limit (one branch per
    /// frame).
    pub(crate) max_size: Option<u64>,
}

/// A client's body grew past its `max_request_body`: the error the body
/// sent upstream ends with, so that the upstream connection, which holds
/// part of a request, is closed and never reused.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body is larger than max_request_body ({0} bytes)")]
pub(crate) struct TooLarge(pub(crate) u64);

/// Why a client's body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// No bytes for `body_read_timeout` while ginx was ready to take them.
    Timeout(Duration),
    /// After its grace period, the body averaged less than this many bytes
    /// per second.
    Rate(u64),
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::Timeout(d) => write!(f, "the client sent no body bytes for {d:?}"),
            Stall::Rate(rate) => write!(f, "the client's upload averaged less than {rate} B/s"),
        }
    }
}

/// How far a client's body has got on its way upstream. Written by the body
/// as it is sent, read by the attempt loop: the read timeout starts once the
/// upload is done, a send that failed because the client's body did is the
/// client's fault, not the server's, and so is a body too slow for
/// [`BodyLimits`].
#[derive(Debug)]
pub(crate) struct Upload {
    state: AtomicU8,
    limits: BodyLimits,
    /// Body bytes taken so far.
    bytes: AtomicU64,
    /// When the current wait for the client began, in milliseconds since
    /// the process-wide origin, plus one; 0 while not waiting.
    waiting_since: AtomicU64,
    /// Milliseconds spent waiting for the client, finished waits only.
    waited: AtomicU64,
}

/// A state of an [`Upload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadState {
    /// Still arriving.
    Sending,
    /// Sent whole.
    Done,
    /// The client sent a body that is not valid HTTP (a bad chunk size, more
    /// bytes than its `Content-Length`, ...).
    Malformed,
    /// The client went away (or reset its stream) before its body was whole.
    Aborted,
    /// The body grew past `max_request_body`.
    TooLarge,
}

impl Upload {
    /// A body that has not been read yet, held to `limits`.
    pub(crate) fn new(limits: BodyLimits) -> Self {
        Upload {
            state: AtomicU8::new(UploadState::Sending as u8),
            limits,
            bytes: AtomicU64::new(0),
            waiting_since: AtomicU64::new(0),
            waited: AtomicU64::new(0),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> UploadState {
        match self.state.load(Ordering::Relaxed) {
            0 => UploadState::Sending,
            1 => UploadState::Done,
            2 => UploadState::Malformed,
            3 => UploadState::Aborted,
            _ => UploadState::TooLarge,
        }
    }

    fn set(&self, state: UploadState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Record what one poll of the client's body gave; `end` is whether the
    /// body is now whole. The clock is read only when a wait starts or
    /// ends, not for frames that were already there.
    ///
    /// # Errors
    ///
    /// The body is now larger than its `max_size`: it must end here, with
    /// this error, instead of the frame.
    pub(super) fn note(
        &self,
        polled: &Poll<Option<Result<Frame<Bytes>, hyper::Error>>>,
        end: bool,
    ) -> Result<(), TooLarge> {
        let frame = match polled {
            Poll::Pending => {
                if self.waiting_since.load(Ordering::Relaxed) == 0 {
                    self.waiting_since.store(millis() + 1, Ordering::Relaxed);
                }
                return Ok(());
            }
            Poll::Ready(frame) => frame,
        };
        let since = self.waiting_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            let waited = (millis() + 1).saturating_sub(since);
            self.waited.fetch_add(waited, Ordering::Relaxed);
        }
        match frame {
            Some(Err(error)) => self.set(upload_failure(error)),
            None => self.set(UploadState::Done),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    let bytes = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
                    if let Some(max) = self.limits.max_size.filter(|&max| bytes > max) {
                        self.set(UploadState::TooLarge);
                        return Err(TooLarge(max));
                    }
                }
                if end {
                    self.set(UploadState::Done);
                }
            }
        }
        Ok(())
    }

    /// The most body bytes it may have, if limited.
    pub(crate) fn max_size(&self) -> Option<u64> {
        self.limits.max_size
    }

    /// Whether the body, still arriving, is now too slow for its limits.
    pub(crate) fn stalled(&self) -> Option<Stall> {
        if self.state() != UploadState::Sending {
            return None;
        }
        let since = self.waiting_since.load(Ordering::Relaxed);
        let current = match since {
            0 => 0,
            since => (millis() + 1).saturating_sub(since),
        };
        let timeout = self.limits.timeout.as_millis() as u64;
        if current >= timeout && since != 0 {
            return Some(Stall::Timeout(self.limits.timeout));
        }
        let min_rate = self.limits.min_rate?;
        let waited = self.waited.load(Ordering::Relaxed).saturating_add(current);
        // bytes / (waited / 1000) < min_rate, without dividing.
        let too_slow =
            u128::from(self.bytes.load(Ordering::Relaxed)) * 1000 < u128::from(min_rate) * u128::from(waited);
        (waited >= timeout && too_slow).then_some(Stall::Rate(min_rate))
    }
}

/// Whether reading a client's body failed because its bytes were not valid
/// HTTP (hyper's decoders say so with `InvalidData`/`InvalidInput`) rather
/// than because the client went away.
fn upload_failure(error: &hyper::Error) -> UploadState {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            ) {
                return UploadState::Malformed;
            }
        }
        source = cause.source();
    }
    UploadState::Aborted
}

#[cfg(test)]
mod tests {
    use super::*;

    type Polled = Poll<Option<Result<Frame<Bytes>, hyper::Error>>>;

    fn data(len: usize) -> Polled {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0; len])))))
    }

    fn upload(timeout: Duration, min_rate: Option<u64>) -> Upload {
        Upload::new(BodyLimits {
            timeout,
            min_rate,
            max_size: None,
        })
    }

    #[test]
    fn only_waiting_for_the_client_counts() {
        // A zero timeout fires as soon as ginx waits, and only then.
        let u = upload(Duration::ZERO, None);
        assert_eq!(u.stalled(), None, "not read yet: the upstream's turn");
        u.note(&Poll::Pending, false).unwrap();
        assert_eq!(u.stalled(), Some(Stall::Timeout(Duration::ZERO)));
        u.note(&data(10), false).unwrap();
        assert_eq!(u.stalled(), None, "bytes came: no longer waiting");
        u.note(&Poll::Pending, false).unwrap();
        u.note(&data(10), true).unwrap();
        assert_eq!(u.state(), UploadState::Done);
        assert_eq!(u.stalled(), None, "a whole body is never too slow");
    }

    #[test]
    fn a_body_past_its_max_size_ends_at_the_frame_that_passes_it() {
        let u = Upload::new(BodyLimits {
            timeout: Duration::from_secs(60),
            min_rate: None,
            max_size: Some(100),
        });
        assert!(u.note(&data(60), false).is_ok());
        assert!(u.note(&data(40), false).is_ok(), "exactly the limit is fine");
        assert!(matches!(u.note(&data(1), false), Err(TooLarge(100))));
        assert_eq!(u.state(), UploadState::TooLarge);
        assert_eq!(u.stalled(), None, "no longer sending");
    }

    #[test]
    fn the_rate_is_over_the_time_spent_waiting() {
        let waited = |len| {
            let u = upload(Duration::ZERO, Some(1000));
            u.note(&Poll::Pending, false).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            u.note(&data(len), false).unwrap();
            u.stalled()
        };
        // 1 byte in at least 20 ms: under 1000 B/s.
        assert_eq!(waited(1), Some(Stall::Rate(1000)));
        // 1 MB in well under 1000 s: above it.
        assert_eq!(waited(1_000_000), None);
        // No wait at all (the bytes were there): nothing to measure.
        let u = upload(Duration::ZERO, Some(1000));
        u.note(&data(1), false).unwrap();
        assert_eq!(u.stalled(), None);
    }
}
