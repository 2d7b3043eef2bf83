//! The process: load, start workers and listeners, reload until told to
//! stop or replaced by a new binary (SIGUSR2, [`crate::upgrade`]), then
//! drain.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminContext, AdminServer, Lifecycle, Process, Published, Stage};
use crate::config;
use crate::observe::LogControl;
use crate::reload::{Control, Endpoints, Reloader, Report};
use crate::server::{BoundSocket, Workers};
use crate::systemd::SystemdNotify;
use crate::table::{Live, RoutingTable};
use crate::upgrade::{Binary, Handover};
use crate::upgrade_command::{remove_pid_file, write_pid_file};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The main configuration file.
    pub config: PathBuf,
    /// Worker threads (each one runtime, one accept loop per listener).
    pub workers: usize,
}

/// Serve the configuration at `options.config` until `shutdown` resolves,
/// then drain gracefully and return.
///
/// # Errors
///
/// A configuration that does not load (the error is [`config::Errors`], with
/// every problem found), or one whose plan fails: a listener that cannot be
/// bound, a TLS setup rustls refuses (located errors too), an access log
/// that cannot be opened.
pub async fn run(
    options: RunOptions,
    log: LogControl,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Resolved now: after a package upgrade the path holds the new binary.
    let binary = Binary::current()
        .inspect_err(|error| tracing::warn!("SIGUSR2 upgrades are off: {error:#}"))
        .ok();
    let mut handover = Handover::receive()?;
    let started = load_and_start(options, log, &mut handover, binary).await;
    let (started, notify) = match started {
        Ok(started) => started,
        Err(error) => {
            if let Some(handover) = handover {
                handover.failed(&error);
            }
            return Err(error);
        }
    };
    let Started {
        reloader,
        workers,
        live,
        lifecycle,
        root,
        generation,
        pid_file,
    } = started;
    lifecycle.set(Stage::Serving);
    match handover {
        Some(handover) => {
            // Before the old process exits: systemd follows this one.
            notify.ready_main(&format!(
                "serving generation {generation}, upgraded from pid {}",
                handover.from
            ));
            tracing::info!(
                from = handover.from,
                "upgrade: serving; the old process stops accepting now"
            );
            handover.ready();
        }
        None => notify.ready(&format!("serving generation {generation}")),
    }
    // Written once serving (the process an upgrade starts rewrites it); a
    // later change of the setting applies at the next start or upgrade.
    if let Some(path) = &pid_file {
        write_pid_file(path);
    }

    let stop_reloading = CancellationToken::new();
    let ended = {
        let mut reloading = pin!(reloader.run(&workers, stop_reloading.clone()));
        tokio::select! {
            ended = &mut reloading => ended,
            () = shutdown => {
                stop_reloading.cancel();
                reloading.await
            }
        }
    };
    lifecycle.set(Stage::Draining);
    match ended.replaced_by {
        Some(replaced) => {
            // The new process answers on the admin endpoint's socket now.
            drop(ended.admin);
            workers.hand_over();
            drain(&live, root, workers, Duration::ZERO).await;
            tracing::info!(by = replaced.pid, "replaced; stopped");
        }
        None => {
            notify.stopping();
            let delay = live.load().shutdown_delay;
            drain(&live, root, workers, delay).await;
            drop(ended.admin);
            if let Some(path) = &pid_file {
                remove_pid_file(path);
            }
            tracing::info!("stopped");
        }
    }
    Ok(())
}

/// What serves once [`load_and_start`] is done.
struct Started {
    reloader: Reloader,
    workers: Workers,
    live: Live,
    lifecycle: Arc<Lifecycle>,
    root: CancellationToken,
    generation: u64,
    pid_file: Option<PathBuf>,
}

/// Load the configuration and start serving it: everything that can fail
/// before the process is ready (an upgrade's new process reports it to the
/// old one).
async fn load_and_start(
    options: RunOptions,
    log: LogControl,
    handover: &mut Option<Handover>,
    binary: Option<Binary>,
) -> anyhow::Result<(Started, Arc<SystemdNotify>)> {
    let started_at = std::time::SystemTime::now();
    let config = config::load(&options.config)?;
    log.apply(&config.global);
    if crate::mounts::is_single_file_mount(&options.config) {
        tracing::warn!(
            config = %options.config.display(),
            "the configuration file is a single-file bind mount: its inode cannot change, so edits \
             made on the host by replacing the file may never be seen; mount its directory instead"
        );
    }
    let notify = Arc::new(SystemdNotify::from_env());
    let lifecycle = Arc::new(Lifecycle::default());
    let live: Live = Arc::new(ArcSwap::from_pointee(RoutingTable::empty()));
    let root = CancellationToken::new();
    let report = Report {
        notify: notify.clone(),
        published: Arc::new(ArcSwap::from_pointee(Published {
            process: Process {
                started_at,
                binary: binary.as_ref().map(|b| b.exe.clone()),
                replaced_pid: handover.as_ref().map(|h| h.from),
            },
            ..Published::initial(&options.config, Arc::new(config.clone()), 0)
        })),
        log,
    };
    let generation = handover.as_ref().map_or(1, |h| h.state.generation + 1);
    let pid_file = config.global.pid_file.clone();
    let first = First {
        config,
        generation,
        binary,
    };
    let (reloader, workers) =
        start(options, first, &live, &lifecycle, root.clone(), report, handover).await?;
    let started = Started {
        reloader,
        workers,
        live,
        lifecycle,
        root,
        generation,
        pid_file,
    };
    Ok((started, notify))
}

/// The first generation: its configuration and number, and what SIGUSR2
/// starts.
struct First {
    config: config::Config,
    generation: u64,
    binary: Option<Binary>,
}

/// The first generation, from `config` to serving: the admin endpoint
/// first (so probes see "starting" rather than a refused connection while
/// names resolve and listeners bind), then the same plan as a reload's, the
/// table, the workers, and the listeners. Sockets in `handover` are used
/// instead of binding their addresses again.
async fn start(
    options: RunOptions,
    first: First,
    live: &Live,
    lifecycle: &Arc<Lifecycle>,
    root: CancellationToken,
    report: Report,
    handover: &mut Option<Handover>,
) -> anyhow::Result<(Reloader, Workers)> {
    let First {
        config,
        generation,
        binary,
    } = first;
    let admin_context = AdminContext {
        live: live.clone(),
        published: report.published.clone(),
        lifecycle: lifecycle.clone(),
    };
    let inherited_admin = (config.admin.as_ref()).and_then(|a| handover.as_mut()?.take_admin(a.bind));
    let admin = match (&config.admin, inherited_admin) {
        (Some(admin), Some(socket)) => Some(AdminServer::serve(
            BoundSocket::adopt(admin.bind, socket)?,
            admin_context.clone(),
        )?),
        (Some(admin), None) => Some(AdminServer::start(admin.bind, admin_context.clone())?),
        (None, _) => None,
    };
    let mut endpoints = Endpoints::new(admin, admin_context, root);
    if let Some(handover) = handover {
        let mut adopted = Vec::new();
        for (name, configured, socket) in handover.take_listeners() {
            adopted.push((name, BoundSocket::adopt(configured, socket)?));
        }
        endpoints.adopt(adopted);
    }
    let mut discovery = crate::dns::Discovery::new(&config.global);
    if let Some(handover) = handover.as_mut() {
        discovery.seed(handover.state.take_names());
    }
    let resolved = discovery.sync(&config).await;
    let plan = endpoints.plan(&config, &live.load())?;
    let table = RoutingTable::build(
        &config,
        plan.prepared.clone(),
        plan.access_log.clone(),
        &resolved,
        None,
        generation,
    );
    if let Some(handover) = handover {
        // Before it serves: a server down in the old process gets no request.
        let taken = handover.state.apply(&table);
        tracing::info!(servers = taken, "upgrade: took over the servers' state");
    }
    live.store(Arc::new(table));
    let workers = Workers::start(options.workers, live.clone())?;
    let control = Control {
        live: live.clone(),
        endpoints,
        discovery,
        report,
        generation,
        binary,
    };
    let reloader = Reloader::start(options.config, config, plan, control, &workers);
    // Health checks run beside the reloader on this (control) runtime.
    tokio::spawn(crate::health::run(live.clone()));
    tracing::info!(
        workers = options.workers,
        "ginx {} started",
        env!("CARGO_PKG_VERSION")
    );
    Ok((reloader, workers))
}

/// After `delay` (`shutdown_delay`: still serving while `/ready` says
/// 503; none after an upgrade), stop every listener and let each
/// connection finish within `shutdown_timeout`.
async fn drain(live: &Live, root: CancellationToken, workers: Workers, delay: Duration) {
    let table = live.load_full();
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "shutting down: still serving during shutdown_delay while /ready answers 503"
        );
        tokio::time::sleep(delay).await;
    }
    let grace = table.shutdown_timeout;
    tracing::info!(timeout = ?grace, "shutting down: no new connections, draining open ones");
    root.cancel();
    // Each connection enforces `grace` itself; the backstop only guards
    // against a connection that ignores it.
    workers.drain(grace + Duration::from_secs(1)).await;
    if let Some(access_log) = &live.load().access_log {
        access_log.wait_on_drop();
    }
}
