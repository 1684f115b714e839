//! The network settings of issue 12: the bounds both listeners put on client
//! connections (`REGKEEPER_HEADER_READ_TIMEOUT_SECONDS`, `REGKEEPER_MAX_CONNECTIONS`,
//! `REGKEEPER_MAX_CONNECTIONS_PER_ADDRESS`) and the token realms an operator trusts
//! with a registry's login (`REGKEEPER_OUTBOUND_TOKEN_REALMS`). Kept apart from
//! `config.rs` so each setting's parsing and validation sit beside its type.

use std::time::Duration;

use url::Url;

use super::ConfigError;

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// How many connections each listener (the API's, the proxy's) keeps open, and how
/// long a client may take to send a request's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the connection's start, or the end of the previous response on a kept-alive
    /// connection, to the end of the next request's headers: past it the client gets a
    /// 408 (or, idle between requests, is closed).
    pub header_read_timeout: Duration,
    /// Open connections per listener; at the limit the oldest connection that has not
    /// yet sent a request is closed to make room, else the new one is refused.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64); `None` for no bound (behind
    /// a load balancer every client has its address).
    pub max_connections_per_address: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
        }
    }
}

impl ConnectionLimits {
    /// Reads the three settings (environment first, then the file's values), each
    /// validated with an error naming its key.
    pub(super) fn load(
        env: &dyn Fn(&str) -> Option<String>,
        header_read_timeout_seconds: Option<u64>,
        max_connections: Option<u64>,
        max_connections_per_address: Option<u64>,
    ) -> Result<Self, ConfigError> {
        let timeout = number(
            env,
            "REGKEEPER_HEADER_READ_TIMEOUT_SECONDS",
            header_read_timeout_seconds,
            1..=300,
        )?
        .map_or(DEFAULT_HEADER_READ_TIMEOUT, Duration::from_secs);
        let max_connections = number(
            env,
            "REGKEEPER_MAX_CONNECTIONS",
            max_connections,
            16..=1_000_000,
        )?
        .map_or(DEFAULT_MAX_CONNECTIONS, to_usize);
        let per_address = match number(
            env,
            "REGKEEPER_MAX_CONNECTIONS_PER_ADDRESS",
            max_connections_per_address,
            0..=1_000_000,
        )? {
            None => Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS.min(max_connections)),
            Some(0) => None,
            Some(limit) => Some(to_usize(limit)),
        };
        if per_address.is_some_and(|limit| limit > max_connections) {
            return Err(ConfigError::Invalid {
                key: "REGKEEPER_MAX_CONNECTIONS_PER_ADDRESS",
                message: format!(
                    "must not be more than REGKEEPER_MAX_CONNECTIONS ({max_connections}); 0 \
                     turns the per-address bound off"
                ),
            });
        }
        Ok(Self {
            header_read_timeout: timeout,
            max_connections,
            max_connections_per_address: per_address,
        })
    }
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

pub(super) fn number(
    env: &dyn Fn(&str) -> Option<String>,
    key: &'static str,
    from_file: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    let value = match env(key) {
        Some(text) => Some(text.trim().parse().map_err(|_| ConfigError::Invalid {
            key,
            message: format!("`{text}` is not a whole number"),
        })?),
        None => from_file,
    };
    if let Some(value) = value {
        if !range.contains(&value) {
            return Err(ConfigError::Invalid {
                key,
                message: format!("must be between {} and {}", range.start(), range.end()),
            });
        }
    }
    Ok(value)
}

/// One `REGISTRY=REALM` entry of `REGKEEPER_OUTBOUND_TOKEN_REALMS`: the registry's login
/// may be sent to a token realm on that host although it is neither the registry's host
/// nor in its registrable domain. Each side is `host` (any port) or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRealmGrant {
    registry: (String, Option<u16>),
    realm: (String, Option<u16>),
}

impl TokenRealmGrant {
    pub fn parse(entry: &str) -> Result<Self, ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            key: "REGKEEPER_OUTBOUND_TOKEN_REALMS",
            message: format!("`{entry}` {message}"),
        };
        let (registry, realm) = entry
            .split_once('=')
            .ok_or_else(|| invalid("is not REGISTRY-HOST=REALM-HOST"))?;
        let side = |text: &str| {
            let text = text.trim();
            if text.is_empty() || text.contains(['/', '@', '?', '#', '=']) {
                return Err(invalid(
                    "is not REGISTRY-HOST=REALM-HOST (host or host:port on each side, no scheme or path)",
                ));
            }
            let url = Url::parse(&format!("https://{text}/"))
                .map_err(|_| invalid("does not name valid hosts"))?;
            let host = url
                .host_str()
                .ok_or_else(|| invalid("does not name valid hosts"))?
                .trim_end_matches('.')
                .to_ascii_lowercase();
            // An explicit :443 means the same as no port, as in the URLs compared.
            Ok((host, url.port()))
        };
        Ok(Self {
            registry: side(registry)?,
            realm: side(realm)?,
        })
    }

    /// Whether this entry allows `registry`'s login to go to `realm`.
    pub fn matches(&self, registry: &Url, realm: &Url) -> bool {
        side_matches(&self.registry, registry) && side_matches(&self.realm, realm)
    }
}

fn side_matches((host, port): &(String, Option<u16>), url: &Url) -> bool {
    let Some(url_host) = url.host_str() else {
        return false;
    };
    url_host.trim_end_matches('.').eq_ignore_ascii_case(host)
        && port.is_none_or(|port| url.port_or_known_default() == Some(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(variables: &[(&str, &str)]) -> Result<ConnectionLimits, ConfigError> {
        let env = |name: &str| {
            variables
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        ConnectionLimits::load(&env, None, None, None)
    }

    #[test]
    fn connection_limits_have_defaults_and_name_their_keys() {
        assert_eq!(limits(&[]).unwrap(), ConnectionLimits::default());
        let set = limits(&[
            ("REGKEEPER_HEADER_READ_TIMEOUT_SECONDS", "2"),
            ("REGKEEPER_MAX_CONNECTIONS", "100"),
            ("REGKEEPER_MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ])
        .unwrap();
        assert_eq!(set.header_read_timeout, Duration::from_secs(2));
        assert_eq!(set.max_connections, 100);
        assert_eq!(set.max_connections_per_address, None);
        assert_eq!(
            limits(&[("REGKEEPER_MAX_CONNECTIONS", "100")])
                .unwrap()
                .max_connections_per_address,
            Some(100)
        );
        for (key, value) in [
            ("REGKEEPER_HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("REGKEEPER_HEADER_READ_TIMEOUT_SECONDS", "soon"),
            ("REGKEEPER_MAX_CONNECTIONS", "1"),
            ("REGKEEPER_MAX_CONNECTIONS_PER_ADDRESS", "5000"),
        ] {
            let error = limits(&[(key, value)]).unwrap_err();
            assert!(error.to_string().starts_with(key), "{value}: {error}");
        }
    }

    #[test]
    fn token_realm_entries_are_host_pairs() {
        let grant = TokenRealmGrant::parse("Registry.Example.com=auth.example.net:8443").unwrap();
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(grant.matches(
            &url("https://registry.example.com:5000/"),
            &url("https://auth.example.net:8443/token")
        ));
        assert!(!grant.matches(
            &url("https://registry.example.com/"),
            &url("https://auth.example.net/token")
        ));
        for bad in [
            "registry.example.com",
            "https://registry.example.com=auth.example.net",
            "registry.example.com=auth.example.net/token",
            "=auth.example.net",
            "registry.example.com=user@auth.example.net",
        ] {
            let error = TokenRealmGrant::parse(bad).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("REGKEEPER_OUTBOUND_TOKEN_REALMS"),
                "{bad}: {error}"
            );
        }
    }
}
