//! ginx: a config-file-driven HTTP reverse proxy and load balancer.
//!
//! ```text
//! ginx.toml + conf.d/*.toml
//!    │ config::load            read every file, parse each on its own, validate all together
//!    ▼
//! config::Config               plain data; every error located as FILE:LINE:COL
//!    │ RoutingTable::build     infallible; carries per-server state over by identity
//!    ▼
//! Arc<RoutingTable> ──ArcSwap::store──▶ Live      one atomic switch per reload
//!    │ per request: live.load() → Router::route → UpstreamPool::candidates → forward
//!    ▼
//! proxy::handle                one request: route, pick, forward, map errors to a status
//! ```
//!
//! # Layout
//!
//! - [`config`]: files → validated [`config::Config`] (the only fallible step).
//! - [`check`]: `ginx --check`: a configuration's problems, shown to people or tools.
//! - [`table`]: the immutable routing snapshot built from a `Config`.
//! - [`balance`]: selection policies (which server first).
//! - [`dns`]: host names of upstream servers, resolved to addresses.
//! - [`upstream`]: upstream pools and per-server state that outlives a snapshot:
//!   failure hold-out, idle connection pools, connecting.
//! - [`health`]: active health checks, one task for every server.
//! - [`proxy`]: one request from route to response.
//! - [`server`]: worker threads, bound sockets, accept loops, connection draining.
//! - [`conn`]: one client connection's HTTP version (HTTP/1.1, HTTP/2, h2c)
//!   and the protocol limits.
//! - [`tunnel`]: upgraded connections (WebSocket): bytes both ways, idle timeout.
//! - [`timer`]: hyper's header-read timeout without a timer per request.
//! - [`reload`]: file watcher, SIGHUP and poll → load → bind → swap.
//! - [`metrics`]: counters the data plane bumps with atomics; Prometheus exposition.
//! - [`admin`]: the admin endpoint (metrics, status, readiness, active config).
//! - [`tls`]: rustls configurations from PEM (listeners and upstreams).
//! - [`access_log`]: access log lines, written by a thread of their own.
//! - [`notify`]: systemd's readiness protocol (`Type=notify`).
//! - [`mounts`]: whether the config file is a single-file bind mount.
//! - [`run`]: wires them together for `main`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs, unreachable_pub, clippy::all)]

mod admin;
mod app;
mod balance;
pub mod check;
mod config;
mod dns;
mod forward;
mod health;
mod mounts;
mod observe;
mod reload;
mod server;
mod systemd;
mod table;
mod tls;
mod upstream;

pub use app::{run, RunOptions};
pub use config::Errors as ConfigErrors;
pub use observe::LogControl;
