//! The shape of one configuration file, as written, with spans.
//!
//! Only what toml and serde can check on their own is checked here: table
//! structure, types and unknown keys. Everything that can be reported in bulk
//! (addresses, durations, ranges, references) is kept as written, with its
//! span, for [`super::validate`].

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

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
    #[schemars(extend("enum" = ["trace", "debug", "info", "warn", "error"]))]
    #[schemars(with = "Option<String>")]
    pub(crate) log_level: Option<Spanned<String>>,
    /// Format of ginx's own log (stderr). Default "text".
    #[schemars(extend("enum" = ["text", "json"]))]
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
    #[schemars(extend("enum" = ["round_robin", "weighted_round_robin", "least_conn", "random", "hash"]))]
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
    #[schemars(extend("enum" = ["fail", "try_all"]))]
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
    #[schemars(extend("enum" = ["http1", "h2", "h2c"]))]
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
    #[schemars(extend("enum" = ["up", "down"]))]
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
    #[schemars(extend("enum" = ["combined", "json", "text"]))]
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

/// Whether `e` is an unknown key rejected by `deny_unknown_fields`, with
/// the key's position: one that [`blank_entry`] may be able to skip.
pub(crate) fn is_unknown_field(e: &toml::de::Error) -> bool {
    e.message().starts_with("unknown field `") && e.span().is_some()
}

/// `text` with the whole `key = value` entry whose key starts at byte `key`
/// replaced by spaces, line breaks kept: every other byte keeps its offset,
/// so every other line and column stays the same. `key` may be any part of a
/// dotted key (`global.log_levl = ...`); in an inline table the entry's comma
/// goes too.
///
/// `None` when the entry cannot be delimited safely: a table header
/// (`[global.foo]`, `[[listener.web.rout]]`), a shape not understood, or a
/// result that toml does not accept as a document (`text` itself must be a
/// valid document, as it is after any error other than a syntax error).
pub(crate) fn blank_entry(text: &str, key: usize) -> Option<String> {
    let b = text.as_bytes();
    let (start, before) = entry_start(b, key)?;
    // The key, dot by dot, then `=`.
    let mut i = start;
    loop {
        i = skip_blank(b, key_end(b, i)?);
        match b.get(i) {
            Some(b'.') => i = skip_blank(b, i + 1),
            Some(b'=') => break,
            _ => return None,
        }
    }
    let value_start = skip_blank(b, i + 1);
    let value_end = value_end(b, value_start)?;
    // The value on its own must be one, so that a scan stopping early is not
    // taken for the end.
    let value = text.get(value_start..value_end)?;
    toml::from_str::<de::IgnoredAny>(&format!("v = {value}")).ok()?;
    let range = match before {
        Before::LineStart => start..value_end,
        Before::Open | Before::Comma(_) => {
            let after = skip_blank(b, value_end);
            match (b.get(after), before) {
                (Some(b','), _) => start..after + 1,
                (Some(b'}'), Before::Comma(comma)) => comma..value_end,
                (Some(b'}'), _) => start..value_end,
                _ => return None,
            }
        }
    };
    let mut out = b.to_vec();
    for byte in &mut out[range] {
        if *byte != b'\n' && *byte != b'\r' {
            *byte = b' ';
        }
    }
    let out = String::from_utf8(out).ok()?;
    toml::from_str::<de::IgnoredAny>(&out).ok()?;
    Some(out)
}

/// What comes before an entry.
#[derive(Clone, Copy)]
enum Before {
    /// The start of a line: an entry of a table.
    LineStart,
    /// The `{` of an inline table: its first entry.
    Open,
    /// The `,` at this offset: a later entry of an inline table.
    Comma(usize),
}

/// Where the (possibly dotted) key that has a part starting at `key` starts,
/// and what comes before it. `None` in a table header.
fn entry_start(b: &[u8], key: usize) -> Option<(usize, Before)> {
    let mut start = key;
    loop {
        let i = skip_blank_back(b, start);
        if i > 0 && b[i - 1] == b'.' {
            start = key_start_back(b, skip_blank_back(b, i - 1))?;
            continue;
        }
        let before = match i.checked_sub(1).map(|j| b[j]) {
            None | Some(b'\n') => Before::LineStart,
            Some(b'{') => Before::Open,
            Some(b',') => Before::Comma(i - 1),
            _ => return None,
        };
        return Some((start, before));
    }
}

fn is_bare_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Spaces and tabs from `i` on.
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// Spaces and tabs before `i`.
fn skip_blank_back(b: &[u8], mut i: usize) -> usize {
    while i > 0 && matches!(b[i - 1], b' ' | b'\t') {
        i -= 1;
    }
    i
}

/// Spaces, tabs, line breaks and comments from `i` on (inside an array).
fn skip_space(b: &[u8], mut i: usize) -> usize {
    loop {
        match b.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'#') => {
                while !matches!(b.get(i), None | Some(b'\n')) {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// The end of one key part (bare or quoted) starting at `i`.
fn key_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' | b'\'' => quoted_end(b, i),
        _ => {
            let mut j = i;
            while b.get(j).is_some_and(|c| is_bare_key_byte(*c)) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The start of the key part (bare or quoted) that ends at `end`.
fn key_start_back(b: &[u8], end: usize) -> Option<usize> {
    let last = *b.get(end.checked_sub(1)?)?;
    if last == b'"' || last == b'\'' {
        let mut j = end - 1;
        loop {
            j = j.checked_sub(1)?;
            match b[j] {
                b'\n' => return None,
                c if c == last => {
                    let escapes = b[..j].iter().rev().take_while(|c| **c == b'\\').count();
                    if last == b'\'' || escapes % 2 == 0 {
                        // `j` must open a string that ends at `end`.
                        return (quoted_end(b, j) == Some(end)).then_some(j);
                    }
                }
                _ => {}
            }
        }
    }
    let mut j = end;
    while j > 0 && is_bare_key_byte(b[j - 1]) {
        j -= 1;
    }
    (j < end).then_some(j)
}

/// The end of the one-line string (basic or literal) opening at `i`.
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'\n' => return None,
            b'\\' if quote == b'"' => j += 2,
            c if c == quote => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end of the multi-line string (`"""` or `'''`) opening at `i`.
fn multiline_end(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    let delimiter = [quote; 3];
    let mut j = i + 3;
    loop {
        let rest = b.get(j..)?;
        if quote == b'"' && rest.first() == Some(&b'\\') {
            j += 2;
        } else if rest.starts_with(&delimiter) {
            // Up to two quotes just before the delimiter belong to the text.
            let mut end = j + 3;
            while end < j + 5 && b.get(end) == Some(&quote) {
                end += 1;
            }
            return Some(end);
        } else if rest.is_empty() {
            return None;
        } else {
            j += 1;
        }
    }
}

/// The end of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        q @ (b'"' | b'\'') if b.get(i..i + 3) == Some(&[q; 3]) => multiline_end(b, i),
        b'"' | b'\'' => quoted_end(b, i),
        b'[' => {
            let mut j = skip_space(b, i + 1);
            loop {
                if b.get(j) == Some(&b']') {
                    return Some(j + 1);
                }
                j = skip_space(b, value_end(b, j)?);
                match b.get(j)? {
                    b',' => j = skip_space(b, j + 1),
                    b']' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b'{' => {
            let mut j = skip_blank(b, i + 1);
            if b.get(j) == Some(&b'}') {
                return Some(j + 1);
            }
            loop {
                j = skip_blank(b, key_end(b, j)?);
                match b.get(j)? {
                    b'.' => {
                        j = skip_blank(b, j + 1);
                        continue;
                    }
                    b'=' => {}
                    _ => return None,
                }
                j = skip_blank(b, value_end(b, skip_blank(b, j + 1))?);
                match b.get(j)? {
                    b',' => j = skip_blank(b, j + 1),
                    b'}' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        _ => {
            let scalar = |mut j: usize| {
                while b
                    .get(j)
                    .is_some_and(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}' | b'#'))
                {
                    j += 1;
                }
                j
            };
            let mut j = scalar(i);
            // A date and a time may be separated by a space.
            let is_date = j == i + 10 && b[i..j].iter().filter(|c| **c == b'-').count() == 2;
            if is_date && b.get(j) == Some(&b' ') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j = scalar(j + 1);
            }
            (j > i).then_some(j)
        }
    }
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

    /// `text` blanked at the key `key` (its first occurrence), spaces shown
    /// as `.` except in `text` itself.
    fn blanked(text: &str, key: &str) -> Option<String> {
        let at = text.find(key).unwrap();
        let out = blank_entry(text, at)?;
        assert_eq!(out.len(), text.len());
        assert_eq!(out.matches('\n').count(), text.matches('\n').count());
        Some(out)
    }

    #[test]
    fn blank_entry_shapes() {
        // Simple, dotted (error on any part), trailing comment kept.
        assert_eq!(
            blanked("a = 1\nbad = \"x\" # c\nb = 2\n", "bad").unwrap(),
            "a = 1\n          # c\nb = 2\n"
        );
        assert_eq!(
            blanked("[g]\nx = 1\n\"q\" . bad = 'x'\n", "bad").unwrap(),
            "[g]\nx = 1\n               \n"
        );
        assert_eq!(blanked("g.bad.c = 1\n", "bad").unwrap(), "           \n");
        // Multi-line array with comments, brackets in strings and comments.
        assert_eq!(
            blanked("bad = [\n  \"]\", # ]\n  [1, 2],\n]\nok = 1\n", "bad").unwrap(),
            "       \n          \n         \n \nok = 1\n"
        );
        // Multi-line strings.
        assert_eq!(
            blanked("bad = \"\"\"\na \\\"\"\" \"\"\"\"\nok = 1\n", "bad").unwrap(),
            "         \n           \nok = 1\n"
        );
        assert_eq!(
            blanked("bad = '''\n]''''\nok = 1\n", "bad").unwrap(),
            "         \n     \nok = 1\n"
        );
        // A date-time with a space.
        assert_eq!(
            blanked("bad = 1979-05-27 07:32:00Z\nok = 1\n", "bad").unwrap(),
            "                          \nok = 1\n"
        );
        // Inline tables: the comma goes with the entry.
        assert_eq!(
            blanked("t = { a = 1, bad = [2, 3], c = 3 }\n", "bad").unwrap(),
            "t = { a = 1,               c = 3 }\n"
        );
        assert_eq!(
            blanked("t = { bad = { x = 1 }, c = 3 }\n", "bad").unwrap(),
            "t = {                  c = 3 }\n"
        );
        assert_eq!(
            blanked("t = { a = 1, bad = 2 }\n", "bad").unwrap(),
            "t = { a = 1          }\n"
        );
        assert_eq!(
            blanked("t = [{ bad = 2 }]\n", "bad").unwrap(),
            "t = [{         }]\n"
        );
    }

    #[test]
    fn blank_entry_refuses_headers() {
        assert_eq!(blanked("[g.bad]\nx = 1\n", "bad"), None);
        assert_eq!(blanked("[[g . bad]]\nx = 1\n", "bad"), None);
        assert_eq!(blanked("[bad]\nx = 1\n", "bad"), None);
    }

    #[test]
    fn unknown_keys_are_skipped_one_by_one() {
        let text = "[listener.a]\nbnd = \"x\"\nroute = [{ pth = \"/\", upstream = \"u\" }]\n";
        let e = parse(text).unwrap_err();
        assert!(is_unknown_field(&e));
        let text = blank_entry(text, e.span().unwrap().start).unwrap();
        let e = parse(&text).unwrap_err();
        assert!(is_unknown_field(&e));
        assert_eq!(&text[e.span().unwrap()], "pth");
        let text = blank_entry(&text, e.span().unwrap().start).unwrap();
        let f = parse(&text).unwrap();
        let route = f.listener.0[0].1.route[0].get_ref();
        assert_eq!(route.upstream.as_ref().unwrap().get_ref(), "u");
        // Other errors are not unknown keys.
        let e = parse("[listener.a]\nbind = 1\n").unwrap_err();
        assert!(!is_unknown_field(&e));
    }
}
