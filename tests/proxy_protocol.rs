//! `proxy_protocol = true`: a real PROXY v1 and v2 sender (the header bytes
//! written by hand), on plaintext and TLS listeners; a connection without
//! a valid header is closed without a response; the header of a peer
//! outside `trusted_proxies` is read and ignored.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use support::*;

const TRUSTED: &str = "127.0.0.2";
const UNTRUSTED: &str = "127.0.0.3";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n";

/// A listener `web` with `proxy_protocol = true` and `keys`.
fn config(keys: &str, backend: SocketAddr) -> String {
    format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\nproxy_protocol = true\n{keys}\n\n{}",
        upstream("app", &[backend])
    )
}

/// A PROXY v2 header: `PROXY` command from `source` to 127.0.0.1:80, or
/// `LOCAL` when `source` is `None`.
fn v2(source: Option<SocketAddr>) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match source {
        None => header.extend_from_slice(&[0x20, 0x00, 0, 0]),
        Some(SocketAddr::V4(s)) => {
            header.extend_from_slice(&[0x21, 0x11, 0, 12]);
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&[127, 0, 0, 1]);
            header.extend_from_slice(&s.port().to_be_bytes());
            header.extend_from_slice(&80u16.to_be_bytes());
        }
        Some(SocketAddr::V6(s)) => {
            header.extend_from_slice(&[0x21, 0x21, 0, 36]);
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            header.extend_from_slice(&s.port().to_be_bytes());
            header.extend_from_slice(&80u16.to_be_bytes());
        }
    }
    header
}

/// `header` then [`REQUEST`] in one write, from `source`; the reply.
async fn send(ginx: &Ginx, source: &str, header: &[u8]) -> String {
    let bytes = [header, REQUEST].concat();
    raw_exchange_from(ip(source), ginx.addr("web"), &bytes).await
}

#[tokio::test]
async fn v1_and_v2_from_a_trusted_balancer_name_the_client() {
    let backend = Backend::start("app").await;
    let keys = format!("trusted_proxies = [\"{TRUSTED}\"]");
    let ginx = Ginx::start(&config(&keys, backend.addr), &[], &["web"]).await;

    let reply = send(&ginx, TRUSTED, b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 80\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some("192.0.2.1")
    );

    let reply = send(&ginx, TRUSTED, b"PROXY TCP6 2001:db8::1 ::1 5555 80\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some("2001:db8::1")
    );

    let reply = send(&ginx, TRUSTED, &v2(Some("198.51.100.7:40000".parse().unwrap()))).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some("198.51.100.7")
    );

    let reply = send(&ginx, TRUSTED, &v2(Some("[2001:db8::9]:40000".parse().unwrap()))).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some("2001:db8::9")
    );

    // LOCAL (the balancer's own health check) and UNKNOWN: the TCP peer.
    let reply = send(&ginx, TRUSTED, &v2(None)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some(TRUSTED)
    );
    let reply = send(&ginx, TRUSTED, b"PROXY UNKNOWN\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some(TRUSTED)
    );
}

#[tokio::test]
async fn a_header_in_pieces_is_read_whole_and_nothing_past_it() {
    let backend = Backend::start("app").await;
    let ginx = Ginx::start(&config("", backend.addr), &[], &["web"]).await;
    let mut stream = connect_from(ip(TRUSTED), ginx.addr("web")).await;
    let header = v2(Some("192.0.2.44:1234".parse().unwrap()));
    for piece in [&header[..5], &header[5..14], &header[14..]] {
        stream.write_all(piece).await.unwrap();
        // Paces the pieces, so that ginx sees each on its own.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stream.write_all(REQUEST).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Without trusted_proxies every header is believed (with a warning).
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some("192.0.2.44")
    );
}

#[tokio::test]
async fn no_valid_header_closes_the_connection_without_a_response() {
    let backend = Backend::start("app").await;
    let keys = format!("trusted_proxies = [\"{TRUSTED}\"]");
    let ginx = Ginx::start(&config(&keys, backend.addr), &[], &["web"]).await;
    for bad in [
        &b""[..],
        b"PROXY TCP4 not-an-address 127.0.0.1 1 80\r\n",
        b"PROXY SCTP 1.2.3.4 127.0.0.1 1 80\r\n",
    ] {
        let reply = send(&ginx, TRUSTED, bad).await;
        assert_eq!(reply, "", "{:?}", String::from_utf8_lossy(bad));
    }
    // A header longer than v1 allows, never ending.
    let reply = send(
        &ginx,
        TRUSTED,
        &[b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
    )
    .await;
    assert_eq!(reply, "");
    assert_eq!(backend.hits(), 0);
    // The listener still serves well-formed connections.
    let reply = send(&ginx, TRUSTED, b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 80\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn the_header_of_an_untrusted_peer_is_read_and_ignored() {
    let backend = Backend::start("app").await;
    let keys = format!("trusted_proxies = [\"{TRUSTED}\"]\ndeny = [\"192.0.2.1\"]");
    let ginx = Ginx::start(&config(&keys, backend.addr), &[], &["web"]).await;
    let header = b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 80\r\n";
    // From the balancer, 192.0.2.1 is the client, and it is denied...
    let reply = send(&ginx, TRUSTED, header).await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // ...from anyone else the header names nobody: the peer is the client.
    let reply = send(&ginx, UNTRUSTED, header).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        backend.last_seen().header("x-forwarded-for").as_deref(),
        Some(UNTRUSTED)
    );
    // Still required: no header, no response.
    assert_eq!(send(&ginx, UNTRUSTED, b"").await, "");
}

#[tokio::test]
async fn on_a_tls_listener_the_header_comes_before_the_handshake() {
    let backend = Backend::start("app").await;
    let (cert, key) = pair(&["localhost"]);
    let keys = format!("trusted_proxies = [\"{TRUSTED}\"]\ntls = {{ cert = \"c.pem\", key = \"c.key\" }}");
    let ginx = Ginx::start(
        &config(&keys, backend.addr),
        &[("c.pem", &cert), ("c.key", &key)],
        &["web"],
    )
    .await;
    let mut stream = connect_from(ip(TRUSTED), ginx.addr("web")).await;
    stream
        .write_all(b"PROXY TCP4 203.0.113.50 127.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    let connector = TlsConnector::from(Arc::new(insecure_client_config(&[b"http/1.1"])));
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, stream)
        .await
        .expect("TLS after the PROXY header");
    tls.write_all(REQUEST).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tls.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = backend.last_seen();
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("203.0.113.50"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
}
