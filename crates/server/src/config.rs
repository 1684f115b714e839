//! One typed configuration, loaded once at start from defaults, then an optional TOML
//! file, then `REGKEEPER_*` environment variables, then command-line flags, and
//! validated with errors that name the offending key.
//!
//! Here: [`Config`], the file's keys (`FileSettings`), the order of the sources and
//! the general settings (addresses, database, data directory, bootstrap token, body
//! limit, log format). Each group of settings is read and validated beside its type:
//! `outbound` (the guarded client), `network` (connection bounds, token realms),
//! `cloud` (ambient AWS, Azure AD, Google OAuth), `sync_targets` (where targets may
//! deliver), `proxy` (blob cache, TLS) and `sign_in` (single sign-on).
//!
//! The `Config` travels explicitly in `App.config`. Nothing reads configuration from a
//! global or changes the process environment (`std::env::set_var` is banned in
//! `.clippy.toml`). `REGKEEPER_LOG` alone is read outside it, by
//! `serve::init_logging`. `AWS_ENDPOINT_URL` goes through the same lookup closure as
//! the `REGKEEPER_*` settings, so tests pass it in a map; the AWS SDK still reads its
//! own `AWS_*` variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

mod cloud;
mod network;
mod outbound;
mod proxy;
mod sign_in;
mod sync_targets;

pub use cloud::{DEFAULT_AZURE_AUTHORITY_URL, DEFAULT_GOOGLE_TOKEN_URL};
pub use network::{ConnectionLimits, TokenRealmGrant};
pub use outbound::OutboundConfig;
pub use proxy::{ProxyConfig, S3Location, DEFAULT_PROXY_CACHE_MAX_BYTES};
pub use sign_in::SingleSignOn;
pub use sync_targets::{KubernetesAccess, SyncConfig};

use proxy::ByteSize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_DATA_DIR: &str = "./regkeeper-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// `REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT`'s default: per-credential and
/// per-sync-target series in `/metrics` (see `metrics::freshness`).
pub const DEFAULT_METRICS_CREDENTIAL_SERIES_LIMIT: u64 = 1000;

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
    /// `REGKEEPER_MASTER_KEY_KMS_KEY_ID` (TOML `master_key_kms_key_id`): the AWS KMS key
    /// (id, ARN or alias) that wraps the keyring kept in the database, instead of a key
    /// file. A database that records where its keyring lives wins over both settings
    /// (see `service::keys`).
    pub master_key_kms_key_id: Option<String>,
    pub outbound: OutboundConfig,
    pub allow_ambient_aws_credentials: bool,
    /// `REGKEEPER_AMBIENT_AWS_ACCOUNTS`: the AWS accounts (12-digit ids) whose registries
    /// ambient credentials may reach; `None` means the server's own account (asked of
    /// STS GetCallerIdentity when first needed).
    pub ambient_aws_accounts: Option<Vec<String>>,
    /// `AWS_ENDPOINT_URL`, read like every other setting so tests need not touch the
    /// process environment; the SDK still honours its own service-specific variables.
    pub aws_endpoint_url: Option<String>,
    /// How long a login read from Secrets Manager is served from memory:
    /// `service::aws_secrets::SOURCE_CACHE_MS` (5 minutes), shorter only through the
    /// test-only `REGKEEPER_TEST_AWS_SECRET_CACHE_MS` (1 ms to 5 minutes).
    pub aws_secret_cache_ms: i64,
    /// `AWS_ENDPOINT_URL_KMS`, read like `AWS_ENDPOINT_URL` (which it overrides for KMS),
    /// so the reason a sealed server gives names the URL it could not reach.
    pub aws_kms_endpoint_url: Option<String>,
    /// Azure AD, where ACR service principals get their tokens
    /// (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub azure_authority_url: Url,
    /// Google's OAuth 2.0 token endpoint, where service-account keys become access
    /// tokens.
    pub google_token_url: Url,
    pub max_body_bytes: usize,
    /// `REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT`: at most this many credentials
    /// (and, apart, sync targets) get their own freshness series in `/metrics`; 0 for
    /// none.
    pub metrics_credential_series_limit: u64,
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
            .field("master_key_kms_key_id", &self.master_key_kms_key_id)
            .field("outbound", &self.outbound)
            .field(
                "allow_ambient_aws_credentials",
                &self.allow_ambient_aws_credentials,
            )
            .field("ambient_aws_accounts", &self.ambient_aws_accounts)
            .field("aws_endpoint_url", &self.aws_endpoint_url)
            .field("aws_secret_cache_ms", &self.aws_secret_cache_ms)
            .field("aws_kms_endpoint_url", &self.aws_kms_endpoint_url)
            .field("azure_authority_url", &self.azure_authority_url.as_str())
            .field("google_token_url", &self.google_token_url.as_str())
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "metrics_credential_series_limit",
                &self.metrics_credential_series_limit,
            )
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
    master_key_kms_key_id: Option<String>,
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
    metrics_credential_series_limit: Option<u64>,
    log_format: Option<String>,
    sync_file_root: Option<PathBuf>,
    sync_kubeconfig: Option<String>,
    sync_kubernetes_namespaces: Option<Vec<String>>,
    proxy_cache_dir: Option<PathBuf>,
    proxy_cache_s3_url: Option<String>,
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
        let master_key_kms_key_id = env("REGKEEPER_MASTER_KEY_KMS_KEY_ID")
            .or(settings.master_key_kms_key_id)
            .map(|key_id| validate_kms_key_id(&key_id))
            .transpose()?;
        let outbound = OutboundConfig::load(
            &env,
            settings.outbound_allow_networks,
            settings.outbound_ca_file,
            settings.outbound_http_registries,
            settings.outbound_timeout_seconds,
            settings.outbound_token_realms,
        )?;
        let connections = ConnectionLimits::load(
            &env,
            settings.header_read_timeout_seconds,
            settings.max_connections,
            settings.max_connections_per_address,
        )?;
        let cloud = cloud::load(
            &env,
            settings.allow_ambient_aws_credentials,
            settings.ambient_aws_accounts,
            settings.azure_authority_url,
            settings.google_token_url,
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
        let metrics_credential_series_limit = network::number(
            &env,
            "REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT",
            settings.metrics_credential_series_limit,
            0..=1_000_000,
        )?
        .unwrap_or(DEFAULT_METRICS_CREDENTIAL_SERIES_LIMIT);
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
        let bound = crate::service::aws_secrets::SOURCE_CACHE_MS;
        let aws_secret_cache_ms = match env("REGKEEPER_TEST_AWS_SECRET_CACHE_MS") {
            Some(value) => value
                .parse::<i64>()
                .ok()
                .filter(|ms| (1..=bound).contains(ms))
                .ok_or_else(|| ConfigError::Invalid {
                    key: "REGKEEPER_TEST_AWS_SECRET_CACHE_MS",
                    message: format!("`{value}` is not a number of milliseconds from 1 to {bound}"),
                })?,
            None => bound,
        };
        let aws_kms_endpoint_url = env("AWS_ENDPOINT_URL_KMS");
        let sync = SyncConfig::load(
            env("REGKEEPER_SYNC_FILE_ROOT")
                .map(PathBuf::from)
                .or(settings.sync_file_root),
            env("REGKEEPER_SYNC_KUBECONFIG").or(settings.sync_kubeconfig),
            list(env("REGKEEPER_SYNC_KUBERNETES_NAMESPACES"))
                .or(settings.sync_kubernetes_namespaces)
                .unwrap_or_default(),
        )?;
        let proxy = ProxyConfig::load(
            env("REGKEEPER_PROXY_CACHE_DIR")
                .map(PathBuf::from)
                .or(settings.proxy_cache_dir),
            env("REGKEEPER_PROXY_CACHE_S3_URL").or(settings.proxy_cache_s3_url),
            env("AWS_ENDPOINT_URL_S3").or_else(|| aws_endpoint_url.clone()),
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
            aws_secret_cache_ms,
            aws_kms_endpoint_url,
            master_key_kms_key_id,
            data_dir,
            database,
            listen,
            proxy_listen,
            bootstrap_token,
            master_key_file,
            outbound,
            allow_ambient_aws_credentials: cloud.allow_ambient_aws_credentials,
            ambient_aws_accounts: cloud.ambient_aws_accounts,
            azure_authority_url: cloud.azure_authority_url,
            google_token_url: cloud.google_token_url,
            max_body_bytes,
            metrics_credential_series_limit,
            log_format,
        })
    }
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

/// A KMS key id, ARN or alias: one word, as KMS takes it (KMS itself says whether the
/// key exists).
fn validate_kms_key_id(key_id: &str) -> Result<String, ConfigError> {
    let key_id = key_id.trim();
    if key_id.is_empty() || key_id.len() > 2048 || key_id.chars().any(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            key: "REGKEEPER_MASTER_KEY_KMS_KEY_ID",
            message: "expected a KMS key id, key ARN, alias name (alias/NAME) or alias ARN".into(),
        });
    }
    Ok(key_id.to_owned())
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

    /// The configuration from these environment variables alone; the settings groups'
    /// tests use it too.
    pub(super) fn load(variables: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = variables
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Config::load(None, &|name| map.get(name).cloned(), &Overrides::default())
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
        assert_eq!(config.master_key_kms_key_id, None);
    }

    /// Issue 15: the KMS key comes from `REGKEEPER_MASTER_KEY_KMS_KEY_ID` or the file's
    /// `master_key_kms_key_id`, the environment winning; a malformed one names the key.
    #[test]
    fn the_kms_key_id_comes_from_the_environment_or_the_file() {
        let config = load(&[
            ("REGKEEPER_MASTER_KEY_KMS_KEY_ID", "alias/regkeeper"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:4566"),
        ])
        .unwrap();
        assert_eq!(
            config.master_key_kms_key_id.as_deref(),
            Some("alias/regkeeper")
        );
        assert_eq!(
            config.aws_kms_endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("regkeeper.toml");
        std::fs::write(
            &path,
            "master_key_kms_key_id = \"arn:aws:kms:eu-west-1:123456789012:key/k\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap();
        assert_eq!(
            config.master_key_kms_key_id.as_deref(),
            Some("arn:aws:kms:eu-west-1:123456789012:key/k")
        );
        let error = load(&[("REGKEEPER_MASTER_KEY_KMS_KEY_ID", "two words")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("REGKEEPER_MASTER_KEY_KMS_KEY_ID:"),
            "{error}"
        );
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

    /// Issue 16: the freshness series' cap, from the file or the environment, bounded.
    #[test]
    fn the_metrics_series_limit_comes_from_the_file_or_the_environment() {
        assert_eq!(
            load(&[]).unwrap().metrics_credential_series_limit,
            DEFAULT_METRICS_CREDENTIAL_SERIES_LIMIT
        );
        let limit = |value| {
            load(&[("REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT", value)])
                .map(|config| config.metrics_credential_series_limit)
        };
        assert_eq!(limit("0").unwrap(), 0);
        assert_eq!(limit("250").unwrap(), 250);
        for value in ["-1", "many", "1000001"] {
            let error = limit(value).unwrap_err().to_string();
            assert!(
                error.starts_with("REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT: "),
                "{error}"
            );
        }
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("regkeeper.toml");
        std::fs::write(&path, "metrics_credential_series_limit = 20\n").unwrap();
        let config = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap();
        assert_eq!(config.metrics_credential_series_limit, 20);
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
