//! The SQL of role trusts and exchanged tokens (issue 13), for both backends.
//! `impl_trust_queries!` is expanded by `impl_store!` next to the store it implements
//! (it uses that expansion's `Row`, `Transaction`, `append_in`, `commit` and
//! `insert_token_in`), as inherent methods the `Store` trait's trust methods delegate to.

/// Inherent methods on `$store` holding the trust SQL; see the module comment.
macro_rules! impl_trust_queries {
    ($store:ty) => {
        use crate::store::TrustRow;

        const TRUST_COLUMNS: &str = "id, role_id, issuer, audience, subject, claims, \
            max_session_seconds, created_at, created_by";

        fn trust_from(row: &Row) -> Result<TrustRow> {
            Ok(TrustRow {
                id: row.try_get("id").map_err(database_error)?,
                role_id: row.try_get("role_id").map_err(database_error)?,
                issuer: row.try_get("issuer").map_err(database_error)?,
                audience: row.try_get("audience").map_err(database_error)?,
                subject: row.try_get("subject").map_err(database_error)?,
                claims: row.try_get("claims").map_err(database_error)?,
                max_session_seconds: row.try_get("max_session_seconds").map_err(database_error)?,
                created_at: row.try_get("created_at").map_err(database_error)?,
                created_by: row.try_get("created_by").map_err(database_error)?,
            })
        }

        impl $store {
            async fn trust_insert(&self, trust: &TrustRow, audit: AuditRecord) -> Result<()> {
                let mut transaction = self.begin_write().await?;
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
                .map_err(database_error)?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn trust_list(&self, role_id: &str) -> Result<Vec<TrustRow>> {
                sqlx::query(&format!(
                    "SELECT {TRUST_COLUMNS} FROM role_trusts WHERE role_id = $1 \
                     ORDER BY created_at, id"
                ))
                .bind(role_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(trust_from)
                .collect()
            }

            async fn trust_delete(
                &self,
                role_id: &str,
                trust_id: &str,
                audit: AuditRecord,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                // Tokens first and explicitly, as `delete_role` does: no backend's
                // foreign-key setting decides whether they still authenticate.
                sqlx::query("DELETE FROM api_tokens WHERE trust_id = $1 AND role_id = $2")
                    .bind(trust_id)
                    .bind(role_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?;
                let deleted = sqlx::query("DELETE FROM role_trusts WHERE id = $1 AND role_id = $2")
                    .bind(trust_id)
                    .bind(role_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?
                    .rows_affected()
                    == 1;
                commit_audited_if(transaction, deleted, audit).await
            }

            async fn trust_insert_token(
                &self,
                token: &ApiTokenRow,
                trust_id: &str,
                audit: AuditRecord,
            ) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                insert_token_in(&mut transaction, token, Some(trust_id)).await?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn trust_prune_tokens(&self, now: Timestamp, limit: i64) -> Result<u64> {
                let mut transaction = self.begin_write().await?;
                let pruned = sqlx::query(
                    "DELETE FROM api_tokens WHERE id IN (SELECT id FROM api_tokens \
                     WHERE trust_id IS NOT NULL AND expires_at <= $1 LIMIT $2)",
                )
                .bind(now)
                .bind(limit)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected();
                commit(transaction).await?;
                Ok(pruned)
            }
        }
    };
}

pub(super) use impl_trust_queries;
