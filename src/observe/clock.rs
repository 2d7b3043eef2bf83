//! One process-wide clock in milliseconds, for moments kept in atomics.
//!
//! State that several workers read and write without a lock (a server's
//! hold-out deadline, how long an upload or a client's reads have been
//! waiting, a client connection's deadlines) keeps its times as
//! milliseconds since one origin in an `AtomicU64`; an `Instant` does not
//! fit in one. This module owns that origin and nothing else.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process (0 then): a moment
/// or a deadline that fits in an `AtomicU64`.
pub(crate) fn millis() -> u64 {
    origin().elapsed().as_millis() as u64
}

/// `instant` in [`millis`] (rounded up, so a deadline is never early; 0 for
/// one before the origin).
pub(crate) fn millis_at(instant: Instant) -> u64 {
    let since = instant.saturating_duration_since(origin());
    since.as_millis() as u64 + u64::from(since.subsec_nanos() % 1_000_000 != 0)
}

/// `from + wait`, formed with `checked_add`: durations from the
/// configuration are capped at a year when validated, so the fallback (a
/// century ahead, "never") is only a guard against a bound that moved.
pub(crate) fn after(from: Instant, wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    from.checked_add(wait).unwrap_or_else(|| from + CENTURY)
}

/// [`after`] for tokio's timers.
pub(crate) fn later(from: tokio::time::Instant, wait: Duration) -> tokio::time::Instant {
    after(from.into_std(), wait).into()
}

/// The instant of a [`millis`] value (a century ahead at most: "never").
pub(crate) fn instant(millis: u64) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    origin() + Duration::from_millis(millis).min(CENTURY)
}
