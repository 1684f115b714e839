//! HTTPS for the proxy listener, when the operator gives a certificate and key:
//! `axum::serve` over rustls. Handshakes run in their own tasks with a time-out, so a
//! client that never finishes one holds up nobody else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for `accept`.
const ACCEPT_BACKLOG: usize = 128;

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

pub struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_address: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local_address = listener.local_addr()?;
        let (sender, accepted) = tokio::sync::mpsc::channel(ACCEPT_BACKLOG);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, do not spin.
                        tracing::warn!(error = %error, "proxy.accept_failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(client.address = %peer, error = %error, "proxy.tls_handshake_failed");
                        }
                        Err(_) => {
                            tracing::debug!(client.address = %peer, "proxy.tls_handshake_timed_out");
                        }
                    }
                });
            }
        });
        Ok(Self {
            accepted,
            local_address,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop runs as long as the runtime does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_address)
    }
}

/// The client's address, for the auth-failure limiter, over plain TCP or TLS alike.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for ClientAddress
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddress
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}
