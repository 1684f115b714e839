//! Turning a stored credential into a registry login: the provider of each type knows
//! how (a stored password as is; ECR keys or roles through AWS; …). One entry point,
//! [`Providers::login`], so callers never branch on the type.

pub mod ecr;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::credential::{
    AuthMethod, Credential, CredentialKind, CredentialSecret, Timestamp,
};

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
    #[error("{0}")]
    Unsupported(String),
    #[error("the credential has no stored secret")]
    MissingSecret,
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
            Self::Unsupported(_) => "unsupported_credential",
            Self::MissingSecret => "missing_secret",
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::AwsThrottled { .. } | Self::AwsUnreachable(_) | Self::AwsOther(_)
        )
    }
}

pub struct Providers {
    pub ecr: ecr::EcrProvider,
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
                let password = secret.password.clone().ok_or(ProviderError::MissingSecret)?;
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
            AuthMethod::AzureServicePrincipal => Err(ProviderError::Unsupported(
                "Azure service principals cannot be exchanged for ACR tokens yet; use an ACR repository-scoped token".into(),
            )),
            AuthMethod::GcpAccessToken => Err(ProviderError::Unsupported(
                "minting Google access tokens (oauth2accesstoken) is not available yet; use the user name _json_key".into(),
            )),
        }
    }
}

/// Which minted token a credential can share with others: credentials with the same
/// cloud identity, region and partition get the same token (one AWS call, not one per
/// credential). `None` when nothing is minted.
pub fn shared_identity(credential: &Credential, secret: &CredentialSecret) -> Option<String> {
    if credential.kind != CredentialKind::Ecr {
        return None;
    }
    let settings = &credential.settings;
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
        &ecr::endpoint_variant(&credential.registry_host),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    Some(format!("ecr:{}", hex::encode(hasher.finalize())))
}
