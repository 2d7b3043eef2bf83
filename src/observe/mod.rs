//! What the data plane records while it serves: counters bumped with
//! atomics ([`metrics`]), one line per request ([`access_log`]), and the
//! switches of ginx's own log ([`log`]). These are leaves: they know the
//! configuration's types and nothing of routing, forwarding or reloading;
//! reading them out (Prometheus, `/status`) is [`crate::admin`]'s job.

pub(crate) mod access_log;
pub(crate) mod clock;
pub(crate) mod log;
pub(crate) mod metrics;

pub use log::LogControl;
