//! One process-wide clock in milliseconds, for moments kept in atomics.
//!
//! State that several workers read and write without a lock (a server's
//! hold-out deadline, how long an upload or a client's reads have been
//! waiting) keeps its times as milliseconds since one origin in an
//! `AtomicU64`; an `Instant` does not fit in one. This module owns that
//! origin and nothing else.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the first call in this process (0 then): a moment
/// or a deadline that fits in an `AtomicU64`.
pub(crate) fn millis() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}
