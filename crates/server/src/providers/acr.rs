//! Azure Container Registry with a service principal: the client id and secret get an
//! Azure AD token (client-credentials grant), which the registry's `/oauth2/exchange`
//! turns into an ACR refresh token; that token is the password of the fixed user
//! [`REFRESH_TOKEN_USERNAME`], as `az acr login` hands it to Docker.
//!
//! Two clients, deliberately: Azure AD is reached by a client of its own that only ever
//! talks to the operator's configured authority (no redirects followed), while the
//! exchange goes to the user-supplied registry host and so through the guarded
//! [`OutboundClient`], like every other request to a registry.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use base64::Engine;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::domain::credential::{AuthMethod, Credential, CredentialSecret, Timestamp};
use crate::outbound::OutboundClient;

use super::{ProviderError, RegistryLogin};

/// The user name ACR expects with a refresh token as password.
pub const REFRESH_TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// ACR refresh tokens live three hours (Azure's documentation of `az acr login
/// --expose-token` and of the `/oauth2/exchange` flow): used when the token's own `exp`
/// is unreadable or already past, and the cap on a later `exp`.
pub const REFRESH_TOKEN_LIFETIME_MS: i64 = 3 * 3600 * 1000;
/// The audience ACR's exchange accepts: an Azure Resource Manager token.
const MANAGEMENT_SCOPE: &str = "https://management.azure.com/.default";
/// Token answers are small JSON documents; anything bigger is refused.
const RESPONSE_LIMIT: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AcrProvider {
    /// Reaches only `authority`: built here, used for nothing else, no redirects.
    azure_ad: reqwest::Client,
    authority: Url,
    outbound: OutboundClient,
    /// `host:port`s the operator allows over plain http (as for `registry_auth`).
    http_registries: Vec<String>,
}

impl fmt::Debug for AcrProvider {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AcrProvider")
            .field("authority", &self.authority.as_str())
            .finish_non_exhaustive()
    }
}

/// Azure AD's answer to the client-credentials grant.
#[derive(Deserialize)]
struct AzureAdToken {
    access_token: SecretString,
}

impl fmt::Debug for AzureAdToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("AzureAdToken([REDACTED])")
    }
}

/// The registry's answer to `/oauth2/exchange`.
#[derive(Deserialize)]
struct AcrRefreshToken {
    refresh_token: SecretString,
}

impl fmt::Debug for AcrRefreshToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("AcrRefreshToken([REDACTED])")
    }
}

/// Azure AD's error document: `error` (OAuth 2.0) and the AADSTS numbers.
#[derive(Deserialize, Default)]
struct AzureAdError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

impl AcrProvider {
    pub fn new(
        authority: Url,
        outbound: OutboundClient,
        http_registries: Vec<String>,
    ) -> Result<Self, ProviderError> {
        let azure_ad = crate::outbound::operator_endpoint_client(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
            .map_err(|error| {
                ProviderError::AzureUnreachable(format!("cannot build the HTTP client: {error}"))
            })?;
        Ok(Self {
            azure_ad,
            authority,
            outbound,
            http_registries,
        })
    }

    /// Azure AD, then the registry's exchange: a refresh token valid about three hours.
    pub async fn login(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
        now: Timestamp,
    ) -> Result<RegistryLogin, ProviderError> {
        debug_assert_eq!(credential.auth_method, AuthMethod::AzureServicePrincipal);
        let tenant = credential
            .settings
            .azure_tenant_id
            .as_deref()
            .ok_or_else(|| {
                ProviderError::Unsupported("the ACR service principal has no tenant id".into())
            })?;
        let (client_id, client_secret) = super::key_pair(credential, secret)?;
        let azure_token = self
            .azure_ad_token(tenant, client_id, client_secret)
            .await?;
        let refresh_token = self
            .exchange(&credential.registry_host, tenant, &azure_token)
            .await?;
        let expires_at = super::expiry_at_most(
            "acr",
            &credential.id,
            token_expiry(refresh_token.expose_secret()),
            now,
            REFRESH_TOKEN_LIFETIME_MS,
        );
        Ok(RegistryLogin {
            username: REFRESH_TOKEN_USERNAME.to_owned(),
            secret: refresh_token,
            issued_at: now,
            expires_at: Some(expires_at),
        })
    }

    fn token_url(&self, tenant: &str) -> Result<Url, ProviderError> {
        let mut url = self.authority.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::Unsupported("the Azure authority URL has no path".into()))?
            .pop_if_empty()
            .extend([tenant, "oauth2", "v2.0", "token"]);
        Ok(url)
    }

    async fn azure_ad_token(
        &self,
        tenant: &str,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<SecretString, ProviderError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("scope", MANAGEMENT_SCOPE),
        ];
        let response = self
            .azure_ad
            .post(self.token_url(tenant)?)
            .form(&form)
            .send()
            .await
            .map_err(|error| ProviderError::AzureUnreachable(crate::outbound::describe(&error)))?;
        let status = response.status();
        let body = OutboundClient::read_capped(response, RESPONSE_LIMIT)
            .await
            .map_err(|error| ProviderError::AzureUnreachable(error.to_string()))?;
        if status.is_success() {
            let token: AzureAdToken = serde_json::from_slice(&body).map_err(|_| {
                ProviderError::AzureFailed("the token answer is not the expected JSON".into())
            })?;
            return Ok(token.access_token);
        }
        Err(azure_ad_error(status, &body, tenant))
    }

    fn exchange_url(&self, registry_host: &str) -> Result<Url, ProviderError> {
        let scheme = if self
            .http_registries
            .iter()
            .any(|allowed| allowed == registry_host)
        {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{registry_host}/oauth2/exchange")).map_err(|_| {
            ProviderError::AcrExchangeFailed {
                host: registry_host.to_owned(),
                reason: "the registry host is not a valid URL host".into(),
            }
        })
    }

    async fn exchange(
        &self,
        registry_host: &str,
        tenant: &str,
        azure_token: &SecretString,
    ) -> Result<SecretString, ProviderError> {
        let form = [
            ("grant_type", "access_token"),
            ("service", registry_host),
            ("tenant", tenant),
            ("access_token", azure_token.expose_secret()),
        ];
        let request = self
            .outbound
            .request(reqwest::Method::POST, self.exchange_url(registry_host)?)
            .form(&form);
        let response = self
            .outbound
            .send(request)
            .await
            .map_err(ProviderError::Registry)?;
        let status = response.status();
        let host = registry_host.to_owned();
        match status {
            status if status.is_success() => {
                let body = OutboundClient::read_capped(response, RESPONSE_LIMIT)
                    .await
                    .map_err(ProviderError::Registry)?;
                let parsed: AcrRefreshToken = serde_json::from_slice(&body).map_err(|_| {
                    ProviderError::AcrExchangeFailed {
                        host: host.clone(),
                        reason: "the answer holds no refresh_token".into(),
                    }
                })?;
                if parsed.refresh_token.expose_secret().is_empty() {
                    return Err(ProviderError::AcrExchangeFailed {
                        host,
                        reason: "the refresh token is empty".into(),
                    });
                }
                Ok(parsed.refresh_token)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(ProviderError::AcrExchangeRejected {
                    host,
                    tenant: tenant.to_owned(),
                    status: status.as_u16(),
                })
            }
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                Err(ProviderError::AcrExchangeFailed {
                    host,
                    reason: format!(
                        "HTTP {} at /oauth2/exchange; is this an Azure container registry?",
                        status.as_u16()
                    ),
                })
            }
            status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                Err(ProviderError::AcrExchangeUnavailable {
                    host,
                    status: status.as_u16(),
                })
            }
            status => Err(ProviderError::AcrExchangeFailed {
                host,
                reason: format!("HTTP {}", status.as_u16()),
            }),
        }
    }
}

/// Turns an Azure AD error answer into words a user can act on. Only the OAuth error
/// name and AADSTS numbers are kept: `error_description` carries trace ids and
/// timestamps, and is not needed to say what to fix.
fn azure_ad_error(status: StatusCode, body: &[u8], tenant: &str) -> ProviderError {
    let parsed: AzureAdError = serde_json::from_slice(body).unwrap_or_default();
    let has = |code: u64| parsed.error_codes.contains(&code);
    let aadsts = parsed
        .error_codes
        .iter()
        .map(|code| format!("AADSTS{code}"))
        .collect::<Vec<_>>()
        .join(", ");
    // AADSTS90002: tenant not found; AADSTS900023: not a valid tenant identifier.
    if has(90002) || has(900023) {
        return ProviderError::AzureTenantNotFound {
            tenant: tenant.to_owned(),
        };
    }
    if has(7000222) {
        return ProviderError::AzureSecretExpired;
    }
    if parsed.error == "invalid_client" || parsed.error == "unauthorized_client" || has(700016) {
        return ProviderError::AzureInvalidClient {
            code: if aadsts.is_empty() {
                parsed.error
            } else {
                aadsts
            },
        };
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return ProviderError::AzureUnavailable(format!("HTTP {}", status.as_u16()));
    }
    let mut detail = format!("HTTP {}", status.as_u16());
    if !parsed.error.is_empty() {
        detail.push_str(&format!(", {}", safe_word(&parsed.error)));
    }
    if !aadsts.is_empty() {
        detail.push_str(&format!(", {aadsts}"));
    }
    ProviderError::AzureFailed(detail)
}

/// An OAuth error name as the server sent it, kept only if it looks like one.
fn safe_word(value: &str) -> String {
    if value.len() <= 64 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        value.to_owned()
    } else {
        "unrecognised error".to_owned()
    }
}

/// The `exp` claim of a JWT, in milliseconds, read without checking the signature: the
/// registry checks that; here it only tells when to refresh.
fn token_expiry(token: &str) -> Option<Timestamp> {
    #[derive(Deserialize)]
    struct Claims {
        exp: i64,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = BASE64_URL.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    claims.exp.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_ad_errors_become_actionable_messages() {
        let wrong_secret = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Trace ID: x","error_codes":[7000215]}"#;
        let error = azure_ad_error(StatusCode::UNAUTHORIZED, wrong_secret, "t");
        assert_eq!(error.code(), "azure_invalid_client");
        assert!(error
            .to_string()
            .starts_with("Azure AD rejected the client id or secret (AADSTS7000215)"));
        assert!(!error.to_string().contains("Trace"));
        let tenant = br#"{"error":"invalid_request","error_codes":[90002]}"#;
        let error = azure_ad_error(StatusCode::BAD_REQUEST, tenant, "contoso.example");
        assert_eq!(error.code(), "azure_tenant_not_found");
        assert!(error.to_string().contains("contoso.example"));
        let expired = br#"{"error":"invalid_client","error_codes":[7000222]}"#;
        assert_eq!(
            azure_ad_error(StatusCode::UNAUTHORIZED, expired, "t").code(),
            "azure_client_secret_expired"
        );
        let down = azure_ad_error(StatusCode::SERVICE_UNAVAILABLE, b"<html>", "t");
        assert!(down.retryable());
        let odd = azure_ad_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"<script>","error_codes":[50000]}"#,
            "t",
        );
        assert_eq!(
            odd.to_string(),
            "Azure AD refused the token request (HTTP 400, unrecognised error, AADSTS50000)"
        );
        assert!(!odd.retryable());
    }

    #[test]
    fn refresh_token_expiry_comes_from_its_exp_claim() {
        let payload = BASE64_URL.encode(r#"{"exp":1700000000,"tenant":"t"}"#);
        assert_eq!(
            token_expiry(&format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig")),
            Some(1_700_000_000_000)
        );
        assert_eq!(token_expiry("opaque"), None);
        assert_eq!(token_expiry("a.!!!.c"), None);
    }

    #[test]
    fn token_urls_stay_on_the_configured_authority() {
        let provider = |authority: &str| {
            AcrProvider::new(
                Url::parse(authority).unwrap(),
                OutboundClient::new(&crate::config::OutboundConfig::default()).unwrap(),
                vec!["127.0.0.1:5000".into()],
            )
            .unwrap()
        };
        assert_eq!(
            provider("https://login.microsoftonline.com")
                .token_url("contoso.onmicrosoft.com")
                .unwrap()
                .as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let local = provider("http://127.0.0.1:8080/base/");
        assert_eq!(
            local.token_url("t").unwrap().as_str(),
            "http://127.0.0.1:8080/base/t/oauth2/v2.0/token"
        );
        assert_eq!(
            local.exchange_url("127.0.0.1:5000").unwrap().as_str(),
            "http://127.0.0.1:5000/oauth2/exchange"
        );
        assert_eq!(
            local.exchange_url("myreg.azurecr.io").unwrap().as_str(),
            "https://myreg.azurecr.io/oauth2/exchange"
        );
    }

    #[test]
    fn secret_holding_types_print_redacted() {
        let azure: AzureAdToken =
            serde_json::from_str(r#"{"access_token":"canary-aad","expires_in":3599}"#).unwrap();
        let refresh: AcrRefreshToken =
            serde_json::from_str(r#"{"refresh_token":"canary-acr"}"#).unwrap();
        for printed in [format!("{azure:?}"), format!("{refresh:?}")] {
            assert!(printed.contains("[REDACTED]"), "{printed}");
            assert!(!printed.contains("canary"), "{printed}");
        }
    }
}
