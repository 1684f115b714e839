//! How the node-side programs get the API token they call regkeeper with when none is
//! configured (issue 13 §3): an OIDC token (`REGKEEPER_OIDC_TOKEN_FILE`, e.g. a CI
//! job's or a node's projected token) is exchanged for a short-lived token of the role
//! `REGKEEPER_ROLE` (`POST /api/v1/oidc/exchange`), and the kubelet provider exchanges
//! a pod's own service-account token (see `kubelet`).
//!
//! Both programs run once per pull, so an exchanged token would otherwise live for one
//! call: it is kept in a 0600 file in the user's cache directory
//! (`$XDG_CACHE_HOME/regkeeper/tokens/`, else `~/.cache/regkeeper/tokens/`) until
//! [`REFRESH_MARGIN_SECONDS`] before it expires. The file is named by a SHA-256 of the
//! server URL, the role and the OIDC token, so another server, role or OIDC token (a
//! CI job's next one) never reuses it. A cached token the server refuses (401) is
//! forgotten and exchanged again, once. The cache is only a saving: if the directory
//! cannot be made private (0700) or written, every call exchanges — as it does when
//! neither `XDG_CACHE_HOME` nor `HOME` is set (a kubelet's provider `env` may have to
//! set one). Neither token is ever printed, logged or put in an error.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use regkeeper_client::{Client, ClientError};
use regkeeper_wire::text::echo;
use regkeeper_wire::{Exchanged, Sensitive};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::Environment;

pub const ROLE_VARIABLE: &str = "REGKEEPER_ROLE";
pub const OIDC_TOKEN_FILE_VARIABLE: &str = "REGKEEPER_OIDC_TOKEN_FILE";

/// A cached token is exchanged anew this long before it expires, so a call never
/// starts with a token about to lapse (and a node's clock running a little slow does
/// not matter).
pub const REFRESH_MARGIN_SECONDS: i64 = 120;

/// OIDC tokens are a few kilobytes; the server refuses those over 16 KiB.
const TOKEN_FILE_LIMIT: u64 = 64 * 1024;

/// `REGKEEPER_ROLE` and the OIDC token read from `REGKEEPER_OIDC_TOKEN_FILE`.
pub struct RoleSettings {
    role: String,
    token_file: String,
    oidc_token: Sensitive,
}

impl RoleSettings {
    /// The settings when `REGKEEPER_ROLE` or `REGKEEPER_OIDC_TOKEN_FILE` is set, `None`
    /// when neither is (an API token is then expected as before). Every error names the
    /// variable; none quotes the file.
    pub fn from_environment(environment: Environment<'_>) -> Result<Option<Self>, ClientError> {
        let set = |name: &str| environment(name).filter(|value| !value.trim().is_empty());
        let (role, token_file) = match (set(ROLE_VARIABLE), set(OIDC_TOKEN_FILE_VARIABLE)) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(ClientError::Config(format!(
                    "{ROLE_VARIABLE} is set but {OIDC_TOKEN_FILE_VARIABLE} is not: set it to the file holding the OIDC token to exchange for the role"
                )))
            }
            (None, Some(_)) => {
                return Err(ClientError::Config(format!(
                    "{OIDC_TOKEN_FILE_VARIABLE} is set but {ROLE_VARIABLE} is not: set it to the role to exchange the token for (rk:WORKSPACE:role/NAME)"
                )))
            }
            (Some(role), Some(token_file)) => (role.trim().to_owned(), token_file),
        };
        for token_variable in ["REGKEEPER_TOKEN", "REGKEEPER_TOKEN_FILE"] {
            if set(token_variable).is_some() {
                return Err(ClientError::Config(format!(
                    "{ROLE_VARIABLE} and {token_variable} are both set: use either an API token or a role's OIDC exchange, not both"
                )));
            }
        }
        check_role_reference(&role)
            .map_err(|problem| ClientError::Config(format!("{ROLE_VARIABLE} {problem}")))?;
        let oidc_token = read_token_file(Path::new(&token_file))?;
        Ok(Some(Self {
            role,
            token_file,
            oidc_token,
        }))
    }

    pub fn role(&self) -> &str {
        &self.role
    }
}

/// Checks the shape of a role reference, `rk:WORKSPACE:role/NAME`; the server checks
/// the rest. The problem names what was given, shortened.
pub fn check_role_reference(role: &str) -> Result<(), String> {
    let well_formed = role
        .strip_prefix("rk:")
        .and_then(|rest| rest.rsplit_once(":role/"))
        .is_some_and(|(workspace, name)| {
            !workspace.is_empty() && !name.is_empty() && !name.contains(['/', ':'])
        });
    if well_formed && !role.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!(
            "must be a role reference rk:WORKSPACE:role/NAME, not `{}`",
            echo(role)
        ))
    }
}

fn read_token_file(path: &Path) -> Result<Sensitive, ClientError> {
    let failed = |problem: String| {
        ClientError::Config(format!(
            "{OIDC_TOKEN_FILE_VARIABLE}: {} {problem}",
            path.display()
        ))
    };
    let file =
        std::fs::File::open(path).map_err(|error| failed(format!("cannot be read: {error}")))?;
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, TOKEN_FILE_LIMIT + 1),
        &mut bytes,
    )
    .map_err(|error| failed(format!("cannot be read: {error}")))?;
    if bytes.len() as u64 > TOKEN_FILE_LIMIT {
        return Err(failed(format!(
            "is larger than {} KiB: it should hold one OIDC token (a JWT)",
            TOKEN_FILE_LIMIT / 1024
        )));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| failed("is not UTF-8 text".to_owned()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(failed("is empty".to_owned()));
    }
    Ok(Sensitive::new(token))
}

/// Calls `request` with a client holding an API token: the configured one when
/// `REGKEEPER_ROLE` is not set, else the role's, from the cache or a new exchange.
pub fn with_client<T>(
    environment: Environment<'_>,
    clock: &dyn Fn() -> SystemTime,
    request: &dyn Fn(&Client) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let Some(settings) = RoleSettings::from_environment(environment)? else {
        return request(&Client::from_environment(environment)?);
    };
    let anonymous = Client::anonymous_from_environment(environment)?;
    let cache = LoginCache::locate(environment, anonymous.base_url(), &settings);
    if let Some(cache) = &cache {
        if let Some(token) = cache.load(clock()) {
            match request(&anonymous.with_token(token)) {
                // Revoked, or its trust removed: forget it and exchange once more.
                Err(ClientError::Api { status: 401, .. }) => cache.forget(),
                other => return other,
            }
        }
    }
    let exchanged = exchange(&anonymous, &settings)?;
    if let Some(cache) = &cache {
        cache.save(&exchanged, clock());
    }
    request(&anonymous.with_token(exchanged.token)).map_err(|error| match error {
        ClientError::Api {
            status: 401,
            code,
            message,
        } => ClientError::Config(format!(
            "regkeeper refused the token just exchanged for {ROLE_VARIABLE} {}: {message} ({code})",
            settings.role
        )),
        other => other,
    })
}

/// One exchange of the configured OIDC token, with errors naming both variables.
fn exchange(anonymous: &Client, settings: &RoleSettings) -> Result<Exchanged, ClientError> {
    anonymous
        .exchange_oidc(&settings.role, &settings.oidc_token)
        .map_err(|error| match error {
            ClientError::Api { code, message, .. } => ClientError::Config(format!(
                "regkeeper refused to exchange the OIDC token in {OIDC_TOKEN_FILE_VARIABLE} ({}) for {ROLE_VARIABLE} {}: {message} ({code})",
                settings.token_file, settings.role
            )),
            other => other,
        })
}

/// A token of one server, role and OIDC token, in a file only its owner can read.
struct LoginCache {
    path: PathBuf,
}

impl LoginCache {
    /// The cache file for these settings, creating the directory (0700) if needed;
    /// `None` when there is no home or cache directory, or it is not private.
    fn locate(environment: Environment<'_>, url: &str, settings: &RoleSettings) -> Option<Self> {
        let directory = cache_directory(environment)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&directory)
            .ok()?;
        let metadata = std::fs::symlink_metadata(&directory).ok()?;
        if !metadata.is_dir() || metadata.permissions().mode() & 0o077 != 0 {
            return None;
        }
        let mut hasher = Sha256::new();
        for part in [url, settings.role.as_str(), settings.oidc_token.expose()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let name: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Some(Self {
            path: directory.join(name),
        })
    }

    /// The cached token if it is ours (a 0600 regular file) and good for more than the
    /// margin at `now`.
    fn load(&self, now: SystemTime) -> Option<Sensitive> {
        let exchanged = read_cached(&self.path)?;
        (seconds_left(&exchanged, now)? > REFRESH_MARGIN_SECONDS).then_some(exchanged.token)
    }

    /// Best effort: written to a new 0600 file and renamed over the old one, so a
    /// concurrent reader sees a whole token or none. Expired files of earlier OIDC
    /// tokens are removed on the way.
    fn save(&self, exchanged: &Exchanged, now: SystemTime) {
        let Some(directory) = self.path.parent() else {
            return;
        };
        let Some(name) = self.path.file_name().and_then(|name| name.to_str()) else {
            return;
        };
        let temporary = directory.join(format!(".{name}.{}", std::process::id()));
        let text = Zeroizing::new(serde_json::to_string(exchanged).expect("a token serialises"));
        let _ = std::fs::remove_file(&temporary);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&temporary, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        prune(directory, now);
    }

    fn forget(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `$XDG_CACHE_HOME/regkeeper/tokens` (an absolute path, as the XDG specification
/// requires), else `$HOME/.cache/regkeeper/tokens`.
fn cache_directory(environment: Environment<'_>) -> Option<PathBuf> {
    let base = environment("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| {
            environment("HOME")
                .map(PathBuf::from)
                .filter(|path| path.is_absolute())
                .map(|home| home.join(".cache"))
        })?;
    Some(base.join("regkeeper/tokens"))
}

fn read_cached(path: &Path) -> Option<Exchanged> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    if !metadata.is_file()
        || metadata.permissions().mode() & 0o777 != 0o600
        || metadata.len() > TOKEN_FILE_LIMIT
    {
        return None;
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).ok()?);
    serde_json::from_str(&text).ok()
}

fn seconds_left(exchanged: &Exchanged, now: SystemTime) -> Option<i64> {
    let expires_at = OffsetDateTime::parse(&exchanged.expires_at, &Rfc3339).ok()?;
    let now = i64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    Some(expires_at.unix_timestamp() - now)
}

/// Removes the cache files (named by a 64-digit hash) whose token has expired.
fn prune(directory: &Path, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_cache_file = name.to_str().is_some_and(|name| {
            name.len() == 64 && name.bytes().all(|byte| byte.is_ascii_hexdigit())
        });
        if !is_cache_file {
            continue;
        }
        let path = entry.path();
        let expired = read_cached(&path)
            .and_then(|exchanged| seconds_left(&exchanged, now))
            .is_none_or(|left| left <= 0);
        if expired {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn settings_from(pairs: &[(&str, &str)]) -> Result<Option<RoleSettings>, ClientError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        RoleSettings::from_environment(&move |name| map.get(name).cloned())
    }

    fn message(result: Result<Option<RoleSettings>, ClientError>) -> String {
        match result {
            Err(error) => error.to_string(),
            Ok(_) => panic!("expected an error"),
        }
    }

    /// Issue 13 §3: the helper's and provider's role settings fail with errors naming
    /// the variables, and never quote the OIDC token file.
    #[test]
    fn role_settings_errors_name_the_variables() {
        let directory = tempfile::tempdir().unwrap();
        let token_file = directory.path().join("token");
        std::fs::write(&token_file, "jwt-canary-8812\n").unwrap();
        let token_path = token_file.display().to_string();
        assert!(settings_from(&[]).unwrap().is_none());
        let missing_file = message(settings_from(&[("REGKEEPER_ROLE", "rk:acme:role/ci")]));
        assert!(
            missing_file.contains("REGKEEPER_OIDC_TOKEN_FILE"),
            "{missing_file}"
        );
        let missing_role = message(settings_from(&[("REGKEEPER_OIDC_TOKEN_FILE", &token_path)]));
        assert!(missing_role.contains("REGKEEPER_ROLE"), "{missing_role}");
        let both = message(settings_from(&[
            ("REGKEEPER_ROLE", "rk:acme:role/ci"),
            ("REGKEEPER_OIDC_TOKEN_FILE", &token_path),
            ("REGKEEPER_TOKEN", "rk_x"),
        ]));
        assert!(both.contains("REGKEEPER_TOKEN"), "{both}");
        let malformed = message(settings_from(&[
            ("REGKEEPER_ROLE", "acme/ci"),
            ("REGKEEPER_OIDC_TOKEN_FILE", &token_path),
        ]));
        assert!(
            malformed.contains("REGKEEPER_ROLE must be a role reference"),
            "{malformed}"
        );
        std::fs::write(&token_file, "  \n").unwrap();
        let empty = message(settings_from(&[
            ("REGKEEPER_ROLE", "rk:acme:role/ci"),
            ("REGKEEPER_OIDC_TOKEN_FILE", &token_path),
        ]));
        assert!(
            empty.starts_with("REGKEEPER_OIDC_TOKEN_FILE") && empty.contains("is empty"),
            "{empty}"
        );
        std::fs::write(&token_file, "jwt-canary-8812\n").unwrap();
        let settings = settings_from(&[
            ("REGKEEPER_ROLE", "rk:acme/ci:role/builder"),
            ("REGKEEPER_OIDC_TOKEN_FILE", &token_path),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(settings.role(), "rk:acme/ci:role/builder");
        assert_eq!(settings.oidc_token.expose(), "jwt-canary-8812");
        let unreadable = message(settings_from(&[
            ("REGKEEPER_ROLE", "rk:acme:role/ci"),
            ("REGKEEPER_OIDC_TOKEN_FILE", "/nonexistent/token"),
        ]));
        assert!(
            unreadable.contains("REGKEEPER_OIDC_TOKEN_FILE: /nonexistent/token"),
            "{unreadable}"
        );
    }

    #[test]
    fn role_references_are_checked_for_shape() {
        for good in [
            "rk:acme:role/ci",
            "rk:acme/prod:role/puller",
            "rk:~admin:role/a-b",
        ] {
            assert!(check_role_reference(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "acme",
            "rk::role/ci",
            "rk:acme:role/",
            "rk:acme:credential/x",
            "rk:a:role/b/c",
            "rk:a:role/b\n",
        ] {
            assert!(check_role_reference(bad).is_err(), "{bad:?}");
        }
    }

    /// Issue 13 §3: the exchanged token is cached in a 0600 file keyed by server, role
    /// and OIDC token, reused until the margin before it expires, and pruned after.
    #[test]
    fn the_token_cache_is_private_keyed_and_expires() {
        let home = tempfile::tempdir().unwrap();
        let cache_home = home.path().join("cache");
        let cache_home_text = cache_home.display().to_string();
        let environment =
            move |name: &str| (name == "XDG_CACHE_HOME").then(|| cache_home_text.clone());
        let settings = |token: &str| RoleSettings {
            role: "rk:acme:role/ci".into(),
            token_file: "unused".into(),
            oidc_token: Sensitive::new(token),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let cache =
            LoginCache::locate(&environment, "https://rk.example", &settings("jwt-1")).unwrap();
        assert!(cache.path.starts_with(cache_home.join("regkeeper/tokens")));
        let directory_mode = std::fs::metadata(cache.path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(directory_mode & 0o777, 0o700);
        assert!(cache.load(now).is_none());
        // 1_780_000_000 + 3600 seconds.
        let expires_at = "2026-05-28T21:26:40Z".to_owned();
        cache.save(
            &Exchanged {
                token: Sensitive::new("rk_cached-canary"),
                expires_at,
            },
            now,
        );
        let mode = std::fs::metadata(&cache.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(cache.load(now).unwrap().expose(), "rk_cached-canary");
        // Another OIDC token, role or server: another file.
        for (url, token) in [
            ("https://rk.example", "jwt-2"),
            ("https://other.example", "jwt-1"),
        ] {
            let other = LoginCache::locate(&environment, url, &settings(token)).unwrap();
            assert_ne!(other.path, cache.path);
            assert!(other.load(now).is_none());
        }
        // Within the margin before expiry it is not used.
        let late = now + Duration::from_secs(3600 - REFRESH_MARGIN_SECONDS as u64);
        assert!(cache.load(late).is_none());
        // A file others could read is not trusted.
        std::fs::set_permissions(&cache.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.load(now).is_none());
        std::fs::set_permissions(&cache.path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Saving another token prunes the expired one.
        let other =
            LoginCache::locate(&environment, "https://rk.example", &settings("jwt-2")).unwrap();
        other.save(
            &Exchanged {
                token: Sensitive::new("rk_second"),
                expires_at: "2099-01-01T00:00:00Z".into(),
            },
            now + Duration::from_secs(7200),
        );
        assert!(!cache.path.exists());
        assert!(other.path.exists());
        cache.forget();
        other.forget();
        assert!(!other.path.exists());
    }

    #[test]
    fn no_home_means_no_cache() {
        let settings = RoleSettings {
            role: "rk:acme:role/ci".into(),
            token_file: "unused".into(),
            oidc_token: Sensitive::new("jwt"),
        };
        assert!(LoginCache::locate(&|_| None, "https://rk.example", &settings).is_none());
        assert!(LoginCache::locate(
            &|name| (name == "HOME").then(|| "relative".to_owned()),
            "u",
            &settings
        )
        .is_none());
    }
}
