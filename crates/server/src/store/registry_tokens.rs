//! Minted registry tokens, one row per cloud identity, sealed like secrets and shared
//! by every credential with that identity and by every replica; and their leases: a
//! replica that refreshes or mints a token first leases its row, inside a serialised
//! write transaction, so across replicas one attempt runs per identity and a failed
//! one's backoff holds for everyone.

use super::backend::{Backend, RowsAffected as _};
use super::errors::OrDatabase;
use super::sql::{commit, execute_alone, SqlStore};
use crate::domain::credential::{SealedSecret, Timestamp};
use crate::domain::registry_token::RegistryTokenStatus;
use crate::domain::{Error, Result};
use crate::store::{CredentialFreshness, Limited, StoredToken};

const TOKEN_COLUMNS: &str = "identity, username, token_ciphertext, token_wrapped_key, \
    token_key_version, issued_at, expires_at, refresh_at, status, failures, last_error, \
    next_attempt_at, updated_at";

#[derive(sqlx::FromRow)]
struct TokenRecord {
    identity: String,
    username: String,
    token_ciphertext: Vec<u8>,
    token_wrapped_key: Vec<u8>,
    token_key_version: i64,
    issued_at: i64,
    expires_at: Option<i64>,
    refresh_at: i64,
    status: String,
    failures: i64,
    last_error: Option<String>,
    next_attempt_at: i64,
    updated_at: i64,
}

impl TryFrom<TokenRecord> for StoredToken {
    type Error = Error;

    fn try_from(record: TokenRecord) -> Result<Self> {
        Ok(StoredToken {
            identity: record.identity,
            username: record.username,
            sealed: SealedSecret {
                ciphertext: record.token_ciphertext,
                wrapped_key: record.token_wrapped_key,
                key_version: u32::try_from(record.token_key_version)
                    .map_err(|_| Error::internal("stored key version out of range"))?,
            },
            issued_at: record.issued_at,
            expires_at: record.expires_at,
            refresh_at: record.refresh_at,
            status: record.status.parse()?,
            failures: record.failures,
            last_error: record.last_error,
            next_attempt_at: record.next_attempt_at,
            updated_at: record.updated_at,
        })
    }
}

/// Binds a token row's state, `username` to `next_attempt_at` in column order: what
/// every statement that writes a token row sets, whatever it binds around it.
fn bind_token_state<'q, DB: Backend>(
    query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    token: &'q StoredToken,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>> {
    query
        .bind(&token.username)
        .bind(&token.sealed.ciphertext)
        .bind(&token.sealed.wrapped_key)
        .bind(i64::from(token.sealed.key_version))
        .bind(token.issued_at)
        .bind(token.expires_at)
        .bind(token.refresh_at)
        .bind(token.status.as_str())
        .bind(token.failures)
        .bind(&token.last_error)
        .bind(token.next_attempt_at)
}

/// One identity's registry token row, read from the pool or, where a lease was just
/// taken, from inside that write transaction so the read sees it.
async fn token_by_identity<'e, DB: Backend>(
    executor: impl sqlx::Executor<'e, Database = DB>,
    identity: &str,
) -> Result<Option<StoredToken>> {
    let token: Option<TokenRecord> = sqlx::query_as(&format!(
        "SELECT {TOKEN_COLUMNS} FROM registry_tokens WHERE identity = $1"
    ))
    .bind(identity)
    .fetch_optional(executor)
    .await
    .or_db()?;
    token.map(StoredToken::try_from).transpose()
}

pub(super) async fn registry_token<DB: Backend>(
    store: &SqlStore<DB>,
    identity: &str,
) -> Result<Option<StoredToken>> {
    token_by_identity(&store.pool, identity).await
}

pub(super) async fn put_registry_token<DB: Backend>(
    store: &SqlStore<DB>,
    token: &StoredToken,
) -> Result<()> {
    let upsert = bind_token_state(
        sqlx::query(
            "INSERT INTO registry_tokens (identity, username, token_ciphertext, token_wrapped_key, \
             token_key_version, issued_at, expires_at, refresh_at, status, failures, last_error, \
             next_attempt_at, lease_owner, lease_until, updated_at) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, $8, $9, $10, $11, $12, NULL, NULL, $13) ON CONFLICT (identity) DO UPDATE SET \
             username = excluded.username, token_ciphertext = excluded.token_ciphertext, \
             token_wrapped_key = excluded.token_wrapped_key, token_key_version = excluded.token_key_version, \
             issued_at = excluded.issued_at, expires_at = excluded.expires_at, \
             refresh_at = excluded.refresh_at, status = excluded.status, failures = excluded.failures, \
             last_error = excluded.last_error, next_attempt_at = excluded.next_attempt_at, \
             updated_at = excluded.updated_at",
        )
        .bind(&token.identity),
        token,
    )
    .bind(token.updated_at);
    execute_alone(store, upsert).await?;
    Ok(())
}

pub(super) async fn claim_due_tokens<DB: Backend>(
    store: &SqlStore<DB>,
    now: Timestamp,
    owner: &str,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<StoredToken>> {
    // The write transaction is serialised (IMMEDIATE / advisory lock), so the
    // select-then-lease below cannot hand one token to two replicas.
    let mut transaction = store.begin_write().await?;
    let due: Vec<TokenRecord> = sqlx::query_as(&format!(
        "SELECT {TOKEN_COLUMNS} FROM registry_tokens WHERE next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *transaction)
    .await
    .or_db()?;
    let due = due
        .into_iter()
        .map(StoredToken::try_from)
        .collect::<Result<Vec<_>>>()?;
    for token in &due {
        sqlx::query(
            "UPDATE registry_tokens SET lease_owner = $1, lease_until = $2 WHERE identity = $3",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(&token.identity)
        .execute(&mut *transaction)
        .await
        .or_db()?;
    }
    commit(transaction).await?;
    Ok(due)
}

pub(super) async fn claim_token_for_mint<DB: Backend>(
    store: &SqlStore<DB>,
    placeholder: &StoredToken,
    now: Timestamp,
    owner: &str,
    lease_until: Timestamp,
) -> Result<Option<StoredToken>> {
    // Serialised like `claim_due_tokens`, so two replicas cannot both lease (or both
    // create) one identity's row.
    let mut transaction = store.begin_write().await?;
    let leased = sqlx::query(
        "UPDATE registry_tokens SET lease_owner = $1, lease_until = $2 WHERE identity = $3 \
         AND next_attempt_at <= $4 AND (lease_until IS NULL OR lease_until < $4)",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(&placeholder.identity)
    .bind(now)
    .execute(&mut *transaction)
    .await
    .or_db()?
    .rows_affected()
        == 1;
    let row = token_by_identity(&mut *transaction, &placeholder.identity).await?;
    let claimed = match row {
        Some(row) => leased.then_some(row),
        None => {
            bind_token_state(
                sqlx::query(
                    "INSERT INTO registry_tokens (identity, username, token_ciphertext, token_wrapped_key, \
                     token_key_version, issued_at, expires_at, refresh_at, status, failures, last_error, \
                     next_attempt_at, lease_owner, lease_until, updated_at) VALUES ($1, $2, $3, $4, $5, $6, \
                     $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(&placeholder.identity),
                placeholder,
            )
            .bind(owner)
            .bind(lease_until)
            .bind(placeholder.updated_at)
            .execute(&mut *transaction)
            .await
            .or_db()?;
            Some(placeholder.clone())
        }
    };
    commit(transaction).await?;
    Ok(claimed)
}

pub(super) async fn claim_unreadable_token<DB: Backend>(
    store: &SqlStore<DB>,
    identity: &str,
    issued_at: Timestamp,
    now: Timestamp,
    owner: &str,
    lease_until: Timestamp,
) -> Result<Option<StoredToken>> {
    let mut transaction = store.begin_write().await?;
    let leased = sqlx::query(
        "UPDATE registry_tokens SET lease_owner = $1, lease_until = $2 WHERE identity = $3 \
         AND issued_at = $4 AND (failures = 0 OR next_attempt_at <= $5) \
         AND (lease_until IS NULL OR lease_until < $5)",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(identity)
    .bind(issued_at)
    .bind(now)
    .execute(&mut *transaction)
    .await
    .or_db()?
    .rows_affected()
        == 1;
    let claimed = if leased {
        token_by_identity(&mut *transaction, identity).await?
    } else {
        None
    };
    commit(transaction).await?;
    Ok(claimed)
}

/// Writes the lease holder's result. A result with more failures in a row than the
/// row had is one more failed attempt, added to `refresh_failures_total` (migration
/// 0016) in the same statement; a success (0) or a rate-limited hand-back (unchanged)
/// adds nothing.
pub(super) async fn finish_registry_token<DB: Backend>(
    store: &SqlStore<DB>,
    token: &StoredToken,
    owner: &str,
) -> Result<bool> {
    let update = bind_token_state(
        sqlx::query(
            "UPDATE registry_tokens SET username = $1, token_ciphertext = $2, token_wrapped_key = $3, \
             token_key_version = $4, issued_at = $5, expires_at = $6, refresh_at = $7, status = $8, \
             failures = $9, last_error = $10, next_attempt_at = $11, updated_at = $12, \
             refresh_failures_total = refresh_failures_total + CASE WHEN $9 > failures THEN 1 ELSE 0 END, \
             lease_owner = NULL, lease_until = NULL WHERE identity = $13 AND lease_owner = $14",
        ),
        token,
    )
    .bind(token.updated_at)
    .bind(&token.identity)
    .bind(owner);
    Ok(execute_alone(store, update).await? == 1)
}

pub(super) async fn delete_registry_token<DB: Backend>(
    store: &SqlStore<DB>,
    identity: &str,
) -> Result<()> {
    let delete = sqlx::query("DELETE FROM registry_tokens WHERE identity = $1").bind(identity);
    execute_alone(store, delete).await?;
    Ok(())
}

/// The `CASE` spells out the stored text of [`RegistryTokenStatus::Pending`] and
/// [`RegistryTokenStatus::Expired`].
pub(super) async fn token_status_counts<DB: Backend>(
    store: &SqlStore<DB>,
    now: Timestamp,
) -> Result<Vec<(RegistryTokenStatus, i64)>> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CASE WHEN status = 'pending' THEN 'pending' \
         WHEN expires_at IS NOT NULL AND expires_at <= $1 THEN 'expired' \
         ELSE status END AS state, COUNT(*) AS tokens FROM registry_tokens GROUP BY 1 ORDER BY 1",
    )
    .bind(now)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    counts
        .into_iter()
        .map(|(state, tokens)| Ok((state.parse()?, tokens)))
        .collect()
}

#[derive(sqlx::FromRow)]
struct FreshnessRecord {
    workspace: String,
    credential: String,
    status: String,
    issued_at: i64,
    expires_at: Option<i64>,
    refresh_failures_total: i64,
}

/// Failing first (`failures > 0`), then the soonest expiry (a token that never expires
/// last: `COALESCE` because SQLite and PostgreSQL sort NULL at opposite ends).
pub(super) async fn credential_freshness<DB: Backend>(
    store: &SqlStore<DB>,
    limit: i64,
) -> Result<Limited<CredentialFreshness>> {
    let records: Vec<FreshnessRecord> = sqlx::query_as(
        "SELECT w.name AS workspace, c.name AS credential, t.status, t.issued_at, t.expires_at, \
         t.refresh_failures_total FROM credentials c JOIN workspaces w ON w.id = c.workspace_id \
         JOIN registry_tokens t ON t.identity = c.token_identity \
         ORDER BY CASE WHEN t.failures > 0 THEN 0 ELSE 1 END, \
         COALESCE(t.expires_at, 9223372036854775807), w.name, c.name LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    let (total,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM credentials c JOIN registry_tokens t ON t.identity = c.token_identity",
    )
    .fetch_one(&store.pool)
    .await
    .or_db()?;
    let rows = records
        .into_iter()
        .map(|record| {
            let status: RegistryTokenStatus = record.status.parse()?;
            let minted = status != RegistryTokenStatus::Pending;
            Ok(CredentialFreshness {
                workspace: record.workspace,
                credential: record.credential,
                status,
                last_success_at: minted.then_some(record.issued_at),
                expires_at: record.expires_at.filter(|_| minted),
                refresh_failures_total: record.refresh_failures_total,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Limited { rows, total })
}
