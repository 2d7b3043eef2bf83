//! The server side of TLS listeners: a listener's certificates, chosen by
//! the name the client asks for (SNI), and its client certificate policy.
//!
//! This module owns turning a validated [`ListenerTls`] into a rustls
//! [`ServerConfig`]; the handshake on an accepted connection is
//! [`super::accept`]'s, and which listener has which certificates is
//! configuration ([`crate::config`]), which has already parsed and matched
//! every certificate and key.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::{provider, root_store, VERSIONS};
use crate::config::pem::{self, CertError};
use crate::config::{CertificateFiles, ListenerTls};

/// The ALPN protocols a TLS listener offers, most preferred first.
/// `http/1.0` too: a client that offers only that would otherwise be
/// refused with `no_application_protocol`, where nginx serves it.
const LISTENER_ALPN: [&[u8]; 3] = [b"h2", b"http/1.1", b"http/1.0"];

/// The rustls configuration of a TLS listener: its certificates chosen by
/// SNI ([`CertificateBySni`]), ALPN as [`LISTENER_ALPN`], TLS 1.3 and 1.2,
/// and with `client_ca` a required, verified client certificate.
///
/// # Errors
///
/// No certificate, or one that does not load (validation has normally
/// caught that already); a `client_ca` with no usable CA certificate.
pub(crate) fn server_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let resolver = CertificateBySni::new(&tls.certificates)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let roots = root_store(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca.path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = LISTENER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Chooses a listener's certificate by the server name the client sends
/// (SNI), among the names each certificate's subject alternative names cover.
///
/// An exact name wins over a wildcard; `*.example.com` covers exactly one
/// more label (`a.example.com`, not `example.com` nor `a.b.example.com`), as
/// RFC 6125 and browsers have it. When two certificates cover the same name,
/// the one listed first wins. A client that sends no name, or one no
/// certificate covers, gets the first certificate, like nginx's
/// `default_server`: refusing it would only trade a certificate warning for
/// a connection error.
#[derive(Debug)]
struct CertificateBySni {
    /// Lowercase DNS name → certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.com` for a `*.example.com` SAN → certificate.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// The first certificate.
    default: Arc<CertifiedKey>,
}

impl CertificateBySni {
    fn new(certificates: &[CertificateFiles]) -> Result<Self, String> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for files in certificates {
            let key = pem::certified_key(&files.cert.pem, &files.key.pem).map_err(|e| match e {
                CertError::Cert(e) => format!("{}: {e}", files.cert.path.display()),
                CertError::Key(e) => format!("{}: {e}", files.key.path.display()),
            })?;
            let key = Arc::new(key);
            let leaf = key
                .end_entity_cert()
                .map_err(|e| format!("{}: {e}", files.cert.path.display()))?;
            let names =
                pem::certificate_names(leaf).map_err(|e| format!("{}: {e}", files.cert.path.display()))?;
            for name in names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| key.clone());
            }
            default.get_or_insert(key);
        }
        let default = default.ok_or("a TLS listener needs at least one certificate")?;
        Ok(CertificateBySni {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for a server name, if one covers it.
    fn lookup(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key);
        }
        match name.split_once('.') {
            Some((label, parent)) if !label.is_empty() => self.wildcard.get(parent),
            _ => None,
        }
    }
}

impl ResolvesServerCert for CertificateBySni {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = client_hello
            .server_name()
            .and_then(|name| self.lookup(name))
            .unwrap_or(&self.default);
        Some(key.clone())
    }
}

#[cfg(test)]
mod tests {
    use rustls::ClientConfig;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivateKeyDer;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::tls::client_config;
    use crate::tls::fixtures::{
        ca, files, handshake, insecure, leaf, listener, pair, pem_file, served_leaf, signed,
    };
    use crate::tls::is_h2;
    use crate::tls::upstream::NoCertificateVerification;

    #[tokio::test]
    async fn certificate_by_sni() {
        let a = pair(&["a.example.com"]);
        let b = pair(&["b.example.com"]);
        let w = pair(&["*.w.example.com"]);
        let server = listener(vec![a.clone(), b.clone(), w.clone()]);

        assert_eq!(served_leaf(&server, "a.example.com").await, leaf(&a));
        assert_eq!(served_leaf(&server, "b.example.com").await, leaf(&b));
        assert_eq!(served_leaf(&server, "B.Example.COM").await, leaf(&b));
        // A wildcard covers exactly one label.
        assert_eq!(served_leaf(&server, "x.w.example.com").await, leaf(&w));
        assert_eq!(served_leaf(&server, "w.example.com").await, leaf(&a));
        assert_eq!(served_leaf(&server, "y.x.w.example.com").await, leaf(&a));
        // Unknown name and no SNI at all (an IP address): the first.
        assert_eq!(served_leaf(&server, "c.example.com").await, leaf(&a));
        assert_eq!(served_leaf(&server, "127.0.0.1").await, leaf(&a));
    }

    #[test]
    fn exact_name_wins_over_wildcard_and_first_listed_wins() {
        let star = files(pair(&["*.example.com"]));
        let exact = files(pair(&["a.example.com", "b.example.com"]));
        let later = files(pair(&["b.example.com"]));
        let sni = CertificateBySni::new(&[star, exact.clone(), later]).unwrap();
        let exact_key = pem::certified_key(&exact.cert.pem, &exact.key.pem).unwrap();
        let served = |name| sni.lookup(name).map(|k| k.cert[0].clone());
        assert_eq!(served("a.example.com"), Some(exact_key.cert[0].clone()));
        assert_eq!(served("b.example.com."), Some(exact_key.cert[0].clone()));
        assert_eq!(served("c.example.com"), Some(sni.default.cert[0].clone()));
        assert_eq!(served("example.com"), None);
        assert_eq!(served(".example.com"), None);
    }

    #[test]
    fn listener_without_certificates_is_an_error() {
        let tls = ListenerTls {
            certificates: vec![],
            client_ca: None,
        };
        assert!(server_config(&tls).is_err());
    }

    #[tokio::test]
    async fn alpn_h2_or_http1() {
        let server = listener(vec![pair(&["a.example.com"])]);

        let h2 = client_config(&insecure(), &[b"h2"]).unwrap();
        let done = handshake(server.clone(), h2, "a.example.com").await;
        assert!(is_h2(&done.server.unwrap()));

        let http1 = client_config(&insecure(), &[b"http/1.1"]).unwrap();
        let done = handshake(server, http1, "a.example.com").await;
        let server = done.server.unwrap();
        assert!(!is_h2(&server));
        assert_eq!(server.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    #[tokio::test]
    async fn client_certificates_required_with_client_ca() {
        let ca = ca();
        let tls = ListenerTls {
            certificates: vec![files(pair(&["a.example.com"]))],
            client_ca: Some(pem_file("client-ca.pem", ca.pem())),
        };
        let server = server_config(&tls).unwrap();

        let anonymous = client_config(&insecure(), &[b"http/1.1"]).unwrap();
        let done = handshake(server.clone(), anonymous, "a.example.com").await;
        assert!(done.server.is_err());
        // In TLS 1.3 the client finishes first and learns of the refusal
        // from the server's alert.
        if let Ok(mut client) = done.client {
            assert!(client.read(&mut [0; 1]).await.is_err());
        }

        let (cert, key) = signed(&ca, &["client.example.com"]);
        let with_cert = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification::new(&provider())))
            .with_client_auth_cert(
                pem::parse_certificates(&cert).unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap();
        let done = handshake(server, Arc::new(with_cert), "a.example.com").await;
        assert!(done.client.is_ok());
        let server = done.server.unwrap();
        let presented = &server.get_ref().1.peer_certificates().unwrap()[0];
        assert_eq!(presented, &pem::parse_certificates(&cert).unwrap()[0]);
    }
}
