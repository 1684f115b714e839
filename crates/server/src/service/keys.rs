//! Loading the master keys at start (and checking them against the database) and
//! rotating them online. Where the keyring lives — a key file, or wrapped by AWS KMS in
//! the database, the database's record winning over the settings — is [`home`]'s;
//! moving it between the two online is [`migration`]'s.
//!
//! Start-up ([`load_keyring`]), for a key file: the database's key checks (one per master-key version
//! ever used) are read; a missing key file with no checks is a new installation, so
//! version 1 is generated and created (never over an existing file); a missing file
//! with checks, or a malformed one, leaves the keyring unavailable with a reason naming
//! what to restore. Every version with a check must be in the file and match it;
//! versions new to the database get their check recorded (`ensure_key_check`, which
//! also catches two replicas generating different keys for one version). Whatever
//! fails, the server starts: secret operations answer 503 `master_key_unavailable`,
//! `/readyz` is 503, and nothing is regenerated or overwritten. A keyring in KMS is
//! checked the same way; if KMS is unreachable or refuses, the server starts sealed and
//! [`reload_if_changed`] retries (1 s, doubling to 30 s) until it answers. A version
//! recorded by a staged, not yet switched, migration may be missing from the old home.
//!
//! Rotation ([`rotate`], site administrators only, one at a time per process under
//! `App.rotation`): refused with 409 `rotation_in_progress` when the database already
//! knows a newer version (another replica rotated), with 409 `master_key_file_changed`
//! when the key file no longer holds the loaded keys, and with 422
//! `master_key_unreadable_values` when a sealed value cannot be opened (unless asked to
//! skip those; an unreadable minted token is only reported, since it is re-minted).
//! Then: a new version becomes current (`MasterKeys::with_new_version`), the audit
//! entry is written, the key file is replaced atomically, and the version's check is
//! recorded — if another replica recorded a different key for it first, the previous
//! file is restored and the answer is 409. In KMS: the new keyring is wrapped (one
//! `GenerateDataKey`) and replaces the database's, compared with the generation this
//! server loaded, with the version's check in the same transaction (409, nothing
//! written, if another replica got there first). A rotation is refused (409
//! `master_key_migration_in_progress`) while a migration is recorded. Holding `App.seal_gate` exclusively (no
//! secret sealed under the old key is still on its way to the store), the keyring
//! swaps keys; then every data key is re-wrapped page by page (the ciphertext is left
//! alone), each swapped in only if the row still holds the old wrapped key, so a
//! concurrent update is never undone.
//!
//! Other replicas are not told: every 10 s [`reload_if_changed`] reads the database's
//! keyring row — a new home (a migration switched) is followed, a new generation of a
//! KMS keyring unwrapped once — and takes a key file that
//! holds a newer version (and every loaded one unchanged) once it matches the
//! database's checks; a file that no longer holds the loaded keys is reported (`key
//! status`, a gauge, one warning) and never written over. Until a replica has the new
//! file it seals under the old version, which everyone can still open.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::crypto::{key_check, key_check_matches, Binding, Keyring, MasterKeys};
use crate::domain::identity::Principal;
use crate::domain::{Error, Result};
use crate::key_file::{self, FileState, KeyFileError};
use crate::store::{KeyCheck, KeyHome, KeyringRecord, SealedKind, Store};

use super::access::require_site_admin;
use super::App;

pub mod home;
pub mod migration;

use home::{Home, HomeState};

const REWRAP_BATCH: i64 = 200;

/// Opens the keyring where it lives (see [`home`]), never failing: problems leave it
/// unavailable with a reason, so the server still starts, answers metadata requests
/// and refuses secret ones with 503. A key file is generated only when the database
/// holds no sealed data yet; an existing key file is never overwritten.
pub async fn load_keyring(store: &dyn Store, config: &Config, now: i64) -> (Keyring, HomeState) {
    let (result, home) = home::open(store, config, now).await;
    if let Some(mismatch) = &home.settings_mismatch {
        tracing::warn!(reason = %mismatch, "master_key.settings_mismatch");
    }
    let keyring = match result {
        Ok(keys) => {
            if let KeyHome::File(path) = &home.home {
                if key_file::too_permissive(path) {
                    tracing::warn!(path = %path.display(), "master_key.file_permissions_too_open");
                }
            }
            tracing::info!(
                master_key.version = keys.current_version(),
                master_key.home = %home.home,
                "master_key.ready"
            );
            Keyring::ready(keys)
        }
        Err(reason) => {
            tracing::error!(reason = %reason, retry = home.retry, "master_key.unavailable");
            Keyring::unavailable(reason)
        }
    };
    (keyring, HomeState::new(home))
}

/// The keyring in the key file at `path`, generated there if the database has no
/// sealed data yet and the file is missing.
pub(super) async fn load_file(
    store: &dyn Store,
    path: &Path,
    now: i64,
) -> Result<MasterKeys, String> {
    let checks = store
        .key_checks()
        .await
        .map_err(|error| error.to_string())?;
    let keys = match key_file::load(path) {
        Ok(keys) => keys,
        Err(KeyFileError::Missing { .. }) if checks.is_empty() => {
            let keys = MasterKeys::generate();
            key_file::create(path, &keys).map_err(|error| error.to_string())?;
            tracing::info!(path = %path.display(), "master_key.generated");
            keys
        }
        Err(KeyFileError::Missing { .. }) => {
            let versions: Vec<String> = checks
                .iter()
                .map(|check| check.version.to_string())
                .collect();
            return Err(format!(
                "master key file {} is missing, but this database holds data sealed with master key version {}; restore the key file (or point REGKEEPER_MASTER_KEY_FILE at it)",
                path.display(),
                versions.join(", ")
            ));
        }
        Err(error) => return Err(error.to_string()),
    };
    verify_against(store, &keys, checks, &KeyHome::File(path.to_owned()), now).await?;
    Ok(keys)
}

/// Every key version the database knows must be in the file and match; versions new
/// to the database get their check recorded.
pub(super) async fn verify_against(
    store: &dyn Store,
    keys: &MasterKeys,
    checks: Vec<KeyCheck>,
    home: &KeyHome,
    now: i64,
) -> Result<(), String> {
    let source = match home {
        KeyHome::File(path) => format!("master key file {}", path.display()),
        KeyHome::Kms(key_id) => format!("the keyring wrapped by AWS KMS key {key_id}"),
    };
    // A migration staged but not switched has recorded its new version, which only the
    // new home holds so far.
    let staged = store
        .key_migration()
        .await
        .map_err(|error| error.to_string())?
        .filter(|migration| migration.stage == crate::store::MigrationStage::Staged)
        .map(|migration| migration.new_version);
    for check in &checks {
        if keys.get(check.version).is_none() && Some(check.version) == staged {
            continue;
        }
        let key = keys.get(check.version).ok_or_else(|| {
            format!(
                "{source} lacks version {}, which this database uses; restore the complete keyring",
                check.version
            )
        })?;
        if !key_check_matches(key, check.version, &check.check_value) {
            return Err(format!(
                "{source} does not match this database (version {} differs); the server will not overwrite anything — restore the right keyring",
                check.version
            ));
        }
    }
    for (version, key) in keys.versions() {
        if checks.iter().any(|check| check.version == version) {
            continue;
        }
        let stored = store
            .ensure_key_check(&KeyCheck {
                version,
                check_value: key_check(key, version),
                created_at: now,
            })
            .await
            .map_err(|error| error.to_string())?;
        if !key_check_matches(key, version, &stored.check_value) {
            return Err(format!(
                "master key version {version} in {source} differs from the one another replica recorded"
            ));
        }
    }
    Ok(())
}

pub struct Rotation {
    pub previous_version: u32,
    pub current_version: u32,
    pub rewrapped: u64,
    /// Sealed values that could not be opened and were left as they were (only with
    /// `skip_unreadable`), by label.
    pub skipped: Vec<String>,
}

/// How many unreadable values a refusal names before it says "and N more".
const NAMED_IN_REFUSAL: usize = 20;

/// Adds a master key version, makes it current and re-wraps every data key under it,
/// in batches while the server keeps serving.
///
/// Before anything changes, every sealed value (credential secrets, sync targets'
/// signing keys, minted tokens) is opened with the loaded keys, and the key file is
/// compared with them: a value that cannot be opened refuses the rotation — naming
/// each one, nothing changed — unless `skip_unreadable` is given, and then the
/// rotation completes for every readable value and leaves those as they are (they stay
/// unreadable either way); a key file that no longer holds the loaded keys refuses it
/// always, and is never overwritten. Then the audit entry is written (no entry, no
/// rotation), then the key file, so that a crash leaves at worst an unused version in
/// the file, never a database that names a key the file lacks. Old versions stay in
/// the file; other replicas pick the new version up when they next reload it (see
/// [`reload_if_changed`]).
pub async fn rotate(app: &App, principal: &Principal, skip_unreadable: bool) -> Result<Rotation> {
    let record = app.record(Some(principal), "master_key.rotate");
    app.audited(record.clone(), async {
        require_site_admin(principal, "rotating the master key")?;
        let _rotation = app.rotation.lock().await;
        let keys = app.keyring.keys()?;
        if let Some(migration) = app.store.key_migration().await? {
            return Err(migration::in_progress(&migration));
        }
        let home = app.key_home.get();
        if let KeyHome::File(path) = &home.home {
            if let Some(reason) = check_key_file(app, &keys) {
                return Err(file_changed(path, &reason));
            }
        }
        let unreadable = preflight(app, &keys, skip_unreadable).await?;
        let labels: Vec<&str> = unreadable
            .iter()
            .map(|value| value.label.as_str())
            .collect();
        let rotated = keys.with_new_version();
        let version = rotated.current_version();
        app.store
            .append_audit(record.clone().detail(serde_json::json!({
                "previousVersion": keys.current_version(),
                "currentVersion": version,
                "stage": "started",
                "skipUnreadable": labels,
            })))
            .await?;
        match &home.home {
            KeyHome::File(path) => store_in_file(app, path, &keys, &rotated).await?,
            KeyHome::Kms(key_id) => store_in_kms(app, &home, key_id, &rotated).await?,
        }
        {
            let _swap = app.seal_gate.write().await;
            app.keyring.replace(rotated.clone());
        }
        let (rewrapped, skipped) = rewrap_all(app, &rotated, &unreadable).await?;
        tracing::info!(
            master_key.version = version,
            master_key.home = %home.home,
            rewrapped,
            skipped = skipped.len(),
            "master_key.rotated"
        );
        Ok(Rotation {
            previous_version: keys.current_version(),
            current_version: version,
            rewrapped,
            skipped,
        })
    })
    .await
}

/// What a rotation or migration checks before it changes anything: no newer version
/// in the database than this server's (another replica rotated), and every sealed
/// value readable unless `skip_unreadable`. The unreadable values, to leave alone.
async fn preflight(app: &App, keys: &MasterKeys, skip_unreadable: bool) -> Result<Vec<Unreadable>> {
    let newest_known = app
        .store
        .key_checks()
        .await?
        .iter()
        .map(|check| check.version)
        .max()
        .unwrap_or(0);
    if newest_known > keys.current_version() {
        return Err(Error::conflict(
            "rotation_in_progress",
            format!(
                "the database already knows master key version {newest_known}, newer than this server's {}; another replica rotated — wait for it to finish, then retry",
                keys.current_version()
            ),
        ));
    }
    let unreadable = unreadable_values(app, keys).await?;
    // A minted token is derived data, re-minted when it cannot be opened: it is
    // reported, never a reason to refuse.
    let blocking: Vec<&Unreadable> = unreadable
        .iter()
        .filter(|value| value.kind != SealedKind::RegistryToken)
        .collect();
    if !blocking.is_empty() && !skip_unreadable {
        return Err(refuse_unreadable(&blocking));
    }
    Ok(unreadable)
}

/// Writes the rotated keys to the key file, then records the new version's check; if
/// another replica recorded a different key for it first, the previous file is put
/// back and the answer is 409.
async fn store_in_file(
    app: &App,
    path: &Path,
    keys: &MasterKeys,
    rotated: &MasterKeys,
) -> Result<()> {
    let version = rotated.current_version();
    key_file::replace(path, rotated).map_err(|error| match error {
        KeyFileError::Changed { reason, .. } => file_changed(path, &reason),
        error => Error::unavailable(
            "master_key_write_failed",
            "rotation did not happen: the new master key file could not be written; the server log has the details",
        )
        .with_detail(error),
    })?;
    let new_key = rotated.get(version).expect("the new version exists");
    let stored = app
        .store
        .ensure_key_check(&KeyCheck {
            version,
            check_value: key_check(new_key, version),
            created_at: app.now(),
        })
        .await;
    let recorded = stored
        .as_ref()
        .is_ok_and(|stored| key_check_matches(new_key, version, &stored.check_value));
    if !recorded {
        // Another replica claimed this version first (or the database failed):
        // put the previous file back, so file and database agree again.
        if let Err(error) = key_file::restore(path, keys) {
            tracing::error!(error = %error, "master_key.restore_failed");
        }
        stored?;
        return Err(Error::conflict(
            "rotation_in_progress",
            format!(
                "another replica rotated to master key version {version} at the same time; retry"
            ),
        ));
    }
    Ok(())
}

/// Wraps the rotated keys with the KMS key (one `GenerateDataKey`) and replaces the
/// database's keyring, compared with the generation this server loaded, together with
/// the new version's check: another replica's rotation in between is a 409, and
/// nothing is written.
async fn store_in_kms(app: &App, home: &Home, key_id: &str, rotated: &MasterKeys) -> Result<()> {
    let version = rotated.current_version();
    let current = app
        .store
        .keyring_record()
        .await?
        .filter(|record| record.home == home.home && Some(record.generation) == home.generation)
        .ok_or_else(|| {
            Error::conflict(
                "rotation_in_progress",
                "the keyring in the database changed since this server loaded it (another replica rotated or migrated it); retry in a few seconds",
            )
        })?;
    let wrapped = home::wrap_keyring(&app.config, key_id, &current.deployment_id, rotated)
        .await
        .map_err(kms_failed)?;
    let generation = current.generation + 1;
    let replaced = KeyringRecord {
        wrapped_keyring: Some(wrapped),
        current_version: version,
        generation,
        updated_at: app.now(),
        ..current.clone()
    };
    let new_key = rotated.get(version).expect("the new version exists");
    let check = KeyCheck {
        version,
        check_value: key_check(new_key, version),
        created_at: app.now(),
    };
    if !app
        .store
        .replace_keyring(current.generation, &replaced, Some(&check))
        .await?
    {
        return Err(Error::conflict(
            "rotation_in_progress",
            format!("another replica changed the keyring while this rotation to version {version} was prepared; nothing changed, retry"),
        ));
    }
    app.key_home.set(Home {
        generation: Some(generation),
        ..home.clone()
    });
    Ok(())
}

/// A KMS failure during a rotation or migration: nothing changed. Site administrators
/// alone call these, so the reason (key, endpoint, code; never a key) is theirs.
pub(super) fn kms_failed(error: crate::key_encryption::KekError) -> Error {
    Error::unavailable(
        "master_key_kms_unavailable",
        format!("nothing changed: {error}"),
    )
}

fn file_changed(path: &std::path::Path, reason: &str) -> Error {
    Error::conflict(
        "master_key_file_changed",
        format!(
            "master key file {} no longer holds the keys this server loaded ({reason}); rotation refused and the file left as it is — put the original file back, or restart regkeeper to load the new one",
            path.display()
        ),
    )
}

fn refuse_unreadable(unreadable: &[&Unreadable]) -> Error {
    let mut named = unreadable
        .iter()
        .take(NAMED_IN_REFUSAL)
        .map(|value| value.label.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if unreadable.len() > NAMED_IN_REFUSAL {
        named.push_str(&format!(
            " and {} more",
            unreadable.len() - NAMED_IN_REFUSAL
        ));
    }
    Error::unprocessable(
        "master_key_unreadable_values",
        format!(
            "rotation refused, nothing changed: {} sealed value(s) cannot be opened with the loaded master keys: {named}; delete or re-enter them (credentials update NAME with a new secret), or rotate with --skip-unreadable to re-wrap everything else and leave them as they are",
            unreadable.len()
        ),
    )
}

/// A sealed value the loaded keys cannot open.
struct Unreadable {
    kind: SealedKind,
    owner_id: String,
    label: String,
}

/// Every sealed value the loaded keys cannot open (each is decrypted, not just
/// unwrapped, so a damaged ciphertext counts too).
async fn unreadable_values(app: &App, keys: &MasterKeys) -> Result<Vec<Unreadable>> {
    let mut unreadable = Vec::new();
    for kind in SealedKind::ALL {
        let mut after = String::new();
        loop {
            let page = app.store.sealed_page(kind, &after, REWRAP_BATCH).await?;
            let Some(last) = page.last() else { break };
            after.clone_from(&last.owner_id);
            for row in &page {
                if keys.open(&row.sealed, binding(kind, row)).is_err() {
                    unreadable.push(Unreadable {
                        kind,
                        owner_id: row.owner_id.clone(),
                        label: row.label.clone(),
                    });
                }
            }
        }
    }
    Ok(unreadable)
}

fn binding(kind: SealedKind, row: &crate::store::SealedRef) -> Binding<'_> {
    Binding {
        purpose: kind.purpose(),
        workspace_id: &row.workspace_id,
        owner_id: &row.owner_id,
        version: row.secret_version,
    }
}

/// The key file this server's keyring lives in, if it lives in one.
fn key_file_path(app: &App) -> Option<PathBuf> {
    match app.key_home.get().home {
        KeyHome::File(path) => Some(path),
        KeyHome::Kms(_) => None,
    }
}

/// Compares the key file with the keys this server loaded, and records the answer in
/// the keyring and the `regkeeper_master_key_file_mismatch` gauge, logging a change
/// once (`master_key.file_mismatch` when it starts, `master_key.file_matches` when it
/// ends). The reason it differs, if it does; a file with a newer version that keeps
/// every loaded one is not a difference (another replica rotated). Never a mismatch
/// while the keyring lives in KMS.
fn check_key_file(app: &App, loaded: &MasterKeys) -> Option<String> {
    let mismatch = key_file_path(app).and_then(|path| match key_file::compare(&path, loaded) {
        FileState::Differs(reason) => Some(reason),
        FileState::Same | FileState::Newer(_) => None,
    });
    record_file_state(app, mismatch.clone());
    mismatch
}

/// Whether the key file still holds the loaded keys, checked now rather than at the
/// last reload tick, so `key status` right after a file is replaced tells the truth
/// (and the gauge and the log follow at once). `None` while no keys are loaded: then
/// there is nothing to compare with, and `key status` reports the keyring instead.
pub fn key_file_mismatch_now(app: &App) -> Option<String> {
    let loaded = app.keyring.keys().ok()?;
    check_key_file(app, &loaded)
}

fn record_file_state(app: &App, mismatch: Option<String>) {
    app.metrics
        .master_key_file_mismatch
        .set(i64::from(mismatch.is_some()));
    if app.keyring.set_file_mismatch(mismatch.clone()) {
        let path = key_file_path(app).unwrap_or_default();
        match &mismatch {
            Some(reason) => tracing::warn!(
                path = %path.display(),
                reason = %reason,
                "master_key.file_mismatch"
            ),
            None => tracing::info!(path = %path.display(), "master_key.file_matches"),
        }
    }
}

/// Whether the periodic task should retry soon: the keys are unavailable for a reason
/// waiting may cure (KMS unreachable or refusing).
pub fn retrying(app: &App) -> bool {
    app.keyring.status().is_err() && app.key_home.retrying()
}

/// Periodically (every 10 s; sooner while [`retrying`]): a sealed KMS keyring is
/// opened again, and unseals the server when KMS answers. A loaded keyring follows the
/// database: a new home (a migration another replica switched) is opened there; a new
/// generation of a KMS keyring (another replica rotated) is unwrapped once; a key file
/// is compared with the loaded keys (see [`check_key_file`]) and reloaded if it holds
/// a newer version that keeps every loaded one, checked against the database first.
pub async fn reload_if_changed(app: &App) {
    let home = app.key_home.get();
    let Ok(loaded) = app.keyring.keys() else {
        if home.retry {
            reopen(app, "master_key.unsealed").await;
        }
        return;
    };
    let record = match app.store.keyring_record().await {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(error.code = error.code(), "master_key.reload_failed");
            return;
        }
    };
    match (record, &home.home) {
        (Some(record), current) if record.home != *current => {
            reopen(app, "master_key.home_followed").await;
        }
        (Some(record), KeyHome::Kms(_)) if Some(record.generation) != home.generation => {
            match home::open_record(app.store.as_ref(), &app.config, &record, app.now()).await {
                Ok(keys) if keys.current_version() >= loaded.current_version() => {
                    let _swap = app.seal_gate.write().await;
                    tracing::info!(
                        master_key.version = keys.current_version(),
                        "master_key.reloaded"
                    );
                    app.keyring.replace(keys);
                    app.key_home.set(Home {
                        generation: Some(record.generation),
                        ..home
                    });
                }
                Ok(_) => tracing::error!("master_key.reload_refused_older"),
                Err(reason) => tracing::error!(reason = %reason, "master_key.reload_refused"),
            }
        }
        (_, KeyHome::Kms(_)) => {}
        (_, KeyHome::File(path)) => reload_file(app, path, &loaded).await,
    }
}

/// Opens the keyring again from wherever the database says it is now, replacing the
/// loaded keys if that works (logged as `event`), else recording why not.
async fn reopen(app: &App, event: &'static str) {
    let (result, home) = home::open(app.store.as_ref(), &app.config, app.now()).await;
    match result {
        Ok(keys) => {
            let _swap = app.seal_gate.write().await;
            tracing::info!(
                master_key.version = keys.current_version(),
                master_key.home = %home.home,
                "{event}"
            );
            app.keyring.replace(keys);
            app.key_home.set(home);
        }
        Err(reason) => {
            tracing::warn!(reason = %reason, retry = home.retry, "master_key.still_unavailable");
            app.keyring.still_unavailable(reason);
            let was = app.key_home.get();
            // A loaded keyring stays loaded (and its home with it) if the new one fails.
            if app.keyring.status().is_err() {
                app.key_home.set(home);
            } else {
                app.key_home.set(was);
            }
        }
    }
}

async fn reload_file(app: &App, path: &Path, loaded: &MasterKeys) {
    let keys = match key_file::compare(path, loaded) {
        FileState::Same => {
            record_file_state(app, None);
            return;
        }
        FileState::Differs(reason) => {
            record_file_state(app, Some(reason));
            return;
        }
        FileState::Newer(keys) => keys,
    };
    let checks = match app.store.key_checks().await {
        Ok(checks) => checks,
        Err(error) => {
            tracing::warn!(error.code = error.code(), "master_key.reload_failed");
            return;
        }
    };
    let home = KeyHome::File(path.to_owned());
    match verify_against(app.store.as_ref(), &keys, checks, &home, app.now()).await {
        Ok(()) => {
            let _swap = app.seal_gate.write().await;
            tracing::info!(
                master_key.version = keys.current_version(),
                "master_key.reloaded"
            );
            app.keyring.replace(keys);
            record_file_state(app, None);
        }
        Err(reason) => {
            tracing::error!(reason = %reason, "master_key.reload_refused");
            record_file_state(app, Some(reason));
        }
    }
}

/// Re-wraps every data key under the current version but those of `unreadable`
/// (left as they were); the count, and the labels of what was left.
async fn rewrap_all(
    app: &App,
    keys: &MasterKeys,
    unreadable: &[Unreadable],
) -> Result<(u64, Vec<String>)> {
    let mut rewrapped = 0;
    let mut skipped: Vec<String> = unreadable.iter().map(|value| value.label.clone()).collect();
    for kind in SealedKind::ALL {
        let leave: Vec<&str> = unreadable
            .iter()
            .filter(|value| value.kind == kind)
            .map(|value| value.owner_id.as_str())
            .collect();
        rewrapped += rewrap_kind(app, keys, kind, &leave, &mut skipped).await?;
    }
    Ok((rewrapped, skipped))
}

/// Re-wraps every data key of one kind of sealed secret under the current version,
/// page by page in owner order, so a value that cannot be re-wrapped is passed over
/// (and reported) rather than stopping the rotation half way.
async fn rewrap_kind(
    app: &App,
    keys: &MasterKeys,
    kind: SealedKind,
    leave: &[&str],
    skipped: &mut Vec<String>,
) -> Result<u64> {
    let mut rewrapped = 0;
    let mut after = String::new();
    loop {
        let batch = app.store.sealed_page(kind, &after, REWRAP_BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(rewrapped);
        };
        after.clone_from(&last.owner_id);
        for row in batch {
            if row.sealed.key_version == keys.current_version()
                || leave.contains(&row.owner_id.as_str())
            {
                continue;
            }
            let new = match keys.rewrap(&row.sealed, binding(kind, &row)) {
                Ok(new) => new,
                Err(error) => {
                    tracing::error!(
                        kind = kind.purpose(),
                        owner.id = %row.owner_id,
                        error = %error,
                        "master_key.rewrap_skipped"
                    );
                    skipped.push(row.label);
                    continue;
                }
            };
            // A concurrent update may have replaced the secret (under the new key
            // already); then there is nothing left to re-wrap for this row.
            if app
                .store
                .replace_wrapped_key(kind, &row.owner_id, &row.sealed, &new)
                .await?
            {
                rewrapped += 1;
                if kind == SealedKind::CredentialSecret {
                    app.caches.forget_credentials();
                }
            }
        }
    }
}
