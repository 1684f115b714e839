//! Resolving an image to working registry credentials: pick the best-matching
//! credential (registry host, then the longest repository path prefix), open its
//! secret and turn it into a login, minting and caching a token where needed.

use crate::domain::credential::{Credential, Timestamp};
use crate::domain::identity::{Principal, Role};
use crate::domain::reference;
use crate::domain::{Error, Result};
use crate::providers::RegistryLogin;

use super::access::require;
use super::App;

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
        let credential = match name {
            Some(name) => {
                let named = app
                    .store
                    .credential(&access.workspace.id, name)
                    .await?
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
            None => {
                // One row is read, so a resolve costs the same with ten credentials in
                // the workspace or a hundred thousand.
                app.store
                    .best_credential_for(&access.workspace.id, &parsed.registry, &parsed.repository)
                    .await?
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "credential for {}/{} in {workspace_name}",
                            parsed.registry, parsed.repository
                        ))
                    })?
            }
        };
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
