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
//! The verdict is an atomic on the server; the request path only reads it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{CheckKind, HealthCheck};
use crate::table::Live;
use crate::upstream::ServerState;

/// How often the checker looks for due probes (and for table changes).
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The checker's view of one server.
struct Entry {
    server: Arc<ServerState>,
    upstream: Arc<str>,
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
        sync(&live, &mut entries);
        let now = Instant::now();
        for (&id, entry) in entries.iter_mut() {
            if entry.probing || entry.next_due > now {
                continue;
            }
            entry.probing = true;
            entry.next_due = now + jittered(entry.check.interval);
            let (addr, host, check) = (
                entry.server.addr,
                entry.server.host().to_owned(),
                entry.check.clone(),
            );
            let done = done_tx.clone();
            tokio::spawn(async move {
                let result = match tokio::time::timeout(check.timeout, probe(addr, &host, &check)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {:?}", check.timeout)),
                };
                let _ = done.send((id, result));
            });
        }
    }
}

/// Bring the entries in line with the current table.
fn sync(live: &Live, entries: &mut HashMap<usize, Entry>) {
    let table = live.load();
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
async fn probe(addr: SocketAddr, host: &str, check: &HealthCheck) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let CheckKind::Http { path } = &check.kind else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ginx-health-check\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // The status line is all we need: "HTTP/1.1 200 ...".
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", line.lines().next().unwrap_or("")))?;
    let (low, high) = check.expect_status;
    if (low..=high).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}, expected {low}-{high}"))
    }
}

/// `interval` ±10%.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A cheap spread in [0.9, 1.1); probes need no better randomness.
    let factor = 0.9 + f64::from(nanos % 1000) / 5000.0;
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
