//! Identity federation endpoints (issue 13): the trusts of workload roles (workspace
//! admins only) and the unauthenticated OIDC token exchange, whose refusals are all one
//! 401 `oidc_token_rejected` naming the failed check.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use regkeeper_wire as wire;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::format_timestamp;
use crate::domain::policy::role_reference;
use crate::domain::trust::Trust;
use crate::service::oidc::{self, ExchangeError};
use crate::service::trusts::{self, TrustView};
use crate::store::RoleRow;

use super::auth::Caller;
use super::error::{error_response, ApiError, ApiJson, ApiResult};
use super::ApiState;

fn trust_view(role: &RoleRow, trust: &TrustView) -> wire::Trust {
    let row = &trust.row;
    wire::Trust {
        id: row.id.clone(),
        role: role_reference(&role.workspace_name, &role.name),
        issuer: row.issuer.clone(),
        audience: row.audience.clone(),
        subject: row.subject.clone(),
        claims: trust.claims.clone(),
        max_session_seconds: row.max_session_seconds,
        created_at: format_timestamp(row.created_at),
        created_by: row.created_by.clone(),
    }
}

/// The OIDC identity providers a role trusts.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/roles/{name}/trusts", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = wire::TrustList), (status = 404, body = wire::ErrorBody)))]
pub async fn list_trusts(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
) -> ApiResult<Json<wire::TrustList>> {
    let (role, found) = trusts::list(&state.app, &principal, &workspace, &name).await?;
    Ok(Json(wire::TrustList {
        trusts: found.iter().map(|trust| trust_view(&role, trust)).collect(),
    }))
}

/// Trust an OIDC identity provider: its tokens whose audience, subject and claims
/// match may be exchanged for the role's API tokens.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/roles/{name}/trusts", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = wire::TrustInput,
    responses((status = 201, body = wire::Trust), (status = 400, body = wire::ErrorBody),
        (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)))]
pub async fn add_trust(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<wire::TrustInput>,
) -> ApiResult<(StatusCode, Json<wire::Trust>)> {
    let trust = Trust::new(
        &input.issuer,
        &input.audience,
        &input.subject,
        input.claims,
        input.max_session_seconds,
    )?;
    let (role, added) = trusts::add(&state.app, &principal, &workspace, &name, trust).await?;
    Ok((StatusCode::CREATED, Json(trust_view(&role, &added))))
}

/// Remove a trust; the tokens exchanged under it stop working at once.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/roles/{name}/trusts/{id}", tag = "roles",
    params(("workspace" = String, Path), ("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub async fn remove_trust(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    trusts::remove(&state.app, &principal, &workspace, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Exchange an OIDC token (a CI job's or a pod's) for an API token of a role that
/// trusts its issuer. Needs no other authentication.
#[utoipa::path(post, path = "/api/v1/oidc/exchange", tag = "oidc",
    request_body = wire::ExchangeInput, security(()),
    responses((status = 200, body = wire::Exchanged), (status = 400, body = wire::ErrorBody),
        (status = 401, body = wire::ErrorBody), (status = 502, body = wire::ErrorBody)))]
pub async fn exchange(
    State(state): State<ApiState>,
    ApiJson(input): ApiJson<wire::ExchangeInput>,
) -> Response {
    let jwt = SecretString::from(input.token.expose().to_owned());
    match oidc::exchange(&state.app, &input.role, &jwt).await {
        Ok(exchanged) => Json(wire::Exchanged {
            token: wire::Sensitive::new(exchanged.token.expose_secret()),
            expires_at: format_timestamp(exchanged.expires_at),
        })
        .into_response(),
        Err(rejected @ ExchangeError::Rejected(_)) => error_response(
            StatusCode::UNAUTHORIZED,
            "oidc_token_rejected",
            rejected.to_string(),
        ),
        Err(ExchangeError::Other(error)) => ApiError(error).into_response(),
    }
}
