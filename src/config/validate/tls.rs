//! The TLS keys of listeners (`tls`, `certificates`, `client_ca`) and
//! upstreams (`tls_ca`, `tls_server_name`, `tls_verify`), and reading the PEM
//! files they name.
//!
//! This module owns which PEM files a configuration needs and that each is
//! readable and holds what its key says (through [`super::super::pem`]); a
//! PEM file read here becomes one of the configuration's sources, so that
//! editing it reloads. Building rustls configurations is [`crate::tls`]'s
//! job, never validation's.

use std::sync::Arc;

use toml::Spanned;

use super::super::fs::parent_dir;
use super::super::pem;
use super::super::raw;
use super::super::{CertificateFiles, ListenerTls, PemFile, Source, SourceKind, UpstreamTls};
use super::{At, Validator};

impl Validator<'_> {
    /// `tls_ca`, `tls_server_name` and `tls_verify` of an upstream; `has_https`
    /// tells whether any server uses them.
    pub(super) fn upstream_tls(
        &mut self,
        at: At<'_>,
        name: &str,
        u: &raw::Upstream,
        has_https: bool,
    ) -> UpstreamTls {
        let mut tls = UpstreamTls::default();
        let any_server = u.servers.as_ref().is_some_and(|l| !l.get_ref().is_empty());
        if !has_https && any_server {
            let keys = [
                ("tls_ca", u.tls_ca.as_ref().map(Spanned::span)),
                ("tls_server_name", u.tls_server_name.as_ref().map(Spanned::span)),
                ("tls_verify", u.tls_verify.as_ref().map(Spanned::span)),
            ];
            for (key, span) in keys {
                if let Some(span) = span {
                    self.config.warnings.push(at.error(
                        span,
                        format!(
                            "`{key}` has no effect: upstream `{name}` has no https:// server; remove it or write the servers as \"https://HOST:PORT\""
                        ),
                    ));
                }
            }
        }
        if let Some(ca) = &u.tls_ca {
            tls.ca = self.ca(at, ca, "tls_ca");
        }
        if let Some(server_name) = &u.tls_server_name {
            let text = server_name.get_ref();
            match rustls_pki_types::ServerName::try_from(text.as_str()) {
                Ok(_) => tls.server_name = Some(text.clone()),
                Err(_) => self.errors.push(at.error(
                    server_name.span(),
                    format!(
                        "invalid tls_server_name `{text}`: use the DNS name the servers' certificates are for, like \"api.internal\", or an IP address"
                    ),
                )),
            }
        }
        if let Some(verify) = &u.tls_verify {
            tls.verify = *verify.get_ref();
            if !tls.verify && has_https {
                self.config.warnings.push(at.error(
                    verify.span(),
                    format!(
                        "tls_verify = false: any certificate is accepted from the servers of upstream `{name}`, so anyone on the network path can impersonate them; trust a private CA with tls_ca = \"ca.pem\" instead"
                    ),
                ));
            }
        }
        tls
    }

    /// A listener's `tls`: one `cert` and `key`, or `certificates` entries,
    /// every pair read and checked to belong together, and `client_ca`;
    /// `None` (and errors) otherwise.
    pub(super) fn listener_tls(
        &mut self,
        at: At<'_>,
        name: &str,
        header: usize,
        t: &raw::ListenerTls,
    ) -> Option<ListenerTls> {
        let pairs = self.certificate_pairs(at, name, header, t)?;
        let certificates = self.certificates(at, pairs);
        let client_ca = match &t.client_ca {
            None => Some(None),
            Some(ca) => self.ca(at, ca, "client_ca").map(Some),
        };
        Some(ListenerTls {
            certificates: certificates?,
            client_ca: client_ca?,
        })
    }

    /// The (cert, key) paths of a listener's `tls`, in one of its two
    /// forms; `None` (and an error) for anything in between.
    fn certificate_pairs<'t>(
        &mut self,
        at: At<'_>,
        name: &str,
        header: usize,
        t: &'t raw::ListenerTls,
    ) -> Option<Vec<(&'t Spanned<String>, &'t Spanned<String>)>> {
        let (span, message) = match (&t.cert, &t.key, &t.certificates) {
            (Some(cert), Some(key), None) => return Some(vec![(cert, key)]),
            (None, None, Some(list)) if !list.is_empty() => {
                return Some(
                    list.iter()
                        .map(|p| (&p.get_ref().cert, &p.get_ref().key))
                        .collect(),
                )
            }
            (None, None, Some(_)) => (
                at.line_span(header),
                format!(
                    "listener `{name}` has an empty tls.certificates: add [[listener.{name}.tls.certificates]] tables with cert and key"
                ),
            ),
            (cert, key, Some(_)) => (
                cert.as_ref()
                    .or(key.as_ref())
                    .map_or(header..header, Spanned::span),
                format!(
                    "the tls of listener `{name}` has both `cert`/`key` and `certificates`: use cert and key for one certificate, or only [[listener.{name}.tls.certificates]] tables for several"
                ),
            ),
            (Some(cert), None, None) => (
                cert.span(),
                "`cert` needs its private key: add key = \"PATH\" next to it".to_owned(),
            ),
            (None, Some(key), None) => (
                key.span(),
                "`key` needs its certificate: add cert = \"PATH\" next to it".to_owned(),
            ),
            (None, None, None) => (
                at.line_span(header),
                format!(
                    "listener `{name}` has `tls` without a certificate: add cert = \"cert.pem\" and key = \"key.pem\" to it"
                ),
            ),
        };
        self.errors.push(at.error(span, message));
        None
    }

    /// Every certificate and its key, read and checked to belong together;
    /// `None` when any pair is not (each problem reported at its file).
    fn certificates(
        &mut self,
        at: At<'_>,
        pairs: Vec<(&Spanned<String>, &Spanned<String>)>,
    ) -> Option<Vec<CertificateFiles>> {
        let mut ok = true;
        let mut certificates = Vec::new();
        for (cert, key) in pairs {
            let cert_file = self.pem(at, cert, "certificate");
            let key_file = self.pem(at, key, "key");
            let (Some(cert_file), Some(key_file)) = (cert_file, key_file) else {
                ok = false;
                continue;
            };
            match pem::certified_key(&cert_file.pem, &key_file.pem) {
                Ok(_) => certificates.push(CertificateFiles {
                    cert: cert_file,
                    key: key_file,
                }),
                Err(pem::CertError::Cert(m)) => {
                    ok = false;
                    self.errors.push(at.error(
                        cert.span(),
                        format!("certificate `{}`: {m}", cert_file.path.display()),
                    ));
                }
                Err(pem::CertError::Key(m)) => {
                    ok = false;
                    self.errors
                        .push(at.error(key.span(), format!("key `{}`: {m}", key_file.path.display())));
                }
            }
        }
        ok.then_some(certificates)
    }

    /// A file of CA certificates (`client_ca`, `tls_ca`), read and parsed.
    fn ca(&mut self, at: At<'_>, value: &Spanned<String>, key: &str) -> Option<PemFile> {
        let file = self.pem(at, value, key)?;
        match pem::parse_certificates(&file.pem) {
            Ok(_) => Some(file),
            Err(m) => {
                self.errors
                    .push(at.error(value.span(), format!("{key} `{}`: {m}", file.path.display())));
                None
            }
        }
    }

    /// The PEM file `value` names (relative to this file), read once per
    /// path through the loader's file system and kept as a source.
    fn pem(&mut self, at: At<'_>, value: &Spanned<String>, key: &str) -> Option<PemFile> {
        let text = value.get_ref();
        if text.is_empty() {
            self.errors.push(at.error(
                value.span(),
                format!("empty `{key}` path: give the path of a PEM file, relative to this file or absolute"),
            ));
            return None;
        }
        let path = at.relative(text);
        let read = match self.pem_reads.get(&path) {
            Some(read) => read.clone(),
            None => {
                let read = self
                    .fs
                    .read(&path)
                    .map(Arc::<str>::from)
                    .map_err(|e| e.to_string());
                if let Ok(pem) = &read {
                    self.config.sources.push(Source {
                        path: path.clone(),
                        text: pem.to_string(),
                        kind: SourceKind::Pem,
                    });
                }
                // Watched even when unreadable: creating the file reloads.
                self.config.watch_dirs.push(parent_dir(&path));
                self.pem_reads.insert(path.clone(), read.clone());
                read
            }
        };
        match read {
            Ok(pem) => Some(PemFile { path, pem }),
            Err(e) => {
                self.errors.push(at.error(
                    value.span(),
                    format!("cannot read {key} file {}: {e}", path.display()),
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::tests::*;
    use crate::config::SourceKind;

    /// A self-signed certificate for `name` and its key, as PEM.

    #[test]
    fn listener_tls_forms() {
        let (a_cert, a_key) = pair("a.example.com");
        let (b_cert, b_key) = pair("b.example.com");
        let pems = [
            ("conf.d/certs/a.pem", a_cert.as_str()),
            ("conf.d/certs/a.key", a_key.as_str()),
            ("/etc/b.pem", b_cert.as_str()),
            ("/etc/b.key", b_key.as_str()),
        ];
        let one = "[listener.web]\nbind = \"127.0.0.1:443\"\nupstream = \"app\"\ntls = { cert = \"certs/a.pem\", key = \"certs/a.key\" }\n";
        let (config, errs) = check_with(&[("ginx.toml", UP), ("conf.d/web.toml", one)], &pems);
        assert!(errs.is_empty(), "{errs:?}");
        let tls = config.listeners["web"].tls.as_ref().unwrap();
        assert_eq!(tls.certificates.len(), 1);
        assert_eq!(tls.certificates[0].cert.path, PathBuf::from("conf.d/certs/a.pem"));
        assert_eq!(&*tls.certificates[0].key.pem, a_key.as_str());
        assert_eq!(tls.client_ca, None);
        // Each file is read once and kept as a source, even when named twice.
        let paths: Vec<&Path> = config.sources.iter().map(|s| s.path.as_path()).collect();
        assert_eq!(
            paths,
            [Path::new("conf.d/certs/a.pem"), Path::new("conf.d/certs/a.key")]
        );
        assert!(config.sources.iter().all(|s| s.kind == SourceKind::Pem));

        let several = "[listener.web]\nbind = \"127.0.0.1:443\"\nupstream = \"app\"\n\
                       [listener.web.tls]\nclient_ca = \"certs/a.pem\"\n\
                       [[listener.web.tls.certificates]]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n\
                       [[listener.web.tls.certificates]]\ncert = \"/etc/b.pem\"\nkey = \"/etc/b.key\"\n";
        let (config, errs) = check_with(&[("ginx.toml", UP), ("conf.d/web.toml", several)], &pems);
        assert!(errs.is_empty(), "{errs:?}");
        let tls = config.listeners["web"].tls.as_ref().unwrap();
        assert_eq!(tls.certificates.len(), 2);
        assert_eq!(tls.certificates[1].key.path, PathBuf::from("/etc/b.key"));
        assert_eq!(
            tls.client_ca.as_ref().unwrap().path,
            PathBuf::from("conf.d/certs/a.pem")
        );
        assert_eq!(config.sources.len(), 4);
    }

    #[test]
    fn listener_tls_problems() {
        let (a_cert, a_key) = pair("a.example.com");
        let (_, b_key) = pair("b.example.com");
        let pems = [
            ("a.pem", a_cert.as_str()),
            ("a.key", a_key.as_str()),
            ("b.key", b_key.as_str()),
            ("junk.pem", "hello"),
        ];
        let web = |tls: &str| {
            format!("[listener.web]\nbind = \"127.0.0.1:443\"\nupstream = \"app\"\ntls = {tls}\n{UP}")
        };
        let cases = [
            (
                "{ cert = \"a.pem\", key = \"b.key\" }",
                "ginx.toml:4:31: key `b.key`: the private key does not match the certificate".to_owned(),
            ),
            (
                "{ cert = \"junk.pem\", key = \"a.key\" }",
                format!(
                    "ginx.toml:4:16: certificate `junk.pem`: {}",
                    crate::config::pem::parse_certificates("hello").unwrap_err()
                ),
            ),
            (
                "{ cert = \"none.pem\", key = \"a.key\" }",
                format!(
                    "ginx.toml:4:16: cannot read certificate file none.pem: {}",
                    std::io::Error::from(std::io::ErrorKind::NotFound)
                ),
            ),
            (
                "{ cert = \"a.pem\", key = \"a.key\", client_ca = \"junk.pem\" }",
                format!(
                    "ginx.toml:4:52: client_ca `junk.pem`: {}",
                    crate::config::pem::parse_certificates("hello").unwrap_err()
                ),
            ),
            (
                "{ cert = \"a.pem\" }",
                "ginx.toml:4:16: `cert` needs its private key: add key = \"PATH\" next to it".to_owned(),
            ),
            (
                "{ key = \"a.key\" }",
                "ginx.toml:4:15: `key` needs its certificate: add cert = \"PATH\" next to it".to_owned(),
            ),
            (
                "{ client_ca = \"a.pem\" }",
                "ginx.toml:1:1: listener `web` has `tls` without a certificate: add cert = \"cert.pem\" and key = \"key.pem\" to it".to_owned(),
            ),
            (
                "{ cert = \"a.pem\", key = \"a.key\", certificates = [{ cert = \"a.pem\", key = \"a.key\" }] }",
                "ginx.toml:4:16: the tls of listener `web` has both `cert`/`key` and `certificates`: use cert and key for one certificate, or only [[listener.web.tls.certificates]] tables for several".to_owned(),
            ),
            (
                "{ certificates = [] }",
                "ginx.toml:1:1: listener `web` has an empty tls.certificates: add [[listener.web.tls.certificates]] tables with cert and key".to_owned(),
            ),
            (
                "{ cert = \"\", key = \"a.key\" }",
                "ginx.toml:4:16: empty `certificate` path: give the path of a PEM file, relative to this file or absolute".to_owned(),
            ),
            (
                "{ cert = \"a.pem\", key = \"a.key\", ca = \"a.pem\" }",
                "ginx.toml:4:40: unknown field `ca`, expected one of `cert`, `key`, `certificates`, `client_ca`".to_owned(),
            ),
        ];
        for (tls, expected) in cases {
            let (_, errs) = check_with(&[("ginx.toml", &web(tls))], &pems);
            assert_eq!(errs, [expected], "{tls}");
        }
    }
}
