//! Active health checks: one task probes every server that has a
//! `[upstream.NAME.health_check]`, and sets its verdict on [`ServerState`].
//!
//! There is no task per server. The checker wakes every [`TICK`], reads the
//! current routing table, and starts the probes that are due (each a short
//! task on the control runtime, bounded by the check's `timeout`). Its
//! bookkeeping (counters, next due time, the settings a server was checked
//! with) is keyed by the identity of the `ServerState`, which reloads carry
//! over, so:
//! - a reload that keeps a server keeps its verdict and its counters;
//! - a server new to the table is probed at once, not after one interval;
//! - changing a pool's `health_check` restarts the counters of that pool's
//!   servers only (the verdict stays until the new checks decide);
//! - a server removed by a reload is simply no longer probed;
//! - a pool whose `health_check` is removed puts its servers back up.
//!
//! Intervals are jittered by ±10% so that servers added together are not
//! probed in lockstep forever.
//!
//! A probe reaches its server as requests do, over the pool's own connect
//! path ([`Connector`]: TCP, TLS with the pool's client configuration, ALPN
//! per protocol) and speaks the pool's protocol with hyper, so `https://`,
//! `h2` and `h2c` servers are checked like plain HTTP/1.1 ones. It opens a
//! connection of its own every time: a probe never takes, or poisons, a
//! connection a request could use.
//!
//! The verdict is an atomic on the server; the request path only reads it.
//! This module owns when to probe and how to count; what the verdict does
//! to balancing is [`crate::upstream`]'s job.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{CheckKind, HealthCheck, UpstreamProtocol};
use crate::observe::clock;
use crate::table::{Live, RoutingTable};
use crate::upstream::{Connector, ServerState, UpstreamBody};

/// How often the checker looks for due probes (and for a new table).
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The checker's view of one server.
struct Entry {
    server: Arc<ServerState>,
    upstream: Arc<str>,
    /// How the pool reaches the server; fixed for a `ServerState`, whose
    /// identity includes its transport.
    connector: Connector,
    check: HealthCheck,
    successes: u32,
    failures: u32,
    next_due: Instant,
    probing: bool,
    /// Whether any probe has finished since the entry was made: a server
    /// that starts down (`initial_state = "down"`) comes up on its first
    /// passing check.
    checked: bool,
}

/// Probe servers until the runtime ends.
pub(crate) async fn run(live: Live) {
    let mut entries: HashMap<usize, Entry> = HashMap::new();
    let (done_tx, mut done) = mpsc::unbounded_channel::<(usize, Result<(), String>)>();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The table the entries were last brought in line with: every server of
    // every upstream is visited only when the table changes, so a large
    // configuration costs nothing between reloads. Held (not compared by
    // address) so that a freed table's address cannot pass for a new one.
    let mut synced: Option<Arc<RoutingTable>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some((id, result)) = done.recv() => {
                if let Some(entry) = entries.get_mut(&id) {
                    apply(entry, result);
                }
                continue;
            }
        }
        let table = live.load_full();
        if !synced.as_ref().is_some_and(|seen| Arc::ptr_eq(seen, &table)) {
            sync(&table, &mut entries);
            synced = Some(table);
        }
        let now = Instant::now();
        for (&id, entry) in entries.iter_mut() {
            if entry.probing || entry.next_due > now {
                continue;
            }
            entry.probing = true;
            entry.next_due = clock::later(now, jittered(entry.check.interval));
            let (server, connector, check) =
                (entry.server.clone(), entry.connector.clone(), entry.check.clone());
            let done = done_tx.clone();
            tokio::spawn(async move {
                let probe = probe(&server, &connector, &check);
                let result = match tokio::time::timeout(check.timeout, probe).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {:?}", check.timeout)),
                };
                let _ = done.send((id, result));
            });
        }
    }
}

/// Bring the entries in line with the current table.
fn sync(table: &RoutingTable, entries: &mut HashMap<usize, Entry>) {
    let mut seen = Vec::new();
    for pool in table.upstreams() {
        let check = pool.settings.health_check.as_ref();
        for server in pool.servers() {
            let Some(check) = check else {
                // No (more) checks: only passive health applies.
                if !server.is_up() {
                    server.set_up(true);
                    tracing::info!(upstream = %pool.name, server = %server.name, "server up: health checks removed");
                }
                continue;
            };
            let id = Arc::as_ptr(server) as usize;
            seen.push(id);
            match entries.get_mut(&id) {
                Some(entry) if entry.check == *check => {}
                Some(entry) => {
                    // New settings: start counting again, probe at once.
                    entry.check = check.clone();
                    entry.successes = 0;
                    entry.failures = 0;
                    entry.next_due = Instant::now();
                }
                None => {
                    entries.insert(
                        id,
                        Entry {
                            server: server.clone(),
                            upstream: pool.name.clone(),
                            connector: pool.connector(server),
                            check: check.clone(),
                            successes: 0,
                            failures: 0,
                            next_due: Instant::now(),
                            probing: false,
                            checked: false,
                        },
                    );
                }
            }
        }
    }
    seen.sort_unstable();
    entries.retain(|id, _| seen.binary_search(id).is_ok());
}

/// Count a probe's result and flip the verdict at `rise` / `fall`.
fn apply(entry: &mut Entry, result: Result<(), String>) {
    entry.probing = false;
    let first = !entry.checked;
    entry.checked = true;
    let server = &entry.server;
    match result {
        Ok(()) => {
            entry.failures = 0;
            entry.successes = entry.successes.saturating_add(1);
            if !server.is_up() && (entry.successes >= entry.check.rise || first) {
                server.set_up(true);
                tracing::info!(
                    upstream = %entry.upstream,
                    server = %server.name,
                    passes = entry.successes,
                    "server up: health check passed"
                );
            }
        }
        Err(reason) => {
            entry.successes = 0;
            entry.failures = entry.failures.saturating_add(1);
            if server.is_up() && entry.failures >= entry.check.fall {
                server.set_up(false);
                tracing::warn!(
                    upstream = %entry.upstream,
                    server = %server.name,
                    failures = entry.failures,
                    %reason,
                    "server down: health check failed"
                );
            }
        }
    }
}

/// One probe: a TCP connect, or an HTTP GET whose status must be in range.
async fn probe(server: &ServerState, connector: &Connector, check: &HealthCheck) -> Result<(), String> {
    let CheckKind::Http { path } = &check.kind else {
        TcpStream::connect(server.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        return Ok(());
    };
    let io = connector
        .transport(server.addr, check.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let request = probe_request(path, server.host(), connector.protocol)?;
    let response = match connector.protocol {
        UpstreamProtocol::Http1 => {
            let (mut sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            exchange(conn, sender.send_request(request)).await?
        }
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
            let (mut sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            exchange(conn, sender.send_request(request)).await?
        }
    };
    let status = response.status().as_u16();
    let (low, high) = check.expect_status;
    if (low..=high).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}, expected {low}-{high}"))
    }
}

/// The probe's `GET path` to a server whose `Host` is `host`: HTTP/1.1 with
/// `Connection: close` (one request per connection), or HTTP/2 with the
/// target in absolute form (`:scheme`, `:authority`), as requests are sent.
fn probe_request(
    path: &str,
    host: &str,
    protocol: UpstreamProtocol,
) -> Result<Request<UpstreamBody>, String> {
    let builder = Request::get(path).header(header::USER_AGENT, "ginx-health-check");
    let builder = match protocol {
        UpstreamProtocol::Http1 => builder
            .header(header::HOST, host)
            .header(header::CONNECTION, "close"),
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
            let scheme = match protocol {
                UpstreamProtocol::H2 => "https",
                UpstreamProtocol::Http1 | UpstreamProtocol::H2c => "http",
            };
            let uri = Uri::builder()
                .scheme(scheme)
                .authority(host)
                .path_and_query(path)
                .build()
                .map_err(|e| format!("request: {e}"))?;
            builder.uri(uri).version(Version::HTTP_2)
        }
    };
    builder
        .body(UpstreamBody::Empty)
        .map_err(|e| format!("request: {e}"))
}

/// The response to a probe's request, driving its connection `conn` until
/// it arrives. The connection ends when the probe returns: nothing of it
/// outlives the probe, even a server that never answers.
async fn exchange(
    conn: impl Future<Output = hyper::Result<()>>,
    response: impl Future<Output = hyper::Result<Response<Incoming>>>,
) -> Result<Response<Incoming>, String> {
    tokio::pin!(response);
    let response = tokio::select! {
        biased;
        response = &mut response => response,
        ended = conn => match ended {
            // Closed (`Connection: close`) maybe right after handing the
            // response over: it is there, or the request failed.
            Ok(()) => response.await,
            Err(e) => Err(e),
        },
    };
    response.map_err(|e| format!("receive: {e}"))
}

/// `interval` ±10%.
fn jittered(interval: Duration) -> Duration {
    // A spread in [0.9, 1.1) in steps of 0.0002.
    let factor = 0.9 + crate::balance::rng::random_below(1000) as f64 / 5000.0;
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(9) && d < Duration::from_secs(11),
                "{d:?}"
            );
        }
    }
}
