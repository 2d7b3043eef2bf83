//! The shape of one configuration file, as written, with spans.
//!
//! Only what toml and serde can check on their own is checked here: table
//! structure, types and unknown keys. Everything that can be reported in bulk
//! (addresses, durations, ranges, references) is kept as written, with its
//! span, for [`super::validate`].
//!
//! The JSON Schema (`ginx schema`) is derived from the same types, so it
//! cannot drift from what is parsed; the words it offers for each choice
//! come from [`super::names`], as validation's do. Skipping an unknown key
//! to parse the rest is [`super::recover`]'s job.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::names;

/// One file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    /// More configuration files: paths or globs, relative to this file.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(crate) include: Vec<Spanned<String>>,
    /// Process-wide settings.
    // Not `Spanned`: toml cannot give a span to a table made of dotted keys
    // (`global.log_level = ...`).
    pub(crate) global: Option<Global>,
    /// Listeners by name: where ginx accepts connections.
    #[serde(default)]
    pub(crate) listener: Named<Listener>,
    /// Upstreams by name: pools of servers requests are forwarded to.
    #[serde(default)]
    pub(crate) upstream: Named<Upstream>,
    /// The admin endpoint (metrics, status, probes, /config). Default bind 127.0.0.1:9901.
    // Not `Spanned`, as `[global]`.
    pub(crate) admin: Option<Admin>,
}

/// `[admin]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Admin {
    /// Address to listen on: IP:PORT, [IPv6]:PORT or localhost:PORT.
    #[schemars(with = "Option<String>")]
    pub(crate) bind: Option<Spanned<String>>,
    /// Allow only these clients (addresses or CIDRs); others get 403. Default: everyone not denied.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Deny these clients (addresses or CIDRs like "10.0.0.0/8"): 403. Checked before `allow`.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) deny: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Only the `include` key of a file, everything else ignored: lets includes be
/// followed even when the rest of the file has a type error.
#[derive(Debug, Deserialize)]
pub(crate) struct IncludesOnly {
    #[serde(default)]
    pub(crate) include: Vec<Spanned<String>>,
}

/// `[global]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Global {
    /// Level of ginx's own log. Default "info".
    #[schemars(extend("enum" = names::LOG_LEVELS))]
    #[schemars(with = "Option<String>")]
    pub(crate) log_level: Option<Spanned<String>>,
    /// Format of ginx's own log (stderr). Default "text".
    #[schemars(extend("enum" = names::LOG_FORMAT.all()))]
    #[schemars(with = "Option<String>")]
    pub(crate) log_format: Option<Spanned<String>>,
    /// One line per request: false (default), true (stdout, text) or { path, format }.
    // Not `Spanned`: the table form may be written `[global.access_log]`.
    pub(crate) access_log: Option<AccessLog>,
    /// After SIGTERM, keep serving this long while /ready answers 503. Default "0s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) shutdown_delay: Option<Spanned<DurationText>>,
    /// Reload when configuration files change. Default true.
    #[schemars(with = "Option<bool>")]
    pub(crate) watch: Option<Spanned<bool>>,
    /// How long a client may leave a response unread before its connection
    /// is closed. Default "60s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) send_timeout: Option<Spanned<DurationText>>,
    /// How long a graceful shutdown waits for in-flight requests. Default "30s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) shutdown_timeout: Option<Spanned<DurationText>>,
    /// How long a client may take to send a request head. Default "30s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) header_read_timeout: Option<Spanned<DurationText>>,
    /// IP:PORT of the DNS server for host names in servers. Default: the system's.
    #[schemars(with = "Option<String>")]
    pub(crate) resolver: Option<Spanned<String>>,
    /// Shortest re-resolution interval. Default "1s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) resolve_min: Option<Spanned<DurationText>>,
    /// Longest re-resolution interval. Default "5m".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) resolve_max: Option<Spanned<DurationText>>,
    /// Longest wait for the next bytes of a client's request body. Default "60s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) body_read_timeout: Option<Spanned<DurationText>>,
    /// Slowest accepted average upload rate, like "1KiB/s", after `body_read_timeout`. Default: none.
    #[schemars(with = "Option<String>")]
    pub(crate) min_upload_rate: Option<Spanned<String>>,

    // Connection limits (issue 11).
    /// Client connections open at once over all listeners; at the limit ginx
    /// stops accepting. Default: (open-files limit - 256) / 2.
    #[schemars(with = "Option<u32>")]
    pub(crate) max_connections: Option<Spanned<i64>>,
    /// File ginx writes its pid to once it serves (relative to this file), rewritten by the process an upgrade starts. Default: none.
    #[schemars(with = "Option<String>")]
    pub(crate) pid_file: Option<Spanned<String>>,
}

/// `[listener.NAME]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    /// Address to listen on: IP:PORT, [IPv6]:PORT or localhost:PORT.
    #[schemars(with = "Option<String>")]
    pub(crate) bind: Option<Spanned<String>>,
    /// Name of the upstream to forward to.
    #[schemars(with = "Option<String>")]
    pub(crate) upstream: Option<Spanned<String>>,
    /// Routes, by host and longest path prefix.
    #[serde(default)]
    #[schemars(with = "Vec<Route>")]
    pub(crate) route: Vec<Spanned<Route>>,
    /// Terminate TLS: { cert, key } or [[listener.NAME.tls.certificates]] entries.
    // Not `Spanned`, as `[global]`.
    pub(crate) tls: Option<ListenerTls>,

    // Connection limits (issue 11).
    /// Client connections open at once on this listener; at the limit it
    /// stops accepting. Default: only [global] max_connections applies.
    #[schemars(with = "Option<u32>")]
    pub(crate) max_connections: Option<Spanned<i64>>,
    /// Client connections open at once from one IP address; more are closed
    /// right after accept. Default: no limit.
    #[schemars(with = "Option<u32>")]
    pub(crate) max_connections_per_ip: Option<Spanned<i64>>,
    /// Requests on one client connection, after which it closes (HTTP/1.1:
    /// `Connection: close`; HTTP/2: GOAWAY). 0: no limit. Default 1000.
    #[schemars(with = "Option<u32>")]
    pub(crate) max_requests_per_connection: Option<Spanned<i64>>,
    // Request limits.
    /// Largest request body, like "10MiB"; larger gets 413. Default: no limit.
    #[schemars(with = "Option<String>")]
    pub(crate) max_request_body: Option<Spanned<String>>,
    /// Most header fields in one request; more gets 431. Default 100.
    #[schemars(with = "Option<i64>")]
    pub(crate) max_request_headers: Option<Spanned<i64>>,
    /// Longest request target (path and query), like "8KiB"; longer gets 414. Default "8KiB".
    #[schemars(with = "Option<String>")]
    pub(crate) max_request_line: Option<Spanned<String>>,
    /// HTTP/2 control frames (PING, SETTINGS, ...) per second before the connection is closed. Default 1000.
    #[schemars(with = "Option<i64>")]
    pub(crate) max_h2_control_frames: Option<Spanned<i64>>,
    /// Largest request head (request line and headers; HTTP/2: the header list), like "32KiB"; larger gets 431. Default "32KiB".
    #[schemars(with = "Option<String>")]
    pub(crate) max_request_head: Option<Spanned<String>>,
    /// HTTP/2 streams one client may have open at once. Default 256.
    #[schemars(with = "Option<i64>")]
    pub(crate) max_h2_streams: Option<Spanned<i64>>,

    // The client address (issue 13).
    /// Peers (addresses or CIDRs like "10.0.0.0/8") whose client_ip_header and PROXY header are believed. Default: none.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    /// The header a trusted proxy puts the client's address in: "X-Forwarded-For" (default), "X-Real-IP", "CF-Connecting-IP"...
    #[schemars(with = "Option<String>")]
    pub(crate) client_ip_header: Option<Spanned<String>>,
    /// Every connection starts with a PROXY protocol header (v1 or v2). Default false.
    #[schemars(with = "Option<bool>")]
    pub(crate) proxy_protocol: Option<Spanned<bool>>,
    /// Allow only these clients (addresses or CIDRs); others get 403. Default: everyone not denied.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Deny these clients (addresses or CIDRs like "10.0.0.0/8"): 403. Checked before `allow`.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) deny: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A listener's `tls`: `cert` and `key`, or `[[...tls.certificates]]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerTls {
    /// Certificate chain PEM file (leaf first), relative to this file.
    #[schemars(with = "Option<String>")]
    pub(crate) cert: Option<Spanned<String>>,
    /// Private key PEM file, relative to this file.
    #[schemars(with = "Option<String>")]
    pub(crate) key: Option<Spanned<String>>,
    /// Several certificates; chosen by server name (SNI).
    #[schemars(with = "Option<Vec<CertificatePair>>")]
    pub(crate) certificates: Option<Vec<Spanned<CertificatePair>>>,
    /// Require client certificates signed by these CAs (PEM file).
    #[schemars(with = "Option<String>")]
    pub(crate) client_ca: Option<Spanned<String>>,
}

/// `[[listener.NAME.tls.certificates]]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificatePair {
    /// Certificate chain PEM file (leaf first), relative to this file.
    #[schemars(with = "String")]
    pub(crate) cert: Spanned<String>,
    /// Private key PEM file, relative to this file.
    #[schemars(with = "String")]
    pub(crate) key: Spanned<String>,
}

/// `[[listener.NAME.route]]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Route {
    /// Host to match: "api.example.com" or "*.example.com". Default: any.
    #[schemars(with = "Option<String>")]
    pub(crate) host: Option<Spanned<String>>,
    /// A path: a route's prefix ("/api/"), a health check's request path, or an access log file.
    #[schemars(with = "Option<String>")]
    pub(crate) path: Option<Spanned<String>>,
    /// Name of the upstream to forward to.
    #[schemars(with = "Option<String>")]
    pub(crate) upstream: Option<Spanned<String>>,
    /// Remove the route's path prefix before forwarding. Default false.
    #[schemars(with = "Option<bool>")]
    pub(crate) strip_prefix: Option<Spanned<bool>>,
    /// Answer directly instead of forwarding.
    pub(crate) respond: Option<Respond>,
    /// Largest request body for this route, like "10MiB"; overrides the listener's.
    #[schemars(with = "Option<String>")]
    pub(crate) max_request_body: Option<Spanned<String>>,
    /// Allow only these clients (addresses or CIDRs); others get 403. Default: everyone not denied.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Deny these clients (addresses or CIDRs like "10.0.0.0/8"): 403. Checked after the listener's.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) deny: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `respond = { status, body, location }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Respond {
    /// HTTP status, 200 to 599.
    #[schemars(with = "i64")]
    pub(crate) status: Spanned<i64>,
    /// Response body. Default empty.
    #[serde(default)]
    pub(crate) body: String,
    /// Location header; {host} and {uri} are replaced.
    #[schemars(with = "Option<String>")]
    pub(crate) location: Option<Spanned<String>>,
}

/// `[upstream.NAME]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Upstream {
    /// How a server is picked. Default "round_robin".
    #[schemars(extend("enum" = names::BALANCE.all()))]
    #[schemars(with = "Option<String>")]
    pub(crate) balance: Option<Spanned<String>>,
    /// With balance = "hash": "client_ip", "uri", "header:NAME" or "cookie:NAME".
    #[schemars(with = "Option<String>")]
    pub(crate) hash: Option<Spanned<String>>,
    /// The servers: "HOST:PORT", "https://HOST[:PORT]" or { addr, weight, backup }.
    #[schemars(with = "Option<Vec<Server>>")]
    pub(crate) servers: Option<Spanned<Vec<Spanned<Server>>>>,
    /// Default "5s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) connect_timeout: Option<Spanned<DurationText>>,
    /// How long to wait for a response header. Default "60s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) read_timeout: Option<Spanned<DurationText>>,
    /// Failures within fail_timeout that hold a server out; 0 never. Default 1.
    #[schemars(with = "Option<i64>")]
    pub(crate) max_fails: Option<Spanned<i64>>,
    /// Failure window and hold-out time. Default "10s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) fail_timeout: Option<Spanned<DurationText>>,
    /// Hold a server out after this many consecutive 5xx. Default off.
    #[schemars(with = "Option<i64>")]
    pub(crate) eject_on_5xx: Option<Spanned<i64>>,
    /// When no server is available. Default "fail".
    #[schemars(extend("enum" = names::ON_ALL_DOWN.all()))]
    #[schemars(with = "Option<String>")]
    pub(crate) on_all_down: Option<Spanned<String>>,
    /// Extra attempts on other servers, 0 to 100. Default 1.
    #[schemars(with = "Option<i64>")]
    pub(crate) retries: Option<Spanned<i64>>,
    /// Failures that are retried. Default ["connect", "reset", "timeout"].
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) retry_on: Option<Spanned<Vec<Spanned<String>>>>,
    /// Also retry POST, PATCH... Default false.
    #[schemars(with = "Option<bool>")]
    pub(crate) retry_non_idempotent: Option<Spanned<bool>>,
    /// Active health checks of every server.
    // Not `Spanned`, as `[global]`.
    pub(crate) health_check: Option<HealthCheck>,
    /// Protocol towards the servers. Default "http1".
    #[schemars(extend("enum" = names::PROTOCOL.all()))]
    #[schemars(with = "Option<String>")]
    pub(crate) protocol: Option<Spanned<String>>,
    /// Trust these CAs (PEM file) for https:// servers instead of the system roots.
    #[schemars(with = "Option<String>")]
    pub(crate) tls_ca: Option<Spanned<String>>,
    /// Name to send (SNI) and verify for https:// servers.
    #[schemars(with = "Option<String>")]
    pub(crate) tls_server_name: Option<Spanned<String>>,
    /// Verify https:// servers' certificates. Default true.
    #[schemars(with = "Option<bool>")]
    pub(crate) tls_verify: Option<Spanned<bool>>,
    /// Idle time after which an upgraded connection (WebSocket) closes. Default "1h".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) tunnel_timeout: Option<Spanned<DurationText>>,
    /// Most idle connections kept open to each server, per worker thread
    /// (0 keeps none). Default 1024.
    #[schemars(with = "Option<u32>")]
    pub(crate) keepalive: Option<Spanned<i64>>,
}

/// `[upstream.NAME.health_check]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheck {
    #[serde(rename = "type")]
    #[schemars(with = "Option<String>")]
    pub(crate) kind: Option<Spanned<String>>,
    /// A path: a route's prefix ("/api/"), a health check's request path, or an access log file.
    #[schemars(with = "Option<String>")]
    pub(crate) path: Option<Spanned<String>>,
    /// Time between checks. Default "5s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) interval: Option<Spanned<DurationText>>,
    /// Time a check may take. Default "1s".
    #[schemars(with = "Option<DurationText>")]
    pub(crate) timeout: Option<Spanned<DurationText>>,
    /// Statuses that pass, like "200" or "200-399". Default "200-399".
    #[schemars(with = "Option<StatusText>")]
    pub(crate) expect_status: Option<Spanned<StatusText>>,
    /// Consecutive successes to mark a server up. Default 2.
    #[schemars(with = "Option<i64>")]
    pub(crate) rise: Option<Spanned<i64>>,
    /// Consecutive failures to mark a server down. Default 3.
    #[schemars(with = "Option<i64>")]
    pub(crate) fall: Option<Spanned<i64>>,
    /// State of a new server until checked. Default "up".
    #[schemars(extend("enum" = names::INITIAL_STATE.all()))]
    #[schemars(with = "Option<String>")]
    pub(crate) initial_state: Option<Spanned<String>>,
}

/// One entry of `servers`: `"HOST:PORT"` or
/// `{ addr = "HOST:PORT", weight = N, backup = BOOL }`.
///
/// Written by hand rather than `#[serde(untagged)]` so that errors inside the
/// table form keep toml's precise message and span.
#[derive(Debug)]
pub(crate) enum Server {
    /// `"HOST:PORT"`; its span is the enclosing `Spanned<Server>`'s.
    Text(String),
    /// `{ addr, weight, backup }`.
    Table {
        addr: Spanned<String>,
        weight: Option<Spanned<i64>>,
        backup: Option<Spanned<bool>>,
    },
}

/// The table form of a server entry.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ServerTable {
    /// "HOST:PORT", "http://HOST[:PORT]" or "https://HOST[:PORT]".
    #[schemars(with = "String")]
    addr: Spanned<String>,
    /// 1 to 1000. Default 1.
    #[schemars(with = "Option<i64>")]
    weight: Option<Spanned<i64>>,
    /// Only used while no primary server is available. Default false.
    #[schemars(with = "Option<bool>")]
    backup: Option<Spanned<bool>>,
}

impl<'de> Deserialize<'de> for Server {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServerVisitor;

        impl<'de> Visitor<'de> for ServerVisitor {
            type Value = Server;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a server address like \"127.0.0.1:9001\" or a table like { addr = \"127.0.0.1:9001\", weight = 2 }",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Server, E> {
                Ok(Server::Text(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Server, A::Error> {
                let t = ServerTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Server::Table {
                    addr: t.addr,
                    weight: t.weight,
                    backup: t.backup,
                })
            }
        }

        deserializer.deserialize_any(ServerVisitor)
    }
}

/// `access_log = true | false | { path = "...", format = "..." }`.
///
/// Written by hand for the same reason as [`Server`].
#[derive(Debug)]
pub(crate) enum AccessLog {
    /// `true` or `false`.
    Switch(bool),
    /// `{ path, format }`: on.
    Table {
        path: Option<Spanned<String>>,
        format: Option<Spanned<String>>,
    },
}

/// The table form of `access_log`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AccessLogTable {
    /// A path: a route's prefix ("/api/"), a health check's request path, or an access log file.
    #[schemars(with = "Option<String>")]
    path: Option<Spanned<String>>,
    /// Access log line format. Default "combined".
    #[schemars(extend("enum" = names::ACCESS_LOG_FORMAT.all()))]
    #[schemars(with = "Option<String>")]
    format: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for AccessLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AccessLogVisitor;

        impl<'de> Visitor<'de> for AccessLogVisitor {
            type Value = AccessLog;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a table like { path = \"access.log\", format = \"combined\" }")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AccessLog, E> {
                Ok(AccessLog::Switch(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AccessLog, A::Error> {
                let t = AccessLogTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(AccessLog::Table {
                    path: t.path,
                    format: t.format,
                })
            }
        }

        deserializer.deserialize_any(AccessLogVisitor)
    }
}

/// A duration as written. Numbers are accepted here (kept as their text) so
/// that `connect_timeout = 5` gets the same helpful message as a bad string.
#[derive(Debug)]
pub(crate) struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"250ms\", \"5s\" or \"2m\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

/// `expect_status` as written. A bare number (`expect_status = 204`) is kept
/// too, so that it gets a message saying to quote it rather than a type error.
#[derive(Debug)]
pub(crate) struct StatusText {
    /// The text, or the number's digits.
    pub(crate) text: String,
    /// False when written as a toml integer.
    pub(crate) quoted: bool,
}

impl<'de> Deserialize<'de> for StatusText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusVisitor;

        impl Visitor<'_> for StatusVisitor {
            type Value = StatusText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code or range as a string, like \"200\" or \"200-399\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusText, E> {
                Ok(StatusText {
                    text: v.to_owned(),
                    quoted: true,
                })
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusText, E> {
                Ok(StatusText {
                    text: v.to_string(),
                    quoted: false,
                })
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusText, E> {
                Ok(StatusText {
                    text: v.to_string(),
                    quoted: false,
                })
            }
        }

        deserializer.deserialize_any(StatusVisitor)
    }
}

/// A table of named tables (`[listener.NAME]`), in file order. Only the names
/// carry a span: toml cannot give one to a table made of dotted keys
/// (`listener.web.bind = ...`).
#[derive(Debug)]
pub(crate) struct Named<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedVisitor<T> {
            type Value = Named<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of named tables")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, T>()? {
                    entries.push(entry);
                }
                entries.sort_by_key(|(k, _)| k.span().start);
                Ok(Named(entries))
            }
        }

        deserializer.deserialize_map(NamedVisitor(PhantomData))
    }
}

// === JSON Schema for the hand-written forms ===
//
// `ginx schema` describes what a file may contain for editors (Taplo, Even
// Better TOML). Types with their own `Deserialize` describe themselves here,
// accepting the same forms as their visitors.

impl JsonSchema for Server {
    fn schema_name() -> Cow<'static, str> {
        "Server".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let table = generator.subschema_for::<ServerTable>();
        json_schema!({
            "description": "A server: \"HOST:PORT\", \"http://HOST[:PORT]\" or \"https://HOST[:PORT]\", or a table { addr, weight, backup }.",
            "anyOf": [
                { "type": "string", "examples": ["127.0.0.1:9001", "https://api.internal:8443"] },
                table
            ]
        })
    }
}

impl JsonSchema for AccessLog {
    fn schema_name() -> Cow<'static, str> {
        "AccessLog".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let table = generator.subschema_for::<AccessLogTable>();
        json_schema!({
            "description": "One line per request: false (default), true (stdout, text format) or { path, format }.",
            "anyOf": [{ "type": "boolean" }, table]
        })
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a number with a unit (ms, s, m, h), like \"250ms\", \"5s\" or \"1m 30s\".",
            "pattern": "^\\s*[0-9]+\\s*[a-zA-Zµ]+(\\s*[0-9]+\\s*[a-zA-Zµ]+)*\\s*$",
            "examples": ["250ms", "5s", "2m"]
        })
    }
}

impl JsonSchema for StatusText {
    fn schema_name() -> Cow<'static, str> {
        "StatusRange".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A status code or an inclusive range, each 100 to 599, as a string.",
            "pattern": "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$",
            "examples": ["200", "200-399"]
        })
    }
}

impl<T: JsonSchema> JsonSchema for Named<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Named{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<T>();
        json_schema!({
            "type": "object",
            "description": "Tables by name: [KIND.NAME].",
            "additionalProperties": value
        })
    }
}

/// The JSON Schema of a configuration file, for editors.
pub(crate) fn schema() -> Schema {
    let mut schema = schemars::schema_for!(File);
    schema.insert("title".into(), "ginx configuration file".into());
    schema
}

/// Parse one file's text. The error is toml's own (syntax, type, unknown key).
pub(crate) fn parse(text: &str) -> Result<File, toml::de::Error> {
    toml::from_str(text)
}

/// The `include` entries of a file whose full parse may have failed.
pub(crate) fn includes(text: &str) -> Vec<Spanned<String>> {
    toml::from_str::<IncludesOnly>(text).map_or_else(|_| Vec::new(), |f| f.include)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_entry_forms() {
        let text = "[upstream.a]\nservers = [\"127.0.0.1:1\", { addr = \"h:2\", weight = 3 }]\n";
        let f = parse(text).unwrap();
        let (name, up) = &f.upstream.0[0];
        assert_eq!(name.get_ref(), "a");
        let servers = up.servers.as_ref().unwrap().get_ref();
        assert!(matches!(servers[0].get_ref(), Server::Text(t) if t == "127.0.0.1:1"));
        assert_eq!(&text[servers[0].span()], "\"127.0.0.1:1\"");
        let Server::Table { addr, weight, backup } = servers[1].get_ref() else {
            panic!("table form expected");
        };
        assert_eq!(addr.get_ref(), "h:2");
        assert_eq!(&text[addr.span()], "\"h:2\"");
        assert_eq!(*weight.as_ref().unwrap().get_ref(), 3);
        assert!(backup.is_none());
    }

    #[test]
    fn server_table_unknown_key_is_located() {
        let text = "[upstream.a]\nservers = [{ addr = \"h:2\", wieght = 3 }]\n";
        let e = parse(text).unwrap_err();
        assert_eq!(&text[e.span().unwrap()], "wieght");
        assert!(
            e.message().starts_with("unknown field `wieght`"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn server_entry_wrong_type() {
        let text = "[upstream.a]\nservers = [9001]\n";
        let e = parse(text).unwrap_err();
        assert_eq!(&text[e.span().unwrap()], "9001");
        assert!(e.message().contains("a server address like"), "{}", e.message());
    }

    #[test]
    fn named_tables_keep_file_order() {
        let text = "[listener.z]\nbind = \"a\"\n[listener.a]\nbind = \"b\"\n";
        let f = parse(text).unwrap();
        let names: Vec<_> = f.listener.0.iter().map(|(k, _)| k.get_ref().as_str()).collect();
        assert_eq!(names, ["z", "a"]);
    }

    #[test]
    fn includes_survive_a_type_error_elsewhere() {
        let text = "include = [\"x/*.toml\"]\n[listener.a]\nbind = 80\n";
        assert!(parse(text).is_err());
        let inc = includes(text);
        assert_eq!(inc.len(), 1);
        assert_eq!(inc[0].get_ref(), "x/*.toml");
    }
}
