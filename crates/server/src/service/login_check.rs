//! Verifying a credential: a real login at its registry (and, given a repository, a
//! pull check), plus warnings when it can do more than pull. A registry that asks for
//! no credentials cannot tell a good login from a bad one: that is `unverifiable`, with
//! the reason, not `ok`.
//!
//! A failure the user must fix (the registry refused the login, a forbidden or
//! plain-http destination, a missing repository, not a registry, a realm not allowed)
//! is 422; anything that failed upstream or may pass later is 502 (`Upstream`).
//! Verification always logs in afresh through `Providers::login`: it neither reads nor
//! stores the shared minted tokens (`registry_tokens`), so it proves the stored secret
//! itself. A credential is stored only after [`check`] passed, unless the caller asked
//! not to verify (`skipped`).

use crate::domain::credential::{
    AuthMethod, Credential, CredentialSecret, Verification, VerificationStatus,
};
use crate::domain::identity::{Principal, Role};
use crate::domain::{Error, Result};
use crate::outbound::OutboundError;
use crate::providers::ProviderError;
use crate::registry_auth::{Login, PushCheck, RegistryClient, RegistryError, VerifyRequest};

use super::access::require;
use super::credentials::open_secret;
use super::App;

/// Why a verification failed, in the terms the API reports.
fn provider_failure(error: &ProviderError) -> Error {
    let message = format!("verification failed: {error}");
    if error.retryable() {
        Error::upstream(error.code(), message)
    } else {
        Error::unprocessable(error.code(), message)
    }
}

fn registry_failure(error: &RegistryError) -> Error {
    let message = format!("verification failed: {error}");
    match error {
        RegistryError::Outbound(
            OutboundError::DestinationForbidden { .. } | OutboundError::PlainHttpForbidden { .. },
        )
        | RegistryError::Unauthorized { .. }
        | RegistryError::ScopeDenied { .. }
        | RegistryError::RepositoryNotFound { .. }
        | RegistryError::NotARegistry { .. }
        | RegistryError::RealmNotAllowed { .. }
        | RegistryError::BadChallenge { .. } => Error::unprocessable(error.code(), message),
        _ => Error::upstream(error.code(), message),
    }
}

/// Logs in with `credential` and `secret` (which need not be stored yet).
pub async fn check(
    app: &App,
    credential: &Credential,
    secret: &CredentialSecret,
    repository: Option<&str>,
) -> Result<Verification> {
    let request = VerifyRequest {
        repository,
        check_push: false,
    };
    check_with(app, credential, secret, request).await
}

/// As [`check`], with a push check when `request.check_push` (which needs a
/// repository).
pub async fn check_with(
    app: &App,
    credential: &Credential,
    secret: &CredentialSecret,
    request: VerifyRequest<'_>,
) -> Result<Verification> {
    let repository = request.repository;
    push_check_has_repository(request)?;
    let now = app.now();
    let login = app.providers.login(credential, secret, now);
    let login = if credential.auth_method == AuthMethod::AwsSecret {
        // Read from Secrets Manager afresh (the secret exists, parses, has both keys).
        super::aws_secrets::fresh_login(app, credential).await?
    } else {
        login.await
    }
    .map_err(|error| provider_failure(&error))?;
    let client = RegistryClient::new(&app.outbound, &app.config.outbound);
    let report = client
        .verify(
            &credential.registry_host,
            &Login {
                username: &login.username,
                password: &login.secret,
            },
            request,
        )
        .await
        .map_err(|error| registry_failure(&error))?;
    if report.scheme == "none" {
        let scope = match repository {
            Some(repository) => format!("/v2/ and repository {repository}"),
            None => "/v2/".to_owned(),
        };
        return Ok(Verification {
            status: VerificationStatus::Unverifiable,
            checked_at: Some(now),
            message: Some(format!(
                "the registry asks for no credentials at {scope} (anonymous access), so it \
                 cannot tell whether this login is right; pulls there work without it"
            )),
        });
    }
    let mut notes = vec![format!("logged in ({})", report.scheme)];
    let repository_name = repository.unwrap_or_default();
    if !report.extra_actions.is_empty() {
        notes.push(format!(
            "warning: the registry grants {} on {repository_name}, more than pull; a \
             pull-only credential is safer",
            report.extra_actions.join(", "),
        ));
    }
    match &report.push {
        Some(PushCheck::Granted { not_cancelled }) => notes.push(match not_cancelled {
            None => format!(
                "warning: the credential may push to {repository_name} (a blob upload was \
                 opened and cancelled); a pull-only credential is safer"
            ),
            Some(reason) => format!(
                "warning: the credential may push to {repository_name} (a blob upload was \
                 opened; {reason}, so the registry removes the empty upload when it purges \
                 stale ones); a pull-only credential is safer"
            ),
        }),
        Some(PushCheck::Refused) => notes.push(format!(
            "push to {repository_name} refused, as it should be"
        )),
        Some(PushCheck::Unknown(reason)) => {
            notes.push(format!("push rights could not be checked: {reason}"))
        }
        // Without the upload, only a Bearer token's claims say what it grants.
        None if repository.is_some() && !report.grants_known => notes.push(
            "push rights could not be checked from the login alone; `regkeeper credentials \
             verify NAME --repository REPO --check-push` checks them by opening and \
             cancelling a blob upload"
                .into(),
        ),
        None => {}
    }
    if matches!(credential.auth_method, AuthMethod::AwsKeys) {
        match app.providers.ecr.caller_arn(credential, secret).await {
            Ok(arn) if arn.ends_with(":root") => notes.push(
                "warning: these are AWS root-account keys, which can do anything in the account; use an IAM user or role with ECR read-only access".into(),
            ),
            Ok(_) => {}
            Err(error) => tracing::info!(error.code = error.code(), "verify.caller_identity_unavailable"),
        }
    }
    Ok(Verification {
        status: VerificationStatus::Ok,
        checked_at: Some(now),
        message: Some(notes.join("; ")),
    })
}

fn push_check_has_repository(request: VerifyRequest<'_>) -> Result<()> {
    if request.check_push && request.repository.is_none() {
        return Err(Error::invalid(
            "check_push_needs_repository",
            "checking push rights needs a repository (--repository, or `repository` in the body)",
        ));
    }
    Ok(())
}

/// `credentials verify`: checks a stored credential and records the result, whether
/// the login worked or not (the result says which).
pub async fn verify(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    name: &str,
    repository: Option<&str>,
) -> Result<Credential> {
    let request = VerifyRequest {
        repository,
        check_push: false,
    };
    verify_with(app, principal, workspace, name, request).await
}

/// As [`verify`], with a push check when `request.check_push`.
pub async fn verify_with(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    name: &str,
    request: VerifyRequest<'_>,
) -> Result<Credential> {
    push_check_has_repository(request)?;
    let repository = request.repository;
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "credential.verify")
        .workspace(None, &workspace_name)
        .target(name);
    app.audited(record.clone(), async {
        // Checked before it reaches a URL, an error or the audit entry's detail.
        let repository = repository
            .map(|repository| {
                crate::domain::registry::normalize_path_prefix(repository)
                    .map_err(|error| Error::invalid("invalid_repository", error.to_string()))
            })
            .transpose()?;
        let repository = repository
            .as_deref()
            .filter(|repository| !repository.is_empty());
        let access = require(
            app,
            principal,
            Some(&workspace_name),
            Role::Maintain,
            "verifying credentials",
        )
        .await?;
        let existing = app
            .store
            .credential(&access.workspace.id, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("credential {name} in {workspace_name}")))?;
        let secret = open_secret(app, &existing)?;
        // The registry is asked about the repository as checked and normalised above,
        // the same name the audit entry records.
        let request = VerifyRequest {
            repository,
            ..request
        };
        let outcome = check_with(app, &existing, &secret, request).await;
        let verification = match &outcome {
            Ok(verification) => verification.clone(),
            // Stored and shown as the credential's status, so only the client message;
            // no HTTP error follows to log an internal error's detail, so it is here.
            Err(error) => {
                if let Error::Internal(detail) = error {
                    tracing::error!(credential.id = %existing.id, error.detail = ?detail, "verify.internal_error");
                }
                Verification {
                    status: VerificationStatus::Failed,
                    checked_at: Some(app.now()),
                    message: Some(error.to_string()),
                }
            }
        };
        let updated = Credential {
            verification,
            revision: existing.revision + 1,
            ..existing.clone()
        };
        let record = record
            .clone()
            .workspace(Some(&existing.workspace_id), &existing.workspace_name)
            .outcome(if outcome.is_ok() {
                crate::audit::Outcome::Success
            } else {
                crate::audit::Outcome::Failed
            })
            .detail(serde_json::json!({
                "id": existing.id,
                "repository": repository,
                "checkPush": request.check_push,
                "status": updated.verification.status.as_str(),
            }));
        app.store
            .update_credential(&updated, existing.revision, record)
            .await?;
        app.caches.forget_credentials();
        Ok(updated)
    })
    .await
}
