//! A small blocking client for the regkeeper REST API, shared by the CLI and the
//! node-side helpers. It deliberately avoids the server's dependencies (sqlx, axum,
//! cloud SDKs) so the binaries built on it start in milliseconds.

mod federation;
mod sign_in;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regkeeper_wire::{ErrorBody, Sensitive};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use secrecy::zeroize::Zeroizing;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use federation::{github_actions_token, save_settings};

pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

/// The commit the binaries were built from (`build.rs`: `REGKEEPER_COMMIT`, else
/// `git rev-parse`), or `unknown`.
pub const COMMIT: &str = env!("REGKEEPER_COMMIT");

/// What `--version` prints after a program's name, e.g. `0.1.0 (commit 0123456789ab)`;
/// shared by the three binaries and the server's `GET /api/v1/version`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REGKEEPER_COMMIT"),
    ")"
);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach regkeeper at {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected response from regkeeper: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The optional client settings file, `$XDG_CONFIG_HOME/regkeeper/config.toml`
/// (or `~/.config/regkeeper/config.toml`), with `url`, `token` and `ca_file`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    url: Option<String>,
    token: Option<Sensitive>,
    /// Relative to the settings file's directory, as kubeconfig resolves its paths.
    ca_file: Option<PathBuf>,
}

pub struct Client {
    base_url: String,
    token: Option<Sensitive>,
    agent: ureq::Agent,
    sources: SettingSources,
}

/// Where a client's settings came from, so a problem can name the setting to change
/// (`regkeeper doctor`). Names and paths only, never a value that could be secret.
#[derive(Debug, Clone, Default)]
pub struct SettingSources {
    /// `REGKEEPER_URL`, `url in PATH` or `the default`.
    pub url: String,
    /// `REGKEEPER_TOKEN`, `REGKEEPER_TOKEN_FILE (PATH)` or `token in PATH`; `None`
    /// when the client carries no token.
    pub token: Option<String>,
    /// The PEM bundle trusted besides the built-in roots, after the setting that named
    /// it (`REGKEEPER_CA_FILE` or `ca_file in PATH`).
    pub ca_file: Option<(String, PathBuf)>,
}

impl Client {
    /// A client trusting ureq's built-in Mozilla roots for https.
    pub fn new(base_url: &str, token: Option<Sensitive>) -> Self {
        Self::with_tls(base_url, token, None)
    }

    /// The agent is built here, once, so every request of a `Client` shares its TLS
    /// configuration and connection pool. Without `tls`, ureq's own lazily built
    /// configuration (Mozilla roots) is used and nothing is parsed.
    fn with_tls(
        base_url: &str,
        token: Option<Sensitive>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .redirects(0)
            .user_agent(concat!(
                "regkeeper-client/",
                env!("CARGO_PKG_VERSION"),
                "+",
                env!("REGKEEPER_COMMIT")
            ));
        if let Some(tls) = tls {
            builder = builder.tls_config(tls);
        }
        let agent = builder.build();
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            agent,
            sources: SettingSources::default(),
        }
    }

    /// Settings from `REGKEEPER_URL` and `REGKEEPER_TOKEN` (else `REGKEEPER_TOKEN_FILE`,
    /// a file holding the token, as a node mounts a Kubernetes secret), and
    /// `REGKEEPER_CA_FILE` (a PEM bundle trusted besides the built-in roots), each falling
    /// back to the settings file. `environment` looks a variable up (tests pass a map).
    pub fn from_environment(
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        Self::load(environment, true)
    }

    /// The server's address and TLS settings as `from_environment` reads them, without
    /// an API token: for the one call that needs none, the OIDC token exchange of
    /// `regkeeper login`, which is how a job without a token gets one.
    pub fn anonymous_from_environment(
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        Self::load(environment, false)
    }

    fn load(
        environment: &dyn Fn(&str) -> Option<String>,
        needs_token: bool,
    ) -> Result<Self, ClientError> {
        let expected_settings_path = settings_path(environment);
        let settings_path = expected_settings_path.clone().filter(|path| path.is_file());
        let file = match &settings_path {
            Some(path) => {
                // The file may hold the token: read into a buffer that is wiped.
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
                    ClientError::Config(format!("cannot read {}: {error}", path.display()))
                })?);
                toml::from_str::<FileSettings>(&text).map_err(|error| {
                    ClientError::Config(format!("{}: {}", path.display(), error.message()))
                })?
            }
            None => FileSettings::default(),
        };
        let non_empty = |name: &str| environment(name).filter(|value| !value.trim().is_empty());
        let in_file = |key: &str| match &settings_path {
            Some(path) => format!("{key} in {}", path.display()),
            None => key.to_owned(),
        };
        let mut sources = SettingSources::default();
        let url = match (non_empty("REGKEEPER_URL"), file.url) {
            (Some(url), _) => {
                sources.url = "REGKEEPER_URL".to_owned();
                url
            }
            (None, Some(url)) => {
                sources.url = in_file("url");
                url
            }
            (None, None) => {
                sources.url = "the default".to_owned();
                DEFAULT_URL.to_owned()
            }
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "REGKEEPER_URL must start with http:// or https://, not `{url}`"
            )));
        }
        let token = match non_empty("REGKEEPER_TOKEN").map(Zeroizing::new) {
            _ if !needs_token => None,
            Some(token) => {
                sources.token = Some("REGKEEPER_TOKEN".to_owned());
                Some(Sensitive::new(token.trim()))
            }
            None => Some(match non_empty("REGKEEPER_TOKEN_FILE") {
                Some(path) => {
                    sources.token = Some(format!("REGKEEPER_TOKEN_FILE ({path})"));
                    read_token_file(Path::new(&path))?
                }
                None => {
                    sources.token = Some(in_file("token"));
                    file.token
                        .filter(|token| !token.expose().trim().is_empty())
                        .ok_or_else(|| no_token(expected_settings_path.as_deref()))?
                }
            }),
        };
        // Read only when configured: the docker helper starts once per pull.
        let tls = match non_empty("REGKEEPER_CA_FILE") {
            Some(path) => {
                sources.ca_file = Some(("REGKEEPER_CA_FILE".to_owned(), PathBuf::from(&path)));
                Some(tls_config("REGKEEPER_CA_FILE", Path::new(&path))?)
            }
            None => match (file.ca_file, &settings_path) {
                (Some(path), Some(settings)) => {
                    let directory = settings.parent().unwrap_or(Path::new("."));
                    let setting = format!("ca_file in {}", settings.display());
                    let path = directory.join(path);
                    sources.ca_file = Some((setting.clone(), path.clone()));
                    Some(tls_config(&setting, &path)?)
                }
                _ => None,
            },
        };
        let mut client = Self::with_tls(&url, token, tls);
        client.sources = sources;
        Ok(client)
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Where this client's URL, token and CA bundle came from.
    pub fn sources(&self) -> &SettingSources {
        &self.sources
    }

    /// A GET whose answer is returned whatever its status: the status and up to 64 KiB
    /// of the body, for health and readiness probes, whose 503 body says what is wrong.
    /// Sends the token if the client has one.
    pub fn probe(&self, path: &str) -> Result<(u16, String), ClientError> {
        use std::io::Read as _;
        let url = format!("{}{}", self.base_url, path);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {}", token.expose()));
        }
        let response = match request.call() {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => {
                return Err(ClientError::Transport {
                    url: self.base_url.clone(),
                    reason: transport_reason(&transport),
                })
            }
        };
        let status = response.status();
        let mut body = String::new();
        response
            .into_reader()
            .take(64 * 1024)
            .read_to_string(&mut body)
            .map_err(|error| ClientError::Protocol(error.to_string()))?;
        Ok((status, body))
    }

    /// A POST without a body whose successful answer is copied to `sink` as it arrives
    /// (a database backup): how many bytes, after checking the count against the
    /// answer's `Content-Length`, so a cut-off transfer is an error, not a short file.
    pub fn download(&self, path: &str, sink: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        let url = format!("{}{}", self.base_url, path);
        let mut request = self.agent.post(&url);
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {}", token.expose()));
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                return Err(parse_error(status, response))
            }
            Err(ureq::Error::Transport(transport)) => {
                return Err(ClientError::Transport {
                    url: self.base_url.clone(),
                    reason: transport_reason(&transport),
                })
            }
        };
        let expected = response
            .header("Content-Length")
            .and_then(|length| length.parse::<u64>().ok());
        let copied = std::io::copy(&mut response.into_reader(), sink).map_err(|error| {
            ClientError::Transport {
                url: self.base_url.clone(),
                reason: format!("the transfer broke off: {error}"),
            }
        })?;
        match expected {
            Some(expected) if expected != copied => Err(ClientError::Transport {
                url: self.base_url.clone(),
                reason: format!("the transfer broke off after {copied} of {expected} bytes"),
            }),
            None => Err(ClientError::Protocol(
                "the answer has no Content-Length, so its completeness cannot be checked"
                    .to_owned(),
            )),
            Some(_) => Ok(copied),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>("GET", path, None)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call("POST", path, Some(body))
    }

    pub fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call("PATCH", path, Some(body))
    }

    pub fn put<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ClientError> {
        self.call::<B, Empty>("PUT", path, Some(body)).map(|_| ())
    }

    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<(), Empty>("DELETE", path, None).map(|_| ())
    }

    /// A DELETE whose answer has a body to read (what was deleted).
    pub fn delete_for<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>("DELETE", path, None)
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base_url, path);
        let mut request = self
            .agent
            .request(method, &url)
            .set("Accept", "application/json");
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {}", token.expose()));
        }
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match result {
            Ok(response) => parse_success(response),
            Err(ureq::Error::Status(status, response)) => Err(parse_error(status, response)),
            Err(ureq::Error::Transport(transport)) => Err(ClientError::Transport {
                url: self.base_url.clone(),
                reason: transport_reason(&transport),
            }),
        }
    }
}

/// Stands in for "no body" on 204 responses.
#[derive(Deserialize)]
struct Empty {}

fn parse_success<T: DeserializeOwned>(response: ureq::Response) -> Result<T, ClientError> {
    let text = response
        .into_string()
        .map_err(|error| ClientError::Protocol(error.to_string()))?;
    let text = if text.trim().is_empty() {
        "{}"
    } else {
        text.as_str()
    };
    serde_json::from_str(text).map_err(|error| ClientError::Protocol(error.to_string()))
}

fn parse_error(status: u16, response: ureq::Response) -> ClientError {
    let text = response.into_string().unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ClientError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => ClientError::Api {
            status,
            code: format!("http_{status}"),
            message: format!("the server answered HTTP {status}"),
        },
    }
}

/// Appended to a transport error when the server's certificate was refused.
const CA_HINT: &str = "if the server's certificate comes from a private CA, set \
                       REGKEEPER_CA_FILE to that CA's PEM file";

/// What went wrong reaching the server, with the way out when its certificate is not
/// trusted: the usual cause is a private CA in front of regkeeper.
fn transport_reason(transport: &ureq::Transport) -> String {
    let reason = transport.to_string();
    if certificate_refused(transport) {
        format!("{reason}; {CA_HINT}")
    } else {
        reason
    }
}

fn certificate_refused(transport: &ureq::Transport) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(transport);
    while let Some(error) = cause {
        // `io::Error::source` skips the error it wraps, which is where rustls's is.
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|wrapper| wrapper.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if let Some(tls) = inner.unwrap_or(error).downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        cause = inner.unwrap_or(error).source();
    }
    false
}

/// ureq's TLS configuration with the certificates of the PEM bundle at `path` trusted
/// besides the built-in Mozilla roots (the operating system's store is not read, as
/// without the setting). Errors name `setting` and the path, never the contents: a
/// bundle may have been concatenated with a private key, which is skipped.
fn tls_config(setting: &str, path: &Path) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let refused =
        |problem: &str| ClientError::Config(format!("{setting}: {} {problem}", path.display()));
    let pem = Zeroizing::new(std::fs::read(path).map_err(|error| {
        ClientError::Config(format!(
            "{setting}: cannot read {}: {error}",
            path.display()
        ))
    })?);
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        // The parser's errors can quote a line of the file.
        .map_err(|_| refused("is not a valid PEM file"))?;
    if certificates.is_empty() {
        return Err(refused(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (index, certificate) in certificates.into_iter().enumerate() {
        roots.add(certificate).map_err(|_| {
            refused(&format!(
                "has a certificate (number {}) that is not valid X.509",
                index + 1
            ))
        })?;
    }
    // ureq's own default, with these roots: *ring* and TLS 1.2 and 1.3.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| ClientError::Config(format!("{setting}: {error}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

const NO_TOKEN: &str = "no API token";

impl ClientError {
    /// Whether no API token is configured at all (as opposed to a wrong one), so a
    /// consumer can name its other ways in (a role and an OIDC token).
    pub fn is_missing_token(&self) -> bool {
        matches!(self, ClientError::Config(message) if message.starts_with(NO_TOKEN))
    }

    /// Whether the connection failed because the server's TLS certificate was not
    /// trusted (a private CA without REGKEEPER_CA_FILE, or the wrong CA in it).
    pub fn is_certificate_refused(&self) -> bool {
        matches!(self, ClientError::Transport { reason, .. } if reason.ends_with(CA_HINT))
    }
}

/// Every request needs an API token, so its absence is told before any connection is
/// made, with each place a token may come from.
fn no_token(settings_path: Option<&Path>) -> ClientError {
    let settings = settings_path.map_or_else(
        || "$XDG_CONFIG_HOME/regkeeper/config.toml (or ~/.config/regkeeper/config.toml)".to_owned(),
        |path| path.display().to_string(),
    );
    ClientError::Config(format!(
        "{NO_TOKEN}: set REGKEEPER_TOKEN, or REGKEEPER_TOKEN_FILE to a file holding it, or put `token = \"rk_…\"` in {settings}"
    ))
}

/// The token in `REGKEEPER_TOKEN_FILE`, surrounding white space dropped. Errors name
/// the variable and the path, never the contents.
fn read_token_file(path: &Path) -> Result<Sensitive, ClientError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
        ClientError::Config(format!(
            "REGKEEPER_TOKEN_FILE: cannot read {}: {error}",
            path.display()
        ))
    })?);
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::Config(format!(
            "REGKEEPER_TOKEN_FILE: {} is empty",
            path.display()
        )));
    }
    Ok(Sensitive::new(token))
}

fn settings_path(environment: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(directory) = environment("XDG_CONFIG_HOME").filter(|value| !value.is_empty()) {
        return Some(PathBuf::from(directory).join("regkeeper/config.toml"));
    }
    environment("HOME").map(|home| PathBuf::from(home).join(".config/regkeeper/config.toml"))
}

/// A path segment with `/`, `~` and everything else outside the unreserved set
/// percent-encoded, so `acme/ci` stays one segment.
pub fn segment(value: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names_stay_one_segment() {
        assert_eq!(segment("acme/ci"), "acme%2Fci");
        assert_eq!(segment("~admin"), "%7Eadmin");
        assert_eq!(segment("prod_ecr-1"), "prod_ecr-1");
    }

    #[test]
    fn environment_wins_over_the_settings_file() {
        let directory =
            std::env::temp_dir().join(format!("regkeeper-client-test-{}", std::process::id()));
        std::fs::create_dir_all(directory.join("regkeeper")).unwrap();
        std::fs::write(
            directory.join("regkeeper/config.toml"),
            "url = \"http://file:1\"\ntoken = \"rk_file\"\n",
        )
        .unwrap();
        let config_home = directory.to_string_lossy().into_owned();
        let from_file = Client::from_environment(&|name| {
            (name == "XDG_CONFIG_HOME").then(|| config_home.clone())
        })
        .unwrap();
        assert_eq!(from_file.base_url(), "http://file:1");
        assert_eq!(from_file.token.as_ref().unwrap().expose(), "rk_file");
        let from_env = Client::from_environment(&|name| match name {
            "XDG_CONFIG_HOME" => Some(config_home.clone()),
            "REGKEEPER_URL" => Some("http://env:2/".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(from_env.base_url(), "http://env:2");
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn the_token_can_come_from_a_file_and_the_variable_wins_over_it() {
        let directory = std::env::temp_dir().join(format!(
            "regkeeper-client-token-file-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let token_file = directory.join("token");
        std::fs::write(&token_file, "  rk_from_file\n").unwrap();
        let path = token_file.to_string_lossy().into_owned();
        let from_file = Client::from_environment(&|name| {
            (name == "REGKEEPER_TOKEN_FILE").then(|| path.clone())
        })
        .unwrap();
        assert_eq!(from_file.token.as_ref().unwrap().expose(), "rk_from_file");
        let from_variable = Client::from_environment(&|name| match name {
            "REGKEEPER_TOKEN_FILE" => Some(path.clone()),
            "REGKEEPER_TOKEN" => Some("rk_variable".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            from_variable.token.as_ref().unwrap().expose(),
            "rk_variable"
        );

        std::fs::write(&token_file, "\n").unwrap();
        let empty = Client::from_environment(&|name| {
            (name == "REGKEEPER_TOKEN_FILE").then(|| path.clone())
        })
        .err()
        .unwrap();
        assert!(
            empty.to_string().contains("REGKEEPER_TOKEN_FILE"),
            "{empty}"
        );
        let missing = directory.join("absent").to_string_lossy().into_owned();
        let unreadable = Client::from_environment(&|name| {
            (name == "REGKEEPER_TOKEN_FILE").then(|| missing.clone())
        })
        .err()
        .unwrap();
        assert!(
            unreadable.to_string().contains("cannot read"),
            "{unreadable}"
        );
        std::fs::remove_dir_all(&directory).unwrap();
    }

    /// A self-signed CA certificate (P-256, valid until 2126); only parsed here.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBtjCCAV2gAwIBAgIUIU5YYFuzwEf5XwpuoQYPf/FxeycwCgYIKoZIzj0EAwIw
KDEmMCQGA1UEAwwdcmVna2VlcGVyLWNsaWVudCB1bml0IHRlc3QgQ0EwIBcNMjYx
MTIyMDU1OTI1WhgPMjEyNjEwMjkwNTU5MjVaMCgxJjAkBgNVBAMMHXJlZ2tlZXBl
ci1jbGllbnQgdW5pdCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
E7QiWIwLFuY2w7LtNkDp8O3FIi86FPrbzo9dwxGEAuwDqGU3nCA4p1A4lwngDZR8
KQFidgC7mDFyq4cTwViUE6NjMGEwHQYDVR0OBBYEFC1lM4dyIycGE2hRbkcizgt2
PinFMB8GA1UdIwQYMBaAFC1lM4dyIycGE2hRbkcizgt2PinFMA8GA1UdEwEB/wQF
MAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoGCCqGSM49BAMCA0cAMEQCIHXK8abnjan6
3fRWPQm2oj6GdczIiYKaVEj5otv/AfvBAiACF+/FE0AjqU80UM/xOho9ILmQEYPw
0/Qp4sQeY5CZkw==
-----END CERTIFICATE-----
";

    fn scratch_directory(name: &str) -> PathBuf {
        let directory =
            std::env::temp_dir().join(format!("regkeeper-client-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        directory
    }

    fn with_ca_file(path: &Path) -> Result<Client, ClientError> {
        let path = path.to_string_lossy().into_owned();
        Client::from_environment(&|name| match name {
            "REGKEEPER_CA_FILE" => Some(path.clone()),
            "REGKEEPER_TOKEN" => Some("rk_unit".into()),
            _ => None,
        })
    }

    #[test]
    fn a_missing_ca_file_is_refused_naming_the_variable_and_the_path() {
        let missing = scratch_directory("ca-file-missing").join("absent.pem");
        let error = with_ca_file(&missing).err().unwrap().to_string();
        assert!(
            error.starts_with("REGKEEPER_CA_FILE: cannot read"),
            "{error}"
        );
        assert!(error.contains(&missing.display().to_string()), "{error}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_without_quoting_it() {
        let directory = scratch_directory("ca-file-empty");
        let path = directory.join("bundle.pem");
        let no_certificate = "holds no PEM certificate";
        for (contents, problem) in [
            ("", no_certificate),
            ("rk_canary_not_a_certificate\n", no_certificate),
            // A key alone is skipped, which leaves nothing to trust.
            (
                "-----BEGIN PRIVATE KEY-----\nY2FuYXJ5\n-----END PRIVATE KEY-----\n",
                no_certificate,
            ),
            // The PEM parser's own errors would quote this line.
            (
                "-----BEGIN CERTIFICATE-----\nrk_canary_!!\n",
                "is not a valid PEM file",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nY2FuYXJ5\n-----END CERTIFICATE-----\n",
                "(number 1) that is not valid X.509",
            ),
        ] {
            std::fs::write(&path, contents).unwrap();
            let error = with_ca_file(&path).err().unwrap().to_string();
            assert!(
                error.starts_with(&format!("REGKEEPER_CA_FILE: {}", path.display())),
                "{error}"
            );
            assert!(error.contains(problem), "{error}");
            assert!(
                !error.contains("canary") && !error.contains("Y2Fu"),
                "{error}"
            );
        }
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_ca_file_bundle_is_read_from_the_variable_or_the_settings_file() {
        let directory = scratch_directory("ca-file-bundle");
        let bundle = directory.join("bundle.pem");
        // Two certificates and the key an operator concatenated by mistake.
        let key = "-----BEGIN PRIVATE KEY-----\nY2FuYXJ5\n-----END PRIVATE KEY-----\n";
        std::fs::write(&bundle, format!("{TEST_CA}{key}{TEST_CA}")).unwrap();
        assert!(with_ca_file(&bundle).is_ok());

        std::fs::create_dir_all(directory.join("regkeeper")).unwrap();
        std::fs::write(directory.join("regkeeper/ca.pem"), TEST_CA).unwrap();
        let settings = directory.join("regkeeper/config.toml");
        let config_home = directory.to_string_lossy().into_owned();
        let from_settings = |text: &str| {
            std::fs::write(&settings, format!("token = \"rk_unit\"\n{text}")).unwrap();
            Client::from_environment(&|name| {
                (name == "XDG_CONFIG_HOME").then(|| config_home.clone())
            })
        };
        // Relative to the settings file's directory.
        assert!(from_settings("ca_file = \"ca.pem\"\n").is_ok());
        let error = from_settings("ca_file = \"absent.pem\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with(&format!("ca_file in {}: cannot read", settings.display())),
            "{error}"
        );
        // The variable wins over the settings file.
        let path = bundle.to_string_lossy().into_owned();
        assert!(Client::from_environment(&|name| match name {
            "XDG_CONFIG_HOME" => Some(config_home.clone()),
            "REGKEEPER_CA_FILE" => Some(path.clone()),
            "REGKEEPER_TOKEN" => Some("rk_unit".into()),
            _ => None,
        })
        .is_ok());
        std::fs::remove_dir_all(&directory).unwrap();
    }

    /// Issue 12 item 15: without a token anywhere, the client refuses before any
    /// request (the server's answer spoke of HTTP headers), naming every place a token
    /// can come from, the settings file with its path and key included.
    #[test]
    fn a_missing_token_names_every_place_it_can_come_from() {
        let directory = scratch_directory("no-token");
        let config_home = directory.to_string_lossy().into_owned();
        let settings = directory.join("regkeeper/config.toml");
        for settings_text in [
            None,
            Some("url = \"http://127.0.0.1:1\"\n"),
            Some("token = \" \"\n"),
        ] {
            if let Some(text) = settings_text {
                std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
                std::fs::write(&settings, text).unwrap();
            }
            let error = Client::from_environment(&|name| match name {
                "XDG_CONFIG_HOME" => Some(config_home.clone()),
                "REGKEEPER_TOKEN" => Some("  ".into()),
                _ => None,
            })
            .err()
            .expect("no token is an error")
            .to_string();
            for expected in [
                "no API token",
                "REGKEEPER_TOKEN,",
                "REGKEEPER_TOKEN_FILE",
                "token = \"rk_…\"",
                &settings.display().to_string(),
            ] {
                assert!(error.contains(expected), "{expected} missing: {error}");
            }
            assert!(!error.contains("header"), "{error}");
        }
        let without_home = Client::from_environment(&|_| None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            without_home.contains("~/.config/regkeeper/config.toml"),
            "{without_home}"
        );
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn bad_urls_are_refused_with_the_variable_named() {
        let error =
            Client::from_environment(&|name| (name == "REGKEEPER_URL").then(|| "ftp://x".into()))
                .err()
                .unwrap();
        assert!(error.to_string().contains("REGKEEPER_URL"));
    }
}
