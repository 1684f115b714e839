//! Domain types and errors: what regkeeper talks about, with no HTTP and no SQL in it.

pub mod credential;
pub mod error;
pub mod identity;
pub mod json_keys;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod sync_target;
pub mod trust;

pub use error::{Error, Result};

#[cfg(test)]
mod tests {
    /// Issue 14: every domain parser quotes input through `text::echo` (they had helpers
    /// of their own), so a newline or an ANSI escape in it arrives escaped, never raw.
    #[test]
    fn quoted_input_has_control_characters_escaped() {
        let hostile = "x\n\u{1b}[31m";
        for shown in [
            super::reference::parse(&format!("ghcr.io/org/app:{hostile}"))
                .unwrap_err()
                .to_string(),
            super::registry::normalize(&format!("registry{hostile}.example.com"))
                .unwrap_err()
                .to_string(),
            super::identity::validate_user_name(&format!("bob{hostile}"))
                .unwrap_err()
                .to_string(),
            super::sync_target::SyncKind::parse(&format!("file{hostile}"))
                .unwrap_err()
                .to_string(),
        ] {
            assert!(shown.contains("x\\n\\u{1b}[31m"), "{shown}");
            assert!(!shown.contains(['\n', '\u{1b}']), "{shown:?}");
        }
    }
}
