//! One client address per request: `trusted_proxies` and
//! `client_ip_header` (nginx's `set_real_ip_from`, `real_ip_header`,
//! `real_ip_recursive on`), the `X-Forwarded-For` sent upstream, forged
//! forwarding headers replaced, and the address the access log and
//! `allow` / `deny` read. Peers are told apart by their source address:
//! ginx listens on 127.0.0.1, clients connect from 127.0.0.2, 127.0.0.3...

mod support;

use std::net::{IpAddr, SocketAddr};

use support::*;

const TRUSTED: &str = "127.0.0.2";
const UNTRUSTED: &str = "127.0.0.3";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A listener `web` with `keys`, proxying to `backend`, its access log in
/// JSON at `access.log`.
fn config(keys: &str, backend: SocketAddr) -> String {
    format!(
        "[global]\naccess_log = {{ path = \"access.log\", format = \"json\" }}\n\n\
         [listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n{keys}\n\n{}",
        upstream("app", &[backend])
    )
}

/// A `GET /` from `source` with `headers` (lines without CRLF); the reply.
async fn get_from(ginx: &Ginx, source: &str, headers: &[&str]) -> String {
    let mut request = String::from("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    raw_exchange_from(ip(source), ginx.addr("web"), request.as_bytes()).await
}

/// Whether the access log has logged a request from `client`.
async fn logged_client(ginx: &Ginx, client: &str) -> bool {
    let path = ginx.dir.path().join("access.log");
    let needle = format!("\"client\":\"{client}\"");
    eventually(DEADLINE, || {
        std::fs::read_to_string(&path).is_ok_and(|log| log.contains(&needle))
    })
    .await
}

#[tokio::test]
async fn without_trusted_proxies_the_peer_is_the_client_and_x_forwarded_for_is_appended_to() {
    let backend = Backend::start("app").await;
    let ginx = Ginx::start(&config("", backend.addr), &[], &["web"]).await;
    let reply = get_from(
        &ginx,
        UNTRUSTED,
        &["X-Forwarded-For: 203.0.113.9", "X-Real-IP: 6.6.6.6"],
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = backend.last_seen();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.3")
    );
    // Without trusted_proxies ginx changes nothing else (nginx's behaviour).
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("6.6.6.6"));
    assert!(logged_client(&ginx, UNTRUSTED).await);
}

#[tokio::test]
async fn a_trusted_peer_names_the_client_and_an_untrusted_one_has_its_headers_replaced() {
    let backend = Backend::start("app").await;
    let keys = format!("trusted_proxies = [\"{TRUSTED}\", \"10.0.0.0/8\"]");
    let ginx = Ginx::start(&config(&keys, backend.addr), &[], &["web"]).await;

    // Trusted: the right-most address not itself trusted (10.1.1.1 is).
    let reply = get_from(
        &ginx,
        TRUSTED,
        &["X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.1.1.1"],
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = backend.last_seen();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("198.51.100.1, 203.0.113.9, 10.1.1.1, 127.0.0.2"),
        "every hop, truthfully"
    );
    assert!(logged_client(&ginx, "203.0.113.9").await);

    // Untrusted: whatever it says about forwarding is replaced or removed.
    let forged = [
        "X-Forwarded-For: 192.0.2.66",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.example",
        "X-Real-IP: 192.0.2.66",
    ];
    let reply = get_from(&ginx, UNTRUSTED, &forged).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = backend.last_seen();
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.3"]);
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("example.com"));
    assert_eq!(seen.header("x-real-ip"), None);
    assert!(logged_client(&ginx, UNTRUSTED).await);
}

#[tokio::test]
async fn all_trusted_gives_the_left_most_and_garbage_stops_the_walk() {
    let backend = Backend::start("app").await;
    let keys =
        format!("trusted_proxies = [\"{TRUSTED}\", \"10.0.0.0/8\"]\ndeny = [\"10.0.0.9\", \"10.0.0.7\"]");
    let ginx = Ginx::start(&config(&keys, backend.addr), &[], &["web"]).await;
    // Every address trusted: the left-most is the client, and it is denied.
    let reply = get_from(&ginx, TRUSTED, &["X-Forwarded-For: 10.0.0.9, 10.0.0.2"]).await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // Two header fields are one list.
    let reply = get_from(
        &ginx,
        TRUSTED,
        &["X-Forwarded-For: 10.0.0.7", "X-Forwarded-For: 10.0.0.2"],
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // What is left of an item that is no address is not believed: the
    // client is the last address before it (10.0.0.2), which is allowed.
    let reply = get_from(&ginx, TRUSTED, &["X-Forwarded-For: 10.0.0.9, unknown, 10.0.0.2"]).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(logged_client(&ginx, "10.0.0.2").await);
    assert_eq!(backend.hits(), 1, "refused requests never reach the upstream");
}

#[tokio::test]
async fn a_single_value_client_ip_header() {
    let backend = Backend::start("app").await;
    let keys = format!("trusted_proxies = [\"{TRUSTED}\"]\nclient_ip_header = \"CF-Connecting-IP\"");
    let ginx = Ginx::start(&config(&keys, backend.addr), &[], &["web"]).await;
    let reply = get_from(
        &ginx,
        TRUSTED,
        &["CF-Connecting-IP: 2001:db8::7", "X-Forwarded-For: 192.0.2.1"],
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(logged_client(&ginx, "2001:db8::7").await);
    let seen = backend.last_seen();
    assert_eq!(seen.header("cf-connecting-ip").as_deref(), Some("2001:db8::7"));

    // From an untrusted peer the header is dropped, not passed on.
    let reply = get_from(&ginx, UNTRUSTED, &["CF-Connecting-IP: 192.0.2.66"]).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(backend.last_seen().header("cf-connecting-ip"), None);
    assert!(logged_client(&ginx, UNTRUSTED).await);
}

#[tokio::test]
async fn hash_by_client_ip_uses_the_resolved_address() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let text = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\ntrusted_proxies = [\"{TRUSTED}\"]\n\n\
         [upstream.app]\nbalance = \"hash\"\nhash = \"client_ip\"\nservers = {}\n",
        servers(&[a.addr, b.addr])
    );
    let ginx = Ginx::start(&text, &[], &["web"]).await;
    // One proxy, many clients: the clients spread over both servers, and
    // each client keeps its server.
    let mut served = std::collections::HashMap::new();
    for n in 1..=40 {
        let header = format!("X-Forwarded-For: 198.51.100.{n}");
        let reply = get_from(&ginx, TRUSTED, &[&header]).await;
        let body = reply.rsplit("\r\n\r\n").next().unwrap().to_owned();
        let again = get_from(&ginx, TRUSTED, &[&header]).await;
        assert_eq!(again.rsplit("\r\n\r\n").next().unwrap(), body, "client {n} moved");
        *served.entry(body).or_insert(0) += 1;
    }
    assert_eq!(served.len(), 2, "{served:?}");
}

#[test]
fn check_locates_bad_addresses_and_warns_about_trust() {
    let dir = dir_with(&[(
        "ginx.toml",
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n\
         allow = [\"all\"]\n\n[upstream.app]\nservers = [\"127.0.0.1:9\"]\n",
    )]);
    let (code, stdout, stderr) = check(dir.path());
    let stderr = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("ginx.toml:4:20"), "{stderr}");
    assert!(
        stderr.contains("prefix length `33` must be a number from 0 to 32"),
        "{stderr}"
    );
    assert!(stderr.contains("ginx.toml:5:10"), "{stderr}");
    assert!(stderr.contains("did you mean \"0.0.0.0/0\""), "{stderr}");

    let dir = dir_with(&[(
        "ginx.toml",
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\nproxy_protocol = true\n\
         client_ip_header = \"X-Real-Ip\"\n\n[upstream.app]\nservers = [\"127.0.0.1:9\"]\n",
    )]);
    let (code, stdout, stderr) = check(dir.path());
    let out = format!("{stdout}{stderr}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ginx.toml:4:18"), "{out}");
    assert!(
        out.contains("`proxy_protocol` is on without `trusted_proxies`"),
        "{out}"
    );
    assert!(
        out.contains("`client_ip_header` has no effect without `trusted_proxies`"),
        "{out}"
    );
}
