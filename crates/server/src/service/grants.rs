//! Cross-workspace grants: a workload role reaches credentials outside its own
//! workspace only while BOTH its policy allows it AND the target workspace records a
//! grant for it, made by a user who still administers the target (AWS asks the same
//! of cross-account secrets: the identity policy and the resource policy). The grant
//! is recorded when an admin of the target grants the role, or when the policy's
//! writer saves a policy reaching a workspace they administer; it lapses by itself
//! when its granter loses admin there, leaves, is disabled or deleted, and the target's
//! admins list and revoke grants (and see every outside role whose policy reaches
//! them, granted or not). `access::role_workspace` checks it on every request.
//!
//! Limits: a grant covers whatever the role's policy allows in the workspace —
//! narrowing it to some credentials is the policy's job, and the target's admins who
//! do not also administer the role's workspace cannot change the statements reaching
//! them. Listing the roles that reach a workspace reads every role of every workspace
//! (an administrative action, never on a resolve's path).

use crate::audit::AuditRecord;
use crate::domain::identity::parse_role_reference;
use crate::domain::identity::{Principal, Role};
use crate::domain::policy::{role_reference, Effect, Policy};
use crate::domain::{Error, Result};
use crate::store::{RoleGrantRow, RoleRow, WorkspaceRow};

use super::access::{require, WorkspaceAccess};
use super::{new_id, App};

/// Where a role stands in a workspace other than its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    /// Granted by a user who still administers the workspace: the policy applies.
    InForce,
    /// Granted by a user who no longer administers it (demoted, removed, disabled or
    /// deleted): the role reaches nothing here until an admin grants it again.
    Lapsed,
    /// The role's policy reaches here, but no grant was ever recorded (or it was
    /// revoked): the role reaches nothing here.
    NotGranted,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::InForce => "in_force",
            GrantStatus::Lapsed => "lapsed",
            GrantStatus::NotGranted => "not_granted",
        }
    }
}

/// One outside role as the target workspace's admins see it.
pub struct GrantView {
    pub role: String,
    pub status: GrantStatus,
    pub granted_by: Option<String>,
    pub granted_at: Option<i64>,
    /// What the role's policy allows here: `ACTIONS on PATTERN` per Allow resource.
    pub allows: Vec<String>,
}

fn parse_policy(role: &RoleRow) -> Result<Policy> {
    serde_json::from_str(&role.policy)
        .map_err(|error| Error::internal(format!("stored role policy: {error}")))
}

/// The Allow resources of `policy` that can match in `workspace`, with their actions.
fn allows_in(policy: &Policy, workspace: &str) -> Vec<String> {
    policy
        .statements
        .iter()
        .filter(|statement| statement.effect == Effect::Allow)
        .flat_map(|statement| {
            statement
                .resources
                .iter()
                .filter(|resource| {
                    let reaching = Policy {
                        statements: vec![crate::domain::policy::Statement {
                            resources: vec![(*resource).clone()],
                            ..statement.clone()
                        }],
                    };
                    reaching.reaches(workspace)
                })
                .map(|resource| format!("{} on {}", statement.actions.join(","), resource.pattern))
        })
        .collect()
}

/// Every outside role whose policy reaches `workspace` or that holds a grant there.
pub async fn list(app: &App, principal: &Principal, workspace: &str) -> Result<Vec<GrantView>> {
    let access = require(
        app,
        principal,
        Some(workspace),
        Role::Admin,
        "reading the grants of outside workload roles",
    )
    .await?;
    let grants = app.store.role_grants(&access.workspace.id).await?;
    let mut views = Vec::new();
    for role in app.store.all_roles().await? {
        if role.workspace_id == access.workspace.id {
            continue;
        }
        let grant = grants.iter().find(|grant| grant.role_id == role.id);
        let policy = parse_policy(&role)?;
        if grant.is_none() && !policy.reaches(&access.workspace.name) {
            continue;
        }
        views.push(GrantView {
            role: role_reference(&role.workspace_name, &role.name),
            status: match grant {
                Some(grant) if grant.in_force => GrantStatus::InForce,
                Some(_) => GrantStatus::Lapsed,
                None => GrantStatus::NotGranted,
            },
            granted_by: grant.map(|grant| grant.granted_by.clone()),
            granted_at: grant.map(|grant| grant.granted_at),
            allows: allows_in(&policy, &access.workspace.name),
        });
    }
    Ok(views)
}

/// The role a reference names, which must belong to a workspace other than `target`.
async fn outside_role(app: &App, target: &WorkspaceRow, reference: &str) -> Result<RoleRow> {
    let (home, name) = parse_role_reference(reference)?;
    if home == target.name {
        return Err(Error::invalid(
            "own_workspace_role",
            format!("{reference} belongs to {home}: a role needs no grant in its own workspace"),
        ));
    }
    let not_found = || Error::NotFound(format!("role {}", role_reference(&home, &name)));
    let workspace = app
        .store
        .workspace_by_name(&home)
        .await?
        .ok_or_else(not_found)?;
    app.store
        .role(&workspace.id, &name)
        .await?
        .ok_or_else(not_found)
}

fn grant_row(
    target: &WorkspaceRow,
    role: &RoleRow,
    principal: &Principal,
    at: i64,
) -> RoleGrantRow {
    RoleGrantRow {
        id: new_id(),
        workspace_id: target.id.clone(),
        role_id: role.id.clone(),
        role_workspace_name: role.workspace_name.clone(),
        role_name: role.name.clone(),
        granted_by_user_id: principal.user_id.clone(),
        granted_by: principal.user_name.clone(),
        granted_at: at,
        in_force: true,
    }
}

/// The audit record of granting or revoking `role` in `workspace`, before either is
/// resolved (a failure is recorded with what the caller asked for, capped).
fn grant_record(
    app: &App,
    principal: &Principal,
    action: &'static str,
    workspace: &str,
    role: &str,
) -> AuditRecord {
    app.record(Some(principal), action)
        .workspace(None, workspace)
        .target(role.chars().take(200).collect::<String>())
}

/// Runs `change` as one audited grant change, after what granting and revoking both
/// check first: the caller administers `workspace` (`doing` says what for, in a
/// refusal), and `role` names a role of another workspace. `change` gets them with the
/// audit record naming the workspace's id and the role it resolved to; a failure is
/// recorded with what the caller asked for.
async fn change_grant<Fut>(
    app: &App,
    principal: &Principal,
    action: &'static str,
    (workspace, role): (&str, &str),
    doing: &str,
    change: impl FnOnce(WorkspaceAccess, RoleRow, AuditRecord) -> Fut,
) -> Result<()>
where
    Fut: std::future::Future<Output = Result<()>>,
{
    let record = grant_record(app, principal, action, workspace, role);
    app.audited(record.clone(), async {
        let access = require(app, principal, Some(workspace), Role::Admin, doing).await?;
        let found = outside_role(app, &access.workspace, role).await?;
        let record = record
            .workspace(Some(&access.workspace.id), workspace)
            .target(role_reference(&found.workspace_name, &found.name))
            .detail(serde_json::json!({ "roleId": found.id }));
        change(access, found, record).await
    })
    .await
}

/// Grants (or grants again, as the caller) an outside role access to `workspace`, as
/// far as its policy reaches there.
pub async fn add(app: &App, principal: &Principal, workspace: &str, role: &str) -> Result<()> {
    change_grant(
        app,
        principal,
        "role.grant",
        (workspace, role),
        "granting outside workload roles",
        |access, found, record| async move {
            let row = grant_row(&access.workspace, &found, principal, app.now());
            app.store.put_role_grant(&row, record).await?;
            app.caches.forget_identities();
            Ok(())
        },
    )
    .await
}

/// Revokes an outside role's grant in `workspace`: it stops reaching there at once.
pub async fn revoke(app: &App, principal: &Principal, workspace: &str, role: &str) -> Result<()> {
    change_grant(
        app,
        principal,
        "role.grant_revoke",
        (workspace, role),
        "revoking grants of outside workload roles",
        |access, found, record| async move {
            if !app
                .store
                .delete_role_grant(&access.workspace.id, &found.id, record)
                .await?
            {
                return Err(Error::NotFound(format!(
                    "grant of {} in {workspace}",
                    role_reference(&found.workspace_name, &found.name)
                )));
            }
            app.caches.forget_identities();
            Ok(())
        },
    )
    .await
}

/// After a policy is saved: records a grant, by its writer, in every other workspace
/// the policy reaches and the writer administers (the check that let them write it),
/// unless one is in force there already.
/// Workspaces reached by a wildcard that the writer does not administer get none;
/// their admins decide.
pub async fn grant_on_save(
    app: &App,
    principal: &Principal,
    role: &RoleRow,
    policy: &Policy,
) -> Result<()> {
    if principal.role.is_some() {
        return Ok(());
    }
    for (workspace, held) in app.store.workspaces_of(&principal.user_id).await? {
        if workspace.id == role.workspace_id
            || held < Role::Admin
            || !policy.reaches(&workspace.name)
            // One in force already: saving again changes nothing the target's admins
            // need to see.
            || app.store.role_grant_in_force(&workspace.id, &role.id).await?
        {
            continue;
        }
        let reference = role_reference(&role.workspace_name, &role.name);
        let record = app
            .record(Some(principal), "role.grant")
            .workspace(Some(&workspace.id), &workspace.name)
            .target(reference)
            .detail(serde_json::json!({ "roleId": role.id, "bySavingItsPolicy": true }));
        let row = grant_row(&workspace, role, principal, app.now());
        app.store.put_role_grant(&row, record).await?;
    }
    app.caches.forget_identities();
    Ok(())
}
