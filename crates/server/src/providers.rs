//! Turning a stored credential into a registry login: the provider of each type knows
//! how (a stored password as is; ECR keys or roles through AWS; …). One entry point,
//! [`Providers::login`], so callers never branch on the type.
//!
//! The stored password serves as the login for `docker` credentials, ACR
//! repository-scoped tokens and GCR `_json_key` logins, and never expires. ECR keys,
//! roles and the ambient identity go to `ecr`, ACR service principals to `acr`, and
//! GCR `oauth2accesstoken` to `gcr`. Providers reach registries only through
//! `outbound` (ACR's exchange). Otherwise they reach only the operator's endpoints:
//! AWS through the SDK, Azure AD, and Google's token URL (clients that follow no
//! redirects). Secret material leaves a provider only inside `RegistryLogin`.
//! `ProviderError` gives a `code()`, `retryable()` and a message a user can act on.

pub mod acr;
pub mod ecr;
pub mod gcr;
pub mod secrets_manager;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::credential::{AuthMethod, Credential, CredentialSecret, Timestamp};
use crate::outbound::OutboundError;

/// A working registry login: what `docker login` would be given.
#[derive(Clone)]
pub struct RegistryLogin {
    pub username: String,
    pub secret: SecretString,
    pub issued_at: Timestamp,
    /// `None` for logins that do not expire (a stored password).
    pub expires_at: Option<Timestamp>,
}

impl fmt::Debug for RegistryLogin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("secret", &"[REDACTED]")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An expiry announced less than this far ahead on arrival is not believed (clock
/// skew; emulators answer 2015): the provider's maximum lifetime is used instead.
const EXPIRY_TOO_CLOSE_MS: i64 = 60_000;

/// When a login received at `now` expires: what the provider reported, but never
/// later than its documented maximum lifetime counted from receipt (`maximum_ms`), so a
/// buggy or hostile answer ("valid for ten years") cannot keep a token — and its
/// refresh point — alive past what the provider itself would honour. An expiry already
/// past (or within a minute) on arrival, or none, is replaced by that maximum, so it
/// is never refreshed in a loop. Both are logged, once per mint, as `{provider}` says.
pub fn expiry_at_most(
    provider: &'static str,
    credential_id: &str,
    reported: Option<Timestamp>,
    now: Timestamp,
    maximum_ms: i64,
) -> Timestamp {
    let latest = now.saturating_add(maximum_ms);
    match reported {
        Some(expires_at) if expires_at > latest => {
            tracing::warn!(
                provider,
                credential.id = %credential_id,
                reported_expiry = expires_at,
                capped_to = latest,
                "token.expiry_capped"
            );
            latest
        }
        Some(expires_at) if expires_at > now.saturating_add(EXPIRY_TOO_CLOSE_MS) => expires_at,
        reported => {
            tracing::warn!(
                provider,
                credential.id = %credential_id,
                reported_expiry = ?reported,
                "token.expiry_unusable"
            );
            latest
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("AWS rejected the access keys ({code}): check the access key id and secret access key, and that the key is active")]
    AwsInvalidKeys { code: String },
    #[error("the AWS credentials have expired ({code}); store fresh keys or a session token")]
    AwsExpired { code: String },
    #[error("AWS denied the request ({code}): {message}")]
    AwsDenied { code: String, message: String },
    #[error("AWS is throttling requests ({code}); regkeeper will retry")]
    AwsThrottled { code: String },
    #[error("cannot reach AWS: {0}")]
    AwsUnreachable(String),
    #[error("AWS answered unexpectedly: {0}")]
    AwsOther(String),
    #[error("Azure AD rejected the client id or secret ({code}); check the service principal's application (client) id and that its secret is current")]
    AzureInvalidClient { code: String },
    #[error("the service principal's client secret has expired (AADSTS7000222); create a new secret and update the credential")]
    AzureSecretExpired,
    #[error("Azure AD does not know tenant {tenant} (AADSTS90002); check --azure-tenant-id")]
    AzureTenantNotFound { tenant: String },
    #[error("Azure AD is unavailable ({0}); regkeeper will retry")]
    AzureUnavailable(String),
    #[error("cannot reach Azure AD: {0}")]
    AzureUnreachable(String),
    #[error("Azure AD refused the token request ({0})")]
    AzureFailed(String),
    #[error("{host} refused the Azure AD token at /oauth2/exchange (HTTP {status}); check that the registry belongs to tenant {tenant} and that the service principal has a role on it, such as AcrPull")]
    AcrExchangeRejected {
        host: String,
        tenant: String,
        status: u16,
    },
    #[error("{host} cannot exchange the Azure AD token now (HTTP {status}); regkeeper will retry")]
    AcrExchangeUnavailable { host: String, status: u16 },
    #[error("the ACR token exchange at {host} failed: {reason}")]
    AcrExchangeFailed { host: String, reason: String },
    #[error("the ACR token exchange cannot reach the registry: {0}")]
    Registry(OutboundError),
    #[error("the service-account key cannot be used: {0}")]
    GcpInvalidKey(String),
    #[error("Google rejected the service-account key ({0}); the key may have been deleted or disabled, or its service account removed: create a new key and update the credential")]
    GcpKeyRejected(String),
    #[error("Google's token endpoint is unavailable ({0}); regkeeper will retry")]
    GcpUnavailable(String),
    #[error("cannot reach Google's token endpoint: {0}")]
    GcpUnreachable(String),
    #[error("Google's token endpoint refused the request ({0})")]
    GcpFailed(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the credential has no stored secret")]
    MissingSecret,
    #[error("ambient AWS credentials may not reach account {account}: this server's own AWS identity may be used only for the accounts in REGKEEPER_AMBIENT_AWS_ACCOUNTS (now: {allowed}); an operator can add it there")]
    AmbientAccountRefused { account: String, allowed: String },
    #[error("cannot tell which AWS account this server's own identity belongs to ({0}); an operator can list the accounts ambient credentials may reach in REGKEEPER_AMBIENT_AWS_ACCOUNTS")]
    AmbientAccountUnknown(String),
    /// The last mint of this token failed and its backoff has not run out: every
    /// replica answers with that failure instead of calling the provider again.
    #[error("the last attempt to mint this token failed ({last_error}); the next attempt is due in {retry_in_seconds} s")]
    BackingOff {
        last_error: String,
        retry_in_seconds: i64,
    },
    /// Another replica is minting this token and has not finished within the wait.
    #[error("another replica is minting this token; try again shortly")]
    MintInProgress,
    #[error(
        "the Secrets Manager secret {secret} does not exist (or the AWS identity may not see it)"
    )]
    AwsSecretNotFound { secret: String },
    #[error("the Secrets Manager secret {secret} cannot be used: {reason}")]
    AwsSecretUnusable { secret: String, reason: String },
}

impl ProviderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AwsInvalidKeys { .. } => "aws_invalid_keys",
            Self::AwsExpired { .. } => "aws_credentials_expired",
            Self::AwsDenied { .. } => "aws_access_denied",
            Self::AwsThrottled { .. } => "aws_throttled",
            Self::AwsUnreachable(_) => "aws_unreachable",
            Self::AwsOther(_) => "aws_failed",
            Self::AzureInvalidClient { .. } => "azure_invalid_client",
            Self::AzureSecretExpired => "azure_client_secret_expired",
            Self::AzureTenantNotFound { .. } => "azure_tenant_not_found",
            Self::AzureUnavailable(_) => "azure_unavailable",
            Self::AzureUnreachable(_) => "azure_unreachable",
            Self::AzureFailed(_) => "azure_failed",
            Self::AcrExchangeRejected { .. } => "acr_exchange_rejected",
            Self::AcrExchangeUnavailable { .. } => "acr_exchange_unavailable",
            Self::AcrExchangeFailed { .. } => "acr_exchange_failed",
            Self::Registry(error) => error.code(),
            Self::GcpInvalidKey(_) => "gcp_invalid_key",
            Self::GcpKeyRejected(_) => "gcp_key_rejected",
            Self::GcpUnavailable(_) => "gcp_unavailable",
            Self::GcpUnreachable(_) => "gcp_unreachable",
            Self::GcpFailed(_) => "gcp_failed",
            Self::Unsupported(_) => "unsupported_credential",
            Self::MissingSecret => "missing_secret",
            Self::AmbientAccountRefused { .. } => "ambient_account_not_allowed",
            Self::AmbientAccountUnknown(_) => "ambient_account_unknown",
            Self::BackingOff { .. } => "token_mint_backing_off",
            Self::MintInProgress => "token_mint_in_progress",
            Self::AwsSecretNotFound { .. } => "aws_secret_not_found",
            Self::AwsSecretUnusable { .. } => "aws_secret_unusable",
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            Self::Registry(error) => error.retryable(),
            _ => matches!(
                self,
                Self::AwsThrottled { .. }
                    | Self::AwsUnreachable(_)
                    | Self::AwsOther(_)
                    | Self::AzureUnavailable(_)
                    | Self::AzureUnreachable(_)
                    | Self::AcrExchangeUnavailable { .. }
                    | Self::GcpUnavailable(_)
                    | Self::GcpUnreachable(_)
                    | Self::BackingOff { .. }
                    | Self::MintInProgress
                    | Self::AmbientAccountUnknown(_)
            ),
        }
    }
}

pub struct Providers {
    pub ecr: ecr::EcrProvider,
    pub acr: acr::AcrProvider,
    pub gcr: gcr::GcrProvider,
}

impl Providers {
    /// A login for `credential`, minting a token where its type needs one.
    pub async fn login(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
        now: Timestamp,
    ) -> Result<RegistryLogin, ProviderError> {
        match credential.auth_method {
            AuthMethod::Password | AuthMethod::AcrToken | AuthMethod::GcpJsonKey => {
                let password = secret
                    .password
                    .clone()
                    .ok_or(ProviderError::MissingSecret)?;
                Ok(RegistryLogin {
                    username: credential.username.clone().unwrap_or_default(),
                    secret: password,
                    issued_at: now,
                    expires_at: None,
                })
            }
            AuthMethod::AwsKeys | AuthMethod::AwsRole | AuthMethod::AwsAmbient => {
                self.ecr.login(credential, secret, now).await
            }
            AuthMethod::AzureServicePrincipal => self.acr.login(credential, secret, now).await,
            AuthMethod::GcpAccessToken => self.gcr.login(credential, secret, now).await,
            // Needs another credential's identity: `service::aws_secrets` reads it.
            AuthMethod::AwsSecret => Err(ProviderError::Unsupported(
                "a login kept in Secrets Manager is read by service::aws_secrets".into(),
            )),
        }
    }
}

/// The key pair a cloud provider signs in with: the credential's username (a key or
/// client id) and its stored password (the secret key); either missing is
/// `MissingSecret`.
fn key_pair<'a>(
    credential: &'a Credential,
    secret: &'a CredentialSecret,
) -> Result<(&'a str, &'a SecretString), ProviderError> {
    let id = credential
        .username
        .as_deref()
        .ok_or(ProviderError::MissingSecret)?;
    let key = secret
        .password
        .as_ref()
        .ok_or(ProviderError::MissingSecret)?;
    Ok((id, key))
}

/// Which minted token a credential can share with others: credentials with the same
/// cloud identity get the same token — for ECR the same keys or role, region and
/// endpoint variant (one AWS call, not one per credential); for ACR service principals
/// and Google access tokens the same principal or key (ACR also the same registry,
/// whose exchange scopes the token). `None` when nothing is minted.
pub fn shared_identity(credential: &Credential, secret: &CredentialSecret) -> Option<String> {
    let settings = &credential.settings;
    let (kind, scope) = match credential.auth_method {
        AuthMethod::AwsKeys | AuthMethod::AwsRole | AuthMethod::AwsAmbient => {
            ("ecr", ecr::endpoint_variant(&credential.registry_host))
        }
        AuthMethod::AzureServicePrincipal => ("acr", credential.registry_host.clone()),
        AuthMethod::GcpAccessToken => ("gcr", String::new()),
        AuthMethod::Password
        | AuthMethod::AcrToken
        | AuthMethod::GcpJsonKey
        | AuthMethod::AwsSecret => return None,
    };
    let mut hasher = Sha256::new();
    for part in [
        credential.auth_method.as_str(),
        credential.username.as_deref().unwrap_or_default(),
        secret
            .password
            .as_ref()
            .map_or("", |value| value.expose_secret()),
        secret
            .session_token
            .as_ref()
            .map_or("", |value| value.expose_secret()),
        settings.role_arn.as_deref().unwrap_or_default(),
        settings.external_id.as_deref().unwrap_or_default(),
        settings.aws_region.as_deref().unwrap_or_default(),
        settings.azure_tenant_id.as_deref().unwrap_or_default(),
        &scope,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    Some(format!("{kind}:{}", hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const TEN_YEARS: i64 = 10 * 365 * 24 * HOUR;

    /// Issue 12 item 12: each provider's tokens are trusted for at most its documented
    /// lifetime from receipt, whatever expiry the answer claims.
    #[test]
    fn every_provider_caps_a_far_expiry_at_its_documented_lifetime() {
        let now = 1_800_000_000_000;
        for (provider, maximum, documented) in [
            ("ecr", ecr::TOKEN_LIFETIME_MS, 12 * HOUR),
            ("ecr-public", ecr::TOKEN_LIFETIME_MS, 12 * HOUR),
            ("acr", acr::REFRESH_TOKEN_LIFETIME_MS, 3 * HOUR),
            ("gcr", gcr::TOKEN_LIFETIME_MS, HOUR),
        ] {
            assert_eq!(maximum, documented, "{provider}");
            assert_eq!(
                expiry_at_most(provider, "c", Some(now + TEN_YEARS), now, maximum),
                now + documented,
                "{provider}: ten years ahead"
            );
            assert_eq!(
                expiry_at_most(provider, "c", Some(now + documented + 1), now, maximum),
                now + documented,
                "{provider}: just past the maximum"
            );
            assert_eq!(
                expiry_at_most(provider, "c", Some(now + documented / 2), now, maximum),
                now + documented / 2,
                "{provider}: a shorter expiry is kept"
            );
            assert_eq!(
                expiry_at_most(provider, "c", Some(now - HOUR), now, maximum),
                now + documented,
                "{provider}: already past"
            );
            assert_eq!(
                expiry_at_most(provider, "c", None, now, maximum),
                now + documented,
                "{provider}: none reported"
            );
            assert_eq!(
                expiry_at_most(provider, "c", Some(i64::MAX), i64::MAX - 10, maximum),
                i64::MAX,
                "{provider}: no overflow"
            );
        }
    }

    #[test]
    fn logins_never_print_their_secret() {
        let login = RegistryLogin {
            username: "AWS".into(),
            secret: SecretString::from("canary-token".to_owned()),
            issued_at: 1,
            expires_at: Some(2),
        };
        let printed = format!("{login:?}");
        assert!(printed.contains("AWS") && printed.contains("[REDACTED]"));
        assert!(!printed.contains("canary"));
    }
}
