//! Sync targets (push delivery): where a credential is pushed, the signing key of a
//! webhook (sealed), and each target's delivery state and lease. Reads join the
//! credential (and its token), so every target comes with `behind`: its credential's
//! revision or token changed since the last delivery.

use serde::{Deserialize, Serialize};

use super::audit_log::{append_in, change_one_audited, commit_audited};
use super::backend::{Backend, RowsAffected as _};
use super::errors::OrDatabase;
use super::keys::{sealed_columns, SealedColumns};
use super::sql::{commit, SqlStore, Transaction};
use crate::audit::AuditRecord;
use crate::domain::credential::Timestamp;
use crate::domain::sync_target::{
    AwsSecretDestination, Delivered, SyncDestination, SyncStatus, SyncTarget,
};
use crate::domain::{Error, Result};
use crate::store::{Limited, SyncTargetFreshness};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws_identity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws_identity_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    adopt: bool,
}

fn sync_settings_to_text(destination: &SyncDestination) -> String {
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
        SyncDestination::AwsSecret(secret) => StoredSyncSettings {
            aws_secret: Some(secret.secret_id.clone()),
            aws_region: secret.region.clone(),
            aws_identity_id: Some(secret.identity_id.clone()),
            aws_identity_name: Some(secret.identity_name.clone()),
            adopt: secret.adopt,
            ..StoredSyncSettings::default()
        },
    };
    serde_json::to_string(&settings).expect("settings serialize")
}

fn sync_destination_from(kind: &str, text: &str) -> Result<SyncDestination> {
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
        "aws_secret" => Ok(SyncDestination::AwsSecret(AwsSecretDestination {
            secret_id: stored.aws_secret.ok_or_else(incomplete)?,
            region: stored.aws_region,
            identity_id: stored.aws_identity_id.ok_or_else(incomplete)?,
            identity_name: stored.aws_identity_name.ok_or_else(incomplete)?,
            adopt: stored.adopt,
        })),
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
fn sync_select() -> String {
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
fn sync_due() -> String {
    format!(
        "(s.lease_until IS NULL OR s.lease_until < $1) AND (s.next_attempt_at <= $1 \
         OR (s.next_attempt_at IS NULL AND {BEHIND}))"
    )
}

#[derive(sqlx::FromRow)]
struct SyncTargetRecord {
    id: String,
    credential_id: String,
    credential_name: String,
    workspace_id: String,
    workspace_name: String,
    kind: String,
    settings: String,
    #[sqlx(flatten)]
    signing_key: SealedColumns,
    status: String,
    failures: i64,
    last_error: Option<String>,
    next_attempt_at: Option<i64>,
    last_attempt_at: Option<i64>,
    last_synced_at: Option<i64>,
    delivered_revision: Option<i64>,
    delivered_token_issued_at: Option<i64>,
    delivered_key: Option<String>,
    created_at: i64,
    created_by: String,
    behind: i64,
}

impl TryFrom<SyncTargetRecord> for SyncTarget {
    type Error = Error;

    fn try_from(record: SyncTargetRecord) -> Result<Self> {
        Ok(SyncTarget {
            destination: sync_destination_from(&record.kind, &record.settings)?,
            signing_key: record.signing_key.into_sealed()?,
            status: SyncStatus::parse(&record.status)?,
            id: record.id,
            credential_id: record.credential_id,
            credential_name: record.credential_name,
            workspace_id: record.workspace_id,
            workspace_name: record.workspace_name,
            failures: record.failures,
            last_error: record.last_error,
            next_attempt_at: record.next_attempt_at,
            last_attempt_at: record.last_attempt_at,
            last_synced_at: record.last_synced_at,
            delivered: Delivered {
                revision: record.delivered_revision,
                token_issued_at: record.delivered_token_issued_at,
                key: record.delivered_key,
            },
            behind: record.behind != 0,
            created_at: record.created_at,
            created_by: record.created_by,
        })
    }
}

/// Binds a target's delivery state, `status` to `delivered_key` in column order: what
/// both the INSERT of a target and the write of a push's result set.
fn bind_delivery_state<'q, DB: Backend>(
    query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    target: &'q SyncTarget,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>> {
    query
        .bind(target.status.as_str())
        .bind(target.failures)
        .bind(&target.last_error)
        .bind(target.next_attempt_at)
        .bind(target.last_attempt_at)
        .bind(target.last_synced_at)
        .bind(target.delivered.revision)
        .bind(target.delivered.token_issued_at)
        .bind(&target.delivered.key)
}

/// Sync targets as read by a statement.
fn sync_targets_from(records: Vec<SyncTargetRecord>) -> Result<Vec<SyncTarget>> {
    records.into_iter().map(SyncTarget::try_from).collect()
}

async fn lease_in<DB: Backend>(
    transaction: &mut Transaction<DB>,
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
            .or_db()?;
    }
    Ok(())
}

pub(super) async fn insert_sync_target<DB: Backend>(
    store: &SqlStore<DB>,
    target: &SyncTarget,
    lease: Option<(&str, Timestamp)>,
    audit: AuditRecord,
) -> Result<()> {
    let (ciphertext, wrapped_key, key_version) = sealed_columns(target.signing_key.as_ref());
    let mut transaction = store.begin_write().await?;
    bind_delivery_state(
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
        .bind(ciphertext)
        .bind(wrapped_key)
        .bind(key_version),
        target,
    )
    .bind(lease.map(|(owner, _)| owner))
    .bind(lease.map(|(_, until)| until))
    .bind(target.created_at)
    .bind(&target.created_by)
    .execute(&mut *transaction)
    .await
    .or_db()?;
    commit_audited(transaction, audit).await
}

pub(super) async fn sync_targets<DB: Backend>(
    store: &SqlStore<DB>,
    credential_id: &str,
) -> Result<Vec<SyncTarget>> {
    sync_targets_from(
        sqlx::query_as(&format!(
            "{} WHERE s.credential_id = $1 ORDER BY s.created_at, s.id",
            sync_select()
        ))
        .bind(credential_id)
        .fetch_all(&store.pool)
        .await
        .or_db()?,
    )
}

pub(super) async fn delete_sync_target<DB: Backend>(
    store: &SqlStore<DB>,
    credential_id: &str,
    target_id: &str,
    audit: AuditRecord,
) -> Result<bool> {
    change_one_audited(
        store,
        "DELETE FROM sync_targets WHERE id = $1 AND credential_id = $2",
        &[target_id, credential_id],
        audit,
    )
    .await
}

pub(super) async fn claim_due_sync_targets<DB: Backend>(
    store: &SqlStore<DB>,
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
    // Most cycles find nothing: look without the write lock first, which every audited
    // write of every replica waits for.
    let any = sqlx::query(&statement)
        .bind(now)
        .bind(1_i64)
        .fetch_optional(&store.pool)
        .await
        .or_db()?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let mut transaction = store.begin_write().await?;
    let due = sync_targets_from(
        sqlx::query_as(&statement)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *transaction)
            .await
            .or_db()?,
    )?;
    let ids: Vec<String> = due.iter().map(|target| target.id.clone()).collect();
    lease_in(&mut transaction, &ids, owner, lease_until).await?;
    commit(transaction).await?;
    Ok(due)
}

pub(super) async fn claim_sync_target<DB: Backend>(
    store: &SqlStore<DB>,
    target_id: &str,
    now: Timestamp,
    owner: &str,
    lease_until: Timestamp,
) -> Result<Option<SyncTarget>> {
    let mut transaction = store.begin_write().await?;
    let found: Option<SyncTargetRecord> = sqlx::query_as(&format!(
        "{} WHERE s.id = $1 AND (s.lease_until IS NULL OR s.lease_until < $2)",
        sync_select()
    ))
    .bind(target_id)
    .bind(now)
    .fetch_optional(&mut *transaction)
    .await
    .or_db()?;
    let found = found.map(SyncTarget::try_from).transpose()?;
    if let Some(target) = &found {
        lease_in(
            &mut transaction,
            std::slice::from_ref(&target.id),
            owner,
            lease_until,
        )
        .await?;
    }
    commit(transaction).await?;
    Ok(found)
}

pub(super) async fn finish_sync_target<DB: Backend>(
    store: &SqlStore<DB>,
    target: &SyncTarget,
    owner: &str,
    audit: Option<AuditRecord>,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    let updated = bind_delivery_state(
        sqlx::query(
            "UPDATE sync_targets SET status = $1, failures = $2, last_error = $3, \
             next_attempt_at = $4, last_attempt_at = $5, last_synced_at = $6, \
             delivered_revision = $7, delivered_token_issued_at = $8, delivered_key = $9, \
             lease_owner = NULL, lease_until = NULL WHERE id = $10 AND lease_owner = $11",
        ),
        target,
    )
    .bind(&target.id)
    .bind(owner)
    .execute(&mut *transaction)
    .await
    .or_db()?
    .rows_affected()
        == 1;
    if let (true, Some(audit)) = (updated, audit) {
        append_in(&mut transaction, audit).await?;
    }
    commit(transaction).await?;
    Ok(updated)
}

pub(super) async fn sync_target_counts<DB: Backend>(
    store: &SqlStore<DB>,
) -> Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT status, COUNT(*) AS targets FROM sync_targets GROUP BY status ORDER BY status",
    )
    .fetch_all(&store.pool)
    .await
    .or_db()
}

#[derive(sqlx::FromRow)]
struct FreshnessRecord {
    workspace: String,
    credential: String,
    target: String,
    kind: String,
    status: String,
    last_synced_at: Option<i64>,
}

pub(super) async fn sync_target_freshness<DB: Backend>(
    store: &SqlStore<DB>,
    limit: i64,
) -> Result<Limited<SyncTargetFreshness>> {
    let records: Vec<FreshnessRecord> = sqlx::query_as(
        "SELECT w.name AS workspace, c.name AS credential, s.id AS target, s.kind, s.status, \
         s.last_synced_at FROM sync_targets s JOIN credentials c ON c.id = s.credential_id \
         JOIN workspaces w ON w.id = c.workspace_id \
         ORDER BY CASE WHEN s.status = 'failing' THEN 0 ELSE 1 END, w.name, c.name, s.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sync_targets")
        .fetch_one(&store.pool)
        .await
        .or_db()?;
    let rows = records
        .into_iter()
        .map(|record| SyncTargetFreshness {
            workspace: record.workspace,
            credential: record.credential,
            target: record.target,
            kind: record.kind,
            status: record.status,
            last_success_at: record.last_synced_at,
        })
        .collect();
    Ok(Limited { rows, total })
}
