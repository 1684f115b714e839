//! One typed configuration, loaded once at start from defaults, then an optional TOML
//! file, then `REGKEEPER_*` environment variables, then command-line flags, and
//! validated with errors that name the offending key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::{Host, Url};
use zeroize::Zeroizing;

mod network;
mod sign_in;

pub use sign_in::SingleSignOn;

pub use network::{ConnectionLimits, TokenRealmGrant};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_DATA_DIR: &str = "./regkeeper-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_AZURE_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Where the database is: an SQLite file, or a URL (which may hold a password, so it
/// is never printed whole).
#[derive(Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Url(SecretString),
}

impl fmt::Debug for Database {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(formatter, "Sqlite({})", path.display()),
            Self::Url(_) => formatter.write_str("Url([REDACTED])"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// Private networks that outbound requests may reach anyway.
    pub allow_networks: Vec<IpNet>,
    /// Extra CA certificates (PEM) trusted for outbound TLS.
    pub ca_file: Option<PathBuf>,
    /// `host:port`s that may be reached over plain http.
    pub http_registries: Vec<String>,
    /// How long one outbound request may take (`None`: the outbound module's default).
    pub timeout: Option<std::time::Duration>,
    /// Token realms on other hosts that a registry's login may be sent to
    /// (`REGKEEPER_OUTBOUND_TOKEN_REALMS`).
    pub token_realms: Vec<TokenRealmGrant>,
}

/// Where sync targets may deliver: operator choices, never a tenant's.
#[derive(Debug, Clone, Default)]
pub struct SyncConfig {
    /// File targets write below `ROOT/WORKSPACE/`; they are refused without a root.
    pub file_root: Option<PathBuf>,
    /// How to reach a Kubernetes cluster; Kubernetes targets are refused without it.
    pub kubernetes: Option<KubernetesAccess>,
    /// Namespaces Kubernetes targets may name; `*` allows any.
    pub kubernetes_namespaces: Vec<String>,
}

impl SyncConfig {
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        self.kubernetes_namespaces
            .iter()
            .any(|allowed| allowed == "*" || allowed == namespace)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubernetesAccess {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database: Database,
    pub listen: SocketAddr,
    pub proxy_listen: Option<SocketAddr>,
    pub bootstrap_token: Option<SecretString>,
    pub master_key_file: PathBuf,
    pub outbound: OutboundConfig,
    pub allow_ambient_aws_credentials: bool,
    /// `REGKEEPER_AMBIENT_AWS_ACCOUNTS`: the AWS accounts (12-digit ids) whose registries
    /// ambient credentials may reach; `None` means the server's own account (asked of
    /// STS GetCallerIdentity when first needed).
    pub ambient_aws_accounts: Option<Vec<String>>,
    /// `AWS_ENDPOINT_URL`, read like every other setting so tests need not touch the
    /// process environment; the SDK still honours its own service-specific variables.
    pub aws_endpoint_url: Option<String>,
    /// Azure AD, where ACR service principals get their tokens
    /// (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub azure_authority_url: Url,
    /// Google's OAuth 2.0 token endpoint, where service-account keys become access
    /// tokens.
    pub google_token_url: Url,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub sync: SyncConfig,
    pub proxy: ProxyConfig,
    /// Bounds on client connections, for the API and proxy listeners alike.
    pub connections: ConnectionLimits,
    /// The OIDC provider people sign in with (`REGKEEPER_OIDC_*`), if any.
    pub single_sign_on: Option<SingleSignOn>,
    /// `REGKEEPER_CONSOLE_TOKEN_SIGN_IN`: whether the console takes an API token.
    pub console_token_sign_in: bool,
}

/// The pull-through proxy's settings besides its address (`proxy_listen`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `REGKEEPER_PROXY_CACHE_DIR`: where verified blobs are kept; no cache when unset.
    pub cache_dir: Option<PathBuf>,
    /// `REGKEEPER_PROXY_CACHE_MAX_BYTES`: the cache's size cap.
    pub cache_max_bytes: u64,
    /// `REGKEEPER_PROXY_TLS_CERT_FILE` and `REGKEEPER_PROXY_TLS_KEY_FILE`: PEM files for
    /// HTTPS on the proxy listener; plain HTTP when unset.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// The blob cache's size when none is given.
pub const DEFAULT_PROXY_CACHE_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

impl fmt::Debug for Config {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database", &self.database)
            .field("listen", &self.listen)
            .field("proxy_listen", &self.proxy_listen)
            .field(
                "bootstrap_token",
                &self.bootstrap_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("master_key_file", &self.master_key_file)
            .field("outbound", &self.outbound)
            .field(
                "allow_ambient_aws_credentials",
                &self.allow_ambient_aws_credentials,
            )
            .field("ambient_aws_accounts", &self.ambient_aws_accounts)
            .field("aws_endpoint_url", &self.aws_endpoint_url)
            .field("azure_authority_url", &self.azure_authority_url.as_str())
            .field("google_token_url", &self.google_token_url.as_str())
            .field("max_body_bytes", &self.max_body_bytes)
            .field("log_format", &self.log_format)
            .field("sync", &self.sync)
            .field("proxy", &self.proxy)
            .field("connections", &self.connections)
            .field("single_sign_on", &self.single_sign_on)
            .field("console_token_sign_in", &self.console_token_sign_in)
            .finish()
    }
}

/// The settings as they may appear in the file; every one optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    /// May hold a password: read into a string that is wiped on drop.
    database_url: Option<SecretString>,
    listen: Option<String>,
    proxy_listen: Option<String>,
    bootstrap_token: Option<SecretString>,
    master_key_file: Option<PathBuf>,
    outbound_allow_networks: Option<Vec<String>>,
    outbound_ca_file: Option<PathBuf>,
    outbound_http_registries: Option<Vec<String>>,
    outbound_timeout_seconds: Option<u64>,
    outbound_token_realms: Option<Vec<String>>,
    header_read_timeout_seconds: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_address: Option<u64>,
    allow_ambient_aws_credentials: Option<bool>,
    ambient_aws_accounts: Option<Vec<String>>,
    azure_authority_url: Option<String>,
    google_token_url: Option<String>,
    max_body_bytes: Option<usize>,
    log_format: Option<String>,
    sync_file_root: Option<PathBuf>,
    sync_kubeconfig: Option<String>,
    sync_kubernetes_namespaces: Option<Vec<String>>,
    proxy_cache_dir: Option<PathBuf>,
    proxy_cache_max_bytes: Option<ByteSize>,
    proxy_tls_cert_file: Option<PathBuf>,
    proxy_tls_key_file: Option<PathBuf>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret_file: Option<PathBuf>,
    oidc_username_claim: Option<String>,
    oidc_auto_create: Option<bool>,
    console_token_sign_in: Option<bool>,
}

/// A size in the file: a number of bytes, or text such as `10GiB`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

/// Values given on the command line (or, for the bootstrap token, on standard input
/// with `--bootstrap-token-stdin`), which win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub database_url: Option<SecretString>,
    pub proxy_listen: Option<String>,
    pub bootstrap_token: Option<SecretString>,
}

impl Config {
    /// Loads the configuration. `environment` looks up a variable; production passes
    /// `std::env::var`, tests pass a map.
    pub fn load(
        file: Option<&Path>,
        environment: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let settings = match file {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let env = |name: &str| environment(name).filter(|value| !value.is_empty());
        let data_dir = env("REGKEEPER_DATA_DIR")
            .map(PathBuf::from)
            .or(settings.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = overrides
            .database_url
            .clone()
            .or_else(|| env("REGKEEPER_DATABASE_URL").map(SecretString::from))
            .or(settings.database_url);
        let database = match database_url {
            None => Database::Sqlite(data_dir.join("regkeeper.db")),
            Some(url) => {
                let text = url.expose_secret();
                if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                    Database::Url(url)
                } else if let Some(path) = text.strip_prefix("sqlite://") {
                    Database::Sqlite(PathBuf::from(path))
                } else {
                    return Err(ConfigError::Invalid {
                        key: "REGKEEPER_DATABASE_URL",
                        message: "expected postgres://USER@HOST/DB or sqlite://PATH".into(),
                    });
                }
            }
        };
        let listen = parse_address(
            "REGKEEPER_LISTEN",
            overrides
                .listen
                .clone()
                .or_else(|| env("REGKEEPER_LISTEN"))
                .or(settings.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        )?;
        let proxy_listen = overrides
            .proxy_listen
            .clone()
            .or_else(|| env("REGKEEPER_PROXY_LISTEN"))
            .or(settings.proxy_listen)
            .map(|value| parse_address("REGKEEPER_PROXY_LISTEN", value))
            .transpose()?;
        let bootstrap_token = overrides
            .bootstrap_token
            .clone()
            .or_else(|| env("REGKEEPER_BOOTSTRAP_TOKEN").map(SecretString::from))
            .or(settings.bootstrap_token)
            .map(|token| validate_bootstrap_token(token.expose_secret()))
            .transpose()?;
        let master_key_file = env("REGKEEPER_MASTER_KEY_FILE")
            .map(PathBuf::from)
            .or(settings.master_key_file)
            .unwrap_or_else(|| data_dir.join("master.key"));
        let allow_networks = list(env("REGKEEPER_OUTBOUND_ALLOW_NETWORKS"))
            .or(settings.outbound_allow_networks)
            .unwrap_or_default()
            .iter()
            .map(|network| parse_network(network))
            .collect::<Result<Vec<_>, _>>()?;
        let ca_file = env("REGKEEPER_OUTBOUND_CA_FILE")
            .map(PathBuf::from)
            .or(settings.outbound_ca_file);
        if let Some(path) = &ca_file {
            if !path.is_file() {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_OUTBOUND_CA_FILE",
                    message: format!("{} is not a readable file", path.display()),
                });
            }
        }
        let http_registries = list(env("REGKEEPER_OUTBOUND_HTTP_REGISTRIES"))
            .or(settings.outbound_http_registries)
            .unwrap_or_default()
            .into_iter()
            .map(|registry| validate_host_port(registry.to_ascii_lowercase()))
            .collect::<Result<Vec<_>, _>>()?;
        let outbound_timeout_seconds = match env("REGKEEPER_OUTBOUND_TIMEOUT_SECONDS") {
            Some(value) => Some(value.trim().parse().map_err(|_| ConfigError::Invalid {
                key: "REGKEEPER_OUTBOUND_TIMEOUT_SECONDS",
                message: format!("`{value}` is not a whole number of seconds"),
            })?),
            None => settings.outbound_timeout_seconds,
        };
        if let Some(seconds) = outbound_timeout_seconds {
            if !(1..=600).contains(&seconds) {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_OUTBOUND_TIMEOUT_SECONDS",
                    message: "must be between 1 and 600".into(),
                });
            }
        }
        let token_realms = list(env("REGKEEPER_OUTBOUND_TOKEN_REALMS"))
            .or(settings.outbound_token_realms)
            .unwrap_or_default()
            .iter()
            .map(|entry| TokenRealmGrant::parse(entry))
            .collect::<Result<Vec<_>, _>>()?;
        let connections = ConnectionLimits::load(
            &env,
            settings.header_read_timeout_seconds,
            settings.max_connections,
            settings.max_connections_per_address,
        )?;
        let allow_ambient_aws_credentials = match env("REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS") {
            Some(value) => parse_bool("REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS", &value)?,
            None => settings.allow_ambient_aws_credentials.unwrap_or(false),
        };
        let ambient_aws_accounts = list(env("REGKEEPER_AMBIENT_AWS_ACCOUNTS"))
            .or(settings.ambient_aws_accounts)
            .map(|accounts| {
                accounts
                    .into_iter()
                    .map(|account| validate_aws_account(account.trim().to_owned()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let azure_authority_url = parse_endpoint(
            "REGKEEPER_AZURE_AUTHORITY_URL",
            env("REGKEEPER_AZURE_AUTHORITY_URL")
                .or(settings.azure_authority_url)
                .as_deref()
                .unwrap_or(DEFAULT_AZURE_AUTHORITY_URL),
        )?;
        let google_token_url = parse_endpoint(
            "REGKEEPER_GOOGLE_TOKEN_URL",
            env("REGKEEPER_GOOGLE_TOKEN_URL")
                .or(settings.google_token_url)
                .as_deref()
                .unwrap_or(DEFAULT_GOOGLE_TOKEN_URL),
        )?;
        let max_body_bytes = match env("REGKEEPER_MAX_BODY_BYTES") {
            Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
                key: "REGKEEPER_MAX_BODY_BYTES",
                message: format!("`{value}` is not a number of bytes"),
            })?,
            None => settings.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        };
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::Invalid {
                key: "REGKEEPER_MAX_BODY_BYTES",
                message: "must be between 1024 and 67108864".into(),
            });
        }
        let log_format = match env("REGKEEPER_LOG_FORMAT")
            .or(settings.log_format)
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_LOG_FORMAT",
                    message: format!("`{other}` is not text or json"),
                })
            }
        };
        let aws_endpoint_url = env("AWS_ENDPOINT_URL");
        let sync = load_sync(
            env("REGKEEPER_SYNC_FILE_ROOT")
                .map(PathBuf::from)
                .or(settings.sync_file_root),
            env("REGKEEPER_SYNC_KUBECONFIG").or(settings.sync_kubeconfig),
            list(env("REGKEEPER_SYNC_KUBERNETES_NAMESPACES"))
                .or(settings.sync_kubernetes_namespaces)
                .unwrap_or_default(),
        )?;
        let proxy = load_proxy(
            env("REGKEEPER_PROXY_CACHE_DIR")
                .map(PathBuf::from)
                .or(settings.proxy_cache_dir),
            match env("REGKEEPER_PROXY_CACHE_MAX_BYTES") {
                Some(text) => Some(ByteSize::Text(text)),
                None => settings.proxy_cache_max_bytes,
            },
            env("REGKEEPER_PROXY_TLS_CERT_FILE")
                .map(PathBuf::from)
                .or(settings.proxy_tls_cert_file),
            env("REGKEEPER_PROXY_TLS_KEY_FILE")
                .map(PathBuf::from)
                .or(settings.proxy_tls_key_file),
        )?;
        let (single_sign_on, console_token_sign_in) = sign_in::load(sign_in::SignInSources {
            issuer: env("REGKEEPER_OIDC_ISSUER").or(settings.oidc_issuer),
            client_id: env("REGKEEPER_OIDC_CLIENT_ID").or(settings.oidc_client_id),
            client_secret_file: env("REGKEEPER_OIDC_CLIENT_SECRET_FILE")
                .map(PathBuf::from)
                .or(settings.oidc_client_secret_file),
            username_claim: env("REGKEEPER_OIDC_USERNAME_CLAIM").or(settings.oidc_username_claim),
            auto_create: env("REGKEEPER_OIDC_AUTO_CREATE")
                .or(settings.oidc_auto_create.map(|value| value.to_string())),
            token_sign_in: env("REGKEEPER_CONSOLE_TOKEN_SIGN_IN").or(settings
                .console_token_sign_in
                .map(|value| value.to_string())),
        })?;
        Ok(Self {
            single_sign_on,
            console_token_sign_in,
            connections,
            proxy,
            sync,
            aws_endpoint_url,
            data_dir,
            database,
            listen,
            proxy_listen,
            bootstrap_token,
            master_key_file,
            outbound: OutboundConfig {
                allow_networks,
                ca_file,
                http_registries,
                timeout: outbound_timeout_seconds.map(std::time::Duration::from_secs),
                token_realms,
            },
            allow_ambient_aws_credentials,
            ambient_aws_accounts,
            azure_authority_url,
            google_token_url,
            max_body_bytes,
            log_format,
        })
    }
}

fn load_proxy(
    cache_dir: Option<PathBuf>,
    cache_max_bytes: Option<ByteSize>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
) -> Result<ProxyConfig, ConfigError> {
    const KEY: &str = "REGKEEPER_PROXY_CACHE_MAX_BYTES";
    let cache_max_bytes = match cache_max_bytes {
        None => DEFAULT_PROXY_CACHE_MAX_BYTES,
        Some(ByteSize::Bytes(bytes)) => bytes,
        Some(ByteSize::Text(text)) => {
            parse_byte_size(&text).ok_or_else(|| ConfigError::Invalid {
                key: KEY,
                message: format!("`{text}` is not a size such as 1073741824, 512MiB or 10GiB"),
            })?
        }
    };
    if cache_max_bytes < 1024 * 1024 {
        return Err(ConfigError::Invalid {
            key: KEY,
            message: "must be at least 1 MiB".into(),
        });
    }
    let tls = match (cert_file, key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            for (key_name, path) in [
                ("REGKEEPER_PROXY_TLS_CERT_FILE", &cert),
                ("REGKEEPER_PROXY_TLS_KEY_FILE", &key),
            ] {
                if !path.is_file() {
                    return Err(ConfigError::Invalid {
                        key: key_name,
                        message: format!("{} is not a readable file", path.display()),
                    });
                }
            }
            Some((cert, key))
        }
        (Some(_), None) => {
            return Err(ConfigError::Invalid {
                key: "REGKEEPER_PROXY_TLS_KEY_FILE",
                message: "required with REGKEEPER_PROXY_TLS_CERT_FILE".into(),
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "REGKEEPER_PROXY_TLS_CERT_FILE",
                message: "required with REGKEEPER_PROXY_TLS_KEY_FILE".into(),
            })
        }
    };
    Ok(ProxyConfig {
        cache_dir,
        cache_max_bytes,
        tls,
    })
}

/// `1073741824`, `512MiB`, `10GiB`, `2TiB` (also `KB`/`MB`/`GB` in powers of ten).
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

fn load_sync(
    file_root: Option<PathBuf>,
    kubeconfig: Option<String>,
    kubernetes_namespaces: Vec<String>,
) -> Result<SyncConfig, ConfigError> {
    // Canonical, so a later change of working directory or a symlinked root cannot
    // move where files land.
    let file_root = file_root
        .map(|root| {
            std::fs::canonicalize(&root)
                .ok()
                .filter(|root| root.is_dir())
                .ok_or_else(|| ConfigError::Invalid {
                    key: "REGKEEPER_SYNC_FILE_ROOT",
                    message: format!("{} is not an existing directory", root.display()),
                })
        })
        .transpose()?;
    let kubernetes = match kubeconfig.as_deref() {
        None => None,
        Some("in-cluster") => Some(KubernetesAccess::InCluster),
        Some(path) if Path::new(path).is_file() => {
            Some(KubernetesAccess::Kubeconfig(PathBuf::from(path)))
        }
        Some(path) => {
            return Err(ConfigError::Invalid {
                key: "REGKEEPER_SYNC_KUBECONFIG",
                message: format!("{path} is not a readable kubeconfig file (or `in-cluster`)"),
            })
        }
    };
    for namespace in &kubernetes_namespaces {
        if namespace != "*" && crate::domain::sync_target::validate_namespace(namespace).is_err() {
            return Err(ConfigError::Invalid {
                key: "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
                message: format!("`{namespace}` is not a namespace name (or `*` for any)"),
            });
        }
    }
    if kubernetes.is_some() && kubernetes_namespaces.is_empty() {
        return Err(ConfigError::Invalid {
            key: "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
            message: "required with REGKEEPER_SYNC_KUBECONFIG: the namespaces sync targets may \
                      write Secrets to, comma-separated, or `*` for any"
                .into(),
        });
    }
    Ok(SyncConfig {
        file_root,
        kubernetes,
        kubernetes_namespaces,
    })
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    // The file may hold the database URL's password and the bootstrap token.
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
        );
    toml::from_str(&text).map_err(|error| ConfigError::Parse {
        path: path.to_owned(),
        message: error.message().to_owned(),
    })
}

/// An AWS account id: exactly 12 digits.
fn validate_aws_account(account: String) -> Result<String, ConfigError> {
    if account.len() == 12 && account.bytes().all(|byte| byte.is_ascii_digit()) {
        Ok(account)
    } else {
        Err(ConfigError::Invalid {
            key: "REGKEEPER_AMBIENT_AWS_ACCOUNTS",
            message: format!(
                "`{}` is not an AWS account id (12 digits, e.g. 123456789012)",
                account.chars().take(40).collect::<String>()
            ),
        })
    }
}

fn list(value: Option<String>) -> Option<Vec<String>> {
    value.map(|value| {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

fn parse_address(key: &'static str, value: String) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        key,
        message: format!("`{value}` is not an address such as 127.0.0.1:7070"),
    })
}

fn parse_network(value: &str) -> Result<IpNet, ConfigError> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| ConfigError::Invalid {
            key: "REGKEEPER_OUTBOUND_ALLOW_NETWORKS",
            message: format!("`{value}` is not a CIDR such as 127.0.0.0/8"),
        })
}

/// A cloud identity endpoint: https, with no user info, query or fragment. Plain http
/// is accepted only for 127.0.0.1, localhost and ::1, so that the hand-written
/// `fake_*` Azure AD and Google OAuth servers of the tests can stand in without a TLS
/// set-up; nothing on a network is ever reached in clear text.
fn parse_endpoint(key: &'static str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        key,
        message: format!("`{value}` {message}"),
    };
    let url = Url::parse(value).map_err(|_| invalid("is not a URL"))?;
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(address)) => address == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(address)) => address == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(invalid(
                "must be an https URL (http only for 127.0.0.1 or localhost)",
            ))
        }
    }
    if url.host().is_none() {
        return Err(invalid("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not hold user info"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(url)
}

fn validate_host_port(value: String) -> Result<String, ConfigError> {
    let valid = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    if valid {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            key: "REGKEEPER_OUTBOUND_HTTP_REGISTRIES",
            message: format!("`{value}` is not host:port"),
        })
    }
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key,
            message: format!("`{value}` is not true or false"),
        }),
    }
}

fn validate_bootstrap_token(token: &str) -> Result<SecretString, ConfigError> {
    let token = token.trim();
    if token.len() < 16 || token.chars().any(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            key: "REGKEEPER_BOOTSTRAP_TOKEN",
            message: "must be at least 16 characters without spaces".into(),
        });
    }
    Ok(SecretString::from(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(variables: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = variables
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Config::load(None, &|name| map.get(name).cloned(), &Overrides::default())
    }

    #[test]
    fn proxy_settings_are_checked_and_sizes_read() {
        let config = load(&[]).unwrap();
        assert_eq!(
            config.proxy,
            ProxyConfig {
                cache_dir: None,
                cache_max_bytes: DEFAULT_PROXY_CACHE_MAX_BYTES,
                tls: None,
            }
        );
        let config = load(&[
            ("REGKEEPER_PROXY_CACHE_DIR", "/var/cache/regkeeper"),
            ("REGKEEPER_PROXY_CACHE_MAX_BYTES", "512MiB"),
        ])
        .unwrap();
        assert_eq!(
            config.proxy.cache_dir.as_deref(),
            Some(Path::new("/var/cache/regkeeper"))
        );
        assert_eq!(config.proxy.cache_max_bytes, 512 << 20);
        assert_eq!(parse_byte_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_byte_size("1073741824"), Some(1 << 30));
        assert_eq!(parse_byte_size("2 GB"), Some(2_000_000_000));
        assert_eq!(parse_byte_size("lots"), None);
        assert_eq!(parse_byte_size("99999999999999TiB"), None);
        for (variables, key) in [
            (
                vec![("REGKEEPER_PROXY_CACHE_MAX_BYTES", "ten")],
                "REGKEEPER_PROXY_CACHE_MAX_BYTES",
            ),
            (
                vec![("REGKEEPER_PROXY_CACHE_MAX_BYTES", "1KiB")],
                "REGKEEPER_PROXY_CACHE_MAX_BYTES",
            ),
            (
                vec![("REGKEEPER_PROXY_TLS_CERT_FILE", "/etc/hostname")],
                "REGKEEPER_PROXY_TLS_KEY_FILE",
            ),
            (
                vec![
                    ("REGKEEPER_PROXY_TLS_CERT_FILE", "/nonexistent/cert.pem"),
                    ("REGKEEPER_PROXY_TLS_KEY_FILE", "/etc/hostname"),
                ],
                "REGKEEPER_PROXY_TLS_CERT_FILE",
            ),
        ] {
            let error = load(&variables).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }

    #[test]
    fn defaults_are_local_and_embedded() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert!(
            matches!(&config.database, Database::Sqlite(path) if path.ends_with("regkeeper.db"))
        );
        assert_eq!(
            config.master_key_file,
            PathBuf::from(DEFAULT_DATA_DIR).join("master.key")
        );
        assert!(!config.allow_ambient_aws_credentials);
        assert_eq!(config.ambient_aws_accounts, None);
        assert!(config.outbound.allow_networks.is_empty());
    }

    #[test]
    fn environment_names_are_the_documented_ones() {
        let config = load(&[
            ("REGKEEPER_DATA_DIR", "/tmp/rk"),
            ("REGKEEPER_DATABASE_URL", "postgres://u:pw@db/x"),
            ("REGKEEPER_LISTEN", "0.0.0.0:8080"),
            ("REGKEEPER_PROXY_LISTEN", "127.0.0.1:7071"),
            ("REGKEEPER_BOOTSTRAP_TOKEN", "rk_bootstrap_token_for_tests"),
            ("REGKEEPER_OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8, ::1"),
            ("REGKEEPER_OUTBOUND_HTTP_REGISTRIES", "localhost:5000"),
            ("REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS", "true"),
            ("REGKEEPER_OUTBOUND_TIMEOUT_SECONDS", "7"),
            (
                "REGKEEPER_AMBIENT_AWS_ACCOUNTS",
                "123456789012, 210987654321",
            ),
        ])
        .unwrap();
        assert_eq!(
            config.ambient_aws_accounts.as_deref(),
            Some(&["123456789012".to_owned(), "210987654321".to_owned()][..])
        );
        assert_eq!(
            config.outbound.timeout,
            Some(std::time::Duration::from_secs(7))
        );
        assert_eq!(config.master_key_file, PathBuf::from("/tmp/rk/master.key"));
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.proxy_listen.unwrap().port(), 7071);
        assert_eq!(config.outbound.allow_networks.len(), 2);
        assert_eq!(config.outbound.http_registries, vec!["localhost:5000"]);
        assert!(config.allow_ambient_aws_credentials);
        let printed = format!("{config:?}");
        assert!(!printed.contains("pw@"), "{printed}");
        assert!(!printed.contains("rk_bootstrap"), "{printed}");
    }

    /// Issue 12 item 18: the settings file's database URL and bootstrap token are read
    /// straight into strings wiped on drop (they were plain `String`s), as are the
    /// command line's, and print redacted.
    /// Issue 13 item 4: single sign-on is read from the file's keys, the environment
    /// wins, the client secret is never shown, and the file's bad value names its
    /// variable.
    #[test]
    fn single_sign_on_comes_from_the_file_or_the_environment() {
        let directory = tempfile::tempdir().unwrap();
        let secret = directory.path().join("client-secret");
        std::fs::write(&secret, "file-canary-client-secret\n").unwrap();
        let path = directory.path().join("regkeeper.toml");
        std::fs::write(
            &path,
            format!(
                "oidc_issuer = \"https://idp.example.com\"\noidc_client_id = \"rk\"\noidc_client_secret_file = \"{}\"\noidc_username_claim = \"email\"\noidc_auto_create = true\nconsole_token_sign_in = false\n",
                secret.display()
            ),
        )
        .unwrap();
        let config = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap();
        let sso = config.single_sign_on.as_ref().unwrap();
        assert_eq!(sso.issuer, "https://idp.example.com");
        assert_eq!(sso.username_claim.as_deref(), Some("email"));
        assert!(sso.auto_create && !config.console_token_sign_in);
        assert!(!format!("{config:?}").contains("file-canary-client-secret"));
        let environment = |name: &str| {
            (name == "REGKEEPER_OIDC_CLIENT_ID").then(|| "from-environment".to_owned())
        };
        let config = Config::load(Some(&path), &environment, &Overrides::default()).unwrap();
        assert_eq!(config.single_sign_on.unwrap().client_id, "from-environment");
        let bad = |name: &str| (name == "REGKEEPER_OIDC_AUTO_CREATE").then(|| "maybe".to_owned());
        let error = Config::load(Some(&path), &bad, &Overrides::default())
            .err()
            .unwrap();
        assert!(
            error.to_string().starts_with("REGKEEPER_OIDC_AUTO_CREATE:"),
            "{error}"
        );
    }

    #[test]
    fn secrets_from_the_file_and_the_command_line_are_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("regkeeper.toml");
        std::fs::write(
            &path,
            "database_url = \"postgres://u:pw-canary@db/regkeeper\"\nbootstrap_token = \"rk_file_bootstrap_canary\"\n",
        )
        .unwrap();
        let settings = read_file(&path).unwrap();
        wiped_on_drop(&settings.database_url);
        wiped_on_drop(&settings.bootstrap_token);
        let overrides = Overrides {
            database_url: Some(SecretString::from(
                "postgres://u:cli-canary@db/x".to_owned(),
            )),
            bootstrap_token: Some(SecretString::from("rk_stdin_bootstrap_canary".to_owned())),
            ..Overrides::default()
        };
        wiped_on_drop(&overrides.database_url);
        wiped_on_drop(&overrides.bootstrap_token);
        assert!(!format!("{overrides:?}").contains("canary"));
        let config = Config::load(Some(&path), &|_| None, &overrides).unwrap();
        assert_eq!(
            config.bootstrap_token.as_ref().unwrap().expose_secret(),
            "rk_stdin_bootstrap_canary",
            "the token read with --bootstrap-token-stdin wins"
        );
        match &config.database {
            Database::Url(url) => assert!(url.expose_secret().contains("cli-canary")),
            other => panic!("{other:?}"),
        }
        let from_file = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap();
        assert_eq!(
            from_file.bootstrap_token.as_ref().unwrap().expose_secret(),
            "rk_file_bootstrap_canary"
        );
        assert!(!format!("{from_file:?}").contains("canary"));
    }

    #[test]
    fn errors_name_the_key() {
        for value in ["12345", "1234567890123", "12345678901x", "123456789012,abc"] {
            let error = load(&[("REGKEEPER_AMBIENT_AWS_ACCOUNTS", value)]).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("REGKEEPER_AMBIENT_AWS_ACCOUNTS"),
                "{error}"
            );
        }
        let error = load(&[("REGKEEPER_OUTBOUND_ALLOW_NETWORKS", "10.0.0.0/33")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("REGKEEPER_OUTBOUND_ALLOW_NETWORKS"),
            "{error}"
        );
        for value in ["0", "601", "ten"] {
            let error = load(&[("REGKEEPER_OUTBOUND_TIMEOUT_SECONDS", value)]).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("REGKEEPER_OUTBOUND_TIMEOUT_SECONDS"),
                "{error}"
            );
        }
        let error = load(&[("REGKEEPER_LISTEN", "nowhere")]).unwrap_err();
        assert!(error.to_string().starts_with("REGKEEPER_LISTEN"), "{error}");
        let error = load(&[("REGKEEPER_DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(
            error.to_string().starts_with("REGKEEPER_DATABASE_URL"),
            "{error}"
        );
    }

    #[test]
    fn cloud_endpoints_default_to_the_real_services_and_must_be_https() {
        let config = load(&[]).unwrap();
        assert_eq!(
            config.azure_authority_url.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(
            config.google_token_url.as_str(),
            "https://oauth2.googleapis.com/token"
        );
        let config = load(&[
            ("REGKEEPER_AZURE_AUTHORITY_URL", "http://127.0.0.1:8443"),
            ("REGKEEPER_GOOGLE_TOKEN_URL", "http://localhost:9/token"),
        ])
        .unwrap();
        assert_eq!(config.azure_authority_url.port(), Some(8443));
        assert_eq!(config.google_token_url.path(), "/token");
        for (key, value) in [
            ("REGKEEPER_AZURE_AUTHORITY_URL", "http://login.example.com"),
            ("REGKEEPER_AZURE_AUTHORITY_URL", "http://127.0.0.2"),
            ("REGKEEPER_AZURE_AUTHORITY_URL", "not a url"),
            ("REGKEEPER_GOOGLE_TOKEN_URL", "ftp://localhost/token"),
            (
                "REGKEEPER_GOOGLE_TOKEN_URL",
                "https://user:pw@oauth2.example/token",
            ),
            (
                "REGKEEPER_GOOGLE_TOKEN_URL",
                "https://oauth2.example/token?x=1",
            ),
        ] {
            let error = load(&[(key, value)]).unwrap_err();
            assert!(error.to_string().starts_with(key), "{value}: {error}");
        }
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("regkeeper.toml");
        std::fs::write(
            &path,
            "azure_authority_url = \"https://login.microsoftonline.us\"\n\
             google_token_url = \"https://oauth2.example/token\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap();
        assert_eq!(
            config.azure_authority_url.host_str(),
            Some("login.microsoftonline.us")
        );
        assert_eq!(
            config.google_token_url.as_str(),
            "https://oauth2.example/token"
        );
    }

    #[test]
    fn sync_destinations_are_operator_settings() {
        let config = load(&[]).unwrap();
        assert!(config.sync.file_root.is_none() && config.sync.kubernetes.is_none());
        let directory = tempfile::tempdir().unwrap();
        let kubeconfig = directory.path().join("kubeconfig");
        std::fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();
        let root = directory.path().display().to_string();
        let kubeconfig = kubeconfig.display().to_string();
        let config = load(&[
            ("REGKEEPER_SYNC_FILE_ROOT", &root),
            ("REGKEEPER_SYNC_KUBECONFIG", &kubeconfig),
            ("REGKEEPER_SYNC_KUBERNETES_NAMESPACES", "ci, build"),
        ])
        .unwrap();
        assert!(config.sync.file_root.as_ref().unwrap().is_absolute());
        assert!(
            config.sync.namespace_allowed("build") && !config.sync.namespace_allowed("kube-system")
        );
        for (variables, key) in [
            (
                vec![("REGKEEPER_SYNC_FILE_ROOT", "/nonexistent/regkeeper-sync")],
                "REGKEEPER_SYNC_FILE_ROOT",
            ),
            (
                vec![("REGKEEPER_SYNC_KUBECONFIG", kubeconfig.as_str())],
                "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
            ),
            (
                vec![
                    ("REGKEEPER_SYNC_KUBECONFIG", "in-cluster"),
                    ("REGKEEPER_SYNC_KUBERNETES_NAMESPACES", "Bad_Name"),
                ],
                "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
            ),
        ] {
            let error = load(&variables).unwrap_err();
            assert!(error.to_string().starts_with(key), "{error}");
        }
    }

    #[test]
    fn file_then_environment() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("regkeeper.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/rk\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&path),
            &|name| (name == "REGKEEPER_LISTEN").then(|| "127.0.0.1:9001".to_owned()),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.data_dir, PathBuf::from("/srv/rk"));
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let error = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("lisen"), "{error}");
    }
}
