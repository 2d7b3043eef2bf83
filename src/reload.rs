//! Reload: notice a change, load and validate it, then apply it whole or not
//! at all.
//!
//! ```text
//! notify event on a watched directory ─┐
//! SIGHUP ──────────────────────────────┼─▶ debounce ─▶ config::load ─▶ same texts? stop
//! poll every POLL_INTERVAL ────────────┘                  │ errors? log each, keep serving, stop
//!                                                         ▼
//!                       ListenerSet::plan (bind new sockets; failure? log, stop)
//!                                                         ▼
//!                     RoutingTable::build ─▶ Live::store ─▶ ListenerSet::commit
//! ```
//!
//! The watcher watches directories, never files: editors save by writing a
//! temporary file and renaming it over the old one, and Kubernetes swaps a
//! ConfigMap by renaming a symlink, both of which kill a watch on the file
//! itself. Events only say "look again": what counts is whether the texts
//! read back differ from the active ones, so an unchanged rewrite makes no
//! new generation. The poll catches what produces no events at all (network
//! filesystems, single-file bind mounts).
//!
//! This module owns the active [`Config`], the generation counter and the
//! [`ListenerSet`]; it is the only writer of [`Live`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, Errors, Source};
use crate::dns::Discovery;
use crate::server::{ListenerSet, Workers};
use crate::table::{Live, RoutingTable};
use crate::LogControl;

/// How often files are re-read when no event arrives.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Quiet time after the last event before reloading.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(100);
/// Longest delay between the first event of a burst and the reload.
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A file system event in a watched directory.
    FileEvent,
    /// SIGHUP: always reports its outcome, even when nothing changed.
    Signal,
    /// The periodic re-read.
    Poll,
}

/// The control plane's state: the active configuration and its listeners.
pub struct Reloader {
    path: PathBuf,
    live: Live,
    active: Config,
    generation: u64,
    listeners: ListenerSet,
    /// Texts of the last configuration that failed, so the poll does not
    /// log the same errors every few seconds.
    last_failure: Option<Vec<Source>>,
    root: CancellationToken,
    log: LogControl,
    /// Host names of the active configuration, followed over time.
    discovery: Discovery,
}

impl Reloader {
    /// Bind the listeners of `config` and start serving it as generation 1,
    /// which `live` already holds.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound.
    pub fn start(
        path: PathBuf,
        config: Config,
        workers: &Workers,
        live: Live,
        root: CancellationToken,
        log: LogControl,
        discovery: Discovery,
    ) -> anyhow::Result<Self> {
        let mut listeners = ListenerSet::default();
        let plan = listeners.plan(&config)?;
        listeners.commit(plan, workers, &root);
        log.set_level(&config.global.log_level);
        tracing::info!(
            generation = 1,
            listeners = config.listeners.len(),
            upstreams = config.upstreams.len(),
            servers = config.server_count(),
            "configuration loaded"
        );
        Ok(Reloader {
            path,
            live,
            active: config,
            generation: 1,
            listeners,
            last_failure: None,
            root,
            log,
            discovery,
        })
    }

    /// The generation being served.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The address a listener is bound to.
    pub fn local_addr(&self, listener: &str) -> Option<std::net::SocketAddr> {
        self.listeners.local_addr(listener)
    }

    /// Re-read the configuration and apply it if it changed and is valid.
    /// Never disturbs what is serving when it fails.
    pub async fn reload(&mut self, trigger: Trigger, workers: &Workers) {
        let path = self.path.clone();
        let loaded = match tokio::task::spawn_blocking(move || config::load(&path)).await {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(%error, "configuration loader panicked; keeping generation {}", self.generation);
                return;
            }
        };
        let config = match loaded {
            Ok(config) => config,
            Err(errors) => return self.reject(trigger, errors),
        };
        // A valid configuration whose listeners could not be bound last time
        // fails the same way until something changes: say so once.
        if trigger != Trigger::Signal && self.last_failure.as_ref() == Some(&config.sources) {
            return;
        }
        if config.sources == self.active.sources {
            self.last_failure = None;
            if trigger == Trigger::Signal {
                tracing::info!(generation = self.generation, "configuration unchanged");
            }
            return;
        }
        let plan = match self.listeners.plan(&config) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "configuration rejected; keeping generation {}",
                    self.generation
                );
                self.last_failure = Some(config.sources);
                return;
            }
        };
        let generation = self.generation + 1;
        let resolved = self.discovery.sync(&config).await;
        let table = RoutingTable::build(&config, &resolved, Some(&self.live.load()), generation);
        self.live.store(Arc::new(table));
        self.listeners.commit(plan, workers, &self.root);
        self.log.set_level(&config.global.log_level);
        let changes = Changes::between(&self.active, &config);
        tracing::info!(generation, %changes, ?trigger, "configuration applied");
        self.generation = generation;
        self.active = config;
        self.last_failure = None;
    }

    /// A host name's addresses changed: rebuild the table from the active
    /// configuration (same generation: the configuration did not change).
    fn apply_dns(&mut self) {
        let resolved = self.discovery.resolved();
        let table = RoutingTable::build(&self.active, &resolved, Some(&self.live.load()), self.generation);
        self.live.store(Arc::new(table));
        tracing::info!(generation = self.generation, "upstream members updated from DNS");
    }

    fn reject(&mut self, trigger: Trigger, errors: Errors) {
        if trigger != Trigger::Signal && self.last_failure.as_ref() == Some(&errors.sources) {
            return;
        }
        for error in errors.iter() {
            tracing::error!("{error}");
        }
        tracing::error!(
            errors = errors.len(),
            "configuration rejected; keeping generation {}",
            self.generation
        );
        self.last_failure = Some(errors.sources);
    }

    /// Reload on file events, SIGHUP and the poll until `stop`, then release
    /// every listening socket.
    pub async fn run(mut self, workers: &Workers, stop: CancellationToken) {
        let (events_tx, mut events) = mpsc::channel(1);
        let mut watcher = DirWatcher::new(events_tx);
        watcher.follow(&self.active);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload by editing files");
                None
            }
        };
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.reset();
        loop {
            let dns_due = self.discovery.next_due();
            let trigger = tokio::select! {
                () = stop.cancelled() => break,
                Some(()) = events.recv() => {
                    debounce(&mut events).await;
                    Trigger::FileEvent
                }
                Some(()) = async { hangup.as_mut()?.recv().await } => Trigger::Signal,
                _ = poll.tick(), if self.active.global.watch => Trigger::Poll,
                () = sleep_until(dns_due.unwrap_or_else(Instant::now)), if dns_due.is_some() => {
                    if self.discovery.refresh().await {
                        self.apply_dns();
                    }
                    continue;
                }
            };
            self.reload(trigger, workers).await;
            watcher.follow(&self.active);
        }
        // `self.listeners` drops here, closing the control plane's copy of
        // every listening socket.
    }
}

/// Wait until events stop for [`DEBOUNCE_QUIET`], at most [`DEBOUNCE_MAX`].
async fn debounce(events: &mut mpsc::Receiver<()>) {
    let deadline = Instant::now() + DEBOUNCE_MAX;
    loop {
        tokio::select! {
            Some(()) = events.recv() => continue,
            () = sleep(DEBOUNCE_QUIET) => return,
            () = sleep_until(deadline) => return,
        }
    }
}

/// Watches configuration directories; each relevant event becomes one
/// (coalesced) message on the channel.
struct DirWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
}

impl DirWatcher {
    fn new(tx: mpsc::Sender<()>) -> Self {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Our own reads show up as access events; they change nothing.
            if matches!(&event, Ok(e) if e.kind.is_access()) {
                return;
            }
            let _ = tx.try_send(());
        });
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "cannot watch files; changes are picked up by polling every {POLL_INTERVAL:?}");
                None
            }
        };
        DirWatcher {
            watcher,
            watched: BTreeSet::new(),
        }
    }

    /// Watch the directories of `config` (none when it turns watching off),
    /// and stop watching directories no longer needed. Directories that do
    /// not exist yet are left to the poll until a later reload finds them.
    fn follow(&mut self, config: &Config) {
        let Some(watcher) = &mut self.watcher else { return };
        let wanted: BTreeSet<PathBuf> = match config.global.watch {
            true => config.watch_dirs.iter().cloned().collect(),
            false => BTreeSet::new(),
        };
        for gone in self.watched.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        self.watched.retain(|d| wanted.contains(d));
        for dir in wanted {
            if self.watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching");
                    self.watched.insert(dir);
                }
                Err(error) => tracing::debug!(dir = %dir.display(), %error, "cannot watch yet"),
            }
        }
    }
}

/// What a reload changed, for the log.
#[derive(Debug, Default)]
struct Changes {
    lines: Vec<String>,
}

impl Changes {
    fn between(old: &Config, new: &Config) -> Self {
        let mut changes = Changes::default();
        changes.diff("listener", &old.listeners, &new.listeners);
        changes.diff("upstream", &old.upstreams, &new.upstreams);
        for (name, upstream) in &new.upstreams {
            let Some(before) = old.upstreams.get(name) else {
                continue;
            };
            let names =
                |u: &config::Upstream| u.servers.iter().map(|s| s.name.clone()).collect::<BTreeSet<_>>();
            let (was, now) = (names(before), names(upstream));
            for added in now.difference(&was) {
                changes.lines.push(format!("+server {name}/{added}"));
            }
            for removed in was.difference(&now) {
                changes.lines.push(format!("-server {name}/{removed}"));
            }
        }
        if old.global != new.global {
            changes.lines.push("~global".into());
        }
        changes
    }

    fn diff<T: PartialEq>(
        &mut self,
        kind: &str,
        old: &std::collections::BTreeMap<String, T>,
        new: &std::collections::BTreeMap<String, T>,
    ) {
        for (name, value) in new {
            match old.get(name) {
                None => self.lines.push(format!("+{kind} {name}")),
                Some(before) if before != value => self.lines.push(format!("~{kind} {name}")),
                Some(_) => {}
            }
        }
        for name in old.keys().filter(|n| !new.contains_key(*n)) {
            self.lines.push(format!("-{kind} {name}"));
        }
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines.is_empty() {
            return f.write_str("files changed, same settings");
        }
        f.write_str(&self.lines.join(", "))
    }
}
