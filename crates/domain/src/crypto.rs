//! Envelope encryption of secrets at rest. Each secret is sealed with its own random
//! data key (AES-256-GCM), bound by associated data to its workspace, owner and
//! version; the data key is wrapped by a versioned master key. Rotating the master key
//! re-wraps data keys only, so secrets are never decrypted and re-encrypted in bulk.
//!
//! What each sealed value is bound to ([`Binding`]: purpose, workspace, owner,
//! version): a credential secret to `credential-secret`, its workspace, the credential
//! id and its secret version; a minted registry token to `registry-token`, no
//! workspace, its shared identity and its issue time; a webhook's signing key to
//! `sync-signing-key`, its workspace, the target id and 1. A wrapped data key is bound
//! to its master-key version. A ciphertext moved to another row or version therefore
//! fails to open.
//!
//! [`Keyring`] is the server's current state: ready keys, or unavailable with a
//! reason, and every caller of `keys()` then gets a 503-shaped `Error::Unavailable`.
//! This module knows nothing of credentials, HTTP or SQL; where the keys are kept (a
//! key file, or wrapped by KMS in the database) is the server's `service::keys`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::credential::SealedSecret;
use crate::Error;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const KEY_CHECK_PLAINTEXT: &[u8] = b"regkeeper master key check";

/// A 256-bit key, zeroized on drop and never printed.
#[derive(Clone)]
pub struct Key(Zeroizing<[u8; 32]>);

impl Key {
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Key([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed with master key version {0}, which the key file does not hold")]
    UnknownKeyVersion(u32),
    #[error("integrity check failed: the data was altered, moved, or the key is wrong")]
    Integrity,
    #[error("unsupported sealed-data format")]
    Format,
}

/// What a sealed value belongs to. Sealing binds the ciphertext to it, so a ciphertext
/// copied to another row, workspace or version fails to open.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub purpose: &'a str,
    pub workspace_id: &'a str,
    pub owner_id: &'a str,
    pub version: i64,
}

impl Binding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "regkeeper/v1\0{}\0{}\0{}\0{}",
            self.purpose, self.workspace_id, self.owner_id, self.version
        )
        .into_bytes()
    }

    fn wrapping_associated_data(&self, key_version: u32) -> Vec<u8> {
        let mut data = self.associated_data();
        data.extend_from_slice(format!("\0master-key-version={key_version}").as_bytes());
        data
    }
}

/// Every master key version that can open data, and the one that seals new data.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    current: u32,
    keys: BTreeMap<u32, Key>,
}

impl MasterKeys {
    pub fn generate() -> Self {
        Self {
            current: 1,
            keys: BTreeMap::from([(1, Key::generate())]),
        }
    }

    pub fn from_parts(current: u32, keys: BTreeMap<u32, Key>) -> Option<Self> {
        keys.contains_key(&current)
            .then_some(Self { current, keys })
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    pub fn versions(&self) -> impl Iterator<Item = (u32, &Key)> {
        self.keys.iter().map(|(version, key)| (*version, key))
    }

    pub fn get(&self, version: u32) -> Option<&Key> {
        self.keys.get(&version)
    }

    /// A copy with one more, newest key version that becomes current.
    pub fn with_new_version(&self) -> Self {
        let next = self.keys.keys().next_back().copied().unwrap_or(0) + 1;
        let mut keys = self.keys.clone();
        keys.insert(next, Key::generate());
        Self {
            current: next,
            keys,
        }
    }

    /// A key for some other purpose than wrapping data keys (the console's session
    /// cookies), derived from master key `version` as HMAC-SHA256 over `label`, so
    /// every replica holding the key file derives the same key and a master key is
    /// never used directly for two purposes. `None` for a version this file lacks.
    pub fn derived_key(&self, version: u32, label: &str) -> Option<Key> {
        let master = self.keys.get(&version)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master.expose_bytes()).ok()?;
        mac.update(b"regkeeper/v1\0derived-key\0");
        mac.update(label.as_bytes());
        Key::from_bytes(&mac.finalize().into_bytes())
    }

    /// Seals `plaintext` under a fresh data key wrapped by the current master key.
    pub fn seal(&self, plaintext: &[u8], binding: Binding<'_>) -> SealedSecret {
        let data_key = Key::generate();
        let ciphertext = encrypt(&data_key, plaintext, &binding.associated_data());
        let master = &self.keys[&self.current];
        let wrapped_key = encrypt(
            master,
            data_key.expose_bytes(),
            &binding.wrapping_associated_data(self.current),
        );
        SealedSecret {
            ciphertext,
            wrapped_key,
            key_version: self.current,
        }
    }

    pub fn open(
        &self,
        sealed: &SealedSecret,
        binding: Binding<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let data_key = self.unwrap_data_key(sealed, binding)?;
        decrypt(&data_key, &sealed.ciphertext, &binding.associated_data())
    }

    /// Re-wraps the data key under the current master key; the ciphertext is unchanged.
    pub fn rewrap(
        &self,
        sealed: &SealedSecret,
        binding: Binding<'_>,
    ) -> Result<SealedSecret, CryptoError> {
        let data_key = self.unwrap_data_key(sealed, binding)?;
        let master = &self.keys[&self.current];
        Ok(SealedSecret {
            ciphertext: sealed.ciphertext.clone(),
            wrapped_key: encrypt(
                master,
                data_key.expose_bytes(),
                &binding.wrapping_associated_data(self.current),
            ),
            key_version: self.current,
        })
    }

    fn unwrap_data_key(
        &self,
        sealed: &SealedSecret,
        binding: Binding<'_>,
    ) -> Result<Key, CryptoError> {
        let master = self
            .keys
            .get(&sealed.key_version)
            .ok_or(CryptoError::UnknownKeyVersion(sealed.key_version))?;
        let bytes = decrypt(
            master,
            &sealed.wrapped_key,
            &binding.wrapping_associated_data(sealed.key_version),
        )?;
        Key::from_bytes(&bytes).ok_or(CryptoError::Format)
    }
}

/// A value stored beside the data that proves a master key version is the right one,
/// so a wrong key file is detected at start instead of when a secret is first read.
pub fn key_check(key: &Key, version: u32) -> Vec<u8> {
    encrypt(
        key,
        KEY_CHECK_PLAINTEXT,
        &key_check_associated_data(version),
    )
}

pub fn key_check_matches(key: &Key, version: u32, check: &[u8]) -> bool {
    decrypt(key, check, &key_check_associated_data(version))
        .is_ok_and(|plaintext| plaintext.as_slice() == KEY_CHECK_PLAINTEXT)
}

fn key_check_associated_data(version: u32) -> Vec<u8> {
    format!("regkeeper/v1\0key-check\0{version}").into_bytes()
}

/// Encrypts with `key` directly (AES-256-GCM, random nonce), for short-lived values
/// sealed under a [`MasterKeys::derived_key`] rather than a stored secret's data key.
pub fn seal_with_key(key: &Key, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
    encrypt(key, plaintext, associated_data)
}

/// Opens what [`seal_with_key`] sealed with the same key and associated data.
pub fn open_with_key(
    key: &Key,
    sealed: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    decrypt(key, sealed, associated_data)
}

fn encrypt(key: &Key, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: associated_data,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut output = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    output.push(FORMAT_V1);
    output.extend_from_slice(&nonce);
    output.extend_from_slice(&sealed);
    output
}

fn decrypt(
    key: &Key,
    sealed: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (format, rest) = sealed.split_first().ok_or(CryptoError::Format)?;
    if *format != FORMAT_V1 || rest.len() < NONCE_LEN {
        return Err(CryptoError::Format);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: associated_data,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Integrity)
}

/// The server's master keys, or why it has none. Secret operations ask for the keys
/// and get a 503-shaped error while they are unavailable; metadata keeps working.
pub struct Keyring {
    state: RwLock<Result<Arc<MasterKeys>, String>>,
    /// Why the key file no longer matches the loaded keys, while it does not.
    file_mismatch: RwLock<Option<String>>,
}

impl Keyring {
    pub fn ready(keys: MasterKeys) -> Self {
        Self {
            state: RwLock::new(Ok(Arc::new(keys))),
            file_mismatch: RwLock::new(None),
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            state: RwLock::new(Err(reason.into())),
            file_mismatch: RwLock::new(None),
        }
    }

    /// Records whether the key file matches (see `service::keys::check_key_file`);
    /// returns true when that changed, so the change is logged once.
    pub fn set_file_mismatch(&self, mismatch: Option<String>) -> bool {
        let mut current = self.file_mismatch.write().expect("keyring lock poisoned");
        let changed = *current != mismatch;
        *current = mismatch;
        changed
    }

    pub fn keys(&self) -> Result<Arc<MasterKeys>, Error> {
        match &*self.state.read().expect("keyring lock poisoned") {
            Ok(keys) => Ok(Arc::clone(keys)),
            // The reason names the key file and what the file system said: for the
            // log and for administrators (`regkeeper key status`), not for every caller.
            Err(reason) => Err(Error::unavailable(
                "master_key_unavailable",
                "secrets are unavailable: the master key is not loaded; an administrator can see why with `regkeeper key status`",
            )
            .with_detail(reason)),
        }
    }

    pub fn status(&self) -> Result<u32, String> {
        match &*self.state.read().expect("keyring lock poisoned") {
            Ok(keys) => Ok(keys.current_version()),
            Err(reason) => Err(reason.clone()),
        }
    }

    pub fn replace(&self, keys: MasterKeys) {
        *self.state.write().expect("keyring lock poisoned") = Ok(Arc::new(keys));
    }

    /// Updates why the keys are unavailable (a retry failed for another reason), if
    /// they still are; loaded keys are never dropped by this.
    pub fn still_unavailable(&self, reason: impl Into<String>) {
        let mut state = self.state.write().expect("keyring lock poisoned");
        if state.is_err() {
            *state = Err(reason.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding<'a>(owner: &'a str, version: i64) -> Binding<'a> {
        Binding {
            purpose: "credential-secret",
            workspace_id: "ws-1",
            owner_id: owner,
            version,
        }
    }

    #[test]
    fn round_trip() {
        let keys = MasterKeys::generate();
        let sealed = keys.seal(b"s3cret", binding("cred-1", 1));
        assert_eq!(
            keys.open(&sealed, binding("cred-1", 1)).unwrap().as_slice(),
            b"s3cret"
        );
        assert!(!sealed
            .ciphertext
            .windows(6)
            .any(|window| window == b"s3cret"));
    }

    #[test]
    fn one_flipped_byte_anywhere_fails() {
        let keys = MasterKeys::generate();
        let sealed = keys.seal(b"s3cret", binding("cred-1", 1));
        for index in 0..sealed.ciphertext.len() {
            let mut altered = sealed.clone();
            altered.ciphertext[index] ^= 0x01;
            assert!(
                keys.open(&altered, binding("cred-1", 1)).is_err(),
                "ciphertext byte {index}"
            );
        }
        for index in 0..sealed.wrapped_key.len() {
            let mut altered = sealed.clone();
            altered.wrapped_key[index] ^= 0x80;
            assert!(
                keys.open(&altered, binding("cred-1", 1)).is_err(),
                "wrapped key byte {index}"
            );
        }
    }

    #[test]
    fn ciphertexts_swapped_between_rows_fail() {
        let keys = MasterKeys::generate();
        let first = keys.seal(b"first", binding("cred-1", 1));
        let second = keys.seal(b"second", binding("cred-2", 1));
        assert_eq!(
            keys.open(&second, binding("cred-1", 1)),
            Err(CryptoError::Integrity)
        );
        assert_eq!(
            keys.open(&first, binding("cred-2", 1)),
            Err(CryptoError::Integrity)
        );
        // Only the ciphertexts swapped, each row keeping its own wrapped key.
        let mixed = SealedSecret {
            ciphertext: second.ciphertext.clone(),
            ..first.clone()
        };
        assert_eq!(
            keys.open(&mixed, binding("cred-1", 1)),
            Err(CryptoError::Integrity)
        );
        // An older version of the same row's secret cannot be replayed as a newer one.
        assert_eq!(
            keys.open(&first, binding("cred-1", 2)),
            Err(CryptoError::Integrity)
        );
    }

    #[test]
    fn wrong_master_key_fails() {
        let keys = MasterKeys::generate();
        let sealed = keys.seal(b"s3cret", binding("cred-1", 1));
        let other = MasterKeys::generate();
        assert_eq!(
            other.open(&sealed, binding("cred-1", 1)),
            Err(CryptoError::Integrity)
        );
        let check = key_check(keys.get(1).unwrap(), 1);
        assert!(key_check_matches(keys.get(1).unwrap(), 1, &check));
        assert!(!key_check_matches(other.get(1).unwrap(), 1, &check));
        assert!(!key_check_matches(keys.get(1).unwrap(), 2, &check));
    }

    #[test]
    fn rotation_rewraps_without_changing_the_ciphertext() {
        let keys = MasterKeys::generate();
        let sealed = keys.seal(b"s3cret", binding("cred-1", 1));
        let rotated = keys.with_new_version();
        assert_eq!(rotated.current_version(), 2);
        let rewrapped = rotated.rewrap(&sealed, binding("cred-1", 1)).unwrap();
        assert_eq!(rewrapped.key_version, 2);
        assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
        assert_eq!(
            rotated
                .open(&rewrapped, binding("cred-1", 1))
                .unwrap()
                .as_slice(),
            b"s3cret"
        );
        // The old key alone cannot open what is now wrapped by version 2.
        assert_eq!(
            keys.open(&rewrapped, binding("cred-1", 1)),
            Err(CryptoError::UnknownKeyVersion(2))
        );
    }

    #[test]
    fn derived_keys_depend_on_label_and_version_and_are_stable() {
        let keys = MasterKeys::generate().with_new_version();
        let first = keys.derived_key(1, "console-session").unwrap();
        let again = keys.derived_key(1, "console-session").unwrap();
        assert_eq!(first.expose_bytes(), again.expose_bytes());
        let other_label = keys.derived_key(1, "console-csrf").unwrap();
        let other_version = keys.derived_key(2, "console-session").unwrap();
        assert_ne!(first.expose_bytes(), other_label.expose_bytes());
        assert_ne!(first.expose_bytes(), other_version.expose_bytes());
        assert_ne!(first.expose_bytes(), keys.get(1).unwrap().expose_bytes());
        assert!(keys.derived_key(3, "console-session").is_none());
        let sealed = seal_with_key(&first, b"value", b"context");
        assert_eq!(
            open_with_key(&again, &sealed, b"context")
                .unwrap()
                .as_slice(),
            b"value"
        );
        assert!(open_with_key(&other_label, &sealed, b"context").is_err());
        assert!(open_with_key(&first, &sealed, b"other context").is_err());
    }

    #[test]
    fn keys_never_print() {
        let keys = MasterKeys::generate();
        let printed = format!("{keys:?}");
        assert!(printed.contains("REDACTED"));
        let hex: String = keys
            .get(1)
            .unwrap()
            .expose_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!printed.contains(&hex));
    }
}
