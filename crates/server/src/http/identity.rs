//! Identity endpoints: the caller, users, workspaces, members and API tokens.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use regkeeper_wire as wire;
use secrecy::ExposeSecret;

use crate::service::{identity, users};

use super::auth::{Caller, CallerToken};
use super::error::{ApiJson, ApiResult};
use super::{views, ApiState};

/// Who the API token belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "identity", responses((status = 200, body = wire::Me)))]
pub async fn me(CallerToken(cached): CallerToken) -> ApiResult<Json<wire::Me>> {
    // Answered from the token cache: the row authentication has just checked.
    let (principal, token) = (&cached.principal, &cached.row);
    Ok(Json(wire::Me {
        personal_workspace: principal.personal_workspace(),
        role: principal.role.as_ref().map(|_| principal.user_name.clone()),
        user: principal.user_name.clone(),
        admin: principal.admin,
        token: Some(wire::MeToken {
            id: token.id.clone(),
            name: token.name.clone(),
            prefix: token.display_prefix.clone(),
            created_at: crate::clock::format_timestamp(token.created_at),
            expires_at: token.expires_at.map(crate::clock::format_timestamp),
        }),
    }))
}

/// List users (site administrators).
#[utoipa::path(get, path = "/api/v1/users", tag = "identity",
    responses((status = 200, body = wire::UserList), (status = 403, body = wire::ErrorBody)))]
pub async fn list_users(
    State(state): State<ApiState>,
    Caller(principal): Caller,
) -> ApiResult<Json<wire::UserList>> {
    let users = identity::list_users(&state.app, &principal).await?;
    Ok(Json(wire::UserList {
        users: users.iter().map(views::user).collect(),
    }))
}

/// Create a user with a personal workspace; the response holds their API token once.
#[utoipa::path(post, path = "/api/v1/users", tag = "identity", request_body = wire::UserInput,
    responses((status = 201, body = wire::UserCreated), (status = 403, body = wire::ErrorBody),
        (status = 409, body = wire::ErrorBody)))]
pub async fn create_user(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<wire::UserInput>,
) -> ApiResult<(StatusCode, Json<wire::UserCreated>)> {
    let created = identity::create_user(&state.app, &principal, &input.name, input.admin).await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::UserCreated {
            user: views::user(&created.user),
            token: wire::Sensitive::new(created.token.expose_secret()),
        }),
    ))
}

/// Workspaces the caller is a member of, with their role.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "identity",
    responses((status = 200, body = wire::WorkspaceList)))]
pub async fn list_workspaces(
    State(state): State<ApiState>,
    Caller(principal): Caller,
) -> ApiResult<Json<wire::WorkspaceList>> {
    let workspaces = identity::list_workspaces(&state.app, &principal).await?;
    Ok(Json(wire::WorkspaceList {
        workspaces: workspaces
            .iter()
            .map(|(workspace, role)| views::workspace(workspace, *role))
            .collect(),
    }))
}

/// Create an organisation workspace `ORG/NAME`; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "identity", request_body = wire::WorkspaceInput,
    responses((status = 201, body = wire::Workspace), (status = 409, body = wire::ErrorBody)))]
pub async fn create_workspace(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<wire::WorkspaceInput>,
) -> ApiResult<(StatusCode, Json<wire::Workspace>)> {
    let workspace = identity::create_workspace(&state.app, &principal, &input.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(views::workspace(
            &workspace,
            crate::domain::identity::Role::Owner,
        )),
    ))
}

/// Members of a workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/members", tag = "identity",
    params(("workspace" = String, Path)),
    responses((status = 200, body = wire::MemberList), (status = 404, body = wire::ErrorBody)))]
pub async fn list_members(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(workspace): Path<String>,
) -> ApiResult<Json<wire::MemberList>> {
    let members = identity::members(&state.app, &principal, &workspace).await?;
    Ok(Json(wire::MemberList {
        members: members.iter().map(views::member).collect(),
    }))
}

/// Add a member or change their role (admin; owner to grant or change owner).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/members/{user}", tag = "identity",
    params(("workspace" = String, Path), ("user" = String, Path)), request_body = wire::MemberInput,
    responses((status = 204), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)))]
pub async fn put_member(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, user)): Path<(String, String)>,
    ApiJson(input): ApiJson<wire::MemberInput>,
) -> ApiResult<StatusCode> {
    let role = input.role.parse()?;
    identity::put_member(&state.app, &principal, &workspace, &user, role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/members/{user}", tag = "identity",
    params(("workspace" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub async fn remove_member(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    identity::remove_member(&state.app, &principal, &workspace, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "identity",
    responses((status = 200, body = wire::ApiTokenList)))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    Caller(principal): Caller,
) -> ApiResult<Json<wire::ApiTokenList>> {
    let tokens = identity::list_tokens(&state.app, &principal).await?;
    Ok(Json(wire::ApiTokenList {
        tokens: tokens.iter().map(views::api_token).collect(),
    }))
}

/// Issue an API token for the caller; the response holds its secret once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "identity", request_body = wire::ApiTokenInput,
    responses((status = 201, body = wire::ApiTokenCreated)))]
pub async fn create_token(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<wire::ApiTokenInput>,
) -> ApiResult<(StatusCode, Json<wire::ApiTokenCreated>)> {
    let (row, secret) = identity::create_token(
        &state.app,
        &principal,
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

/// Revoke one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "identity", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    identity::revoke_token(&state.app, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable a user (site administrators): every API token of theirs is revoked, which
/// also ends their console sessions; everything else is kept.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "identity",
    params(("name" = String, Path)),
    responses((status = 200, body = wire::UserDisabled), (status = 403, body = wire::ErrorBody),
        (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub async fn disable_user(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::UserDisabled>> {
    let disabled = users::disable(&state.app, &principal, &name).await?;
    Ok(Json(wire::UserDisabled {
        user: views::user(&disabled.user),
        revoked_tokens: disabled.revoked_tokens,
        revoked_role_tokens: disabled.revoked_role_tokens,
        personal_workspace: users::kept_workspace_note(&name),
        sole_owner_of: disabled.sole_owner_of,
    }))
}

/// Enable a disabled user; the response holds their new API token once.
#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "identity",
    params(("name" = String, Path)),
    responses((status = 200, body = wire::UserCreated), (status = 403, body = wire::ErrorBody),
        (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub async fn enable_user(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::UserCreated>> {
    let (user, token) = users::enable(&state.app, &principal, &name).await?;
    Ok(Json(wire::UserCreated {
        user: views::user(&user),
        token: wire::Sensitive::new(token.expose_secret()),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteUserQuery {
    /// Must be `true`: deleting a user deletes their personal workspace too.
    #[serde(default)]
    confirm: bool,
}

/// Delete a user, their tokens and memberships, and their personal workspace with all
/// it holds (site administrators; `?confirm=true`). Refused while they are the only
/// owner of an organisation workspace.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "identity",
    params(("name" = String, Path), ("confirm" = bool, Query)),
    responses((status = 200, body = wire::UserDeleted), (status = 400, body = wire::ErrorBody),
        (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody),
        (status = 409, body = wire::ErrorBody)))]
pub async fn delete_user(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(name): Path<String>,
    Query(query): Query<DeleteUserQuery>,
) -> ApiResult<Json<wire::UserDeleted>> {
    let deleted = users::delete(&state.app, &principal, &name, query.confirm).await?;
    Ok(Json(wire::UserDeleted {
        name,
        personal_workspace: deleted.personal_workspace,
        deleted_credentials: deleted.credentials,
        deleted_roles: deleted.roles,
        revoked_tokens: deleted.revoked_tokens,
        revoked_role_tokens: deleted.revoked_role_tokens,
    }))
}

/// Any user's API tokens (site administrators; never their secrets).
#[utoipa::path(get, path = "/api/v1/users/{name}/tokens", tag = "identity",
    params(("name" = String, Path)),
    responses((status = 200, body = wire::ApiTokenList), (status = 403, body = wire::ErrorBody),
        (status = 404, body = wire::ErrorBody)))]
pub async fn list_user_tokens(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::ApiTokenList>> {
    let tokens = users::tokens(&state.app, &principal, &name).await?;
    Ok(Json(wire::ApiTokenList {
        tokens: tokens.iter().map(views::api_token).collect(),
    }))
}

/// Revoke any user's API token (site administrators).
#[utoipa::path(delete, path = "/api/v1/users/{name}/tokens/{id}", tag = "identity",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)))]
pub async fn revoke_user_token(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    users::revoke_token(&state.app, &principal, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
