//! The `/status` document: what the process serves, where it listens, how
//! its last reload went, each server's state, and whether the files on disk
//! still say what is active (drift).
//!
//! This module owns the document's shape and wire names; it reads the
//! routing snapshot and [`Published`] and changes nothing. Deciding what a
//! server's state *is* (available, held out) is [`crate::upstream`]'s job;
//! this module only reports it.
//!
//! The document is typed: one struct per JSON object. The fields are
//! declared in alphabetical order because that is the order the document
//! has always had (it was a `serde_json::Value`, whose maps are sorted) and
//! docs/operations.md promises it; serde writes struct fields in declaration
//! order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AdminContext, AttemptOutcome, Published, Stage, Trigger};
use crate::config::{self, SourceKind};
use crate::observe::metrics::Outcome;
use crate::table::RoutingTable;
use crate::upstream::UpstreamPool;

/// The `/status` document of `context`, pretty-printed, with a final
/// newline.
pub(super) async fn render(context: &AdminContext) -> Vec<u8> {
    let published = context.published.load_full();
    let drift = drift(&published.path, &published.config.sources).await;
    let table = context.live.load_full();
    let status = Status::new(&published, &table, context.lifecycle.stage(), drift);
    let mut body = serde_json::to_vec_pretty(&status).expect("the status document serializes");
    body.push(b'\n');
    body
}

/// The `/status` document.
#[derive(Debug, Serialize)]
struct Status<'a> {
    /// The binary SIGUSR2 starts again (`null` when unknown).
    binary: Option<&'a Path>,
    /// The main configuration file, as given with `-c`.
    config: &'a Path,
    drift: bool,
    generation: u64,
    /// `None` until a reload attempt found a change (or a SIGHUP came).
    last_reload: Option<LastReload<'a>>,
    /// The last upgrade that failed (this process kept serving), else `None`.
    last_upgrade: Option<LastUpgrade<'a>>,
    listeners: Vec<Listener<'a>>,
    loaded_at: f64,
    pid: u32,
    /// The pid of the process this one replaced (SIGUSR2), else `null`.
    replaced_pid: Option<u32>,
    sources: Vec<SourceFile<'a>>,
    stage: &'static str,
    started_at: f64,
    upstreams: Vec<Upstream<'a>>,
    version: &'static str,
}

/// `last_reload`.
#[derive(Debug, Serialize)]
struct LastReload<'a> {
    at: f64,
    /// Every error when rejected, else empty.
    errors: &'a [String],
    /// The new generation when applied.
    generation: Option<u64>,
    result: &'static str,
    trigger: &'static str,
}

/// `last_upgrade`.
#[derive(Debug, Serialize)]
struct LastUpgrade<'a> {
    at: f64,
    error: &'a str,
}

/// One of `listeners`.
#[derive(Debug, Serialize)]
struct Listener<'a> {
    address: Option<SocketAddr>,
    bind: SocketAddr,
    name: &'a str,
}

/// One of `sources`.
#[derive(Debug, Serialize)]
struct SourceFile<'a> {
    kind: &'static str,
    path: &'a Path,
    sha256: String,
}

/// One of `upstreams`.
#[derive(Debug, Serialize)]
struct Upstream<'a> {
    balance: &'static str,
    health_check: bool,
    name: &'a str,
    /// Retries made so far (a counter), not the setting.
    retries: u64,
    servers: Vec<Server<'a>>,
}

/// One of an upstream's `servers`.
#[derive(Debug, Serialize)]
struct Server<'a> {
    address: SocketAddr,
    attempts: Attempts,
    available: bool,
    backup: bool,
    health_check_up: bool,
    held_out: bool,
    in_flight: usize,
    name: &'a str,
    weight: u32,
}

/// A server's attempts by outcome, keyed by the `outcome` label of
/// `ginx_upstream_attempts_total` (one table of names for both); a
/// `BTreeMap`, so in alphabetical order like every other object here.
type Attempts = BTreeMap<&'static str, u64>;

impl<'a> Status<'a> {
    /// The document for `published` and `table`, as the process is at
    /// `stage`; `drift` comes from [`drift`].
    fn new(published: &'a Published, table: &'a RoutingTable, stage: Stage, drift: bool) -> Self {
        Status {
            binary: published.process.binary.as_deref(),
            config: &published.path,
            drift,
            generation: published.generation,
            last_reload: published.last_attempt.as_ref().map(|attempt| {
                let (result, generation, errors) = match &attempt.outcome {
                    AttemptOutcome::Applied { generation } => ("applied", Some(*generation), &[][..]),
                    AttemptOutcome::Unchanged => ("unchanged", None, &[][..]),
                    AttemptOutcome::Rejected { errors } => ("rejected", None, &errors[..]),
                };
                LastReload {
                    at: unix(attempt.at),
                    errors,
                    generation,
                    result,
                    trigger: trigger_name(attempt.trigger),
                }
            }),
            last_upgrade: published
                .upgrade_failed
                .as_ref()
                .map(|(at, error)| LastUpgrade { at: unix(*at), error }),
            listeners: published
                .listeners
                .iter()
                .map(|l| Listener {
                    address: l.address,
                    bind: l.bind,
                    name: &l.name,
                })
                .collect(),
            loaded_at: unix(published.applied_at),
            pid: std::process::id(),
            replaced_pid: published.process.replaced_pid,
            sources: published.config.sources.iter().map(SourceFile::new).collect(),
            stage: stage_name(stage),
            started_at: unix(published.process.started_at),
            upstreams: published
                .config
                .upstreams
                .values()
                .map(|upstream| Upstream::new(upstream, table.upstream(&upstream.name)))
                .collect(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

impl<'a> SourceFile<'a> {
    fn new(source: &'a config::Source) -> Self {
        SourceFile {
            kind: source_kind_name(source.kind),
            path: &source.path,
            sha256: hex(&Sha256::digest(source.text.as_bytes())),
        }
    }
}

impl<'a> Upstream<'a> {
    /// `upstream` as configured, with the state of `pool`, its runtime
    /// counterpart in the snapshot (absent only if the two disagree).
    fn new(upstream: &'a config::Upstream, pool: Option<&'a Arc<UpstreamPool>>) -> Self {
        let servers = pool
            .into_iter()
            .flat_map(|pool| pool.members())
            .map(|(server, weight, backup)| Server {
                address: server.addr,
                attempts: Outcome::ALL
                    .into_iter()
                    .map(|outcome| (outcome.label(), server.stats.attempts(outcome)))
                    .collect(),
                available: server.is_available(),
                backup,
                health_check_up: server.is_up(),
                held_out: server.is_held_out(),
                in_flight: server.in_flight(),
                name: &server.name,
                weight,
            })
            .collect();
        Upstream {
            balance: upstream.balance.name(),
            health_check: upstream.health_check.is_some(),
            name: &upstream.name,
            retries: pool.map_or(0, |pool| pool.state().retries()),
            servers,
        }
    }
}

/// Whether the files on disk differ from those of the active configuration:
/// a reload failed, or none happened since an edit. Loads them on a
/// blocking thread, so a slow disk stalls this request, not the runtime.
async fn drift(path: &Path, active: &[config::Source]) -> bool {
    let path = path.to_path_buf();
    let on_disk = tokio::task::spawn_blocking(move || match config::load(&path) {
        Ok(config) => config.sources,
        Err(errors) => errors.sources,
    })
    .await;
    match on_disk {
        Ok(on_disk) => on_disk != active,
        Err(_) => true,
    }
}

// === wire names: the values tools compare against, written out rather than
// derived from `Debug`, so renaming a variant cannot change the document ===

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Starting => "starting",
        Stage::Serving => "serving",
        Stage::Draining => "draining",
    }
}

fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::FileEvent => "fileevent",
        Trigger::Signal => "signal",
        Trigger::Poll => "poll",
    }
}

fn source_kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Config => "config",
        SourceKind::Pem => "pem",
    }
}

/// Unix time in float seconds; 0 for a clock set before 1970.
pub(super) fn unix(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{Attempt, ListenerBinding};

    /// Written as declared and re-written through a `serde_json::Value`
    /// (whose maps are sorted): equal only when every object's keys are in
    /// alphabetical order, the document's order since it was a `Value`.
    fn assert_sorted(value: &impl Serialize) -> serde_json::Value {
        let text = serde_json::to_string_pretty(value).unwrap();
        let sorted: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, serde_json::to_string_pretty(&sorted).unwrap());
        sorted
    }

    #[test]
    fn keys_are_in_alphabetical_order_and_names_are_explicit() {
        let main = Path::new("ginx.toml");
        let text = "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\
                    [upstream.app]\nbalance = \"least_conn\"\nservers = [\"127.0.0.1:9001\"]\n";
        let texts = BTreeMap::from([(main.to_path_buf(), text.to_owned())]);
        let config = config::load_from_texts(main, texts).unwrap();
        let mut published = Published::initial(main, Arc::new(config), 1);
        // Whole seconds: a float that survives the text round trip.
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_795_253_378);
        published.applied_at = at;
        published.process.started_at = at;
        published.listeners.push(ListenerBinding {
            name: "web".into(),
            bind: "127.0.0.1:0".parse().unwrap(),
            address: Some("127.0.0.1:18080".parse().unwrap()),
        });
        published.last_attempt = Some(Attempt {
            at,
            trigger: Trigger::FileEvent,
            outcome: AttemptOutcome::Rejected {
                errors: vec!["ginx.toml:1:1: nope".into()],
            },
        });
        let table = RoutingTable::empty();
        let status = assert_sorted(&Status::new(&published, &table, Stage::Serving, true));
        assert_eq!(status["stage"], "serving");
        assert_eq!(status["drift"], true);
        assert_eq!(status["last_reload"]["trigger"], "fileevent");
        assert_eq!(status["last_reload"]["result"], "rejected");
        assert_eq!(status["last_reload"]["generation"], serde_json::Value::Null);
        assert_eq!(status["listeners"][0]["address"], "127.0.0.1:18080");
        assert_eq!(status["sources"][0]["kind"], "config");
        assert_eq!(status["upstreams"][0]["balance"], "least_conn");

        let server = assert_sorted(&Server {
            address: "127.0.0.1:9001".parse().unwrap(),
            attempts: Outcome::ALL.map(|outcome| (outcome.label(), 1)).into(),
            available: true,
            backup: false,
            health_check_up: true,
            held_out: false,
            in_flight: 0,
            name: "127.0.0.1:9001",
            weight: 1,
        });
        let outcomes: Vec<&String> = server["attempts"].as_object().unwrap().keys().collect();
        assert_eq!(outcomes, ["5xx", "connect_error", "ok", "reset", "timeout"]);
    }
}
