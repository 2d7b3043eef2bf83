//! Reload: notice a change, load and validate it, then apply it whole or not
//! at all.
//!
//! ```text
//! file event in a watched directory ─┐
//! SIGHUP ────────────────────────────┼─▶ debounce ─▶ config::load ─▶ same texts? stop
//! poll every POLL_INTERVAL ──────────┘   (watch.rs)       │ errors? log each (located), keep serving
//!                                                         ▼
//!                              Discovery::look_up_new: new host names, all at once
//!                                                         ▼
//!         Endpoints::plan (plan.rs): TLS, binds, admin, access log; refused? log, keep serving
//!                                                         ▼  nothing awaits from here on
//!     RoutingTable::build ─▶ Live::store ─▶ Endpoints::commit ─▶ Discovery adopts ─▶ publish
//! ```
//!
//! Events only say "look again": what counts is whether the texts read back
//! differ from the active ones, so an unchanged rewrite makes no new
//! generation.
//!
//! SIGUSR2 hands everything over to a new process ([`crate::upgrade`]);
//! when that one serves, [`Reloader::run`] returns and says so.
//!
//! This module owns the active [`Config`], the generation counter and the
//! [`Endpoints`]; it is the only writer of [`Live`].

mod plan;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminServer, Attempt, AttemptOutcome, ListenerBinding, Published, Trigger};
use crate::config::{self, Config, Source};
use crate::dns::Discovery;
use crate::observe::LogControl;
use crate::server::Workers;
use crate::systemd::SystemdNotify;
use crate::table::{Live, RoutingTable};
use crate::upgrade::{self, Binary, Replaced};
pub(crate) use plan::{Endpoints, Plan, Refusal};
use watch::{Fingerprint, Triggers, Wake};

/// The control plane's state: the active configuration and what serves it.
pub(crate) struct Reloader {
    path: PathBuf,
    live: Live,
    active: Arc<Config>,
    generation: u64,
    endpoints: Endpoints,
    /// Host names of the active configuration, followed over time.
    discovery: Discovery,
    report: Report,
    /// What SIGUSR2 starts; `None` when the running binary's path is unknown.
    binary: Option<Binary>,
    /// Texts of the last configuration that failed, so the poll does not
    /// log the same errors every few seconds.
    last_failure: Option<Vec<Source>>,
    /// The facts of the files the last load read, so that the poll reads
    /// nothing while they stay the same.
    seen: Fingerprint,
}

/// What the reloader works with, handed over at start.
pub(crate) struct Control {
    /// The routing table it swaps.
    pub(crate) live: Live,
    /// The sockets of generation 1 (bound by its plan, not yet accepting).
    pub(crate) endpoints: Endpoints,
    /// The host names of generation 1, resolved.
    pub(crate) discovery: Discovery,
    pub(crate) report: Report,
    /// The first generation's number: 1, or the next of the process this
    /// one replaces.
    pub(crate) generation: u64,
    /// What SIGUSR2 starts.
    pub(crate) binary: Option<Binary>,
}

/// How [`Reloader::run`] ended.
pub(crate) struct Ended {
    /// The admin endpoint, which keeps answering while the process drains
    /// (unless it was handed over).
    pub(crate) admin: Option<AdminServer>,
    /// The process that took over (SIGUSR2), if one did.
    pub(crate) replaced_by: Option<Replaced>,
}

/// Who hears what the reloader does: systemd (`RELOADING=1` ... `READY=1`),
/// the admin endpoint (`/status`), and ginx's own log (level and format).
pub(crate) struct Report {
    pub(crate) notify: Arc<SystemdNotify>,
    /// The admin endpoint's copy is swapped for a new one after every attempt.
    pub(crate) published: Arc<arc_swap::ArcSwap<Published>>,
    pub(crate) log: LogControl,
}

impl Reloader {
    /// Serve `config` (read from `path`) as generation 1: `control.live`
    /// already holds its table, built with `plan`, which is committed here
    /// (its listeners start accepting on `workers`).
    pub(crate) fn start(
        path: PathBuf,
        config: Config,
        plan: Plan,
        control: Control,
        workers: &Workers,
    ) -> Self {
        let Control {
            live,
            mut endpoints,
            discovery,
            report,
            generation,
            binary,
        } = control;
        endpoints.commit(plan, workers);
        let config = Arc::new(config);
        tracing::info!(
            generation,
            listeners = config.listeners.len(),
            upstreams = config.upstreams.len(),
            servers = config.server_count(),
            "configuration loaded"
        );
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let mut reloader = Reloader {
            path,
            live,
            active: config,
            generation,
            endpoints,
            discovery,
            report,
            binary,
            last_failure: None,
            seen: Fingerprint::default(),
        };
        reloader.seen = reloader.fingerprint(&reloader.active.sources);
        reloader.publish(None);
        reloader
    }

    /// Publish the current state (and `attempt`, if any) for the admin
    /// endpoint.
    fn publish(&mut self, attempt: Option<(Trigger, AttemptOutcome)>) {
        let mut p = Published::clone(&self.report.published.load());
        p.config = self.active.clone();
        p.generation = self.generation;
        p.listeners = self
            .active
            .listeners
            .values()
            .map(|l| ListenerBinding {
                name: l.name.clone(),
                bind: l.bind,
                address: self.endpoints.local_addr(&l.name),
            })
            .collect();
        if let Some((trigger, outcome)) = attempt {
            match outcome {
                AttemptOutcome::Applied { .. } => {
                    p.applied_at = SystemTime::now();
                    p.reloads_applied += 1;
                }
                AttemptOutcome::Rejected { .. } => p.reloads_rejected += 1,
                AttemptOutcome::Unchanged => {}
            }
            p.last_attempt = Some(Attempt {
                at: SystemTime::now(),
                trigger,
                outcome,
            });
        }
        self.report.published.store(Arc::new(p));
    }

    /// Re-read the configuration and apply it if it changed and is valid.
    /// Never disturbs what is serving when it fails. systemd hears
    /// `RELOADING=1` for every SIGHUP (what `Type=notify-reload` waits for)
    /// and every change applied, then `READY=1` whatever the outcome.
    pub(crate) async fn reload(&mut self, trigger: Trigger, workers: &Workers) {
        let generation = self.generation;
        if trigger == Trigger::Signal {
            self.report.notify.reloading();
        }
        if let Some(config) = self.load(trigger).await {
            self.plan_and_apply(trigger, config, workers).await;
        }
        if trigger == Trigger::Signal || self.generation != generation {
            self.report
                .notify
                .ready(&format!("serving generation {}", self.generation));
        }
    }

    /// The configuration on disk, if it is valid and differs from the
    /// active one (and from the last one that failed to apply).
    async fn load(&mut self, trigger: Trigger) -> Option<Config> {
        // The poll is the fallback for file systems without events; every
        // 2 s it must cost next to nothing while nothing changed.
        if trigger == Trigger::Poll && self.seen.again() == self.seen {
            return None;
        }
        let path = self.path.clone();
        let loaded = match tokio::task::spawn_blocking(move || {
            yield_to_workers();
            config::load(&path)
        })
        .await
        {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(%error, "configuration loader panicked; keeping generation {}", self.generation);
                return None;
            }
        };
        let sources = match &loaded {
            Ok(config) => &config.sources,
            Err(errors) => &errors.sources,
        };
        self.seen = self.fingerprint(sources);
        let config = match loaded {
            Ok(config) => config,
            Err(errors) => {
                let sources = errors.sources.clone();
                self.reject(trigger, Refusal::Invalid(errors), sources);
                return None;
            }
        };
        // A valid configuration whose listeners could not be bound last time
        // fails the same way until something changes: say so once.
        if trigger != Trigger::Signal && self.last_failure.as_ref() == Some(&config.sources) {
            return None;
        }
        if config.sources == self.active.sources {
            self.last_failure = None;
            if trigger == Trigger::Signal {
                tracing::info!(generation = self.generation, "configuration unchanged");
                self.publish(Some((trigger, AttemptOutcome::Unchanged)));
            }
            return None;
        }
        Some(config)
    }

    /// The facts of `sources` (the files a load read), of their directories
    /// and of every directory the active configuration watches.
    fn fingerprint(&self, sources: &[Source]) -> Fingerprint {
        let files = sources.iter().map(|s| &s.path);
        let dirs: Vec<PathBuf> = sources
            .iter()
            .filter_map(|s| s.path.parent().filter(|d| !d.as_os_str().is_empty()))
            .map(Path::to_path_buf)
            .collect();
        Fingerprint::of(files.chain(&dirs).chain(&self.active.watch_dirs))
    }

    /// Resolve and plan `config`, then apply it: everything that can fail
    /// happens before anything changes.
    async fn plan_and_apply(&mut self, trigger: Trigger, config: Config, workers: &Workers) {
        // New host names are looked up before the plan binds anything: new
        // sockets then do not sit bound and unserved while names resolve.
        let lookups = self.discovery.look_up_new(&config).await;
        // From here on nothing awaits, so a reload abandoned at `stop` has
        // changed nothing.
        let plan = match self.endpoints.plan(&config, &self.live.load()) {
            Ok(plan) => plan,
            Err(refusal) => return self.reject(trigger, refusal, config.sources),
        };
        let generation = self.generation + 1;
        if trigger != Trigger::Signal {
            self.report.notify.reloading();
        }
        let resolved = self.discovery.adopt(&config, lookups);
        let table = RoutingTable::build(
            &config,
            plan.prepared.clone(),
            plan.access_log.clone(),
            &resolved,
            Some(&self.live.load()),
            generation,
        );
        self.live.store(Arc::new(table));
        self.endpoints.commit(plan, workers);
        self.report.log.apply(&config.global);
        let diff = config::Diff::between(&self.active, &config);
        let changes = match diff.is_empty() {
            true => "files changed, same settings".to_owned(),
            false => diff.lines().join(", "),
        };
        tracing::info!(generation, changes, ?trigger, "configuration applied");
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        self.generation = generation;
        self.active = Arc::new(config);
        // Now with the directories the new configuration watches.
        self.seen = self.fingerprint(&self.active.sources);
        self.last_failure = None;
        self.publish(Some((trigger, AttemptOutcome::Applied { generation })));
    }

    /// A host name's addresses changed: rebuild the table from the active
    /// configuration (same generation: the configuration did not change).
    fn apply_dns(&mut self) {
        let resolved = self.discovery.resolved();
        let previous = self.live.load();
        let (prepared, access_log) = (previous.prepared().clone(), previous.access_log.clone());
        let table = RoutingTable::build(
            &self.active,
            prepared,
            access_log,
            &resolved,
            Some(&previous),
            self.generation,
        );
        self.live.store(Arc::new(table));
        tracing::info!(generation = self.generation, "upstream members updated from DNS");
    }

    /// Log why the configuration read from `sources` is not applied (once
    /// per distinct texts, but for every SIGHUP), and publish it.
    fn reject(&mut self, trigger: Trigger, refusal: Refusal, sources: Vec<Source>) {
        if trigger != Trigger::Signal && self.last_failure.as_ref() == Some(&sources) {
            return;
        }
        self.last_failure = Some(sources);
        let messages: Vec<String> = match refusal {
            Refusal::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
            Refusal::Unavailable(error) => vec![format!("{error:#}")],
        };
        for message in &messages {
            tracing::error!("{message}");
        }
        tracing::error!(
            errors = messages.len(),
            "configuration rejected; keeping generation {}",
            self.generation
        );
        self.publish(Some((trigger, AttemptOutcome::Rejected { errors: messages })));
    }

    /// Reload on file events, SIGHUP and the poll until `stop`, then release
    /// every listening socket (workers keep accepting on their own copies
    /// until their listeners are cancelled). The admin endpoint is handed
    /// back: it must keep answering while the process drains.
    pub(crate) async fn run(mut self, workers: &Workers, stop: CancellationToken) -> Ended {
        let mut triggers = Triggers::new(&self.active);
        let mut replaced_by = None;
        loop {
            let dns_due = self.discovery.next_due();
            let wake = tokio::select! {
                () = stop.cancelled() => break,
                wake = triggers.next(self.active.global.watch) => wake,
                () = sleep_until(dns_due.unwrap_or_else(Instant::now)), if dns_due.is_some() => {
                    if self.discovery.refresh().await {
                        self.apply_dns();
                    }
                    continue;
                }
            };
            let trigger = match wake {
                Wake::Reload(Trigger::FileEvent) => {
                    triggers.settle().await;
                    Trigger::FileEvent
                }
                Wake::Reload(trigger) => trigger,
                Wake::Upgrade => {
                    replaced_by = self.upgrade(&mut triggers).await;
                    if replaced_by.is_some() {
                        break;
                    }
                    continue;
                }
                Wake::ReopenLogs => {
                    if let Some(log) = &self.live.load().access_log {
                        log.reopen();
                        tracing::info!("SIGUSR1: reopening the access log");
                    }
                    continue;
                }
            };
            tokio::select! {
                biased;
                // Loading or resolving (at most one lookup timeout) may be
                // cut short: a reload changes nothing until it stops
                // awaiting.
                () = stop.cancelled() => break,
                () = self.reload(trigger, workers) => {}
            }
            triggers.follow(&self.active);
        }
        // The listeners' sockets close with the endpoints here (the control
        // plane's copy of each; workers hold their own until they stop).
        Ended {
            admin: self.endpoints.into_admin(),
            replaced_by,
        }
    }

    /// SIGUSR2: start the binary again and hand over to it; the new
    /// process, once it serves. Any failure is logged and changes nothing
    /// here. Another SIGUSR2 meanwhile is refused.
    async fn upgrade(&mut self, triggers: &mut Triggers) -> Option<Replaced> {
        let Some(binary) = &self.binary else {
            tracing::error!("SIGUSR2: cannot upgrade: the path of the running binary is unknown");
            return None;
        };
        tracing::info!(binary = %binary.exe.display(), generation = self.generation, "SIGUSR2: upgrading");
        let state = upgrade::State::of(&self.live.load(), self.generation, self.discovery.resolved());
        let sockets = self.endpoints.passable();
        let mut handover = std::pin::pin!(upgrade::hand_over(binary, &sockets, &state));
        let result = loop {
            tokio::select! {
                result = &mut handover => break result,
                () = triggers.next_upgrade() => {
                    tracing::warn!("SIGUSR2 refused: an upgrade is already under way");
                }
            }
        };
        match result {
            Ok(replaced) => {
                tracing::info!(
                    pid = replaced.pid,
                    "upgrade: the new process serves; this one stops accepting and drains"
                );
                Some(replaced)
            }
            Err(error) => {
                tracing::error!(
                    "upgrade failed; keeping generation {} in this process: {error:#}",
                    self.generation
                );
                // For `ginx upgrade`, which reads `/status`.
                let mut published = Published::clone(&self.report.published.load());
                published.upgrade_failed = Some((SystemTime::now(), format!("{error:#}")));
                self.report.published.store(Arc::new(published));
                None
            }
        }
    }
}

/// Lower the calling thread's CPU priority (nice 10), once per thread: a
/// large configuration's load takes a core for a fraction of a second, and
/// on a machine whose cores the workers use, requests must not queue behind
/// it (p99 at 200 req/s during reloads of 10,000 routes: docs/performance.md).
/// Only the control runtime's blocking threads call this; the workers keep
/// their priority. Best effort: a failure leaves the priority as it was.
fn yield_to_workers() {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if LOWERED.replace(true) {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), 10) {
        tracing::debug!(%error, "could not lower the configuration loader's priority");
    }
}
