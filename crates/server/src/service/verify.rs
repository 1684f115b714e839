//! Verifying a credential: a real login at its registry (and, given a repository, a
//! pull check), plus warnings when it can do more than pull.

use crate::domain::credential::{
    AuthMethod, Credential, CredentialSecret, Verification, VerificationStatus,
};
use crate::domain::identity::{Principal, Role};
use crate::domain::{Error, Result};
use crate::outbound::OutboundError;
use crate::providers::ProviderError;
use crate::registry_auth::{Login, RegistryClient, RegistryError};

use super::access::require;
use super::credentials::open_secret;
use super::App;

/// Why a verification failed, in the terms the API reports.
fn provider_failure(error: &ProviderError) -> Error {
    let message = format!("verification failed: {error}");
    if error.retryable() {
        Error::Upstream {
            code: error.code(),
            message,
        }
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
        | RegistryError::BadChallenge { .. } => Error::unprocessable(error.code(), message),
        _ => Error::Upstream {
            code: error.code(),
            message,
        },
    }
}

/// Logs in with `credential` and `secret` (which need not be stored yet).
pub async fn check(
    app: &App,
    credential: &Credential,
    secret: &CredentialSecret,
    repository: Option<&str>,
) -> Result<Verification> {
    let now = app.now();
    let login = app
        .providers
        .login(credential, secret, now)
        .await
        .map_err(|error| provider_failure(&error))?;
    let client = RegistryClient::new(&app.outbound, &app.config.outbound.http_registries);
    let report = client
        .verify(
            &credential.registry_host,
            &Login {
                username: &login.username,
                password: &login.secret,
            },
            repository,
        )
        .await
        .map_err(|error| registry_failure(&error))?;
    let mut notes = vec![format!("logged in ({})", report.scheme)];
    if !report.extra_actions.is_empty() {
        notes.push(format!(
            "warning: the registry grants {} on {}, more than pull; a pull-only credential is safer",
            report.extra_actions.join(", "),
            repository.unwrap_or_default()
        ));
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

/// `credentials verify`: checks a stored credential and records the result, whether
/// the login worked or not (the result says which).
pub async fn verify(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    name: &str,
    repository: Option<&str>,
) -> Result<Credential> {
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
        let outcome = check(app, &existing, &secret, repository).await;
        let verification = match &outcome {
            Ok(verification) => verification.clone(),
            Err(error) => Verification {
                status: VerificationStatus::Failed,
                checked_at: Some(app.now()),
                message: Some(error.to_string()),
            },
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
