//! Who may do what in a workspace. A workspace the caller is not a member of answers
//! exactly like one that does not exist, so names cannot be probed.

use crate::domain::identity::{parse_workspace_name, Principal, Role};
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
    let not_found = || Error::NotFound(format!("workspace {name}"));
    let workspace = app
        .store
        .workspace_by_name(&name)
        .await?
        .ok_or_else(not_found)?;
    let role = app
        .store
        .role_of(&workspace.id, &principal.user_id)
        .await?
        .ok_or_else(not_found)?;
    if role < needed {
        return Err(Error::Forbidden(format!(
            "your role in {name} is {role}; {doing} needs {needed} or higher"
        )));
    }
    Ok(WorkspaceAccess { workspace, role })
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
