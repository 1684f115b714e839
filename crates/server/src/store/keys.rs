//! What the master key touches in the database: its check values (one per key
//! version), and, for a rotation, every sealed value read page by page and its wrapped
//! data key swapped for one wrapped under the new key. Also the three columns every
//! sealed value is stored in, as the tables that hold one read and write them.

use super::backend::Backend;
use super::errors::OrDatabase;
use super::sql::{commit, execute_alone, SqlStore, Transaction};
use crate::domain::credential::SealedSecret;
use crate::domain::{Error, Result};
use crate::store::{KeyCheck, SealedKind, SealedRef};

/// A sealed secret's columns, as a credential or a sync target stores it (NULL when it
/// has none).
#[derive(sqlx::FromRow)]
pub(super) struct SealedColumns {
    secret_ciphertext: Option<Vec<u8>>,
    secret_wrapped_key: Option<Vec<u8>>,
    secret_key_version: Option<i64>,
}

impl SealedColumns {
    /// The secret, if the row holds one whole.
    pub(super) fn into_sealed(self) -> Result<Option<SealedSecret>> {
        Ok(
            match (
                self.secret_ciphertext,
                self.secret_wrapped_key,
                self.secret_key_version,
            ) {
                (Some(ciphertext), Some(wrapped_key), Some(key_version)) => Some(SealedSecret {
                    ciphertext,
                    wrapped_key,
                    key_version: u32::try_from(key_version)
                        .map_err(|_| Error::internal("stored key version out of range"))?,
                }),
                _ => None,
            },
        )
    }

    /// The secret as a rotation reads it: a damaged row (ciphertext or wrapped key
    /// NULL, a key version NULL or out of range) comes back with the missing part empty
    /// and key version 0, which no master key opens, so the rotation names it as
    /// unreadable by its label instead of failing as a whole.
    fn into_sealed_or_unreadable(self) -> SealedSecret {
        SealedSecret {
            ciphertext: self.secret_ciphertext.unwrap_or_default(),
            wrapped_key: self.secret_wrapped_key.unwrap_or_default(),
            key_version: self
                .secret_key_version
                .and_then(|version| u32::try_from(version).ok())
                .unwrap_or(0),
        }
    }
}

/// The columns `sealed` is written to: ciphertext, wrapped key, key version.
pub(super) fn sealed_columns(
    sealed: Option<&SealedSecret>,
) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>) {
    match sealed {
        Some(sealed) => (
            Some(sealed.ciphertext.clone()),
            Some(sealed.wrapped_key.clone()),
            Some(i64::from(sealed.key_version)),
        ),
        None => (None, None, None),
    }
}

#[derive(sqlx::FromRow)]
struct KeyCheckRecord {
    version: i64,
    check_value: Vec<u8>,
    created_at: i64,
}

impl TryFrom<KeyCheckRecord> for KeyCheck {
    type Error = Error;

    fn try_from(record: KeyCheckRecord) -> Result<Self> {
        Ok(KeyCheck {
            version: u32::try_from(record.version)
                .map_err(|_| Error::internal("key check version out of range"))?,
            check_value: record.check_value,
            created_at: record.created_at,
        })
    }
}

/// A row of [`sealed_select`].
#[derive(sqlx::FromRow)]
struct SealedRecord {
    id: String,
    workspace_id: String,
    secret_version: i64,
    #[sqlx(flatten)]
    sealed: SealedColumns,
    label: String,
}

impl From<SealedRecord> for SealedRef {
    fn from(record: SealedRecord) -> Self {
        SealedRef {
            owner_id: record.id,
            workspace_id: record.workspace_id,
            secret_version: record.secret_version,
            sealed: record.sealed.into_sealed_or_unreadable(),
            label: record.label,
        }
    }
}

/// Every sealed value of one kind as the same columns (`id`, `workspace_id`,
/// `secret_version`, the sealed secret's three, and `label`), for the rotation's reads.
/// Placeholder token rows (`pending`) hold nothing sealed.
fn sealed_select(kind: SealedKind) -> &'static str {
    match kind {
        SealedKind::CredentialSecret => {
            "SELECT c.id AS id, c.workspace_id AS workspace_id, c.secret_version AS secret_version, \
             c.secret_ciphertext AS secret_ciphertext, c.secret_wrapped_key AS secret_wrapped_key, \
             c.secret_key_version AS secret_key_version, \
             'credential rk:' || w.name || ':credential/' || c.name AS label \
             FROM credentials c JOIN workspaces w ON w.id = c.workspace_id \
             WHERE c.secret_key_version IS NOT NULL"
        }
        SealedKind::SyncSigningKey => {
            "SELECT t.id AS id, c.workspace_id AS workspace_id, CAST(1 AS BIGINT) AS secret_version, \
             t.secret_ciphertext AS secret_ciphertext, t.secret_wrapped_key AS secret_wrapped_key, \
             t.secret_key_version AS secret_key_version, \
             'sync target ' || t.id || ' of rk:' || w.name || ':credential/' || c.name AS label \
             FROM sync_targets t JOIN credentials c ON c.id = t.credential_id \
             JOIN workspaces w ON w.id = c.workspace_id WHERE t.secret_key_version IS NOT NULL"
        }
        SealedKind::RegistryToken => {
            "SELECT identity AS id, CAST('' AS TEXT) AS workspace_id, issued_at AS secret_version, \
             token_ciphertext AS secret_ciphertext, token_wrapped_key AS secret_wrapped_key, \
             token_key_version AS secret_key_version, 'token ' || identity AS label \
             FROM registry_tokens WHERE status <> 'pending'"
        }
    }
}

pub(super) async fn key_checks<DB: Backend>(store: &SqlStore<DB>) -> Result<Vec<KeyCheck>> {
    let checks: Vec<KeyCheckRecord> = sqlx::query_as(
        "SELECT version, check_value, created_at FROM master_key_checks ORDER BY version",
    )
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    checks.into_iter().map(KeyCheck::try_from).collect()
}

pub(super) async fn ensure_key_check<DB: Backend>(
    store: &SqlStore<DB>,
    check: &KeyCheck,
) -> Result<KeyCheck> {
    let mut transaction = store.begin_write().await?;
    let stored = insert_key_check(&mut transaction, check).await?;
    commit(transaction).await?;
    Ok(stored)
}

/// Inserts the check for its version unless one exists, in `transaction`; the stored
/// one either way.
pub(super) async fn insert_key_check<DB: Backend>(
    transaction: &mut Transaction<DB>,
    check: &KeyCheck,
) -> Result<KeyCheck> {
    sqlx::query(
        "INSERT INTO master_key_checks (version, check_value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (version) DO NOTHING",
    )
    .bind(i64::from(check.version))
    .bind(&check.check_value)
    .bind(check.created_at)
    .execute(&mut **transaction)
    .await
    .or_db()?;
    let (check_value, created_at): (Vec<u8>, i64) =
        sqlx::query_as("SELECT check_value, created_at FROM master_key_checks WHERE version = $1")
            .bind(i64::from(check.version))
            .fetch_one(&mut **transaction)
            .await
            .or_db()?;
    Ok(KeyCheck {
        version: check.version,
        check_value,
        created_at,
    })
}

pub(super) async fn sealed_page<DB: Backend>(
    store: &SqlStore<DB>,
    kind: SealedKind,
    after: &str,
    limit: i64,
) -> Result<Vec<SealedRef>> {
    let statement = format!(
        "SELECT * FROM ({}) sealed WHERE id > $1 ORDER BY id LIMIT $2",
        sealed_select(kind)
    );
    let page: Vec<SealedRecord> = sqlx::query_as(&statement)
        .bind(after)
        .bind(limit)
        .fetch_all(&store.pool)
        .await
        .or_db()?;
    Ok(page.into_iter().map(SealedRef::from).collect())
}

pub(super) async fn replace_wrapped_key<DB: Backend>(
    store: &SqlStore<DB>,
    kind: SealedKind,
    owner_id: &str,
    old: &SealedSecret,
    new: &SealedSecret,
) -> Result<bool> {
    let statement = match kind {
        SealedKind::CredentialSecret => {
            "UPDATE credentials SET secret_wrapped_key = $1, secret_key_version = $2 \
             WHERE id = $3 AND secret_wrapped_key = $4 AND secret_key_version = $5"
        }
        SealedKind::SyncSigningKey => {
            "UPDATE sync_targets SET secret_wrapped_key = $1, secret_key_version = $2 \
             WHERE id = $3 AND secret_wrapped_key = $4 AND secret_key_version = $5"
        }
        SealedKind::RegistryToken => {
            "UPDATE registry_tokens SET token_wrapped_key = $1, token_key_version = $2 \
             WHERE identity = $3 AND token_wrapped_key = $4 AND token_key_version = $5"
        }
    };
    let replace = sqlx::query(statement)
        .bind(&new.wrapped_key)
        .bind(i64::from(new.key_version))
        .bind(owner_id)
        .bind(&old.wrapped_key)
        .bind(i64::from(old.key_version));
    Ok(execute_alone(store, replace).await? == 1)
}
