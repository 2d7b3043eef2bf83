//! Upstreams over TLS (`https://`) and HTTP/2 (`protocol = "h2"` over TLS,
//! `"h2c"` in the clear).

mod support;

use hyper::{StatusCode, Version};
use support::*;

/// [`web`] whose upstream `app` has `servers` (a TOML array's items) and
/// `extra` keys.
fn config(servers: &str, extra: &str) -> String {
    web(&format!("servers = [{servers}]\n{extra}\n"))
}

#[tokio::test]
async fn https_servers_get_http1_over_tls() {
    let backend = ProtoBackend::start("secure", true).await;
    let servers = format!("\"https://{}\"", backend.addr);
    let ginx = Ginx::start(&config(&servers, "tls_verify = false"), &[], &["web"]).await;
    for _ in 0..3 {
        let reply = get(ginx.addr("web"), "/tls").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", ginx.log_text());
        assert_eq!(reply.text(), "secure");
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.tls && s.version == Version::HTTP_11),
        "{seen:?}"
    );
    assert_eq!(seen[0].headers["host"], "localhost");
}

#[tokio::test]
async fn h2_servers_get_http2_over_tls() {
    let backend = ProtoBackend::start("h2", true).await;
    let servers = format!("\"https://{}\"", backend.addr);
    let config = config(&servers, "protocol = \"h2\"\ntls_verify = false");
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let reply = get(ginx.addr("web"), "/a?b=1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", ginx.log_text());
    assert_eq!(reply.text(), "h2");
    let seen = backend.seen();
    assert!(seen[0].tls);
    assert_eq!(seen[0].version, Version::HTTP_2);
    assert_eq!(seen[0].uri, "https://localhost/a?b=1");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn h2c_servers_get_http2_with_prior_knowledge() {
    let backend = ProtoBackend::start("h2c", false).await;
    let servers = format!("\"{}\"", backend.addr);
    let ginx = Ginx::start(&config(&servers, "protocol = \"h2c\""), &[], &["web"]).await;
    let addr = ginx.addr("web");
    let tasks: Vec<_> = (0..40)
        .map(|_| tokio::spawn(async move { get(addr, "/").await }))
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "h2c");
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 40);
    assert!(seen.iter().all(|s| !s.tls && s.version == Version::HTTP_2));
}

/// A server whose protocol changes in a reload is a new server: the
/// connections opened for the old protocol are not reused for the new one.
#[tokio::test]
async fn a_protocol_change_in_a_reload_opens_new_connections() {
    let backend = ProtoBackend::start("both", false).await;
    let servers = format!("\"{}\"", backend.addr);
    let ginx = Ginx::start(&config(&servers, ""), &[], &["web"]).await;
    for _ in 0..2 {
        assert_eq!(get(ginx.addr("web"), "/").await.status, StatusCode::OK);
    }
    ginx.rename_over("ginx.toml", &config(&servers, "protocol = \"h2c\""));
    assert!(ginx.wait_generation(2).await, "{}", ginx.log_text());
    for _ in 0..2 {
        assert_eq!(get(ginx.addr("web"), "/").await.status, StatusCode::OK);
    }
    let versions: Vec<Version> = backend.seen().iter().map(|s| s.version).collect();
    assert_eq!(
        versions,
        [
            Version::HTTP_11,
            Version::HTTP_11,
            Version::HTTP_2,
            Version::HTTP_2
        ]
    );
}

/// An h2c server that counts the connections it accepts.
async fn counting_h2c_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"counted"),
                    )))
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// A burst of first requests shares one HTTP/2 connection per worker
/// instead of each opening its own.
#[tokio::test]
async fn a_burst_of_first_requests_opens_one_h2_connection_per_worker() {
    let (addr, accepted) = counting_h2c_server().await;
    let config = config(&format!("\"{addr}\""), "protocol = \"h2c\"");
    // The harness runs 2 workers.
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let web = ginx.addr("web");
    let tasks: Vec<_> = (0..64)
        .map(|_| tokio::spawn(async move { get(web, "/").await }))
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", ginx.log_text());
        assert_eq!(reply.text(), "counted");
    }
    let opened = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&opened), "{opened} connections for 2 workers");
}

/// A self-signed certificate that says it is a CA (as `openssl req -x509`
/// makes them), for `names`, and its key.
fn self_signed_ca_style(names: &[&str]) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A backend's own self-signed certificate given as `tls_ca` is trusted for
/// that backend (what `curl --cacert` and nginx's
/// `proxy_ssl_trusted_certificate` accept), for the names it covers only.
#[tokio::test]
async fn a_pinned_self_signed_certificate_in_tls_ca_is_trusted() {
    let (cert, key) = self_signed_ca_style(&["localhost"]);
    let backend = ProtoBackend::start_with("pinned", Some(acceptor(&cert, &key))).await;
    let servers = format!("\"https://{}\"", backend.addr);
    let ginx = Ginx::start(
        &config(
            &servers,
            "tls_ca = \"pinned.pem\"\ntls_server_name = \"localhost\"",
        ),
        &[("pinned.pem", &cert)],
        &["web"],
    )
    .await;
    let reply = get(ginx.addr("web"), "/").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "pinned"),
        "{}",
        ginx.log_text()
    );

    // The same pin does not vouch for another name.
    ginx.write(
        "ginx.toml",
        &config(
            &servers,
            "tls_ca = \"pinned.pem\"\ntls_server_name = \"other.test\"\nretries = 0",
        ),
    );
    assert!(ginx.wait_generation(2).await);
    assert_eq!(get(ginx.addr("web"), "/").await.status, StatusCode::BAD_GATEWAY);
}
