//! Workload roles: created, changed and deleted by admins of the role's workspace, with
//! API tokens issued to them. A policy is checked when it is saved, not only when it
//! is used: an Allow may grant into the role's own workspace, into another workspace
//! only when the writer administers that one too, and into workspaces by wildcard
//! only when the writer is a site administrator. Exact Allow resources are bound to
//! the credential ids they name at that moment. Reaching into another workspace also
//! needs a grant recorded there (`grants`), which saving records for the workspaces
//! the writer administers.

use regex::Regex;
use secrecy::SecretString;
use std::sync::LazyLock;

use crate::audit::AuditRecord;
use crate::domain::identity::{parse_workspace_name, Principal, Role};
use crate::domain::policy::{
    credential_reference, Action, CredentialFacts, CredentialRef, Decision, Policy,
};
use crate::domain::{Error, Result};
use crate::store::{ApiTokenRow, RoleRow, TokenOwner};
use crate::text::echo;

use super::access::require;
use super::identity::{generate_token, token_expiry, token_row};
use super::{new_id, App};

static ROLE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{1,100}$").expect("valid regex"));
const MAX_DESCRIPTION: usize = 500;

fn validate_role_name(name: &str) -> Result<()> {
    if ROLE_NAME.is_match(name) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_role_name",
            format!(
                "invalid role name `{}`: use 1-100 letters, digits, `_` or `-`",
                echo(name)
            ),
        ))
    }
}

fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_description",
            format!("a description is at most {MAX_DESCRIPTION} printable characters"),
        ));
    }
    Ok(())
}

/// A role with its policy parsed back.
pub struct RoleView {
    pub row: RoleRow,
    pub policy: Policy,
}

fn view(row: RoleRow) -> Result<RoleView> {
    let policy = serde_json::from_str(&row.policy)
        .map_err(|error| Error::internal(format!("stored role policy: {error}")))?;
    Ok(RoleView { row, policy })
}

/// Validates a document, checks that the writer may grant what it allows, and binds
/// its exact Allow resources to the credentials they name.
async fn authorised_policy(
    app: &App,
    principal: &Principal,
    home: &str,
    document: &serde_json::Value,
) -> Result<Policy> {
    let mut policy = Policy::parse(document)?;
    let mut checked = std::collections::BTreeSet::new();
    for pattern in policy.allow_workspace_patterns() {
        if pattern == home || !checked.insert(pattern.to_owned()) {
            continue;
        }
        if pattern.contains('*') {
            if !principal.admin {
                return Err(Error::Forbidden(format!(
                    "the workspace pattern `{}` can grant into workspaces other than {home}: only a site administrator may write it; name each workspace instead",
                    echo(pattern)
                )));
            }
            continue;
        }
        require(
            app,
            principal,
            Some(pattern),
            Role::Admin,
            &format!("granting a role of {home} access to credentials in {pattern}"),
        )
        .await?;
    }
    for resource in policy.exact_allows_mut() {
        let (workspace, name) = resource.exact().expect("exact resources only");
        let (workspace, name) = (workspace.to_owned(), name.to_owned());
        let missing = || {
            Error::unprocessable(
                "unknown_credential",
                format!(
                    "the policy allows {}, which does not exist: create the credential first, or use a wildcard",
                    credential_reference(&workspace, &name)
                ),
            )
        };
        let found = app
            .store
            .workspace_by_name(&workspace)
            .await?
            .ok_or_else(missing)?;
        let credential = app
            .store
            .credential(&found.id, &name)
            .await?
            .ok_or_else(missing)?;
        resource.credential_id = Some(credential.id);
    }
    Ok(policy)
}

fn policy_text(policy: &Policy) -> String {
    serde_json::to_string(policy).expect("a policy serialises")
}

pub async fn create(
    app: &App,
    principal: &Principal,
    workspace: &str,
    name: &str,
    description: &str,
    document: &serde_json::Value,
) -> Result<RoleView> {
    let record = role_record(app, principal, "role.create", workspace, name);
    app.audited(record.clone(), async {
        let access = require(
            app,
            principal,
            Some(workspace),
            Role::Admin,
            "managing workload roles",
        )
        .await?;
        validate_role_name(name)?;
        validate_description(description)?;
        let policy = authorised_policy(app, principal, workspace, document).await?;
        let now = app.now();
        let row = RoleRow {
            id: new_id(),
            workspace_id: access.workspace.id.clone(),
            workspace_name: access.workspace.name.clone(),
            name: name.to_owned(),
            description: description.to_owned(),
            policy: policy_text(&policy),
            revision: 1,
            created_at: now,
            updated_at: now,
            created_by: principal.user_name.clone(),
        };
        let record = record
            .clone()
            .workspace(Some(&access.workspace.id), workspace)
            .detail(serde_json::json!({ "id": row.id, "policy": policy.document() }));
        app.store.create_role(&row, record).await?;
        super::grants::grant_on_save(app, principal, &row, &policy).await?;
        Ok(RoleView { row, policy })
    })
    .await
}

/// Checks that the caller administers `workspace` and reads the role there.
pub(super) async fn administered(
    app: &App,
    principal: &Principal,
    workspace: &str,
    name: &str,
    doing: &str,
) -> Result<(super::access::WorkspaceAccess, RoleRow)> {
    let access = require(app, principal, Some(workspace), Role::Admin, doing).await?;
    let found = find(app, &access.workspace.id, workspace, name).await?;
    Ok((access, found))
}

/// The audit record of a change to role `name` in `workspace`, before either is
/// resolved (a failure is recorded with what the caller asked for).
fn role_record(
    app: &App,
    principal: &Principal,
    action: &'static str,
    workspace: &str,
    name: &str,
) -> AuditRecord {
    app.record(Some(principal), action)
        .workspace(None, workspace)
        .target(name)
}

/// Runs `change` on role `name` in `workspace` as one audited change: the caller must
/// administer the workspace (`doing` says what for, in a refusal); `change` gets the
/// role and the audit record naming the workspace's id, as the store writes it once the
/// change is known to be allowed. A failure is recorded with what the caller asked for.
pub(super) async fn change_role<T, Fut>(
    app: &App,
    principal: &Principal,
    action: &'static str,
    (workspace, name): (&str, &str),
    doing: &str,
    change: impl FnOnce(RoleRow, AuditRecord) -> Fut,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let record = role_record(app, principal, action, workspace, name);
    app.audited(record.clone(), async {
        let (access, found) = administered(app, principal, workspace, name, doing).await?;
        let record = record.workspace(Some(&access.workspace.id), workspace);
        change(found, record).await
    })
    .await
}

async fn find(app: &App, workspace_id: &str, workspace: &str, name: &str) -> Result<RoleRow> {
    app.store
        .role(workspace_id, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("role {name} in {workspace}")))
}

pub async fn list(app: &App, principal: &Principal, workspace: &str) -> Result<Vec<RoleView>> {
    let access = require(
        app,
        principal,
        Some(workspace),
        Role::Admin,
        "reading workload roles",
    )
    .await?;
    app.store
        .roles(&access.workspace.id)
        .await?
        .into_iter()
        .map(view)
        .collect()
}

pub async fn show(
    app: &App,
    principal: &Principal,
    workspace: &str,
    name: &str,
) -> Result<RoleView> {
    let (_, found) =
        administered(app, principal, workspace, name, "reading workload roles").await?;
    view(found)
}

pub async fn update(
    app: &App,
    principal: &Principal,
    workspace: &str,
    name: &str,
    description: Option<&str>,
    document: Option<&serde_json::Value>,
) -> Result<RoleView> {
    change_role(
        app,
        principal,
        "role.update",
        (workspace, name),
        "managing workload roles",
        |existing, record| async move {
            let mut row = existing.clone();
            if let Some(description) = description {
                validate_description(description)?;
                row.description = description.to_owned();
            }
            let policy = match document {
                Some(document) => authorised_policy(app, principal, workspace, document).await?,
                None => view(existing.clone())?.policy,
            };
            row.policy = policy_text(&policy);
            row.revision = existing.revision + 1;
            row.updated_at = app.now();
            let record =
                record.detail(serde_json::json!({ "id": row.id, "policy": policy.document() }));
            app.store
                .update_role(&row, existing.revision, record)
                .await?;
            if document.is_some() {
                super::grants::grant_on_save(app, principal, &row, &policy).await?;
            }
            app.caches.forget_identities();
            Ok(RoleView { row, policy })
        },
    )
    .await
}

pub async fn delete(app: &App, principal: &Principal, workspace: &str, name: &str) -> Result<()> {
    change_role(
        app,
        principal,
        "role.delete",
        (workspace, name),
        "managing workload roles",
        |existing, record| async move {
            let record = record.detail(serde_json::json!({ "id": existing.id }));
            if !app.store.delete_role(&existing.id, record).await? {
                return Err(Error::NotFound(format!("role {name} in {workspace}")));
            }
            app.caches.forget_identities();
            Ok(())
        },
    )
    .await
}

pub async fn create_token(
    app: &App,
    principal: &Principal,
    workspace: &str,
    role: &str,
    token_name: &str,
    expires_in_seconds: Option<u64>,
) -> Result<(ApiTokenRow, SecretString)> {
    change_role(
        app,
        principal,
        "role.token_create",
        (workspace, role),
        "issuing tokens to workload roles",
        |found, record| async move {
            let now = app.now();
            let expires_at = token_expiry(now, token_name, expires_in_seconds)?;
            let token = generate_token();
            let mut row = token_row(
                TokenOwner::Role(found.id),
                token_name,
                &token,
                now,
                expires_at,
            );
            // Recorded so that disabling or deleting this user revokes it (a role making a
            // token records nobody: it has no user behind it to disable).
            row.created_by = (!principal.user_id.is_empty()).then(|| principal.user_id.clone());
            let record = record.detail(
            serde_json::json!({ "id": row.id, "prefix": row.display_prefix, "name": token_name }),
        );
            app.store.insert_api_token(&row, record).await?;
            Ok((row, token))
        },
    )
    .await
}

pub async fn list_tokens(
    app: &App,
    principal: &Principal,
    workspace: &str,
    role: &str,
) -> Result<Vec<ApiTokenRow>> {
    let (_, found) =
        administered(app, principal, workspace, role, "reading workload roles").await?;
    app.store.list_api_tokens(&TokenOwner::Role(found.id)).await
}

pub async fn revoke_token(
    app: &App,
    principal: &Principal,
    workspace: &str,
    role: &str,
    token_id: &str,
) -> Result<()> {
    change_role(
        app,
        principal,
        "role.token_revoke",
        (workspace, role),
        "revoking workload role tokens",
        |found, record| async move {
            let record = record.detail(serde_json::json!({ "id": token_id }));
            if !app
                .store
                .revoke_api_token(&TokenOwner::Role(found.id), token_id, app.now(), record)
                .await?
            {
                return Err(Error::NotFound(format!(
                    "active token {token_id} of role {role}"
                )));
            }
            app.caches.forget_identities();
            Ok(())
        },
    )
    .await
}

pub struct SimulationResult {
    pub decision: Decision,
    pub reference: String,
    pub exists: bool,
    pub sid: Option<String>,
    /// Whether the target workspace grants the role access, when it is another
    /// workspace the caller can see.
    pub grant_in_force: Option<bool>,
}

/// How the role's policy decides `action` on a credential, without doing it. The
/// credential's id is looked up only where the caller may see it; elsewhere it counts
/// as absent, so the simulator reveals nothing the caller could not read.
pub async fn simulate(
    app: &App,
    principal: &Principal,
    workspace: &str,
    role: &str,
    action: &str,
    reference: &str,
) -> Result<SimulationResult> {
    let (_, found) =
        administered(app, principal, workspace, role, "reading workload roles").await?;
    let found = view(found)?;
    let action = Action::parse(action)?;
    let named = CredentialRef::parse(reference)?;
    let target_workspace = named.workspace.unwrap_or_else(|| workspace.to_owned());
    parse_workspace_name(&target_workspace)?;
    let (id, grant_in_force) =
        match require(app, principal, Some(&target_workspace), Role::View, "").await {
            Ok(target) => (
                app.store
                    .credential(&target.workspace.id, &named.name)
                    .await?
                    .map(|credential| credential.id),
                if target.workspace.id == found.row.workspace_id {
                    None
                } else {
                    Some(
                        app.store
                            .role_grant_in_force(&target.workspace.id, &found.row.id)
                            .await?,
                    )
                },
            ),
            Err(_) => (None, None),
        };
    let decision = found.policy.evaluate(
        action,
        &CredentialFacts {
            workspace: &target_workspace,
            name: &named.name,
            id: id.as_deref().unwrap_or_default(),
        },
    );
    let statement = match decision {
        Decision::Allow { statement } | Decision::ExplicitDeny { statement } => Some(statement),
        Decision::ImplicitDeny => None,
    };
    Ok(SimulationResult {
        sid: statement.and_then(|index| found.policy.statements[index].sid.clone()),
        decision,
        reference: credential_reference(&target_workspace, &named.name),
        exists: id.is_some(),
        grant_in_force,
    })
}
