//! The fallible half of building a table: every rustls configuration the
//! configuration needs, built before anything changes.
//!
//! A reload is load and validate → prepare (this, and binding listeners,
//! opening the access log) → build → swap → commit. Everything that can fail
//! after validation happens by the end of prepare, so [`super::RoutingTable::build`]
//! cannot fail and a bad TLS setup rejects the reload (the old configuration
//! keeps serving) instead of refusing every connection or answering 502 on
//! every request. This module owns building and reusing the rustls
//! configurations; which connection uses which is [`crate::server`]'s and
//! [`crate::upstream`]'s business.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

use super::RoutingTable;
use crate::config::{
    self, Config, Endpoint, ListenerTls, Location, SourceKind, UpstreamProtocol, UpstreamTls,
};
use crate::upstream::TlsTarget;

/// The rustls configurations of one configuration, by listener and
/// upstream name. Cheap to clone (the configurations are shared): a table
/// keeps the one it was built with, so a rebuild for new DNS answers builds
/// nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prepared {
    /// Every TLS listener's server configuration.
    listeners: HashMap<String, Listener>,
    /// Every upstream with an `https://` server: its client configuration
    /// and the name each of those servers is verified against.
    upstreams: HashMap<String, Upstream>,
}

/// A TLS listener's configuration and the settings it was built from.
#[derive(Debug, Clone)]
struct Listener {
    settings: ListenerTls,
    config: Arc<ServerConfig>,
}

/// An upstream's TLS client and the settings it was built from.
#[derive(Debug, Clone)]
struct Upstream {
    /// The ALPN offered follows the protocol.
    protocol: UpstreamProtocol,
    settings: UpstreamTls,
    config: Arc<ClientConfig>,
    /// `https://` server as written → the name sent and verified.
    names: HashMap<String, ServerName<'static>>,
}

impl Prepared {
    /// The server configuration of listener `name`, if it speaks TLS.
    pub(crate) fn server_config(&self, listener: &str) -> Option<&Arc<ServerConfig>> {
        self.listeners.get(listener).map(|l| &l.config)
    }

    /// How to reach server `server` (as written) of `upstream`, if it is
    /// an `https://` server.
    pub(crate) fn tls_target(&self, upstream: &str, server: &str) -> Option<TlsTarget> {
        let prepared = self.upstreams.get(upstream)?;
        Some(TlsTarget {
            config: prepared.config.clone(),
            name: prepared.names.get(server)?.clone(),
        })
    }
}

/// Build every rustls configuration `config` needs, reusing those of the
/// `running` table whose settings are unchanged (so an unrelated reload
/// builds none, and TLS sessions survive it).
///
/// # Errors
///
/// Every listener whose certificates or `client_ca` rustls refuses, and
/// every upstream whose TLS client cannot be built (a `tls_ca` without a
/// usable CA, no system roots), each located at its `[listener.NAME]` or
/// `[upstream.NAME]` table. Nothing has changed then: the running table
/// keeps serving.
pub(crate) fn prepare(config: &Config, running: Option<&RoutingTable>) -> Result<Prepared, config::Errors> {
    let previous = running.map(|table| &table.prepared);
    let mut prepared = Prepared::default();
    let mut errors = Vec::new();
    for listener in config.listeners.values() {
        let Some(tls) = &listener.tls else { continue };
        let name = &listener.name;
        let reused = previous
            .and_then(|p| p.listeners.get(name))
            .filter(|l| l.settings == *tls)
            .map(|l| l.config.clone());
        match reused.map_or_else(|| crate::tls::server_config(tls), Ok) {
            Ok(built) => {
                let listener = Listener {
                    settings: tls.clone(),
                    config: built,
                };
                prepared.listeners.insert(name.clone(), listener);
            }
            Err(error) => errors.push(located(
                config,
                config.defined_at.listeners.get(name),
                format!("listener `{name}`: TLS: {error}: check its certificate, key and client_ca files"),
            )),
        }
    }
    for upstream in config.upstreams.values() {
        match prepare_upstream(upstream, previous) {
            Ok(Some(built)) => {
                prepared.upstreams.insert(upstream.name.clone(), built);
            }
            Ok(None) => {}
            Err(message) => errors.push(located(
                config,
                config.defined_at.upstreams.get(&upstream.name),
                format!("upstream `{}`: {message}", upstream.name),
            )),
        }
    }
    if errors.is_empty() {
        return Ok(prepared);
    }
    let file_order: Vec<_> = config
        .sources
        .iter()
        .filter(|s| s.kind == SourceKind::Config)
        .map(|s| s.path.clone())
        .collect();
    Err(config::Errors::new(errors, config.sources.clone(), &file_order))
}

/// The TLS client of `upstream` if it has `https://` servers, reusing the
/// `previous` one built from the same settings.
fn prepare_upstream(
    upstream: &config::Upstream,
    previous: Option<&Prepared>,
) -> Result<Option<Upstream>, String> {
    let https: Vec<_> = upstream.servers.iter().filter(|s| s.tls).collect();
    if https.is_empty() {
        return Ok(None);
    }
    let (protocol, settings) = (upstream.protocol, &upstream.tls);
    let reused = previous
        .and_then(|p| p.upstreams.get(&upstream.name))
        .filter(|u| u.protocol == protocol && u.settings == *settings)
        .map(|u| u.config.clone());
    let config = match reused {
        Some(config) => config,
        None => crate::tls::client_config(settings, crate::upstream::alpn(protocol))
            .map_err(|e| format!("TLS client: {e}: check tls_ca, or the system's CA certificates"))?,
    };
    let mut names = HashMap::new();
    for server in https {
        let host = match &server.endpoint {
            Endpoint::Ip(addr) => addr.ip().to_string(),
            Endpoint::Dns { host, .. } => host.clone(),
        };
        let name =
            crate::tls::server_name(settings, &host).map_err(|e| format!("server `{}`: {e}", server.name))?;
        names.insert(server.name.clone(), name);
    }
    Ok(Some(Upstream {
        protocol,
        settings: settings.clone(),
        config,
        names,
    }))
}

/// `message` at `at`, the table that defines what failed (validation
/// records one for every listener and upstream; the main file otherwise).
fn located(config: &Config, at: Option<&Location>, message: String) -> config::Error {
    match at {
        Some(location) => config::Error::located(location.clone(), 0, message),
        None => {
            let main = config.sources.first().map(|s| s.path.clone()).unwrap_or_default();
            config::Error::file(&main, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dns::Resolved;

    /// A TLS listener `web` and an `https://` upstream `app` (plus
    /// `extra` settings of it), with the certificate files in `dir`.
    fn config(dir: &std::path::Path, extra: &str) -> Config {
        let main = format!(
            "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\
             tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\n\
             [upstream.app]\nservers = [\"https://127.0.0.1:9\"]\ntls_verify = false\n{extra}"
        );
        let path = dir.join("ginx.toml");
        config::load_from_texts(&path, BTreeMap::from([(path.clone(), main)])).unwrap()
    }

    fn client(prepared: &Prepared) -> Arc<ClientConfig> {
        prepared.tls_target("app", "127.0.0.1:9").unwrap().config
    }

    #[test]
    fn unchanged_settings_reuse_the_running_tables_configs() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let first = config(dir.path(), "");
        let prepared = prepare(&first, None).unwrap();
        let table = RoutingTable::build(&first, prepared, None, &Resolved::default(), None, 1);
        let running = table.prepared();

        // A change unrelated to TLS builds nothing.
        let retries = prepare(&config(dir.path(), "retries = 2\n"), Some(&table)).unwrap();
        let web = |p: &Prepared| p.server_config("web").unwrap().clone();
        assert!(Arc::ptr_eq(&web(&retries), &web(running)));
        assert!(Arc::ptr_eq(&client(&retries), &client(running)));

        // Another protocol offers another ALPN: a new client, same listener.
        let h2 = prepare(&config(dir.path(), "protocol = \"h2\"\n"), Some(&table)).unwrap();
        assert!(!Arc::ptr_eq(&client(&h2), &client(running)));
        assert_eq!(client(&h2).alpn_protocols, [b"h2".to_vec()]);
        assert!(Arc::ptr_eq(&web(&h2), &web(running)));
    }
}
