//! The master key file: every key version, created with mode 0600 and replaced only by
//! an atomic rename to a file that still holds every earlier version.
//!
//! The file is JSON (format `regkeeper-master-keys/v1`, every version's key in
//! base64). Every write goes to a 0600 temporary file in the same directory, fsynced,
//! then placed: [`create`] hard-links it, so an existing file is never clobbered, even
//! in a race; [`replace`] renames it over the old file; [`restore`] undoes a rotation
//! that lost a race. Errors never quote the file's contents. Only `service::keys`
//! calls this module (start-up, rotation, reload, migration); [`serialize`] and
//! [`parse`] are also the plaintext form of a keyring wrapped by KMS.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{Key, MasterKeys};

const FORMAT: &str = "regkeeper-master-keys/v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("master key file {path} is missing")]
    Missing { path: PathBuf },
    #[error("cannot read master key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write master key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master key file {path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("master key file {path} no longer holds the keys this server loaded ({reason}); refusing to overwrite it")]
    Changed { path: PathBuf, reason: String },
}

/// How the key file on disk compares with the keys a server has loaded.
pub enum FileState {
    /// Every loaded version, and nothing newer.
    Same,
    /// Every loaded version unchanged, and a newer current one (another replica rotated).
    Newer(MasterKeys),
    /// Not what was loaded: unreadable, missing, or a loaded version absent or different
    /// (someone put another deployment's file there). Says which, never a key.
    Differs(String),
}

/// Compares the file at `path` with `loaded`, the keys this server holds.
pub fn compare(path: &Path, loaded: &MasterKeys) -> FileState {
    let on_disk = match load(path) {
        Ok(keys) => keys,
        Err(error) => return FileState::Differs(error.to_string()),
    };
    if let Some(reason) = differs(&on_disk, loaded) {
        return FileState::Differs(reason);
    }
    if on_disk.current_version() > loaded.current_version() {
        FileState::Newer(on_disk)
    } else {
        FileState::Same
    }
}

/// Why `on_disk` does not hold every version of `loaded` unchanged, if it does not.
fn differs(on_disk: &MasterKeys, loaded: &MasterKeys) -> Option<String> {
    loaded
        .versions()
        .find_map(|(version, key)| match on_disk.get(version) {
            None => Some(format!("it lacks version {version}")),
            Some(other) if other.expose_bytes() != key.expose_bytes() => {
                Some(format!("its version {version} is a different key"))
            }
            Some(_) => None,
        })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    format: String,
    current: u32,
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    version: u32,
    /// The key in base64: as secret as the key itself, so wiped on drop, on every
    /// path (a malformed file's early return included).
    #[serde(serialize_with = "expose")]
    key: SecretString,
}

fn expose<S: serde::Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

pub fn load(path: &Path) -> Result<MasterKeys, KeyFileError> {
    let text = match std::fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing {
                path: path.to_owned(),
            })
        }
        Err(source) => {
            return Err(KeyFileError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(&text).map_err(|reason| KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    })
}

/// Every key version as the file's JSON, the form a keyring wrapped by KMS also takes
/// (in memory only; wiped on drop).
pub fn serialize(keys: &MasterKeys) -> Zeroizing<Vec<u8>> {
    let contents = FileContents {
        format: FORMAT.to_owned(),
        current: keys.current_version(),
        keys: keys
            .versions()
            .map(|(version, key)| FileKey {
                version,
                key: SecretString::from(BASE64.encode(key.expose_bytes())),
            })
            .collect(),
    };
    Zeroizing::new(serde_json::to_vec_pretty(&contents).expect("key file contents serialize"))
}

/// Reads what [`serialize`] wrote; the reason it is malformed, never its contents.
pub fn parse(text: &[u8]) -> Result<MasterKeys, String> {
    let contents: FileContents = serde_json::from_slice(text)
        // Position only: the contents are key material and must not reach a log.
        .map_err(|error| {
            format!(
                "not valid JSON (line {} column {})",
                error.line(),
                error.column()
            )
        })?;
    if contents.format != FORMAT {
        return Err(format!("unknown format `{}`", contents.format));
    }
    let mut keys = BTreeMap::new();
    for entry in &contents.keys {
        let bytes = Zeroizing::new(
            BASE64
                .decode(entry.key.expose_secret().as_bytes())
                .map_err(|_| format!("key version {} is not base64", entry.version))?,
        );
        let key = Key::from_bytes(&bytes)
            .ok_or_else(|| format!("key version {} is not 32 bytes", entry.version))?;
        if keys.insert(entry.version, key).is_some() {
            return Err(format!("key version {} appears twice", entry.version));
        }
    }
    MasterKeys::from_parts(contents.current, keys)
        .ok_or_else(|| format!("current version {} has no key", contents.current))
}

/// Whether `keys` holds every version of `loaded`, each the same key (the reason it
/// does not, if it does not).
pub fn holds_every_version(keys: &MasterKeys, loaded: &MasterKeys) -> Option<String> {
    differs(keys, loaded)
}

/// Whether the file can be read by anyone but its owner.
pub fn too_permissive(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o077 != 0)
}

/// Writes a new key file; fails if one exists (checked atomically by the final link),
/// so a key is never silently replaced.
pub fn create(path: &Path, keys: &MasterKeys) -> Result<(), KeyFileError> {
    write_atomically(path, keys, Placement::NoClobber)
}

/// Replaces the key file with `keys`, which must hold every version of the old file,
/// each the same key; an unreadable or malformed old file, or one whose keys differ
/// from `keys` (replaced behind the server's back), is never replaced.
pub fn replace(path: &Path, keys: &MasterKeys) -> Result<(), KeyFileError> {
    let old = load(path)?;
    if let Some(reason) = old
        .versions()
        .find_map(|(version, key)| match keys.get(version) {
            Some(ours) if ours.expose_bytes() != key.expose_bytes() => {
                Some(format!("its version {version} is a different key"))
            }
            _ => None,
        })
    {
        return Err(KeyFileError::Changed {
            path: path.to_owned(),
            reason,
        });
    }
    if let Some((version, _)) = old
        .versions()
        .find(|(version, _)| keys.get(*version).is_none())
    {
        return Err(KeyFileError::Malformed {
            path: path.to_owned(),
            reason: format!("refusing to drop key version {version}"),
        });
    }
    write_atomically(path, keys, Placement::Replace)
}

/// Puts back `keys` after a rotation that did not complete: the file must still hold
/// every version of `keys`, each the same key, plus at most the one version the
/// rotation added (current + 1), which alone is dropped. Anything else (another
/// deployment's file moved in meanwhile, a version missing or added by someone else)
/// is left as it is.
pub fn restore(path: &Path, keys: &MasterKeys) -> Result<(), KeyFileError> {
    let current = load(path)?;
    if let Some(reason) = differs(&current, keys) {
        return Err(KeyFileError::Changed {
            path: path.to_owned(),
            reason,
        });
    }
    let added = keys.current_version() + 1;
    if let Some((version, _)) = current
        .versions()
        .find(|(version, _)| keys.get(*version).is_none() && *version != added)
    {
        return Err(KeyFileError::Changed {
            path: path.to_owned(),
            reason: format!("it holds version {version}, which this rotation did not add"),
        });
    }
    write_atomically(path, keys, Placement::Replace)
}

enum Placement {
    NoClobber,
    Replace,
}

fn write_atomically(
    path: &Path,
    keys: &MasterKeys,
    placement: Placement,
) -> Result<(), KeyFileError> {
    let write_error = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    let text = serialize(keys);
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(write_error)?;
    let written = file.write_all(&text).and_then(|()| file.sync_all());
    let placed = written.and_then(|()| match placement {
        // A hard link fails if the target exists, unlike rename.
        Placement::NoClobber => std::fs::hard_link(&temporary, path),
        Placement::Replace => std::fs::rename(&temporary, path),
    });
    let _ = std::fs::remove_file(&temporary);
    if let Err(error) = placed {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(KeyFileError::Exists {
                path: path.to_owned(),
            });
        }
        return Err(write_error(error));
    }
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        if let Ok(directory) = std::fs::File::open(parent) {
            let _ = directory.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 item 21: another deployment's valid key file is told apart from ours,
    /// and a rotation never writes over it.
    #[test]
    fn a_replaced_file_is_detected_and_never_overwritten() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        let ours = MasterKeys::generate();
        create(&path, &ours).unwrap();
        assert!(matches!(compare(&path, &ours), FileState::Same));
        let rotated = ours.with_new_version();
        assert!(matches!(compare(&path, &rotated), FileState::Differs(_)));
        replace(&path, &rotated).unwrap();
        assert!(matches!(compare(&path, &ours), FileState::Newer(_)));

        let theirs = MasterKeys::generate().with_new_version();
        std::fs::remove_file(&path).unwrap();
        create(&path, &theirs).unwrap();
        let FileState::Differs(reason) = compare(&path, &rotated) else {
            panic!("another deployment's file went unnoticed");
        };
        assert_eq!(reason, "its version 1 is a different key");
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            replace(&path, &rotated.with_new_version()),
            Err(KeyFileError::Changed { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before, "left intact");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(compare(&path, &ours), FileState::Differs(_)));
    }

    /// Undoing a rotation drops only the version it added; a file replaced between the
    /// rotation's write and its undo (same versions, other keys), or one holding a
    /// version the rotation did not add, is left as it is.
    #[test]
    fn restore_puts_back_only_our_own_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        let ours = MasterKeys::generate();
        create(&path, &ours).unwrap();
        replace(&path, &ours.with_new_version()).unwrap();
        restore(&path, &ours).unwrap();
        assert!(matches!(compare(&path, &ours), FileState::Same));

        // Another deployment's valid file, with the very versions a rotation leaves.
        let theirs = MasterKeys::generate().with_new_version();
        std::fs::remove_file(&path).unwrap();
        create(&path, &theirs).unwrap();
        let before = std::fs::read(&path).unwrap();
        let Err(KeyFileError::Changed { reason, .. }) = restore(&path, &ours) else {
            panic!("restore overwrote another deployment's key file");
        };
        assert_eq!(reason, "its version 1 is a different key");
        assert_eq!(std::fs::read(&path).unwrap(), before, "left intact");

        // Ours, but two versions ahead: not what one rotation adds.
        std::fs::remove_file(&path).unwrap();
        create(&path, &ours.with_new_version().with_new_version()).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            restore(&path, &ours),
            Err(KeyFileError::Changed { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before, "left intact");
    }

    #[test]
    fn created_with_owner_only_permissions_and_never_overwritten() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        let keys = MasterKeys::generate();
        create(&path, &keys).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!too_permissive(&path));
        assert!(matches!(
            create(&path, &MasterKeys::generate()),
            Err(KeyFileError::Exists { .. })
        ));
        let loaded = load(&path).unwrap();
        assert_eq!(
            loaded.get(1).unwrap().expose_bytes(),
            keys.get(1).unwrap().expose_bytes()
        );
    }

    #[test]
    fn replace_keeps_every_version() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        let keys = MasterKeys::generate();
        create(&path, &keys).unwrap();
        let rotated = keys.with_new_version();
        replace(&path, &rotated).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.current_version(), 2);
        assert!(loaded.get(1).is_some());
        assert!(replace(&path, &MasterKeys::generate()).is_err());
        restore(&path, &keys).unwrap();
        assert_eq!(load(&path).unwrap().current_version(), 1);
        std::fs::write(&path, "garbage").unwrap();
        assert!(
            replace(&path, &rotated).is_err(),
            "a malformed file is never replaced"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }

    /// Issue 12 item 18: the file's base64 keys are read into strings wiped on drop
    /// (they were plain `String`s), and still written and read back as before.
    #[test]
    fn base64_keys_are_held_in_strings_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        let keys = MasterKeys::generate();
        create(&path, &keys).unwrap();
        let text = std::fs::read(&path).unwrap();
        let contents: FileContents = serde_json::from_slice(&text).unwrap();
        for entry in &contents.keys {
            wiped_on_drop(&entry.key);
            assert_eq!(
                BASE64.decode(entry.key.expose_secret()).unwrap(),
                keys.get(entry.version).unwrap().expose_bytes()
            );
        }
        let rewritten = serde_json::to_vec_pretty(&contents).unwrap();
        assert_eq!(rewritten, text, "serialised as the plain base64 string");
        assert!(!format!("{:?}", contents.keys[0].key)
            .contains(&BASE64.encode(keys.get(1).unwrap().expose_bytes())));
    }

    #[test]
    fn malformed_files_are_reported_without_their_contents() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        std::fs::write(&path, "canary-key-material").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("malformed"), "{error}");
        assert!(!error.contains("canary"));
        assert!(matches!(
            load(&directory.path().join("absent")),
            Err(KeyFileError::Missing { .. })
        ));
    }
}
