//! TLS: certificates and keys from PEM, the server side of TLS listeners and
//! the client side towards `https://` upstream servers.
//!
//! One crypto provider, chosen here and nowhere else: *ring*.
//!
//! This module turns validated configuration into rustls configurations. It
//! reads no files (PEM texts arrive in [`crate::config::PemFile`], read with
//! the rest of the configuration) and never decides policy: which listener
//! uses which certificate is configuration.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{CertificateFiles, ListenerTls, PemFile, UpstreamTls};

/// The crypto provider every TLS configuration of ginx uses.
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
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        CertError::Key(format!(
            "no private key found ({e}): expected a PKCS#1, PKCS#8 or SEC1 PEM block"
        ))
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            CertError::Key("the private key does not match the certificate".to_owned())
        }
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

/// The ALPN protocols a TLS listener offers, most preferred first.
/// `http/1.0` too: a client that offers only that would otherwise be
/// refused with `no_application_protocol`, where nginx serves it.
const LISTENER_ALPN: [&[u8]; 3] = [b"h2", b"http/1.1", b"http/1.0"];

/// The rustls configuration of a TLS listener: its certificates chosen by
/// SNI ([`CertificateBySni`]), ALPN `h2` and `http/1.1`, TLS 1.3 and 1.2,
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
        .with_protocol_versions(&[&TLS13, &TLS12])
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
            let key = certified_key(&files.cert.pem, &files.key.pem).map_err(|e| match e {
                CertError::Cert(e) => format!("{}: {e}", files.cert.path.display()),
                CertError::Key(e) => format!("{}: {e}", files.key.path.display()),
            })?;
            let key = Arc::new(key);
            let leaf = key
                .end_entity_cert()
                .map_err(|e| format!("{}: {e}", files.cert.path.display()))?;
            let names = certificate_names(leaf).map_err(|e| format!("{}: {e}", files.cert.path.display()))?;
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
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = if tls.verify {
        let roots = match &tls.ca {
            Some(ca) => Arc::new(root_store(ca)?),
            None => system_roots()?,
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| format!("server certificate verifier: {e}"))?;
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification {
                algorithms: provider.signature_verification_algorithms,
            }))
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
struct NoCertificateVerification {
    algorithms: WebPkiSupportedAlgorithms,
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

/// The CA certificates of a `client_ca` or `tls_ca` file as trust anchors.
fn root_store(ca: &PemFile) -> Result<RootCertStore, String> {
    let certs = parse_certificates(&ca.pem).map_err(|e| format!("{}: {e}", ca.path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.path.display()))?;
    }
    Ok(roots)
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

/// The server side of a TLS handshake on an accepted connection, bounded by
/// `timeout` so that a client that connects and sends nothing cannot hold a
/// connection (and its task) forever.
///
/// A failed handshake is closed by [`close_after_alert`], so that the
/// client reads the alert saying why.
///
/// # Errors
///
/// The handshake failed, or did not finish within `timeout`
/// ([`io::ErrorKind::TimedOut`]).
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream).into_fallible()).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err((error, stream))) => {
            // Boxed: rare, and its read buffer would otherwise be part of
            // every connection task's state.
            Box::pin(close_after_alert(stream)).await;
            Err(error)
        }
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake not done within {timeout:?}"),
        )),
    }
}

/// How long [`close_after_alert`] reads what the client still sends.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// Close a connection whose handshake failed after rustls wrote its alert:
/// end the sending side (FIN after the alert), then read and discard what
/// the client sends until it closes, for at most [`ALERT_LINGER`].
///
/// Closing at once would reset the connection whenever the client's next
/// bytes are unread, and a reset makes the client's system drop the alert
/// or the client give up before reading it. That is the common case for a
/// refused client certificate: in TLS 1.3 the client sends its first request
/// right behind its certificate, and curl then reports `getpeername()
/// failed` instead of `alert certificate required`.
async fn close_after_alert(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut discard = [0u8; 4096];
    let drain = async { while let Ok(1..) = stream.read(&mut discard).await {} };
    let _ = tokio::time::timeout(ALERT_LINGER, drain).await;
}

/// Whether the client and the listener agreed on HTTP/2 by ALPN.
pub(crate) fn is_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Instant;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_rustls::{client, TlsConnector};

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
    fn garbage_is_reported_per_file() {
        let (cert, key) = pair(&["a.example.com"]);
        assert!(matches!(certified_key("hello", &key), Err(CertError::Cert(_))));
        assert!(matches!(certified_key(&cert, "hello"), Err(CertError::Key(_))));
    }

    fn pem_file(name: &str, pem: String) -> PemFile {
        PemFile {
            path: PathBuf::from(name),
            pem: pem.into(),
        }
    }

    fn files((cert, key): (String, String)) -> CertificateFiles {
        CertificateFiles {
            cert: pem_file("cert.pem", cert),
            key: pem_file("key.pem", key),
        }
    }

    fn listener(pairs: Vec<(String, String)>) -> Arc<ServerConfig> {
        let tls = ListenerTls {
            certificates: pairs.into_iter().map(files).collect(),
            client_ca: None,
        };
        server_config(&tls).unwrap()
    }

    /// A test CA (its own distinguished name, so that nothing else looks
    /// issued by it).
    fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "ginx test CA");
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A leaf certificate for `names` signed by `ca`, and its key.
    fn signed(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn insecure() -> UpstreamTls {
        UpstreamTls {
            verify: false,
            ..UpstreamTls::default()
        }
    }

    fn trusting(ca: &CertifiedIssuer<'static, KeyPair>) -> UpstreamTls {
        UpstreamTls {
            ca: Some(pem_file("ca.pem", ca.pem())),
            ..UpstreamTls::default()
        }
    }

    struct Handshake {
        client: io::Result<client::TlsStream<TcpStream>>,
        server: io::Result<TlsStream<TcpStream>>,
    }

    /// One TLS handshake over 127.0.0.1 between a listener with `server`
    /// (through [`accept`]) and a client with `client` sending `name`.
    async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> Handshake {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server);
        let server = tokio::spawn(async move {
            let (stream, _) = socket.accept().await.unwrap();
            accept(&acceptor, stream, Duration::from_secs(5)).await
        });
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let client = TlsConnector::from(client).connect(name, stream).await;
        Handshake {
            client,
            server: server.await.unwrap(),
        }
    }

    /// The leaf certificate the server presented to a client sending `name`.
    async fn served_leaf(server: &Arc<ServerConfig>, name: &str) -> CertificateDer<'static> {
        let client = client_config(&insecure(), &[b"http/1.1"]).unwrap();
        let done = handshake(server.clone(), client, name).await;
        let client = done.client.unwrap();
        client.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    fn leaf((cert, _): &(String, String)) -> CertificateDer<'static> {
        parse_certificates(cert).unwrap().remove(0)
    }

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
        let exact_key = certified_key(&exact.cert.pem, &exact.key.pem).unwrap();
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
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification {
                algorithms: provider().signature_verification_algorithms,
            }))
            .with_client_auth_cert(
                parse_certificates(&cert).unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap();
        let done = handshake(server, Arc::new(with_cert), "a.example.com").await;
        assert!(done.client.is_ok());
        let server = done.server.unwrap();
        let presented = &server.get_ref().1.peer_certificates().unwrap()[0];
        assert_eq!(presented, &parse_certificates(&cert).unwrap()[0]);
    }

    #[tokio::test]
    async fn tls12_with_verification_off_still_checks_signatures() {
        let server = listener(vec![pair(&["a.example.com"])]);
        let tls12_only = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification {
                algorithms: provider().signature_verification_algorithms,
            }))
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

    #[tokio::test]
    async fn handshake_times_out_on_a_silent_client() {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = socket.local_addr().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = socket.accept().await.unwrap();
        let acceptor = TlsAcceptor::from(listener(vec![pair(&["a.example.com"])]));

        let start = Instant::now();
        let timeout = Duration::from_millis(200);
        let error = accept(&acceptor, stream, timeout).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= timeout && start.elapsed() < Duration::from_secs(2));
    }
}
