//! Workload roles, their grants into other workspaces (in force only while the granter
//! still administers the workspace and is not disabled), their trusts (issue 13), and
//! the tokens issued by exchanges under those trusts.

use super::audit_log::{change_one_audited, commit_audited, commit_audited_if};
use super::backend::{Backend, RowsAffected as _};
use super::errors::{conflict_or, OrDatabase};
use super::identity::insert_token_in;
use super::sql::{execute_alone, execute_in, SqlStore};
use crate::audit::AuditRecord;
use crate::domain::credential::Timestamp;
use crate::domain::{Error, Result};
use crate::store::{ApiTokenRow, RoleGrantRow, RoleRow, TrustRow};

/// A role's columns as [`RoleRecord`] reads them, from `workload_roles r` joined with
/// its workspace `rw`.
pub(super) const ROLE_COLUMNS: &str = "r.id AS role_id, r.workspace_id AS role_workspace_id, \
    rw.name AS role_workspace_name, r.name AS role_name, r.description AS role_description, \
    r.policy AS role_policy, r.revision AS role_revision, r.created_at AS role_created_at, \
    r.updated_at AS role_updated_at, r.created_by AS role_created_by";

/// Whether the grant's granter still administers the granted workspace and is not
/// disabled: the condition under which the grant was made, checked on every read.
const GRANT_IN_FORCE: &str = "EXISTS (SELECT 1 FROM memberships m \
    JOIN users u ON u.id = m.user_id WHERE m.workspace_id = g.workspace_id \
    AND m.user_id = g.granted_by_user_id AND m.role IN ('owner', 'admin') \
    AND u.disabled_at IS NULL)";

const TRUST_COLUMNS: &str = "id, role_id, issuer, audience, subject, claims, \
    max_session_seconds, created_at, created_by";

#[derive(sqlx::FromRow)]
pub(super) struct RoleRecord {
    role_id: String,
    role_workspace_id: String,
    role_workspace_name: String,
    role_name: String,
    role_description: String,
    role_policy: String,
    role_revision: i64,
    role_created_at: i64,
    role_updated_at: i64,
    role_created_by: String,
}

impl From<RoleRecord> for RoleRow {
    fn from(record: RoleRecord) -> Self {
        RoleRow {
            id: record.role_id,
            workspace_id: record.role_workspace_id,
            workspace_name: record.role_workspace_name,
            name: record.role_name,
            description: record.role_description,
            policy: record.role_policy,
            revision: record.role_revision,
            created_at: record.role_created_at,
            updated_at: record.role_updated_at,
            created_by: record.role_created_by,
        }
    }
}

#[derive(sqlx::FromRow)]
struct GrantRecord {
    id: String,
    workspace_id: String,
    role_id: String,
    role_workspace_name: String,
    role_name: String,
    granted_by_user_id: String,
    granted_by: String,
    granted_at: i64,
    in_force: i64,
}

impl From<GrantRecord> for RoleGrantRow {
    fn from(record: GrantRecord) -> Self {
        RoleGrantRow {
            id: record.id,
            workspace_id: record.workspace_id,
            role_id: record.role_id,
            role_workspace_name: record.role_workspace_name,
            role_name: record.role_name,
            granted_by_user_id: record.granted_by_user_id,
            granted_by: record.granted_by,
            granted_at: record.granted_at,
            in_force: record.in_force == 1,
        }
    }
}

#[derive(sqlx::FromRow)]
struct TrustRecord {
    id: String,
    role_id: String,
    issuer: String,
    audience: String,
    subject: String,
    claims: String,
    max_session_seconds: i64,
    created_at: i64,
    created_by: String,
}

impl From<TrustRecord> for TrustRow {
    fn from(record: TrustRecord) -> Self {
        TrustRow {
            id: record.id,
            role_id: record.role_id,
            issuer: record.issuer,
            audience: record.audience,
            subject: record.subject,
            claims: record.claims,
            max_session_seconds: record.max_session_seconds,
            created_at: record.created_at,
            created_by: record.created_by,
        }
    }
}

pub(super) async fn create_role<DB: Backend>(
    store: &SqlStore<DB>,
    role: &RoleRow,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO workload_roles (id, workspace_id, name, description, policy, \
         revision, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&role.id)
    .bind(&role.workspace_id)
    .bind(&role.name)
    .bind(&role.description)
    .bind(&role.policy)
    .bind(role.revision)
    .bind(role.created_at)
    .bind(role.updated_at)
    .bind(&role.created_by)
    .execute(&mut *transaction)
    .await
    .map_err(|error| {
        conflict_or(
            error,
            "role_exists",
            format!(
                "a role named {} already exists in {}",
                role.name, role.workspace_name
            ),
        )
    })?;
    commit_audited(transaction, audit).await
}

pub(super) async fn role<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    name: &str,
) -> Result<Option<RoleRow>> {
    let role: Option<RoleRecord> = sqlx::query_as(&format!(
        "SELECT {ROLE_COLUMNS} FROM workload_roles r \
         JOIN workspaces rw ON rw.id = r.workspace_id \
         WHERE r.workspace_id = $1 AND r.name = $2",
    ))
    .bind(workspace_id)
    .bind(name)
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    Ok(role.map(RoleRow::from))
}

pub(super) async fn roles<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
) -> Result<Vec<RoleRow>> {
    let roles: Vec<RoleRecord> = sqlx::query_as(&format!(
        "SELECT {ROLE_COLUMNS} FROM workload_roles r \
         JOIN workspaces rw ON rw.id = r.workspace_id \
         WHERE r.workspace_id = $1 ORDER BY r.name",
    ))
    .bind(workspace_id)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    Ok(roles.into_iter().map(RoleRow::from).collect())
}

pub(super) async fn all_roles<DB: Backend>(store: &SqlStore<DB>) -> Result<Vec<RoleRow>> {
    let roles: Vec<RoleRecord> = sqlx::query_as(&format!(
        "SELECT {ROLE_COLUMNS} FROM workload_roles r \
         JOIN workspaces rw ON rw.id = r.workspace_id ORDER BY rw.name, r.name",
    ))
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    Ok(roles.into_iter().map(RoleRow::from).collect())
}

pub(super) async fn update_role<DB: Backend>(
    store: &SqlStore<DB>,
    role: &RoleRow,
    expected_revision: i64,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    let updated = sqlx::query(
        "UPDATE workload_roles SET description = $1, policy = $2, revision = $3, \
         updated_at = $4 WHERE id = $5 AND revision = $6",
    )
    .bind(&role.description)
    .bind(&role.policy)
    .bind(role.revision)
    .bind(role.updated_at)
    .bind(&role.id)
    .bind(expected_revision)
    .execute(&mut *transaction)
    .await
    .or_db()?
    .rows_affected();
    if updated != 1 {
        return Err(Error::conflict(
            "concurrent_update",
            format!(
                "role {} was changed or deleted meanwhile; read it again and retry",
                role.name
            ),
        ));
    }
    commit_audited(transaction, audit).await
}

/// Deletes the role and, first, every token issued to it.
pub(super) async fn delete_role<DB: Backend>(
    store: &SqlStore<DB>,
    role_id: &str,
    audit: AuditRecord,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    // Tokens go first and explicitly, so no backend's foreign-key setting decides
    // whether a deleted role's tokens still authenticate.
    execute_in(
        &mut transaction,
        "DELETE FROM api_tokens WHERE role_id = $1",
        &[role_id],
    )
    .await?;
    let deleted = execute_in(
        &mut transaction,
        "DELETE FROM workload_roles WHERE id = $1",
        &[role_id],
    )
    .await?
        == 1;
    commit_audited_if(transaction, deleted, audit).await
}

pub(super) async fn put_role_grant<DB: Backend>(
    store: &SqlStore<DB>,
    grant: &RoleGrantRow,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO role_grants (id, workspace_id, role_id, granted_by_user_id, \
         granted_by, granted_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (workspace_id, role_id) DO UPDATE SET \
         granted_by_user_id = excluded.granted_by_user_id, \
         granted_by = excluded.granted_by, granted_at = excluded.granted_at",
    )
    .bind(&grant.id)
    .bind(&grant.workspace_id)
    .bind(&grant.role_id)
    .bind(&grant.granted_by_user_id)
    .bind(&grant.granted_by)
    .bind(grant.granted_at)
    .execute(&mut *transaction)
    .await
    .or_db()?;
    commit_audited(transaction, audit).await
}

pub(super) async fn delete_role_grant<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    role_id: &str,
    audit: AuditRecord,
) -> Result<bool> {
    change_one_audited(
        store,
        "DELETE FROM role_grants WHERE workspace_id = $1 AND role_id = $2",
        &[workspace_id, role_id],
        audit,
    )
    .await
}

pub(super) async fn role_grants<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
) -> Result<Vec<RoleGrantRow>> {
    let grants: Vec<GrantRecord> = sqlx::query_as(&format!(
        "SELECT g.id, g.workspace_id, g.role_id, rw.name AS role_workspace_name, \
         r.name AS role_name, g.granted_by_user_id, g.granted_by, g.granted_at, \
         CAST(CASE WHEN {GRANT_IN_FORCE} THEN 1 ELSE 0 END AS BIGINT) AS in_force \
         FROM role_grants g \
         JOIN workload_roles r ON r.id = g.role_id \
         JOIN workspaces rw ON rw.id = r.workspace_id \
         WHERE g.workspace_id = $1 ORDER BY rw.name, r.name",
    ))
    .bind(workspace_id)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    Ok(grants.into_iter().map(RoleGrantRow::from).collect())
}

pub(super) async fn role_grant_in_force<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    role_id: &str,
) -> Result<bool> {
    let found = sqlx::query(&format!(
        "SELECT 1 AS found FROM role_grants g WHERE g.workspace_id = $1 \
         AND g.role_id = $2 AND {GRANT_IN_FORCE}",
    ))
    .bind(workspace_id)
    .bind(role_id)
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    Ok(found.is_some())
}

pub(super) async fn insert_trust<DB: Backend>(
    store: &SqlStore<DB>,
    trust: &TrustRow,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    sqlx::query(&format!(
        "INSERT INTO role_trusts ({TRUST_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&trust.id)
    .bind(&trust.role_id)
    .bind(&trust.issuer)
    .bind(&trust.audience)
    .bind(&trust.subject)
    .bind(&trust.claims)
    .bind(trust.max_session_seconds)
    .bind(trust.created_at)
    .bind(&trust.created_by)
    .execute(&mut *transaction)
    .await
    .or_db()?;
    commit_audited(transaction, audit).await
}

pub(super) async fn trusts<DB: Backend>(
    store: &SqlStore<DB>,
    role_id: &str,
) -> Result<Vec<TrustRow>> {
    let trusts: Vec<TrustRecord> = sqlx::query_as(&format!(
        "SELECT {TRUST_COLUMNS} FROM role_trusts WHERE role_id = $1 \
         ORDER BY created_at, id"
    ))
    .bind(role_id)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    Ok(trusts.into_iter().map(TrustRow::from).collect())
}

/// Deletes one of the role's trusts and, first, every token exchanged under it.
pub(super) async fn delete_trust<DB: Backend>(
    store: &SqlStore<DB>,
    role_id: &str,
    trust_id: &str,
    audit: AuditRecord,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    // Tokens first and explicitly, as `delete_role` does: no backend's foreign-key
    // setting decides whether they still authenticate.
    execute_in(
        &mut transaction,
        "DELETE FROM api_tokens WHERE trust_id = $1 AND role_id = $2",
        &[trust_id, role_id],
    )
    .await?;
    let deleted = execute_in(
        &mut transaction,
        "DELETE FROM role_trusts WHERE id = $1 AND role_id = $2",
        &[trust_id, role_id],
    )
    .await?
        == 1;
    commit_audited_if(transaction, deleted, audit).await
}

pub(super) async fn insert_exchanged_token<DB: Backend>(
    store: &SqlStore<DB>,
    token: &ApiTokenRow,
    trust_id: &str,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    insert_token_in(&mut transaction, token, Some(trust_id)).await?;
    commit_audited(transaction, audit).await
}

pub(super) async fn prune_exchanged_tokens<DB: Backend>(
    store: &SqlStore<DB>,
    now: Timestamp,
    limit: i64,
) -> Result<u64> {
    let prune = sqlx::query(
        "DELETE FROM api_tokens WHERE id IN (SELECT id FROM api_tokens \
         WHERE trust_id IS NOT NULL AND expires_at <= $1 LIMIT $2)",
    )
    .bind(now)
    .bind(limit);
    execute_alone(store, prune).await
}
