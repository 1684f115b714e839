//! Requests to the upstream registry on a caller's behalf, through `outbound`'s
//! streaming client. How each host authenticates is learnt once from its `/v2/`
//! challenge; Bearer tokens are cached per credential, repository and action, and
//! reused until shortly before they (or the login they came from) expire. A 401, or a 403 saying the token
//! expired, drops the cached token, re-mints a cloud login, and retries once.
//! Redirects (to S3, a CDN) are followed here, never with the registry's credentials.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::config::OutboundConfig;
use crate::domain::credential::Credential;
use crate::outbound::{OutboundClient, OutboundError, MAX_REDIRECTS};
use crate::providers::RegistryLogin;
use crate::registry_auth::challenge::{self, Challenge, Scheme};
use crate::registry_auth::{
    api_host, basic_header, challenges_of, Login, RegistryClient, RegistryError,
};
use crate::service::App;

/// How long a host's challenge is remembered.
const CHALLENGE_TTL: Duration = Duration::from_secs(600);
/// A cached token is given up this long before the registry said it expires.
const TOKEN_MARGIN_MS: i64 = 10_000;
/// 403 bodies are read, to tell an expired token from a denial, up to this size.
const DENIAL_BODY_LIMIT: usize = 64 * 1024;

/// How a registry wants to be authenticated, from its `/v2/` answer.
enum HostAuth {
    Anonymous,
    Basic,
    Bearer(Challenge),
}

impl HostAuth {
    /// How to answer a 401's challenges, or why regkeeper cannot.
    fn answering(challenges: &[Challenge]) -> Result<Self, String> {
        match challenge::preferred(challenges) {
            Some(Challenge {
                scheme: Scheme::Basic,
                ..
            }) => Ok(Self::Basic),
            Some(
                found @ Challenge {
                    scheme: Scheme::Bearer,
                    ..
                },
            ) if found.realm().is_some() => Ok(Self::Bearer(found.clone())),
            Some(Challenge {
                scheme: Scheme::Bearer,
                ..
            }) => Err("the Bearer challenge has no realm".into()),
            Some(other) => Err(format!(
                "unsupported authentication scheme `{}`",
                other.scheme.as_str()
            )),
            None => Err("HTTP 401 without a WWW-Authenticate challenge".into()),
        }
    }
}

/// An `Authorization` header value for one (credential, repository, action).
struct Authorization {
    header: Option<SecretString>,
    /// Unix milliseconds after which it is not used again.
    usable_until: i64,
    /// When the minted login it was made from was issued (none for a stored password),
    /// so a refusal re-mints that login and no newer one.
    minted_login: Option<i64>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    credential_id: String,
    secret_version: i64,
    host: String,
    repository: String,
    action: &'static str,
}

/// Who the upstream requests are for: a resolved credential, and its login once one
/// was needed (only to make a new upstream `Authorization`).
pub struct Session {
    pub credential: Arc<Credential>,
    pub login: Option<RegistryLogin>,
    /// The registry host as stored (`docker.io`, `host:port`).
    pub host: String,
    /// The repository as the upstream names it (`library/` added for Docker Hub).
    pub repository: String,
}

impl Session {
    fn denied(&self) -> UpstreamError {
        UpstreamError::Denied {
            host: self.host.clone(),
            credential: self.credential.name.clone(),
            repository: self.repository.clone(),
        }
    }

    fn key(&self) -> TokenKey {
        TokenKey {
            credential_id: self.credential.id.clone(),
            secret_version: self.credential.secret_version,
            host: self.host.clone(),
            repository: self.repository.clone(),
            action: "pull",
        }
    }
}

/// One read request to the upstream.
pub struct UpstreamRequest<'a> {
    pub method: Method,
    /// After `/v2/REPOSITORY/`: `manifests/REF`, `blobs/DIGEST` or `tags/list`.
    pub route: &'a str,
    pub query: Option<&'a str>,
    pub accept: Option<HeaderValue>,
    pub range: Option<HeaderValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry refused the credential's login even after a fresh one.
    #[error("{host} refused credential {credential} (HTTP {status}) for repository {repository}; check the credential, or its pull access to the repository")]
    Refused {
        host: String,
        credential: String,
        repository: String,
        status: u16,
    },
    /// The registry denied the credential access to the repository (HTTP 403).
    #[error("{host} denied credential {credential} access to repository {repository} (HTTP 403)")]
    Denied {
        host: String,
        credential: String,
        repository: String,
    },
    /// Re-minting the credential's login failed.
    #[error(transparent)]
    Relogin(crate::domain::Error),
}

pub struct Upstream {
    outbound: OutboundClient,
    /// The operator's plain-http registries and trusted token realms.
    config: OutboundConfig,
    clock: Arc<dyn Clock>,
    challenges: moka::sync::Cache<String, Arc<HostAuth>>,
    tokens: moka::sync::Cache<TokenKey, Arc<Authorization>>,
}

impl Upstream {
    pub fn new(outbound: OutboundClient, config: OutboundConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            outbound,
            config,
            clock,
            challenges: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(CHALLENGE_TTL)
                .build(),
            tokens: moka::sync::Cache::builder()
                .max_capacity(100_000)
                // Tokens rarely live longer; the entry's own deadline is checked anyway.
                .time_to_live(Duration::from_secs(3_600))
                .build(),
        }
    }

    fn base_url(&self, host: &str) -> Result<url::Url, UpstreamError> {
        let api = api_host(host);
        let scheme = if self
            .config
            .http_registries
            .iter()
            .any(|allowed| allowed == api)
        {
            "http"
        } else {
            "https"
        };
        url::Url::parse(&format!("{scheme}://{api}/")).map_err(|_| {
            UpstreamError::Outbound(OutboundError::Other(format!(
                "{api} is not a valid registry host"
            )))
        })
    }

    /// Sends `request`, retrying once with a fresh login if the registry refuses the
    /// current one. Any other status is the caller's to interpret.
    pub async fn send(
        &self,
        app: &App,
        session: &mut Session,
        request: &UpstreamRequest<'_>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let (response, used) = self.send_once(app, session, request).await?;
        let status = match refusal(response).await {
            Answer::Response(response) => return Ok(response),
            Answer::Denied => return Err(session.denied()),
            Answer::Refused(status, challenge) => {
                // A registry may answer `/v2/` anonymously yet want a login for the
                // repository, or move its realm: its latest challenge is the one to use.
                if let Some(host_auth) = challenge {
                    self.challenges
                        .insert(session.host.clone(), Arc::new(host_auth));
                }
                status
            }
        };
        self.tokens.invalidate(&session.key());
        if let Some(refused_issued_at) = used.minted_login {
            session.login = Some(
                crate::service::registry_tokens::login_after_refusal(
                    app,
                    &session.credential,
                    refused_issued_at,
                )
                .await
                .map_err(UpstreamError::Relogin)?,
            );
        }
        app.metrics.proxy_upstream_retries.inc();
        let (response, _) = self.send_once(app, session, request).await?;
        match refusal(response).await {
            Answer::Response(response) => Ok(response),
            Answer::Denied => Err(session.denied()),
            Answer::Refused(..) => {
                self.tokens.invalidate(&session.key());
                Err(UpstreamError::Refused {
                    host: session.host.clone(),
                    credential: session.credential.name.clone(),
                    repository: session.repository.clone(),
                    status: status.as_u16(),
                })
            }
        }
    }

    /// Sends the request once, with the session's `Authorization` for the repository;
    /// gives back which one it used.
    async fn send_once(
        &self,
        app: &App,
        session: &mut Session,
        request: &UpstreamRequest<'_>,
    ) -> Result<(reqwest::Response, Arc<Authorization>), UpstreamError> {
        let base = self.base_url(&session.host)?;
        let mut url = base
            .join(&format!("v2/{}/{}", session.repository, request.route))
            .map_err(|_| OutboundError::Other("the upstream URL cannot be built".into()))?;
        url.set_query(request.query);
        let authorization = self.authorization(app, session, &base).await?;
        let mut builder = self.outbound.request(request.method.clone(), url.clone());
        builder = with_headers(builder, request);
        if let Some(header) = &authorization.header {
            builder = builder.header(AUTHORIZATION, header.expose_secret());
        }
        let mut response = self.outbound.send_streaming(builder).await?;
        // Blob storage gets the request without the registry's credentials.
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                return Ok((response, authorization));
            }
            let Some(next) = response
                .headers()
                .get(LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| response.url().join(location).ok())
            else {
                return Ok((response, authorization));
            };
            let method = if response.status() == StatusCode::SEE_OTHER {
                Method::GET
            } else {
                request.method.clone()
            };
            let builder = with_headers(self.outbound.request(method, next), request);
            response = self.outbound.send_streaming(builder).await?;
        }
        if response.status().is_redirection() {
            return Err(OutboundError::TooManyRedirects.into());
        }
        Ok((response, authorization))
    }

    /// The `Authorization` for the session's repository: cached, or made now from the
    /// host's challenge (Basic as is; Bearer through its token service, pull scope).
    async fn authorization(
        &self,
        app: &App,
        session: &mut Session,
        base: &url::Url,
    ) -> Result<Arc<Authorization>, UpstreamError> {
        let now = self.clock.now();
        let key = session.key();
        if let Some(cached) = self.tokens.get(&key) {
            if now < cached.usable_until {
                return Ok(cached);
            }
        }
        if session.login.is_none() {
            session.login = Some(
                crate::service::registry_tokens::login_for(app, &session.credential)
                    .await
                    .map_err(UpstreamError::Relogin)?,
            );
        }
        let Some(registry_login) = session.login.as_ref() else {
            unreachable!("the login was just set");
        };
        let login = Login {
            username: &registry_login.username,
            password: &registry_login.secret,
        };
        let host_auth = self.host_auth(&session.host, base).await?;
        let authorization = match host_auth.as_ref() {
            HostAuth::Anonymous => Authorization {
                header: None,
                usable_until: i64::MAX,
                minted_login: None,
            },
            HostAuth::Basic => Authorization {
                header: Some(SecretString::from(basic_header(&login))),
                usable_until: i64::MAX,
                minted_login: None,
            },
            HostAuth::Bearer(challenge) => {
                let registry = RegistryClient::new(&self.outbound, &self.config);
                let scope = format!("repository:{}:pull", session.repository);
                let token = registry
                    .bearer_token(api_host(&session.host), challenge, &login, Some(&scope))
                    .await?;
                let lifetime = i64::try_from(token.expires_in.as_millis()).unwrap_or(i64::MAX);
                Authorization {
                    header: Some(SecretString::from(format!(
                        "Bearer {}",
                        token.token.expose_secret()
                    ))),
                    usable_until: now
                        .saturating_add((lifetime - TOKEN_MARGIN_MS).max(lifetime / 2)),
                    minted_login: None,
                }
            }
        };
        // A login that expires bounds every header made from it, with the same margin
        // `resolve` keeps.
        let (usable_until, minted_login) = match registry_login.expires_at {
            Some(expires_at) => (
                authorization
                    .usable_until
                    .min(expires_at - crate::login_cache::MINIMUM_REMAINING_MS),
                Some(registry_login.issued_at),
            ),
            None => (authorization.usable_until, None),
        };
        let authorization = Arc::new(Authorization {
            header: authorization.header,
            usable_until,
            minted_login,
        });
        self.tokens.insert(key, Arc::clone(&authorization));
        Ok(authorization)
    }

    /// The host's challenge, from its `/v2/` answer (remembered for a while).
    async fn host_auth(&self, host: &str, base: &url::Url) -> Result<Arc<HostAuth>, UpstreamError> {
        if let Some(known) = self.challenges.get(host) {
            return Ok(known);
        }
        let ping = base.join("v2/").expect("static path joins");
        let response = self
            .outbound
            .send(self.outbound.request(Method::GET, ping))
            .await?;
        let api = api_host(host).to_owned();
        let host_auth =
            match response.status() {
                status if status.is_success() => HostAuth::Anonymous,
                StatusCode::UNAUTHORIZED => HostAuth::answering(&challenges_of(&response))
                    .map_err(|reason| RegistryError::BadChallenge {
                        host: api.clone(),
                        reason,
                    })?,
                status => {
                    return Err(RegistryError::UnexpectedStatus {
                        host: api,
                        path: "/v2/",
                        status: status.as_u16(),
                    }
                    .into())
                }
            };
        let host_auth = Arc::new(host_auth);
        self.challenges
            .insert(host.to_owned(), Arc::clone(&host_auth));
        Ok(host_auth)
    }
}

fn with_headers(
    mut builder: reqwest::RequestBuilder,
    request: &UpstreamRequest<'_>,
) -> reqwest::RequestBuilder {
    if let Some(accept) = &request.accept {
        builder = builder.header(ACCEPT, accept.clone());
    }
    if let Some(range) = &request.range {
        builder = builder.header(RANGE, range.clone());
    }
    builder
}

enum Answer {
    Response(reqwest::Response),
    /// With the challenge a 401 carried, if it carried one regkeeper can answer.
    Refused(StatusCode, Option<HostAuth>),
    Denied,
}

/// Whether the registry refused the login: a 401, or a 403 that says the token
/// expired (ECR's "Your authorization token has expired"). Other 403s are denials,
/// denials.
async fn refusal(response: reqwest::Response) -> Answer {
    match response.status() {
        StatusCode::UNAUTHORIZED => Answer::Refused(
            StatusCode::UNAUTHORIZED,
            HostAuth::answering(&challenges_of(&response)).ok(),
        ),
        StatusCode::FORBIDDEN => {
            let status = response.status();
            let body = OutboundClient::read_capped(response, DENIAL_BODY_LIMIT)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body).to_ascii_lowercase();
            if text.contains("expired") {
                Answer::Refused(status, None)
            } else {
                Answer::Denied
            }
        }
        _ => Answer::Response(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, challenge: Option<&str>, body: &str) -> reqwest::Response {
        let mut builder = axum::http::Response::builder().status(status);
        if let Some(challenge) = challenge {
            builder = builder.header("www-authenticate", challenge);
        }
        reqwest::Response::from(builder.body(body.to_owned()).unwrap())
    }

    #[tokio::test]
    async fn refusals_are_told_from_denials() {
        // ECR's answer to an expired token is a 403: a refusal, retried.
        let expired = response(
            403,
            None,
            r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#,
        );
        assert!(matches!(refusal(expired).await, Answer::Refused(status, None) if status == 403));
        // Any other 403 is a denial, not retried.
        let denied = response(
            403,
            None,
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
        );
        assert!(matches!(refusal(denied).await, Answer::Denied));
        // A 401 brings the challenge to answer next.
        let bearer = response(
            401,
            Some(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull""#,
            ),
            "",
        );
        match refusal(bearer).await {
            Answer::Refused(status, Some(HostAuth::Bearer(challenge))) => {
                assert_eq!(status, 401);
                assert_eq!(challenge.realm(), Some("https://auth.example.com/token"));
            }
            _ => panic!("a Bearer challenge was expected"),
        }
        let basic = response(401, Some(r#"Basic realm="Registry Realm""#), "");
        assert!(matches!(
            refusal(basic).await,
            Answer::Refused(_, Some(HostAuth::Basic))
        ));
        let ok = response(200, None, "{}");
        assert!(matches!(refusal(ok).await, Answer::Response(_)));
    }
}
