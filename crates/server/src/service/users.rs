//! The user lifecycle after creation, for site administrators: disabling (every API
//! token revoked, and every workload-role token the user created, sign-in refused,
//! everything else kept for a later `enable`),
//! enabling (with a new API token, since the old ones stay revoked), deleting (the
//! user, their tokens and memberships, and their personal workspace with everything
//! in it, only once confirmed), and any user's API tokens, listed and revoked.
//!
//! Console sessions carry an API token and re-authenticate it on every request, so
//! revoking a user's tokens ends their sessions on every replica as soon as the token
//! cache forgets them (at once here, by the database's notification elsewhere).
//! Nobody disables or deletes themselves, so a site administrator remains, and no
//! organisation workspace is left without an owner.
//!
//! Limits: a disabled user's personal workspace keeps its workload roles, and their
//! tokens that others created, working; role tokens created before migration 0009
//! have no recorded creator, so disabling or deleting their creator leaves them.

use secrecy::SecretString;

use crate::domain::identity::{personal_workspace_name, Principal, Role, WorkspaceKind};
use crate::domain::{Error, Result};
use crate::store::{ApiTokenRow, TokenOwner, UserRow};

use super::access::require_site_admin;
use super::identity::{generate_token, token_row};
use super::App;

/// What `disable` did.
pub struct Disabled {
    pub user: UserRow,
    pub revoked_tokens: usize,
    /// Workload-role tokens the user created (in any workspace), revoked with theirs.
    pub revoked_role_tokens: usize,
    /// Organisation workspaces the user alone owns, which nobody can manage until the
    /// user is enabled or another owner is made.
    pub sole_owner_of: Vec<String>,
}

/// What `delete` removed.
pub struct Deleted {
    pub personal_workspace: String,
    pub credentials: usize,
    pub roles: usize,
    pub revoked_tokens: usize,
    /// Workload-role tokens the user created in other workspaces, revoked.
    pub revoked_role_tokens: usize,
}

/// The sentence the CLI and the API give about a disabled user's personal workspace.
pub fn kept_workspace_note(name: &str) -> String {
    format!(
        "{} is kept as it is (credentials, workload roles and their tokens); enable the user to use it again, or delete the user to delete it",
        personal_workspace_name(name)
    )
}

/// The user `name`, whom the caller (a site administrator, not that user) may manage.
async fn managed_user(
    app: &App,
    principal: &Principal,
    name: &str,
    doing: &str,
) -> Result<UserRow> {
    require_site_admin(principal, doing)?;
    if principal.role.is_none() && principal.user_name == name {
        return Err(Error::conflict(
            "own_user",
            format!("you cannot do this to yourself ({doing}): ask another site administrator"),
        ));
    }
    app.store
        .user_by_name(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {name}")))
}

/// The organisation workspaces of which `user` is the only owner.
async fn solely_owned(app: &App, user: &UserRow) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (workspace, role) in app.store.workspaces_of(&user.id).await? {
        if workspace.kind != WorkspaceKind::Organization || role != Role::Owner {
            continue;
        }
        let members = app.store.members(&workspace.id).await?;
        if members
            .iter()
            .filter(|member| member.role == Role::Owner)
            .count()
            == 1
        {
            names.push(workspace.name);
        }
    }
    Ok(names)
}

fn active(tokens: &[ApiTokenRow], now: i64) -> usize {
    tokens
        .iter()
        .filter(|token| token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now))
        .count()
}

async fn active_tokens(app: &App, user: &UserRow) -> Result<usize> {
    let tokens = app
        .store
        .list_api_tokens(&TokenOwner::User(user.id.clone()))
        .await?;
    Ok(active(&tokens, app.now()))
}

/// Active workload-role tokens `user` created, outside `except_workspace` (whose roles
/// go with it). Role tokens from before creators were recorded are not among them.
async fn active_role_tokens(
    app: &App,
    user: &UserRow,
    except_workspace: Option<&str>,
) -> Result<usize> {
    let mut tokens = app.store.role_tokens_created_by(&user.id).await?;
    if let Some(workspace_id) = except_workspace {
        let doomed: Vec<String> = app
            .store
            .roles(workspace_id)
            .await?
            .into_iter()
            .map(|role| role.id)
            .collect();
        tokens.retain(
            |token| !matches!(&token.owner, TokenOwner::Role(role) if doomed.contains(role)),
        );
    }
    Ok(active(&tokens, app.now()))
}

pub async fn disable(app: &App, principal: &Principal, name: &str) -> Result<Disabled> {
    let record = app.record(Some(principal), "user.disable").target(name);
    app.audited(record.clone(), async {
        let mut user = managed_user(app, principal, name, "disabling users").await?;
        if user.disabled_at.is_some() {
            return Err(Error::conflict(
                "user_disabled",
                format!("user {name} is already disabled"),
            ));
        }
        let revoked_tokens = active_tokens(app, &user).await?;
        let revoked_role_tokens = active_role_tokens(app, &user, None).await?;
        let sole_owner_of = solely_owned(app, &user).await?;
        let now = app.now();
        let record = record.clone().detail(serde_json::json!({
            "revokedTokens": revoked_tokens,
            "revokedRoleTokens": revoked_role_tokens,
        }));
        if !app.store.disable_user(&user.id, now, record).await? {
            return Err(Error::conflict(
                "user_disabled",
                format!("user {name} was disabled or deleted meanwhile"),
            ));
        }
        app.caches.forget_identities();
        user.disabled_at = Some(now);
        Ok(Disabled {
            user,
            revoked_tokens,
            revoked_role_tokens,
            sole_owner_of,
        })
    })
    .await
}

/// Enables a disabled user and issues them a new API token, returned to be shown once.
pub async fn enable(
    app: &App,
    principal: &Principal,
    name: &str,
) -> Result<(UserRow, SecretString)> {
    let record = app.record(Some(principal), "user.enable").target(name);
    app.audited(record.clone(), async {
        let mut user = managed_user(app, principal, name, "enabling users").await?;
        if user.disabled_at.is_none() {
            return Err(Error::conflict(
                "user_enabled",
                format!("user {name} is not disabled"),
            ));
        }
        let token = generate_token();
        let row = token_row(
            TokenOwner::User(user.id.clone()),
            "enabled",
            &token,
            app.now(),
            None,
        );
        let record = record
            .clone()
            .detail(serde_json::json!({ "tokenId": row.id, "prefix": row.display_prefix }));
        if !app.store.enable_user(&user.id, &row, record).await? {
            return Err(Error::conflict(
                "user_enabled",
                format!("user {name} was enabled or deleted meanwhile"),
            ));
        }
        app.caches.forget_identities();
        user.disabled_at = None;
        Ok((user, token))
    })
    .await
}

/// Deletes a user with their personal workspace. Refused while they are the only
/// owner of an organisation workspace (named in the message), and until `confirmed`,
/// with a message saying what would be deleted.
pub async fn delete(
    app: &App,
    principal: &Principal,
    name: &str,
    confirmed: bool,
) -> Result<Deleted> {
    let record = app.record(Some(principal), "user.delete").target(name);
    app.audited(record.clone(), async {
        let user = managed_user(app, principal, name, "deleting users").await?;
        let sole_owner = solely_owned(app, &user).await?;
        if !sole_owner.is_empty() {
            return Err(Error::conflict(
                "last_owner",
                format!(
                    "{name} is the only owner of {}: make someone else owner there first (regkeeper members add WS USER --role owner), so no workspace is left without one",
                    sole_owner.join(", ")
                ),
            ));
        }
        let personal_name = personal_workspace_name(name);
        let personal = app
            .store
            .workspace_by_name(&personal_name)
            .await?
            .ok_or_else(|| Error::internal(format!("user {name} has no personal workspace")))?;
        let credentials = app.store.credentials(&personal.id).await?.len();
        let roles = app.store.roles(&personal.id).await?.len();
        if !confirmed {
            return Err(Error::invalid(
                "confirmation_required",
                format!(
                    "deleting user {name} also deletes {personal_name} with its {credentials} credential(s) and {roles} workload role(s), their tokens and sync targets, and revokes every API token of {name} and the workload-role tokens {name} created elsewhere; confirm with --yes (REST: ?confirm=true), or disable the user instead to keep them"
                ),
            ));
        }
        let revoked_tokens = active_tokens(app, &user).await?;
        let revoked_role_tokens = active_role_tokens(app, &user, Some(&personal.id)).await?;
        let record = record
            .clone()
            .workspace(Some(&personal.id), &personal_name)
            .detail(serde_json::json!({
                "userId": user.id,
                "deletedCredentials": credentials,
                "deletedRoles": roles,
                "revokedTokens": revoked_tokens,
                "revokedRoleTokens": revoked_role_tokens,
            }));
        if !app
            .store
            .delete_user(&user.id, &personal.id, app.now(), record)
            .await?
        {
            return Err(Error::NotFound(format!("user {name}")));
        }
        app.caches.forget_identities();
        app.caches.forget_credentials();
        Ok(Deleted {
            personal_workspace: personal_name,
            credentials,
            roles,
            revoked_tokens,
            revoked_role_tokens,
        })
    })
    .await
}

/// Any user's API tokens, for a site administrator.
pub async fn tokens(app: &App, principal: &Principal, name: &str) -> Result<Vec<ApiTokenRow>> {
    require_site_admin(principal, "listing another user's API tokens")?;
    let user = app
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {name}")))?;
    app.store.list_api_tokens(&TokenOwner::User(user.id)).await
}

/// Revokes one API token of the user `name`, for a site administrator.
pub async fn revoke_token(
    app: &App,
    principal: &Principal,
    name: &str,
    token_id: &str,
) -> Result<()> {
    let record = app
        .record(Some(principal), "api_token.revoke")
        .target(token_id);
    app.audited(record.clone(), async {
        require_site_admin(principal, "revoking another user's API tokens")?;
        let not_found = || Error::NotFound(format!("active API token {token_id} of {name}"));
        let user = app.store.user_by_name(name).await?.ok_or_else(not_found)?;
        let record = record.clone().detail(serde_json::json!({ "user": name }));
        if !app
            .store
            .revoke_api_token(&TokenOwner::User(user.id), token_id, app.now(), record)
            .await?
        {
            return Err(not_found());
        }
        app.caches.forget_identities();
        Ok(())
    })
    .await
}
