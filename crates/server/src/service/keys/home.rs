//! Where this server's keyring comes from, and opening it there.
//!
//! The database decides: its `master_keyring` row names the home (AWS KMS key, or key
//! file path) and the server follows it whatever `REGKEEPER_MASTER_KEY_KMS_KEY_ID` or
//! `REGKEEPER_MASTER_KEY_FILE` say, reporting a difference (`key status`, one warning
//! `master_key.settings_mismatch`). Without a row: the KMS key setting on an empty
//! database starts a KMS deployment (version 1 generated, wrapped once, the row
//! inserted — the first replica's row wins a race); the KMS key setting on a database
//! already sealed under a key file is refused (that is `key migrate --to-kms`'s job);
//! otherwise the key file, as before. A keyring from KMS is unwrapped once here (one
//! `Decrypt`), checked against the database's key checks, and held in memory only.
//! A failure leaves the server sealed with the reason, and [`HomeState::retrying`]
//! says the periodic task should try again (KMS homes only: a key file is not retried).

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::crypto::MasterKeys;
use crate::key_encryption::{AwsKms, KeyEncryptionKey, WrapContext};
use crate::key_file;
use crate::store::{KeyHome, KeyringRecord, Store};

/// What this server knows of its keyring's home.
#[derive(Clone, Debug)]
pub struct Home {
    pub home: KeyHome,
    /// The record's generation whose keyring is loaded (`None`: no record).
    pub generation: Option<i64>,
    /// The last open failed for a reason that waiting may cure (KMS).
    pub retry: bool,
    /// How the settings differ from the database's record, if they do.
    pub settings_mismatch: Option<String>,
}

/// [`Home`], shared by the request handlers and the periodic reload.
pub struct HomeState(RwLock<Home>);

impl HomeState {
    pub fn new(home: Home) -> Self {
        Self(RwLock::new(home))
    }

    pub fn get(&self) -> Home {
        self.0.read().expect("home lock poisoned").clone()
    }

    pub fn set(&self, home: Home) {
        *self.0.write().expect("home lock poisoned") = home;
    }

    /// Whether the keys are unavailable for a reason worth retrying soon.
    pub fn retrying(&self) -> bool {
        self.0.read().expect("home lock poisoned").retry
    }
}

/// The KMS key `key_id`, called at the configured endpoint.
pub fn kms(config: &Config, key_id: &str) -> Arc<dyn KeyEncryptionKey> {
    Arc::new(AwsKms::new(
        key_id,
        config
            .aws_kms_endpoint_url
            .clone()
            .or_else(|| config.aws_endpoint_url.clone()),
    ))
}

/// How the settings differ from the home the database records.
pub fn settings_mismatch(config: &Config, home: &KeyHome) -> Option<String> {
    match (home, &config.master_key_kms_key_id) {
        (KeyHome::Kms(key_id), Some(configured)) if configured == key_id => None,
        (KeyHome::Kms(key_id), Some(configured)) => Some(format!(
            "REGKEEPER_MASTER_KEY_KMS_KEY_ID is {configured}, but this database's keyring is wrapped by AWS KMS key {key_id}; the server follows the database — set REGKEEPER_MASTER_KEY_KMS_KEY_ID={key_id}"
        )),
        (KeyHome::Kms(key_id), None) => Some(format!(
            "REGKEEPER_MASTER_KEY_KMS_KEY_ID is not set, but this database's keyring is wrapped by AWS KMS key {key_id} (moved there by `key migrate`); the server follows the database — set REGKEEPER_MASTER_KEY_KMS_KEY_ID={key_id}; the key file is not used"
        )),
        (KeyHome::File(path), Some(configured)) => Some(format!(
            "REGKEEPER_MASTER_KEY_KMS_KEY_ID is {configured}, but this database's keyring is in key file {} (moved there by `key migrate`); the server follows the database — unset REGKEEPER_MASTER_KEY_KMS_KEY_ID and set REGKEEPER_MASTER_KEY_FILE={}",
            path.display(),
            path.display()
        )),
        (KeyHome::File(path), None) if *path != config.master_key_file => Some(format!(
            "REGKEEPER_MASTER_KEY_FILE is {}, but this database's keyring is in key file {} (moved there by `key migrate`); the server follows the database — set REGKEEPER_MASTER_KEY_FILE={}",
            config.master_key_file.display(),
            path.display(),
            path.display()
        )),
        (KeyHome::File(_), None) => None,
    }
}

/// Opens the keyring where the database (or, without a record, the settings) says it
/// lives; the keys or why not, and the home either way. Never writes over anything.
pub async fn open(
    store: &dyn Store,
    config: &Config,
    now: i64,
) -> (Result<MasterKeys, String>, Home) {
    let record = match store.keyring_record().await {
        Ok(record) => record,
        Err(error) => {
            let home = Home {
                home: match &config.master_key_kms_key_id {
                    Some(key_id) => KeyHome::Kms(key_id.clone()),
                    None => KeyHome::File(config.master_key_file.clone()),
                },
                generation: None,
                retry: config.master_key_kms_key_id.is_some(),
                settings_mismatch: None,
            };
            return (
                Err(format!("cannot read where the keyring lives: {error}")),
                home,
            );
        }
    };
    match record {
        Some(record) => {
            let mut home = Home {
                home: record.home.clone(),
                generation: Some(record.generation),
                retry: false,
                settings_mismatch: settings_mismatch(config, &record.home),
            };
            let result = match &record.home {
                KeyHome::Kms(_) => {
                    let result = open_record(store, config, &record, now).await;
                    home.retry = result.is_err();
                    result
                }
                KeyHome::File(path) => super::load_file(store, path, now).await,
            };
            (result, home)
        }
        None => match &config.master_key_kms_key_id {
            Some(key_id) => {
                let (result, generation) = start_on_kms(store, config, key_id, now).await;
                let home = Home {
                    home: KeyHome::Kms(key_id.clone()),
                    generation,
                    retry: result.as_ref().is_err_and(|(_, retry)| *retry),
                    settings_mismatch: None,
                };
                (result.map_err(|(reason, _)| reason), home)
            }
            None => (
                super::load_file(store, &config.master_key_file, now).await,
                Home {
                    home: KeyHome::File(config.master_key_file.clone()),
                    generation: None,
                    retry: false,
                    settings_mismatch: None,
                },
            ),
        },
    }
}

/// Unwraps the record's keyring with its KMS key (one `Decrypt`) and checks it against
/// the database's key checks.
pub async fn open_record(
    store: &dyn Store,
    config: &Config,
    record: &KeyringRecord,
    now: i64,
) -> Result<MasterKeys, String> {
    let KeyHome::Kms(key_id) = &record.home else {
        return Err("the keyring is not kept in KMS".into());
    };
    let wrapped = record
        .wrapped_keyring
        .as_deref()
        .ok_or("the database names AWS KMS as the keyring's home but holds no wrapped keyring")?;
    let keys = unwrap_keyring(config, key_id, &record.deployment_id, wrapped).await?;
    let checks = store
        .key_checks()
        .await
        .map_err(|error| error.to_string())?;
    super::verify_against(store, &keys, checks, &record.home, now).await?;
    Ok(keys)
}

/// The keyring in `wrapped`, unwrapped by KMS key `key_id` for this deployment.
pub async fn unwrap_keyring(
    config: &Config,
    key_id: &str,
    deployment_id: &str,
    wrapped: &[u8],
) -> Result<MasterKeys, String> {
    let plaintext = kms(config, key_id)
        .unwrap(wrapped, &WrapContext::keyring(deployment_id))
        .await
        .map_err(|error| error.to_string())?;
    key_file::parse(&plaintext).map_err(|reason| {
        format!("the keyring unwrapped by AWS KMS key {key_id} is malformed ({reason})")
    })
}

/// `keys` wrapped by KMS key `key_id` for this deployment (one `GenerateDataKey`).
pub async fn wrap_keyring(
    config: &Config,
    key_id: &str,
    deployment_id: &str,
    keys: &MasterKeys,
) -> Result<Vec<u8>, crate::key_encryption::KekError> {
    kms(config, key_id)
        .wrap(
            &key_file::serialize(keys),
            &WrapContext::keyring(deployment_id),
        )
        .await
}

/// A deployment configured for KMS with no record yet: on an empty database, version 1
/// is generated, wrapped and recorded (or another replica's record, inserted first, is
/// opened); on one already sealed under a key file, refused. The error says whether
/// to retry; the generation of the record opened.
async fn start_on_kms(
    store: &dyn Store,
    config: &Config,
    key_id: &str,
    now: i64,
) -> (Result<MasterKeys, (String, bool)>, Option<i64>) {
    let checks = match store.key_checks().await {
        Ok(checks) => checks,
        Err(error) => return (Err((error.to_string(), true)), None),
    };
    if !checks.is_empty() {
        return (
            Err((
                format!(
                    "REGKEEPER_MASTER_KEY_KMS_KEY_ID is set, but this database's data is sealed with master keys from the key file {}; start the server without it (on the key file) and move the keyring with `regkeeper key migrate --to-kms {key_id}`",
                    config.master_key_file.display()
                ),
                false,
            )),
            None,
        );
    }
    let keys = MasterKeys::generate();
    let deployment_id = uuid::Uuid::new_v4().to_string();
    let wrapped = match wrap_keyring(config, key_id, &deployment_id, &keys).await {
        Ok(wrapped) => wrapped,
        Err(error) => return (Err((error.to_string(), error.retryable())), None),
    };
    let ours = KeyringRecord {
        deployment_id: deployment_id.clone(),
        home: KeyHome::Kms(key_id.to_owned()),
        wrapped_keyring: Some(wrapped),
        current_version: keys.current_version(),
        generation: 1,
        updated_at: now,
    };
    let stored = match store.insert_keyring_record(&ours).await {
        Ok(stored) => stored,
        Err(error) => return (Err((error.to_string(), true)), None),
    };
    let generation = Some(stored.generation);
    if stored.deployment_id != deployment_id {
        // Another replica started first: its keyring is the deployment's.
        let opened = open_record(store, config, &stored, now)
            .await
            .map_err(|reason| (reason, true));
        return (opened, generation);
    }
    tracing::info!(kms.key_id = %key_id, "master_key.generated_in_kms");
    let verified = super::verify_against(store, &keys, Vec::new(), &stored.home, now)
        .await
        .map(|()| keys)
        .map_err(|reason| (reason, true));
    (verified, generation)
}
