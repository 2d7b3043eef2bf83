//! The shape of one configuration file, as written, with spans.
//!
//! Only what toml and serde can check on their own is checked here: table
//! structure, types and unknown keys. Everything that can be reported in bulk
//! (addresses, durations, ranges, references) is kept as written, with its
//! span, for [`super::validate`].

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// One file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    /// `include = ["glob", ...]`.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// `[global]`. Not `Spanned`: toml cannot give a span to a table made
    /// of dotted keys (`global.log_level = ...`).
    pub global: Option<Global>,
    /// `[listener.NAME]` tables, in file order.
    #[serde(default)]
    pub listener: Named<Listener>,
    /// `[upstream.NAME]` tables, in file order.
    #[serde(default)]
    pub upstream: Named<Upstream>,
    /// `[admin]`. Not `Spanned`, as `[global]`.
    pub admin: Option<Admin>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Admin {
    pub bind: Option<Spanned<String>>,
}

/// Only the `include` key of a file, everything else ignored: lets includes be
/// followed even when the rest of the file has a type error.
#[derive(Debug, Deserialize)]
pub(crate) struct IncludesOnly {
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
}

/// `[global]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Global {
    pub log_level: Option<Spanned<String>>,
    pub log_format: Option<Spanned<String>>,
    /// Not `Spanned`: the table form may be written `[global.access_log]`.
    pub access_log: Option<AccessLog>,
    pub shutdown_delay: Option<Spanned<DurationText>>,
    pub watch: Option<Spanned<bool>>,
    pub shutdown_timeout: Option<Spanned<DurationText>>,
    pub header_read_timeout: Option<Spanned<DurationText>>,
    pub resolver: Option<Spanned<String>>,
    pub resolve_min: Option<Spanned<DurationText>>,
    pub resolve_max: Option<Spanned<DurationText>>,
}

/// `[listener.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    pub bind: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    #[serde(default)]
    pub route: Vec<Spanned<Route>>,
    /// `tls = { ... }` or `[listener.NAME.tls]`. Not `Spanned`, as `[global]`.
    pub tls: Option<ListenerTls>,
}

/// A listener's `tls`: `cert` and `key`, or `[[...tls.certificates]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerTls {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub certificates: Option<Vec<Spanned<CertificatePair>>>,
    pub client_ca: Option<Spanned<String>>,
}

/// `[[listener.NAME.tls.certificates]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificatePair {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `[[listener.NAME.route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Route {
    pub host: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    pub strip_prefix: Option<Spanned<bool>>,
    pub respond: Option<Respond>,
}

/// `respond = { status, body, location }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Respond {
    pub status: Spanned<i64>,
    #[serde(default)]
    pub body: String,
    pub location: Option<Spanned<String>>,
}

/// `[upstream.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Upstream {
    pub balance: Option<Spanned<String>>,
    pub hash: Option<Spanned<String>>,
    pub servers: Option<Spanned<Vec<Spanned<Server>>>>,
    pub connect_timeout: Option<Spanned<DurationText>>,
    pub read_timeout: Option<Spanned<DurationText>>,
    pub max_fails: Option<Spanned<i64>>,
    pub fail_timeout: Option<Spanned<DurationText>>,
    pub eject_on_5xx: Option<Spanned<i64>>,
    pub on_all_down: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub retry_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub retry_non_idempotent: Option<Spanned<bool>>,
    /// `[upstream.NAME.health_check]`. Not `Spanned`, as `[global]`.
    pub health_check: Option<HealthCheck>,
    pub protocol: Option<Spanned<String>>,
    pub tls_ca: Option<Spanned<String>>,
    pub tls_server_name: Option<Spanned<String>>,
    pub tls_verify: Option<Spanned<bool>>,
    pub tunnel_timeout: Option<Spanned<DurationText>>,
}

/// `[upstream.NAME.health_check]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub interval: Option<Spanned<DurationText>>,
    pub timeout: Option<Spanned<DurationText>>,
    pub expect_status: Option<Spanned<StatusText>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub initial_state: Option<Spanned<String>>,
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerTable {
    addr: Spanned<String>,
    weight: Option<Spanned<i64>>,
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogTable {
    path: Option<Spanned<String>>,
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
    pub text: String,
    /// False when written as a toml integer.
    pub quoted: bool,
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
