//! Running as a systemd service (`deploy/systemd/regkeeper.service`): telling the
//! service manager when the server is ready and when it stops, and reading the
//! service's credentials.
//!
//! Notifications go through the `sd-notify` crate to `NOTIFY_SOCKET` (`Type=notify`):
//! `READY=1` once the API listener (and the proxy's, if any) is bound and the first
//! admin exists, `STOPPING=1` when SIGTERM or SIGINT starts the graceful shutdown.
//! Without `NOTIFY_SOCKET` they do nothing; a failed send is logged, never fatal.
//!
//! Credentials (`LoadCredential=`) are files in `$CREDENTIALS_DIRECTORY`, read-only
//! and readable by the service alone:
//! - `regkeeper.bootstrap-token`: the first admin's API token, as if given with
//!   `--bootstrap-token-stdin` (one way only: with `REGKEEPER_BOOTSTRAP_TOKEN` or that
//!   flag too, `serve` refuses to start).
//! - `regkeeper.master-key`: seeds the master key file. Rotation must write the key
//!   file, and a credential cannot be written, so the key file stays where it is
//!   configured (the `StateDirectory=` by default): the credential is copied there
//!   only when that file does not exist yet (a first start, or a restore onto a new
//!   host). Once the file exists it wins; if the credential then lacks the file's
//!   current version (after a `key rotate`), a warning says to update the credential,
//!   the copy a restore would start from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use secrecy::SecretString;

use crate::key_file::{self, KeyFileError};

pub const BOOTSTRAP_TOKEN_CREDENTIAL: &str = "regkeeper.bootstrap-token";
pub const MASTER_KEY_CREDENTIAL: &str = "regkeeper.master-key";

/// The server is listening: `READY=1`, with a status line for `systemctl status`.
pub fn notify_ready(url: &str) {
    let status = format!("listening on {url}");
    send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// The graceful shutdown has begun: `STOPPING=1`.
pub fn notify_stopping() {
    send(&[sd_notify::NotifyState::Stopping]);
}

fn send(states: &[sd_notify::NotifyState<'_>]) {
    // `false`: leave NOTIFY_SOCKET alone (removing it would edit the environment, which
    // this workspace does not do); the server starts no child that could misuse it.
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(error = %error, "systemd.notify_failed");
    }
}

/// `$CREDENTIALS_DIRECTORY`, when systemd gave the service credentials.
pub fn credentials_directory(environment: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    environment("CREDENTIALS_DIRECTORY")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The credential `regkeeper.bootstrap-token`, if the service was given it.
pub fn bootstrap_token(directory: &Path) -> anyhow::Result<Option<SecretString>> {
    use std::io::Read;
    let path = directory.join(BOOTSTRAP_TOKEN_CREDENTIAL);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("reading credential {}", path.display()))
        }
    };
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(TOKEN_LIMIT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading credential {}", path.display()))?;
    if bytes.len() as u64 > TOKEN_LIMIT {
        bail!("credential {BOOTSTRAP_TOKEN_CREDENTIAL} holds more than {TOKEN_LIMIT} bytes, which is no token");
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        anyhow::anyhow!("credential {BOOTSTRAP_TOKEN_CREDENTIAL} is not valid UTF-8")
    })?;
    Ok(Some(SecretString::from(text.trim().to_owned())))
}

/// A token is a line of text; a larger credential is a mistake.
const TOKEN_LIMIT: u64 = 4096;

/// Copies the credential `regkeeper.master-key` to `key_file` if the service was given
/// it and `key_file` does not exist; see the module documentation.
pub fn seed_master_key(directory: &Path, key_file: &Path) -> anyhow::Result<()> {
    let source = directory.join(MASTER_KEY_CREDENTIAL);
    let seed = match key_file::load(&source) {
        Ok(keys) => keys,
        Err(KeyFileError::Missing { .. }) => return Ok(()),
        Err(error) => bail!("credential {MASTER_KEY_CREDENTIAL}: {error}"),
    };
    match key_file::load(key_file) {
        Err(KeyFileError::Missing { .. }) => {
            key_file::create(key_file, &seed).with_context(|| {
                format!(
                    "copying credential {MASTER_KEY_CREDENTIAL} to {} (REGKEEPER_MASTER_KEY_FILE)",
                    key_file.display()
                )
            })?;
            tracing::info!(path = %key_file.display(), "master_key.seeded_from_credential");
        }
        Ok(current) => {
            let outdated = current.versions().any(|(version, key)| {
                seed.get(version)
                    .is_none_or(|other| other.expose_bytes() != key.expose_bytes())
            });
            if outdated {
                tracing::warn!(
                    path = %key_file.display(),
                    master_key.version = current.current_version(),
                    "master_key.credential_outdated: the key file is newer than credential {MASTER_KEY_CREDENTIAL}; copy it to the credential store, or a restore from the credential will lack its newest versions"
                );
            }
        }
        // The keyring reports an unreadable key file itself, naming what to do.
        Err(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKeys;
    use secrecy::ExposeSecret;

    #[test]
    fn the_master_key_credential_seeds_a_missing_key_file_only() {
        let credentials = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let key_file = state.path().join("master.key");

        // No credential: nothing happens.
        seed_master_key(credentials.path(), &key_file).unwrap();
        assert!(!key_file.exists());

        let seed = MasterKeys::generate();
        key_file::create(&credentials.path().join(MASTER_KEY_CREDENTIAL), &seed).unwrap();
        seed_master_key(credentials.path(), &key_file).unwrap();
        let copied = key_file::load(&key_file).unwrap();
        assert_eq!(
            copied.get(1).unwrap().expose_bytes(),
            seed.get(1).unwrap().expose_bytes()
        );

        // A rotated file is never overwritten by the older credential.
        let rotated = copied.with_new_version();
        key_file::replace(&key_file, &rotated).unwrap();
        seed_master_key(credentials.path(), &key_file).unwrap();
        assert_eq!(key_file::load(&key_file).unwrap().current_version(), 2);

        // A credential that is not a key file stops the start, naming it.
        std::fs::remove_file(credentials.path().join(MASTER_KEY_CREDENTIAL)).unwrap();
        std::fs::write(credentials.path().join(MASTER_KEY_CREDENTIAL), "not json").unwrap();
        let error = seed_master_key(credentials.path(), &key_file)
            .unwrap_err()
            .to_string();
        assert!(error.contains(MASTER_KEY_CREDENTIAL), "{error}");
    }

    #[test]
    fn the_bootstrap_token_credential_is_read_when_present() {
        let credentials = tempfile::tempdir().unwrap();
        assert!(bootstrap_token(credentials.path()).unwrap().is_none());
        std::fs::write(
            credentials.path().join(BOOTSTRAP_TOKEN_CREDENTIAL),
            "rk_systemd_bootstrap_canary_0123456789\n",
        )
        .unwrap();
        let token = bootstrap_token(credentials.path()).unwrap().unwrap();
        assert_eq!(
            token.expose_secret(),
            "rk_systemd_bootstrap_canary_0123456789"
        );
    }
}
