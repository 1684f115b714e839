//! Google Container Registry and Artifact Registry with minted access tokens
//! (`oauth2accesstoken`): the stored service-account key signs a JWT assertion
//! (RS256), which Google's token endpoint exchanges for an hour-long OAuth access
//! token — the key itself never leaves regkeeper.
//!
//! The token endpoint is the operator's configured one, reached by a client of its own
//! that follows no redirects. The key file's own `token_uri` is ignored on purpose: the
//! key is user-supplied, and whoever stores a credential must not choose where
//! regkeeper sends signed assertions (nor make it fetch an arbitrary URL).

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;
use zeroize::Zeroizing;

use crate::domain::credential::{AuthMethod, Credential, CredentialSecret, Timestamp};
use crate::outbound::OutboundClient;

use super::{ProviderError, RegistryLogin};

/// The registry user name that takes an OAuth access token as its password.
pub const ACCESS_TOKEN_USERNAME: &str = "oauth2accesstoken";
/// What the access token may do: registries accept cloud-platform tokens.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The assertion's lifetime; Google accepts at most an hour.
const ASSERTION_SECONDS: i64 = 3600;
/// Google's documented access-token lifetime (one hour, its maximum): used when an
/// answer gives none, and the cap on whatever `expires_in` an answer claims.
pub const TOKEN_LIFETIME_MS: i64 = 3600 * 1000;
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const RESPONSE_LIMIT: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct GcrProvider {
    /// Reaches only `token_url`: built here, used for nothing else, no redirects.
    client: reqwest::Client,
    token_url: Url,
}

impl fmt::Debug for GcrProvider {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("GcrProvider")
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The parts of a service-account JSON key that signing needs. Unknown fields, the
/// key's `token_uri` among them, are ignored (see the module documentation).
#[derive(Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    private_key: SecretString,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parses a key file without ever quoting it in an error.
    pub fn parse(json: &SecretString) -> Result<Self, ProviderError> {
        serde_json::from_str(json.expose_secret()).map_err(|_| {
            ProviderError::GcpInvalidKey(
                "it is not a service-account JSON key with client_email and private_key".into(),
            )
        })
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// Google's answer to the JWT-bearer grant.
#[derive(Deserialize)]
struct GoogleToken {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<i64>,
}

impl fmt::Debug for GoogleToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("GoogleToken")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl GcrProvider {
    pub fn new(token_url: Url) -> Result<Self, ProviderError> {
        let client = crate::outbound::operator_endpoint_client(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
            .map_err(|error| {
                ProviderError::GcpUnreachable(format!("cannot build the HTTP client: {error}"))
            })?;
        Ok(Self { client, token_url })
    }

    /// Signs the assertion that asks for a cloud-platform access token, valid from
    /// `now` (milliseconds) for an hour.
    pub fn assertion(
        &self,
        key: &ServiceAccountKey,
        now: Timestamp,
    ) -> Result<Zeroizing<String>, ProviderError> {
        let signing_key = EncodingKey::from_rsa_pem(key.private_key.expose_secret().as_bytes())
            .map_err(|_| {
                ProviderError::GcpInvalidKey(
                    "its private_key is not an RSA private key in PEM".into(),
                )
            })?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&key.private_key_id);
        let issued_at = now.div_euclid(1000);
        let claims = AssertionClaims {
            iss: &key.client_email,
            scope: SCOPE,
            aud: self.token_url.as_str(),
            iat: issued_at,
            exp: issued_at + ASSERTION_SECONDS,
        };
        jsonwebtoken::encode(&header, &claims, &signing_key)
            .map(Zeroizing::new)
            .map_err(|_| {
                ProviderError::GcpInvalidKey(
                    "its private_key cannot sign (RS256) an assertion".into(),
                )
            })
    }

    /// An hour-long access token for the registry user `oauth2accesstoken`.
    pub async fn login(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
        now: Timestamp,
    ) -> Result<RegistryLogin, ProviderError> {
        debug_assert_eq!(credential.auth_method, AuthMethod::GcpAccessToken);
        let key_file = secret
            .password
            .as_ref()
            .ok_or(ProviderError::MissingSecret)?;
        let key = ServiceAccountKey::parse(key_file)?;
        let assertion = self.assertion(&key, now)?;
        let form = [
            ("grant_type", GRANT_TYPE),
            ("assertion", assertion.as_str()),
        ];
        let response = self
            .client
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|error| ProviderError::GcpUnreachable(crate::outbound::describe(&error)))?;
        let status = response.status();
        let body = OutboundClient::read_capped(response, RESPONSE_LIMIT)
            .await
            .map_err(|error| ProviderError::GcpUnreachable(error.to_string()))?;
        if !status.is_success() {
            return Err(google_error(status, &body));
        }
        let token: GoogleToken = serde_json::from_slice(&body).map_err(|_| {
            ProviderError::GcpFailed("the token answer is not the expected JSON".into())
        })?;
        if token.access_token.expose_secret().is_empty() {
            return Err(ProviderError::GcpFailed("the access token is empty".into()));
        }
        let expires_at = super::expiry_at_most(
            "gcr",
            &credential.id,
            token
                .expires_in
                .map(|seconds| now.saturating_add(seconds.saturating_mul(1000))),
            now,
            TOKEN_LIFETIME_MS,
        );
        tracing::debug!(
            credential.id = %credential.id,
            service_account = %key.client_email,
            "gcr.access_token_minted"
        );
        Ok(RegistryLogin {
            username: ACCESS_TOKEN_USERNAME.to_owned(),
            secret: token.access_token,
            issued_at: now,
            expires_at: Some(expires_at),
        })
    }
}

/// Google's `error` and `error_description` (e.g. `invalid_grant`, "Invalid JWT
/// Signature.") say what to fix and never echo the assertion; they come from the
/// operator's endpoint, and are still trimmed to printable text of bounded length.
fn google_error(status: StatusCode, body: &[u8]) -> ProviderError {
    let parsed: GoogleError = serde_json::from_slice(body).unwrap_or_default();
    let printable = |value: &str| -> String {
        value
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect()
    };
    let mut detail = printable(&parsed.error);
    if !parsed.error_description.is_empty() {
        detail = format!("{detail}: {}", printable(&parsed.error_description));
    }
    match parsed.error.as_str() {
        "invalid_grant" | "invalid_client" | "unauthorized_client" => {
            ProviderError::GcpKeyRejected(detail)
        }
        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
            ProviderError::GcpUnavailable(format!("HTTP {}", status.as_u16()))
        }
        "" => ProviderError::GcpFailed(format!("HTTP {}", status.as_u16())),
        _ => ProviderError::GcpFailed(format!("HTTP {}, {detail}", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_say_what_to_fix() {
        let rejected = google_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        );
        assert_eq!(rejected.code(), "gcp_key_rejected");
        assert!(
            rejected
                .to_string()
                .contains("invalid_grant: Invalid JWT Signature."),
            "{rejected}"
        );
        assert!(!rejected.retryable());
        let down = google_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert!(down.retryable());
        assert_eq!(
            google_error(StatusCode::BAD_REQUEST, b"{}").to_string(),
            "Google's token endpoint refused the request (HTTP 400)"
        );
    }

    #[test]
    fn keys_that_are_not_keys_are_refused_without_echoing_them() {
        let provider =
            GcrProvider::new(Url::parse("https://oauth2.example/token").unwrap()).unwrap();
        let error = ServiceAccountKey::parse(&SecretString::from("canary-not-json".to_owned()))
            .unwrap_err();
        assert!(!error.to_string().contains("canary"));
        let key = ServiceAccountKey::parse(&SecretString::from(
            r#"{"type":"service_account","client_email":"a@b","private_key":"canary-pem"}"#
                .to_owned(),
        ))
        .unwrap();
        let error = provider.assertion(&key, 0).unwrap_err();
        assert_eq!(error.code(), "gcp_invalid_key");
        assert!(!error.to_string().contains("canary"), "{error}");
    }

    #[test]
    fn secret_holding_types_print_redacted() {
        let key = ServiceAccountKey::parse(&SecretString::from(
            r#"{"client_email":"a@b","private_key_id":"k1","private_key":"canary-pem","token_uri":"https://elsewhere"}"#
                .to_owned(),
        ))
        .unwrap();
        let token: GoogleToken =
            serde_json::from_str(r#"{"access_token":"canary-token","expires_in":3599}"#).unwrap();
        for printed in [format!("{key:?}"), format!("{token:?}")] {
            assert!(printed.contains("[REDACTED]"), "{printed}");
            assert!(!printed.contains("canary"), "{printed}");
        }
    }
}
