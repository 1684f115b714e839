//! The credential pages: the table of a workspace, one credential, add, update,
//! verify and delete. Each calls one `service` function with the signed-in principal;
//! a domain error re-renders the form with what was typed (never the password) or
//! becomes a page that says what went wrong.
//!
//! Limits: the forms have no ECR session token or Azure tenant id (the CLI has);
//! sync targets are shown but managed only with `regkeeper sync`; a credential named
//! `new` cannot be opened at its page path, which is the add form's.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use crate::domain::credential::{Credential, VerificationStatus};
use crate::domain::identity::Role;
use crate::domain::sync_target::SyncTarget;
use crate::domain::{Error, Result};
use crate::http::ApiState;
use crate::service::{access, credentials, login_check, sync_targets, App};

use super::forms::console_wording;
use super::forms::{CredentialForm, FormFields};
use super::guard::SignedIn;
use super::pages::{self, CredentialRow, FormPage};
use super::session::Flash;
use super::{error_message, paths, with_full_stop};

pub async fn list(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path(workspace): Path<String>,
) -> Response {
    let app = &state.app;
    let principal = &signed.principal;
    let found = match credentials::list(app, principal, Some(&workspace)).await {
        Ok(found) => found,
        Err(error) => return signed.problem(&error),
    };
    let may_maintain = match access::may(app, principal, &workspace, Role::Maintain).await {
        Ok(may) => may,
        Err(error) => return signed.problem(&error),
    };
    let mut targets = Vec::with_capacity(found.len());
    for credential in &found {
        match targets_of(app, &signed, &workspace, &credential.name).await {
            Ok(list) => targets.push(list),
            Err(error) => return signed.problem(&error),
        }
    }
    let rows: Vec<CredentialRow<'_>> = found
        .iter()
        .zip(&targets)
        .map(|(credential, targets)| CredentialRow {
            credential,
            targets,
        })
        .collect();
    signed.page(
        StatusCode::OK,
        pages::credentials(
            &signed.shell(),
            signed.flash(),
            &workspace,
            may_maintain,
            &rows,
            app.now(),
        ),
    )
}

/// A credential's sync targets; none if it was deleted meanwhile.
async fn targets_of(
    app: &App,
    signed: &SignedIn,
    workspace: &str,
    name: &str,
) -> Result<Vec<SyncTarget>> {
    match sync_targets::list(app, &signed.principal, Some(workspace), name).await {
        Err(Error::NotFound(_) | Error::Hidden(_)) => Ok(Vec::new()),
        other => other,
    }
}

pub async fn show(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path((workspace, name)): Path<(String, String)>,
) -> Response {
    let app = &state.app;
    let principal = &signed.principal;
    let credential = match credentials::show(app, principal, Some(&workspace), &name).await {
        Ok(credential) => credential,
        Err(error) => return signed.problem(&error),
    };
    let may_maintain = match access::may(app, principal, &workspace, Role::Maintain).await {
        Ok(may) => may,
        Err(error) => return signed.problem(&error),
    };
    let targets = match targets_of(app, &signed, &workspace, &name).await {
        Ok(targets) => targets,
        Err(error) => return signed.problem(&error),
    };
    signed.page(
        StatusCode::OK,
        pages::credential(
            &signed.shell(),
            signed.flash(),
            &credential,
            &targets,
            may_maintain,
            app.now(),
        ),
    )
}

pub async fn new(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path(workspace): Path<String>,
) -> Response {
    if let Err(page) = may_maintain(&state.app, &signed, &workspace, "adding credentials").await {
        return page;
    }
    let form = CredentialForm::empty();
    form_page(&signed, &workspace, None, &form, None, StatusCode::OK)
}

/// Whether the caller may change credentials in `workspace`; if not, the page that
/// says why (the service checks again when the change is made).
async fn may_maintain(
    app: &crate::service::App,
    signed: &SignedIn,
    workspace: &str,
    doing: &str,
) -> Result<(), Response> {
    access::require(
        app,
        &signed.principal,
        Some(workspace),
        Role::Maintain,
        doing,
    )
    .await
    .map(|_| ())
    .map_err(|error| signed.problem(&error))
}

/// Credential `name` of `workspace`, if the caller may change it; if not, or it is not
/// there, the page that says so.
async fn maintained(
    app: &crate::service::App,
    signed: &SignedIn,
    workspace: &str,
    name: &str,
    doing: &str,
) -> Result<Credential, Response> {
    may_maintain(app, signed, workspace, doing).await?;
    credentials::show(app, &signed.principal, Some(workspace), name)
        .await
        .map_err(|error| signed.problem(&error))
}

fn form_page(
    signed: &SignedIn,
    workspace: &str,
    existing: Option<&str>,
    form: &CredentialForm,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let page = FormPage {
        workspace,
        existing,
        form,
        error,
    };
    signed.page(status, pages::credential_form(&signed.shell(), &page))
}

/// A failed add or update: the form again with the message, unless the failure is
/// about the workspace or the caller rather than what was typed.
fn form_failure(
    signed: &SignedIn,
    workspace: &str,
    existing: Option<&str>,
    form: &CredentialForm,
    error: &Error,
) -> Response {
    match error {
        Error::NotFound(_) | Error::Hidden(_) | Error::Forbidden(_) | Error::Unauthenticated(_) => {
            signed.problem(error)
        }
        other => form_page(
            signed,
            workspace,
            existing,
            form,
            Some(&error_message(other)),
            crate::http::error::status_of(other),
        ),
    }
}

/// The form of a state-changing POST, after the origin and CSRF checks.
/// A posted credential form with every required field, or the page to answer
/// instead: the refusal of a forged post, or the form again naming what is missing.
#[expect(clippy::result_large_err, reason = "the error is the response to send")]
fn submitted(
    signed: &SignedIn,
    uri: &Uri,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
    workspace: &str,
    name: Option<&str>,
) -> std::result::Result<(FormFields, CredentialForm), Response> {
    let fields = read_form(signed, uri, headers, body)?;
    let form = CredentialForm::from_fields(&fields);
    match form.missing() {
        Some(missing) => Err(form_page(
            signed,
            workspace,
            name,
            &form,
            Some(&missing),
            StatusCode::BAD_REQUEST,
        )),
        None => Ok((fields, form)),
    }
}

#[expect(clippy::result_large_err, reason = "the error is the response to send")]
fn read_form(
    signed: &SignedIn,
    uri: &Uri,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<FormFields, Response> {
    let fields = match body {
        Ok(body) => FormFields::parse(&body),
        Err(rejection) => {
            return Err(signed.page(
                rejection.status(),
                pages::problem(
                    Some(&signed.shell()),
                    "Form not accepted",
                    "The form could not be read (it may be larger than the server accepts); nothing was changed.",
                ),
            ))
        }
    };
    signed.check_form(
        headers,
        uri.authority().map(|authority| authority.as_str()),
        &fields,
    )?;
    Ok(fields)
}

/// "Added ghcr. Verified: logged in (bearer)."
fn saved_message(done: &str, credential: &Credential) -> String {
    let verification = &credential.verification;
    match (verification.status, &verification.message) {
        (VerificationStatus::Ok, Some(message)) => {
            format!(
                "{done} {}. Verified: {}",
                credential.name,
                with_full_stop(message)
            )
        }
        (VerificationStatus::Unverifiable, Some(message)) => {
            format!(
                "{done} {}. Not verifiable: {}",
                credential.name,
                with_full_stop(message)
            )
        }
        _ => format!("{done} {}.", credential.name),
    }
}

pub async fn create(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path(workspace): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let (fields, form) = match submitted(&signed, &uri, &headers, body, &workspace, None) {
        Ok(submitted) => submitted,
        Err(page) => return page,
    };
    let input = form.input(fields.get("password"));
    match credentials::create(&state.app, &signed.principal, Some(&workspace), input).await {
        Ok(created) => signed.redirect(
            &paths::credential(&created.workspace_name, &created.name),
            Some(&Flash::status(saved_message("Added", &created))),
        ),
        Err(error) => form_failure(&signed, &workspace, None, &form, &error),
    }
}

pub async fn edit(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path((workspace, name)): Path<(String, String)>,
) -> Response {
    let doing = "updating credentials";
    match maintained(&state.app, &signed, &workspace, &name, doing).await {
        Ok(credential) => {
            let form = CredentialForm::from_credential(&credential);
            form_page(
                &signed,
                &workspace,
                Some(&name),
                &form,
                None,
                StatusCode::OK,
            )
        }
        Err(page) => page,
    }
}

pub async fn update(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path((workspace, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let (fields, form) = match submitted(&signed, &uri, &headers, body, &workspace, Some(&name)) {
        Ok(submitted) => submitted,
        Err(page) => return page,
    };
    let input = form.input(fields.get("password"));
    match credentials::update(
        &state.app,
        &signed.principal,
        Some(&workspace),
        &name,
        input,
    )
    .await
    {
        Ok(updated) => signed.redirect(
            &paths::credential(&updated.workspace_name, &updated.name),
            Some(&Flash::status(saved_message("Saved", &updated))),
        ),
        Err(error) => form_failure(&signed, &workspace, Some(&name), &form, &error),
    }
}

pub async fn verify(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path((workspace, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = read_form(&signed, &uri, &headers, body) {
        return refused;
    }
    let flash =
        match login_check::verify(&state.app, &signed.principal, Some(&workspace), &name, None)
            .await
        {
            Ok(verified) => {
                let message = verified.verification.message.as_deref().unwrap_or_default();
                if verified.verification.status == VerificationStatus::Ok {
                    Flash::status(format!("Verified {name}: {}", with_full_stop(message)))
                } else if verified.verification.status == VerificationStatus::Unverifiable {
                    Flash::status(format!(
                        "{name} could not be verified: {}",
                        with_full_stop(message)
                    ))
                } else {
                    let reason = message
                        .strip_prefix("verification failed: ")
                        .unwrap_or(message);
                    Flash::alert(format!(
                        "Verification of {name} failed: {}",
                        with_full_stop(&console_wording(reason))
                    ))
                }
            }
            Err(
                error @ (Error::NotFound(_)
                | Error::Hidden(_)
                | Error::Forbidden(_)
                | Error::Unauthenticated(_)),
            ) => return signed.problem(&error),
            Err(error) => Flash::alert(format!(
                "Verification of {name} could not run: {}",
                error_message(&error)
            )),
        };
    signed.redirect(&paths::credential(&workspace, &name), Some(&flash))
}

pub async fn confirm_delete(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path((workspace, name)): Path<(String, String)>,
) -> Response {
    let doing = "deleting credentials";
    match maintained(&state.app, &signed, &workspace, &name, doing).await {
        Ok(credential) => signed.page(
            StatusCode::OK,
            pages::delete_confirmation(
                &signed.shell(),
                &credential.workspace_name,
                &credential.name,
            ),
        ),
        Err(page) => page,
    }
}

pub async fn delete(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path((workspace, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = read_form(&signed, &uri, &headers, body) {
        return refused;
    }
    match credentials::delete(&state.app, &signed.principal, Some(&workspace), &name).await {
        Ok(()) => signed.redirect(
            &paths::credentials(&workspace),
            Some(&Flash::status(format!("Deleted {name}."))),
        ),
        Err(error) => signed.problem(&error),
    }
}
