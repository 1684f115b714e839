//! Workload role endpoints: roles, their policies and their API tokens. Every one
//! needs the admin role in the role's workspace.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use regkeeper_wire as wire;
use secrecy::ExposeSecret;

use crate::domain::policy::Decision;
use crate::domain::Error;
use crate::service::{grants, roles};

use super::auth::Caller;
use super::error::{ApiJson, ApiResult, UniqueKeysJson};
use super::{views, ApiState};

/// The workload roles of a workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/roles", tag = "roles",
    params(("workspace" = String, Path)),
    responses((status = 200, body = wire::RoleList), (status = 404, body = wire::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
) -> ApiResult<Json<wire::RoleList>> {
    let found = roles::list(&state.app, &principal, &workspace).await?;
    Ok(Json(wire::RoleList {
        roles: found.iter().map(views::role).collect(),
    }))
}

/// Create a workload role with its policy.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/roles", tag = "roles",
    params(("workspace" = String, Path)), request_body = wire::RoleInput,
    responses((status = 201, body = wire::Role), (status = 400, body = wire::ErrorBody),
        (status = 403, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody),
        (status = 422, body = wire::ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
    UniqueKeysJson(input): UniqueKeysJson<wire::RoleInput>,
) -> ApiResult<(StatusCode, Json<wire::Role>)> {
    let name = input
        .name
        .ok_or_else(|| Error::invalid("missing_name", "a role needs a name"))?;
    let policy = input
        .policy
        .ok_or_else(|| Error::invalid("missing_policy", "a role needs a policy document"))?;
    let created = roles::create(
        &state.app,
        &principal,
        &workspace,
        &name,
        input.description.as_deref().unwrap_or_default(),
        &policy,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(views::role(&created))))
}

/// One workload role.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/roles/{name}", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = wire::Role), (status = 404, body = wire::ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
) -> ApiResult<Json<wire::Role>> {
    let found = roles::show(&state.app, &principal, &workspace, &name).await?;
    Ok(Json(views::role(&found)))
}

/// Change a role's description or replace its policy.
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/roles/{name}", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = wire::RoleInput,
    responses((status = 200, body = wire::Role), (status = 404, body = wire::ErrorBody),
        (status = 409, body = wire::ErrorBody)))]
pub async fn update(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    UniqueKeysJson(input): UniqueKeysJson<wire::RoleInput>,
) -> ApiResult<Json<wire::Role>> {
    if input.name.as_deref().is_some_and(|new| new != name) {
        return Err(Error::invalid(
            "rename_unsupported",
            "a role cannot be renamed: its name is part of its reference; create a new role",
        )
        .into());
    }
    let updated = roles::update(
        &state.app,
        &principal,
        &workspace,
        &name,
        input.description.as_deref(),
        input.policy.as_ref(),
    )
    .await?;
    Ok(Json(views::role(&updated)))
}

/// Delete a role and every token issued to it.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/roles/{name}", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    roles::delete(&state.app, &principal, &workspace, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The API tokens issued to a role (never their secrets).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/roles/{name}/tokens", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = wire::ApiTokenList), (status = 404, body = wire::ErrorBody)))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
) -> ApiResult<Json<wire::ApiTokenList>> {
    let tokens = roles::list_tokens(&state.app, &principal, &workspace, &name).await?;
    Ok(Json(wire::ApiTokenList {
        tokens: tokens.iter().map(views::api_token).collect(),
    }))
}

/// Issue an API token to a role; the response holds its secret once.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/roles/{name}/tokens", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = wire::ApiTokenInput,
    responses((status = 201, body = wire::ApiTokenCreated), (status = 404, body = wire::ErrorBody)))]
pub async fn create_token(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<wire::ApiTokenInput>,
) -> ApiResult<(StatusCode, Json<wire::ApiTokenCreated>)> {
    let (row, secret) = roles::create_token(
        &state.app,
        &principal,
        &workspace,
        &name,
        &input.name,
        input.expires_in_seconds,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::ApiTokenCreated {
            token: views::api_token(&row),
            secret: wire::Sensitive::new(secret.expose_secret()),
        }),
    ))
}

/// Revoke a token of a role.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/roles/{name}/tokens/{id}", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    roles::revoke_token(&state.app, &principal, &workspace, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How the role's policy decides one action on one credential, without doing it.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/roles/{name}/simulate", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = wire::SimulationInput,
    responses((status = 200, body = wire::Simulation), (status = 404, body = wire::ErrorBody)))]
pub async fn simulate(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<wire::SimulationInput>,
) -> ApiResult<Json<wire::Simulation>> {
    let result = roles::simulate(
        &state.app,
        &principal,
        &workspace,
        &name,
        &input.action,
        &input.reference,
    )
    .await?;
    let (decision, statement) = match result.decision {
        Decision::Allow { statement } => ("allow", Some(statement)),
        Decision::ExplicitDeny { statement } => ("explicit_deny", Some(statement)),
        Decision::ImplicitDeny => ("implicit_deny", None),
    };
    Ok(Json(wire::Simulation {
        decision: decision.to_owned(),
        reference: result.reference,
        exists: result.exists,
        statement,
        sid: result.sid,
        grant_in_force: result.grant_in_force,
    }))
}

/// Every workload role of another workspace whose policy reaches this one, or that holds
/// a grant here, with the grant's state (admins of this workspace).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/role-grants", tag = "roles",
    params(("workspace" = String, Path)),
    responses((status = 200, body = wire::RoleGrantList), (status = 403, body = wire::ErrorBody),
        (status = 404, body = wire::ErrorBody)))]
pub async fn list_grants(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
) -> ApiResult<Json<wire::RoleGrantList>> {
    let found = grants::list(&state.app, &principal, &workspace).await?;
    Ok(Json(wire::RoleGrantList {
        grants: found.iter().map(views::role_grant).collect(),
    }))
}

/// Grant a workload role of another workspace access here, as far as its policy
/// reaches (admins of this workspace). Granting again renews the grant as the caller.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/role-grants", tag = "roles",
    params(("workspace" = String, Path)), request_body = wire::RoleGrantInput,
    responses((status = 204), (status = 400, body = wire::ErrorBody),
        (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)))]
pub async fn add_grant(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
    ApiJson(input): ApiJson<wire::RoleGrantInput>,
) -> ApiResult<StatusCode> {
    grants::add(&state.app, &principal, &workspace, &input.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke an outside role's grant here: it stops reaching this workspace at once.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/role-grants/{role}", tag = "roles",
    params(("workspace" = String, Path), ("role" = String, Path, description = "rk:WS:role/NAME, percent-encoded")),
    responses((status = 204), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)))]
pub async fn revoke_grant(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, role)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    grants::revoke(&state.app, &principal, &workspace, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}
