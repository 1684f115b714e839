//! Where the master keyring lives (`master_keyring`, one row or none) and a move of it
//! between homes under way (`master_key_migrations`, one row or none). Every write that
//! replaces the keyring compares the generation it read, so two replicas never both
//! rotate, and a migration's switch writes the new home and its stage in one
//! transaction. The wrapped keyring is ciphertext (KMS envelope); nothing here holds
//! key material in plain.

use std::path::PathBuf;

use super::backend::Backend;
use super::errors::OrDatabase;
use super::keys::insert_key_check;
use super::sql::{commit, SqlStore};
use crate::domain::{Error, Result};
use crate::store::KeyCheck;

/// Where the keyring is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHome {
    /// A key file at this path (each replica reads its own copy).
    File(PathBuf),
    /// Wrapped by this AWS KMS key, in the database.
    Kms(String),
}

impl KeyHome {
    fn columns(&self) -> (&'static str, Option<String>, Option<String>) {
        match self {
            Self::File(path) => ("file", None, Some(path.display().to_string())),
            Self::Kms(key_id) => ("kms", Some(key_id.clone()), None),
        }
    }

    fn from_columns(
        home: &str,
        kms_key_id: Option<String>,
        file_path: Option<String>,
    ) -> Result<Self> {
        match (home, kms_key_id, file_path) {
            ("kms", Some(key_id), _) => Ok(Self::Kms(key_id)),
            ("file", _, Some(path)) => Ok(Self::File(PathBuf::from(path))),
            _ => Err(Error::internal(format!(
                "master_keyring names home `{home}` without its key id or path"
            ))),
        }
    }
}

impl std::fmt::Display for KeyHome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(formatter, "key file {}", path.display()),
            Self::Kms(key_id) => write!(formatter, "AWS KMS key {key_id}"),
        }
    }
}

/// The `master_keyring` row.
#[derive(Clone)]
pub struct KeyringRecord {
    /// The deployment's id: the KMS encryption context.
    pub deployment_id: String,
    pub home: KeyHome,
    /// The keyring wrapped by KMS (home `Kms` only).
    pub wrapped_keyring: Option<Vec<u8>>,
    pub current_version: u32,
    pub generation: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStage {
    /// The new home holds the new keyring, verified; the old one is still the home.
    Staged,
    /// The new home is the home; data keys are being re-wrapped.
    Switched,
}

/// The `master_key_migrations` row.
#[derive(Clone)]
pub struct KeyMigration {
    pub target: KeyHome,
    pub from_version: u32,
    pub new_version: u32,
    pub stage: MigrationStage,
    /// The new keyring wrapped by the target KMS key (target `Kms` only).
    pub staged_keyring: Option<Vec<u8>>,
    pub started_at: i64,
}

#[derive(sqlx::FromRow)]
struct KeyringRow {
    deployment_id: String,
    home: String,
    kms_key_id: Option<String>,
    file_path: Option<String>,
    wrapped_keyring: Option<Vec<u8>>,
    current_version: i64,
    generation: i64,
    updated_at: i64,
}

fn version(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::internal("stored key version out of range"))
}

impl TryFrom<KeyringRow> for KeyringRecord {
    type Error = Error;

    fn try_from(row: KeyringRow) -> Result<Self> {
        Ok(Self {
            deployment_id: row.deployment_id,
            home: KeyHome::from_columns(&row.home, row.kms_key_id, row.file_path)?,
            wrapped_keyring: row.wrapped_keyring,
            current_version: version(row.current_version)?,
            generation: row.generation,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MigrationRow {
    home: String,
    kms_key_id: Option<String>,
    file_path: Option<String>,
    from_version: i64,
    new_version: i64,
    stage: String,
    staged_keyring: Option<Vec<u8>>,
    started_at: i64,
}

const KEYRING_COLUMNS: &str = "deployment_id, home, kms_key_id, file_path, wrapped_keyring, \
     current_version, generation, updated_at";

pub(super) async fn keyring_record<DB: Backend>(
    store: &SqlStore<DB>,
) -> Result<Option<KeyringRecord>> {
    let row: Option<KeyringRow> = sqlx::query_as(&format!(
        "SELECT {KEYRING_COLUMNS} FROM master_keyring WHERE id = 1"
    ))
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    row.map(KeyringRecord::try_from).transpose()
}

/// Inserts `record` unless a row exists; the stored row either way (another replica's,
/// if it was first).
pub(super) async fn insert_keyring_record<DB: Backend>(
    store: &SqlStore<DB>,
    record: &KeyringRecord,
) -> Result<KeyringRecord> {
    let mut transaction = store.begin_write().await?;
    let (home, kms_key_id, file_path) = record.home.columns();
    sqlx::query(&format!(
        "INSERT INTO master_keyring (id, {KEYRING_COLUMNS}) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(&record.deployment_id)
    .bind(home)
    .bind(kms_key_id)
    .bind(file_path)
    .bind(&record.wrapped_keyring)
    .bind(i64::from(record.current_version))
    .bind(record.generation)
    .bind(record.updated_at)
    .execute(&mut *transaction)
    .await
    .or_db()?;
    let row: KeyringRow = sqlx::query_as(&format!(
        "SELECT {KEYRING_COLUMNS} FROM master_keyring WHERE id = 1"
    ))
    .fetch_one(&mut *transaction)
    .await
    .or_db()?;
    commit(transaction).await?;
    KeyringRecord::try_from(row)
}

async fn update_keyring<DB: Backend>(
    transaction: &mut super::sql::Transaction<DB>,
    expected_generation: i64,
    record: &KeyringRecord,
) -> Result<bool> {
    let (home, kms_key_id, file_path) = record.home.columns();
    let changed = sqlx::query(
        "UPDATE master_keyring SET home = $1, kms_key_id = $2, file_path = $3, \
         wrapped_keyring = $4, current_version = $5, generation = $6, updated_at = $7 \
         WHERE id = 1 AND generation = $8",
    )
    .bind(home)
    .bind(kms_key_id)
    .bind(file_path)
    .bind(&record.wrapped_keyring)
    .bind(i64::from(record.current_version))
    .bind(record.generation)
    .bind(record.updated_at)
    .bind(expected_generation)
    .execute(&mut **transaction)
    .await
    .or_db()?;
    Ok(super::backend::RowsAffected::rows_affected(&changed) == 1)
}

/// Replaces the record if its generation is still `expected_generation`, recording
/// `new_check` (the new current version's) in the same transaction: false if the
/// keyring changed; 409 `rotation_in_progress`, nothing written, if another key was
/// recorded for that version.
pub(super) async fn replace_keyring<DB: Backend>(
    store: &SqlStore<DB>,
    expected_generation: i64,
    record: &KeyringRecord,
    new_check: Option<&KeyCheck>,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    if !update_keyring(&mut transaction, expected_generation, record).await? {
        return Ok(false);
    }
    if let Some(check) = new_check {
        let stored = insert_key_check(&mut transaction, check).await?;
        if stored.check_value != check.check_value {
            // Dropped uncommitted: rolled back.
            return Err(Error::conflict(
                "rotation_in_progress",
                format!(
                    "another replica recorded a different key for master key version {}; nothing changed, retry",
                    check.version
                ),
            ));
        }
    }
    commit(transaction).await?;
    Ok(true)
}

pub(super) async fn key_migration<DB: Backend>(
    store: &SqlStore<DB>,
) -> Result<Option<KeyMigration>> {
    let row: Option<MigrationRow> = sqlx::query_as(
        "SELECT home, kms_key_id, file_path, from_version, new_version, stage, staged_keyring, \
         started_at FROM master_key_migrations WHERE id = 1",
    )
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(KeyMigration {
        target: KeyHome::from_columns(&row.home, row.kms_key_id, row.file_path)?,
        from_version: version(row.from_version)?,
        new_version: version(row.new_version)?,
        stage: match row.stage.as_str() {
            "staged" => MigrationStage::Staged,
            _ => MigrationStage::Switched,
        },
        staged_keyring: row.staged_keyring,
        started_at: row.started_at,
    }))
}

/// Records a staged migration and the new version's key check in one transaction. Fails
/// with 409, nothing recorded, if a migration is recorded already
/// (`master_key_migration_in_progress`) or another key holds that version
/// (`rotation_in_progress`).
pub(super) async fn start_key_migration<DB: Backend>(
    store: &SqlStore<DB>,
    migration: &KeyMigration,
    check: &KeyCheck,
) -> Result<KeyCheck> {
    let mut transaction = store.begin_write().await?;
    let (home, kms_key_id, file_path) = migration.target.columns();
    let inserted = sqlx::query(
        "INSERT INTO master_key_migrations (id, home, kms_key_id, file_path, from_version, \
         new_version, stage, staged_keyring, started_at) \
         VALUES (1, $1, $2, $3, $4, $5, 'staged', $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(home)
    .bind(kms_key_id)
    .bind(file_path)
    .bind(i64::from(migration.from_version))
    .bind(i64::from(migration.new_version))
    .bind(&migration.staged_keyring)
    .bind(migration.started_at)
    .execute(&mut *transaction)
    .await
    .or_db()?;
    if super::backend::RowsAffected::rows_affected(&inserted) != 1 {
        return Err(Error::conflict(
            "master_key_migration_in_progress",
            "another master key migration was recorded at the same time; see `regkeeper key status`",
        ));
    }
    let stored = insert_key_check(&mut transaction, check).await?;
    if stored.check_value != check.check_value {
        // Dropped uncommitted: rolled back, no migration recorded.
        return Err(Error::conflict(
            "rotation_in_progress",
            format!(
                "another replica recorded a different key for master key version {}; nothing changed, retry",
                check.version
            ),
        ));
    }
    commit(transaction).await?;
    Ok(stored)
}

/// Makes the migration's target the keyring's home (compared with the generation read)
/// and marks the migration switched, in one transaction; false if the keyring changed.
pub(super) async fn switch_key_home<DB: Backend>(
    store: &SqlStore<DB>,
    expected_generation: i64,
    record: &KeyringRecord,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    if !update_keyring(&mut transaction, expected_generation, record).await? {
        return Ok(false);
    }
    sqlx::query("UPDATE master_key_migrations SET stage = 'switched' WHERE id = 1")
        .execute(&mut *transaction)
        .await
        .or_db()?;
    commit(transaction).await?;
    Ok(true)
}

pub(super) async fn finish_key_migration<DB: Backend>(store: &SqlStore<DB>) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    sqlx::query("DELETE FROM master_key_migrations WHERE id = 1")
        .execute(&mut *transaction)
        .await
        .or_db()?;
    commit(transaction).await
}
