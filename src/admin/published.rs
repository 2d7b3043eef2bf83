//! What the control plane tells the admin endpoint about itself: the
//! active configuration, its generation, the last reload attempt and the
//! bound listeners. The reloader writes a new [`Published`] after every
//! attempt; the endpoint only reads it. It lives here, with its reader, so
//! that the admin endpoint does not depend on the reloader that starts it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A file system event in a watched directory.
    FileEvent,
    /// SIGHUP: always reports its outcome, even when nothing changed.
    Signal,
    /// The periodic re-read.
    Poll,
}

/// What the control plane tells the admin endpoint about itself; replaced
/// whole after every reload attempt.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// The main configuration file.
    pub(crate) path: PathBuf,
    /// The active configuration.
    pub(crate) config: Arc<Config>,
    /// Its generation: 0 while starting, 1 once serving, +1 per applied reload.
    pub(crate) generation: u64,
    /// When it was applied.
    pub(crate) applied_at: SystemTime,
    /// The last reload attempt that found something to do (or SIGHUP).
    pub(crate) last_attempt: Option<Attempt>,
    /// Reloads applied since start.
    pub(crate) reloads_applied: u64,
    /// Reloads rejected since start.
    pub(crate) reloads_rejected: u64,
    /// The listeners of the active configuration and where they are bound.
    pub(crate) listeners: Vec<ListenerBinding>,
    /// This process: when it started, from which binary, which it replaced.
    pub(crate) process: Process,
    /// The last upgrade (SIGUSR2) that failed: when, and why.
    pub(crate) upgrade_failed: Option<(SystemTime, String)>,
}

/// Facts about the process, fixed when it starts.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub(crate) started_at: SystemTime,
    /// The binary SIGUSR2 starts again; `None` when it is unknown.
    pub(crate) binary: Option<PathBuf>,
    /// The pid of the process this one replaced (SIGUSR2), if any.
    pub(crate) replaced_pid: Option<u32>,
}

impl Published {
    /// What is known before the first reload: `config` at `path`, applied
    /// now as `generation` (0 while starting, when nothing serves yet; 1
    /// once the first routing table does), no attempt, no listener yet.
    pub(crate) fn initial(path: &Path, config: Arc<Config>, generation: u64) -> Self {
        Published {
            path: path.to_path_buf(),
            config,
            generation,
            applied_at: SystemTime::now(),
            last_attempt: None,
            reloads_applied: 0,
            reloads_rejected: 0,
            listeners: Vec::new(),
            process: Process {
                started_at: SystemTime::now(),
                binary: None,
                replaced_pid: None,
            },
            upgrade_failed: None,
        }
    }
}

/// One listener of the active configuration and where it is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerBinding {
    pub(crate) name: String,
    /// The address as configured (port 0 stays 0).
    pub(crate) bind: SocketAddr,
    /// The address actually bound; `None` when it is not (yet) bound.
    pub(crate) address: Option<SocketAddr>,
}

/// One reload attempt.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// When it finished.
    pub(crate) at: SystemTime,
    /// What started it.
    pub(crate) trigger: Trigger,
    /// How it ended.
    pub(crate) outcome: AttemptOutcome,
}

/// How a reload attempt ended.
#[derive(Debug, Clone)]
pub(crate) enum AttemptOutcome {
    /// A new generation is serving.
    Applied {
        /// Its number.
        generation: u64,
    },
    /// The files say what is already active (SIGHUP only).
    Unchanged,
    /// The configuration was refused; the old one keeps serving.
    Rejected {
        /// Every error, as `FILE:LINE:COL: message`.
        errors: Vec<String>,
    },
}
