//! ginx: a config-file-driven HTTP reverse proxy and load balancer.
//!
//! ```text
//! ginx.toml + conf.d/*.toml
//!    │ config::load            read every file, parse each on its own, validate all together
//!    ▼
//! config::Config               plain data; every error located as FILE:LINE:COL
//!    │ table::prepare          fallible: rustls configurations, located errors
//!    │ RoutingTable::build     infallible; carries per-server state over by identity
//!    ▼
//! Arc<RoutingTable> ──ArcSwap::store──▶ Live      one atomic switch per reload
//!    │ per request: live.load() → Router::route → UpstreamPool::candidates → forward
//!    ▼
//! forward::handle              one request: route, pick, forward, map errors to a status
//! ```
//!
//! # Layout
//!
//! In pipeline order; each layer uses only the layers above it in this list
//! (docs/architecture.md has the layer table).
//!
//! - `config`: files → validated `Config`, the only place that says "this
//!   is wrong".
//! - `balance`: selection policies (which server first) and their input.
//! - `observe`: what the data plane records: counters, access log lines,
//!   the switches of ginx's own log.
//! - `systemd`: systemd's readiness protocol (`Type=notify`); `mounts`:
//!   whether the config file is a single-file bind mount.
//! - `tls`: rustls configurations for listeners and upstreams.
//! - `dns`: host names of upstream servers, resolved and followed by TTL.
//! - `upstream`: pools and the per-server state that outlives a snapshot:
//!   health, idle connections, connecting.
//! - `table`: the immutable routing snapshot built from a `Config`.
//! - `forward`: one request from route to response (retries, headers,
//!   upgrades, bodies).
//! - `health`: active health checks, one loop for all servers.
//! - `server`: worker threads, sockets, client connections, timers, draining.
//! - `admin`: the admin endpoint (metrics, status, readiness, active config).
//! - `upgrade`: SIGUSR2, the listening sockets and the servers' state
//!   handed to a new binary (both sides of it).
//! - `reload`: watch → load → plan → build → swap → commit; the only writer
//!   of `Live`.
//! - [`check`]: `ginx --check`: a configuration's problems, shown to people
//!   or tools; `upgrade_command`: `ginx upgrade` and the pid file.
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
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod mounts;
mod observe;
mod reload;
mod server;
mod systemd;
mod table;
mod tls;
mod upgrade;
mod upgrade_command;
mod upstream;

pub use app::{run, RunOptions};
pub use config::Errors as ConfigErrors;
pub use observe::LogControl;
pub use upgrade_command::run_command as upgrade_running;
