//! A small blocking client for the regkeeper REST API, shared by the CLI and the
//! node-side helpers. It deliberately avoids the server's dependencies (sqlx, axum,
//! cloud SDKs) so the binaries built on it start in milliseconds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regkeeper_wire::{ErrorBody, Sensitive};
use secrecy::zeroize::Zeroizing;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

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
/// (or `~/.config/regkeeper/config.toml`), with `url` and `token`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    url: Option<String>,
    token: Option<Sensitive>,
}

pub struct Client {
    base_url: String,
    token: Option<Sensitive>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base_url: &str, token: Option<Sensitive>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .redirects(0)
            .user_agent(concat!("regkeeper-client/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            agent,
        }
    }

    /// Settings from `REGKEEPER_URL` and `REGKEEPER_TOKEN` (else `REGKEEPER_TOKEN_FILE`,
    /// a file holding the token, as a node mounts a Kubernetes secret), falling back to
    /// the settings file. `environment` looks a variable up (tests pass a map).
    pub fn from_environment(
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        let file = match settings_path(environment) {
            Some(path) if path.is_file() => {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ClientError::Config(format!("cannot read {}: {error}", path.display()))
                })?;
                toml::from_str::<FileSettings>(&text).map_err(|error| {
                    ClientError::Config(format!("{}: {}", path.display(), error.message()))
                })?
            }
            _ => FileSettings::default(),
        };
        let non_empty = |name: &str| environment(name).filter(|value| !value.trim().is_empty());
        let url = non_empty("REGKEEPER_URL")
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "REGKEEPER_URL must start with http:// or https://, not `{url}`"
            )));
        }
        let token = match non_empty("REGKEEPER_TOKEN") {
            Some(token) => Some(Sensitive::new(token.trim())),
            None => match non_empty("REGKEEPER_TOKEN_FILE") {
                Some(path) => Some(read_token_file(Path::new(&path))?),
                None => file.token,
            },
        };
        Ok(Self::new(&url, token))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
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
                reason: transport.to_string(),
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

    #[test]
    fn bad_urls_are_refused_with_the_variable_named() {
        let error =
            Client::from_environment(&|name| (name == "REGKEEPER_URL").then(|| "ftp://x".into()))
                .err()
                .unwrap();
        assert!(error.to_string().contains("REGKEEPER_URL"));
    }
}
