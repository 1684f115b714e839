//! Sync-target endpoints:
//! `/api/v1/workspaces/{workspace}/credentials/{name}/sync-targets[/{id}[/sync]]`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use regkeeper_wire as wire;
use secrecy::ExposeSecret;

use crate::clock::format_timestamp;
use crate::domain::sync_target::{SyncDestination, SyncStatus, SyncTarget};
use crate::service::sync_targets;

use super::auth::Caller;
use super::error::{ApiJson, ApiResult};
use super::ApiState;

/// A target as the API shows it: where it delivers and how that goes, never what.
pub fn view(target: &SyncTarget) -> wire::SyncTarget {
    let (path, namespaces, secret_name, url) = match &target.destination {
        SyncDestination::File { path } => (Some(path.clone()), Vec::new(), None, None),
        SyncDestination::Kubernetes {
            namespaces,
            secret_name,
        } => (None, namespaces.clone(), Some(secret_name.clone()), None),
        SyncDestination::Webhook { url } => (None, Vec::new(), None, Some(url.clone())),
        SyncDestination::AwsSecret(_) => (None, Vec::new(), None, None),
    };
    let aws = match &target.destination {
        SyncDestination::AwsSecret(secret) => Some(secret),
        _ => None,
    };
    // A delivered target whose credential changed since is waiting for its push.
    let status = match target.status {
        SyncStatus::Ok if target.behind => SyncStatus::Pending,
        status => status,
    };
    wire::SyncTarget {
        id: target.id.clone(),
        credential: target.credential_name.clone(),
        workspace: target.workspace_name.clone(),
        kind: target.destination.kind().as_str().to_owned(),
        destination: target.destination.summary(),
        path,
        namespaces,
        secret_name,
        url,
        aws_secret: aws.map(|secret| secret.secret_id.clone()),
        aws_region: aws.and_then(|secret| secret.region.clone()),
        aws_identity: aws.map(|secret| secret.identity_name.clone()),
        adopt: aws.is_some_and(|secret| secret.adopt),
        has_signing_key: target.signing_key.is_some(),
        status: status.as_str().to_owned(),
        failures: target.failures,
        last_error: target.last_error.clone(),
        last_synced_at: target.last_synced_at.map(format_timestamp),
        last_attempt_at: target.last_attempt_at.map(format_timestamp),
        next_attempt_at: target.next_attempt_at.map(format_timestamp),
        created_at: format_timestamp(target.created_at),
        created_by: target.created_by.clone(),
    }
}

/// List a credential's sync targets with their status.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/credentials/{name}/sync-targets", tag = "sync",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = wire::SyncTargetList), (status = 404, body = wire::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
) -> ApiResult<Json<wire::SyncTargetList>> {
    let targets = sync_targets::list(&state.app, &principal, Some(&workspace), &name).await?;
    Ok(Json(wire::SyncTargetList {
        targets: targets.iter().map(view).collect(),
    }))
}

/// Add a sync target (needs maintain) and push to it once. A generated webhook signing
/// key is in this answer only.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/credentials/{name}/sync-targets", tag = "sync",
    params(("workspace" = String, Path), ("name" = String, Path)),
    request_body = wire::SyncTargetInput,
    responses((status = 201, body = wire::SyncTargetCreated), (status = 400, body = wire::ErrorBody),
        (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody),
        (status = 422, body = wire::ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<wire::SyncTargetInput>,
) -> ApiResult<(StatusCode, Json<wire::SyncTargetCreated>)> {
    let created =
        sync_targets::create(&state.app, &principal, Some(&workspace), &name, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::SyncTargetCreated {
            target: view(&created.target),
            signing_key: created
                .signing_key
                .as_ref()
                .map(|key| wire::Sensitive::new(key.expose_secret())),
        }),
    ))
}

/// Remove a sync target. What it delivered is left in place.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/credentials/{name}/sync-targets/{id}", tag = "sync",
    params(("workspace" = String, Path), ("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    sync_targets::delete(&state.app, &principal, Some(&workspace), &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Push to a sync target now. A failed push answers 200 with the target `failing`.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/credentials/{name}/sync-targets/{id}/sync", tag = "sync",
    params(("workspace" = String, Path), ("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = wire::SyncTarget), (status = 404, body = wire::ErrorBody),
        (status = 409, body = wire::ErrorBody)))]
pub async fn run(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Path((workspace, name, id)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::SyncTarget>> {
    let target = sync_targets::run(&state.app, &principal, Some(&workspace), &name, &id).await?;
    Ok(Json(view(&target)))
}
