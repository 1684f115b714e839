//! Docker Registry HTTP API v2 authentication: the `/v2/` ping, the `WWW-Authenticate`
//! challenge, and Basic or Bearer login with per-repository scopes. Used to verify
//! credentials and to mint Bearer tokens; every request goes through `outbound`.
//!
//! Credentials travel only in the `Authorization` header, to the registry's host or
//! to a Bearer realm `realm::realm_trusted` accepts; this module builds no HTTP client
//! of its own. A 401's challenges are answered Bearer over Basic; `probe` reads what
//! a registry's answers mean (a 200 that is a registry's, a missing repository, a
//! blob upload opened and cancelled for `check_push`).

pub mod challenge;
mod probe;
pub mod realm;

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64_URL};
use base64::Engine;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::OutboundConfig;
use crate::domain::registry::DOCKER_HUB;
use crate::outbound::{OutboundClient, OutboundError};

use challenge::{Challenge, Scheme};
pub use probe::PushCheck;

/// Token endpoints answer with small JSON documents; anything bigger is refused.
const TOKEN_RESPONSE_LIMIT: usize = 256 * 1024;
/// The lifetime the distribution token spec prescribes when `expires_in` is absent.
pub const DEFAULT_TOKEN_SECONDS: u64 = 60;
/// The longest a registry's Bearer token is reused (by the proxy's cache), whatever
/// `expires_in` it claims: the spec sets no maximum and registries issue minutes
/// (Docker Hub and distribution 5, GitLab 15, Harbor 30), so an hour is generous and a
/// claimed year is not believed.
pub const MAXIMUM_TOKEN_SECONDS: u64 = 3600;

/// What a registry login is made of: a user name and a password or token.
pub struct Login<'a> {
    pub username: &'a str,
    pub password: &'a SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error("{host} rejected the user name or password (HTTP 401); check them, or whether the token or key has expired or been revoked")]
    Unauthorized { host: String },
    #[error("{host} refused pull access to repository {repository}; the credential is valid but not allowed to read it")]
    ScopeDenied { host: String, repository: String },
    #[error("{host} has no repository {repository}, or does not show it to this credential (HTTP 404{}); check the repository name", code.as_deref().map(|code| format!(" {code}")).unwrap_or_default())]
    RepositoryNotFound {
        host: String,
        repository: String,
        code: Option<String>,
    },
    #[error("{host} answered {path} with HTTP 200 but not as a container registry: {reason}; is this a registry (Docker Registry API v2), or a captive portal or web server in between?")]
    NotARegistry {
        host: String,
        path: &'static str,
        reason: String,
    },
    #[error("{host} sends logins to a token service at {realm_host}, which is neither the registry's own host nor in its domain, so the credentials were not sent there; if that token service belongs to this registry, an operator can allow it with REGKEEPER_OUTBOUND_TOKEN_REALMS={host}={realm_host}")]
    RealmNotAllowed { host: String, realm_host: String },
    #[error("{host} answered HTTP {status} at {path}; is this a container registry (Docker Registry API v2)?")]
    UnexpectedStatus {
        host: String,
        path: &'static str,
        status: u16,
    },
    #[error("{host} sent an authentication challenge regkeeper cannot use: {reason}")]
    BadChallenge { host: String, reason: String },
    #[error("the token service of {host} answered badly: {reason}")]
    TokenService { host: String, reason: String },
}

impl RegistryError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Outbound(error) => error.code(),
            Self::Unauthorized { .. } => "registry_unauthorized",
            Self::ScopeDenied { .. } => "registry_scope_denied",
            Self::RepositoryNotFound { .. } => "registry_repository_not_found",
            Self::NotARegistry { .. } => "registry_not_a_registry",
            Self::RealmNotAllowed { .. } => "registry_realm_not_allowed",
            Self::UnexpectedStatus { .. } => "registry_unexpected_status",
            Self::BadChallenge { .. } => "registry_bad_challenge",
            Self::TokenService { .. } => "registry_token_service_failed",
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            Self::Outbound(error) => error.retryable(),
            Self::UnexpectedStatus { status, .. } => *status >= 500 || *status == 429,
            Self::TokenService { .. } => true,
            _ => false,
        }
    }
}

/// How a registry authenticated a login, and what the verification learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginReport {
    /// `none` (the registry asked for no credentials, so none were checked), `basic` or
    /// `bearer`.
    pub scheme: &'static str,
    /// Actions a Bearer token granted beyond pull, when the token says so.
    pub extra_actions: Vec<String>,
    /// Whether the Bearer token said what it grants (its JWT `access` claim); a Basic
    /// login never does.
    pub grants_known: bool,
    /// The result of opening and cancelling a blob upload, when asked for.
    pub push: Option<PushCheck>,
}

/// A Bearer token from a registry's token service.
pub struct BearerToken {
    pub token: SecretString,
    pub expires_in: Duration,
    /// Actions granted, read from the token's `access` claim when it is a JWT.
    pub granted: Vec<(String, Vec<String>)>,
}

/// The host to send API requests to: Docker Hub's API is not at `docker.io`.
pub fn api_host(registry_host: &str) -> &str {
    if registry_host == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry_host
    }
}

/// Docker Hub keeps official images under `library/`.
pub fn repository_path<'a>(registry_host: &str, repository: &'a str) -> std::borrow::Cow<'a, str> {
    if registry_host == DOCKER_HUB && !repository.contains('/') {
        std::borrow::Cow::Owned(format!("library/{repository}"))
    } else {
        std::borrow::Cow::Borrowed(repository)
    }
}

pub struct RegistryClient<'a> {
    outbound: &'a OutboundClient,
    /// The operator's plain-http registries and trusted token realms.
    config: &'a OutboundConfig,
}

/// What one verification asks of the registry besides the login itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyRequest<'a> {
    /// Ask for pull access to this repository and prove it with its tags list.
    pub repository: Option<&'a str>,
    /// Open a blob upload in the repository and cancel it, to learn whether the
    /// credential may push.
    pub check_push: bool,
}

impl<'a> RegistryClient<'a> {
    pub fn new(outbound: &'a OutboundClient, config: &'a OutboundConfig) -> Self {
        Self { outbound, config }
    }

    fn base_url(&self, host: &str) -> Result<url::Url, RegistryError> {
        let scheme = if self
            .config
            .http_registries
            .iter()
            .any(|allowed| allowed == host)
        {
            "http"
        } else {
            "https"
        };
        url::Url::parse(&format!("{scheme}://{host}/")).map_err(|_| RegistryError::BadChallenge {
            host: host.to_owned(),
            reason: "the registry host is not a valid URL host".into(),
        })
    }

    /// Logs in to `registry_host` as a client would: `GET /v2/`, then the challenge.
    /// Given a repository, asks for pull access to it and checks it is granted. A `/v2/`
    /// that answers 200 must answer as a registry (its API version header, or JSON read
    /// within a small cap), or a captive portal would pass for a login; a registry that
    /// asks for no credentials at all is reported with scheme `none`.
    pub async fn verify(
        &self,
        registry_host: &str,
        login: &Login<'_>,
        request: VerifyRequest<'_>,
    ) -> Result<LoginReport, RegistryError> {
        let repository = request.repository;
        let host = api_host(registry_host);
        let base = self.base_url(host)?;
        let ping = base.join("v2/").expect("static path joins");
        let response = self
            .outbound
            .send(self.outbound.request(Method::GET, ping.clone()))
            .await?;
        let (challenges, anonymous_root) = match response.status() {
            status if status.is_success() => {
                probe::registry_answer(host, "/v2/", response).await?;
                // `/v2/` may be open while repositories are not: ask the repository.
                let Some(repository) = repository else {
                    return Ok(LoginReport::anonymous());
                };
                let name = repository_path(registry_host, repository);
                let tags = tags_url(&base, host, &name)?;
                let response = self
                    .outbound
                    .send(self.outbound.request(Method::GET, tags))
                    .await?;
                match response.status() {
                    StatusCode::UNAUTHORIZED => (challenges_of(&response), true),
                    status if status.is_success() => return Ok(LoginReport::anonymous()),
                    StatusCode::NOT_FOUND => {
                        return Err(probe::not_found(host, &name, response).await)
                    }
                    status => {
                        return Err(RegistryError::UnexpectedStatus {
                            host: host.to_owned(),
                            path: "/v2/<name>/tags/list",
                            status: status.as_u16(),
                        })
                    }
                }
            }
            StatusCode::UNAUTHORIZED => (challenges_of(&response), false),
            status => {
                return Err(RegistryError::UnexpectedStatus {
                    host: host.to_owned(),
                    path: "/v2/",
                    status: status.as_u16(),
                })
            }
        };
        let challenge =
            challenge::preferred(&challenges).ok_or_else(|| RegistryError::BadChallenge {
                host: host.to_owned(),
                reason: "HTTP 401 without a WWW-Authenticate challenge".into(),
            })?;
        match &challenge.scheme {
            Scheme::Basic => {
                // An open `/v2/` would answer 200 to any password: only the repository
                // can tell, below.
                if !anonymous_root {
                    let response = self.basic_get(&ping, login).await?;
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED {
                        return Err(RegistryError::Unauthorized {
                            host: host.to_owned(),
                        });
                    }
                    if !status.is_success() {
                        return Err(RegistryError::UnexpectedStatus {
                            host: host.to_owned(),
                            path: "/v2/",
                            status: status.as_u16(),
                        });
                    }
                    probe::registry_answer(host, "/v2/", response).await?;
                }
                let mut push = None;
                if let Some(repository) = repository {
                    let name = repository_path(registry_host, repository);
                    self.check_pull_basic(&base, host, &name, login).await?;
                    if request.check_push {
                        let authorization = SecretString::from(basic_header(login));
                        push = Some(self.check_push(&base, &name, &authorization).await?);
                    }
                }
                Ok(LoginReport {
                    scheme: "basic",
                    extra_actions: Vec::new(),
                    grants_known: false,
                    push,
                })
            }
            Scheme::Bearer => {
                // Token services grant the intersection of what is asked and what the
                // user may do, so asking for push as well reveals an over-privileged
                // credential. Services that refuse the wider request get pull alone.
                let token = match repository {
                    Some(repository) => {
                        let name = repository_path(registry_host, repository);
                        // A push check also asks for `delete`, which distribution wants
                        // for cancelling the upload it opens.
                        let actions = if request.check_push {
                            "pull,push,delete"
                        } else {
                            "pull,push"
                        };
                        let wide = format!("repository:{name}:{actions}");
                        match self.bearer_token(host, challenge, login, Some(&wide)).await {
                            Ok(token) => token,
                            Err(
                                RegistryError::Unauthorized { .. }
                                | RegistryError::TokenService { .. },
                            ) => {
                                let narrow = format!("repository:{name}:pull");
                                self.bearer_token(host, challenge, login, Some(&narrow))
                                    .await?
                            }
                            Err(error) => return Err(error),
                        }
                    }
                    None => self.bearer_token(host, challenge, login, None).await?,
                };
                let mut extra_actions = Vec::new();
                let mut push = None;
                if let Some(repository) = repository {
                    let name = repository_path(registry_host, repository);
                    let actions: Vec<&String> = token
                        .granted
                        .iter()
                        .filter(|(granted, _)| granted == name.as_ref())
                        .flat_map(|(_, actions)| actions)
                        .collect();
                    if !token.granted.is_empty()
                        && !actions
                            .iter()
                            .any(|action| *action == "pull" || *action == "*")
                    {
                        return Err(RegistryError::ScopeDenied {
                            host: host.to_owned(),
                            repository: name.into_owned(),
                        });
                    }
                    extra_actions = actions
                        .into_iter()
                        .filter(|action| *action != "pull")
                        .cloned()
                        .collect();
                    self.check_pull_bearer(&base, host, &name, &token).await?;
                    if request.check_push {
                        let authorization =
                            SecretString::from(format!("Bearer {}", token.token.expose_secret()));
                        push = Some(self.check_push(&base, &name, &authorization).await?);
                    }
                }
                Ok(LoginReport {
                    scheme: "bearer",
                    extra_actions,
                    grants_known: !token.granted.is_empty(),
                    push,
                })
            }
            Scheme::Other(name) => Err(RegistryError::BadChallenge {
                host: host.to_owned(),
                reason: format!("unsupported authentication scheme `{name}`"),
            }),
        }
    }

    async fn basic_get(
        &self,
        url: &url::Url,
        login: &Login<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        let request = self
            .outbound
            .request(Method::GET, url.clone())
            .header(reqwest::header::AUTHORIZATION, basic_header(login));
        Ok(self.outbound.send(request).await?)
    }

    /// Pull access over Basic auth: the tags list answers 200 only to a reader, and
    /// 404 when the repository does not exist (or is hidden from this credential).
    async fn check_pull_basic(
        &self,
        base: &url::Url,
        host: &str,
        name: &str,
        login: &Login<'_>,
    ) -> Result<(), RegistryError> {
        let url = tags_url(base, host, name)?;
        let response = self.basic_get(&url, login).await?;
        tags_answer(host, name, response).await
    }

    async fn check_pull_bearer(
        &self,
        base: &url::Url,
        host: &str,
        repository: &str,
        token: &BearerToken,
    ) -> Result<(), RegistryError> {
        let url = tags_url(base, host, repository)?;
        let request = self
            .outbound
            .request(Method::GET, url)
            .bearer_auth(token.token.expose_secret());
        let response = self.outbound.send(request).await?;
        tags_answer(host, repository, response).await
    }

    /// Fetches a Bearer token from the challenge's realm: the OAuth2 password grant by
    /// POST first (what Docker does when it has a password), then the classic GET
    /// with Basic auth when the service does not support it. Credentials go to the
    /// realm only over https (or to an operator-allowed plain-http registry), and only
    /// to a realm `realm::realm_trusted` accepts for `host`, which is checked after
    /// `outbound`'s own destination checks and before anything is sent.
    pub async fn bearer_token(
        &self,
        host: &str,
        challenge: &Challenge,
        login: &Login<'_>,
        scope: Option<&str>,
    ) -> Result<BearerToken, RegistryError> {
        let realm = challenge
            .realm()
            .ok_or_else(|| RegistryError::BadChallenge {
                host: host.to_owned(),
                reason: "the Bearer challenge has no realm".into(),
            })?;
        let realm = url::Url::parse(realm).map_err(|_| RegistryError::BadChallenge {
            host: host.to_owned(),
            reason: "the Bearer realm is not a URL".into(),
        })?;
        let realm_host_port = match realm.port() {
            Some(port) => format!("{}:{port}", realm.host_str().unwrap_or_default()),
            None => realm.host_str().unwrap_or_default().to_owned(),
        };
        if realm.scheme() != "https" && !self.config.http_registries.contains(&realm_host_port) {
            return Err(RegistryError::BadChallenge {
                host: host.to_owned(),
                reason: format!("the token realm {realm_host_port} is not https; credentials are only sent over https"),
            });
        }
        // Where the realm is matters before whose it is: a forbidden address is refused
        // as such, whoever claims it.
        self.outbound.check_url(&realm)?;
        if !realm::realm_trusted(host, &realm, &self.config.token_realms) {
            return Err(RegistryError::RealmNotAllowed {
                host: host.to_owned(),
                realm_host: realm_host_port,
            });
        }
        let service = challenge.service().unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "password"),
            ("client_id", "regkeeper"),
            ("username", login.username),
            ("password", login.password.expose_secret()),
            ("service", service),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let post = self
            .outbound
            .request(Method::POST, realm.clone())
            .form(&form);
        let response = self.outbound.send(post).await?;
        let status = response.status();
        if status.is_success() {
            return parse_token_response(host, response).await;
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                host: host.to_owned(),
            });
        }
        // 404/405/400: the service does not do OAuth2; fall back to GET with Basic.
        let mut get_url = realm;
        {
            let mut query = get_url.query_pairs_mut();
            query.append_pair("service", service);
            if let Some(scope) = scope {
                query.append_pair("scope", scope);
            }
        }
        let get = self
            .outbound
            .request(Method::GET, get_url)
            .header(reqwest::header::AUTHORIZATION, basic_header(login));
        let response = self.outbound.send(get).await?;
        match response.status() {
            status if status.is_success() => parse_token_response(host, response).await,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RegistryError::Unauthorized {
                host: host.to_owned(),
            }),
            status => Err(RegistryError::TokenService {
                host: host.to_owned(),
                reason: format!("HTTP {status}"),
            }),
        }
    }
}

/// `BASE/v2/NAME/tags/list`.
fn tags_url(base: &url::Url, host: &str, name: &str) -> Result<url::Url, RegistryError> {
    base.join(&format!("v2/{name}/tags/list"))
        .map_err(|_| RegistryError::ScopeDenied {
            host: host.to_owned(),
            repository: name.to_owned(),
        })
}

/// What a tags list answer to a login says about pull access.
async fn tags_answer(
    host: &str,
    name: &str,
    response: reqwest::Response,
) -> Result<(), RegistryError> {
    match response.status() {
        status if status.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Err(probe::not_found(host, name, response).await),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RegistryError::ScopeDenied {
            host: host.to_owned(),
            repository: name.to_owned(),
        }),
        status => Err(RegistryError::UnexpectedStatus {
            host: host.to_owned(),
            path: "/v2/<name>/tags/list",
            status: status.as_u16(),
        }),
    }
}

impl LoginReport {
    fn anonymous() -> Self {
        Self {
            scheme: "none",
            extra_actions: Vec::new(),
            grants_known: false,
            push: None,
        }
    }
}

pub(crate) fn basic_header(login: &Login<'_>) -> String {
    format!(
        "Basic {}",
        BASE64.encode(format!(
            "{}:{}",
            login.username,
            login.password.expose_secret()
        ))
    )
}

pub(crate) fn challenges_of(response: &reqwest::Response) -> Vec<Challenge> {
    response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(challenge::parse)
        .collect()
}

/// A token service's answer. Both token fields are read into strings wiped on drop,
/// as is the body they come from ([`OutboundClient::read_capped_secret`]).
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<SecretString>,
    access_token: Option<SecretString>,
    expires_in: Option<u64>,
}

async fn parse_token_response(
    host: &str,
    response: reqwest::Response,
) -> Result<BearerToken, RegistryError> {
    let body = OutboundClient::read_capped_secret(response, TOKEN_RESPONSE_LIMIT)
        .await
        .map_err(|error| match error {
            // The cap alone would not say whose answer was too large.
            OutboundError::TooLarge { limit } => RegistryError::TokenService {
                host: host.to_owned(),
                reason: format!("the answer is larger than {limit} bytes"),
            },
            other => RegistryError::Outbound(other),
        })?;
    parse_token_json(host, &body)
}

/// Reads a token service's JSON answer (`token` or `access_token`, `expires_in`). Never
/// quotes the body, which holds the token; public for the fuzz target.
pub fn parse_token_json(host: &str, body: &[u8]) -> Result<BearerToken, RegistryError> {
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|_| RegistryError::TokenService {
            host: host.to_owned(),
            reason: "the answer is not the token JSON".into(),
        })?;
    // Services send `token`, `access_token` or both; an empty one does not hide the other.
    let usable = |token: &SecretString| !token.expose_secret().is_empty();
    let token = parsed
        .token
        .filter(usable)
        .or(parsed.access_token.filter(usable))
        .ok_or_else(|| RegistryError::TokenService {
            host: host.to_owned(),
            reason: "the answer holds no token".into(),
        })?;
    let granted = granted_access(token.expose_secret());
    let claimed = parsed
        .expires_in
        .filter(|seconds| *seconds > 0)
        .unwrap_or(DEFAULT_TOKEN_SECONDS);
    if claimed > MAXIMUM_TOKEN_SECONDS {
        tracing::info!(
            registry.host = %host,
            claimed_seconds = claimed,
            "registry_auth.token_lifetime_capped"
        );
    }
    Ok(BearerToken {
        token,
        expires_in: Duration::from_secs(claimed.min(MAXIMUM_TOKEN_SECONDS)),
        granted,
    })
}

/// Reads the `access` claim of a JWT Bearer token without checking its signature: the
/// registry checks that; here it only tells what the token claims to grant.
pub fn granted_access(token: &str) -> Vec<(String, Vec<String>)> {
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        access: Vec<AccessEntry>,
    }
    #[derive(Deserialize)]
    struct AccessEntry {
        #[serde(default)]
        name: String,
        #[serde(default)]
        actions: Vec<String>,
    }
    let Some(payload) = token.split('.').nth(1) else {
        return Vec::new();
    };
    let Ok(bytes) = BASE64_URL.decode(payload.trim_end_matches('=')) else {
        return Vec::new();
    };
    serde_json::from_slice::<Claims>(&bytes)
        .map(|claims| {
            claims
                .access
                .into_iter()
                .map(|entry| (entry.name, entry.actions))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_reached_at_its_api_host_with_library_names() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
        assert_eq!(repository_path("docker.io", "alpine"), "library/alpine");
        assert_eq!(
            repository_path("docker.io", "bitnami/redis"),
            "bitnami/redis"
        );
        assert_eq!(repository_path("ghcr.io", "alpine"), "alpine");
    }

    /// Issue 12 item 12: a registry's Bearer token is reused for at most an hour.
    #[test]
    fn a_bearer_token_lifetime_is_capped_at_an_hour() {
        let year = parse_token_json(
            "registry.example",
            br#"{"token":"x","expires_in":31536000}"#,
        )
        .unwrap();
        assert_eq!(year.expires_in, Duration::from_secs(MAXIMUM_TOKEN_SECONDS));
        let short =
            parse_token_json("registry.example", br#"{"token":"x","expires_in":300}"#).unwrap();
        assert_eq!(short.expires_in, Duration::from_secs(300));
        let absent = parse_token_json("registry.example", br#"{"token":"x"}"#).unwrap();
        assert_eq!(
            absent.expires_in,
            Duration::from_secs(DEFAULT_TOKEN_SECONDS)
        );
    }

    #[test]
    fn an_empty_token_field_does_not_hide_a_usable_access_token() {
        let parsed =
            parse_token_json("registry.example", br#"{"token":"","access_token":"x"}"#).unwrap();
        assert_eq!(parsed.token.expose_secret(), "x");
        assert!(
            parse_token_json("registry.example", br#"{"token":"","access_token":""}"#).is_err()
        );
    }

    /// Issue 12 item 18: a token service's token fields are read into strings wiped on
    /// drop, the unused one included (they were plain `String`s).
    #[test]
    fn token_answers_are_held_in_strings_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let parsed: TokenResponse =
            serde_json::from_slice(br#"{"token":"t-canary","access_token":"a-canary"}"#).unwrap();
        wiped_on_drop(&parsed.token);
        wiped_on_drop(&parsed.access_token);
        let bearer = parse_token_json("registry.example", br#"{"token":"t-canary"}"#).unwrap();
        wiped_on_drop(&bearer.token);
        assert!(!format!("{:?}", parsed.token).contains("canary"));
    }

    #[test]
    fn access_claims_are_read_from_jwt_payloads() {
        let payload = BASE64_URL.encode(
            r#"{"access":[{"type":"repository","name":"team/app","actions":["pull","push"]}]}"#,
        );
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        assert_eq!(
            granted_access(&token),
            vec![(
                "team/app".to_owned(),
                vec!["pull".to_owned(), "push".to_owned()]
            )]
        );
        assert!(granted_access("opaque-token").is_empty());
        assert!(granted_access("a.!!!.c").is_empty());
    }
}
