//! TLS material of a member: PEM files loaded and checked, the rustls
//! server configuration of an `https://` listener, and the tonic client
//! configuration for dialing other members' `https://` URLs.
//!
//! One crypto provider, ring, is named explicitly in every configuration
//! built here; nothing relies on a process-wide default.
//!
//! The listener side terminates TLS itself ([`crate::node`] accepts with a
//! [`TlsAcceptor`] and hands the decrypted stream on), so that the client
//! listener's HTTP/2 rewriting ([`crate::api::authority`]) sees plaintext.

use crate::config::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The ALPN protocol gRPC speaks.
const ALPN_H2: &[u8] = b"h2";

/// Which file of a [`TlsFiles`] a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
    /// The trusted certificate authorities.
    TrustedCa,
    /// The certificate and key together (e.g. they do not match).
    Pair,
}

/// A TLS file that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    /// The file concerned.
    pub part: Part,
    /// What is wrong, naming the path.
    pub message: String,
}

fn fail(part: Part, path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError {
        part,
        message: format!("{}: {what}", path.display()),
    }
}

fn read(part: Part, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| fail(part, path, e))
}

/// The certificates of the PEM file at `path` (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_of(Part::Cert, path, &read(Part::Cert, path)?)
}

fn certs_of(part: Part, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_in(pem).map_err(|e| fail(part, path, e))
}

/// The certificates of the PEM text `pem` (at least one).
pub fn certs_in(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the PEM file".into());
    }
    Ok(certs)
}

/// The private key of the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_in(&read(Part::Key, path)?).map_err(|e| fail(Part::Key, path, e))
}

/// The private key of the PEM text `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn key_in(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PRIVATE KEY block in the PEM file".to_owned()
        }
        e => format!("not a PEM private key: {e}"),
    })
}

/// The certificate authorities of the PEM file at `path`, each checked to
/// be usable as a trust anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = certs_of(Part::TrustedCa, path, &read(Part::TrustedCa, path)?)?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| {
            fail(
                Part::TrustedCa,
                path,
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration of `files` (ALPN `h2`): the
/// certificate and key, and with a `trusted_ca_file` a verifier that
/// requires client certificates signed by it. As in etcd 3.4, a trusted
/// CA alone requires client certificates; `client_cert_auth` insists on
/// the CA being there. `None` when `files` names no certificate.
pub fn server_config(files: &TlsFiles) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&files.cert_file, &files.key_file) else {
        return Ok(None);
    };
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(Part::Pair, cert_path, e))?;
    let builder = match &files.trusted_ca_file {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| fail(Part::TrustedCa, ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        fail(
            Part::Pair,
            cert_path,
            format!("unusable with the key {}: {e}", key_path.display()),
        )
    })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Some(Arc::new(config)))
}

/// An acceptor for `files`, or `None` when it names no certificate.
pub fn acceptor(files: &TlsFiles) -> Result<Option<TlsAcceptor>, TlsError> {
    Ok(server_config(files)?.map(TlsAcceptor::from))
}

/// The tonic client configuration for dialing other members with
/// `files`: `trusted_ca_file` verifies their certificates, and the
/// certificate and key (if any) identify this member. `None` when `files`
/// names neither a CA nor a certificate.
pub fn dial_config(
    files: &TlsFiles,
) -> Result<Option<tonic::transport::ClientTlsConfig>, TlsError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    if files.trusted_ca_file.is_none() && files.cert_file.is_none() {
        return Ok(None);
    }
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = &files.trusted_ca_file {
        load_roots(ca)?;
        config = config.ca_certificate(Certificate::from_pem(read(Part::TrustedCa, ca)?));
    }
    if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
        load_certs(cert)?;
        load_key(key)?;
        config = config.identity(Identity::from_pem(
            read(Part::Cert, cert)?,
            read(Part::Key, key)?,
        ));
    }
    Ok(Some(config))
}

/// The tonic client configuration with which a member dials other
/// members' `https://` client URLs (lease and membership calls go to the
/// leader's): the client certificate and key identify it, and
/// `--trusted-ca-file` verifies them, else `--peer-trusted-ca-file` (a
/// trusted client CA makes the listener require client certificates, as
/// in etcd, so a cluster with server-only client TLS has none).
pub fn client_url_dial_config(
    cfg: &crate::config::MemberConfig,
) -> Result<Option<tonic::transport::ClientTlsConfig>, TlsError> {
    let mut files = cfg.client_tls.clone();
    if files.trusted_ca_file.is_none() {
        files.trusted_ca_file = cfg.peer_tls.trusted_ca_file.clone();
    }
    dial_config(&files)
}

/// Loads every file `files` names and builds the configurations a start
/// would build, reporting the first problem.
pub fn check(files: &TlsFiles) -> Result<(), TlsError> {
    if let Some(ca) = &files.trusted_ca_file {
        load_roots(ca)?;
    }
    server_config(files)?;
    dial_config(files)?;
    Ok(())
}

/// The host of `url` as a TLS server name (an IPv6 address without its
/// brackets).
pub fn server_name(url: &str) -> Option<String> {
    match url::Url::parse(url).ok()?.host()? {
        url::Host::Domain(d) => Some(d.to_owned()),
        url::Host::Ipv4(a) => Some(a.to_string()),
        url::Host::Ipv6(a) => Some(a.to_string()),
    }
}

/// A tonic endpoint for another member's `url`, dialed at
/// [`crate::debug_faults::dial_url`]; an `https://` URL uses `tls`
/// (verifying the certificate against the host of `url` itself).
pub fn endpoint(
    url: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Endpoint, String> {
    let dial = crate::debug_faults::dial_url(url);
    let endpoint = tonic::transport::Endpoint::from_shared(dial).map_err(|e| e.to_string())?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut config = tls.cloned().unwrap_or_default();
    if let Some(name) = server_name(url) {
        config = config.domain_name(name);
    }
    endpoint.tls_config(config).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_drop_ipv6_brackets() {
        assert_eq!(server_name("https://[::1]:2379").unwrap(), "::1");
        assert_eq!(server_name("https://127.0.0.1:2379").unwrap(), "127.0.0.1");
        assert_eq!(
            server_name("https://m1.example:2379").unwrap(),
            "m1.example"
        );
    }

    #[test]
    fn missing_and_non_pem_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_certs(&missing).unwrap_err();
        assert_eq!(err.part, Part::Cert);
        assert!(err.message.contains("missing.pem"), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let err = load_certs(&junk).unwrap_err();
        assert!(err.message.contains("no CERTIFICATE block"), "{err}");
        let err = load_key(&junk).unwrap_err();
        assert_eq!(err.part, Part::Key);
        assert!(err.message.contains("no PRIVATE KEY block"), "{err}");
        let err = load_roots(&junk).unwrap_err();
        assert_eq!(err.part, Part::TrustedCa);
    }

    #[test]
    fn nothing_configured_builds_nothing() {
        let files = TlsFiles::default();
        assert!(server_config(&files).unwrap().is_none());
        assert!(dial_config(&files).unwrap().is_none());
        check(&files).unwrap();
    }
}
