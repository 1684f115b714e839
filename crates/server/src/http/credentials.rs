//! Credential endpoints: `/api/v1/workspaces/{workspace}/credentials[/{name}]`. The
//! workspace is one path segment, so `acme/ci` travels as `acme%2Fci`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use regkeeper_wire as wire;

use crate::domain::credential::CredentialOrigin;
use crate::service::credentials;

use super::auth::Caller;
use super::error::{ApiJson, ApiResult};
use super::{views, ApiState};

/// List a workspace's credentials (metadata only).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/credentials", tag = "credentials",
    params(("workspace" = String, Path, description = "`ORG/NAME` or `~USER`, URL-encoded")),
    responses((status = 200, body = wire::CredentialList), (status = 404, body = wire::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
) -> ApiResult<Json<wire::CredentialList>> {
    let found = credentials::list(&state.app, &principal, Some(&workspace)).await?;
    Ok(Json(wire::CredentialList {
        credentials: found.iter().map(views::credential).collect(),
    }))
}

/// Store a credential. Needs the maintain role.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/credentials", tag = "credentials",
    params(("workspace" = String, Path, description = "`ORG/NAME` or `~USER`, URL-encoded")),
    request_body = wire::CredentialInput,
    responses((status = 201, body = wire::Credential), (status = 400, body = wire::ErrorBody),
        (status = 403, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody),
        (status = 422, body = wire::ErrorBody), (status = 503, body = wire::ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
    ApiJson(input): ApiJson<wire::CredentialInput>,
) -> ApiResult<(StatusCode, Json<wire::Credential>)> {
    let created = credentials::create(&state.app, &principal, Some(&workspace), input).await?;
    Ok((StatusCode::CREATED, Json(views::credential(&created))))
}

/// Show one credential (metadata only).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/credentials/{name}", tag = "credentials",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = wire::Credential), (status = 404, body = wire::ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
) -> ApiResult<Json<wire::Credential>> {
    let found = credentials::show(&state.app, &principal, Some(&workspace), &name).await?;
    Ok(Json(views::credential(&found)))
}

/// Change some fields of a credential; a given password replaces the secret.
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/credentials/{name}", tag = "credentials",
    params(("workspace" = String, Path), ("name" = String, Path)),
    request_body = wire::CredentialInput,
    responses((status = 200, body = wire::Credential), (status = 404, body = wire::ErrorBody),
        (status = 409, body = wire::ErrorBody)))]
pub async fn update(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<wire::CredentialInput>,
) -> ApiResult<Json<wire::Credential>> {
    let updated =
        credentials::update(&state.app, &principal, Some(&workspace), &name, input).await?;
    Ok(Json(views::credential(&updated)))
}

#[derive(serde::Deserialize)]
pub struct DeleteParams {
    origin: Option<String>,
}

/// Delete a credential; with `?origin=helper` (what the docker credential helper's
/// `erase` sends) only if the docker credential helper created it.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/credentials/{name}", tag = "credentials",
    params(("workspace" = String, Path), ("name" = String, Path),
        ("origin" = Option<String>, Query, description = "`user` or `helper`: delete only a credential of this origin (else 409 `origin_mismatch`)")),
    responses((status = 204), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    Query(params): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    let origin = params
        .origin
        .as_deref()
        .map(CredentialOrigin::parse_requested)
        .transpose()?;
    credentials::delete_if_origin(&state.app, &principal, Some(&workspace), &name, origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Log in to the registry with a stored credential and record the result.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/credentials/{name}/verify", tag = "credentials",
    params(("workspace" = String, Path), ("name" = String, Path)),
    request_body = wire::VerifyInput,
    responses((status = 200, body = wire::Credential), (status = 404, body = wire::ErrorBody),
        (status = 503, body = wire::ErrorBody)))]
pub async fn verify(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<wire::VerifyInput>,
) -> ApiResult<Json<wire::Credential>> {
    let verified = crate::service::login_check::verify_with(
        &state.app,
        &principal,
        Some(&workspace),
        &name,
        crate::registry_auth::VerifyRequest {
            repository: input.repository.as_deref(),
            check_push: input.check_push.unwrap_or(false),
        },
    )
    .await?;
    Ok(Json(views::credential(&verified)))
}

/// Working registry credentials from the credential a reference names, else the best
/// match for an image (registry host, then longest path prefix) or a registry. Needs
/// the launch role, or a workload role whose policy allows `credentials:Resolve`.
/// With `"explain": true`, a `ResolveExplanation` instead: the candidates, the one
/// chosen and why, without a secret.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/resolve", tag = "credentials",
    params(("workspace" = String, Path)),
    request_body = wire::ResolveInput,
    responses((status = 200, body = wire::ResolveAnswer), (status = 404, body = wire::ErrorBody),
        (status = 502, body = wire::ErrorBody)))]
pub async fn resolve(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
    ApiJson(input): ApiJson<wire::ResolveInput>,
) -> ApiResult<Json<wire::ResolveAnswer>> {
    resolve_in(&state, &principal, Some(&workspace), &input).await
}

/// Like the workspace's resolve, in the caller's own workspace (the personal one, or a
/// workload role's): one request for consumers such as the credential helper.
#[utoipa::path(post, path = "/api/v1/resolve", tag = "credentials",
    request_body = wire::ResolveInput,
    responses((status = 200, body = wire::ResolveAnswer), (status = 404, body = wire::ErrorBody),
        (status = 502, body = wire::ErrorBody)))]
pub async fn resolve_default(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<wire::ResolveInput>,
) -> ApiResult<Json<wire::ResolveAnswer>> {
    resolve_in(&state, &principal, None, &input).await
}

async fn resolve_in(
    state: &ApiState,
    principal: &crate::domain::identity::Principal,
    workspace: Option<&str>,
    input: &wire::ResolveInput,
) -> ApiResult<Json<wire::ResolveAnswer>> {
    let request = crate::service::resolve::Request {
        image: input.image.as_deref(),
        registry: input.registry.as_deref(),
        reference: input.reference.as_deref(),
    };
    if input.explain {
        let explanation =
            crate::service::resolve::explain(&state.app, principal, workspace, request).await?;
        return Ok(Json(wire::ResolveAnswer::Explained(
            views::resolve_explanation(&explanation),
        )));
    }
    let resolution =
        crate::service::resolve::resolve(&state.app, principal, workspace, request).await?;
    Ok(Json(wire::ResolveAnswer::Resolved(views::resolved(
        &resolution,
        state.app.now(),
    ))))
}
