//! Audit log and master-key endpoints.

use axum::extract::{Query, State};
use axum::Json;
use regkeeper_wire as wire;
use serde::Deserialize;

use crate::service::{audit_log, keys};

use super::auth::Caller;
use super::error::{ApiJson, ApiJsonOrDefault, ApiResult};
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
    let home = state.app.key_home.get();
    let in_file = matches!(home.home, crate::store::KeyHome::File(_));
    let migration = state
        .app
        .store
        .key_migration()
        .await?
        .map(|migration| keys::migration::describe(&migration));
    let mut status = match state.app.keyring.status() {
        Ok(version) => wire::KeyStatus {
            state: "available".into(),
            current_version: Some(version),
            reason: None,
            key_file: in_file.then(|| {
                if mismatch.is_some() {
                    "differs"
                } else {
                    "matches"
                }
                .into()
            }),
            key_file_problem: mismatch,
            home: None,
            settings_mismatch: None,
            migration: None,
        },
        Err(reason) => wire::KeyStatus {
            state: "unavailable".into(),
            current_version: None,
            reason: Some(reason),
            key_file: None,
            key_file_problem: None,
            home: None,
            settings_mismatch: None,
            migration: None,
        },
    };
    status.home = Some(home.home.to_string());
    status.settings_mismatch = home.settings_mismatch;
    status.migration = migration;
    Ok(Json(status))
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

/// Move the keyring between a key file and AWS KMS online (or finish a move an
/// interrupted request began): a new master key version is generated in the new home,
/// the database switched to it, and every data key re-wrapped once under it. See
/// `service::keys::migration`.
#[utoipa::path(post, path = "/api/v1/admin/master-key/migrate", tag = "admin",
    request_body = wire::KeyMigrateInput,
    responses((status = 200, body = wire::KeyMigration), (status = 400, body = wire::ErrorBody),
        (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody),
        (status = 503, body = wire::ErrorBody)))]
pub async fn key_migrate(
    State(state): State<ApiState>,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<wire::KeyMigrateInput>,
) -> ApiResult<Json<wire::KeyMigration>> {
    let target = match (input.to_kms, input.to_file) {
        (Some(key_id), None) if !key_id.trim().is_empty() => {
            crate::store::KeyHome::Kms(key_id.trim().to_owned())
        }
        (None, Some(path)) if std::path::Path::new(&path).is_absolute() => {
            crate::store::KeyHome::File(path.into())
        }
        _ => {
            return Err(crate::domain::Error::invalid(
                "invalid_migration_target",
                "give exactly one of toKms (a KMS key id, ARN or alias) and toFile (an absolute path on the server)",
            )
            .into())
        }
    };
    let migration =
        keys::migration::migrate(&state.app, &principal, target, input.skip_unreadable).await?;
    Ok(Json(wire::KeyMigration {
        from: migration.from.to_string(),
        to: migration.to.to_string(),
        previous_version: migration.previous_version,
        current_version: migration.current_version,
        rewrapped: migration.rewrapped,
        resumed: migration.resumed,
        skipped: migration.skipped,
    }))
}
