//! How people sign in (issue 13 §4): single sign-on through an OIDC provider
//! (`REGKEEPER_OIDC_ISSUER`, `REGKEEPER_OIDC_CLIENT_ID`,
//! `REGKEEPER_OIDC_CLIENT_SECRET_FILE`, `REGKEEPER_OIDC_USERNAME_CLAIM`,
//! `REGKEEPER_OIDC_AUTO_CREATE`) and whether the console still takes an API token
//! (`REGKEEPER_CONSOLE_TOKEN_SIGN_IN`). Kept apart from `config.rs` so each setting's
//! parsing and validation sit beside its type.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use url::Url;
use zeroize::Zeroizing;

use super::ConfigError;

const ISSUER: &str = "REGKEEPER_OIDC_ISSUER";
const CLIENT_ID: &str = "REGKEEPER_OIDC_CLIENT_ID";
const CLIENT_SECRET_FILE: &str = "REGKEEPER_OIDC_CLIENT_SECRET_FILE";
const USERNAME_CLAIM: &str = "REGKEEPER_OIDC_USERNAME_CLAIM";
const AUTO_CREATE: &str = "REGKEEPER_OIDC_AUTO_CREATE";
const TOKEN_SIGN_IN: &str = "REGKEEPER_CONSOLE_TOKEN_SIGN_IN";
/// A client secret is a few dozen characters; a larger file is the wrong file.
const MAX_SECRET_BYTES: u64 = 4096;

/// The identity provider people sign in with. No `Debug` derive: it holds the client
/// secret.
#[derive(Clone)]
pub struct SingleSignOn {
    /// Exactly as the provider's discovery document and ID tokens spell it.
    pub issuer: String,
    pub client_id: String,
    /// Read from the file at start, wiped on drop, sent only to the token endpoint.
    pub client_secret: SecretString,
    /// The claim naming the regkeeper user; `None` for `preferred_username`, else
    /// `email`.
    pub username_claim: Option<String>,
    /// Whether a person the provider vouches for but regkeeper does not know becomes a
    /// user (with a personal workspace) at first sign-in.
    pub auto_create: bool,
}

impl fmt::Debug for SingleSignOn {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SingleSignOn")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("username_claim", &self.username_claim)
            .field("auto_create", &self.auto_create)
            .finish()
    }
}

/// The sign-in settings as read, before validation; file values already merged
/// under the environment's.
#[derive(Default)]
pub struct SignInSources {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub username_claim: Option<String>,
    pub auto_create: Option<String>,
    pub token_sign_in: Option<String>,
}

/// `(single sign-on, whether the console takes API tokens)`.
pub fn load(sources: SignInSources) -> Result<(Option<SingleSignOn>, bool), ConfigError> {
    let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
    let token_sign_in = match &sources.token_sign_in {
        Some(value) => super::parse_bool(TOKEN_SIGN_IN, value)?,
        None => true,
    };
    let single_sign_on = match (
        sources.issuer,
        sources.client_id,
        sources.client_secret_file,
    ) {
        (None, None, None) => {
            for (key, value) in [
                (USERNAME_CLAIM, &sources.username_claim),
                (AUTO_CREATE, &sources.auto_create),
            ] {
                if value.is_some() {
                    return Err(invalid(
                        key,
                        format!("needs single sign-on: set {ISSUER}, {CLIENT_ID} and {CLIENT_SECRET_FILE}"),
                    ));
                }
            }
            None
        }
        (Some(issuer), Some(client_id), Some(secret_file)) => Some(SingleSignOn {
            issuer: validate_issuer(issuer.trim())?,
            client_id: validate_client_id(client_id.trim())?,
            client_secret: read_secret(&secret_file)?,
            username_claim: sources
                .username_claim
                .map(|claim| validate_claim(claim.trim()))
                .transpose()?,
            auto_create: match &sources.auto_create {
                Some(value) => super::parse_bool(AUTO_CREATE, value)?,
                None => false,
            },
        }),
        (issuer, client_id, _) => {
            let missing = if issuer.is_none() {
                ISSUER
            } else if client_id.is_none() {
                CLIENT_ID
            } else {
                CLIENT_SECRET_FILE
            };
            return Err(invalid(
                missing,
                format!("single sign-on needs {ISSUER}, {CLIENT_ID} and {CLIENT_SECRET_FILE} together; this one is missing"),
            ));
        }
    };
    if !token_sign_in && single_sign_on.is_none() {
        return Err(invalid(
            TOKEN_SIGN_IN,
            format!("false leaves the console with no way to sign in: configure single sign-on ({ISSUER}, ...) too"),
        ));
    }
    Ok((single_sign_on, token_sign_in))
}

fn validate_issuer(issuer: &str) -> Result<String, ConfigError> {
    let url = Url::parse(issuer).map_err(|error| ConfigError::Invalid {
        key: ISSUER,
        message: format!("`{issuer}` is not a URL: {error}"),
    })?;
    // The outbound client reaches providers over HTTPS only; an http issuer would
    // start and then fail every sign-in.
    if url.scheme() != "https" || url.host().is_none() {
        return Err(ConfigError::Invalid {
            key: ISSUER,
            message: format!("`{issuer}` must be an https:// URL"),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::Invalid {
            key: ISSUER,
            message: "an issuer has no query or fragment".into(),
        });
    }
    // Kept as written, not as `Url` normalises it: tokens' `iss` must equal it exactly.
    Ok(issuer.to_owned())
}

fn validate_client_id(client_id: &str) -> Result<String, ConfigError> {
    if client_id.is_empty() || client_id.len() > 255 || client_id.chars().any(char::is_control) {
        return Err(ConfigError::Invalid {
            key: CLIENT_ID,
            message: "a client id is 1-255 printable characters".into(),
        });
    }
    Ok(client_id.to_owned())
}

fn validate_claim(claim: &str) -> Result<String, ConfigError> {
    if claim.is_empty()
        || claim.len() > 100
        || claim
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err(ConfigError::Invalid {
            key: USERNAME_CLAIM,
            message: "a claim name is 1-100 characters without spaces".into(),
        });
    }
    Ok(claim.to_owned())
}

/// The client secret: the file's text without its trailing newline, never shown.
fn read_secret(path: &Path) -> Result<SecretString, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: CLIENT_SECRET_FILE,
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?
        .len();
    if size > MAX_SECRET_BYTES {
        return Err(invalid(format!(
            "{} is larger than {MAX_SECRET_BYTES} bytes; it should hold only the client secret",
            path.display()
        )));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?,
    );
    let secret = text.trim();
    if secret.is_empty() {
        return Err(invalid(format!("{} is empty", path.display())));
    }
    Ok(SecretString::from(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn secret_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret");
        std::fs::write(&path, text).unwrap();
        (directory, path)
    }

    fn complete(path: &Path) -> SignInSources {
        SignInSources {
            issuer: Some("https://idp.example.com/realms/acme".into()),
            client_id: Some("regkeeper".into()),
            client_secret_file: Some(path.to_owned()),
            ..SignInSources::default()
        }
    }

    /// Issue 13 item 4: the SSO settings are read, defaulted and never shown.
    #[test]
    fn single_sign_on_loads_with_its_defaults_and_hides_the_secret() {
        let (_directory, path) = secret_file("canary-client-secret\n");
        let (loaded, token_sign_in) = load(complete(&path)).unwrap();
        let loaded = loaded.unwrap();
        assert!(token_sign_in);
        assert_eq!(loaded.client_secret.expose_secret(), "canary-client-secret");
        assert_eq!(loaded.username_claim, None);
        assert!(!loaded.auto_create);
        assert!(!format!("{loaded:?}").contains("canary-client-secret"));
        assert_eq!(load(SignInSources::default()).unwrap().0.map(|_| ()), None);
    }

    /// Issue 13 item 4: bad sign-in settings stop the server with the key named.
    #[test]
    fn bad_sign_in_settings_name_their_key() {
        let (_directory, path) = secret_file("s");
        let key_of = |sources: SignInSources| match load(sources) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an error, got {:?}", other.map(|_| ())),
        };
        let mut partial = complete(&path);
        partial.client_id = None;
        assert_eq!(key_of(partial), CLIENT_ID);
        let mut partial = complete(&path);
        partial.client_secret_file = None;
        assert_eq!(key_of(partial), CLIENT_SECRET_FILE);
        let mut http = complete(&path);
        http.issuer = Some("http://idp.example.com".into());
        assert_eq!(key_of(http), ISSUER);
        let mut missing = complete(&path);
        missing.client_secret_file = Some(path.with_file_name("absent"));
        assert_eq!(key_of(missing), CLIENT_SECRET_FILE);
        let (_empty_directory, empty) = secret_file("\n");
        assert_eq!(key_of(complete(&empty)), CLIENT_SECRET_FILE);
        let mut claim = complete(&path);
        claim.username_claim = Some("two words".into());
        assert_eq!(key_of(claim), USERNAME_CLAIM);
        let mut auto = complete(&path);
        auto.auto_create = Some("perhaps".into());
        assert_eq!(key_of(auto), AUTO_CREATE);
        let locked_out = SignInSources {
            token_sign_in: Some("false".into()),
            ..SignInSources::default()
        };
        assert_eq!(key_of(locked_out), TOKEN_SIGN_IN);
        let orphan = SignInSources {
            auto_create: Some("true".into()),
            ..SignInSources::default()
        };
        assert_eq!(key_of(orphan), AUTO_CREATE);
    }
}
