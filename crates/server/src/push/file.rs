//! Writing a docker `config.json` below the sync root, atomically and confined.
//!
//! Confinement is by file descriptor, not by string checks: the root is opened once and
//! every later step goes through `cap_std::fs::Dir`, which resolves paths beneath it
//! (`openat2(RESOLVE_BENEATH)` on Linux, component by component elsewhere), so neither
//! `..` nor a symbolic link — even one swapped in between two steps — can lead out.
//! Each workspace writes below its own directory, `ROOT/WORKSPACE/` (workspace names
//! are `ORG/NAME` or `~USER`, safe path components), so one tenant never touches
//! another's files.
//!
//! The file is merged, not overwritten: other `auths` entries and other top-level keys
//! (`credHelpers`, `credsStore`, …) are kept, ours is replaced whole. It is written to
//! a temporary file in the same directory (mode 0600, fsynced) and renamed over the old
//! one, then the directory is fsynced: a reader sees the old file or the new one, never
//! a partial one.
//!
//! Writes in one process are serialised (`Pushers`); two replicas writing one file on
//! a shared filesystem are not. A `credsStore` kept in a merged file still wins over
//! our `auths` entry in the docker CLI.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, OpenOptions, OpenOptionsExt, PermissionsExt};
use zeroize::Zeroizing;

use super::SyncError;

/// A larger existing file is refused rather than read.
const MAX_EXISTING_BYTES: u64 = 1024 * 1024;

pub(super) struct ConfigWrite {
    pub root: PathBuf,
    pub workspace: String,
    /// Relative to the workspace directory, validated (`domain::sync_target`).
    pub path: String,
    pub key: String,
    /// The key written last time, removed if it differs from `key`.
    pub old_key: Option<String>,
    pub auth: Zeroizing<String>,
}

impl ConfigWrite {
    pub fn run(self) -> Result<(), SyncError> {
        let shown = self.path.clone();
        let io_error = |error: std::io::Error| classify(&shown, &error);
        let root =
            Dir::open_ambient_dir(&self.root, cap_std::ambient_authority()).map_err(|error| {
                SyncError::File {
                    path: shown.clone(),
                    message: format!("the server's sync root cannot be opened: {error}"),
                }
            })?;
        let relative = Path::new(&self.workspace).join(&self.path);
        let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
            return Err(SyncError::PathEscapes { path: shown });
        };
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        match root.create_dir_with(parent, &builder) {
            // Exists, or a symbolic link is in the way: opening it tells which.
            Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(io_error(error))
            }
            _ => {}
        }
        let directory = root.open_dir(parent).map_err(io_error)?;

        let existing = read_existing(&directory, name, &shown)?;
        let document = merge(
            existing.as_ref().map(|bytes| bytes.as_slice()),
            &self,
            &shown,
        )?;

        let temporary = format!(
            ".{}.regkeeper-{}.tmp",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        );
        let written = write_new(&directory, &temporary, &document)
            .and_then(|()| directory.rename(&temporary, &directory, name))
            .and_then(|()| sync_directory(&directory));
        if let Err(error) = written {
            let _ = directory.remove_file(&temporary);
            return Err(io_error(error));
        }
        Ok(())
    }
}

fn read_existing(
    directory: &Dir,
    name: &std::ffi::OsStr,
    shown: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, SyncError> {
    match directory.symlink_metadata(name) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(classify(shown, &error)),
        Ok(metadata) if !metadata.is_file() => {
            return Err(SyncError::NotRegularFile {
                path: shown.to_owned(),
            })
        }
        Ok(_) => {}
    }
    let file = directory
        .open(name)
        .map_err(|error| classify(shown, &error))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_EXISTING_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| classify(shown, &error))?;
    if bytes.len() as u64 > MAX_EXISTING_BYTES {
        return Err(SyncError::ExistingFileInvalid {
            path: shown.to_owned(),
        });
    }
    Ok(Some(bytes))
}

/// The new file: the old one's content with our entry replaced (and the previous key
/// removed if it changed).
fn merge(
    existing: Option<&[u8]>,
    write: &ConfigWrite,
    shown: &str,
) -> Result<Zeroizing<Vec<u8>>, SyncError> {
    let invalid = || SyncError::ExistingFileInvalid {
        path: shown.to_owned(),
    };
    let mut document = match existing {
        Some(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => {
            match serde_json::from_slice::<serde_json::Value>(bytes).map_err(|_| invalid())? {
                serde_json::Value::Object(map) => map,
                _ => return Err(invalid()),
            }
        }
        _ => serde_json::Map::new(),
    };
    let auths = document
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
        .as_object_mut()
        .ok_or_else(invalid)?;
    if let Some(old) = write.old_key.as_deref().filter(|old| *old != write.key) {
        auths.remove(old);
    }
    auths.insert(
        write.key.clone(),
        serde_json::json!({ "auth": write.auth.as_str() }),
    );
    let mut bytes =
        Zeroizing::new(serde_json::to_vec_pretty(&document).expect("a JSON map serializes"));
    bytes.push(b'\n');
    Ok(bytes)
}

fn write_new(directory: &Dir, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let mut file = directory.open_with(name, &options)?;
    // The umask can only take bits away from 0600, but say it once more explicitly.
    file.set_permissions(cap_std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the rename durable. The directory is opened again for reading: cap-std holds
/// directories as `O_PATH` descriptors, which cannot be fsynced.
fn sync_directory(directory: &Dir) -> std::io::Result<()> {
    directory.open(".")?.sync_all()
}

/// cap-std reports a path that would leave the root as `PermissionDenied` with its own
/// message; everything else is an ordinary I/O failure. Messages name only the
/// relative path, never where the sync root is on the server.
fn classify(shown: &str, error: &std::io::Error) -> SyncError {
    let text = error.to_string();
    if text.contains("outside of the filesystem") || text.contains("outside the filesystem") {
        SyncError::PathEscapes {
            path: shown.to_owned(),
        }
    } else {
        SyncError::File {
            path: shown.to_owned(),
            message: text,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(root: &Path, path: &str, key: &str, old_key: Option<&str>) -> Result<(), SyncError> {
        ConfigWrite {
            root: root.to_owned(),
            workspace: "acme/ci".into(),
            path: path.into(),
            key: key.into(),
            old_key: old_key.map(str::to_owned),
            auth: Zeroizing::new("dXNlcjpwdw==".into()),
        }
        .run()
    }

    #[test]
    fn writes_a_private_docker_config_and_merges_into_an_existing_one() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "docker/config.json", "ghcr.io", None).unwrap();
        let path = root.path().join("acme/ci/docker/config.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(root.path().join("acme/ci/docker"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let mut document: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(document["auths"]["ghcr.io"]["auth"], "dXNlcjpwdw==");
        document["credHelpers"] = serde_json::json!({"gcr.io": "gcloud"});
        document["auths"]["quay.io"] = serde_json::json!({"auth": "b3RoZXI6eA=="});
        std::fs::write(&path, document.to_string()).unwrap();
        write(
            root.path(),
            "docker/config.json",
            "ghcr.io/acme",
            Some("ghcr.io"),
        )
        .unwrap();
        let merged: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(merged["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(merged["auths"]["quay.io"]["auth"], "b3RoZXI6eA==");
        assert_eq!(merged["auths"]["ghcr.io/acme"]["auth"], "dXNlcjpwdw==");
        assert!(merged["auths"].get("ghcr.io").is_none(), "the old key went");
        let leftovers: Vec<_> = std::fs::read_dir(root.path().join("acme/ci/docker"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn refuses_files_it_cannot_read_as_a_docker_config() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("acme/ci")).unwrap();
        for content in ["not json", "[1]", "{\"auths\": 3}"] {
            std::fs::write(root.path().join("acme/ci/config.json"), content).unwrap();
            let error = write(root.path(), "config.json", "ghcr.io", None).unwrap_err();
            assert_eq!(error.code(), "existing_file_invalid", "{content}");
            assert_eq!(
                std::fs::read_to_string(root.path().join("acme/ci/config.json")).unwrap(),
                content,
                "left as it was"
            );
        }
    }

    #[test]
    fn symbolic_links_cannot_lead_out_of_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("acme/ci")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("acme/ci/escape")).unwrap();
        let error = write(root.path(), "escape/config.json", "ghcr.io", None).unwrap_err();
        assert_eq!(error.code(), "path_escapes_root", "{error}");
        std::os::unix::fs::symlink(
            outside.path().join("config.json"),
            root.path().join("acme/ci/linked.json"),
        )
        .unwrap();
        let error = write(root.path(), "linked.json", "ghcr.io", None).unwrap_err();
        assert_eq!(error.code(), "not_a_regular_file", "{error}");
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "nothing was written outside"
        );
        let message = error.to_string();
        assert!(
            !message.contains(&root.path().display().to_string()),
            "{message}"
        );
    }
}
