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

mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminContext, AdminServer, Attempt, AttemptOutcome, ListenerBinding, Published, Trigger};
use crate::config::{self, Config, Errors, Source};
use crate::dns::Discovery;
use crate::observe::access_log::AccessLogger;
use crate::observe::LogControl;
use crate::server::{ListenerSet, Workers};
use crate::systemd::SystemdNotify;
use crate::table::{Live, RoutingTable};
use watch::{Triggers, Wake};

/// The control plane's state: the active configuration and its listeners.
pub(crate) struct Reloader {
    path: PathBuf,
    live: Live,
    active: Arc<Config>,
    generation: u64,
    listeners: ListenerSet,
    /// systemd, told about reloads (`RELOADING=1` ... `READY=1`).
    notify: Arc<SystemdNotify>,
    /// The admin endpoint, if configured, and what it reads.
    admin: Option<AdminServer>,
    admin_context: AdminContext,
    published: Published,
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
    /// which `live` already holds. `admin` is its admin endpoint, already
    /// serving `admin_context`.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        path: PathBuf,
        config: Config,
        workers: &Workers,
        root: CancellationToken,
        log: LogControl,
        discovery: Discovery,
        admin: Option<AdminServer>,
        admin_context: AdminContext,
        notify: Arc<SystemdNotify>,
    ) -> anyhow::Result<Self> {
        let mut listeners = ListenerSet::default();
        let plan = listeners.plan(&config)?;
        listeners.commit(plan, workers, &root);
        let config = Arc::new(config);
        tracing::info!(
            generation = 1,
            listeners = config.listeners.len(),
            upstreams = config.upstreams.len(),
            servers = config.server_count(),
            "configuration loaded"
        );
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let published = Published::initial(&path, config.clone(), 1);
        let mut reloader = Reloader {
            path,
            live: admin_context.live.clone(),
            active: config,
            generation: 1,
            listeners,
            notify,
            admin,
            admin_context,
            published,
            last_failure: None,
            root,
            log,
            discovery,
        };
        reloader.publish(None);
        Ok(reloader)
    }

    /// Publish the current state (and `attempt`, if any) for the admin
    /// endpoint.
    fn publish(&mut self, attempt: Option<(Trigger, AttemptOutcome)>) {
        let p = &mut self.published;
        p.config = self.active.clone();
        p.listeners = self
            .active
            .listeners
            .values()
            .map(|l| ListenerBinding {
                name: l.name.clone(),
                bind: l.bind,
                address: self.listeners.local_addr(&l.name),
            })
            .collect();
        if let Some((trigger, outcome)) = attempt {
            match outcome {
                AttemptOutcome::Applied { generation } => {
                    p.generation = generation;
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
        self.admin_context.published.store(Arc::new(p.clone()));
    }

    /// The admin endpoint `config` wants, if it differs from the running
    /// one: `Some(None)` stops it, `Some(Some(_))` is already bound.
    ///
    /// # Errors
    ///
    /// When the new address cannot be bound.
    fn plan_admin(&self, config: &Config) -> anyhow::Result<Option<Option<AdminServer>>> {
        let wanted = config.admin.as_ref().map(|a| a.bind);
        if wanted == self.admin.as_ref().map(|a| a.configured) {
            return Ok(None);
        }
        match wanted {
            None => Ok(Some(None)),
            Some(bind) => Ok(Some(Some(AdminServer::start(bind, self.admin_context.clone())?))),
        }
    }

    /// Re-read the configuration and apply it if it changed and is valid.
    /// Never disturbs what is serving when it fails. systemd hears
    /// `RELOADING=1` for every SIGHUP (what `Type=notify-reload` waits for)
    /// and every change applied, then `READY=1` whatever the outcome.
    pub(crate) async fn reload(&mut self, trigger: Trigger, workers: &Workers) {
        let generation = self.generation;
        if trigger == Trigger::Signal {
            self.notify.reloading();
        }
        self.load_and_apply(trigger, workers).await;
        if trigger == Trigger::Signal || self.generation != generation {
            self.notify
                .ready(&format!("serving generation {}", self.generation));
        }
    }

    async fn load_and_apply(&mut self, trigger: Trigger, workers: &Workers) {
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
                self.publish(Some((trigger, AttemptOutcome::Unchanged)));
            }
            return;
        }
        // New host names are looked up before the plan binds anything: new
        // sockets then do not sit bound and unserved while names resolve.
        let lookups = self.discovery.look_up_new(&config).await;
        // Everything that can fail happens before anything changes. From
        // here on nothing awaits, so a reload abandoned at `stop` has
        // changed nothing.
        let prepared = match crate::table::prepare(&config, Some(&self.live.load())) {
            Ok(prepared) => prepared,
            Err(errors) => return self.reject(trigger, errors),
        };
        let planned = self.listeners.plan(&config).and_then(|plan| {
            let access_log = AccessLogger::for_config(&config, self.live.load().access_log.as_ref())?;
            Ok((plan, self.plan_admin(&config)?, access_log))
        });
        let (plan, admin, access_log) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                let error = format!("{error:#}");
                tracing::error!(
                    error,
                    "configuration rejected; keeping generation {}",
                    self.generation
                );
                self.last_failure = Some(config.sources);
                self.publish(Some((trigger, AttemptOutcome::Rejected { errors: vec![error] })));
                return;
            }
        };
        let generation = self.generation + 1;
        if trigger != Trigger::Signal {
            self.notify.reloading();
        }
        let resolved = self.discovery.adopt(&config, lookups);
        let table = RoutingTable::build(
            &config,
            prepared,
            access_log,
            &resolved,
            Some(&self.live.load()),
            generation,
        );
        self.live.store(Arc::new(table));
        self.listeners.commit(plan, workers, &self.root);
        if let Some(admin) = admin {
            self.admin = admin;
        }
        self.log.apply(&config.global);
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
        let messages = errors.iter().map(ToString::to_string).collect();
        self.last_failure = Some(errors.sources);
        self.publish(Some((trigger, AttemptOutcome::Rejected { errors: messages })));
    }

    /// Reload on file events, SIGHUP and the poll until `stop`, then release
    /// every listening socket (workers keep accepting on their own copies
    /// until their listeners are cancelled). The admin endpoint is handed
    /// back: it must keep answering while the process drains.
    pub(crate) async fn run(mut self, workers: &Workers, stop: CancellationToken) -> Option<AdminServer> {
        let mut triggers = Triggers::new(&self.active);
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
        // `self.listeners` drops here, closing the control plane's copy of
        // every listening socket.
        self.admin.take()
    }
}
