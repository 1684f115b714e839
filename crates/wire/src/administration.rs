//! Site and workspace administration beyond creation: disabling and deleting users
//! (`/api/v1/users/{name}/…`), and the grants through which a workspace lets workload
//! roles of other workspaces reach its credentials
//! (`/api/v1/workspaces/{ws}/role-grants`).

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::User;

/// A user disabled: every API token of theirs was revoked with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserDisabled {
    pub user: User,
    pub revoked_tokens: usize,
    /// Workload-role tokens the user created, in any workspace, revoked with theirs
    /// (role tokens created before regkeeper recorded creators are not among them).
    #[serde(default)]
    pub revoked_role_tokens: usize,
    /// What happened to the personal workspace, in a sentence.
    pub personal_workspace: String,
    /// Organisation workspaces the user alone owns: nobody can manage them until the
    /// user is enabled again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sole_owner_of: Vec<String>,
}

/// A user deleted, with their personal workspace and what it held.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserDeleted {
    pub name: String,
    pub personal_workspace: String,
    pub deleted_credentials: usize,
    pub deleted_roles: usize,
    pub revoked_tokens: usize,
    /// Workload-role tokens the user created in other workspaces, revoked.
    #[serde(default)]
    pub revoked_role_tokens: usize,
}

/// Who may reach into a workspace from outside: a role and its grant there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoleGrant {
    /// `rk:WS:role/NAME`.
    pub role: String,
    /// `in_force`, `lapsed` (its granter no longer administers the workspace) or
    /// `not_granted` (the role's policy reaches here, but nothing was granted).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<String>,
    /// What the role's policy allows here, as `ACTIONS on RESOURCE`.
    pub allows: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RoleGrantList {
    pub grants: Vec<RoleGrant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoleGrantInput {
    /// The outside role, `rk:WS:role/NAME`.
    pub role: String,
}
