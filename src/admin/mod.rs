//! The admin endpoint: `/metrics`, `/status`, `/ready`, `/live`, `/config`.
//!
//! It runs on the control thread's runtime, never on a worker, so a scrape
//! competes with reloads, not with requests. It only reads: the current
//! routing snapshot (for counters and server state) and what the control
//! plane publishes about itself ([`Published`]). It changes nothing.
//!
//! Bound only where `[admin] bind` says (loopback by default); the endpoint
//! has no authentication, like nginx's `stub_status` and HAProxy's stats
//! socket, so keep it off public interfaces.
//!
//! This file owns the socket, the accept loop and the paths; each document
//! has its own module: [`prometheus`] (`/metrics`), [`status`] (`/status`
//! and drift), and [`published`], the reloader's report that both read.
//! Deciding what is served or when to reload is never this module's job.

mod prometheus;
mod published;
mod status;

use prometheus::ControlFacts;
pub(crate) use published::{Attempt, AttemptOutcome, ListenerBinding, Process, Published, Trigger};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::SourceKind;
use crate::forward::ProxyBody;

use crate::server::BoundSocket;
use crate::table::Live;

/// Where the process is in its life, for `/ready`.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle(AtomicU8);

/// A [`Lifecycle`] stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    /// Loading, resolving, binding: not ready yet.
    Starting = 0,
    /// Serving: ready.
    Serving = 1,
    /// Shutting down (in `shutdown_delay` or draining): not ready, so load
    /// balancers stop sending before the listeners close.
    Draining = 2,
}

impl Lifecycle {
    /// Move to `stage`.
    pub(crate) fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }

    /// The current stage.
    pub(crate) fn stage(&self) -> Stage {
        match self.0.load(Ordering::Relaxed) {
            0 => Stage::Starting,
            1 => Stage::Serving,
            _ => Stage::Draining,
        }
    }
}

/// Everything the endpoint reads.
#[derive(Debug, Clone)]
pub(crate) struct AdminContext {
    /// The routing snapshot.
    pub(crate) live: Live,
    /// What the control plane publishes.
    pub(crate) published: Arc<ArcSwap<Published>>,
    /// For `/ready`.
    pub(crate) lifecycle: Arc<Lifecycle>,
}

/// A running admin endpoint; dropping it stops it.
#[derive(Debug)]
pub(crate) struct AdminServer {
    /// The address as configured.
    pub(crate) configured: SocketAddr,
    socket: BoundSocket,
    stop: CancellationToken,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl AdminServer {
    /// Bind `bind` and serve on the current (control) runtime.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub(crate) fn start(bind: SocketAddr, context: AdminContext) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let socket =
            BoundSocket::bind(bind).with_context(|| format!("binding the admin endpoint to {bind}"))?;
        Self::serve(socket, context)
    }

    /// Serve on `socket` (bound here, or handed over by the process this
    /// one replaces) on the current (control) runtime.
    ///
    /// # Errors
    ///
    /// When the socket cannot be registered with the runtime.
    pub(crate) fn serve(socket: BoundSocket, context: AdminContext) -> anyhow::Result<Self> {
        let local_addr = socket.local_addr;
        let configured = socket.configured;
        // Kept so that an upgrade can hand the socket over.
        let kept = socket.try_clone()?;
        let listener = TcpListener::from_std(socket.into_std())?;
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, Arc::new(context), stop.clone()));
        tracing::info!(addr = %local_addr, "admin listening");
        Ok(AdminServer {
            configured,
            socket: kept,
            stop,
        })
    }

    /// The listening socket.
    pub(crate) fn socket(&self) -> &BoundSocket {
        &self.socket
    }
}

async fn accept_loop(listener: TcpListener, context: Arc<AdminContext>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let context = context.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let context = context.clone();
                async move { Ok::<_, Infallible>(handle(req, &context, peer).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn handle(req: Request<Incoming>, context: &AdminContext, peer: SocketAddr) -> Response<ProxyBody> {
    // `[admin]`'s allow / deny, on the TCP peer (no proxy is trusted here),
    // as the current configuration says.
    if !crate::table::access::allowed(context.live.load().admin_access.as_deref(), peer.ip()) {
        return text(StatusCode::FORBIDDEN, "forbidden by [admin] allow/deny\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let published = context.published.load();
            let facts = ControlFacts {
                reloads_applied: published.reloads_applied,
                reloads_rejected: published.reloads_rejected,
                last_applied_unix: status::unix(published.applied_at),
            };
            let body = prometheus::encode(context.live.load_full(), facts);
            respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body.into(),
            )
        }
        "/status" => {
            let body = status::render(context).await;
            respond(StatusCode::OK, "application/json", body.into())
        }
        "/config" => {
            let published = context.published.load();
            let sources: Vec<Value> = published
                .config
                .sources
                .iter()
                .filter(|s| s.kind == SourceKind::Config)
                .map(|s| json!({"path": s.path, "text": s.text}))
                .collect();
            let body = json!({"config": published.path, "sources": sources});
            respond(StatusCode::OK, "application/json", body.to_string().into())
        }
        "/ready" => match context.lifecycle.stage() {
            Stage::Serving => text(StatusCode::OK, "ready\n"),
            Stage::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            Stage::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        },
        "/live" => text(StatusCode::OK, "live\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /status, /ready, /live or /config\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ProxyBody> {
    let body = ProxyBody::full(body);
    debug_assert!(body.size_hint().exact().is_some());
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
