//! Users, API tokens, workspaces and memberships.
//!
//! An API token is `rk_` and 40 random characters, stored only as its SHA-256 and a
//! display prefix. [`authenticate`] finds a token by that hash (through the 5 s token
//! cache, which every replica clears on a change to tokens, users, roles, workspaces or
//! memberships), checks revocation and expiry against the clock on every request,
//! and writes `last_used_at` at most once a minute. Only an owner grants or removes
//! the owner role, and a workspace's last owner cannot be demoted or removed.

use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::domain::identity::WorkloadRole;
use crate::domain::identity::{
    parse_workspace_name, personal_workspace_name, validate_user_name, Principal, Role,
    WorkspaceKind,
};
use crate::domain::policy::{role_reference, Policy};
use crate::domain::{Error, Result};
use crate::store::{
    ApiTokenRow, MemberRow, NewUser, TokenOwner, TokenSubject, UserRow, WorkspaceRow,
};

use super::access::{require, require_site_admin};
use super::caches::CachedToken;
use super::{new_id, App};

/// Tokens carry this prefix so secret scanners can recognise them.
pub const TOKEN_PREFIX: &str = "rk_";
const TOKEN_RANDOM_CHARS: usize = 40;
/// `rk_` and six random characters: enough to tell tokens apart, far too little to
/// guess the rest.
const DISPLAY_PREFIX_CHARS: usize = 9;
/// How often a token's last-use time is written at most.
const TOUCH_INTERVAL_MS: i64 = 60_000;
const MAX_TOKEN_LIFETIME_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A fresh API token: `rk_` and 40 alphanumeric characters (about 238 bits).
pub fn generate_token() -> SecretString {
    let random: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(TOKEN_RANDOM_CHARS)
        .map(char::from)
        .collect();
    SecretString::from(format!("{TOKEN_PREFIX}{random}"))
}

/// Tokens are high-entropy random strings, so a fast unsalted hash is enough to make
/// the stored value useless to a reader of the database, and it allows lookup by hash.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn token_row(
    owner: TokenOwner,
    name: &str,
    token: &SecretString,
    at: i64,
    expires_at: Option<i64>,
) -> ApiTokenRow {
    ApiTokenRow {
        id: new_id(),
        owner,
        name: name.to_owned(),
        token_hash: hash_token(token.expose_secret()),
        display_prefix: display_prefix(token.expose_secret()),
        created_at: at,
        expires_at,
        revoked_at: None,
        last_used_at: None,
        created_by: None,
    }
}

/// What may be shown of a token. A generated token shows its first characters; an
/// operator-chosen bootstrap token may be short, so none of it is shown.
fn display_prefix(token: &str) -> String {
    if token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS {
        token.chars().take(DISPLAY_PREFIX_CHARS).collect()
    } else {
        "(configured)".to_owned()
    }
}

/// Establishes who presents `token`: from the token cache, else the database.
pub async fn authenticate(app: &App, token: &str) -> Result<Principal> {
    Ok(authenticated(app, token).await?.principal.clone())
}

/// As [`authenticate`], with the token's row as the cache holds it (its `last_used_at`
/// up to [`TOUCH_INTERVAL_MS`] old): for `GET /api/v1/me`, which shows the token and
/// so costs no database read.
pub async fn authenticated(app: &App, token: &str) -> Result<Arc<CachedToken>> {
    let hash = hash_token(token);
    let cached = match app.caches.tokens.get(&hash) {
        Some(cached) => cached,
        None => {
            let (row, subject) = app
                .store
                .api_token_by_hash(&hash)
                .await?
                .ok_or(Error::Unauthenticated("the API token is not valid"))?;
            let principal = principal_of(&row, subject)?;
            let cached = Arc::new(CachedToken { row, principal });
            app.caches.tokens.insert(hash.clone(), Arc::clone(&cached));
            cached
        }
    };
    let row = &cached.row;
    let now = app.now();
    if row.revoked_at.is_some() {
        return Err(Error::Unauthenticated("the API token has been revoked"));
    }
    if row.expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(Error::Unauthenticated("the API token has expired"));
    }
    if row
        .last_used_at
        .is_none_or(|last_used| now - last_used >= TOUCH_INTERVAL_MS)
    {
        match app.store.touch_api_token(&row.id, now).await {
            Ok(()) => {
                let mut touched = CachedToken::clone(&cached);
                touched.row.last_used_at = Some(now);
                let touched = Arc::new(touched);
                app.caches.tokens.insert(hash, Arc::clone(&touched));
                return Ok(touched);
            }
            Err(error) => tracing::warn!(error.code = error.code(), "api_token.touch_failed"),
        }
    }
    Ok(cached)
}

fn principal_of(row: &ApiTokenRow, subject: TokenSubject) -> Result<Principal> {
    Ok(match subject {
        // Disabling revoked the user's tokens; this also refuses one a concurrent
        // request issued while it ran.
        TokenSubject::User(user) if user.disabled_at.is_some() => {
            return Err(Error::Unauthenticated("the API token's user is disabled"));
        }
        TokenSubject::User(user) => Principal {
            user_id: user.id,
            user_name: user.name,
            admin: user.admin,
            token_id: row.id.clone(),
            role: None,
        },
        TokenSubject::Role(role) => {
            let policy: Policy = serde_json::from_str(&role.policy)
                .map_err(|error| Error::internal(format!("stored role policy: {error}")))?;
            Principal {
                user_id: String::new(),
                user_name: role_reference(&role.workspace_name, &role.name),
                admin: false,
                token_id: row.id.clone(),
                role: Some(Arc::new(WorkloadRole {
                    id: role.id,
                    name: role.name,
                    workspace_id: role.workspace_id,
                    workspace_name: role.workspace_name,
                    policy,
                })),
            }
        }
    })
}

pub struct CreatedUser {
    pub user: UserRow,
    pub token: SecretString,
}

fn new_user(name: &str, admin: bool, token: &SecretString, at: i64) -> NewUser {
    let user = UserRow {
        id: new_id(),
        name: name.to_owned(),
        admin,
        created_at: at,
        disabled_at: None,
    };
    let token = token_row(
        TokenOwner::User(user.id.clone()),
        "initial",
        token,
        at,
        None,
    );
    NewUser {
        workspace: WorkspaceRow {
            id: new_id(),
            name: personal_workspace_name(name),
            kind: WorkspaceKind::Personal,
            created_at: at,
        },
        token: Some(token),
        user,
    }
}

/// Creates the first user, `admin`, when the database has none. The token is the
/// configured bootstrap token or a generated one, returned so it can be shown once.
pub async fn bootstrap(app: &App) -> Result<Option<(SecretString, bool)>> {
    if app.store.count_users().await? > 0 {
        return Ok(None);
    }
    let (token, generated) = match &app.config.bootstrap_token {
        Some(token) => (token.clone(), false),
        None => (generate_token(), true),
    };
    let new = new_user("admin", true, &token, app.now());
    let record = app
        .record(None, "user.bootstrap")
        .target("admin")
        .workspace(Some(&new.workspace.id), &new.workspace.name);
    match app.store.create_user(&new, record).await {
        Ok(()) => Ok(Some((token, generated))),
        // Another replica bootstrapped first.
        Err(Error::Conflict { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

pub async fn create_user(
    app: &App,
    principal: &Principal,
    name: &str,
    admin: bool,
) -> Result<CreatedUser> {
    let record = app.record(Some(principal), "user.create").target(name);
    app.audited(record.clone(), async {
        require_site_admin(principal, "creating users")?;
        validate_user_name(name)?;
        let token = generate_token();
        let new = new_user(name, admin, &token, app.now());
        let record = record
            .clone()
            .workspace(Some(&new.workspace.id), &new.workspace.name)
            .detail(serde_json::json!({ "admin": admin }));
        app.store.create_user(&new, record).await?;
        app.caches.forget_identities();
        Ok(CreatedUser {
            user: new.user,
            token,
        })
    })
    .await
}

pub async fn list_users(app: &App, principal: &Principal) -> Result<Vec<UserRow>> {
    require_site_admin(principal, "listing users")?;
    app.store.list_users().await
}

pub async fn create_token(
    app: &App,
    principal: &Principal,
    name: &str,
    expires_in_seconds: Option<u64>,
) -> Result<(ApiTokenRow, SecretString)> {
    let record = app.record(Some(principal), "api_token.create").target(name);
    app.audited(record.clone(), async {
        let user_id = principal.require_user("creating API tokens")?;
        let expires_at = token_expiry(app.now(), name, expires_in_seconds)?;
        let token = generate_token();
        let row = token_row(
            TokenOwner::User(user_id.to_owned()),
            name,
            &token,
            app.now(),
            expires_at,
        );
        let record = record
            .clone()
            .detail(serde_json::json!({ "id": row.id, "prefix": row.display_prefix }));
        app.store.insert_api_token(&row, record).await?;
        Ok((row, token))
    })
    .await
}

/// Checks a new token's name and lifetime and returns its expiry time, if any.
pub(super) fn token_expiry(
    now: i64,
    name: &str,
    expires_in_seconds: Option<u64>,
) -> Result<Option<i64>> {
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_token_name",
            "a token name is 1-100 printable characters",
        ));
    }
    match expires_in_seconds {
        Some(0) => Err(Error::invalid(
            "invalid_expiry",
            "expiresInSeconds must be positive",
        )),
        Some(seconds) if seconds > MAX_TOKEN_LIFETIME_SECONDS => Err(Error::invalid(
            "invalid_expiry",
            "expiresInSeconds must be at most ten years",
        )),
        Some(seconds) => Ok(Some(
            now + i64::try_from(seconds).unwrap_or(i64::MAX) * 1000,
        )),
        None => Ok(None),
    }
}

pub async fn list_tokens(app: &App, principal: &Principal) -> Result<Vec<ApiTokenRow>> {
    let user_id = principal.require_user("listing API tokens")?;
    app.store
        .list_api_tokens(&TokenOwner::User(user_id.to_owned()))
        .await
}

/// Revokes one of the caller's tokens or, for a site administrator, any user's.
pub async fn revoke_token(app: &App, principal: &Principal, token_id: &str) -> Result<()> {
    let record = app
        .record(Some(principal), "api_token.revoke")
        .target(token_id);
    app.audited(record.clone(), async {
        let mut owner = TokenOwner::User(principal.require_user("revoking API tokens")?.to_owned());
        let mut record = record.clone();
        if principal.admin {
            if let Some(found) = app.store.api_token_by_id(token_id).await? {
                if let TokenOwner::User(user_id) = &found.owner {
                    if *user_id != principal.user_id {
                        record = record.detail(serde_json::json!({ "userId": user_id }));
                    }
                    owner = found.owner.clone();
                }
            }
        }
        if !app
            .store
            .revoke_api_token(&owner, token_id, app.now(), record)
            .await?
        {
            return Err(Error::NotFound(format!("active API token {token_id}")));
        }
        app.caches.forget_identities();
        Ok(())
    })
    .await
}

pub async fn create_workspace(
    app: &App,
    principal: &Principal,
    name: &str,
) -> Result<WorkspaceRow> {
    let record = app
        .record(Some(principal), "workspace.create")
        .workspace(None, name);
    app.audited(record.clone(), async {
        principal.require_user("creating workspaces")?;
        if parse_workspace_name(name)? == WorkspaceKind::Personal {
            return Err(Error::invalid(
                "invalid_workspace_name",
                "personal workspaces (~USER) come with their user; create an organisation workspace as ORG/NAME",
            ));
        }
        let workspace = WorkspaceRow {
            id: new_id(),
            name: name.to_owned(),
            kind: WorkspaceKind::Organization,
            created_at: app.now(),
        };
        let record = record.clone().workspace(Some(&workspace.id), name);
        app.store.create_workspace(&workspace, &principal.user_id, record).await?;
        app.caches.forget_identities();
        Ok(workspace)
    })
    .await
}

pub async fn list_workspaces(
    app: &App,
    principal: &Principal,
) -> Result<Vec<(WorkspaceRow, Role)>> {
    app.store.workspaces_of(&principal.user_id).await
}

/// The only owner of a workspace cannot be demoted or removed, so no workspace is
/// ever left without someone who can manage it.
async fn ensure_not_last_owner(app: &App, workspace: &WorkspaceRow, user: &str) -> Result<()> {
    let members = app.store.members(&workspace.id).await?;
    let owners: Vec<&MemberRow> = members
        .iter()
        .filter(|member| member.role == Role::Owner)
        .collect();
    if owners.len() == 1 && owners[0].user_name == user {
        return Err(Error::conflict(
            "last_owner",
            format!(
                "{user} is the only owner of {}; make someone else owner first",
                workspace.name
            ),
        ));
    }
    Ok(())
}

pub async fn put_member(
    app: &App,
    principal: &Principal,
    workspace: &str,
    user: &str,
    role: Role,
) -> Result<()> {
    let record = app
        .record(Some(principal), "member.put")
        .workspace(None, workspace)
        .target(user);
    app.audited(record.clone(), async {
        let access = require(app, principal, Some(workspace), Role::Admin, "managing members").await?;
        let target = app
            .store
            .user_by_name(user)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user}")))?;
        let current = app.store.role_of(&access.workspace.id, &target.id).await?;
        if (role == Role::Owner || current == Some(Role::Owner)) && access.role != Role::Owner {
            return Err(Error::Forbidden(format!(
                "only an owner of {workspace} can grant or change the owner role"
            )));
        }
        if current == Some(Role::Owner) && role != Role::Owner {
            ensure_not_last_owner(app, &access.workspace, user).await?;
        }
        let record = record
            .clone()
            .workspace(Some(&access.workspace.id), workspace)
            .detail(serde_json::json!({ "role": role.as_str(), "previousRole": current.map(Role::as_str) }));
        app.store
            .put_member(&access.workspace.id, &target.id, role, app.now(), record)
            .await?;
        app.caches.forget_identities();
        Ok(())
    })
    .await
}

pub async fn remove_member(
    app: &App,
    principal: &Principal,
    workspace: &str,
    user: &str,
) -> Result<()> {
    let record = app
        .record(Some(principal), "member.remove")
        .workspace(None, workspace)
        .target(user);
    app.audited(record.clone(), async {
        let access = require(
            app,
            principal,
            Some(workspace),
            Role::Admin,
            "managing members",
        )
        .await?;
        let not_member = || Error::NotFound(format!("member {user} of {workspace}"));
        let target = app.store.user_by_name(user).await?.ok_or_else(not_member)?;
        let current = app
            .store
            .role_of(&access.workspace.id, &target.id)
            .await?
            .ok_or_else(not_member)?;
        if current == Role::Owner {
            if access.role != Role::Owner {
                return Err(Error::Forbidden(format!(
                    "only an owner of {workspace} can remove an owner"
                )));
            }
            ensure_not_last_owner(app, &access.workspace, user).await?;
        }
        let record = record
            .clone()
            .workspace(Some(&access.workspace.id), workspace);
        if !app
            .store
            .remove_member(&access.workspace.id, &target.id, record)
            .await?
        {
            return Err(not_member());
        }
        app.caches.forget_identities();
        Ok(())
    })
    .await
}

pub async fn members(app: &App, principal: &Principal, workspace: &str) -> Result<Vec<MemberRow>> {
    let access = require(
        app,
        principal,
        Some(workspace),
        Role::View,
        "listing members",
    )
    .await?;
    app.store.members(&access.workspace.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let first = generate_token();
        let second = generate_token();
        assert!(first.expose_secret().starts_with("rk_"));
        assert_eq!(first.expose_secret().len(), 43);
        assert_ne!(first.expose_secret(), second.expose_secret());
        let hash = hash_token(first.expose_secret());
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&first.expose_secret()[3..]));
        assert_eq!(display_prefix(first.expose_secret()).len(), 9);
        assert_eq!(display_prefix("rk_my_own_bootstrap_token"), "(configured)");
    }
}
