//! Moving a running deployment's keyring between a key file and AWS KMS
//! (`regkeeper key migrate --to-kms KEY-ID | --to-file PATH`), online, so that a crash
//! at any point loses nothing and no data key is re-wrapped twice.
//!
//! Every migration adds a master-key version, generated for the new home: the key that
//! seals new data has only ever lived there (a key that sat on disk is retired from
//! sealing when the keyring moves to KMS). Older versions move along, so everything
//! sealed before still opens, and data keys are re-wrapped once, under the new version.
//!
//! 1. **Stage**: the new keyring (every loaded version plus the new one) is written to
//!    the new home and read back: wrapped by KMS (`GenerateDataKey`, then `Decrypt` to
//!    verify) and kept in the migration row; or created as the key file (never over
//!    an existing file, except one holding exactly this keyring plus one unrecorded
//!    version, which an interrupted attempt left and is adopted). Then, in one
//!    transaction, the migration row (stage `staged`) and the new version's key check.
//! 2. **Switch**: the staged keyring is opened again and checked; then, in one
//!    transaction, the `master_keyring` row names the new home (compared with the
//!    generation read) and the migration becomes `switched`. This server swaps keys
//!    under the seal gate; other replicas follow the row on their next reload tick.
//! 3. **Re-wrap** every data key under the new version, skipping rows already under
//!    it — which is what makes a resumed migration re-wrap each key once — then the
//!    migration row is deleted.
//!
//! A crash before 1's transaction leaves nothing recorded (at most an unused KMS data
//! key or an adoptable file); after it, the old home still serves and running the same
//! command again resumes at 2; after 2, the new home serves (a restarted server opens
//! it from the row) and the same command resumes at 3. Another target is refused (409
//! `master_key_migration_in_progress`) while a migration is recorded, as is `key
//! rotate`. The old key file is left where it was: delete it once the migration is done.

use crate::crypto::{key_check, key_check_matches, MasterKeys};
use crate::domain::identity::Principal;
use crate::domain::{Error, Result};
use crate::key_file::{self, KeyFileError};
use crate::store::{KeyCheck, KeyHome, KeyMigration, KeyringRecord, MigrationStage};

use super::super::access::require_site_admin;
use super::super::App;
use super::home::{self, Home};

pub struct Migration {
    pub from: KeyHome,
    pub to: KeyHome,
    pub previous_version: u32,
    pub current_version: u32,
    /// Data keys this run re-wrapped (a resumed run counts only its own).
    pub rewrapped: u64,
    /// Whether this run continued a migration an earlier one recorded.
    pub resumed: bool,
    pub skipped: Vec<String>,
}

/// The command that finishes `migration`.
pub fn resume_command(target: &KeyHome) -> String {
    match target {
        KeyHome::Kms(key_id) => format!("regkeeper key migrate --to-kms {key_id}"),
        KeyHome::File(path) => format!("regkeeper key migrate --to-file {}", path.display()),
    }
}

/// What `key status` says of a recorded migration.
pub fn describe(migration: &KeyMigration) -> String {
    let stage = match migration.stage {
        MigrationStage::Staged => "staged: the new home holds the keyring, not yet switched to",
        MigrationStage::Switched => "switched: data keys are being re-wrapped",
    };
    format!(
        "moving the keyring to {} with new master key version {} ({stage}); if no server is doing it, finish it with `{}`",
        migration.target,
        migration.new_version,
        resume_command(&migration.target)
    )
}

pub fn in_progress(migration: &KeyMigration) -> Error {
    Error::conflict(
        "master_key_migration_in_progress",
        format!(
            "refused: a master key migration is recorded — {}",
            describe(migration)
        ),
    )
}

/// Moves the keyring to `target`, or continues the recorded move to it.
pub async fn migrate(
    app: &App,
    principal: &Principal,
    target: KeyHome,
    skip_unreadable: bool,
) -> Result<Migration> {
    let record = app.record(Some(principal), "master_key.migrate");
    app.audited(record.clone(), async {
        require_site_admin(principal, "moving the master keyring")?;
        let _rotation = app.rotation.lock().await;
        let keys = app.keyring.keys()?;
        let home = app.key_home.get();
        let from = home.home.clone();
        let (migration, resumed) = match app.store.key_migration().await? {
            Some(migration) if migration.target != target => return Err(in_progress(&migration)),
            Some(migration) => (migration, true),
            None if home.home == target => {
                return Err(Error::conflict(
                    "master_key_already_there",
                    format!("the keyring already lives in {target}; nothing to do"),
                ))
            }
            None => (
                stage(app, &home, &keys, &target, skip_unreadable).await?,
                false,
            ),
        };
        let app_record = record.clone();
        let keys = match migration.stage {
            MigrationStage::Staged => {
                let switched = std::sync::Arc::new(switch(app, &home, &keys, &migration).await?);
                app.store
                    .append_audit(app_record.detail(serde_json::json!({
                        "from": from.to_string(),
                        "to": target.to_string(),
                        "currentVersion": migration.new_version,
                        "stage": "switched",
                    })))
                    .await?;
                switched
            }
            MigrationStage::Switched => followed(app, &migration).await?,
        };
        let unreadable = super::unreadable_values(app, &keys).await?;
        let (rewrapped, skipped) = super::rewrap_all(app, &keys, &unreadable).await?;
        app.store.finish_key_migration().await?;
        tracing::info!(
            master_key.version = keys.current_version(),
            master_key.home = %target,
            rewrapped,
            resumed,
            "master_key.migrated"
        );
        Ok(Migration {
            from,
            to: target,
            previous_version: migration.from_version,
            current_version: migration.new_version,
            rewrapped,
            resumed,
            skipped,
        })
    })
    .await
}

/// Step 1: the new keyring written to `target` and verified, then the migration and
/// the new version's check recorded.
async fn stage(
    app: &App,
    home: &Home,
    keys: &MasterKeys,
    target: &KeyHome,
    skip_unreadable: bool,
) -> Result<KeyMigration> {
    super::preflight(app, keys, skip_unreadable).await?;
    if let KeyHome::File(path) = &home.home {
        if let Some(reason) = super::check_key_file(app, keys) {
            return Err(super::file_changed(path, &reason));
        }
    }
    let record = deployment_record(app, home, keys).await?;
    let (new_keys, staged_keyring) = match target {
        KeyHome::Kms(key_id) => {
            let new_keys = keys.with_new_version();
            let wrapped = home::wrap_keyring(&app.config, key_id, &record.deployment_id, &new_keys)
                .await
                .map_err(super::kms_failed)?;
            let read_back =
                home::unwrap_keyring(&app.config, key_id, &record.deployment_id, &wrapped)
                    .await
                    .map_err(|reason| {
                        Error::unavailable(
                            "master_key_kms_unavailable",
                            format!("nothing changed: the keyring wrapped by {target} could not be read back: {reason}"),
                        )
                    })?;
            ensure_same(&read_back, &new_keys, target)?;
            (new_keys, Some(wrapped))
        }
        KeyHome::File(path) => (stage_file(path, keys)?, None),
    };
    let version = new_keys.current_version();
    let new_key = new_keys.get(version).expect("the new version exists");
    let migration = KeyMigration {
        target: target.clone(),
        from_version: keys.current_version(),
        new_version: version,
        stage: MigrationStage::Staged,
        staged_keyring,
        started_at: app.now(),
    };
    app.store
        .start_key_migration(
            &migration,
            &KeyCheck {
                version,
                check_value: key_check(new_key, version),
                created_at: app.now(),
            },
        )
        .await?;
    tracing::info!(master_key.home = %target, master_key.version = version, "master_key.migration_staged");
    Ok(migration)
}

/// The `master_keyring` row, made now for a deployment that has none (a key file
/// named by the settings): its deployment id is the KMS encryption context.
async fn deployment_record(app: &App, home: &Home, keys: &MasterKeys) -> Result<KeyringRecord> {
    let record = match app.store.keyring_record().await? {
        Some(record) => record,
        None => {
            app.store
                .insert_keyring_record(&KeyringRecord {
                    deployment_id: uuid::Uuid::new_v4().to_string(),
                    home: home.home.clone(),
                    wrapped_keyring: None,
                    current_version: keys.current_version(),
                    generation: 1,
                    updated_at: app.now(),
                })
                .await?
        }
    };
    if record.home != home.home {
        return Err(Error::conflict(
            "rotation_in_progress",
            format!(
                "the database says the keyring lives in {}, not {} as this server loaded it; wait for this server to follow (10 s), then retry",
                record.home, home.home
            ),
        ));
    }
    app.key_home.set(Home {
        generation: Some(record.generation),
        ..home.clone()
    });
    Ok(record)
}

/// The new key file at `path`: created with one more version than `keys`, or adopted
/// if an interrupted attempt left exactly that (every loaded version and one more).
fn stage_file(path: &std::path::Path, keys: &MasterKeys) -> Result<MasterKeys> {
    let write_failed = |error: KeyFileError| {
        Error::unavailable(
            "master_key_write_failed",
            format!("nothing changed: {error}"),
        )
    };
    match key_file::load(path) {
        Err(KeyFileError::Missing { .. }) => {
            let new_keys = keys.with_new_version();
            key_file::create(path, &new_keys).map_err(write_failed)?;
            let read_back = key_file::load(path).map_err(write_failed)?;
            ensure_same(&read_back, &new_keys, &KeyHome::File(path.to_owned()))?;
            Ok(new_keys)
        }
        Ok(on_disk)
            if key_file::holds_every_version(&on_disk, keys).is_none()
                && on_disk.current_version() == keys.current_version() + 1
                && on_disk.versions().count() == keys.versions().count() + 1 =>
        {
            tracing::info!(path = %path.display(), "master_key.migration_file_adopted");
            Ok(on_disk)
        }
        _ => Err(Error::conflict(
            "master_key_file_exists",
            format!(
                "nothing changed: {} exists and is not a key file an earlier attempt of this migration wrote; choose another path, or move that file away",
                path.display()
            ),
        )),
    }
}

/// Fails unless `read_back` holds exactly `written`'s versions, each the same key.
fn ensure_same(read_back: &MasterKeys, written: &MasterKeys, target: &KeyHome) -> Result<()> {
    if read_back.current_version() == written.current_version()
        && key_file::holds_every_version(read_back, written).is_none()
        && key_file::holds_every_version(written, read_back).is_none()
    {
        Ok(())
    } else {
        Err(Error::unavailable(
            "master_key_write_failed",
            format!("nothing changed: the keyring read back from {target} is not the one written"),
        ))
    }
}

/// Step 2: the staged keyring opened and checked, then the new home recorded with the
/// stage, then the keys swapped in.
async fn switch(
    app: &App,
    home: &Home,
    keys: &MasterKeys,
    migration: &KeyMigration,
) -> Result<MasterKeys> {
    let current = app.store.keyring_record().await?.ok_or_else(|| {
        Error::internal("a staged master key migration without a master_keyring row")
    })?;
    let new_keys = match &migration.target {
        KeyHome::Kms(key_id) => {
            let wrapped = migration.staged_keyring.as_deref().ok_or_else(|| {
                Error::internal("a staged migration to KMS without its wrapped keyring")
            })?;
            home::unwrap_keyring(&app.config, key_id, &current.deployment_id, wrapped)
                .await
                .map_err(|reason| {
                    Error::unavailable(
                        "master_key_kms_unavailable",
                        format!("not switched: {reason}"),
                    )
                })?
        }
        KeyHome::File(path) => key_file::load(path).map_err(|error| {
            Error::unavailable(
                "master_key_unavailable",
                format!("not switched: the staged key file cannot be read: {error}"),
            )
        })?,
    };
    let checks = app.store.key_checks().await?;
    let version = migration.new_version;
    let staged_ok = new_keys.current_version() == version
        && key_file::holds_every_version(&new_keys, keys).is_none()
        && new_keys.get(version).is_some_and(|key| {
            checks.iter().any(|check| {
                check.version == version && key_check_matches(key, version, &check.check_value)
            })
        });
    if !staged_ok {
        return Err(Error::conflict(
            "master_key_staged_keyring_differs",
            format!(
                "not switched: the keyring staged in {} no longer holds this server's keys and version {version} as recorded; it was changed after staging — restore it, then retry",
                migration.target
            ),
        ));
    }
    let generation = current.generation + 1;
    let switched = KeyringRecord {
        home: migration.target.clone(),
        wrapped_keyring: migration.staged_keyring.clone(),
        current_version: version,
        generation,
        updated_at: app.now(),
        deployment_id: current.deployment_id.clone(),
    };
    if current.home != home.home
        || !app
            .store
            .switch_key_home(current.generation, &switched)
            .await?
    {
        return Err(Error::conflict(
            "rotation_in_progress",
            "not switched: the keyring in the database changed meanwhile (another replica rotated); retry",
        ));
    }
    {
        let _swap = app.seal_gate.write().await;
        app.keyring.replace(new_keys.clone());
        app.key_home.set(Home {
            home: migration.target.clone(),
            generation: Some(generation),
            retry: false,
            settings_mismatch: home::settings_mismatch(&app.config, &migration.target),
        });
    }
    tracing::info!(master_key.home = %migration.target, master_key.version = version, "master_key.migration_switched");
    Ok(new_keys)
}

/// A switched migration being resumed: this server must already serve from the new
/// home (it follows the database within one reload tick; a restarted one opens it at
/// start), holding the new version.
async fn followed(app: &App, migration: &KeyMigration) -> Result<std::sync::Arc<MasterKeys>> {
    if app.key_home.get().home != migration.target {
        super::reopen(app, "master_key.home_followed").await;
    }
    let keys = app.keyring.keys()?;
    if app.key_home.get().home != migration.target
        || keys.current_version() != migration.new_version
    {
        return Err(Error::unavailable(
            "master_key_unavailable",
            format!(
                "this server does not serve from {} with version {} yet; see `regkeeper key status`",
                migration.target, migration.new_version
            ),
        ));
    }
    Ok(keys)
}
