//! Creating, reading, updating and deleting credentials: validation, sealing of the
//! secret, authorisation and audit. A credential read from Secrets Manager
//! (`--aws-secret`) stores no secret: its source and `--aws-identity` credential are
//! checked, and the secret read once, before it is stored (`service::aws_secrets`).

use regkeeper_wire::CredentialInput;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::Binding;
use crate::domain::credential::{
    parse_aws_secret_keys, AuthMethod, AwsSecretSource, Credential, CredentialDraft,
    CredentialKind, CredentialOrigin, CredentialParts, CredentialPolicy, CredentialSecret,
    CredentialSettings, SealedSecret, Verification, VerificationStatus,
};
use crate::domain::identity::{Principal, Role};
use crate::domain::policy::Action;
use crate::domain::{Error, Result};

use super::access::{require, role_allows, role_workspace};
use super::App;

const SECRET_PURPOSE: &str = crate::store::SealedKind::CredentialSecret.purpose();

fn binding(credential: &Credential) -> Binding<'_> {
    Binding {
        purpose: SECRET_PURPOSE,
        workspace_id: &credential.workspace_id,
        owner_id: &credential.id,
        version: credential.secret_version,
    }
}

/// The sealed plaintext: the secret fields as JSON, only ever held in zeroized buffers.
#[derive(Serialize)]
struct SecretFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<&'a str>,
}

/// The same fields read back. Owned strings, because a JSON string with escapes (a
/// service-account key's `\n`s) cannot be borrowed; each moves straight into a
/// `SecretString`, which zeroizes it.
#[derive(Deserialize)]
struct OpenedFields {
    password: Option<String>,
    session_token: Option<String>,
}

fn seal(app: &App, credential: &Credential, secret: &CredentialSecret) -> Result<SealedSecret> {
    let keys = app.keyring.keys()?;
    let plaintext = Zeroizing::new(
        serde_json::to_vec(&SecretFields {
            password: secret.password.as_ref().map(ExposeSecret::expose_secret),
            session_token: secret
                .session_token
                .as_ref()
                .map(ExposeSecret::expose_secret),
        })
        .map_err(Error::internal)?,
    );
    Ok(keys.seal(&plaintext, binding(credential)))
}

/// Opens a credential's secret. Only the resolve path and verification may call this.
pub fn open_secret(app: &App, credential: &Credential) -> Result<CredentialSecret> {
    let Some(sealed) = &credential.sealed else {
        return Ok(CredentialSecret::default());
    };
    let keys = app.keyring.keys()?;
    let plaintext = keys.open(sealed, binding(credential)).map_err(|error| {
        tracing::error!(credential.id = %credential.id, error = %error, "credential.open_failed");
        Error::unavailable(
            "secret_unreadable",
            format!(
                "the stored secret of credential {} cannot be decrypted ({error}); re-enter it with `regkeeper credentials update`",
                credential.name
            ),
        )
    })?;
    let fields: OpenedFields = serde_json::from_slice(&plaintext)
        .map_err(|_| Error::internal("sealed secret is not the expected JSON"))?;
    Ok(CredentialSecret {
        password: fields.password.map(SecretString::from),
        session_token: fields.session_token.map(SecretString::from),
    })
}

fn policy(app: &App) -> CredentialPolicy {
    CredentialPolicy {
        allow_ambient_aws: app.config.allow_ambient_aws_credentials,
    }
}

fn requested_kind(input: &CredentialInput) -> Result<Option<CredentialKind>> {
    input
        .kind
        .as_deref()
        .map_or(Ok(None), CredentialKind::parse_requested)
}

fn secret_from(input: &CredentialInput) -> CredentialSecret {
    CredentialSecret {
        password: input
            .password
            .as_ref()
            .map(|value| SecretString::from(value.expose().to_owned())),
        session_token: input
            .session_token
            .as_ref()
            .map(|value| SecretString::from(value.expose().to_owned())),
    }
}

/// The verification state before any login: `skipped` when the caller asked not to
/// verify, else `unverified` until [`super::login_check::check`] runs.
fn verification(input: &CredentialInput, at: i64) -> Verification {
    if input.verify == Some(false) {
        Verification {
            status: VerificationStatus::Skipped,
            checked_at: Some(at),
            message: Some("verification skipped on request (--no-verify)".into()),
        }
    } else {
        Verification {
            status: VerificationStatus::Unverified,
            checked_at: None,
            message: None,
        }
    }
}

/// `--aws-secret`, `--aws-identity` and `--aws-secret-keys` as a source, with its
/// identity credential; `existing` fills what an update leaves out. `None` when the
/// credential is not read from Secrets Manager.
async fn aws_secret_source(
    app: &App,
    workspace_id: &str,
    input: &CredentialInput,
    existing: Option<&AwsSecretSource>,
) -> Result<Option<(AwsSecretSource, Credential)>> {
    let given = input.aws_secret.is_some()
        || input.aws_identity.is_some()
        || input.aws_secret_keys.is_some();
    let Some(secret_id) = input
        .aws_secret
        .clone()
        .or_else(|| existing.map(|source| source.secret_id.clone()))
    else {
        if given {
            return Err(Error::invalid(
                "invalid_for_type",
                "--aws-identity and --aws-secret-keys apply only with --aws-secret",
            ));
        }
        return Ok(None);
    };
    let identity = match (&input.aws_identity, existing) {
        (Some(name), _) => super::aws_secrets::identity_by_name(app, workspace_id, name).await?,
        (None, Some(source)) => {
            super::aws_secrets::identity(app, workspace_id, &source.identity_id, &source.identity_name)
                .await?
        }
        (None, None) => {
            return Err(Error::invalid(
                "missing_field",
                "--aws-identity is required with --aws-secret: name the ecr credential whose AWS keys or role read the secret",
            ))
        }
    };
    let (username_key, password_key) = match (&input.aws_secret_keys, existing) {
        (Some(keys), _) => parse_aws_secret_keys(keys)?,
        (None, Some(source)) => (source.username_key.clone(), source.password_key.clone()),
        (None, None) => (
            crate::domain::credential::ECS_USERNAME_KEY.to_owned(),
            crate::domain::credential::ECS_PASSWORD_KEY.to_owned(),
        ),
    };
    Ok(Some((
        AwsSecretSource {
            secret_id,
            identity_id: identity.id.clone(),
            identity_name: identity.name.clone(),
            username_key,
            password_key,
        },
        identity,
    )))
}

/// A credential read from Secrets Manager is stored only once its secret was read
/// (exists, parses, has both keys), verified at the registry or not.
async fn check_aws_secret(app: &App, credential: &Credential) -> Result<()> {
    if credential.auth_method != AuthMethod::AwsSecret {
        return Ok(());
    }
    super::aws_secrets::fresh_login(app, credential)
        .await?
        .map(drop)
        .map_err(|error| {
            let message = format!("the login cannot be read: {error}");
            if error.retryable() {
                Error::upstream(error.code(), message)
            } else {
                Error::unprocessable(error.code(), message)
            }
        })
}

fn audit_detail(credential: &Credential) -> serde_json::Value {
    let mut detail = serde_json::json!({
        "id": credential.id,
        "type": credential.kind.as_str(),
        "authMethod": credential.auth_method.as_str(),
        "registry": credential.registry_host,
        "pathPrefix": credential.path_prefix,
        "secretVersion": credential.secret_version,
        "origin": credential.origin.as_str(),
    });
    if let Some(source) = &credential.settings.aws_secret {
        detail["awsSecret"] = serde_json::Value::String(source.secret_id.clone());
        detail["awsIdentity"] = serde_json::Value::String(source.identity_name.clone());
    }
    detail
}

fn requested_origin(input: &CredentialInput) -> Result<Option<CredentialOrigin>> {
    input
        .origin
        .as_deref()
        .map(CredentialOrigin::parse_requested)
        .transpose()
}

/// Refuses to change `existing` when the caller asked for another origin: the docker
/// credential helper sends `helper`, so a `docker login` or `docker logout` can never
/// change or delete a credential a person added, even one added between the helper's
/// look-up and its request.
fn check_origin(existing: &Credential, expected: Option<CredentialOrigin>) -> Result<()> {
    match expected {
        Some(expected) if expected != existing.origin => Err(Error::conflict(
            "origin_mismatch",
            format!(
                "credential {} in {} was created by {}, not by {}; it is left unchanged",
                existing.name,
                existing.workspace_name,
                origin_description(existing.origin),
                origin_description(expected),
            ),
        )),
        _ => Ok(()),
    }
}

fn origin_description(origin: CredentialOrigin) -> &'static str {
    match origin {
        CredentialOrigin::User => "a person (regkeeper credentials add, the API or the console)",
        CredentialOrigin::Helper => "the docker credential helper (a docker login)",
    }
}

pub async fn create(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    input: CredentialInput,
) -> Result<Credential> {
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "credential.create")
        .workspace(None, &workspace_name)
        .target(input.name.clone().unwrap_or_default());
    app.audited(record.clone(), async {
        let access = require(
            app,
            principal,
            Some(&workspace_name),
            Role::Maintain,
            "adding credentials",
        )
        .await?;
        let required = |value: Option<String>, flag: &str| {
            value.ok_or_else(|| Error::invalid("missing_field", format!("{flag} is required")))
        };
        let source = aws_secret_source(app, &access.workspace.id, &input, None).await?;
        let parts = CredentialParts {
            name: required(input.name.clone(), "--name")?,
            registry: required(input.registry.clone(), "--registry")?,
            requested_kind: requested_kind(&input)?,
            path_prefix: input.path_prefix.clone(),
            username: input.username.clone(),
            settings: CredentialSettings {
                role_arn: input.role_arn.clone(),
                external_id: input.external_id.clone(),
                ambient: input.ambient.unwrap_or(false),
                aws_region: input.aws_region.clone(),
                azure_tenant_id: input.azure_tenant_id.clone(),
                aws_secret: source.as_ref().map(|(source, _)| source.clone()),
            },
            secret: secret_from(&input),
            secret_given: true,
        };
        let mut draft = CredentialDraft::build(parts, policy(app))?;
        if let (Some((_, identity)), true) = (&source, draft.settings.aws_region.is_none()) {
            // Neither --aws-region nor an ARN named it: the identity's region.
            draft.settings.aws_region = identity.settings.aws_region.clone();
        }
        let now = app.now();
        let mut credential = Credential {
            id: super::new_id(),
            workspace_id: access.workspace.id.clone(),
            workspace_name: access.workspace.name.clone(),
            name: draft.name,
            kind: draft.kind,
            auth_method: draft.auth_method,
            registry_host: draft.registry_host,
            path_prefix: draft.path_prefix,
            username: draft.username,
            settings: draft.settings,
            sealed: None,
            secret_version: 1,
            revision: 1,
            created_at: now,
            updated_at: now,
            created_by: principal.user_name.clone(),
            origin: requested_origin(&input)?.unwrap_or_default(),
            verification: verification(&input, now),
            token: None,
        };
        check_ambient(app, &credential).await?;
        if input.verify != Some(false) {
            credential.verification =
                super::login_check::check(app, &credential, &draft.secret, None).await?;
        } else {
            check_aws_secret(app, &credential).await?;
        }
        let _sealing = app.seal_gate.read().await;
        if credential.auth_method.needs_secret() {
            credential.sealed = Some(seal(app, &credential, &draft.secret)?);
        }
        let record = record
            .clone()
            .workspace(Some(&credential.workspace_id), &credential.workspace_name)
            .detail(audit_detail(&credential));
        app.store.insert_credential(&credential, record).await?;
        app.caches.forget_credentials();
        tracing::info!(
            credential.id = %credential.id,
            credential.name = %credential.name,
            workspace.name = %credential.workspace_name,
            registry.host = %credential.registry_host,
            "credential.created"
        );
        Ok(credential)
    })
    .await
}

/// An ambient AWS credential must stay within the accounts the operator listed, even
/// when it is not verified (the provider checks again at every mint).
async fn check_ambient(app: &App, credential: &Credential) -> Result<()> {
    app.providers
        .ecr
        .check_ambient(credential)
        .await
        .map_err(|error| {
            let message = error.to_string();
            if error.retryable() {
                Error::upstream(error.code(), message)
            } else {
                Error::unprocessable(error.code(), message)
            }
        })
}

pub async fn list(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
) -> Result<Vec<Credential>> {
    if let Some(role) = &principal.role {
        let name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
        let found = role_workspace(app, role, &name, Action::Describe).await?;
        let mut credentials = app.store.credentials(&found.id).await?;
        credentials.retain(|credential| role_allows(role, Action::Describe, credential).is_ok());
        return Ok(credentials);
    }
    let access = require(app, principal, workspace, Role::View, "listing credentials").await?;
    app.store.credentials(&access.workspace.id).await
}

pub async fn show(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    name: &str,
) -> Result<Credential> {
    if let Some(role) = &principal.role {
        let workspace = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
        let found = role_workspace(app, role, &workspace, Action::Describe).await?;
        let credential = find(app, &found.id, &found.name, name).await?;
        role_allows(role, Action::Describe, &credential)?;
        return Ok(credential);
    }
    let access = require(app, principal, workspace, Role::View, "reading credentials").await?;
    find(app, &access.workspace.id, &access.workspace.name, name).await
}

async fn find(
    app: &App,
    workspace_id: &str,
    workspace_name: &str,
    name: &str,
) -> Result<Credential> {
    app.store
        .credential(workspace_id, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("credential {name} in {workspace_name}")))
}

pub async fn update(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    name: &str,
    input: CredentialInput,
) -> Result<Credential> {
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "credential.update")
        .workspace(None, &workspace_name)
        .target(name);
    app.audited(record.clone(), async {
        let access = require(app, principal, Some(&workspace_name), Role::Maintain, "updating credentials").await?;
        let existing = find(app, &access.workspace.id, &access.workspace.name, name).await?;
        check_origin(&existing, requested_origin(&input)?)?;
        let secret_given = input.password.is_some() || input.session_token.is_some();
        if input.session_token.is_some() && input.password.is_none() {
            return Err(Error::invalid(
                "missing_password",
                "a new session token needs the secret access key it belongs to as the password",
            ));
        }
        let registry = match &input.registry {
            Some(registry) => registry.clone(),
            None => existing.registry_host.clone(),
        };
        let path_prefix = input
            .path_prefix
            .clone()
            .or_else(|| input.registry.is_none().then(|| existing.path_prefix.clone()));
        let old = &existing.settings;
        let source = aws_secret_source(app, &access.workspace.id, &input, old.aws_secret.as_ref()).await?;
        let parts = CredentialParts {
            name: input.name.clone().unwrap_or_else(|| existing.name.clone()),
            registry,
            requested_kind: match requested_kind(&input)? {
                Some(kind) => Some(kind),
                None if input.kind.is_some() || source.is_some() => None,
                None => Some(existing.kind),
            },
            path_prefix,
            // A login read from Secrets Manager has no user name of its own.
            username: input.username.clone().or_else(|| {
                source.is_none().then(|| existing.username.clone()).flatten()
            }),
            settings: CredentialSettings {
                role_arn: input.role_arn.clone().or_else(|| old.role_arn.clone()),
                external_id: input.external_id.clone().or_else(|| old.external_id.clone()),
                ambient: input.ambient.unwrap_or(old.ambient),
                aws_region: input.aws_region.clone().or_else(|| {
                    (input.registry.is_none()).then(|| old.aws_region.clone()).flatten()
                }),
                azure_tenant_id: input.azure_tenant_id.clone().or_else(|| old.azure_tenant_id.clone()),
                aws_secret: source.as_ref().map(|(source, _)| source.clone()),
            },
            secret: secret_from(&input),
            secret_given,
        };
        let mut draft = CredentialDraft::build(parts, policy(app))?;
        if let (Some((_, identity)), true) = (&source, draft.settings.aws_region.is_none()) {
            // Neither --aws-region nor an ARN named it: the identity's region.
            draft.settings.aws_region = identity.settings.aws_region.clone();
        }
        if draft.auth_method != existing.auth_method && draft.auth_method.needs_secret() && !secret_given {
            return Err(Error::invalid(
                "missing_password",
                format!(
                    "changing the credential from {} to {} needs its new secret (--password-stdin, --password-env or --password-file)",
                    existing.auth_method.as_str(),
                    draft.auth_method.as_str()
                ),
            ));
        }
        let now = app.now();
        let mut updated = Credential {
            name: draft.name,
            kind: draft.kind,
            auth_method: draft.auth_method,
            registry_host: draft.registry_host,
            path_prefix: draft.path_prefix,
            username: draft.username,
            settings: draft.settings,
            revision: existing.revision + 1,
            updated_at: now,
            verification: verification(&input, now),
            ..existing.clone()
        };
        check_ambient(app, &updated).await?;
        if input.verify != Some(false) {
            let secret = if secret_given { draft.secret.clone() } else { open_secret(app, &existing)? };
            updated.verification = super::login_check::check(app, &updated, &secret, None).await?;
        } else {
            check_aws_secret(app, &updated).await?;
        }
        let _sealing = app.seal_gate.read().await;
        if !updated.auth_method.needs_secret() {
            updated.sealed = None;
        } else if secret_given {
            updated.secret_version = existing.secret_version + 1;
            updated.sealed = Some(seal(app, &updated, &draft.secret)?);
        }
        let mut detail = audit_detail(&updated);
        detail["secretChanged"] = serde_json::Value::Bool(secret_given);
        if updated.name != existing.name {
            detail["previousName"] = serde_json::Value::String(existing.name.clone());
        }
        let record = record
            .clone()
            .workspace(Some(&updated.workspace_id), &updated.workspace_name)
            .detail(detail);
        app.store
            .update_credential(&updated, existing.revision, record)
            .await?;
        app.caches.forget_credentials();
        if secret_given {
            // A new secret is a new identity: the next resolve mints and links its own
            // token, and the refresher drops the old one once nothing uses it.
            app.store.link_token_identity(&updated.id, None).await?;
        }
        tracing::info!(
            credential.id = %updated.id,
            credential.name = %updated.name,
            workspace.name = %updated.workspace_name,
            "credential.updated"
        );
        Ok(updated)
    })
    .await
}

pub async fn delete(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    name: &str,
) -> Result<()> {
    delete_if_origin(app, principal, workspace, name, None).await
}

/// As [`delete`], refused (409 `origin_mismatch`) unless the credential has `origin`
/// when one is given.
pub async fn delete_if_origin(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    name: &str,
    origin: Option<CredentialOrigin>,
) -> Result<()> {
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "credential.delete")
        .workspace(None, &workspace_name)
        .target(name);
    app.audited(record.clone(), async {
        let access = require(
            app,
            principal,
            Some(&workspace_name),
            Role::Maintain,
            "deleting credentials",
        )
        .await?;
        let existing = find(app, &access.workspace.id, &access.workspace.name, name).await?;
        check_origin(&existing, origin)?;
        let record = record
            .clone()
            .workspace(Some(&existing.workspace_id), &existing.workspace_name)
            .detail(audit_detail(&existing));
        if !app.store.delete_credential(&existing.id, record).await? {
            return Err(Error::NotFound(format!(
                "credential {name} in {workspace_name}"
            )));
        }
        app.caches.forget_credentials();
        tracing::info!(credential.id = %existing.id, credential.name = %name, "credential.deleted");
        Ok(())
    })
    .await
}
