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
use crate::observe::access_log::AccessLogger;
use crate::observe::LogControl;
use crate::reload::Reloader;
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
/// every problem found), or a listener that cannot be bound.
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
    let admin_context = AdminContext {
        live: live.clone(),
        published: Arc::new(ArcSwap::from_pointee(Published::initial(
            &options.config,
            Arc::new(config.clone()),
            0,
        ))),
        lifecycle: lifecycle.clone(),
    };
    // Up first, so probes get "starting" rather than a refused connection
    // while names resolve and listeners bind.
    let admin = match &config.admin {
        Some(admin) => Some(AdminServer::start(admin.bind, admin_context.clone())?),
        None => None,
    };
    let mut discovery = crate::dns::Discovery::new(&config.global);
    let resolved = discovery.sync(&config).await;
    let prepared = crate::table::prepare(&config, None)?;
    let access_log = AccessLogger::for_config(&config, None)?;
    let table = RoutingTable::build(&config, prepared, access_log, &resolved, None, 1);
    live.store(Arc::new(table));
    let workers = Workers::start(options.workers, live.clone())?;
    let root = CancellationToken::new();
    let reloader = Reloader::start(
        options.config,
        config,
        &workers,
        root.clone(),
        log,
        discovery,
        admin,
        admin_context,
        notify.clone(),
    )?;
    // Health checks run beside the reloader on this (control) runtime.
    tokio::spawn(crate::health::run(live.clone()));
    lifecycle.set(Stage::Serving);
    notify.ready("serving generation 1");
    tracing::info!(
        workers = options.workers,
        "ginx {} started",
        env!("CARGO_PKG_VERSION")
    );

    let stop_reloading = CancellationToken::new();
    let (admin, ()) = tokio::join!(reloader.run(&workers, stop_reloading.clone()), async {
        shutdown.await;
        stop_reloading.cancel();
    });

    lifecycle.set(Stage::Draining);
    notify.stopping();
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
    drop(admin);
    tracing::info!("stopped");
    Ok(())
}
