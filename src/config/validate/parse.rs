//! The pure parsers of validation: one written value -> its meaning, or
//! the sentence that says what is wrong with it.
//!
//! This module owns the syntax of the values that are more than a toml
//! type: bind addresses, server addresses and host names, the resolver,
//! hash keys, status ranges and upload rates. Nothing here knows where a value is written
//! or reports anything: locating the message is [`super::Validator`]'s job.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::super::raw;
use super::super::{Endpoint, HashKey};

pub(super) const SERVER_HINT: &str =
    "use \"HOST:PORT\", \"http://HOST:PORT\" or \"https://HOST:PORT\", like \"127.0.0.1:9001\"";
const HASH_HINT: &str = "use \"client_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\"";
pub(super) const RESOLVER_HINT: &str =
    "use the IP:PORT of a DNS server, like \"127.0.0.53:53\" or \"[::1]:53\"";
const STATUS_HINT: &str =
    "use a status code or an inclusive range as a string, like \"204\" or \"200-399\", each from 100 to 599, low end first";
pub(super) const BIND_HINT: &str =
    "use IP:PORT, like \"127.0.0.1:8080\", \"[::1]:8080\", \"0.0.0.0:80\" or \"localhost:8080\"";

/// `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
pub(super) fn parse_bind(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let port = text.strip_prefix("localhost:")?.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// `resolver = "IP:PORT"`: an IP literal and a non-zero port.
pub(super) fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        Ok(_) => Err(format!(
            "invalid resolver `{text}`: port 0 is not a DNS server's port; {RESOLVER_HINT}"
        )),
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => Err(format!(
                "invalid resolver `{text}`: add the port, like \"{}\"",
                SocketAddr::new(ip, 53)
            )),
            Err(_) => Err(format!("invalid resolver `{text}`: {RESOLVER_HINT}")),
        },
    }
}

/// `hash = "..."`: `client_ip`, `uri`, `header:NAME` or `cookie:NAME`.
pub(super) fn parse_hash_key(text: &str) -> Result<HashKey, String> {
    match text {
        "client_ip" => return Ok(HashKey::ClientIp),
        "uri" => return Ok(HashKey::Uri),
        _ => {}
    }
    if let Some(name) = text.strip_prefix("header:") {
        if name.is_empty() {
            return Err(format!(
                "invalid hash `{text}`: the header name is missing, like \"header:x-user-id\""
            ));
        }
        if !name.bytes().all(is_token_byte) {
            return Err(format!(
                "invalid hash `{text}`: `{name}` is not a valid header name, use letters, digits and `-`, like \"header:x-user-id\""
            ));
        }
        return Ok(HashKey::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        if name.is_empty() {
            return Err(format!(
                "invalid hash `{text}`: the cookie name is missing, like \"cookie:session\""
            ));
        }
        return Ok(HashKey::Cookie(name.to_owned()));
    }
    Err(format!("invalid hash `{text}`: {HASH_HINT}"))
}

/// A byte of an HTTP token (RFC 9110 `tchar`): what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `expect_status`: `"204"` or `"200-399"`, each end three digits in
/// 100..=599, low <= high.
pub(super) fn parse_status_range(s: &raw::StatusText) -> Result<(u16, u16), String> {
    let text = &s.text;
    if !s.quoted {
        return Err(format!(
            "invalid expect_status {text}: write it as a string, like \"{text}\" or \"200-399\""
        ));
    }
    let code = |part: &str| -> Option<u16> {
        if part.len() != 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|c| (100..=599).contains(c))
    };
    let range = match text.split_once('-') {
        None => code(text).map(|c| (c, c)),
        Some((low, high)) => code(low).zip(code(high)),
    };
    match range {
        Some((low, high)) if low <= high => Ok((low, high)),
        _ => Err(format!("invalid expect_status `{text}`: {STATUS_HINT}")),
    }
}

/// A server entry: `HOST:PORT`, `http://HOST[:PORT]` or `https://HOST[:PORT]`,
/// optional trailing `/`. With a scheme the port defaults to the scheme's
/// (80, 443), as in a URL; without one it must be written. Returns the name
/// (without scheme and `/`: health checks take their `Host` from it), the
/// endpoint and whether it is `https://`. A host name is only checked for
/// syntax, never resolved.
pub(super) fn parse_server(text: &str) -> Result<(String, Endpoint, bool), String> {
    let (name, endpoint, default_port) = parse_server_address(text)?;
    let tls = default_port == Some(443);
    Ok((name, endpoint, tls))
}

fn parse_server_address(text: &str) -> Result<(String, Endpoint, Option<u16>), String> {
    let invalid = |why: &str| format!("invalid server address `{text}`: {why}; {SERVER_HINT}");
    let (rest, default_port) = match text.split_once("://") {
        None => (text, None),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, Some(80)),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (rest, Some(443)),
        Some((scheme, _)) => return Err(invalid(&format!("unsupported scheme `{scheme}`"))),
    };
    let name = rest.strip_suffix('/').unwrap_or(rest);
    if name.contains('/') {
        return Err(invalid("a path is not allowed"));
    }
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    let endpoint = match (name.parse::<SocketAddr>(), name.strip_prefix('[')) {
        (Ok(addr), _) => Endpoint::Ip(addr),
        (Err(_), Some(bracketed)) => ipv6_endpoint(bracketed, default_port).map_err(|why| invalid(&why))?,
        (Err(_), None) => host_endpoint(name, default_port).map_err(|why| invalid(&why))?,
    };
    Ok((name.to_owned(), endpoint, default_port))
}

/// What follows the `[` of a server address that is not `[IPv6]:PORT`:
/// `IPv6]` with a scheme's default port, or why not (the port is missing or
/// bad, or the address).
fn ipv6_endpoint(bracketed: &str, default_port: Option<u16>) -> Result<Endpoint, String> {
    let Some((ip, after)) = bracketed.split_once(']') else {
        return Err("missing `]` after the IPv6 address".to_owned());
    };
    let Ok(ip) = ip.parse::<Ipv6Addr>() else {
        return Err(format!("bad IPv6 address `{ip}`"));
    };
    match (after.strip_prefix(':'), default_port) {
        (None, Some(port)) if after.is_empty() => Ok(Endpoint::Ip(SocketAddr::new(IpAddr::V6(ip), port))),
        (None, None) if after.is_empty() => Err("missing port".to_owned()),
        (None, _) => Err(format!("unexpected `{after}` after the IPv6 address")),
        (Some(port), _) => Err(format!("bad port `{port}`")),
    }
}

/// `HOST:PORT` with an IPv4 address or a host name as `HOST`; the port may
/// be left out when there is a scheme (`default_port`).
fn host_endpoint(name: &str, default_port: Option<u16>) -> Result<Endpoint, String> {
    let (host, port) = match (name.rsplit_once(':'), default_port) {
        (Some(parts), _) => parts,
        (None, Some(_)) => (name, ""),
        (None, None) => return Err("missing port".to_owned()),
    };
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    if host.contains(':') {
        return Err("an IPv6 address must be in brackets, like \"[::1]:9001\"".to_owned());
    }
    enum Host {
        Ip(Ipv4Addr),
        Name(String),
    }
    let host = match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(check_host_name(host)?),
    };
    // Digits only: `u16::from_str` would take a leading `+`.
    let port = match (port.parse::<u16>(), default_port) {
        (Ok(p), _) if port.bytes().all(|b| b.is_ascii_digit()) => p,
        (_, Some(p)) if port.is_empty() && !name.contains(':') => p,
        _ => return Err(format!("bad port `{port}`")),
    };
    Ok(match host {
        Host::Ip(ip) => Endpoint::Ip(SocketAddr::new(IpAddr::V4(ip), port)),
        Host::Name(host) => Endpoint::Dns { host, port },
    })
}

/// A DNS name: letters, digits, `-`, `_` and `.` (underscores are not valid
/// in host names, but Docker Compose service names use them and resolvers
/// answer for them); labels of 1 to 63 characters
/// not starting or ending with `-`; at most 253 characters; not all-numeric
/// at the end (that is a mistyped IP address). Returned lowercase.
fn check_host_name(host: &str) -> Result<String, String> {
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".to_owned());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "host name `{host}` may only contain letters, digits, `-`, `_` and `.`"
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!("host name `{host}` has an empty part between dots"));
        }
        if label.len() > 63 {
            return Err(format!("host name `{host}` has a part longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "host name `{host}` has a part starting or ending with `-`"
            ));
        }
    }
    // `10.0.0.300`, `127.1`: a mistyped IP address, not a name to look up.
    if host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{host}` is not a valid IP address"));
    }
    Ok(host.to_ascii_lowercase())
}

pub(super) const RATE_HINT: &str =
    "use a whole number of bytes per second with a unit, like \"500B/s\", \"1KiB/s\" or \"1MB/s\" (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)";

/// Units of `min_upload_rate` and of sizes: SI prefixes are powers of 1000 and IEC ones
/// of 1024, as written, so that `1MB/s` means what a network engineer
/// reads (nginx's `k`/`m` are 1024; ginx does not guess).
const RATE_UNITS: [(&str, u64); 8] = [
    ("B", 1),
    ("KB", 1000),
    ("kB", 1000),
    ("KiB", 1024),
    ("MB", 1000 * 1000),
    ("MiB", 1024 * 1024),
    ("GB", 1000 * 1000 * 1000),
    ("GiB", 1024 * 1024 * 1024),
];

/// `min_upload_rate = "1KiB/s"`: bytes per second, greater than zero.
pub(super) fn parse_rate(text: &str) -> Result<u64, String> {
    let Some(amount) = text.trim().strip_suffix("/s") else {
        return Err(format!(
            "invalid min_upload_rate `{text}`: a rate ends with \"/s\"; {RATE_HINT}"
        ));
    };
    parse_amount("min_upload_rate", text, amount, RATE_HINT, "no minimum")
}

pub(super) const SIZE_HINT: &str =
    "use a whole number of bytes with a unit, like \"512KiB\", \"10MiB\" or \"1GB\" (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)";

/// A size such as `max_request_body = "10MiB"`, in bytes, greater than
/// zero: the units of `min_upload_rate`, without its "/s".
pub(super) fn parse_size(key: &str, text: &str) -> Result<u64, String> {
    parse_amount(key, text, text.trim(), SIZE_HINT, "no limit")
}

/// `amount` (the number and unit of `text`, the value of `key`) in bytes;
/// zero is refused, `none` says what leaving the key out means.
fn parse_amount(key: &str, text: &str, amount: &str, hint: &str, none: &str) -> Result<u64, String> {
    let invalid = |why: &str| format!("invalid {key} `{text}`: {why}{hint}");
    let digits = amount.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = amount.split_at(digits);
    let Ok(number) = number.parse::<u64>() else {
        return Err(invalid(""));
    };
    let unit = unit.trim_start();
    let Some(&(_, scale)) = RATE_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(invalid(&format!("unknown unit `{unit}`; ")));
    };
    match number.checked_mul(scale) {
        Some(0) => Err(format!(
            "invalid {key} `{text}`: it must be greater than zero; remove the key for {none}"
        )),
        Some(bytes) => Ok(bytes),
        None => Err(invalid("too large; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let ok = [
            ("500B/s", 500),
            ("1KiB/s", 1024),
            ("1 KiB/s", 1024),
            ("2KB/s", 2000),
            ("2kB/s", 2000),
            ("1MB/s", 1_000_000),
            ("3MiB/s", 3 * 1024 * 1024),
            ("1GiB/s", 1 << 30),
            ("1GB/s", 1_000_000_000),
        ];
        for (text, rate) in ok {
            assert_eq!(parse_rate(text), Ok(rate), "{text}");
        }
        let bad = [
            ("1KiB", "a rate ends with \"/s\"; "),
            ("KiB/s", ""),
            ("1.5KiB/s", "unknown unit `.5KiB`; "),
            ("1kb/s", "unknown unit `kb`; "),
            ("1/s", "unknown unit ``; "),
            ("-1B/s", ""),
            ("99999999999GiB/s", "too large; "),
        ];
        for (text, why) in bad {
            assert_eq!(
                parse_rate(text),
                Err(format!("invalid min_upload_rate `{text}`: {why}{RATE_HINT}")),
                "{text}"
            );
        }
        assert_eq!(
            parse_rate("0KiB/s"),
            Err("invalid min_upload_rate `0KiB/s`: it must be greater than zero; remove the key for no minimum".to_owned())
        );
    }

    #[test]
    fn sizes() {
        let key = "max_request_body";
        assert_eq!(parse_size(key, "10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size(key, "512 B"), Ok(512));
        assert_eq!(parse_size(key, "1GB"), Ok(1_000_000_000));
        assert_eq!(
            parse_size(key, "10MiB/s"),
            Err(format!(
                "invalid max_request_body `10MiB/s`: unknown unit `MiB/s`; {SIZE_HINT}"
            ))
        );
        assert_eq!(
            parse_size(key, "0KiB"),
            Err(
                "invalid max_request_body `0KiB`: it must be greater than zero; remove the key for no limit"
                    .to_owned()
            )
        );
    }

    #[test]
    fn server_forms() {
        let ip = |a: &str| Endpoint::Ip(a.parse().unwrap());
        let dns = |h: &str, port| Endpoint::Dns { host: h.into(), port };
        let ok_cases = [
            ("127.0.0.1:1", "127.0.0.1:1", ip("127.0.0.1:1")),
            ("http://127.0.0.1:2", "127.0.0.1:2", ip("127.0.0.1:2")),
            ("http://127.0.0.1:3/", "127.0.0.1:3", ip("127.0.0.1:3")),
            ("HTTP://[::1]:4", "[::1]:4", ip("[::1]:4")),
            ("[2001:db8::1]:80", "[2001:db8::1]:80", ip("[2001:db8::1]:80")),
            // Host names are kept, never resolved; localhost is no exception.
            ("localhost:5", "localhost:5", dns("localhost", 5)),
            ("http://localhost:6/", "localhost:6", dns("localhost", 6)),
            (
                "no-such-host.invalid:80",
                "no-such-host.invalid:80",
                dns("no-such-host.invalid", 80),
            ),
            (
                "App-1.Svc.Cluster.Local:8080",
                "App-1.Svc.Cluster.Local:8080",
                dns("app-1.svc.cluster.local", 8080),
            ),
            (
                "1password.com:443",
                "1password.com:443",
                dns("1password.com", 443),
            ),
            ("a.b2:0", "a.b2:0", dns("a.b2", 0)),
        ];
        for (text, name, endpoint) in ok_cases {
            let (n, e, tls) = parse_server(text).unwrap();
            assert!(!tls, "{text}");
            assert_eq!(n, name, "{text}");
            assert_eq!(e, endpoint, "{text}");
        }
        let long_label = "a".repeat(64);
        let max_label = "a".repeat(63);
        let max_name = format!("{max_label}.{max_label}.{max_label}.{}", "b".repeat(61)); // 253
        assert_eq!(max_name.len(), 253);
        assert!(parse_server(&format!("{max_name}:1")).is_ok());
        assert!(parse_server(&format!("{max_label}:1")).is_ok());
        let hint = SERVER_HINT;
        let bad_cases = [
            ("127.0.0.1", format!("invalid server address `127.0.0.1`: missing port; {hint}")),
            (
                "https://a:x",
                format!("invalid server address `https://a:x`: bad port `x`; {hint}"),
            ),
            (
                "http://a:1/x",
                format!("invalid server address `http://a:1/x`: a path is not allowed; {hint}"),
            ),
            (
                "ftp://a:1",
                format!("invalid server address `ftp://a:1`: unsupported scheme `ftp`; {hint}"),
            ),
            ("a:99999", format!("invalid server address `a:99999`: bad port `99999`; {hint}")),
            ("http://", format!("invalid server address `http://`: it is empty; {hint}")),
            ("a:+80", format!("invalid server address `a:+80`: bad port `+80`; {hint}")),
            ("1.2.3.4:+80", format!("invalid server address `1.2.3.4:+80`: bad port `+80`; {hint}")),
            ("1.2.3.4:", format!("invalid server address `1.2.3.4:`: bad port ``; {hint}")),
            (":80", format!("invalid server address `:80`: missing host; {hint}")),
            (
                "::1:80",
                format!("invalid server address `::1:80`: an IPv6 address must be in brackets, like \"[::1]:9001\"; {hint}"),
            ),
            ("[::1]", format!("invalid server address `[::1]`: missing port; {hint}")),
            ("[::1]:x", format!("invalid server address `[::1]:x`: bad port `x`; {hint}")),
            (
                "[::1]x",
                format!("invalid server address `[::1]x`: unexpected `x` after the IPv6 address; {hint}"),
            ),
            ("[::1:80", format!("invalid server address `[::1:80`: missing `]` after the IPv6 address; {hint}")),
            ("[zz]:80", format!("invalid server address `[zz]:80`: bad IPv6 address `zz`; {hint}")),
            (
                "a b:80",
                format!("invalid server address `a b:80`: host name `a b` may only contain letters, digits, `-`, `_` and `.`; {hint}"),
            ),
            (
                "a..b:80",
                format!("invalid server address `a..b:80`: host name `a..b` has an empty part between dots; {hint}"),
            ),
            (
                "example.com.:80",
                format!("invalid server address `example.com.:80`: host name `example.com.` has an empty part between dots; {hint}"),
            ),
            (
                "-a.com:80",
                format!("invalid server address `-a.com:80`: host name `-a.com` has a part starting or ending with `-`; {hint}"),
            ),
            (
                "a-.com:80",
                format!("invalid server address `a-.com:80`: host name `a-.com` has a part starting or ending with `-`; {hint}"),
            ),
            (
                "10.0.0.300:80",
                format!("invalid server address `10.0.0.300:80`: `10.0.0.300` is not a valid IP address; {hint}"),
            ),
            (
                "127.1:80",
                format!("invalid server address `127.1:80`: `127.1` is not a valid IP address; {hint}"),
            ),
            (
                "bücher.de:80",
                format!("invalid server address `bücher.de:80`: host name `bücher.de` may only contain letters, digits, `-`, `_` and `.`; {hint}"),
            ),
        ];
        for (text, message) in bad_cases {
            assert_eq!(parse_server(text).unwrap_err(), message, "{text}");
        }
        let text = format!("{long_label}.com:80");
        assert_eq!(
            parse_server(&text).unwrap_err(),
            format!("invalid server address `{text}`: host name `{long_label}.com` has a part longer than 63 characters; {hint}")
        );
        let text = format!("{max_name}a:80");
        assert_eq!(
            parse_server(&text).unwrap_err(),
            format!("invalid server address `{text}`: the host name is longer than 253 characters; {hint}")
        );
    }

    #[test]
    fn server_schemes_and_default_ports() {
        let ip = |a: &str| Endpoint::Ip(a.parse().unwrap());
        let cases = [
            (
                "https://127.0.0.1:8443",
                "127.0.0.1:8443",
                ip("127.0.0.1:8443"),
                true,
            ),
            ("https://127.0.0.1", "127.0.0.1", ip("127.0.0.1:443"), true),
            ("HTTPS://[::1]/", "[::1]", ip("[::1]:443"), true),
            ("http://127.0.0.1", "127.0.0.1", ip("127.0.0.1:80"), false),
            (
                "https://api.example.com",
                "api.example.com",
                Endpoint::Dns {
                    host: "api.example.com".into(),
                    port: 443,
                },
                true,
            ),
        ];
        for (text, name, endpoint, tls) in cases {
            assert_eq!(parse_server(text), Ok((name.to_owned(), endpoint, tls)), "{text}");
        }
        // Without a scheme the port stays required.
        assert!(parse_server("api.example.com").is_err());
        assert!(parse_server("https://a:").is_err());
    }

    #[test]
    fn bind_forms() {
        assert_eq!(parse_bind("0.0.0.0:80"), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(parse_bind("[::1]:8080"), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(parse_bind("localhost:0"), Some("127.0.0.1:0".parse().unwrap()));
        for bad in ["127.0.0.1", ":80", "localhost", "example.com:80", "1.2.3.4:70000"] {
            assert_eq!(parse_bind(bad), None, "{bad}");
        }
    }

    #[test]
    fn expect_status_forms() {
        let status = |text: &str| {
            parse_status_range(&raw::StatusText {
                text: text.to_owned(),
                quoted: true,
            })
        };
        for (text, range) in [
            ("200-399", (200, 399)),
            ("204", (204, 204)),
            ("100-599", (100, 599)),
            ("599", (599, 599)),
            ("301-301", (301, 301)),
        ] {
            assert_eq!(status(text), Ok(range), "{text}");
        }
        for bad in [
            "",
            "99",
            "600",
            "399-200",
            "2xx",
            "200-",
            "-200",
            "+200",
            "200-+399",
            " 200",
            "200 - 399",
            "200-399-500",
            "0200",
            "65736",
        ] {
            assert_eq!(
                status(bad),
                Err(format!("invalid expect_status `{bad}`: {STATUS_HINT}")),
                "{bad:?}"
            );
        }
    }
}
