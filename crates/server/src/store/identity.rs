//! Who may act: users (and their lifecycle: disable, enable, delete), workspaces and
//! their members, and API tokens, stored as the SHA-256 of the token only.

use sqlx::FromRow as _;

use super::audit_log::{change_one_audited, commit_audited, commit_audited_if};
use super::backend::{Backend, RowsAffected as _};
use super::errors::{conflict_or, OrDatabase};
use super::roles::{RoleRecord, ROLE_COLUMNS};
use super::sql::{execute_in, SqlStore, Transaction};
use crate::audit::AuditRecord;
use crate::domain::credential::Timestamp;
use crate::domain::identity::{Role, WorkspaceKind};
use crate::domain::{Error, Result};
use crate::store::{
    ApiTokenRow, MemberRow, NewUser, RoleRow, TokenOwner, TokenSubject, UserRow, WorkspaceRow,
};

/// The columns of an API token as [`ApiTokenRecord`] reads them, and their table.
const API_TOKEN_SELECT: &str = "SELECT id, user_id, role_id, name, token_hash, display_prefix, \
    created_at, expires_at, revoked_at, last_used_at, created_by AS token_created_by \
    FROM api_tokens";

#[derive(sqlx::FromRow)]
struct UserRecord {
    id: String,
    name: String,
    is_admin: bool,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl From<UserRecord> for UserRow {
    fn from(record: UserRecord) -> Self {
        UserRow {
            id: record.id,
            name: record.name,
            admin: record.is_admin,
            created_at: record.created_at,
            disabled_at: record.disabled_at,
        }
    }
}

/// The user columns that [`api_token_by_hash`] joins to a user's token.
#[derive(sqlx::FromRow)]
struct TokenUserRecord {
    user_name: String,
    is_admin: bool,
    user_created_at: i64,
    user_disabled_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct WorkspaceRecord {
    id: String,
    name: String,
    kind: String,
    created_at: i64,
}

impl TryFrom<WorkspaceRecord> for WorkspaceRow {
    type Error = Error;

    fn try_from(record: WorkspaceRecord) -> Result<Self> {
        Ok(WorkspaceRow {
            kind: WorkspaceKind::parse(&record.kind)?,
            id: record.id,
            name: record.name,
            created_at: record.created_at,
        })
    }
}

/// A workspace with the role a user holds in it.
#[derive(sqlx::FromRow)]
struct MembershipRecord {
    #[sqlx(flatten)]
    workspace: WorkspaceRecord,
    role: String,
}

#[derive(sqlx::FromRow)]
struct MemberRecord {
    name: String,
    role: String,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct ApiTokenRecord {
    id: String,
    user_id: Option<String>,
    role_id: Option<String>,
    name: String,
    token_hash: String,
    display_prefix: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    token_created_by: Option<String>,
}

impl TryFrom<ApiTokenRecord> for ApiTokenRow {
    type Error = Error;

    fn try_from(record: ApiTokenRecord) -> Result<Self> {
        let owner = match (record.user_id, record.role_id) {
            (Some(user_id), None) => TokenOwner::User(user_id),
            (None, Some(role_id)) => TokenOwner::Role(role_id),
            _ => return Err(Error::internal("an API token has no single owner")),
        };
        Ok(ApiTokenRow {
            id: record.id,
            owner,
            name: record.name,
            token_hash: record.token_hash,
            display_prefix: record.display_prefix,
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
            created_by: record.token_created_by,
        })
    }
}

/// A stored role name as a [`Role`].
fn stored_role(role: &str) -> Result<Role> {
    role.parse()
        .map_err(|_| Error::internal(format!("stored role {role} is unknown")))
}

/// The `user_id` and `role_id` columns of a token owned by `owner`.
fn owner_columns(owner: &TokenOwner) -> (Option<&str>, Option<&str>) {
    match owner {
        TokenOwner::User(id) => (Some(id.as_str()), None),
        TokenOwner::Role(id) => (None, Some(id.as_str())),
    }
}

/// The column that names a token's owner of `owner`'s kind, and the owner's id.
fn owner_column(owner: &TokenOwner) -> (&'static str, &str) {
    match owner {
        TokenOwner::User(id) => ("user_id", id),
        TokenOwner::Role(id) => ("role_id", id),
    }
}

pub(super) async fn count_users<DB: Backend>(store: &SqlStore<DB>) -> Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) AS users FROM users")
        .fetch_one(&store.pool)
        .await
        .or_db()
}

pub(super) async fn create_user<DB: Backend>(
    store: &SqlStore<DB>,
    new: &NewUser,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    sqlx::query("INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&new.user.id)
        .bind(&new.user.name)
        .bind(new.user.admin)
        .bind(new.user.created_at)
        .execute(&mut *transaction)
        .await
        .map_err(|error| {
            conflict_or(
                error,
                "user_exists",
                format!("user {} already exists", new.user.name),
            )
        })?;
    insert_workspace_with_owner(&mut transaction, &new.workspace, &new.user.id).await?;
    if let Some(token) = &new.token {
        insert_token_in(&mut transaction, token, None).await?;
    }
    commit_audited(transaction, audit).await
}

pub(super) async fn user_by_name<DB: Backend>(
    store: &SqlStore<DB>,
    name: &str,
) -> Result<Option<UserRow>> {
    let user: Option<UserRecord> = sqlx::query_as(
        "SELECT id, name, is_admin, created_at, disabled_at FROM users WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    Ok(user.map(UserRow::from))
}

pub(super) async fn list_users<DB: Backend>(store: &SqlStore<DB>) -> Result<Vec<UserRow>> {
    let users: Vec<UserRecord> = sqlx::query_as(
        "SELECT id, name, is_admin, created_at, disabled_at FROM users ORDER BY name",
    )
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    Ok(users.into_iter().map(UserRow::from).collect())
}

/// Disables the user, revoking every unrevoked token of theirs and every one they
/// created, in one transaction.
pub(super) async fn disable_user<DB: Backend>(
    store: &SqlStore<DB>,
    user_id: &str,
    at: Timestamp,
    audit: AuditRecord,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    let disabled =
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(at)
            .bind(user_id)
            .execute(&mut *transaction)
            .await
            .or_db()?
            .rows_affected()
            == 1;
    if disabled {
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE (user_id = $2 OR created_by = $2) \
             AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(user_id)
        .execute(&mut *transaction)
        .await
        .or_db()?;
    }
    commit_audited_if(transaction, disabled, audit).await
}

pub(super) async fn enable_user<DB: Backend>(
    store: &SqlStore<DB>,
    user_id: &str,
    token: &ApiTokenRow,
    audit: AuditRecord,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    let enabled = execute_in(
        &mut transaction,
        "UPDATE users SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL",
        &[user_id],
    )
    .await?
        == 1;
    if enabled {
        insert_token_in(&mut transaction, token, None).await?;
    }
    commit_audited_if(transaction, enabled, audit).await
}

pub(super) async fn delete_user<DB: Backend>(
    store: &SqlStore<DB>,
    user_id: &str,
    personal_workspace_id: &str,
    at: Timestamp,
    audit: AuditRecord,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    // Role tokens they made elsewhere stay (revoked, so the workspace's admins still
    // see them), no longer naming a creator that is gone; explicitly, as the foreign
    // key's ON DELETE is not relied on.
    sqlx::query(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1), created_by = NULL \
         WHERE created_by = $2",
    )
    .bind(at)
    .bind(user_id)
    .execute(&mut *transaction)
    .await
    .or_db()?;
    // Tokens go first and explicitly, so no backend's foreign-key setting decides
    // whether a deleted user's, or a deleted role's, tokens still authenticate; the
    // workspace's own rows follow it by cascade.
    for (statement, id) in [
        ("DELETE FROM api_tokens WHERE user_id = $1", user_id),
        (
            "DELETE FROM api_tokens WHERE role_id IN \
             (SELECT id FROM workload_roles WHERE workspace_id = $1)",
            personal_workspace_id,
        ),
        (
            "DELETE FROM workspaces WHERE id = $1",
            personal_workspace_id,
        ),
        ("DELETE FROM memberships WHERE user_id = $1", user_id),
    ] {
        execute_in(&mut transaction, statement, &[id]).await?;
    }
    let deleted = execute_in(
        &mut transaction,
        "DELETE FROM users WHERE id = $1",
        &[user_id],
    )
    .await?
        == 1;
    commit_audited_if(transaction, deleted, audit).await
}

/// Inserts `token` inside `transaction`; `trust_id` names the trust a token issued by an
/// exchange was issued under (deleting the trust deletes the token).
pub(super) async fn insert_token_in<DB: Backend>(
    transaction: &mut Transaction<DB>,
    token: &ApiTokenRow,
    trust_id: Option<&str>,
) -> Result<()> {
    let (user_id, role_id) = owner_columns(&token.owner);
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, role_id, name, token_hash, display_prefix, \
         created_at, expires_at, revoked_at, last_used_at, created_by, trust_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&token.id)
    .bind(user_id)
    .bind(role_id)
    .bind(&token.name)
    .bind(&token.token_hash)
    .bind(&token.display_prefix)
    .bind(token.created_at)
    .bind(token.expires_at)
    .bind(token.revoked_at)
    .bind(token.last_used_at)
    .bind(&token.created_by)
    .bind(trust_id)
    .execute(&mut **transaction)
    .await
    .map_err(|error| {
        conflict_or(
            error,
            "token_exists",
            "an identical API token already exists".to_owned(),
        )
    })?;
    Ok(())
}

pub(super) async fn insert_api_token<DB: Backend>(
    store: &SqlStore<DB>,
    token: &ApiTokenRow,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    insert_token_in(&mut transaction, token, None).await?;
    commit_audited(transaction, audit).await
}

pub(super) async fn api_token_by_hash<DB: Backend>(
    store: &SqlStore<DB>,
    token_hash: &str,
) -> Result<Option<(ApiTokenRow, TokenSubject)>> {
    let Some(row) = sqlx::query(&format!(
        "SELECT t.id, t.user_id, t.role_id, t.name, t.token_hash, t.display_prefix, \
         t.created_at, t.expires_at, t.revoked_at, t.last_used_at, \
         t.created_by AS token_created_by, u.name AS user_name, \
         u.is_admin, u.created_at AS user_created_at, u.disabled_at AS user_disabled_at, \
         {ROLE_COLUMNS} \
         FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id \
         LEFT JOIN workload_roles r ON r.id = t.role_id \
         LEFT JOIN workspaces rw ON rw.id = r.workspace_id WHERE t.token_hash = $1",
    ))
    .bind(token_hash)
    .fetch_optional(&store.pool)
    .await
    .or_db()?
    else {
        return Ok(None);
    };
    // The joined columns of the owner the token does not have are NULL: only the
    // owner's are read.
    let token = ApiTokenRow::try_from(ApiTokenRecord::from_row(&row).or_db()?)?;
    let subject = match &token.owner {
        TokenOwner::User(id) => {
            let user = TokenUserRecord::from_row(&row).or_db()?;
            TokenSubject::User(UserRow {
                id: id.clone(),
                name: user.user_name,
                admin: user.is_admin,
                created_at: user.user_created_at,
                disabled_at: user.user_disabled_at,
            })
        }
        TokenOwner::Role(_) => {
            TokenSubject::Role(RoleRow::from(RoleRecord::from_row(&row).or_db()?))
        }
    };
    Ok(Some((token, subject)))
}

pub(super) async fn touch_api_token<DB: Backend>(
    store: &SqlStore<DB>,
    token_id: &str,
    at: Timestamp,
) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(at)
        .bind(token_id)
        .execute(&store.pool)
        .await
        .or_db()?;
    Ok(())
}

pub(super) async fn list_api_tokens<DB: Backend>(
    store: &SqlStore<DB>,
    owner: &TokenOwner,
) -> Result<Vec<ApiTokenRow>> {
    let (column, id) = owner_column(owner);
    api_tokens(
        sqlx::query_as(&format!(
            "{API_TOKEN_SELECT} WHERE {column} = $1 ORDER BY created_at, id"
        ))
        .bind(id)
        .fetch_all(&store.pool)
        .await,
    )
}

pub(super) async fn api_token_by_id<DB: Backend>(
    store: &SqlStore<DB>,
    token_id: &str,
) -> Result<Option<ApiTokenRow>> {
    let token: Option<ApiTokenRecord> =
        sqlx::query_as(&format!("{API_TOKEN_SELECT} WHERE id = $1"))
            .bind(token_id)
            .fetch_optional(&store.pool)
            .await
            .or_db()?;
    token.map(ApiTokenRow::try_from).transpose()
}

pub(super) async fn role_tokens_created_by<DB: Backend>(
    store: &SqlStore<DB>,
    user_id: &str,
) -> Result<Vec<ApiTokenRow>> {
    api_tokens(
        sqlx::query_as(&format!(
            "{API_TOKEN_SELECT} WHERE created_by = $1 AND role_id IS NOT NULL \
             ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&store.pool)
        .await,
    )
}

/// API tokens as read by a statement.
fn api_tokens(records: sqlx::Result<Vec<ApiTokenRecord>>) -> Result<Vec<ApiTokenRow>> {
    records
        .or_db()?
        .into_iter()
        .map(ApiTokenRow::try_from)
        .collect()
}

pub(super) async fn revoke_api_token<DB: Backend>(
    store: &SqlStore<DB>,
    owner: &TokenOwner,
    token_id: &str,
    at: Timestamp,
    audit: AuditRecord,
) -> Result<bool> {
    let (column, owner_id) = owner_column(owner);
    let mut transaction = store.begin_write().await?;
    let revoked = sqlx::query(&format!(
        "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND {column} = $3 \
         AND revoked_at IS NULL",
    ))
    .bind(at)
    .bind(token_id)
    .bind(owner_id)
    .execute(&mut *transaction)
    .await
    .or_db()?
    .rows_affected()
        == 1;
    commit_audited_if(transaction, revoked, audit).await
}

async fn insert_workspace_with_owner<DB: Backend>(
    transaction: &mut Transaction<DB>,
    workspace: &WorkspaceRow,
    owner_id: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO workspaces (id, name, kind, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&workspace.id)
        .bind(&workspace.name)
        .bind(workspace.kind.as_str())
        .bind(workspace.created_at)
        .execute(&mut **transaction)
        .await
        .map_err(|error| {
            conflict_or(
                error,
                "workspace_exists",
                format!("workspace {} already exists", workspace.name),
            )
        })?;
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&workspace.id)
    .bind(owner_id)
    .bind(Role::Owner.as_str())
    .bind(workspace.created_at)
    .execute(&mut **transaction)
    .await
    .or_db()?;
    Ok(())
}

pub(super) async fn create_workspace<DB: Backend>(
    store: &SqlStore<DB>,
    workspace: &WorkspaceRow,
    owner_id: &str,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    insert_workspace_with_owner(&mut transaction, workspace, owner_id).await?;
    commit_audited(transaction, audit).await
}

pub(super) async fn workspace_by_name<DB: Backend>(
    store: &SqlStore<DB>,
    name: &str,
) -> Result<Option<WorkspaceRow>> {
    let workspace: Option<WorkspaceRecord> =
        sqlx::query_as("SELECT id, name, kind, created_at FROM workspaces WHERE name = $1")
            .bind(name)
            .fetch_optional(&store.pool)
            .await
            .or_db()?;
    workspace.map(WorkspaceRow::try_from).transpose()
}

pub(super) async fn role_of<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    user_id: &str,
) -> Result<Option<Role>> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .fetch_optional(&store.pool)
            .await
            .or_db()?;
    role.as_deref().map(stored_role).transpose()
}

pub(super) async fn workspaces_of<DB: Backend>(
    store: &SqlStore<DB>,
    user_id: &str,
) -> Result<Vec<(WorkspaceRow, Role)>> {
    let memberships: Vec<MembershipRecord> = sqlx::query_as(
        "SELECT w.id, w.name, w.kind, w.created_at, m.role FROM workspaces w \
         JOIN memberships m ON m.workspace_id = w.id WHERE m.user_id = $1 ORDER BY w.name",
    )
    .bind(user_id)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    memberships
        .into_iter()
        .map(|membership| {
            Ok((
                WorkspaceRow::try_from(membership.workspace)?,
                stored_role(&membership.role)?,
            ))
        })
        .collect()
}

pub(super) async fn put_member<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    user_id: &str,
    role: Role,
    at: Timestamp,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(workspace_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(at)
    .execute(&mut *transaction)
    .await
    .or_db()?;
    commit_audited(transaction, audit).await
}

pub(super) async fn remove_member<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    user_id: &str,
    audit: AuditRecord,
) -> Result<bool> {
    change_one_audited(
        store,
        "DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        &[workspace_id, user_id],
        audit,
    )
    .await
}

pub(super) async fn members<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
) -> Result<Vec<MemberRow>> {
    let members: Vec<MemberRecord> = sqlx::query_as(
        "SELECT u.name, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.workspace_id = $1 ORDER BY u.name",
    )
    .bind(workspace_id)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    members
        .into_iter()
        .map(|member| {
            Ok(MemberRow {
                role: stored_role(&member.role)?,
                user_name: member.name,
                created_at: member.created_at,
            })
        })
        .collect()
}
