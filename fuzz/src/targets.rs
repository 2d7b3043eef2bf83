//! The bodies of the fuzz targets: bytes in, a panic only on a bug.
//!
//! `config_bytes` and `headers` hand the bytes to `ginx::fuzzing` as they
//! are. `config_toml` and `routing` are structure-aware: the bytes drive
//! [`arbitrary::Unstructured`] through a grammar of ginx's real keys, so
//! that most inputs get past the TOML parser into validation and the
//! table. `routing` also holds the reference router, written from
//! docs/configuration.md section 5, not from `src/table/route.rs`.
//!
//! This file is included by `tests/fuzz_corpus.rs` as well as by the fuzz
//! crate: it must not use anything but `ginx`, `arbitrary` and `http`.

use arbitrary::{Result, Unstructured};
use ginx::fuzzing::{self, Routed};

/// Arbitrary bytes as the main configuration file.
pub fn config_bytes(data: &[u8]) {
    fuzzing::config_bytes(data);
}

/// Arbitrary bytes as a request head and a response head.
pub fn headers(data: &[u8]) {
    fuzzing::headers(data);
}

/// A configuration file made from ginx's keys with random values.
/// Returns whether ginx accepted it (and built it into a table).
pub fn config_toml(data: &[u8]) -> bool {
    let mut u = Unstructured::new(data);
    document(&mut u).is_ok_and(|text| fuzzing::config_text(&text))
}

/// A valid configuration and requests: ginx routes each as the reference
/// does. Returns whether any request was compared (not refused by hyper).
pub fn routing(data: &[u8]) -> bool {
    let mut u = Unstructured::new(data);
    let Ok(case) = RoutingCase::new(&mut u) else {
        return false;
    };
    let mut compared = false;
    let config = case.config();
    for (host, target) in &case.requests {
        let got = fuzzing::route(&config, "web", host.as_deref(), target)
            .unwrap_or_else(|e| panic!("a valid configuration was rejected: {e}\n{config}"));
        if got == Routed::BadRequest {
            continue;
        }
        compared = true;
        let want = case.reference(host.as_deref(), target);
        assert_eq!(
            got,
            want,
            "host {:?}, target {:?}\n{config}",
            host.as_deref().map(String::from_utf8_lossy),
            String::from_utf8_lossy(target)
        );
    }
    compared
}

// ---------------------------------------------------------------------
// The configuration grammar.

/// A TOML value, written out.
type Gen = fn(&mut Unstructured<'_>) -> Result<String>;

const NAMES: &[&str] = &["web", "app", "api", "a", "b", "\"x.y\"", "\"\"", "Web"];

const GLOBAL: &[(&str, Gen)] = &[
    ("log_level", |u| {
        pick(u, &["info", "debug", "warn", "error", "trace", "loud", ""])
    }),
    ("log_format", |u| pick(u, &["text", "json", "xml"])),
    ("access_log", access_log),
    ("shutdown_delay", duration),
    ("watch", boolean),
    ("send_timeout", duration),
    ("shutdown_timeout", duration),
    ("header_read_timeout", duration),
    ("resolver", |u| {
        pick(
            u,
            &[
                "127.0.0.53:53",
                "[::1]:53",
                "localhost:53",
                "1.2.3.4",
                "127.0.0.1:0",
            ],
        )
    }),
    ("resolve_min", duration),
    ("resolve_max", duration),
    ("body_read_timeout", duration),
    ("min_upload_rate", |u| {
        pick(
            u,
            &[
                "1KiB/s",
                "500B/s",
                "0B/s",
                "1KiB",
                "2MB/s",
                "99999999999999GB/s",
                "-1B/s",
                "1.5kB/s",
            ],
        )
    }),
];

const ADMIN: &[(&str, Gen)] = &[("bind", address)];

const LISTENER: &[(&str, Gen)] = &[
    ("bind", address),
    ("upstream", name),
    ("tls", |u| {
        pick_raw(
            u,
            &[
                "{ cert = \"cert.pem\", key = \"key.pem\" }",
                "{ certificates = [{ cert = \"a.pem\", key = \"a.key\" }], client_ca = \"ca.pem\" }",
                "{ cert = \"cert.pem\" }",
                "{}",
            ],
        )
    }),
];

const ROUTE: &[(&str, Gen)] = &[
    ("host", |u| {
        pick(
            u,
            &[
                "api.example.com",
                "*.example.com",
                "Example.COM",
                "a*b",
                "*",
                "",
                "[::1]",
                "x:80",
                "*.",
                "*.*.a",
            ],
        )
    }),
    ("path", |u| {
        string_from(u, &["/", "/api", "/api/", "", "api", "/é", "/a b"])
    }),
    ("upstream", name),
    ("strip_prefix", boolean),
    ("respond", respond),
];

const UPSTREAM: &[(&str, Gen)] = &[
    ("balance", |u| {
        pick(
            u,
            &[
                "round_robin",
                "weighted_round_robin",
                "least_conn",
                "random",
                "hash",
                "fair",
            ],
        )
    }),
    ("hash", |u| {
        pick(
            u,
            &[
                "client_ip",
                "uri",
                "header:x-user",
                "cookie:sid",
                "header:",
                "cookie",
                "ip",
            ],
        )
    }),
    ("servers", servers),
    ("connect_timeout", duration),
    ("read_timeout", duration),
    ("max_fails", integer),
    ("fail_timeout", duration),
    ("eject_on_5xx", boolean),
    ("on_all_down", |u| pick(u, &["fail", "try_all", "retry"])),
    ("retries", integer),
    ("retry_on", |u| {
        let n = u.int_in_range(0..=3)?;
        let words: Vec<String> = (0..n)
            .map(|_| pick(u, &["connect", "reset", "timeout", "5xx", "502", ""]))
            .collect::<Result<_>>()?;
        Ok(format!("[{}]", words.join(", ")))
    }),
    ("retry_non_idempotent", boolean),
    ("protocol", |u| pick(u, &["http1", "h2", "h2c", "http3"])),
    ("tls_ca", |u| pick(u, &["ca.pem", ""])),
    ("tls_server_name", |u| {
        pick(u, &["example.com", "", "bad name", "127.0.0.1"])
    }),
    ("tls_verify", boolean),
    ("tunnel_timeout", duration),
    ("keepalive", integer),
];

const HEALTH_CHECK: &[(&str, Gen)] = &[
    ("type", |u| pick(u, &["http", "tcp", "udp"])),
    ("path", |u| string_from(u, &["/health", "", "health", "/a b"])),
    ("interval", duration),
    ("timeout", duration),
    ("expect_status", |u| {
        pick_raw(
            u,
            &[
                "200",
                "\"2xx\"",
                "\"200-299\"",
                "\"abc\"",
                "99",
                "\"5xx\"",
                "[200]",
            ],
        )
    }),
    ("rise", integer),
    ("fall", integer),
    ("initial_state", |u| pick(u, &["up", "down", "unknown"])),
];

/// A whole file: an optional `include`, then tables in random order.
fn document(u: &mut Unstructured<'_>) -> Result<String> {
    let mut out = String::new();
    if u.ratio(1, 8)? {
        let entry = pick(
            u,
            &["conf.d/*.toml", "ginx.toml", "missing.toml", "", "[", "*", "."],
        )?;
        out.push_str(&format!("include = [{entry}]\n"));
    }
    for _ in 0..u.int_in_range(0..=12)? {
        match u.int_in_range(0..=9)? {
            0 => table(u, &mut out, "[global]".into(), GLOBAL)?,
            1 => table(u, &mut out, "[admin]".into(), ADMIN)?,
            2 | 3 => {
                let listener = name(u)?;
                table(u, &mut out, format!("[listener.{listener}]"), LISTENER)?;
                for _ in 0..u.int_in_range(0..=3)? {
                    table(u, &mut out, format!("[[listener.{listener}.route]]"), ROUTE)?;
                }
            }
            4..=6 => {
                let upstream = name(u)?;
                table(u, &mut out, format!("[upstream.{upstream}]"), UPSTREAM)?;
                if u.ratio(1, 3)? {
                    table(
                        u,
                        &mut out,
                        format!("[upstream.{upstream}.health_check]"),
                        HEALTH_CHECK,
                    )?;
                }
            }
            7 => {
                let listener = name(u)?;
                table(u, &mut out, format!("[[listener.{listener}.route]]"), ROUTE)?;
            }
            8 => {
                // A line of anything: broken syntax among good tables.
                let junk: &str = u.arbitrary()?;
                out.push_str(junk);
                out.push('\n');
            }
            _ => out.push_str(&pick_raw(
                u,
                &[
                    "[global",
                    "x = ",
                    "[[listener]]",
                    "= 1",
                    "\"",
                    "[listener.web]\nbind = 1\nbind = 2",
                ],
            )?),
        }
        out.push('\n');
    }
    Ok(out)
}

/// `header` and a few of `keys`, each with a value of its kind, or of
/// another kind, or a misspelt key.
fn table(u: &mut Unstructured<'_>, out: &mut String, header: String, keys: &[(&str, Gen)]) -> Result<()> {
    out.push_str(&header);
    out.push('\n');
    for _ in 0..u.int_in_range(0..=6)? {
        let (key, value) = u.choose(keys)?;
        let key = if u.ratio(1, 12)? {
            misspelt(u, key)?
        } else {
            (*key).to_owned()
        };
        let value = if u.ratio(1, 10)? { any_value(u)? } else { value(u)? };
        out.push_str(&format!("{key} = {value}\n"));
    }
    Ok(())
}

/// `key` with one letter dropped, doubled or changed, or a plural.
fn misspelt(u: &mut Unstructured<'_>, key: &str) -> Result<String> {
    let mut chars: Vec<char> = key.chars().collect();
    let i = u.choose_index(chars.len())?;
    match u.int_in_range(0..=3)? {
        0 => {
            chars.remove(i);
        }
        1 => chars.insert(i, chars[i]),
        2 => chars[i] = 'x',
        _ => chars.push('s'),
    }
    let key: String = chars.into_iter().collect();
    Ok(if key.is_empty() { "\"\"".into() } else { key })
}

/// A value of any type: what a key of another type gets.
fn any_value(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=8)? {
        0 => integer(u)?,
        1 => boolean(u)?,
        2 => quote(u.arbitrary::<&str>()?),
        3 => "1.5".into(),
        4 => "[1, \"a\"]".into(),
        5 => "{ a = 1 }".into(),
        6 => "1979-05-27T07:32:00Z".into(),
        7 => "[]".into(),
        _ => "nan".into(),
    })
}

fn name(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(u.choose(NAMES)?.trim_matches('"').to_owned()).map(|n| quote(&n))
}

fn boolean(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(u.arbitrary::<bool>()?.to_string())
}

fn integer(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0..=5 => u.int_in_range(-1..=6)?.to_string(),
        6 => "65536".into(),
        7 => "4294967296".into(),
        8 => i64::MIN.to_string(),
        _ => u.arbitrary::<i64>()?.to_string(),
    })
}

fn duration(u: &mut Unstructured<'_>) -> Result<String> {
    pick(
        u,
        &[
            "5s",
            "250ms",
            "0s",
            "2m",
            "1h",
            "1d",
            "100000000h",
            "-1s",
            "",
            "5",
            "1.5s",
            "5 s",
            "s",
            "1ms",
            "400d",
        ],
    )
}

fn address(u: &mut Unstructured<'_>) -> Result<String> {
    pick(
        u,
        &[
            "127.0.0.1:0",
            "[::1]:0",
            "localhost:0",
            "0.0.0.0:80",
            "1.2.3.4",
            ":80",
            "127.0.0.1:99999",
            "[::1]",
            "h:1",
        ],
    )
}

fn access_log(u: &mut Unstructured<'_>) -> Result<String> {
    pick_raw(
        u,
        &[
            "true",
            "false",
            "{ path = \"access.log\" }",
            "{ path = \"/no/such/dir/a.log\", format = \"json\" }",
            "{ format = \"xml\" }",
            "{}",
        ],
    )
}

fn server(u: &mut Unstructured<'_>) -> Result<String> {
    let addr = pick(
        u,
        &[
            "127.0.0.1:9001",
            "127.0.0.1:9001",
            "http://127.0.0.1:9",
            "HTTP://127.0.0.1:9/",
            "https://localhost",
            "https://127.0.0.1:9443",
            "[::1]:80",
            "app.internal:80",
            "bad host:1",
            "127.0.0.1",
            "127.0.0.1:0",
            "ftp://h:1",
        ],
    )?;
    if u.ratio(1, 3)? {
        let weight = integer(u)?;
        let backup = boolean(u)?;
        return Ok(format!(
            "{{ addr = {addr}, weight = {weight}, backup = {backup} }}"
        ));
    }
    Ok(addr)
}

fn servers(u: &mut Unstructured<'_>) -> Result<String> {
    let n = u.int_in_range(0..=4)?;
    let list: Vec<String> = (0..n).map(|_| server(u)).collect::<Result<_>>()?;
    Ok(format!("[{}]", list.join(", ")))
}

fn respond(u: &mut Unstructured<'_>) -> Result<String> {
    let status = pick_raw(
        u,
        &[
            "200", "204", "301", "308", "404", "503", "100", "600", "99", "\"200\"",
        ],
    )?;
    let mut fields = vec![format!("status = {status}")];
    if u.arbitrary()? {
        fields.push(format!("body = {}", quote(u.arbitrary::<&str>()?)));
    }
    if u.arbitrary()? {
        fields.push(format!(
            "location = {}",
            pick(u, &["https://{host}{uri}", "/x", "{nope}", "{host", "}"])?
        ));
    }
    Ok(format!("{{ {} }}", fields.join(", ")))
}

/// One of `words`, as a TOML string.
fn pick(u: &mut Unstructured<'_>, words: &[&str]) -> Result<String> {
    Ok(quote(u.choose(words)?))
}

/// One of `words`, as written (already TOML).
fn pick_raw(u: &mut Unstructured<'_>, words: &[&str]) -> Result<String> {
    Ok((*u.choose(words)?).to_owned())
}

/// One of `words`, or any text, as a TOML string.
fn string_from(u: &mut Unstructured<'_>, words: &[&str]) -> Result<String> {
    if u.ratio(1, 6)? {
        return Ok(quote(u.arbitrary::<&str>()?));
    }
    pick(u, words)
}

/// `s` as a TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------
// Routing: a valid configuration, requests, and the reference.

/// A route as the reference sees it.
struct RouteSpec {
    /// `None`: any host; `Some("*.x")`: a wildcard.
    host: Option<String>,
    path: Option<String>,
}

/// Listener `web`'s routes (route `i` answers with body `i`), whether it
/// has the default upstream `app`, and the requests to route.
struct RoutingCase {
    routes: Vec<RouteSpec>,
    default: bool,
    requests: Vec<(Option<Vec<u8>>, Vec<u8>)>,
}

const LABELS: &[&str] = &["a", "b", "api", "example", "com", "x-1", "B", "Api"];
const SEGMENTS: &[&str] = &["/", "api", "/api", "/api/", "v1", "x", ".json", "%61", "/.", ".."];

impl RoutingCase {
    fn new(u: &mut Unstructured<'_>) -> Result<RoutingCase> {
        let mut routes = Vec::new();
        for _ in 0..u.int_in_range(0..=8)? {
            let host = match u.int_in_range(0..=3)? {
                0 => None,
                1 => Some(format!("*.{}", hostname(u)?)),
                2 if u.ratio(1, 4)? => Some("[::1]".to_owned()),
                _ => Some(hostname(u)?),
            };
            let path = if u.ratio(1, 4)? {
                None
            } else {
                Some(format!("/{}", segments(u)?))
            };
            // Validation rejects a route another one shadows.
            let key = |r: &RouteSpec| (r.host.as_ref().map(|h| h.to_ascii_lowercase()), r.path.clone());
            let route = RouteSpec { host, path };
            if routes.iter().all(|r| key(r) != key(&route)) {
                routes.push(route);
            }
        }
        // A listener needs a route or a default.
        let default = routes.is_empty() || u.arbitrary()?;
        let mut requests = Vec::new();
        for _ in 0..u.int_in_range(1..=8)? {
            requests.push(request(u)?);
        }
        Ok(RoutingCase {
            routes,
            default,
            requests,
        })
    }

    fn config(&self) -> String {
        let mut out = String::from("[listener.web]\nbind = \"127.0.0.1:0\"\n");
        if self.default {
            out.push_str("upstream = \"app\"\n");
        }
        for (i, route) in self.routes.iter().enumerate() {
            out.push_str("\n[[listener.web.route]]\n");
            if let Some(host) = &route.host {
                out.push_str(&format!("host = {}\n", quote(host)));
            }
            if let Some(path) = &route.path {
                out.push_str(&format!("path = {}\n", quote(path)));
            }
            out.push_str(&format!("respond = {{ status = 200, body = \"{i}\" }}\n"));
        }
        out.push_str("\n[upstream.app]\nservers = [\"127.0.0.1:9\"]\n");
        out
    }

    /// docs/configuration.md section 5, read naively: every route is
    /// scored, and the best score wins.
    fn reference(&self, host: Option<&[u8]>, target: &[u8]) -> Routed {
        let uri = http::Uri::try_from(target).expect("ginx accepted the target");
        // An absolute target's authority wins over `Host` (its host part:
        // no user information); a `Host` that is not text is no host.
        let host = match uri.authority() {
            Some(authority) => Some(authority.as_str().rsplit('@').next().unwrap_or("").to_owned()),
            None => host
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
                .map(str::to_owned),
        };
        // Lowercased, port dropped (`[v6]` keeps its colons).
        let host = host.map(|h| {
            let h = h.to_ascii_lowercase();
            match h.rfind(':') {
                Some(i) if !h[i..].contains(']') => h[..i].to_owned(),
                _ => h,
            }
        });
        let path = uri.path();
        // (host group: 0 exact, 1 wildcard, 2 none; minus suffix length;
        // minus prefix length; file order): the smallest wins.
        let mut best: Option<((u8, isize, isize, usize), usize)> = None;
        for (i, route) in self.routes.iter().enumerate() {
            let group = match (&route.host, &host) {
                (None, _) => (2, 0),
                (Some(_), None) => continue,
                (Some(pattern), Some(host)) => match pattern.strip_prefix('*') {
                    Some(suffix) => {
                        let suffix = suffix.to_ascii_lowercase();
                        if host.len() <= suffix.len() || !host.ends_with(&suffix) {
                            continue;
                        }
                        (1, -(suffix.len() as isize))
                    }
                    None if pattern.eq_ignore_ascii_case(host) => (0, 0),
                    None => continue,
                },
            };
            let prefix = route.path.as_deref().unwrap_or("");
            if !path.starts_with(prefix) {
                continue;
            }
            let score = (group.0, group.1, -(prefix.len() as isize), i);
            if best.is_none_or(|(b, _)| score < b) {
                best = Some((score, i));
            }
        }
        match best {
            Some((_, i)) => Routed::Respond(i.to_string()),
            None if self.default => Routed::Proxy("app".to_owned()),
            None => Routed::NoRoute,
        }
    }
}

/// One to three labels.
fn hostname(u: &mut Unstructured<'_>) -> Result<String> {
    let n = u.int_in_range(1..=3)?;
    let labels: Vec<&str> = (0..n).map(|_| u.choose(LABELS).copied()).collect::<Result<_>>()?;
    Ok(labels.join("."))
}

/// Up to three path segments, glued.
fn segments(u: &mut Unstructured<'_>) -> Result<String> {
    let n = u.int_in_range(0..=3)?;
    let parts: Vec<&str> = (0..n)
        .map(|_| u.choose(SEGMENTS).copied())
        .collect::<Result<_>>()?;
    Ok(parts.concat())
}

/// A `Host` (or none) and a request target: mostly made of the routes'
/// own pieces, sometimes any bytes.
fn request(u: &mut Unstructured<'_>) -> Result<(Option<Vec<u8>>, Vec<u8>)> {
    let host = match u.int_in_range(0..=5)? {
        0 => None,
        1 => Some(u.arbitrary::<&[u8]>()?.to_vec()),
        2 => Some(format!("{}:{}", hostname(u)?, u.int_in_range(0..=65535)?).into_bytes()),
        3 => Some(format!("x.{}", hostname(u)?).into_bytes()),
        _ => Some(hostname(u)?.into_bytes()),
    };
    let path = format!("/{}", segments(u)?);
    let target = match u.int_in_range(0..=5)? {
        0 => u.arbitrary::<&[u8]>()?.to_vec(),
        1 => format!("http://{}{path}", hostname(u)?).into_bytes(),
        2 => format!("http://user@{}:8080{path}?q", hostname(u)?).into_bytes(),
        3 => format!("{path}?{}", segments(u)?).into_bytes(),
        _ => path.into_bytes(),
    };
    Ok((host, target))
}
