//! AWS Secrets Manager, both ways: a credential whose login is read from a secret
//! (`credentials add --aws-secret`, auth method `aws_secret`), and the identity a
//! sync target of type `aws_secret` writes with. Both act as an `ecr` credential of
//! the same workspace (`--aws-identity`): its keys, its role, or the server's own
//! identity where ambient credentials are allowed, in `--aws-region`, else the secret
//! ARN's region, else the identity credential's region.
//!
//! A source's login is read at resolve time and kept in this replica's memory
//! ([`SourceCache`]) for at most [`SOURCE_CACHE_MS`] (5 minutes; the test-only setting
//! `REGKEEPER_TEST_AWS_SECRET_CACHE_MS` may shorten it), keyed by the credential's id
//! and revision, so a new secret version is served within that bound and an updated
//! credential at once. Nothing of it is stored in the database. Verification
//! ([`fresh_login`]) always reads the secret anew.
//!
//! The identity credential is found by id (it may be renamed); a deleted one, or one
//! that is no longer `ecr`, fails the resolve or push with `aws_identity_missing` /
//! `aws_identity_not_ecr`, naming it. The secret's value reaches only the resolve
//! answer and sync deliveries; errors name the secret, never what it holds.

use std::collections::HashMap;

use crate::domain::credential::{AuthMethod, AwsSecretSource, Credential, CredentialKind};
use crate::domain::{Error, Result};
use crate::providers::{secrets_manager, ProviderError, RegistryLogin};

use super::credentials::open_secret;
use super::App;

/// The longest a login read from Secrets Manager is served from memory: a new secret
/// version reaches every resolve within this.
pub const SOURCE_CACHE_MS: i64 = 5 * 60 * 1000;

/// Logins read from Secrets Manager, by credential id: (revision, read at, login).
#[derive(Default)]
pub struct SourceCache {
    entries: tokio::sync::Mutex<HashMap<String, (i64, i64, RegistryLogin)>>,
}

/// The `ecr` credential `identity_id` of `workspace_id`, for `what` (shown in errors).
pub async fn identity(
    app: &App,
    workspace_id: &str,
    identity_id: &str,
    identity_name: &str,
) -> Result<Credential> {
    let found = app
        .store
        .credentials(workspace_id)
        .await?
        .into_iter()
        .find(|credential| credential.id == identity_id)
        .ok_or_else(|| {
            Error::unprocessable(
                "aws_identity_missing",
                format!(
                    "the AWS identity credential {identity_name} was deleted; add an ecr credential and point this one at it again"
                ),
            )
        })?;
    check_identity(found)
}

/// The `ecr` credential named `name` in the workspace, as `--aws-identity` names it.
pub async fn identity_by_name(app: &App, workspace_id: &str, name: &str) -> Result<Credential> {
    let found = app
        .store
        .credential(workspace_id, name)
        .await?
        .ok_or_else(|| {
            Error::unprocessable(
                "aws_identity_not_found",
                format!(
                    "--aws-identity {}: no credential of that name in this workspace; add an ecr credential with AWS keys or a role first",
                    crate::text::echo(name)
                ),
            )
        })?;
    check_identity(found)
}

fn check_identity(credential: Credential) -> Result<Credential> {
    if credential.kind == CredentialKind::Ecr {
        Ok(credential)
    } else {
        Err(Error::unprocessable(
            "aws_identity_not_ecr",
            format!(
                "credential {} is a {} credential; --aws-identity names an ecr credential, whose AWS keys, role or ambient identity are used",
                credential.name, credential.kind
            ),
        ))
    }
}

/// A Secrets Manager client acting as `identity` in `region` (else the identity's own).
pub async fn client(
    app: &App,
    identity: &Credential,
    region: Option<&str>,
) -> Result<std::result::Result<aws_sdk_secretsmanager::Client, ProviderError>> {
    let secret = open_secret(app, identity)?;
    let Some(region) = region.or(identity.settings.aws_region.as_deref()) else {
        return Ok(Err(ProviderError::Unsupported(format!(
            "the AWS identity credential {} has no region; give --aws-region",
            identity.name
        ))));
    };
    Ok(secrets_manager::client(&app.providers.ecr, identity, &secret, region).await)
}

fn source(credential: &Credential) -> Result<&AwsSecretSource> {
    credential
        .settings
        .aws_secret
        .as_ref()
        .filter(|_| credential.auth_method == AuthMethod::AwsSecret)
        .ok_or_else(|| Error::internal("not a credential read from Secrets Manager"))
}

/// Reads the credential's login from Secrets Manager now. The outer error is
/// regkeeper's (the identity credential missing, the keyring sealed); the inner one
/// AWS's or the secret's.
pub async fn fresh_login(
    app: &App,
    credential: &Credential,
) -> Result<std::result::Result<RegistryLogin, ProviderError>> {
    let source = source(credential)?;
    let identity = identity(
        app,
        &credential.workspace_id,
        &source.identity_id,
        &source.identity_name,
    )
    .await?;
    let client = match client(app, &identity, credential.settings.aws_region.as_deref()).await? {
        Ok(client) => client,
        Err(error) => return Ok(Err(error)),
    };
    let login = secrets_manager::read_login(&client, source, app.now()).await;
    match &login {
        Ok(_) => tracing::debug!(
            credential.id = %credential.id,
            aws.secret = %source.secret_id,
            "aws_secret.read"
        ),
        Err(error) => tracing::warn!(
            credential.id = %credential.id,
            aws.secret = %source.secret_id,
            error.code = error.code(),
            "aws_secret.read_failed"
        ),
    }
    Ok(login)
}

/// The credential's login for a resolve: from memory while younger than the bound,
/// else read anew. A failed read is an error naming the secret: 502 for AWS or a
/// missing or unusable secret, 503 for what may pass (throttling, unreachable).
pub async fn login(app: &App, credential: &Credential) -> Result<RegistryLogin> {
    let now = app.now();
    let bound = app.config.aws_secret_cache_ms.min(SOURCE_CACHE_MS);
    if let Some((revision, read_at, login)) =
        app.aws_secrets.entries.lock().await.get(&credential.id)
    {
        if *revision == credential.revision && now >= *read_at && now - read_at < bound {
            return Ok(login.clone());
        }
    }
    let login = fresh_login(app, credential)
        .await?
        .map_err(|error| source_error(credential, &error))?;
    let mut entries = app.aws_secrets.entries.lock().await;
    // Entries of deleted credentials go when they are next past the bound.
    entries.retain(|_, (_, read_at, _)| now - *read_at < bound);
    entries.insert(
        credential.id.clone(),
        (credential.revision, now, login.clone()),
    );
    Ok(login)
}

/// Drops the remembered login of a credential (its registry refused it).
pub async fn forget(app: &App, credential_id: &str) {
    app.aws_secrets.entries.lock().await.remove(credential_id);
}

fn source_error(credential: &Credential, error: &ProviderError) -> Error {
    let message = format!("credential {} could not log in: {error}", credential.name);
    if error.retryable() {
        Error::unavailable(error.code(), message)
    } else {
        Error::upstream(error.code(), message)
    }
}
