//! The client side of TLS towards an upstream's `https://` servers: which
//! certificates to trust, and which name to send and verify.
//!
//! This module owns turning a validated [`UpstreamTls`] into a rustls
//! [`ClientConfig`], and the system's root certificates; connecting and
//! choosing the ALPN protocol (from the upstream's `protocol`) is
//! [`crate::upstream`]'s job.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{provider, root_store, VERSIONS};
use crate::config::{pem, UpstreamTls};

/// The rustls configuration for connections to an upstream's `https://`
/// servers, offering `alpn` (the caller's choice of `h2` or `http/1.1`).
///
/// Server certificates are verified against `tls_ca` if given, else the
/// system's roots; with `tls_verify = false` not at all
/// ([`NoCertificateVerification`], and `tls_ca` is then unused).
///
/// # Errors
///
/// A `tls_ca` with no usable CA certificate, or no system roots at all.
pub(crate) fn client_config(tls: &UpstreamTls, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = if tls.verify {
        let roots = match &tls.ca {
            Some(ca) => Arc::new(root_store(ca)?),
            None => system_roots()?,
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| format!("server certificate verifier: {e}"))?;
        match &tls.ca {
            // `tls_ca` may list the server's own (self-signed) certificate,
            // as `curl --cacert` and nginx's `proxy_ssl_trusted_certificate`
            // allow: webpki refuses a trust anchor as an end entity.
            Some(ca) => {
                let pinned =
                    pem::parse_certificates(&ca.pem).map_err(|e| format!("{}: {e}", ca.path.display()))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { webpki, pinned }))
            }
            None => builder.with_webpki_verifier(webpki),
        }
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification::new(&provider)))
    };
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The name to send (SNI) to an upstream server and verify its certificate
/// against: `tls_server_name` if set, else the server's host, a DNS name or
/// an IP address (IPv6 with or without brackets). rustls sends no SNI for an
/// IP address.
///
/// # Errors
///
/// Neither a valid DNS name nor an IP address.
pub(crate) fn server_name(tls: &UpstreamTls, host: &str) -> Result<ServerName<'static>, String> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned()).map_err(|e| format!("`{name}` is not a valid TLS server name: {e}"))
}

/// Verification against `tls_ca` that also accepts a server certificate
/// listed in `tls_ca` itself (a pinned, usually self-signed, certificate):
/// the exact certificate, for a name it covers. Everything else is webpki's
/// verdict. A pinned certificate's validity dates are not checked (webpki
/// has no check for a lone certificate; a pin is replaced when it is).
#[derive(Debug)]
struct PinnedOrWebPki {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused =
            match self
                .webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            {
                Ok(verified) => return Ok(verified),
                Err(refused) => refused,
            };
        let pinned = self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref());
        let covers_name = || {
            webpki::EndEntityCert::try_from(end_entity)
                .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(server_name).is_ok())
        };
        match pinned && covers_name() {
            true => Ok(ServerCertVerified::assertion()),
            false => Err(refused),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A server certificate "verifier" that accepts any certificate chain for
/// any name. Only for an upstream configured with explicit
/// `tls_verify = false` (a test server, a self-signed internal service): the
/// connection is encrypted but not authenticated, so anyone in the path can
/// impersonate the server.
///
/// It still checks the handshake signatures with the provider's algorithms,
/// so the server must at least hold the private key of the certificate it
/// presents.
#[derive(Debug)]
pub(super) struct NoCertificateVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoCertificateVerification {
    pub(super) fn new(provider: &CryptoProvider) -> Self {
        NoCertificateVerification {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoCertificateVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The system's trusted root certificates, loaded on first use and kept for
/// the life of the process: loading reads hundreds of files (or the
/// platform's store), too slow to repeat at every reload, and they change
/// with OS updates, which come with a restart.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS.get_or_init(load_system_roots).clone()
}

fn load_system_roots() -> Result<Arc<RootCertStore>, String> {
    let loaded = rustls_native_certs::load_native_certs();
    // Some unreadable files or unparsable certificates among many are
    // normal on real systems; only no roots at all is fatal.
    for error in &loaded.errors {
        tracing::warn!(%error, "loading the system's root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "system root certificates that are not valid trust anchors were ignored"
        );
    }
    if added == 0 {
        return Err(
            "no system root certificates found (install the CA certificates package, \
                    or set `tls_ca` on the upstream)"
                .to_owned(),
        );
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use rustls::version::TLS12;

    use super::*;
    use crate::tls::fixtures::{ca, handshake, insecure, listener, pair, signed, trusting};

    #[tokio::test]
    async fn tls12_with_verification_off_still_checks_signatures() {
        let server = listener(vec![pair(&["a.example.com"])]);
        let tls12_only = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification::new(&provider())))
            .with_no_client_auth();
        let done = handshake(server, Arc::new(tls12_only), "a.example.com").await;
        let client = done.client.unwrap();
        assert_eq!(
            client.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
    }

    #[tokio::test]
    async fn upstream_verification_against_tls_ca() {
        let ca = ca();
        let backend = listener(vec![signed(&ca, &["backend.internal"])]);
        let unrelated = listener(vec![pair(&["backend.internal"])]);
        let verifying = client_config(&trusting(&ca), &[b"http/1.1"]).unwrap();

        let done = handshake(backend.clone(), verifying.clone(), "backend.internal").await;
        assert!(done.client.is_ok());

        let done = handshake(unrelated.clone(), verifying, "backend.internal").await;
        let error = done.client.unwrap_err().to_string();
        assert!(error.contains("UnknownIssuer"), "{error}");

        // `tls_verify = false` accepts the unrelated self-signed certificate.
        let trusting_all = client_config(&insecure(), &[b"http/1.1"]).unwrap();
        let done = handshake(unrelated, trusting_all, "backend.internal").await;
        assert!(done.client.is_ok());
    }

    #[tokio::test]
    async fn tls_server_name_overrides_the_host() {
        let ca = ca();
        let backend = listener(vec![signed(&ca, &["backend.internal"])]);
        let client = client_config(&trusting(&ca), &[b"http/1.1"]).unwrap();

        let by_host = server_name(&trusting(&ca), "127.0.0.1").unwrap();
        let done = handshake(backend.clone(), client.clone(), &by_host.to_str()).await;
        assert!(done.client.is_err(), "the certificate does not cover 127.0.0.1");

        let tls = UpstreamTls {
            server_name: Some("backend.internal".into()),
            ..trusting(&ca)
        };
        let overridden = server_name(&tls, "127.0.0.1").unwrap();
        assert_eq!(overridden.to_str(), "backend.internal");
        let done = handshake(backend, client, &overridden.to_str()).await;
        assert!(done.client.is_ok());
    }

    #[test]
    fn server_name_of_hosts() {
        let tls = UpstreamTls::default();
        assert!(matches!(
            server_name(&tls, "example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name(&tls, "10.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name(&tls, "[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name(&tls, "::1"), Ok(ServerName::IpAddress(_))));
        assert!(server_name(&tls, "not a name").is_err());
    }
}
