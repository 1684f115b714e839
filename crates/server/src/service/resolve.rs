//! Resolving to working registry credentials. The credential is the one a reference
//! names (a bare name in the workspace, or `rk:WS:credential/NAME`), else the best
//! match for an image (registry host, then the longest repository path prefix) or for
//! a registry alone (its credential without a prefix). Its secret is opened and turned
//! into a login, minting and caching a token where needed.
//!
//! Users need the `launch` role in the credential's workspace; a workload role needs
//! its policy to allow `credentials:Resolve` on that very credential. `explain` (in
//! `resolve/explain.rs`) says why, under the same checks, without a secret.

use std::sync::Arc;

use crate::audit::AuditRecord;
use crate::domain::credential::Credential;
use crate::domain::identity::{Principal, Role};
use crate::domain::policy::{credential_reference, Action, CredentialRef};
use crate::domain::{reference, registry};
use crate::domain::{Error, Result};
use crate::providers::RegistryLogin;
use crate::store::WorkspaceRow;
use crate::text;

use super::access::{require, role_allows, role_workspace};
use super::caches::shared_error;
use super::App;

mod explain;
pub use explain::{explain, Candidate, Explanation, Outcome, Verdict};

/// What a caller asks to resolve: at least one of the three.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub image: Option<&'a str>,
    pub registry: Option<&'a str>,
    pub reference: Option<&'a str>,
}

pub struct Resolution {
    pub credential: Credential,
    pub login: RegistryLogin,
}

/// The registry host and repository a request is for.
struct Target {
    host: String,
    repository: String,
}

/// What a request is for. `http_registries` are the operator's plain-http
/// `host:port`s: a server URL that asks for plain `http://` gets a credential only for
/// one of them, since every other credential is meant to travel over TLS.
fn target(request: &Request<'_>, http_registries: &[String]) -> Result<Option<Target>> {
    match (request.image, request.registry) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "invalid_resolve",
            "give an image or a registry, not both",
        )),
        (Some(image), None) => {
            let parsed = reference::parse(image)
                .map_err(|error| Error::invalid("invalid_image", error.to_string()))?;
            Ok(Some(Target {
                host: parsed.registry,
                repository: parsed.repository,
            }))
        }
        (None, Some(server)) => {
            let plain_http = registry::plain_http_endpoint(server)
                .map_err(|error| Error::invalid("invalid_registry", error.to_string()))?;
            if let Some(endpoint) = plain_http {
                if !http_registries.contains(&endpoint) {
                    return Err(Error::NotFound(format!(
                        "credential for plain-http http://{endpoint} (only the registries in REGKEEPER_OUTBOUND_HTTP_REGISTRIES get credentials over plain http)"
                    )));
                }
            }
            // A path in the server URL is read as a repository, so a credential with
            // a matching path prefix can serve it.
            let address = registry::normalize(server)
                .map_err(|error| Error::invalid("invalid_registry", error.to_string()))?;
            Ok(Some(Target {
                host: address.host,
                repository: address.path_prefix,
            }))
        }
        (None, None) if request.reference.is_some() => Ok(None),
        (None, None) => Err(Error::invalid(
            "invalid_resolve",
            "give an image, a registry or a credential reference to resolve",
        )),
    }
}

pub async fn resolve(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    request: Request<'_>,
) -> Result<Resolution> {
    resolve_as(app, principal, workspace, request, "credential.resolve").await
}

/// As [`resolve`], audited as `action`.
pub async fn resolve_as(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    request: Request<'_>,
    action: &'static str,
) -> Result<Resolution> {
    let (credential, login) =
        resolve_inner(app, principal, workspace, request, action, true, true).await?;
    Ok(Resolution {
        credential: Credential::clone(&credential),
        login: login.ok_or_else(|| Error::internal("resolve without a login"))?,
    })
}

/// The credential `resolve` would pick for `image`, under the same permissions, without
/// opening its secret: for the proxy, which needs the login only when it has no
/// upstream token cached, and which never hands it out. Audited as `action`; with
/// `audit_success` false only failures are (the proxy records a repeated request
/// once).
pub async fn authorize_pull(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    image: &str,
    action: &'static str,
    audit_success: bool,
) -> Result<Arc<Credential>> {
    let request = Request {
        image: Some(image),
        ..Request::default()
    };
    let (credential, _) = resolve_inner(
        app,
        principal,
        workspace,
        request,
        action,
        false,
        audit_success,
    )
    .await?;
    Ok(credential)
}

#[tracing::instrument(
    name = "credential.resolve",
    skip_all,
    fields(resolve.action = action, credential.id = tracing::field::Empty)
)]
async fn resolve_inner(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    request: Request<'_>,
    action: &'static str,
    want_login: bool,
    audit_success: bool,
) -> Result<(Arc<Credential>, Option<RegistryLogin>)> {
    let Aim {
        named,
        workspace_name,
        record,
    } = aim(app, principal, workspace, &request, action);
    app.audited(record.clone(), async {
        let target = target(&request, &app.config.outbound.http_registries)?;
        let named = named?;
        let workspace = workspace_for(app, principal, &workspace_name).await?;
        let credential = match (&named, &target) {
            (Some(named), _) => named_credential(app, &workspace.id, &named.name)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "credential {}",
                        credential_reference(&workspace.name, &named.name)
                    ))
                })?,
            (None, Some(target)) => best_credential(app, &workspace.id, target)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "credential for {}/{} in {}",
                        target.host, target.repository, workspace.name
                    ))
                })?,
            (None, None) => unreachable!("target() requires a reference without a target"),
        };
        tracing::Span::current().record("credential.id", credential.id.as_str());
        if let Some(role) = &principal.role {
            role_allows(role, Action::Resolve, &credential)?;
        }
        // A named credential must still serve the image's registry, so a reference
        // cannot hand one registry's secret out for another.
        if let (Some(_), Some(target)) = (&named, &target) {
            if credential.registry_host != target.host {
                return Err(Error::unprocessable(
                    "registry_mismatch",
                    format!(
                        "credential {} serves {}, not {}",
                        credential.name, credential.registry_host, target.host
                    ),
                ));
            }
        }
        let login = if want_login {
            Some(super::registry_tokens::login_for(app, &credential).await?)
        } else {
            None
        };
        // The secret leaves only once its audit entry is written (in a group commit
        // with the other resolves waiting for the database).
        if audit_success {
            app.audit_writer
                .append(
                    record
                        .clone()
                        .workspace(Some(&credential.workspace_id), &credential.workspace_name)
                        .target(credential.name.clone())
                        .detail(serde_json::json!({
                            "id": credential.id,
                            "registry": target.as_ref().map(|t| &t.host),
                            "repository": target.as_ref().map(|t| &t.repository),
                        })),
                )
                .await?;
        }
        Ok((credential, login))
    })
    .await
}

/// What a request is aimed at, before any check: the reference it names (if it
/// parses), the workspace, and its audit record begun for `action`.
struct Aim {
    named: Result<Option<CredentialRef>>,
    /// The reference's workspace, else `workspace`, else the caller's personal one, so a
    /// refusal is recorded where that workspace's admins see it.
    workspace_name: String,
    record: AuditRecord,
}

/// For [`resolve_inner`] and [`explain`].
fn aim(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    request: &Request<'_>,
    action: &'static str,
) -> Aim {
    let named = request.reference.map(CredentialRef::parse).transpose();
    let workspace_name = match &named {
        Ok(Some(CredentialRef {
            workspace: Some(workspace),
            ..
        })) => workspace.clone(),
        _ => workspace.map_or_else(|| principal.personal_workspace(), str::to_owned),
    };
    let shown = request
        .reference
        .or(request.image)
        .or(request.registry)
        .unwrap_or_default();
    // What was asked for, as typed, but never a password or token pasted into it.
    let record = app
        .record(Some(principal), action)
        .workspace(None, &workspace_name)
        .target(text::without_secrets(shown));
    Aim {
        named,
        workspace_name,
        record,
    }
}

/// The best credential for the target, through the cache. One row is read on a miss,
/// so a resolve costs the same with ten credentials in the workspace or a hundred
/// thousand; concurrent misses for one target share that read.
async fn best_credential(
    app: &App,
    workspace_id: &str,
    target: &Target,
) -> Result<Option<Arc<Credential>>> {
    let key = (
        workspace_id.to_owned(),
        target.host.clone(),
        target.repository.clone(),
    );
    app.caches
        .best_credentials
        .try_get_with(key, async {
            let found = app
                .store
                .best_credential_for(workspace_id, &target.host, &target.repository)
                .await?;
            Ok::<_, Error>(found.map(Arc::new))
        })
        .await
        .map_err(shared_error)
}

async fn named_credential(
    app: &App,
    workspace_id: &str,
    name: &str,
) -> Result<Option<Arc<Credential>>> {
    let key = (workspace_id.to_owned(), name.to_owned());
    app.caches
        .named_credentials
        .try_get_with(key, async {
            let found = app.store.credential(workspace_id, name).await?;
            Ok::<_, Error>(found.map(Arc::new))
        })
        .await
        .map_err(shared_error)
}

/// The workspace to resolve in, if the caller may resolve there at all.
async fn workspace_for(app: &App, principal: &Principal, name: &str) -> Result<WorkspaceRow> {
    match &principal.role {
        Some(role) => role_workspace(app, role, name, Action::Resolve).await,
        None => Ok(require(
            app,
            principal,
            Some(name),
            Role::Launch,
            "resolving credentials",
        )
        .await?
        .workspace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(server: &str) -> Request<'_> {
        Request {
            registry: Some(server),
            ..Request::default()
        }
    }

    /// Issue 12 item 5: `http://HOST` (also `:80`) does not reach the credential meant
    /// for TLS unless the operator listed that host and port for plain http.
    #[test]
    fn plain_http_server_urls_need_the_operators_plain_http_list() {
        for server in [
            "http://registry.example.com",
            "http://registry.example.com:80",
            "HTTP://registry.example.com:80/team",
            "http://registry.example.com:443",
        ] {
            let error = target(&registry(server), &[]).err().expect(server);
            assert!(matches!(error, Error::NotFound(_)), "{server}: {error:?}");
            assert!(
                error
                    .to_string()
                    .contains("REGKEEPER_OUTBOUND_HTTP_REGISTRIES"),
                "{error}"
            );
        }
        let listed = [
            "registry.example.com:80".to_owned(),
            "127.0.0.1:5000".to_owned(),
        ];
        for (server, host) in [
            ("http://registry.example.com", "registry.example.com"),
            ("http://registry.example.com:80/", "registry.example.com"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://registry.example.com", "registry.example.com"),
            ("registry.example.com", "registry.example.com"),
        ] {
            let found = target(&registry(server), &listed).unwrap().unwrap();
            assert_eq!(found.host, host, "{server}");
        }
        // Listing another port does not open this one.
        assert!(target(&registry("http://127.0.0.1:5001"), &listed).is_err());
        assert!(target(&registry("https://127.0.0.1:5001"), &listed).is_ok());
    }
}
