//! Resolving an image to working registry credentials: pick the best-matching
//! credential (registry host, then the longest repository path prefix), open its
//! secret and turn it into a login, minting and caching a token where needed.

use crate::domain::credential::{Credential, Timestamp};
use crate::domain::identity::{Principal, Role};
use crate::domain::reference::{self, ImageReference};
use crate::domain::{Error, Result};
use crate::providers::RegistryLogin;

use super::access::require;
use super::App;

/// Whether `prefix` (no leading or trailing slash; empty for "everything") covers
/// `repository` on whole path components.
pub fn prefix_covers(prefix: &str, repository: &str) -> bool {
    prefix.is_empty()
        || repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The credential for `image` among `candidates`: same host, longest covering prefix.
pub fn best_match<'a>(
    candidates: &'a [Credential],
    image: &ImageReference,
) -> Option<&'a Credential> {
    candidates
        .iter()
        .filter(|credential| credential.registry_host == image.registry)
        .filter(|credential| prefix_covers(&credential.path_prefix, &image.repository))
        .max_by_key(|credential| credential.path_prefix.len())
}

pub struct Resolution {
    pub credential: Credential,
    pub login: RegistryLogin,
}

pub async fn resolve(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    image: &str,
    name: Option<&str>,
) -> Result<Resolution> {
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "credential.resolve")
        .workspace(None, &workspace_name)
        .target(image.chars().take(200).collect::<String>());
    app.audited(record.clone(), async {
        let access = require(
            app,
            principal,
            Some(&workspace_name),
            Role::Launch,
            "resolving credentials",
        )
        .await?;
        let parsed = reference::parse(image)
            .map_err(|error| Error::invalid("invalid_image", error.to_string()))?;
        let credentials = app.store.credentials(&access.workspace.id).await?;
        let credential = match name {
            Some(name) => {
                let named = credentials
                    .iter()
                    .find(|credential| credential.name == name)
                    .ok_or_else(|| {
                        Error::NotFound(format!("credential {name} in {workspace_name}"))
                    })?;
                // A named credential must still serve the image's registry, so a
                // reference cannot hand one registry's secret out for another.
                if named.registry_host != parsed.registry {
                    return Err(Error::unprocessable(
                        "registry_mismatch",
                        format!(
                            "credential {name} serves {}, not {}",
                            named.registry_host, parsed.registry
                        ),
                    ));
                }
                named
            }
            None => best_match(&credentials, &parsed).ok_or_else(|| {
                Error::NotFound(format!(
                    "credential for {}/{} in {workspace_name}",
                    parsed.registry, parsed.repository
                ))
            })?,
        }
        .clone();
        let login = super::tokens::login_for(app, &credential).await?;
        // The secret leaves only once its audit entry is written.
        app.store
            .append_audit(
                record
                    .clone()
                    .workspace(Some(&credential.workspace_id), &credential.workspace_name)
                    .target(credential.name.clone())
                    .detail(serde_json::json!({
                        "id": credential.id,
                        "registry": parsed.registry,
                        "repository": parsed.repository,
                    })),
            )
            .await?;
        Ok(Resolution { credential, login })
    })
    .await
}

/// Milliseconds left before `expires_at`, for callers that need a cache duration.
pub fn remaining(expires_at: Option<Timestamp>, now: Timestamp) -> Option<i64> {
    expires_at.map(|expires_at| (expires_at - now).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_components() {
        assert!(prefix_covers("", "a/b"));
        assert!(prefix_covers("team", "team/app"));
        assert!(prefix_covers("team/app", "team/app"));
        assert!(!prefix_covers("team", "teamwork/app"));
        assert!(!prefix_covers("team/app", "team"));
    }
}
