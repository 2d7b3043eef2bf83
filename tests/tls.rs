//! TLS listeners: certificates by SNI, ALPN h2 and http/1.1, certificate
//! rotation by reload, `X-Forwarded-Proto: https`.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A self-signed certificate for `names` and its key, as PEM.
fn pair(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

fn leaf(cert_pem: &str) -> CertificateDer<'static> {
    ginx::tls::parse_certificates(cert_pem).unwrap().remove(0)
}

/// A TLS connection to `addr` sending `name` (SNI), offering `alpn`. The
/// server certificate is compared by the tests, not verified.
async fn connect(addr: SocketAddr, name: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let insecure = ginx::config::UpstreamTls {
        verify: false,
        ..Default::default()
    };
    let config = ginx::tls::client_config(&insecure, alpn).unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .expect("TLS handshake with ginx")
}

fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http1_over(stream: TlsStream<TcpStream>) -> H1 {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get_on(sender: &mut H1, host: &str, path: &str) -> Reply {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::default())
        .unwrap();
    let resp = sender.send_request(req).await.expect("response over TLS");
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn tls_listener(backend: SocketAddr, tls: &str) -> String {
    format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n{tls}\n\n[upstream.app]\nservers = [\"{backend}\"]\n"
    )
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_h2_and_http1_both_work() {
    let backend = Backend::start("app").await;
    let a = pair(&["a.test"]);
    let b = pair(&["b.test"]);
    let tls = "\n[[listener.web.tls.certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n\n\
               [[listener.web.tls.certificates]]\ncert = \"b.pem\"\nkey = \"b.key\"\n";
    let ginx = Ginx::start(
        &tls_listener(backend.addr, tls),
        &[("a.pem", &a.0), ("a.key", &a.1), ("b.pem", &b.0), ("b.key", &b.1)],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");

    let to_a = connect(addr, "a.test", &[b"http/1.1"]).await;
    assert_eq!(served(&to_a), leaf(&a.0));
    assert_eq!(to_a.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = http1_over(to_a).await;
    let reply = get_on(&mut h1, "a.test", "/x").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "app");
    let seen = backend.last_seen();
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.header("host").as_deref(), Some("a.test"));

    let to_b = connect(addr, "b.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(served(&to_b), leaf(&b.0));
    assert_eq!(to_b.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(to_b))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://b.test/over-h2")
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let seen = backend.last_seen();
    assert_eq!(seen.uri, "/over-h2");
    assert_eq!(seen.header("host").as_deref(), Some("b.test"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));

    // Plain HTTP on a TLS listener is not served.
    let plain = send(addr, Request::get("/").body(Full::<Bytes>::default()).unwrap()).await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn rotation_new_handshakes_get_the_new_certificate_open_connections_keep_working() {
    let backend = Backend::start("app").await;
    let old = pair(&["site.test"]);
    let tls = "tls = { cert = \"site.pem\", key = \"site.key\" }";
    let ginx = Ginx::start(
        &tls_listener(backend.addr, tls),
        &[("site.pem", &old.0), ("site.key", &old.1)],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    let before = connect(addr, "site.test", &[b"http/1.1"]).await;
    assert_eq!(served(&before), leaf(&old.0));
    let mut kept = http1_over(before).await;
    assert_eq!(get_on(&mut kept, "site.test", "/").await.status, StatusCode::OK);

    let new = pair(&["site.test"]);
    // Key first: in between, the pair does not match and that reload is
    // rejected; the next one applies.
    ginx.rename_over("site.key", &new.1);
    ginx.rename_over("site.pem", &new.0);
    let mut rotated = false;
    for _ in 0..100 {
        let fresh = connect(addr, "site.test", &[b"http/1.1"]).await;
        if served(&fresh) == leaf(&new.0) {
            rotated = true;
            let mut h1 = http1_over(fresh).await;
            assert_eq!(get_on(&mut h1, "site.test", "/").await.status, StatusCode::OK);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        rotated,
        "new handshakes still get the old certificate; log:\n{}",
        ginx.log_text()
    );
    assert_eq!(
        get_on(&mut kept, "site.test", "/").await.status,
        StatusCode::OK,
        "a connection opened before the rotation keeps working"
    );

    // A bad certificate is rejected: the current one keeps serving, and
    // --check names the file.
    let from = ginx.log_len();
    ginx.rename_over(
        "site.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    assert!(
        ginx.wait_log_since(from, "configuration rejected", DEADLINE)
            .await
    );
    let fresh = connect(addr, "site.test", &[b"http/1.1"]).await;
    assert_eq!(served(&fresh), leaf(&new.0));
    let (code, out, err) = check(ginx.dir.path());
    assert_ne!(code, 0);
    assert!(format!("{out}{err}").contains("site.pem"), "{out}{err}");
}

#[tokio::test]
async fn respond_route_redirects_to_https() {
    let config = "[listener.web]\nbind = \"127.0.0.1:0\"\n\n[[listener.web.route]]\n\
                  respond = { status = 301, location = \"https://{host}{uri}\" }\n";
    let ginx = Ginx::start(config, &[], &["web"]).await;
    let reply = get_host(ginx.addr("web"), "example.test:8080", "/a/b?c=1").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.headers["location"], "https://example.test/a/b?c=1");
}

#[tokio::test]
async fn big_download_over_tls_and_h2() {
    // Big bodies over TLS + h2 both ways: TLS framing and h2 flow control
    // together.
    let backend = Backend::start("app").await;
    let cert = pair(&["big.test"]);
    let tls = "tls = { cert = \"c.pem\", key = \"c.key\" }";
    let ginx = Ginx::start(
        &tls_listener(backend.addr, tls),
        &[("c.pem", &cert.0), ("c.key", &cert.1)],
        &["web"],
    )
    .await;
    let stream = connect(ginx.addr("web"), "big.test", &[b"h2"]).await;
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    const SIZE: usize = 4 * 1024 * 1024;
    let req = Request::get(format!("https://big.test/__download/{SIZE}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.body.len(), SIZE);
}
