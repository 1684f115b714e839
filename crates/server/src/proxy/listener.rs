//! HTTPS for the proxy listener, when the operator gives a certificate and key: the
//! rustls acceptor that `connections::serve` runs each handshake with (in the
//! connection's own task, bounded by the header-read time-out, so a client that never
//! finishes one holds up nobody else).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Reads the certificate chain and private key (PEM) into a TLS acceptor. Errors name
/// the file and never quote its contents.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let certificates = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| {
            anyhow::anyhow!(
                "REGKEEPER_PROXY_TLS_CERT_FILE {}: {error}",
                cert_file.display()
            )
        })?;
    if certificates.is_empty() {
        anyhow::bail!(
            "REGKEEPER_PROXY_TLS_CERT_FILE {}: no PEM certificates found",
            cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|_| {
        anyhow::anyhow!(
            "REGKEEPER_PROXY_TLS_KEY_FILE {}: no PEM private key found",
            key_file.display()
        )
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| anyhow::anyhow!("TLS set-up: {error}"))?
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .map_err(|error| {
        anyhow::anyhow!(
            "REGKEEPER_PROXY_TLS_CERT_FILE and _KEY_FILE do not make a usable pair: {error}"
        )
    })?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client's address, for the auth-failure limiter, over plain TCP or TLS alike.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub SocketAddr);
