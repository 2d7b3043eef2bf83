//! The process: load, start workers and listeners, reload until told to
//! stop, then drain.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminContext, AdminServer, Lifecycle, Published, Stage};
use crate::config;
use crate::observe::LogControl;
use crate::reload::{Control, Endpoints, Reloader, Report};
use crate::server::Workers;
use crate::systemd::SystemdNotify;
use crate::table::{Live, RoutingTable};

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
        published: Arc::new(ArcSwap::from_pointee(Published::initial(
            &options.config,
            Arc::new(config.clone()),
            0,
        ))),
        log,
    };
    let (reloader, workers) = start(options, config, &live, &lifecycle, root.clone(), report).await?;
    lifecycle.set(Stage::Serving);
    notify.ready("serving generation 1");

    let stop_reloading = CancellationToken::new();
    let (admin, ()) = tokio::join!(reloader.run(&workers, stop_reloading.clone()), async {
        shutdown.await;
        stop_reloading.cancel();
    });

    lifecycle.set(Stage::Draining);
    notify.stopping();
    drain(&live, root, workers).await;
    drop(admin);
    tracing::info!("stopped");
    Ok(())
}

/// Generation 1, from `config` to serving: the admin endpoint first (so
/// probes see "starting" rather than a refused connection while names
/// resolve and listeners bind), then the same plan as a reload's, the
/// table, the workers, and the listeners.
async fn start(
    options: RunOptions,
    config: config::Config,
    live: &Live,
    lifecycle: &Arc<Lifecycle>,
    root: CancellationToken,
    report: Report,
) -> anyhow::Result<(Reloader, Workers)> {
    let admin_context = AdminContext {
        live: live.clone(),
        published: report.published.clone(),
        lifecycle: lifecycle.clone(),
    };
    let admin = match &config.admin {
        Some(admin) => Some(AdminServer::start(admin.bind, admin_context.clone())?),
        None => None,
    };
    let endpoints = Endpoints::new(admin, admin_context, root);
    let mut discovery = crate::dns::Discovery::new(&config.global);
    let resolved = discovery.sync(&config).await;
    let plan = endpoints.plan(&config, &live.load())?;
    let table = RoutingTable::build(
        &config,
        plan.prepared.clone(),
        plan.access_log.clone(),
        &resolved,
        None,
        1,
    );
    live.store(Arc::new(table));
    let workers = Workers::start(options.workers, live.clone())?;
    let control = Control {
        live: live.clone(),
        endpoints,
        discovery,
        report,
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

/// After `shutdown_delay` (still serving while `/ready` says 503), stop
/// every listener and let each connection finish within
/// `shutdown_timeout`.
async fn drain(live: &Live, root: CancellationToken, workers: Workers) {
    let table = live.load_full();
    if !table.shutdown_delay.is_zero() {
        tracing::info!(
            delay = ?table.shutdown_delay,
            "shutting down: still serving during shutdown_delay while /ready answers 503"
        );
        tokio::time::sleep(table.shutdown_delay).await;
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
