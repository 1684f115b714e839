//! A throwaway certificate authority, so the peers can speak TLS that clients verify
//! for real instead of being told to skip verification.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A test CA and one server certificate it issued for `127.0.0.1` and `localhost`,
/// written as PEM files into a temporary directory that lives as long as this does.
pub struct TestCa {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    /// DER forms of the same, for in-process TLS servers.
    pub ca_der: Vec<u8>,
    pub server_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
    ca_file: PathBuf,
    server_cert_file: PathBuf,
    server_key_file: PathBuf,
    cert_dir: PathBuf,
    directory: tempfile::TempDir,
}

impl TestCa {
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "regkeeper test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");

        let server_key = KeyPair::generate().expect("server key");
        // rcgen turns names that parse as IP addresses into IP SANs, which Go and
        // rustls both require for https://127.0.0.1.
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("server certificate");

        let directory = tempfile::tempdir().expect("temporary directory");
        let ca_pem = ca_cert.pem();
        let server_pem = server_cert.pem();
        let server_key_pem = server_key.serialize_pem();
        let ca_file = directory.path().join("ca.pem");
        let server_cert_file = directory.path().join("server.pem");
        let server_key_file = directory.path().join("server-key.pem");
        std::fs::write(&ca_file, &ca_pem).expect("write ca.pem");
        std::fs::write(&server_cert_file, &server_pem).expect("write server.pem");
        std::fs::write(&server_key_file, &server_key_pem).expect("write server-key.pem");
        // The layout containers/image (skopeo, podman) reads with --cert-dir: every
        // `*.crt` in it is a trusted CA.
        let cert_dir = directory.path().join("cert-dir");
        std::fs::create_dir(&cert_dir).expect("cert dir");
        std::fs::write(cert_dir.join("ca.crt"), &ca_pem).expect("write ca.crt");

        Self {
            ca_der: ca_cert.der().to_vec(),
            server_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
            ca_pem,
            server_pem,
            server_key_pem,
            ca_file,
            server_cert_file,
            server_key_file,
            cert_dir,
            directory,
        }
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn server_cert_file(&self) -> &Path {
        &self.server_cert_file
    }

    pub fn server_key_file(&self) -> &Path {
        &self.server_key_file
    }

    /// A directory holding only `ca.crt`, for skopeo's `--src-cert-dir`/`--dest-cert-dir`.
    pub fn cert_dir(&self) -> &Path {
        &self.cert_dir
    }

    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn rustls_server_config(&self) -> tokio_rustls::rustls::ServerConfig {
        use tokio_rustls::rustls;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(
                    self.server_der.clone(),
                )],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key_der.clone().into()),
            )
            .expect("server certificate and key")
    }

    /// A reqwest client trusting only this CA.
    pub fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA certificate"),
            )
            .build()
            .expect("HTTP client")
    }
}
