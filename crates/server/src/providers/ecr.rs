//! Amazon ECR: GetAuthorizationToken with static keys, an assumed role (with external
//! id) or — only when the operator allows it — the server's own identity. Endpoints
//! follow the AWS SDK's own settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`, …),
//! so a local emulator can stand in.

use aws_config::BehaviorVersion;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_ecr::config::Region;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::credential::{AuthMethod, Credential, CredentialSecret, Timestamp};
use crate::domain::registry::{classify, RegistryKind};

use super::{ProviderError, RegistryLogin};

/// ECR's (and ECR Public's) documented token lifetime, 12 hours: the longest a token is
/// trusted for, whatever expiry the answer claims, and the lifetime used when the
/// answer's expiry is already past.
pub const TOKEN_LIFETIME_MS: i64 = 12 * 3600 * 1000;

/// Attempts per call, the first included, of calls made with a credential's identity
/// to services other than ECR ([`EcrProvider::identity_config`]).
pub const IDENTITY_MAX_ATTEMPTS: u32 = 4;

pub struct EcrProvider {
    allow_ambient: bool,
    /// `REGKEEPER_AMBIENT_AWS_ACCOUNTS`; `None`: the server's own account only.
    ambient_accounts: Option<Vec<String>>,
    /// The server's own account (STS GetCallerIdentity of the ambient identity), asked
    /// once when first needed.
    own_account: tokio::sync::OnceCell<String>,
    endpoint_url: Option<String>,
}

/// The account of an IAM role ARN (`arn:PARTITION:iam::ACCOUNT:role/NAME`).
fn role_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|account| !account.is_empty())
}

/// Whether a host uses the FIPS or dual-stack endpoints, which share no tokens with
/// the standard ones.
pub fn endpoint_variant(host: &str) -> String {
    match classify(host) {
        RegistryKind::Ecr(ecr) => {
            format!("{}:{}:{}", ecr.partition.as_str(), ecr.fips, ecr.dual_stack)
        }
        _ => "custom".to_owned(),
    }
}

impl EcrProvider {
    pub fn new(
        allow_ambient: bool,
        ambient_accounts: Option<Vec<String>>,
        endpoint_url: Option<String>,
    ) -> Self {
        Self {
            allow_ambient,
            ambient_accounts,
            own_account: tokio::sync::OnceCell::new(),
            endpoint_url,
        }
    }

    /// Refuses an ambient credential whose registry (or role) is in an account the
    /// operator did not list in `REGKEEPER_AMBIENT_AWS_ACCOUNTS` (by default: only the
    /// server's own account), so a tenant cannot point the server's identity at
    /// another account it can reach. Checked when a credential is added or updated and
    /// before every mint.
    pub async fn check_ambient(&self, credential: &Credential) -> Result<(), ProviderError> {
        if !credential.settings.ambient {
            return Ok(());
        }
        let mut reached: Vec<String> = Vec::new();
        if let RegistryKind::Ecr(ecr) = classify(&credential.registry_host) {
            reached.extend(ecr.account);
        }
        if let Some(arn) = &credential.settings.role_arn {
            reached.extend(role_account(arn).map(str::to_owned));
        }
        let allowed = match &self.ambient_accounts {
            Some(listed) => listed.clone(),
            None => vec![self.own_account(credential).await?],
        };
        if reached.is_empty() {
            // A registry host that names no account (ECR Public, or a registry given
            // an explicit type): the token is the identity's own account's.
            reached.push(self.own_account(credential).await?);
        }
        match reached
            .into_iter()
            .find(|account| !allowed.contains(account))
        {
            Some(account) => Err(ProviderError::AmbientAccountRefused {
                account,
                allowed: allowed.join(", "),
            }),
            None => Ok(()),
        }
    }

    /// The server's own AWS account, asked of STS with the server's identity (the SDK's
    /// default chain) the first time, then remembered.
    async fn own_account(&self, credential: &Credential) -> Result<String, ProviderError> {
        self.own_account
            .get_or_try_init(|| async {
                let base = self
                    .base_config(credential, &CredentialSecret::default())
                    .await?;
                let answer = aws_sdk_sts::Client::new(&base)
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|error| {
                        ProviderError::AmbientAccountUnknown(aws_error(error).to_string())
                    })?;
                answer.account().map(str::to_owned).ok_or_else(|| {
                    ProviderError::AmbientAccountUnknown(
                        "GetCallerIdentity named no account".into(),
                    )
                })
            })
            .await
            .cloned()
    }

    async fn sdk_config(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
    ) -> Result<aws_config::SdkConfig, ProviderError> {
        let base = self.base_config(credential, secret).await?;
        self.assume_role(credential, base).await
    }

    /// The SDK settings of an `ecr` credential's AWS identity (its keys, its role, or
    /// the server's own identity where that is allowed) for another AWS service in
    /// `region` (Secrets Manager). Unlike ECR's calls, these retry throttling and
    /// transient errors in the SDK (standard mode, [`IDENTITY_MAX_ATTEMPTS`] attempts
    /// with exponential backoff and jitter): a sync push or a resolve has no backoff
    /// of its own between attempts.
    pub async fn identity_config(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
        region: &str,
    ) -> Result<aws_config::SdkConfig, ProviderError> {
        let base = self
            .loader(credential, secret, region.to_owned(), (false, false))?
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(IDENTITY_MAX_ATTEMPTS)
                    .with_initial_backoff(std::time::Duration::from_millis(200)),
            )
            .load()
            .await;
        self.assume_role(credential, base).await
    }

    async fn assume_role(
        &self,
        credential: &Credential,
        base: aws_config::SdkConfig,
    ) -> Result<aws_config::SdkConfig, ProviderError> {
        self.check_ambient(credential).await?;
        let Some(role_arn) = credential.settings.role_arn.clone() else {
            return Ok(base);
        };
        let mut role = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("regkeeper")
            .configure(&base);
        if let Some(external_id) = &credential.settings.external_id {
            role = role.external_id(external_id);
        }
        let role = role.build().await;
        Ok(base
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(role))
            .build())
    }

    /// The SDK settings for the credential's own keys (or the server's identity), before
    /// any role is assumed.
    async fn base_config(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
    ) -> Result<aws_config::SdkConfig, ProviderError> {
        let region =
            credential.settings.aws_region.clone().ok_or_else(|| {
                ProviderError::Unsupported("the ECR credential has no region".into())
            })?;
        let variant = match classify(&credential.registry_host) {
            RegistryKind::Ecr(ecr) => (ecr.fips, ecr.dual_stack),
            _ => (false, false),
        };
        Ok(self
            .loader(credential, secret, region, variant)?
            .load()
            .await)
    }

    /// The SDK loader for the credential's keys (or the server's identity) in `region`,
    /// without SDK retries.
    fn loader(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
        region: String,
        (fips, dual_stack): (bool, bool),
    ) -> Result<aws_config::ConfigLoader, ProviderError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .use_fips(fips)
            .use_dual_stack(dual_stack)
            // The refresher retries with its own backoff; SDK retries would only
            // stretch each attempt.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .operation_timeout(std::time::Duration::from_secs(30))
                    .build(),
            );
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let ambient = credential.settings.ambient;
        if ambient {
            if !self.allow_ambient {
                return Err(ProviderError::Unsupported(
                    "this server no longer allows credentials that use its own AWS identity (REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS)".into(),
                ));
            }
        } else {
            let (key_id, secret_key) = super::key_pair(credential, secret)?;
            let keys = Credentials::new(
                key_id.to_owned(),
                secret_key.expose_secret().to_owned(),
                secret
                    .session_token
                    .as_ref()
                    .map(|token| token.expose_secret().to_owned()),
                None,
                "regkeeper",
            );
            loader = loader.credentials_provider(SharedCredentialsProvider::new(keys));
        }
        Ok(loader)
    }

    /// Mints a 12-hour ECR login. An expiry that is already past on receipt (clock
    /// skew; emulators answer 2015-01-01), or later than 12 hours from now, is logged
    /// and replaced by the documented lifetime counted from now (`expiry_at_most`).
    pub async fn login(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
        now: Timestamp,
    ) -> Result<RegistryLogin, ProviderError> {
        debug_assert!(matches!(
            credential.auth_method,
            AuthMethod::AwsKeys | AuthMethod::AwsRole | AuthMethod::AwsAmbient
        ));
        let config = self.sdk_config(credential, secret).await?;
        let public =
            matches!(classify(&credential.registry_host), RegistryKind::Ecr(ecr) if ecr.public);
        // ECR Public has its own API (and lives in us-east-1 whatever the region).
        let (encoded, reported) = if public {
            let config = config
                .into_builder()
                .region(Region::new("us-east-1"))
                .build();
            let answer = aws_sdk_ecrpublic::Client::new(&config)
                .get_authorization_token()
                .send()
                .await
                .map_err(aws_error)?;
            let data = answer.authorization_data().ok_or_else(|| {
                ProviderError::AwsOther(
                    "GetAuthorizationToken returned no authorization data".into(),
                )
            })?;
            (
                data.authorization_token().map(str::to_owned),
                data.expires_at().map(|time| time.secs() * 1000),
            )
        } else {
            let answer = aws_sdk_ecr::Client::new(&config)
                .get_authorization_token()
                .send()
                .await
                .map_err(aws_error)?;
            let data = answer.authorization_data().first().ok_or_else(|| {
                ProviderError::AwsOther(
                    "GetAuthorizationToken returned no authorization data".into(),
                )
            })?;
            (
                data.authorization_token().map(str::to_owned),
                data.expires_at().map(|time| time.secs() * 1000),
            )
        };
        let encoded = zeroize::Zeroizing::new(encoded.ok_or_else(|| {
            ProviderError::AwsOther("GetAuthorizationToken returned no token".into())
        })?);
        let decoded = zeroize::Zeroizing::new(
            BASE64
                .decode(encoded.as_bytes())
                .map_err(|_| ProviderError::AwsOther("the ECR token is not base64".into()))?,
        );
        let text = std::str::from_utf8(&decoded)
            .map_err(|_| ProviderError::AwsOther("the ECR token is not text".into()))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| ProviderError::AwsOther("the ECR token is not USER:PASSWORD".into()))?;
        let expires_at = super::expiry_at_most(
            if public { "ecr-public" } else { "ecr" },
            &credential.id,
            reported,
            now,
            TOKEN_LIFETIME_MS,
        );
        Ok(RegistryLogin {
            username: username.to_owned(),
            secret: SecretString::from(password.to_owned()),
            issued_at: now,
            expires_at: Some(expires_at),
        })
    }

    /// The caller identity's ARN, to warn about root-account keys.
    pub async fn caller_arn(
        &self,
        credential: &Credential,
        secret: &CredentialSecret,
    ) -> Result<String, ProviderError> {
        let config = self.sdk_config(credential, secret).await?;
        let answer = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .map_err(aws_error)?;
        Ok(answer.arn().unwrap_or_default().to_owned())
    }
}

pub(super) fn aws_error<E: ProvideErrorMetadata + std::error::Error + 'static, R>(
    error: SdkError<E, R>,
) -> ProviderError {
    match &error {
        SdkError::DispatchFailure(failure) => {
            return ProviderError::AwsUnreachable(
                failure
                    .as_connector_error()
                    .map_or_else(|| "connection failed".to_owned(), ToString::to_string),
            )
        }
        SdkError::TimeoutError(_) => {
            return ProviderError::AwsUnreachable("the request timed out".into())
        }
        _ => {}
    }
    let code = error.code().unwrap_or("Unknown").to_owned();
    let message = error.message().unwrap_or_default().to_owned();
    match code.as_str() {
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "InvalidSignatureException"
        | "IncompleteSignature" => ProviderError::AwsInvalidKeys { code },
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            ProviderError::AwsExpired { code }
        }
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            ProviderError::AwsDenied { code, message }
        }
        "Throttling" | "ThrottlingException" | "TooManyRequestsException" => {
            ProviderError::AwsThrottled { code }
        }
        _ if code == "Unknown" => ProviderError::AwsOther(error.to_string()),
        _ => ProviderError::AwsOther(format!("{code}: {message}")),
    }
}
