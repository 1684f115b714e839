//! The SQL of cross-workspace role grants and of the user lifecycle (disable, delete),
//! for both backends. `impl_access_queries!` is expanded by `impl_store!` next to the
//! store it implements (it uses that expansion's `Row`, `append_in`, `commit` and
//! `commit_audited_if`), as inherent methods the `Store` trait's methods delegate to;
//! kept apart so the shared SQL file stays readable.

/// Whether the grant's granter still administers the granted workspace and is not
/// disabled: the condition under which the grant was made, checked on every read.
pub(super) const GRANT_IN_FORCE: &str = "EXISTS (SELECT 1 FROM memberships m \
    JOIN users u ON u.id = m.user_id WHERE m.workspace_id = g.workspace_id \
    AND m.user_id = g.granted_by_user_id AND m.role IN ('owner', 'admin') \
    AND u.disabled_at IS NULL)";

macro_rules! impl_access_queries {
    ($store:ty) => {
        use crate::store::access_sql::GRANT_IN_FORCE;
        use crate::store::RoleGrantRow;

        fn grant_from(row: &Row) -> Result<RoleGrantRow> {
            Ok(RoleGrantRow {
                id: row.try_get("id").map_err(database_error)?,
                workspace_id: row.try_get("workspace_id").map_err(database_error)?,
                role_id: row.try_get("role_id").map_err(database_error)?,
                role_workspace_name: row.try_get("role_workspace_name").map_err(database_error)?,
                role_name: row.try_get("role_name").map_err(database_error)?,
                granted_by_user_id: row.try_get("granted_by_user_id").map_err(database_error)?,
                granted_by: row.try_get("granted_by").map_err(database_error)?,
                granted_at: row.try_get("granted_at").map_err(database_error)?,
                in_force: row.try_get::<i64, _>("in_force").map_err(database_error)? == 1,
            })
        }

        impl $store {
            async fn grant_put(&self, grant: &RoleGrantRow, audit: AuditRecord) -> Result<()> {
                let mut transaction = self.begin_write().await?;
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
                .map_err(database_error)?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn grant_delete(
                &self,
                workspace_id: &str,
                role_id: &str,
                audit: AuditRecord,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let deleted =
                    sqlx::query("DELETE FROM role_grants WHERE workspace_id = $1 AND role_id = $2")
                        .bind(workspace_id)
                        .bind(role_id)
                        .execute(&mut *transaction)
                        .await
                        .map_err(database_error)?
                        .rows_affected()
                        == 1;
                commit_audited_if(transaction, deleted, audit).await
            }

            async fn grant_list(&self, workspace_id: &str) -> Result<Vec<RoleGrantRow>> {
                sqlx::query(&format!(
                    "SELECT g.id, g.workspace_id, g.role_id, rw.name AS role_workspace_name, \
                     r.name AS role_name, g.granted_by_user_id, g.granted_by, g.granted_at, \
                     CAST(CASE WHEN {GRANT_IN_FORCE} THEN 1 ELSE 0 END AS BIGINT) AS in_force \
                     FROM role_grants g \
                     JOIN workload_roles r ON r.id = g.role_id \
                     JOIN workspaces rw ON rw.id = r.workspace_id \
                     WHERE g.workspace_id = $1 ORDER BY rw.name, r.name",
                ))
                .bind(workspace_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(grant_from)
                .collect()
            }

            async fn grant_in_force(&self, workspace_id: &str, role_id: &str) -> Result<bool> {
                let found = sqlx::query(&format!(
                    "SELECT 1 AS found FROM role_grants g WHERE g.workspace_id = $1 \
                     AND g.role_id = $2 AND {GRANT_IN_FORCE}",
                ))
                .bind(workspace_id)
                .bind(role_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?;
                Ok(found.is_some())
            }

            async fn roles_everywhere(&self) -> Result<Vec<RoleRow>> {
                sqlx::query(&format!(
                    "SELECT {ROLE_COLUMNS} FROM workload_roles r \
                     JOIN workspaces rw ON rw.id = r.workspace_id ORDER BY rw.name, r.name",
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(role_row_from)
                .collect()
            }

            async fn token_by_id(&self, token_id: &str) -> Result<Option<ApiTokenRow>> {
                sqlx::query(
                    "SELECT id, user_id, role_id, name, token_hash, display_prefix, created_at, \
                     expires_at, revoked_at, last_used_at, created_by AS token_created_by \
                     FROM api_tokens WHERE id = $1",
                )
                .bind(token_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?
                .as_ref()
                .map(api_token_from)
                .transpose()
            }

            async fn tokens_created_by(&self, user_id: &str) -> Result<Vec<ApiTokenRow>> {
                sqlx::query(
                    "SELECT id, user_id, role_id, name, token_hash, display_prefix, created_at, \
                     expires_at, revoked_at, last_used_at, created_by AS token_created_by \
                     FROM api_tokens WHERE created_by = $1 AND role_id IS NOT NULL \
                     ORDER BY created_at, id",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(api_token_from)
                .collect()
            }

            async fn user_enable(
                &self,
                user_id: &str,
                token: &ApiTokenRow,
                audit: AuditRecord,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let enabled = sqlx::query(
                    "UPDATE users SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL",
                )
                .bind(user_id)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected()
                    == 1;
                if enabled {
                    insert_token_in(&mut transaction, token, None).await?;
                }
                commit_audited_if(transaction, enabled, audit).await
            }

            async fn user_disable(
                &self,
                user_id: &str,
                at: Timestamp,
                audit: AuditRecord,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let disabled = sqlx::query(
                    "UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL",
                )
                .bind(at)
                .bind(user_id)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
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
                    .map_err(database_error)?;
                }
                commit_audited_if(transaction, disabled, audit).await
            }

            async fn user_delete(
                &self,
                user_id: &str,
                personal_workspace_id: &str,
                at: Timestamp,
                audit: AuditRecord,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                // Role tokens they made elsewhere stay (revoked, so the workspace's
                // admins still see them), no longer naming a creator that is gone;
                // explicitly, as the foreign key's ON DELETE is not relied on.
                sqlx::query(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1), created_by = NULL \
                     WHERE created_by = $2",
                )
                .bind(at)
                .bind(user_id)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?;
                // Tokens go first and explicitly, so no backend's foreign-key setting
                // decides whether a deleted user's, or a deleted role's, tokens still
                // authenticate; the workspace's own rows follow it by cascade.
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
                    sqlx::query(statement)
                        .bind(id)
                        .execute(&mut *transaction)
                        .await
                        .map_err(database_error)?;
                }
                let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?
                    .rows_affected()
                    == 1;
                commit_audited_if(transaction, deleted, audit).await
            }
        }
    };
}

pub(super) use impl_access_queries;
