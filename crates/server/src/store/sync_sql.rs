//! The SQL of sync targets, for both backends. `impl_sync_queries!` is expanded by
//! `impl_store!` next to the store it implements (it uses that expansion's `Row`,
//! `Transaction`, `append_in` and `commit`), as inherent methods the `Store` trait's
//! sync-target methods delegate to; kept apart so the shared SQL file stays readable.

use serde::{Deserialize, Serialize};

use crate::domain::sync_target::SyncDestination;
use crate::domain::Error;

/// A target's settings as stored in its `settings` column (JSON text, never secret).
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoredSyncSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

pub(super) fn sync_settings_to_text(destination: &SyncDestination) -> String {
    let settings = match destination {
        SyncDestination::File { path } => StoredSyncSettings {
            path: Some(path.clone()),
            ..StoredSyncSettings::default()
        },
        SyncDestination::Kubernetes {
            namespaces,
            secret_name,
        } => StoredSyncSettings {
            namespaces: Some(namespaces.clone()),
            secret_name: Some(secret_name.clone()),
            ..StoredSyncSettings::default()
        },
        SyncDestination::Webhook { url } => StoredSyncSettings {
            url: Some(url.clone()),
            ..StoredSyncSettings::default()
        },
    };
    serde_json::to_string(&settings).expect("settings serialize")
}

pub(super) fn sync_destination_from(kind: &str, text: &str) -> Result<SyncDestination, Error> {
    let stored: StoredSyncSettings = serde_json::from_str(text)
        .map_err(|error| Error::internal(format!("stored sync target settings: {error}")))?;
    let incomplete = || Error::internal(format!("stored {kind} sync target is incomplete"));
    match kind {
        "file" => Ok(SyncDestination::File {
            path: stored.path.ok_or_else(incomplete)?,
        }),
        "kubernetes" => Ok(SyncDestination::Kubernetes {
            namespaces: stored.namespaces.ok_or_else(incomplete)?,
            secret_name: stored.secret_name.ok_or_else(incomplete)?,
        }),
        "webhook" => Ok(SyncDestination::Webhook {
            url: stored.url.ok_or_else(incomplete)?,
        }),
        other => Err(Error::internal(format!(
            "stored sync target kind {other} is unknown"
        ))),
    }
}

/// Whether a target is behind its credential: never delivered, the credential changed
/// since (its revision), or its token was re-minted after the one delivered.
const BEHIND: &str = "(s.delivered_revision IS NULL OR s.delivered_revision <> c.revision \
    OR (t.issued_at IS NOT NULL AND (s.delivered_token_issued_at IS NULL \
    OR s.delivered_token_issued_at < t.issued_at)))";

/// `SELECT … FROM …` of targets with their credential's names and `behind`.
pub(super) fn sync_select() -> String {
    format!(
        "SELECT s.id, s.credential_id, c.name AS credential_name, c.workspace_id, \
         w.name AS workspace_name, s.kind, s.settings, s.secret_ciphertext, \
         s.secret_wrapped_key, s.secret_key_version, s.status, s.failures, s.last_error, \
         s.next_attempt_at, s.last_attempt_at, s.last_synced_at, s.delivered_revision, \
         s.delivered_token_issued_at, s.delivered_key, s.created_at, s.created_by, \
         CAST(CASE WHEN {BEHIND} THEN 1 ELSE 0 END AS BIGINT) AS behind \
         FROM sync_targets s JOIN credentials c ON c.id = s.credential_id \
         JOIN workspaces w ON w.id = c.workspace_id \
         LEFT JOIN registry_tokens t ON t.identity = c.token_identity"
    )
}

/// The due condition of the worker's claim (`$1` is now).
pub(super) fn sync_due() -> String {
    format!(
        "(s.lease_until IS NULL OR s.lease_until < $1) AND (s.next_attempt_at <= $1 \
         OR (s.next_attempt_at IS NULL AND {BEHIND}))"
    )
}

/// Inherent methods on `$store` holding the sync-target SQL; see the module comment.
macro_rules! impl_sync_queries {
    ($store:ty) => {
        use crate::domain::sync_target::{Delivered, SyncStatus, SyncTarget};
        use crate::store::sync_sql::{
            sync_destination_from, sync_due, sync_select, sync_settings_to_text,
        };

        fn sync_target_from(row: &Row) -> Result<SyncTarget> {
            let kind: String = row.try_get("kind").map_err(database_error)?;
            let settings: String = row.try_get("settings").map_err(database_error)?;
            let status: String = row.try_get("status").map_err(database_error)?;
            let behind: i64 = row.try_get("behind").map_err(database_error)?;
            Ok(SyncTarget {
                id: row.try_get("id").map_err(database_error)?,
                credential_id: row.try_get("credential_id").map_err(database_error)?,
                credential_name: row.try_get("credential_name").map_err(database_error)?,
                workspace_id: row.try_get("workspace_id").map_err(database_error)?,
                workspace_name: row.try_get("workspace_name").map_err(database_error)?,
                destination: sync_destination_from(&kind, &settings)?,
                signing_key: sealed_from(row)?,
                status: SyncStatus::parse(&status)?,
                failures: row.try_get("failures").map_err(database_error)?,
                last_error: row.try_get("last_error").map_err(database_error)?,
                next_attempt_at: row.try_get("next_attempt_at").map_err(database_error)?,
                last_attempt_at: row.try_get("last_attempt_at").map_err(database_error)?,
                last_synced_at: row.try_get("last_synced_at").map_err(database_error)?,
                delivered: Delivered {
                    revision: row.try_get("delivered_revision").map_err(database_error)?,
                    token_issued_at: row
                        .try_get("delivered_token_issued_at")
                        .map_err(database_error)?,
                    key: row.try_get("delivered_key").map_err(database_error)?,
                },
                behind: behind != 0,
                created_at: row.try_get("created_at").map_err(database_error)?,
                created_by: row.try_get("created_by").map_err(database_error)?,
            })
        }

        async fn sync_lease_in(
            transaction: &mut Transaction,
            ids: &[String],
            owner: &str,
            lease_until: Timestamp,
        ) -> Result<()> {
            for id in ids {
                sqlx::query("UPDATE sync_targets SET lease_owner = $1, lease_until = $2 WHERE id = $3")
                    .bind(owner)
                    .bind(lease_until)
                    .bind(id)
                    .execute(&mut **transaction)
                    .await
                    .map_err(database_error)?;
            }
            Ok(())
        }

        impl $store {
            async fn sync_insert(
                &self,
                target: &SyncTarget,
                lease: Option<(&str, Timestamp)>,
                audit: AuditRecord,
            ) -> Result<()> {
                let key = target.signing_key.as_ref();
                let mut transaction = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO sync_targets (id, credential_id, kind, settings, secret_ciphertext, \
                     secret_wrapped_key, secret_key_version, status, failures, last_error, \
                     next_attempt_at, last_attempt_at, last_synced_at, delivered_revision, \
                     delivered_token_issued_at, delivered_key, lease_owner, lease_until, created_at, \
                     created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16, $17, $18, $19, $20)",
                )
                .bind(&target.id)
                .bind(&target.credential_id)
                .bind(target.destination.kind().as_str())
                .bind(sync_settings_to_text(&target.destination))
                .bind(key.map(|key| key.ciphertext.clone()))
                .bind(key.map(|key| key.wrapped_key.clone()))
                .bind(key.map(|key| i64::from(key.key_version)))
                .bind(target.status.as_str())
                .bind(target.failures)
                .bind(&target.last_error)
                .bind(target.next_attempt_at)
                .bind(target.last_attempt_at)
                .bind(target.last_synced_at)
                .bind(target.delivered.revision)
                .bind(target.delivered.token_issued_at)
                .bind(&target.delivered.key)
                .bind(lease.map(|(owner, _)| owner))
                .bind(lease.map(|(_, until)| until))
                .bind(target.created_at)
                .bind(&target.created_by)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn sync_list(&self, credential_id: &str) -> Result<Vec<SyncTarget>> {
                sqlx::query(&format!(
                    "{} WHERE s.credential_id = $1 ORDER BY s.created_at, s.id",
                    sync_select()
                ))
                .bind(credential_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(sync_target_from)
                .collect()
            }

            async fn sync_delete(
                &self,
                credential_id: &str,
                target_id: &str,
                audit: AuditRecord,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM sync_targets WHERE id = $1 AND credential_id = $2")
                    .bind(target_id)
                    .bind(credential_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?
                    .rows_affected()
                    == 1;
                commit_audited_if(transaction, deleted, audit).await
            }

            async fn sync_claim_due(
                &self,
                now: Timestamp,
                owner: &str,
                lease_until: Timestamp,
                limit: i64,
            ) -> Result<Vec<SyncTarget>> {
                let statement = format!(
                    "{} WHERE {} ORDER BY COALESCE(s.next_attempt_at, 0), s.created_at LIMIT $2",
                    sync_select(),
                    sync_due()
                );
                // Most cycles find nothing: look without the write lock first, which
                // every audited write of every replica waits for.
                let any = sqlx::query(&statement)
                    .bind(now)
                    .bind(1_i64)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?;
                if any.is_none() {
                    return Ok(Vec::new());
                }
                let mut transaction = self.begin_write().await?;
                let due: Vec<SyncTarget> = sqlx::query(&statement)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *transaction)
                    .await
                    .map_err(database_error)?
                    .iter()
                    .map(sync_target_from)
                    .collect::<Result<_>>()?;
                let ids: Vec<String> = due.iter().map(|target| target.id.clone()).collect();
                sync_lease_in(&mut transaction, &ids, owner, lease_until).await?;
                commit(transaction).await?;
                Ok(due)
            }

            async fn sync_claim_one(
                &self,
                target_id: &str,
                now: Timestamp,
                owner: &str,
                lease_until: Timestamp,
            ) -> Result<Option<SyncTarget>> {
                let mut transaction = self.begin_write().await?;
                let found = sqlx::query(&format!(
                    "{} WHERE s.id = $1 AND (s.lease_until IS NULL OR s.lease_until < $2)",
                    sync_select()
                ))
                .bind(target_id)
                .bind(now)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(database_error)?
                .as_ref()
                .map(sync_target_from)
                .transpose()?;
                if let Some(target) = &found {
                    sync_lease_in(&mut transaction, std::slice::from_ref(&target.id), owner, lease_until).await?;
                }
                commit(transaction).await?;
                Ok(found)
            }

            async fn sync_finish(
                &self,
                target: &SyncTarget,
                owner: &str,
                audit: Option<AuditRecord>,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE sync_targets SET status = $1, failures = $2, last_error = $3, \
                     next_attempt_at = $4, last_attempt_at = $5, last_synced_at = $6, \
                     delivered_revision = $7, delivered_token_issued_at = $8, delivered_key = $9, \
                     lease_owner = NULL, lease_until = NULL WHERE id = $10 AND lease_owner = $11",
                )
                .bind(target.status.as_str())
                .bind(target.failures)
                .bind(&target.last_error)
                .bind(target.next_attempt_at)
                .bind(target.last_attempt_at)
                .bind(target.last_synced_at)
                .bind(target.delivered.revision)
                .bind(target.delivered.token_issued_at)
                .bind(&target.delivered.key)
                .bind(&target.id)
                .bind(owner)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected()
                    == 1;
                if let (true, Some(audit)) = (updated, audit) {
                    append_in(&mut transaction, audit).await?;
                }
                commit(transaction).await?;
                Ok(updated)
            }

            async fn sync_counts(&self) -> Result<Vec<(String, i64)>> {
                sqlx::query(
                    "SELECT status, COUNT(*) AS targets FROM sync_targets GROUP BY status ORDER BY status",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get("status").map_err(database_error)?,
                        row.try_get("targets").map_err(database_error)?,
                    ))
                })
                .collect()
            }
        }
    };
}

pub(super) use impl_sync_queries;
