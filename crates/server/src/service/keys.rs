//! Loading the master keys at start (and checking them against the database) and
//! rotating them online.

use crate::crypto::keyfile::{self, KeyFileError};
use crate::crypto::{key_check, key_check_matches, Binding, Keyring, MasterKeys};
use crate::domain::identity::Principal;
use crate::domain::{Error, Result};
use crate::store::{KeyCheck, SealedKind, Store};

use super::access::require_site_admin;
use super::App;

const REWRAP_BATCH: i64 = 200;

/// Opens the keyring, never failing: problems leave it unavailable with a reason, so the
/// server still starts, answers metadata requests and refuses secret ones with 503.
/// A key file is generated only when the database holds no sealed data yet; an
/// existing key file is never overwritten.
pub async fn load_keyring(store: &dyn Store, path: &std::path::Path, now: i64) -> Keyring {
    match load(store, path, now).await {
        Ok(keys) => {
            if keyfile::too_permissive(path) {
                tracing::warn!(path = %path.display(), "master_key.file_permissions_too_open");
            }
            tracing::info!(
                master_key.version = keys.current_version(),
                "master_key.ready"
            );
            Keyring::ready(keys)
        }
        Err(reason) => {
            tracing::error!(reason = %reason, "master_key.unavailable");
            Keyring::unavailable(reason)
        }
    }
}

async fn load(store: &dyn Store, path: &std::path::Path, now: i64) -> Result<MasterKeys, String> {
    let checks = store
        .key_checks()
        .await
        .map_err(|error| error.to_string())?;
    let keys = match keyfile::load(path) {
        Ok(keys) => keys,
        Err(KeyFileError::Missing { .. }) if checks.is_empty() => {
            let keys = MasterKeys::generate();
            keyfile::create(path, &keys).map_err(|error| error.to_string())?;
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
    verify_against(store, &keys, checks, path, now).await?;
    Ok(keys)
}

/// Every key version the database knows must be in the file and match; versions new
/// to the database get their check recorded.
async fn verify_against(
    store: &dyn Store,
    keys: &MasterKeys,
    checks: Vec<KeyCheck>,
    path: &std::path::Path,
    now: i64,
) -> Result<(), String> {
    for check in &checks {
        let key = keys.get(check.version).ok_or_else(|| {
            format!(
                "master key file {} lacks version {}, which this database uses; restore the complete key file",
                path.display(),
                check.version
            )
        })?;
        if !key_check_matches(key, check.version, &check.check_value) {
            return Err(format!(
                "master key file {} does not match this database (version {} differs); the server will not overwrite anything — restore the right key file",
                path.display(),
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
                "master key version {version} in {} differs from the one another replica recorded",
                path.display()
            ));
        }
    }
    Ok(())
}

pub struct Rotation {
    pub previous_version: u32,
    pub current_version: u32,
    pub rewrapped: u64,
}

/// Adds a master key version, makes it current and re-wraps every data key under it,
/// in batches while the server keeps serving. The audit entry is written first (no
/// entry, no rotation); then the key file, so that a crash leaves at worst an unused
/// version in the file, never a database that names a key the file lacks. Old versions
/// stay in the file; other replicas pick the new version up when they next reload it
/// (see [`reload_if_changed`]).
pub async fn rotate(app: &App, principal: &Principal) -> Result<Rotation> {
    let record = app.record(Some(principal), "master_key.rotate");
    app.audited(record.clone(), async {
        require_site_admin(principal, "rotating the master key")?;
        let _rotation = app.rotation.lock().await;
        let keys = app.keyring.keys()?;
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
        let rotated = keys.with_new_version();
        let version = rotated.current_version();
        app.store
            .append_audit(record.clone().detail(serde_json::json!({
                "previousVersion": keys.current_version(),
                "currentVersion": version,
                "stage": "started",
            })))
            .await?;
        let path = &app.config.master_key_file;
        keyfile::replace(path, &rotated).map_err(|error| Error::Unavailable {
            code: "master_key_write_failed",
            message: format!("rotation did not happen: {error}"),
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
        let recorded = stored.as_ref().is_ok_and(|stored| key_check_matches(new_key, version, &stored.check_value));
        if !recorded {
            // Another replica claimed this version first (or the database failed):
            // put the previous file back, so file and database agree again.
            if let Err(error) = keyfile::restore(path, &keys) {
                tracing::error!(error = %error, "master_key.restore_failed");
            }
            stored?;
            return Err(Error::conflict(
                "rotation_in_progress",
                format!("another replica rotated to master key version {version} at the same time; retry"),
            ));
        }
        {
            let _swap = app.seal_gate.write().await;
            app.keyring.replace(rotated.clone());
        }
        let rewrapped = rewrap_all(app, &rotated).await?;
        tracing::info!(master_key.version = version, rewrapped, "master_key.rotated");
        Ok(Rotation {
            previous_version: keys.current_version(),
            current_version: version,
            rewrapped,
        })
    })
    .await
}

/// Reloads the key file if it holds a newer version than the keyring (another replica
/// rotated, or an operator restored a file), checking it against the database first.
pub async fn reload_if_changed(app: &App) {
    let Ok(current) = app.keyring.status() else {
        return;
    };
    let Ok(keys) = keyfile::load(&app.config.master_key_file) else {
        return;
    };
    if keys.current_version() <= current {
        return;
    }
    let checks = match app.store.key_checks().await {
        Ok(checks) => checks,
        Err(error) => {
            tracing::warn!(error.code = error.code(), "master_key.reload_failed");
            return;
        }
    };
    match verify_against(
        app.store.as_ref(),
        &keys,
        checks,
        &app.config.master_key_file,
        app.now(),
    )
    .await
    {
        Ok(()) => {
            let _swap = app.seal_gate.write().await;
            tracing::info!(
                master_key.version = keys.current_version(),
                "master_key.reloaded"
            );
            app.keyring.replace(keys);
        }
        Err(reason) => tracing::error!(reason = %reason, "master_key.reload_refused"),
    }
}

async fn rewrap_all(app: &App, keys: &MasterKeys) -> Result<u64> {
    let mut rewrapped = 0;
    for kind in SealedKind::ALL {
        rewrapped += rewrap_kind(app, keys, kind).await?;
    }
    Ok(rewrapped)
}

/// Re-wraps every data key of one kind of sealed secret under the current version.
async fn rewrap_kind(app: &App, keys: &MasterKeys, kind: SealedKind) -> Result<u64> {
    let mut rewrapped = 0;
    loop {
        let batch = app
            .store
            .sealed_not_under(kind, keys.current_version(), REWRAP_BATCH)
            .await?;
        if batch.is_empty() {
            return Ok(rewrapped);
        }
        for row in batch {
            let binding = Binding {
                purpose: kind.purpose(),
                workspace_id: &row.workspace_id,
                owner_id: &row.owner_id,
                version: row.secret_version,
            };
            let new = keys.rewrap(&row.sealed, binding).map_err(|error| {
                Error::internal(format!(
                    "re-wrapping the {} of {}: {error}",
                    kind.purpose(),
                    row.owner_id
                ))
            })?;
            // A concurrent update may have replaced the secret (under the new key
            // already); then there is nothing left to re-wrap for this row.
            if app
                .store
                .replace_wrapped_key(kind, &row.owner_id, &row.sealed, &new)
                .await?
            {
                rewrapped += 1;
                app.caches.forget_credentials();
            }
        }
    }
}
