//! The JSON messages of the docker-credential-helpers protocol, which Docker, Podman,
//! skopeo, crane and distribution's `proxy.exec` speak to `docker-credential-regkeeper`.
//!
//! The protocol is someone else's, so these follow its spelling (`ServerURL`,
//! `Username`, `Secret`) rather than this crate's camelCase, and tolerate fields they do
//! not know: a newer client adding one must not break logins.

use serde::{Deserialize, Serialize};

use crate::Sensitive;

/// What `get` prints when it has nothing for a server, exactly: clients compare the
/// helper's standard output with this text to tell "not logged in" from a failure.
pub const CREDENTIALS_NOT_FOUND: &str = "credentials not found in native keychain";

/// A login for one registry server: `get` prints it, `store` reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperCredentials {
    /// The server as the client names it, e.g. `https://index.docker.io/v1/` or
    /// `registry.example.com:5000`.
    #[serde(rename = "ServerURL")]
    pub server_url: String,
    #[serde(rename = "Username")]
    pub username: String,
    /// The password or token. A `Username` of `<token>` marks an identity token.
    #[serde(rename = "Secret")]
    pub secret: Sensitive,
}

/// The user name docker-credential-helpers uses to mark `Secret` as an identity
/// (OAuth refresh) token rather than a password.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_the_protocol_and_debug_hides_the_secret() {
        let credentials: HelperCredentials = serde_json::from_str(
            r#"{"ServerURL":"127.0.0.1:5000","Username":"robot","Secret":"canary-7f3a","Extra":1}"#,
        )
        .unwrap();
        assert_eq!(credentials.server_url, "127.0.0.1:5000");
        assert!(!format!("{credentials:?}").contains("canary-7f3a"));
        assert_eq!(
            serde_json::to_value(&credentials).unwrap(),
            serde_json::json!({"ServerURL":"127.0.0.1:5000","Username":"robot","Secret":"canary-7f3a"})
        );
    }
}
