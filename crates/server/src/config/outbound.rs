//! The outbound client's settings (`REGKEEPER_OUTBOUND_ALLOW_NETWORKS`,
//! `REGKEEPER_OUTBOUND_CA_FILE`, `REGKEEPER_OUTBOUND_HTTP_REGISTRIES`,
//! `REGKEEPER_OUTBOUND_TIMEOUT_SECONDS`, `REGKEEPER_OUTBOUND_TOKEN_REALMS`): which
//! private networks, CAs, plain-http registries and token realms an operator opens to
//! the guarded client (`crate::outbound`). Kept apart from `config.rs` so each
//! setting's parsing and validation sit beside its type.

use std::path::PathBuf;

use ipnet::IpNet;

use super::{ConfigError, TokenRealmGrant};

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

impl OutboundConfig {
    /// Reads the five settings (environment first, then the file's values), each
    /// validated with an error naming its key.
    pub(super) fn load(
        env: &dyn Fn(&str) -> Option<String>,
        allow_networks: Option<Vec<String>>,
        ca_file: Option<PathBuf>,
        http_registries: Option<Vec<String>>,
        timeout_seconds: Option<u64>,
        token_realms: Option<Vec<String>>,
    ) -> Result<Self, ConfigError> {
        let allow_networks = super::list(env("REGKEEPER_OUTBOUND_ALLOW_NETWORKS"))
            .or(allow_networks)
            .unwrap_or_default()
            .iter()
            .map(|network| parse_network(network))
            .collect::<Result<Vec<_>, _>>()?;
        let ca_file = env("REGKEEPER_OUTBOUND_CA_FILE")
            .map(PathBuf::from)
            .or(ca_file);
        if let Some(path) = &ca_file {
            if !path.is_file() {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_OUTBOUND_CA_FILE",
                    message: format!("{} is not a readable file", path.display()),
                });
            }
        }
        let http_registries = super::list(env("REGKEEPER_OUTBOUND_HTTP_REGISTRIES"))
            .or(http_registries)
            .unwrap_or_default()
            .into_iter()
            .map(|registry| validate_host_port(registry.to_ascii_lowercase()))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout_seconds = match env("REGKEEPER_OUTBOUND_TIMEOUT_SECONDS") {
            Some(value) => Some(value.trim().parse().map_err(|_| ConfigError::Invalid {
                key: "REGKEEPER_OUTBOUND_TIMEOUT_SECONDS",
                message: format!("`{value}` is not a whole number of seconds"),
            })?),
            None => timeout_seconds,
        };
        if let Some(seconds) = timeout_seconds {
            if !(1..=600).contains(&seconds) {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_OUTBOUND_TIMEOUT_SECONDS",
                    message: "must be between 1 and 600".into(),
                });
            }
        }
        let token_realms = super::list(env("REGKEEPER_OUTBOUND_TOKEN_REALMS"))
            .or(token_realms)
            .unwrap_or_default()
            .iter()
            .map(|entry| TokenRealmGrant::parse(entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allow_networks,
            ca_file,
            http_registries,
            timeout: timeout_seconds.map(std::time::Duration::from_secs),
            token_realms,
        })
    }
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
