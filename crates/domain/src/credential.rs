//! Credentials: a named registry login in one workspace, its type, how its secret is
//! used, and the validation rules that keep stored credentials well-formed.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use secrecy::{ExposeSecret, SecretString};

use super::registry::{self, RegistryKind};
use super::registry_token::RegistryTokenStatus;
use super::{Error, Result};
use crate::text::echo;

/// Unix time in milliseconds.
pub type Timestamp = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    Docker,
    Ecr,
    Acr,
    Gcr,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Ecr => "ecr",
            Self::Acr => "acr",
            Self::Gcr => "gcr",
        }
    }

    /// Parses a requested type; `None` means "guess from the host" (`auto`).
    pub fn parse_requested(value: &str) -> Result<Option<Self>> {
        match value {
            "auto" => Ok(None),
            "docker" => Ok(Some(Self::Docker)),
            "ecr" => Ok(Some(Self::Ecr)),
            "acr" => Ok(Some(Self::Acr)),
            "gcr" => Ok(Some(Self::Gcr)),
            other => Err(Error::invalid(
                "invalid_type",
                format!(
                    "unknown credential type `{}`: expected auto, docker, ecr, acr or gcr",
                    echo(other)
                ),
            )),
        }
    }

    pub fn parse_stored(value: &str) -> Result<Self> {
        Self::parse_requested(value)?
            .ok_or_else(|| Error::internal("stored credential type is `auto`"))
    }

    pub fn guess(kind: &RegistryKind) -> Self {
        match kind {
            RegistryKind::Docker => Self::Docker,
            RegistryKind::Ecr(_) => Self::Ecr,
            RegistryKind::Acr => Self::Acr,
            RegistryKind::Gcr => Self::Gcr,
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Who created a credential. The docker credential helper's `store` marks what it
/// creates as `Helper`, and its `store` and `erase` touch only such credentials, so a
/// `docker login` never overwrites (nor a logout deletes) one a person curated. Set once
/// at creation and never changed: it records where the credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialOrigin {
    /// Added with the CLI, the API or the console (and every credential from before
    /// origins were recorded).
    #[default]
    User,
    /// Created by `docker-credential-regkeeper store` after a client's own login.
    Helper,
}

impl CredentialOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Helper => "helper",
        }
    }

    /// Parses an origin given in a request.
    pub fn parse_requested(value: &str) -> Result<Self> {
        match value {
            "user" => Ok(Self::User),
            "helper" => Ok(Self::Helper),
            other => Err(Error::invalid(
                "invalid_origin",
                format!(
                    "unknown credential origin `{}`: expected user or helper",
                    echo(other)
                ),
            )),
        }
    }

    pub fn parse_stored(value: &str) -> Result<Self> {
        Self::parse_requested(value)
            .map_err(|_| Error::internal(format!("unknown stored credential origin {value}")))
    }
}

/// How the stored secret becomes registry auth; derived from the type and fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Password,
    AwsKeys,
    AwsRole,
    AwsAmbient,
    AcrToken,
    AzureServicePrincipal,
    GcpJsonKey,
    GcpAccessToken,
    /// The login (user name and password) is read from an AWS Secrets Manager secret
    /// at resolve time, with the AWS identity of another (`ecr`) credential; nothing
    /// secret is stored in regkeeper.
    AwsSecret,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::AwsKeys => "aws_keys",
            Self::AwsRole => "aws_role",
            Self::AwsAmbient => "aws_ambient",
            Self::AcrToken => "acr_token",
            Self::AzureServicePrincipal => "azure_service_principal",
            Self::GcpJsonKey => "gcp_json_key",
            Self::GcpAccessToken => "gcp_access_token",
            Self::AwsSecret => "aws_secret",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        [
            Self::Password,
            Self::AwsKeys,
            Self::AwsRole,
            Self::AwsAmbient,
            Self::AcrToken,
            Self::AzureServicePrincipal,
            Self::GcpJsonKey,
            Self::GcpAccessToken,
            Self::AwsSecret,
        ]
        .into_iter()
        .find(|method| method.as_str() == value)
        .ok_or_else(|| Error::internal(format!("unknown stored auth method {value}")))
    }

    /// Whether this method needs a stored secret at all (ambient identities and logins
    /// read from Secrets Manager do not).
    pub fn needs_secret(self) -> bool {
        !matches!(self, Self::AwsAmbient | Self::AwsSecret)
    }
}

/// Non-secret, type-specific settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSettings {
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// Use the server's own AWS identity as the source (alone or to assume `role_arn`).
    pub ambient: bool,
    pub aws_region: Option<String>,
    pub azure_tenant_id: Option<String>,
    /// `aws_secret` credentials: where the login is read from.
    pub aws_secret: Option<AwsSecretSource>,
}

/// A login kept in AWS Secrets Manager (`--aws-secret`), read with the AWS identity of
/// an `ecr` credential of the same workspace (`--aws-identity`). Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSecretSource {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// The identity credential's id (what counts) and its name when this was set (shown).
    pub identity_id: String,
    pub identity_name: String,
    /// The JSON keys of the user name and password; ECS's `username` and `password`
    /// unless `--aws-secret-keys USER,PASS` named others.
    pub username_key: String,
    pub password_key: String,
}

/// The JSON keys ECS's `repositoryCredentials` reads, and regkeeper's sync target writes.
pub const ECS_USERNAME_KEY: &str = "username";
pub const ECS_PASSWORD_KEY: &str = "password";

static SECRET_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9/_+=.@-]{1,512}$").expect("valid regex"));
static SECRET_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:secretsmanager:([a-z]{2}(-[a-z]+)+-\d{1,2}):[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$")
        .expect("valid regex")
});

/// A Secrets Manager secret id: a name (ASCII letters, digits and `/_+=.@-`, as AWS
/// allows) or a secret ARN. Returns the ARN's region, if it is one.
pub fn validate_aws_secret_id(secret_id: &str) -> Result<Option<String>> {
    if let Some(captures) = SECRET_ARN.captures(secret_id) {
        return Ok(captures.get(2).map(|region| region.as_str().to_owned()));
    }
    if SECRET_NAME.is_match(secret_id) && !secret_id.starts_with("arn:") {
        return Ok(None);
    }
    Err(Error::invalid(
        "invalid_aws_secret",
        format!(
            "`{}` is not a Secrets Manager secret name (1-512 of A-Z, a-z, 0-9 and /_+=.@-) or ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)",
            echo(secret_id)
        ),
    ))
}

/// An AWS region name such as `us-east-1`.
pub fn validate_aws_region(region: &str) -> Result<()> {
    if AWS_REGION.is_match(region) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_aws_region",
            format!(
                "`{}` is not an AWS region name such as us-east-1",
                echo(region)
            ),
        ))
    }
}

/// `--aws-secret-keys USER,PASS`: two different, non-empty JSON keys.
pub fn parse_aws_secret_keys(value: &str) -> Result<(String, String)> {
    let invalid = || {
        Error::invalid(
            "invalid_aws_secret_keys",
            format!(
                "`{}` is not two different JSON key names separated by a comma, e.g. user,token",
                echo(value)
            ),
        )
    };
    let (user, pass) = value.split_once(',').ok_or_else(invalid)?;
    let (user, pass) = (user.trim(), pass.trim());
    let fits =
        |key: &str| !key.is_empty() && key.len() <= 256 && !key.chars().any(char::is_control);
    if !fits(user) || !fits(pass) || user == pass || pass.contains(',') {
        return Err(invalid());
    }
    Ok((user.to_owned(), pass.to_owned()))
}

/// The secret fields of a credential, in memory only between parsing and sealing (or
/// between opening and use). Never `Debug`-printed; zeroized on drop by `SecretString`.
#[derive(Clone, Default)]
pub struct CredentialSecret {
    pub password: Option<SecretString>,
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for CredentialSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("CredentialSecret([REDACTED])")
    }
}

/// A secret as stored: ciphertext sealed with its own data key, that key wrapped by a
/// master key version. Opaque bytes outside `crypto`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub ciphertext: Vec<u8>,
    pub wrapped_key: Vec<u8>,
    pub key_version: u32,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "SealedSecret(key_version={})", self.key_version)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationStatus {
    Unverified,
    Skipped,
    Ok,
    /// The registry asked for no credentials, so whether they are right is unknown.
    Unverifiable,
    Failed,
}

impl VerificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Skipped => "skipped",
            Self::Ok => "ok",
            Self::Unverifiable => "unverifiable",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "unverified" => Ok(Self::Unverified),
            "skipped" => Ok(Self::Skipped),
            "ok" => Ok(Self::Ok),
            "unverifiable" => Ok(Self::Unverifiable),
            "failed" => Ok(Self::Failed),
            other => Err(Error::internal(format!(
                "unknown verification status {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub status: VerificationStatus,
    pub checked_at: Option<Timestamp>,
    pub message: Option<String>,
}

/// A stored credential. `id` is immutable: a credential deleted and re-created under the
/// same name is a different credential. `revision` guards concurrent updates;
/// `secret_version` binds the sealed secret to this version of it.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub name: String,
    pub kind: CredentialKind,
    pub auth_method: AuthMethod,
    pub registry_host: String,
    pub path_prefix: String,
    pub username: Option<String>,
    pub settings: CredentialSettings,
    pub sealed: Option<SealedSecret>,
    pub secret_version: i64,
    pub revision: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: String,
    /// Who created it: a person, or the docker credential helper's `store`.
    pub origin: CredentialOrigin,
    pub verification: Verification,
    /// The minted token this credential currently uses, if any (read-only here:
    /// written by the token service, joined in by the store).
    pub token: Option<TokenState>,
}

/// What is known of a credential's minted token, without the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub status: RegistryTokenStatus,
    pub expires_at: Option<Timestamp>,
    pub refresh_at: Timestamp,
    pub last_error: Option<String>,
}

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{1,100}$").expect("valid regex"));
static ACCESS_KEY_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Z0-9]+$").expect("valid regex"));
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$")
        .expect("valid regex")
});
static EXTERNAL_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_+=,.@:/-]+$").expect("valid regex"));
static AWS_REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$").expect("valid regex"));
static AZURE_TENANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-z0-9-]+(\.[a-z0-9-]+)+)$")
        .expect("valid regex")
});

pub fn validate_name(name: &str) -> Result<()> {
    if NAME.is_match(name) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_name",
            format!(
                "invalid credential name `{}`: use 1-100 characters of A-Z, a-z, 0-9, `_` and `-`",
                echo(name)
            ),
        ))
    }
}

/// Everything a credential is made of before it is stored, already validated.
#[derive(Debug)]
pub struct CredentialDraft {
    pub name: String,
    pub kind: CredentialKind,
    pub auth_method: AuthMethod,
    pub registry_host: String,
    pub path_prefix: String,
    pub username: Option<String>,
    pub settings: CredentialSettings,
    pub secret: CredentialSecret,
}

/// The unvalidated parts of a credential, as gathered from a create request or from a
/// stored credential overlaid with an update.
pub struct CredentialParts {
    pub name: String,
    pub registry: String,
    pub requested_kind: Option<CredentialKind>,
    pub path_prefix: Option<String>,
    pub username: Option<String>,
    pub settings: CredentialSettings,
    pub secret: CredentialSecret,
    /// Whether `secret` holds the secret (false on an update that keeps the stored one).
    pub secret_given: bool,
}

/// Server settings that limit which credentials may be stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct CredentialPolicy {
    pub allow_ambient_aws: bool,
}

impl CredentialDraft {
    /// Validates `parts` into a draft: name, registry, type (guessed from the host when
    /// not given), and the fields each type and auth method needs.
    pub fn build(parts: CredentialParts, policy: CredentialPolicy) -> Result<Self> {
        validate_name(&parts.name)?;
        let address = registry::normalize(&parts.registry)
            .map_err(|error| Error::invalid("invalid_registry", error.to_string()))?;
        let path_prefix = match parts.path_prefix.as_deref() {
            Some(prefix) => registry::normalize_path_prefix(prefix)
                .map_err(|error| Error::invalid("invalid_path_prefix", error.to_string()))?,
            None => address.path_prefix.clone(),
        };
        if parts.path_prefix.is_some()
            && !address.path_prefix.is_empty()
            && address.path_prefix != path_prefix
        {
            return Err(Error::invalid(
                "invalid_path_prefix",
                format!(
                    "the registry server already names path `{}`; give the prefix in one place only",
                    address.path_prefix
                ),
            ));
        }
        let classified = registry::classify(&address.host);
        let kind = parts
            .requested_kind
            .unwrap_or_else(|| CredentialKind::guess(&classified));
        let mut settings = parts.settings;
        let username = parts.username.filter(|name| !name.is_empty());
        if settings.aws_secret.is_some() {
            return Self::build_aws_secret(
                parts.name,
                parts.requested_kind,
                address.host,
                path_prefix,
                username,
                settings,
                parts.secret,
            );
        }
        if kind != CredentialKind::Ecr
            && (settings.role_arn.is_some()
                || settings.external_id.is_some()
                || settings.ambient
                || settings.aws_region.is_some())
        {
            return Err(Error::unprocessable(
                    "invalid_for_type",
                    format!("--role-arn, --external-id, --ambient and --aws-region apply to ecr credentials, not {kind}"),
            ));
        }
        if kind != CredentialKind::Acr && settings.azure_tenant_id.is_some() {
            return Err(Error::unprocessable(
                "invalid_for_type",
                format!("--azure-tenant-id applies to acr credentials, not {kind}"),
            ));
        }
        let auth_method = match kind {
            CredentialKind::Docker => AuthMethod::Password,
            CredentialKind::Ecr => {
                settings.aws_region = Some(ecr_region(&classified, settings.aws_region.take())?);
                validate_ecr(&settings, username.as_deref(), policy)?
            }
            CredentialKind::Acr => match &settings.azure_tenant_id {
                Some(tenant) => {
                    if !AZURE_TENANT.is_match(tenant) {
                        return Err(Error::invalid(
                            "invalid_azure_tenant_id",
                            "the Azure tenant id must be a GUID or a domain such as contoso.onmicrosoft.com",
                        ));
                    }
                    AuthMethod::AzureServicePrincipal
                }
                None => AuthMethod::AcrToken,
            },
            CredentialKind::Gcr => match username.as_deref() {
                Some("_json_key") | None => AuthMethod::GcpJsonKey,
                Some("oauth2accesstoken") => AuthMethod::GcpAccessToken,
                Some(other) => {
                    return Err(Error::invalid(
                        "invalid_username",
                        format!("gcr credentials use user name `_json_key` (send the key) or `oauth2accesstoken` (mint access tokens from it), not `{}`", echo(other)),
                    ))
                }
            },
        };
        let username = match auth_method {
            AuthMethod::GcpJsonKey if username.is_none() => Some("_json_key".to_owned()),
            AuthMethod::AwsAmbient => None,
            _ => username,
        };
        if auth_method.needs_secret() && username.is_none() {
            return Err(Error::invalid(
                "missing_username",
                format!("a {kind} credential needs a user name (--username)"),
            ));
        }
        if parts.secret_given {
            check_secret(auth_method, &parts.secret)?;
        }
        Ok(Self {
            name: parts.name,
            kind,
            auth_method,
            registry_host: address.host,
            path_prefix,
            username,
            settings,
            secret: parts.secret,
        })
    }
}

impl CredentialDraft {
    /// A login read from Secrets Manager: a `docker` credential (the registry sees a
    /// user name and password) with no user name or secret of its own. The region is
    /// `--aws-region`, else the secret ARN's; when neither names one the service takes
    /// the identity credential's.
    fn build_aws_secret(
        name: String,
        requested_kind: Option<CredentialKind>,
        registry_host: String,
        path_prefix: String,
        username: Option<String>,
        mut settings: CredentialSettings,
        secret: CredentialSecret,
    ) -> Result<Self> {
        let misplaced = |what: &str| {
            Err(Error::unprocessable(
                "invalid_for_type",
                format!("{what} does not apply to a credential read from Secrets Manager (--aws-secret)"),
            ))
        };
        if requested_kind.is_some_and(|kind| kind != CredentialKind::Docker) {
            return misplaced("--type other than docker");
        }
        if username.is_some() {
            return misplaced("--username (the user name is read from the secret)");
        }
        if secret.password.is_some() || secret.session_token.is_some() {
            return misplaced("a password or session token (the password is read from the secret)");
        }
        if settings.role_arn.is_some()
            || settings.external_id.is_some()
            || settings.ambient
            || settings.azure_tenant_id.is_some()
        {
            return misplaced("--role-arn, --external-id, --ambient or --azure-tenant-id (give them to the --aws-identity credential)");
        }
        let source = settings.aws_secret.as_ref().expect("checked by the caller");
        let arn_region = validate_aws_secret_id(&source.secret_id)?;
        if source.identity_name.is_empty() && source.identity_id.is_empty() {
            return Err(Error::invalid(
                "missing_field",
                "--aws-identity is required with --aws-secret: name the ecr credential whose AWS keys or role read the secret",
            ));
        }
        let keys = format!("{},{}", source.username_key, source.password_key);
        parse_aws_secret_keys(&keys)?;
        settings.aws_region = match (settings.aws_region.take(), arn_region) {
            (Some(given), _) => {
                validate_aws_region(&given)?;
                Some(given)
            }
            (None, from_arn) => from_arn,
        };
        Ok(Self {
            name,
            kind: CredentialKind::Docker,
            auth_method: AuthMethod::AwsSecret,
            registry_host,
            path_prefix,
            username: None,
            settings,
            secret: CredentialSecret::default(),
        })
    }
}

fn ecr_region(classified: &RegistryKind, given: Option<String>) -> Result<String> {
    let host_region = match classified {
        RegistryKind::Ecr(host) => Some(host.region.clone()),
        _ => None,
    };
    match (host_region, given) {
        (Some(host), Some(given)) if host != given => Err(Error::unprocessable(
            "region_mismatch",
            format!("--aws-region {given} does not match the registry host's region {host}"),
        )),
        (Some(host), _) => Ok(host),
        (None, Some(given)) if AWS_REGION.is_match(&given) => Ok(given),
        (None, Some(given)) => Err(Error::invalid(
            "invalid_aws_region",
            format!(
                "`{}` is not an AWS region name such as us-east-1",
                echo(&given)
            ),
        )),
        (None, None) => Err(Error::unprocessable(
            "missing_aws_region",
            "the registry host is not an ECR host name, so give its region with --aws-region",
        )),
    }
}

fn validate_ecr(
    settings: &CredentialSettings,
    username: Option<&str>,
    policy: CredentialPolicy,
) -> Result<AuthMethod> {
    if let Some(arn) = &settings.role_arn {
        if arn.len() > 2048 || !ROLE_ARN.is_match(arn) {
            return Err(Error::invalid(
                "invalid_role_arn",
                format!(
                    "`{}` is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
                    echo(arn)
                ),
            ));
        }
    }
    if let Some(external_id) = &settings.external_id {
        if settings.role_arn.is_none() {
            return Err(Error::unprocessable(
                "invalid_for_type",
                "--external-id only applies together with --role-arn",
            ));
        }
        if !(2..=1224).contains(&external_id.len()) || !EXTERNAL_ID.is_match(external_id) {
            return Err(Error::invalid(
                "invalid_external_id",
                "the external id must be 2-1224 characters of letters, digits and +=,.@:/-",
            ));
        }
    }
    if settings.ambient {
        if !policy.allow_ambient_aws {
            return Err(Error::unprocessable(
                "ambient_credentials_disabled",
                "this server does not allow credentials that use its own AWS identity; an operator can enable it with REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS=true",
            ));
        }
        return Ok(if settings.role_arn.is_some() {
            AuthMethod::AwsRole
        } else {
            AuthMethod::AwsAmbient
        });
    }
    if let Some(key_id) = username {
        if !(16..=128).contains(&key_id.len()) || !ACCESS_KEY_ID.is_match(key_id) {
            return Err(Error::invalid(
                "invalid_access_key_id",
                "for ecr credentials the user name is the AWS access key id (16-128 upper-case letters and digits, e.g. AKIA…)",
            ));
        }
    }
    Ok(if settings.role_arn.is_some() {
        AuthMethod::AwsRole
    } else {
        AuthMethod::AwsKeys
    })
}

/// Checks the shape of a secret for its auth method without ever echoing it.
fn check_secret(method: AuthMethod, secret: &CredentialSecret) -> Result<()> {
    if !method.needs_secret() {
        if secret.password.is_some() || secret.session_token.is_some() {
            return Err(Error::unprocessable(
                "invalid_for_type",
                format!(
                    "{} credentials take no password or session token",
                    method.as_str()
                ),
            ));
        }
        return Ok(());
    }
    let password = secret
        .password
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "missing_password",
                "a password is required: give it with --password-stdin, --password-env or --password-file",
            )
        })?;
    if secret.session_token.is_some()
        && method != AuthMethod::AwsKeys
        && method != AuthMethod::AwsRole
    {
        return Err(Error::unprocessable(
            "invalid_for_type",
            "a session token only applies to AWS access keys",
        ));
    }
    if matches!(method, AuthMethod::GcpJsonKey | AuthMethod::GcpAccessToken) {
        check_service_account_key(password)?;
    }
    Ok(())
}

fn check_service_account_key(key: &str) -> Result<()> {
    let invalid = |what: &str| {
        Error::invalid(
            "invalid_service_account_key",
            format!("the password is not a Google service-account JSON key: {what}; pass the downloaded key file with --password-file"),
        )
    };
    let value: serde_json::Value =
        serde_json::from_str(key).map_err(|_| invalid("it is not valid JSON"))?;
    if value.get("type").and_then(|kind| kind.as_str()) != Some("service_account") {
        return Err(invalid("its \"type\" is not \"service_account\""));
    }
    for field in ["client_email", "private_key"] {
        if value.get(field).and_then(|field| field.as_str()).is_none() {
            return Err(invalid(&format!("it has no \"{field}\"")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(registry: &str, username: Option<&str>, password: Option<&str>) -> CredentialParts {
        CredentialParts {
            name: "cred".into(),
            registry: registry.into(),
            requested_kind: None,
            path_prefix: None,
            username: username.map(Into::into),
            settings: CredentialSettings::default(),
            secret: CredentialSecret {
                password: password.map(|value| SecretString::from(value.to_owned())),
                session_token: None,
            },
            secret_given: true,
        }
    }

    fn build(parts: CredentialParts) -> Result<CredentialDraft> {
        CredentialDraft::build(parts, CredentialPolicy::default())
    }

    #[test]
    fn names_follow_the_documented_pattern() {
        assert!(validate_name("prod_ECR-1").is_ok());
        assert!(validate_name(&"a".repeat(100)).is_ok());
        for bad in ["", "a b", "a/b", "ä", &"a".repeat(101)] {
            assert_eq!(validate_name(bad).unwrap_err().code(), "invalid_name");
        }
    }

    #[test]
    fn type_is_guessed_from_the_host() {
        let draft = build(parts(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            Some("AKIAIOSFODNN7EXAMPLE"),
            Some("secret"),
        ))
        .unwrap();
        assert_eq!(draft.kind, CredentialKind::Ecr);
        assert_eq!(draft.auth_method, AuthMethod::AwsKeys);
        assert_eq!(draft.settings.aws_region.as_deref(), Some("eu-west-1"));
        let draft = build(parts("x.azurecr.io.evil.com", Some("u"), Some("p"))).unwrap();
        assert_eq!(draft.kind, CredentialKind::Docker);
    }

    #[test]
    fn ecr_on_a_custom_host_needs_a_region() {
        let mut input = parts("127.0.0.1:5000", Some("AKIAIOSFODNN7EXAMPLE"), Some("s"));
        input.requested_kind = Some(CredentialKind::Ecr);
        assert_eq!(build(input).unwrap_err().code(), "missing_aws_region");
        let mut input = parts("127.0.0.1:5000", Some("AKIAIOSFODNN7EXAMPLE"), Some("s"));
        input.requested_kind = Some(CredentialKind::Ecr);
        input.settings.aws_region = Some("us-east-1".into());
        assert_eq!(
            build(input).unwrap().settings.aws_region.as_deref(),
            Some("us-east-1")
        );
    }

    #[test]
    fn ambient_is_refused_unless_enabled() {
        let mut input = parts("123456789012.dkr.ecr.us-east-1.amazonaws.com", None, None);
        input.settings.ambient = true;
        assert_eq!(
            build(input).unwrap_err().code(),
            "ambient_credentials_disabled"
        );
        let mut input = parts("123456789012.dkr.ecr.us-east-1.amazonaws.com", None, None);
        input.settings.ambient = true;
        let draft = CredentialDraft::build(
            input,
            CredentialPolicy {
                allow_ambient_aws: true,
            },
        )
        .unwrap();
        assert_eq!(draft.auth_method, AuthMethod::AwsAmbient);
        assert!(draft.username.is_none());
    }

    #[test]
    fn gcr_keys_are_checked_without_echoing_them() {
        let error = build(parts("gcr.io", Some("_json_key"), Some("not-json-canary"))).unwrap_err();
        assert_eq!(error.code(), "invalid_service_account_key");
        assert!(!error.to_string().contains("canary"));
        let key = r#"{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"k"}"#;
        let draft = build(parts("europe-docker.pkg.dev", None, Some(key))).unwrap();
        assert_eq!(draft.auth_method, AuthMethod::GcpJsonKey);
        assert_eq!(draft.username.as_deref(), Some("_json_key"));
    }

    #[test]
    fn acr_service_principal_needs_a_valid_tenant() {
        let mut input = parts("myreg.azurecr.io", Some("client-id"), Some("secret"));
        input.settings.azure_tenant_id = Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into());
        assert_eq!(
            build(input).unwrap().auth_method,
            AuthMethod::AzureServicePrincipal
        );
        assert_eq!(
            build(parts("myreg.azurecr.io", Some("tok"), Some("p")))
                .unwrap()
                .auth_method,
            AuthMethod::AcrToken
        );
    }

    #[test]
    fn role_arns_and_external_ids() {
        let mut input = parts(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            Some("AKIAIOSFODNN7EXAMPLE"),
            Some("secret"),
        );
        input.settings.role_arn = Some("arn:aws:iam::123456789012:role/team/pull".into());
        input.settings.external_id = Some("ext-42".into());
        assert_eq!(build(input).unwrap().auth_method, AuthMethod::AwsRole);
        for (arn, external_id) in [
            ("arn:aws:iam::123:role/x", "ext-42"),
            ("arn:aws:iam::123456789012:user/x", "ext-42"),
            ("arn:aws:iam::123456789012:role/x", "e"),
        ] {
            let mut input = parts(
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                Some("AKIAIOSFODNN7EXAMPLE"),
                Some("secret"),
            );
            input.settings.role_arn = Some(arn.into());
            input.settings.external_id = Some(external_id.into());
            assert!(build(input).is_err(), "{arn} {external_id}");
        }
        let short_key = parts("public.ecr.aws", Some("AKIA"), Some("secret"));
        assert_eq!(
            build(short_key).unwrap_err().code(),
            "invalid_access_key_id"
        );
    }

    #[test]
    fn aws_fields_are_refused_for_other_types() {
        let mut input = parts("ghcr.io", Some("u"), Some("p"));
        input.settings.role_arn = Some("arn:aws:iam::123456789012:role/x".into());
        assert_eq!(build(input).unwrap_err().code(), "invalid_for_type");
    }

    fn aws_secret(secret_id: &str) -> CredentialParts {
        let mut input = parts("harbor.example.com", None, None);
        input.settings.aws_secret = Some(AwsSecretSource {
            secret_id: secret_id.into(),
            identity_id: "id-1".into(),
            identity_name: "aws".into(),
            username_key: ECS_USERNAME_KEY.into(),
            password_key: ECS_PASSWORD_KEY.into(),
        });
        input
    }

    #[test]
    fn logins_from_secrets_manager_are_docker_and_store_nothing() {
        let draft = build(aws_secret("prod/harbor-login")).unwrap();
        assert_eq!(draft.kind, CredentialKind::Docker);
        assert_eq!(draft.auth_method, AuthMethod::AwsSecret);
        assert!(!draft.auth_method.needs_secret());
        assert!(draft.username.is_none() && draft.settings.aws_region.is_none());
        // The region of an ARN is the default; --aws-region wins.
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:quay-AbCdEf";
        assert_eq!(
            build(aws_secret(arn))
                .unwrap()
                .settings
                .aws_region
                .as_deref(),
            Some("eu-west-1")
        );
        let mut given = aws_secret(arn);
        given.settings.aws_region = Some("us-east-2".into());
        assert_eq!(
            build(given).unwrap().settings.aws_region.as_deref(),
            Some("us-east-2")
        );
        let mut with_password = aws_secret("a");
        with_password.secret.password = Some(SecretString::from("canary".to_owned()));
        assert_eq!(build(with_password).unwrap_err().code(), "invalid_for_type");
        let mut with_user = aws_secret("a");
        with_user.username = Some("robot".into());
        assert_eq!(build(with_user).unwrap_err().code(), "invalid_for_type");
        let mut ecr = aws_secret("a");
        ecr.requested_kind = Some(CredentialKind::Ecr);
        assert_eq!(build(ecr).unwrap_err().code(), "invalid_for_type");
        for bad in [
            "",
            "a b",
            "arn:aws:iam::123456789012:role/x",
            &"a".repeat(513),
        ] {
            assert_eq!(
                build(aws_secret(bad)).unwrap_err().code(),
                "invalid_aws_secret",
                "{bad}"
            );
        }
    }

    #[test]
    fn secret_keys_are_two_different_names() {
        assert_eq!(
            parse_aws_secret_keys("user, token").unwrap(),
            ("user".to_owned(), "token".to_owned())
        );
        for bad in ["user", "user,user", ",token", "user,", "a,b,c"] {
            assert_eq!(
                parse_aws_secret_keys(bad).unwrap_err().code(),
                "invalid_aws_secret_keys",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_secret_never_appears_in_debug_output() {
        let secret = CredentialSecret {
            password: Some(SecretString::from("canary-password".to_owned())),
            session_token: Some(SecretString::from("canary-session".to_owned())),
        };
        let printed = format!("{secret:?}");
        assert!(!printed.contains("canary"));
    }
}
