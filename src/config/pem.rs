//! What the PEM files a configuration names contain: certificate chains,
//! private keys, and the names a certificate covers.
//!
//! This module owns reading PEM and X.509 into rustls' types and saying, in
//! words that follow the file name, what is wrong with them. Validation
//! ([`super::validate`]) calls it to reject a bad file with its location;
//! building rustls configurations from what passed is [`crate::tls`]'s job.
//!
//! The crypto provider lives here too, although [`crate::tls`] is where it
//! serves: checking that a key loads and matches its certificate needs one,
//! and validation must accept exactly the keys the listeners will serve
//! with. Here, at the lowest layer that needs it, it is chosen once.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider every TLS configuration of ginx uses: *ring*.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM text, in order.
///
/// # Errors
///
/// No certificate in the text, or one that is not valid PEM.
pub(crate) fn parse_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a valid PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found: expected one or more `-----BEGIN CERTIFICATE-----` blocks".into());
    }
    Ok(certs)
}

/// A certificate chain (leaf first) and its private key (PKCS#1, PKCS#8 or
/// SEC1), checked to belong together.
///
/// # Errors
///
/// What is wrong, ready to follow the file name: unparsable PEM, no key, an
/// unsupported key type, or a key that does not match the certificate.
pub(crate) fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, CertError> {
    let chain = parse_certificates(cert_pem).map_err(CertError::Cert)?;
    // A PEM block that is not a certificate would otherwise surface from
    // the key check below as a key error ("invalid peer certificate").
    certificate_names(&chain[0]).map_err(CertError::Cert)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        CertError::Key(format!(
            "no private key found ({e}): expected a PKCS#1, PKCS#8 or SEC1 PEM block"
        ))
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            CertError::Key("the private key does not match the certificate".to_owned())
        }
        rustls::Error::InvalidCertificate(e) => CertError::Cert(format!("unusable certificate: {e}")),
        other => CertError::Key(format!("unusable private key: {other}")),
    })?;
    Ok(certified)
}

/// What is wrong with a certificate/key pair, and in which of the two files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertError {
    /// The certificate file.
    #[error("{0}")]
    Cert(String),
    /// The key file (including a key that does not match).
    #[error("{0}")]
    Key(String),
}

/// The DNS names (subject alternative names) the leaf certificate covers,
/// lowercase; wildcards stay as written (`*.example.com`).
///
/// # Errors
///
/// The certificate cannot be parsed as X.509.
pub(crate) fn certificate_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let cert =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("not a valid X.509 certificate: {e:?}"))?;
    Ok(cert.valid_dns_names().map(str::to_ascii_lowercase).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn matching_pair_and_names() {
        let (cert, key) = pair(&["a.example.com", "*.b.example.com"]);
        let certified = certified_key(&cert, &key).unwrap();
        let names = certificate_names(certified.end_entity_cert().unwrap()).unwrap();
        assert_eq!(names, ["a.example.com", "*.b.example.com"]);
    }

    #[test]
    fn mismatched_key_is_a_key_error() {
        let (cert, _) = pair(&["a.example.com"]);
        let (_, other_key) = pair(&["a.example.com"]);
        assert_eq!(
            certified_key(&cert, &other_key).unwrap_err(),
            CertError::Key("the private key does not match the certificate".into())
        );
    }

    #[test]
    fn a_block_that_is_not_a_certificate_is_a_certificate_error() {
        let (_, key) = pair(&["a.example.com"]);
        let not_a_certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = certified_key(not_a_certificate, &key).unwrap_err();
        assert!(
            matches!(&error, CertError::Cert(m) if m.starts_with("not a valid X.509 certificate")),
            "{error:?}"
        );
    }

    #[test]
    fn garbage_is_reported_per_file() {
        let (cert, key) = pair(&["a.example.com"]);
        assert!(matches!(certified_key("hello", &key), Err(CertError::Cert(_))));
        assert!(matches!(certified_key(&cert, "hello"), Err(CertError::Key(_))));
    }
}
