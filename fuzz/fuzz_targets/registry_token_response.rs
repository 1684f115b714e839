//! Feeds arbitrary bytes to what regkeeper reads from a registry's token service: the
//! token JSON (`parse_token_json`) and the `access` claim of a JWT (`granted_access`).
//! Any registry a user names can answer with anything.
//!
//! `$S` in the input stands for a secret canary (a token), which no error may repeat.

#![no_main]

#[path = "common.rs"]
mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use base64::Engine;
use common::replace;
use libfuzzer_sys::fuzz_target;
use regkeeper::registry_auth::{granted_access, parse_token_json};
use secrecy::ExposeSecret;

const CANARY: &str = "token-canary-77d2a1";

fuzz_target!(|data: &[u8]| {
    let body = replace(data, b"$S", CANARY.as_bytes());
    match parse_token_json("registry.example", &body) {
        Ok(token) => {
            let secret = token.token.expose_secret();
            assert!(!secret.is_empty());
            assert!(token.expires_in.as_secs() >= 1);
            // Whatever `expires_in` claims, a token is reused for an hour at most.
            assert!(
                token.expires_in.as_secs() <= regkeeper::registry_auth::MAXIMUM_TOKEN_SECONDS
            );
            assert_eq!(token.granted, granted_access(secret));
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.contains(CANARY), "{message}");
        }
    }

    // The bytes as a whole token, and as the payload of a JWT.
    if let Ok(text) = std::str::from_utf8(&body) {
        round_trips(text);
    }
    round_trips(&format!(
        "eyJhbGciOiJub25lIn0.{}.sig",
        BASE64_URL.encode(&body)
    ));
});

/// What `granted_access` reads, written back as a JWT, reads the same.
fn round_trips(token: &str) {
    let granted = granted_access(token);
    let claims = serde_json::json!({
        "access": granted
            .iter()
            .map(|(name, actions)| serde_json::json!({"type": "repository", "name": name, "actions": actions}))
            .collect::<Vec<_>>(),
    });
    let payload = BASE64_URL.encode(claims.to_string());
    let again = granted_access(&format!("eyJhbGciOiJub25lIn0.{payload}.sig"));
    assert_eq!(again, granted, "{token:?}");
}
