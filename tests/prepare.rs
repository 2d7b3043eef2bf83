//! A TLS setup that validates but that rustls refuses is caught before
//! anything changes: at start ginx exits with the located error, on a
//! reload the old configuration keeps serving and `/status` says why.
//!
//! The case: a CA file that is valid PEM (validation reads it) whose
//! certificate is not one rustls can use as a trust anchor.

mod support;

use hyper::StatusCode;
use serde_json::Value;
use support::*;

/// One `CERTIFICATE` block whose content is not a certificate.
const UNUSABLE_CA: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

/// A certificate and key for `localhost`, as PEM texts.
fn localhost_pair() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

#[tokio::test]
async fn a_client_ca_rustls_refuses_stops_the_start_with_its_location() {
    let backend = Backend::start("a").await;
    let (cert, key) = localhost_pair();
    let main = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\
         tls = {{ cert = \"cert.pem\", key = \"key.pem\", client_ca = \"ca.pem\" }}\n\n\
         [upstream.app]\nservers = [\"{}\"]\n",
        backend.addr
    );
    let files = [
        ("cert.pem", cert.as_str()),
        ("key.pem", key.as_str()),
        ("ca.pem", UNUSABLE_CA),
    ];
    let mut ginx = Ginx::start(&main, &files, &[]).await;
    let code = ginx.wait_exit(DEADLINE).await;
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log:\n{}",
        ginx.log_text()
    );
    let log = ginx.log_text();
    assert!(
        log.contains("ginx.toml:1:1: listener `web`: TLS: ")
            && log.contains("ca.pem: not a usable CA certificate"),
        "{log}"
    );
}

#[test]
fn check_reports_what_rustls_refuses_with_its_location() {
    let main = "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
                [upstream.app]\nservers = [\"https://127.0.0.1:1\"]\ntls_ca = \"ca.pem\"\n";
    let dir = dir_with(&[("ginx.toml", main), ("ca.pem", UNUSABLE_CA)]);
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("ginx.toml:5:1: upstream `app`: TLS client: ")
            && stderr.contains("not a usable CA certificate"),
        "{stderr}"
    );
}

fn with_admin(upstream: &str) -> String {
    format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
         [upstream.app]\n{upstream}\n"
    )
}

#[tokio::test]
async fn an_upstream_tls_ca_rustls_refuses_rejects_the_reload() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let ginx = Ginx::start(
        &with_admin(&format!("servers = [\"{}\"]", old.addr)),
        &[("ca.pem", UNUSABLE_CA)],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    assert_eq!(get(addr, "/").await.text(), "old");

    let https = format!("servers = [\"https://{}\"]\ntls_ca = \"ca.pem\"", new.addr);
    ginx.write("ginx.toml", &with_admin(&https));
    assert!(ginx.wait_log("configuration rejected", DEADLINE).await);
    let log = ginx.log_text();
    assert!(
        log.contains("ginx.toml:8:1: upstream `app`: TLS client: ")
            && log.contains("not a usable CA certificate"),
        "{log}"
    );
    let reply = get(addr, "/").await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::OK, "old".to_owned()),
        "the old configuration keeps serving"
    );
    let status: Value = serde_json::from_slice(&get(ginx.admin_addr(), "/status").await.body).unwrap();
    assert_eq!(status["generation"], 1);
    assert_eq!(status["last_reload"]["result"], "rejected");
    let errors = status["last_reload"]["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("ginx.toml:8:1: upstream `app`: TLS client: ")),
        "{errors:?}"
    );
}
