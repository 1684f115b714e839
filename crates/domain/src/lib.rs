//! regkeeper's domain: what it talks about (credentials, identities, policies, image
//! references, registries, sync targets, trusts), its one error type, and what has no
//! I/O — sealing secrets (`crypto`), the injected `clock` and audit records (`audit`).
//!
//! The compiler keeps the layers apart: this crate depends on no HTTP, SQL or network
//! crate (axum, sqlx, reqwest, tokio are not in its `Cargo.toml`), so the domain
//! cannot reach a socket, a database or a request. The server re-exports these
//! modules (`regkeeper::domain`, `regkeeper::crypto`, …) and adds the I/O around them.

pub mod audit;
pub mod clock;
pub mod credential;
pub mod crypto;
pub mod error;
pub mod identity;
pub mod json_keys;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod registry_token;
pub mod sync_target;
pub mod trust;

pub use error::{Error, Result};
/// How untrusted text is quoted back (`text::echo`): shared with the thin clients, so it
/// lives in the wire crate.
pub use regkeeper_wire::text;

#[cfg(test)]
mod tests {
    /// Issue 14: every domain parser quotes input through `text::echo` (they had helpers
    /// of their own), so a newline or an ANSI escape in it arrives escaped, never raw.
    #[test]
    fn quoted_input_has_control_characters_escaped() {
        let hostile = "x\n\u{1b}[31m";
        for shown in [
            crate::reference::parse(&format!("ghcr.io/org/app:{hostile}"))
                .unwrap_err()
                .to_string(),
            crate::registry::normalize(&format!("registry{hostile}.example.com"))
                .unwrap_err()
                .to_string(),
            crate::identity::validate_user_name(&format!("bob{hostile}"))
                .unwrap_err()
                .to_string(),
            crate::sync_target::SyncKind::parse(&format!("file{hostile}"))
                .unwrap_err()
                .to_string(),
        ] {
            assert!(shown.contains("x\\n\\u{1b}[31m"), "{shown}");
            assert!(!shown.contains(['\n', '\u{1b}']), "{shown:?}");
        }
    }
}
