//! The fallible half of applying a configuration: everything it needs that
//! can fail, done before anything that serves changes.
//!
//! ```text
//! Endpoints::plan(config, running table)
//!   ├ table::prepare        rustls configurations      refused? located errors (Refusal::Invalid)
//!   ├ ListenerSet::plan     bind new listeners         failed? (Refusal::Unavailable)
//!   ├ admin endpoint        bind a moved one           failed? (Refusal::Unavailable)
//!   └ access log            open a new file            failed? (Refusal::Unavailable)
//!        ▼ Plan: nothing running has changed yet; dropping it closes what it bound
//! RoutingTable::build(.., plan.prepared, plan.access_log, ..) ─▶ Live::store ─▶ Endpoints::commit
//! ```
//!
//! This module owns the endpoints a reload may change (the listeners and the
//! admin endpoint) and the plan that changes them; it follows
//! [`crate::server::ListenerSet`]'s plan/commit, which is the model. Building
//! and swapping the routing table is [`super::Reloader`]'s job.

use std::net::SocketAddr;
use std::os::fd::AsFd as _;

use tokio_util::sync::CancellationToken;

use crate::admin::{AdminContext, AdminServer};
use crate::config::{Config, Errors};
use crate::observe::access_log::AccessLogger;
use crate::server::{BoundSocket, ListenerPlan, ListenerSet, Workers};
use crate::table::{self, Prepared, RoutingTable};
use crate::upgrade::Passed;

/// The sockets a configuration decides: its listeners and its admin
/// endpoint.
pub(crate) struct Endpoints {
    listeners: ListenerSet,
    admin: Option<AdminServer>,
    /// What a newly bound admin endpoint serves.
    admin_context: AdminContext,
    /// Parent of every listener's stop token (cancelled at shutdown).
    root: CancellationToken,
}

/// Everything a configuration needs that can fail, already done: sockets
/// bound, TLS built, log file open.
pub(crate) struct Plan {
    listeners: ListenerPlan,
    admin: AdminChange,
    /// The rustls configurations, for the table build.
    pub(crate) prepared: Prepared,
    /// The access logger, for the table build.
    pub(crate) access_log: Option<AccessLogger>,
}

/// What a plan does to the admin endpoint.
enum AdminChange {
    /// Its address did not change (or there is none, as before).
    Keep,
    /// The configuration no longer has one.
    Stop,
    /// A new one, already bound and serving.
    Start(AdminServer),
}

/// Why a configuration cannot be applied; in either case nothing changed.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// What the configuration asks for cannot be built (a TLS setup rustls
    /// refuses): located errors, as validation's are.
    Invalid(Errors),
    /// Something it needs cannot be had: an address is in use, a log file
    /// cannot be opened.
    Unavailable(anyhow::Error),
}

impl From<Refusal> for anyhow::Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(errors) => errors.into(),
            Refusal::Unavailable(error) => error,
        }
    }
}

impl Endpoints {
    /// No listener yet; `admin` is the admin endpoint already serving
    /// `admin_context`, if any (it starts before anything else so that
    /// probes get "starting" rather than a refused connection).
    pub(crate) fn new(
        admin: Option<AdminServer>,
        admin_context: AdminContext,
        root: CancellationToken,
    ) -> Self {
        Endpoints {
            listeners: ListenerSet::default(),
            admin,
            admin_context,
            root,
        }
    }

    /// Do everything `config` needs that can fail, against what serves now
    /// (`running`: its rustls configurations and access logger are reused
    /// where the settings did not change).
    ///
    /// # Errors
    ///
    /// The first [`Refusal`]. Nothing running has changed then, and whatever
    /// was bound or opened for the plan is closed again.
    pub(crate) fn plan(&self, config: &Config, running: &RoutingTable) -> Result<Plan, Refusal> {
        let prepared = table::prepare(config, Some(running)).map_err(Refusal::Invalid)?;
        let listeners = self.listeners.plan(config).map_err(Refusal::Unavailable)?;
        let admin = self.plan_admin(config).map_err(Refusal::Unavailable)?;
        let access_log =
            AccessLogger::for_config(config, running.access_log.as_ref()).map_err(Refusal::Unavailable)?;
        Ok(Plan {
            listeners,
            admin,
            prepared,
            access_log,
        })
    }

    /// The admin endpoint `config` wants, bound if it is new.
    fn plan_admin(&self, config: &Config) -> anyhow::Result<AdminChange> {
        let wanted = config.admin.as_ref().map(|a| a.bind);
        if wanted == self.admin.as_ref().map(|a| a.configured) {
            return Ok(AdminChange::Keep);
        }
        Ok(match wanted {
            None => AdminChange::Stop,
            Some(bind) => AdminChange::Start(AdminServer::start(bind, self.admin_context.clone())?),
        })
    }

    /// Start and stop listeners and the admin endpoint as `plan` says. Call
    /// after the table that routes the new listeners is stored.
    pub(crate) fn commit(&mut self, plan: Plan, workers: &Workers) {
        self.listeners.commit(plan.listeners, workers, &self.root);
        match plan.admin {
            AdminChange::Keep => {}
            AdminChange::Stop => self.admin = None,
            AdminChange::Start(admin) => self.admin = Some(admin),
        }
    }

    /// Use `sockets` (listener name, socket), handed over by the process
    /// this one replaces, for the first plan's listeners.
    pub(crate) fn adopt(&mut self, sockets: Vec<(String, BoundSocket)>) {
        self.listeners.adopt(sockets);
    }

    /// Every listening socket, the admin endpoint's too, for an upgrade.
    pub(crate) fn passable(&self) -> Vec<Passed<'_>> {
        let listeners = self.listeners.sockets().map(|(name, socket)| Passed {
            listener: Some(name),
            configured: socket.configured,
            fd: socket.as_fd(),
        });
        let admin = self.admin.as_ref().map(|admin| Passed {
            listener: None,
            configured: admin.configured,
            fd: admin.socket().as_fd(),
        });
        listeners.chain(admin).collect()
    }

    /// The address a listener is bound to.
    pub(crate) fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.listeners.local_addr(listener)
    }

    /// The admin endpoint, which must keep answering while the process
    /// drains; the listeners' sockets close when `self` drops.
    pub(crate) fn into_admin(self) -> Option<AdminServer> {
        self.admin
    }
}
