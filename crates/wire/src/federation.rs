//! Identity federation (issue 13): trusts of workload roles
//! (`/api/v1/workspaces/{ws}/roles/{name}/trusts`) and the OIDC token exchange
//! (`POST /api/v1/oidc/exchange`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::Sensitive;

/// A new trust: tokens of `issuer` for `audience` whose `sub` and claims match may be
/// exchanged for the role's API tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrustInput {
    /// The issuer exactly as its tokens' `iss` spells it (https).
    pub issuer: String,
    /// Must be one of the token's `aud` values.
    pub audience: String,
    /// Pattern for `sub`; `*` matches any run of characters.
    pub subject: String,
    /// Claim (dotted path for nested ones, e.g. `kubernetes.io.namespace`) to pattern.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// Seconds an exchanged token may live at most; default 3600, at most 43200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_seconds: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Trust {
    pub id: String,
    /// The trusting role, `rk:WS:role/NAME`.
    pub role: String,
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    pub claims: BTreeMap<String, String>,
    pub max_session_seconds: i64,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TrustList {
    pub trusts: Vec<Trust>,
}

/// `POST /api/v1/oidc/exchange`: an OIDC token for an API token of a role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExchangeInput {
    /// `rk:WS:role/NAME`.
    pub role: String,
    /// The JWT. Write-only.
    #[cfg_attr(feature = "openapi", schema(value_type = String, write_only))]
    pub token: Sensitive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Exchanged {
    /// An API token of the role (`rk_…`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub token: Sensitive,
    pub expires_at: String,
}

/// `POST /api/v1/oidc/login/start`: what `regkeeper login` (without `--role`) sends to
/// learn where to send the person's browser (issue 13 §4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInStart {
    /// The CLI's loopback redirect, `http://127.0.0.1:PORT/...` (RFC 8252).
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
    /// The PKCE S256 challenge of the CLI's verifier.
    pub code_challenge: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SignInStarted {
    /// The identity provider's authorization URL to open in a browser.
    pub authorization_url: String,
}

/// `POST /api/v1/oidc/login`: the code the provider sent to the CLI's loopback
/// redirect, and what the CLI kept. The server holds the client secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInInput {
    /// Write-only.
    #[cfg_attr(feature = "openapi", schema(value_type = String, write_only))]
    pub code: Sensitive,
    /// The PKCE verifier. Write-only.
    #[cfg_attr(feature = "openapi", schema(value_type = String, write_only))]
    pub code_verifier: Sensitive,
    pub redirect_uri: String,
    pub nonce: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// The regkeeper user the provider named.
    pub user: String,
    /// A short-lived API token of that user (`rk_…`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub token: Sensitive,
    pub expires_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 item 2: the exchange's bodies never show a token in `Debug`.
    #[test]
    fn exchange_bodies_redact_their_tokens() {
        let input: ExchangeInput =
            serde_json::from_str(r#"{"role":"rk:acme/ci:role/builder","token":"jwt-canary-1"}"#)
                .unwrap();
        let answer = Exchanged {
            token: Sensitive::new("rk_canary-2"),
            expires_at: "2026-01-01T00:00:00Z".into(),
        };
        let shown = format!("{input:?} {answer:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(
            serde_json::from_str::<ExchangeInput>(r#"{"role":"r","token":"t","x":1}"#).is_err()
        );
    }

    /// Issue 13 item 4: the sign-in bodies never show a code, verifier or token.
    #[test]
    fn sign_in_bodies_redact_their_secrets() {
        let input: SignInInput = serde_json::from_str(
            r#"{"code":"code-canary","codeVerifier":"verifier-canary","redirectUri":"http://127.0.0.1:1/","nonce":"n"}"#,
        )
        .unwrap();
        let answer = SignedIn {
            user: "alice".into(),
            token: Sensitive::new("rk_canary"),
            expires_at: "2026-01-01T00:00:00Z".into(),
        };
        let shown = format!("{input:?} {answer:?}");
        assert!(!shown.contains("canary"), "{shown}");
    }
}
