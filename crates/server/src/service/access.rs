//! Who may do what in a workspace. A workspace the caller is not a member of answers
//! exactly like one that does not exist, so names cannot be probed: `Error::Hidden`,
//! which only the audit log tells apart from `Error::NotFound`.

use crate::domain::credential::Credential;
use crate::domain::identity::{parse_workspace_name, Principal, Role, WorkloadRole};
use crate::domain::policy::{
    credential_reference, role_reference, Action, CredentialFacts, Decision,
};
use crate::domain::{Error, Result};
use crate::store::WorkspaceRow;

use super::App;

pub struct WorkspaceAccess {
    pub workspace: WorkspaceRow,
    pub role: Role,
}

/// Resolves `name` (the caller's personal workspace when `None`) and checks that the
/// caller holds at least `needed` there; `doing` names the action for the message.
pub async fn require(
    app: &App,
    principal: &Principal,
    name: Option<&str>,
    needed: Role,
    doing: &str,
) -> Result<WorkspaceAccess> {
    let name = name.map_or_else(|| principal.personal_workspace(), str::to_owned);
    parse_workspace_name(&name)?;
    let workspace = workspace_by_name(app, &name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("workspace {name}")))?;
    let key = (workspace.id.clone(), principal.user_id.clone());
    let role = match app.caches.memberships.get(&key) {
        Some(role) => role,
        None => {
            let role = app.store.role_of(&workspace.id, &principal.user_id).await?;
            app.caches.memberships.insert(key, role);
            role
        }
    }
    // Answered as if it did not exist; audited as a denial.
    .ok_or_else(|| Error::Hidden(format!("workspace {name}")))?;
    if role < needed {
        return Err(Error::Forbidden(format!(
            "your role in {name} is {role}; {doing} needs {needed} or higher"
        )));
    }
    Ok(WorkspaceAccess { workspace, role })
}

/// Whether the caller holds at least `needed` in the workspace, by the rule
/// [`require`] applies, so a page shows only the controls its actions would allow.
/// A workspace the caller cannot see is still an error (`Hidden`, answered as not found).
pub async fn may(app: &App, principal: &Principal, name: &str, needed: Role) -> Result<bool> {
    match require(app, principal, Some(name), needed, "this").await {
        Ok(_) => Ok(true),
        Err(Error::Forbidden(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

pub fn require_site_admin(principal: &Principal, doing: &str) -> Result<()> {
    if principal.admin {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "{doing} needs a site administrator"
        )))
    }
}

/// A workspace as a workload role reaches it: only when its policy has an Allow for
/// `action` that could match there and, for a workspace other than the role's own,
/// that workspace holds a grant in force for the role (the target's admins consent,
/// as a resource policy does in AWS). Checked on every request, through a cache that
/// every change to grants, memberships or users clears. Any other workspace answers
/// exactly like one that does not exist, as it does for a user who is not a member —
/// except one the policy names outright, where the refusal says what is missing.
pub async fn role_workspace(
    app: &App,
    role: &WorkloadRole,
    name: &str,
    action: Action,
) -> Result<WorkspaceRow> {
    parse_workspace_name(name)?;
    if !role.policy.may_reach(action, name) {
        return Err(Error::Hidden(format!("workspace {name}")));
    }
    let workspace = workspace_by_name(app, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("workspace {name}")))?;
    if workspace.id == role.workspace_id || role_granted(app, &workspace.id, &role.id).await? {
        return Ok(workspace);
    }
    if role.policy.names_workspace(name) {
        return Err(Error::Forbidden(format!(
            "{} holds no grant in force in {name}: an admin of {name} must grant it (regkeeper roles grants add {} --workspace {name})",
            role_reference(&role.workspace_name, &role.name),
            role_reference(&role.workspace_name, &role.name),
        )));
    }
    Err(Error::Hidden(format!("workspace {name}")))
}

/// Whether the workload role holds a grant in force in the workspace, through the cache.
async fn role_granted(app: &App, workspace_id: &str, role_id: &str) -> Result<bool> {
    let key = (workspace_id.to_owned(), role_id.to_owned());
    if let Some(granted) = app.caches.role_grants.get(&key) {
        return Ok(granted);
    }
    let granted = app.store.role_grant_in_force(workspace_id, role_id).await?;
    app.caches.role_grants.insert(key, granted);
    Ok(granted)
}

/// A workspace by name, through the cache.
pub(super) async fn workspace_by_name(app: &App, name: &str) -> Result<Option<WorkspaceRow>> {
    if let Some(found) = app.caches.workspaces.get(name) {
        return Ok(found);
    }
    let found = app.store.workspace_by_name(name).await?;
    app.caches.workspaces.insert(name.to_owned(), found.clone());
    Ok(found)
}

/// Whether the role's policy allows `action` on the credential; a denial names the
/// statement that decided it.
pub fn role_allows(role: &WorkloadRole, action: Action, credential: &Credential) -> Result<()> {
    let facts = CredentialFacts {
        workspace: &credential.workspace_name,
        name: &credential.name,
        id: &credential.id,
    };
    let why = match role.policy.evaluate(action, &facts) {
        Decision::Allow { .. } => return Ok(()),
        Decision::ExplicitDeny { statement } => {
            format!("statement {statement} of its policy denies it")
        }
        Decision::ImplicitDeny => "no statement of its policy allows it".to_owned(),
    };
    Err(Error::Forbidden(format!(
        "{} may not {action} {}: {why}",
        role_reference(&role.workspace_name, &role.name),
        credential_reference(&credential.workspace_name, &credential.name),
    )))
}
