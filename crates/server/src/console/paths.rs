//! The console's URLs, built in one place. A workspace name travels as ONE path
//! segment (`acme/ci` → `acme%2Fci`), like in the REST API; axum decodes it again, so
//! `~admin` and `%7Eadmin` reach a handler alike.

use std::fmt::Write;

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn segment(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

pub fn workspace(workspace: &str) -> String {
    format!("/console/workspaces/{}", segment(workspace))
}

pub fn credentials(workspace: &str) -> String {
    format!("{}/credentials", self::workspace(workspace))
}

pub fn new_credential(workspace: &str) -> String {
    format!("{}/new", credentials(workspace))
}

pub fn credential(workspace: &str, name: &str) -> String {
    format!("{}/{}", credentials(workspace), segment(name))
}

pub fn edit(workspace: &str, name: &str) -> String {
    format!("{}/edit", credential(workspace, name))
}

pub fn verify(workspace: &str, name: &str) -> String {
    format!("{}/verify", credential(workspace, name))
}

pub fn delete(workspace: &str, name: &str) -> String {
    format!("{}/delete", credential(workspace, name))
}

pub fn audit(workspace: &str) -> String {
    format!("{}/audit", self::workspace(workspace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_is_one_segment() {
        assert_eq!(segment("acme/ci"), "acme%2Fci");
        assert_eq!(segment("~admin"), "~admin");
        assert_eq!(segment("a b?#&é"), "a%20b%3F%23%26%C3%A9");
        assert_eq!(
            credentials("acme/ci"),
            "/console/workspaces/acme%2Fci/credentials"
        );
        assert_eq!(
            delete("~admin", "ghcr_1-x"),
            "/console/workspaces/~admin/credentials/ghcr_1-x/delete"
        );
        assert_eq!(audit("acme/ci"), "/console/workspaces/acme%2Fci/audit");
    }
}
