//! ginx's own log: the configured `log_level` and `log_format`, applied at
//! start and on every reload. The subscriber itself is `main`'s; this module
//! only holds the switches it reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config;

/// Applies the configured `log_level` and `log_format` to ginx's own log.
/// The level is not applied when fixed (by `RUST_LOG`, which overrides the
/// configuration).
#[derive(Clone, Default)]
pub struct LogControl {
    set_level: Option<Arc<SetLevel>>,
    json: Arc<AtomicBool>,
}

type SetLevel = dyn Fn(&str) + Send + Sync;

impl LogControl {
    /// Levels are applied by `set_level`; the format is JSON while `json`
    /// is set (the log layer reads it for every line).
    pub fn new(set_level: Option<Box<SetLevel>>, json: Arc<AtomicBool>) -> Self {
        LogControl {
            set_level: set_level.map(Arc::from),
            json,
        }
    }

    /// Apply `log_level` and `log_format`.
    pub(crate) fn apply(&self, global: &config::Global) {
        self.json
            .store(global.log_format == config::LogFormat::Json, Ordering::Relaxed);
        if let Some(set) = &self.set_level {
            set(&global.log_level);
        }
    }
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("level_fixed", &self.set_level.is_none())
            .field("json", &self.json.load(Ordering::Relaxed))
            .finish()
    }
}
