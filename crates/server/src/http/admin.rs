//! Audit log and master-key endpoints.

use axum::extract::{Query, State};
use axum::Json;
use regkeeper_wire as wire;
use serde::Deserialize;

use crate::service::{audit_log, keys};

use super::auth::Caller;
use super::error::{ApiJsonOrDefault, ApiResult};
use super::{views, ApiState};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this workspace's entries (its admins may read them); without it, every
    /// entry (site administrators).
    workspace: Option<String>,
    /// At most this many entries, newest first (default 100, at most 1000).
    limit: Option<i64>,
}

/// The most recent audit entries.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = wire::AuditList), (status = 403, body = wire::ErrorBody)))]
pub async fn audit_list(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    Query(params): Query<AuditParams>,
) -> ApiResult<Json<wire::AuditList>> {
    let rows = audit_log::list(
        &state.app,
        &principal,
        params.workspace.as_deref(),
        params.limit.unwrap_or(100),
    )
    .await?;
    Ok(Json(wire::AuditList {
        entries: rows.iter().map(views::audit_entry).collect(),
    }))
}

/// Check the whole hash chain (site administrators).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = wire::AuditVerification)))]
pub async fn audit_verify(
    State(state): State<ApiState>,
    Caller(principal): Caller,
) -> ApiResult<Json<wire::AuditVerification>> {
    let check = audit_log::check_chain(&state.app, &principal).await?;
    Ok(Json(match check.broken_at {
        None => wire::AuditVerification {
            ok: true,
            entries_checked: check.checked,
            first_bad_seq: None,
            message: format!("{} entries verified; the chain is intact", check.checked),
        },
        Some((seq, problem)) => wire::AuditVerification {
            ok: false,
            entries_checked: check.checked,
            first_bad_seq: Some(seq),
            message: problem,
        },
    }))
}

/// Whether the master key is loaded, and its current version.
#[utoipa::path(get, path = "/api/v1/admin/master-key", tag = "admin",
    responses((status = 200, body = wire::KeyStatus)))]
pub async fn key_status(
    State(state): State<ApiState>,
    Caller(principal): Caller,
) -> ApiResult<Json<wire::KeyStatus>> {
    crate::service::access::require_site_admin(&principal, "reading the master key status")?;
    let mismatch = keys::key_file_mismatch_now(&state.app);
    Ok(Json(match state.app.keyring.status() {
        Ok(version) => wire::KeyStatus {
            state: "available".into(),
            current_version: Some(version),
            reason: None,
            key_file: Some(
                if mismatch.is_some() {
                    "differs"
                } else {
                    "matches"
                }
                .into(),
            ),
            key_file_problem: mismatch,
        },
        Err(reason) => wire::KeyStatus {
            state: "unavailable".into(),
            current_version: None,
            reason: Some(reason),
            key_file: None,
            key_file_problem: None,
        },
    }))
}

/// Rotate the master key online: a new version, every data key re-wrapped under it.
/// Refused (422 `master_key_unreadable_values`, naming them, nothing changed) while a
/// sealed value cannot be opened, unless `skipUnreadable`; refused (409
/// `master_key_file_changed`) while the key file differs from the loaded keys. The
/// body may be left out (no `Content-Type`): the default options.
#[utoipa::path(post, path = "/api/v1/admin/master-key/rotate", tag = "admin",
    request_body = wire::KeyRotateInput,
    responses((status = 200, body = wire::KeyRotation), (status = 409, body = wire::ErrorBody),
        (status = 422, body = wire::ErrorBody), (status = 503, body = wire::ErrorBody)))]
pub async fn key_rotate(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    ApiJsonOrDefault(input): ApiJsonOrDefault<wire::KeyRotateInput>,
) -> ApiResult<Json<wire::KeyRotation>> {
    let rotation = keys::rotate(&state.app, &principal, input.skip_unreadable).await?;
    Ok(Json(wire::KeyRotation {
        previous_version: rotation.previous_version,
        current_version: rotation.current_version,
        rewrapped: rotation.rewrapped,
        skipped: rotation.skipped,
    }))
}
