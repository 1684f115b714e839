//! Users, workspaces, roles and the principal that makes a request.

use std::fmt;
use std::str::FromStr;

use super::{Error, Result};
use crate::text::echo;

/// Roles in a workspace, ordered: each includes everything of the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    View,
    Launch,
    Maintain,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Maintain,
        Role::Launch,
        Role::View,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::View => "view",
            Role::Launch => "launch",
            Role::Maintain => "maintain",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| {
                Error::invalid(
                    "invalid_role",
                    format!(
                        "unknown role `{}`: expected one of owner, admin, maintain, launch, view",
                        echo(value)
                    ),
                )
            })
    }
}

/// A user name: 1 to 64 characters of lower-case letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit.
pub fn validate_user_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_user_name",
            format!("invalid user name `{}`: use 1-64 lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit", echo(name)),
        ))
    }
}

/// What kind of workspace a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceKind {
    Personal,
    Organization,
}

impl WorkspaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceKind::Personal => "personal",
            WorkspaceKind::Organization => "organization",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "personal" => Ok(Self::Personal),
            "organization" => Ok(Self::Organization),
            other => Err(Error::internal(format!("unknown workspace kind {other}"))),
        }
    }
}

pub fn personal_workspace_name(user: &str) -> String {
    format!("~{user}")
}

/// Validates a workspace name: `~USER` (personal) or `ORG/NAME` (organisation), each
/// part shaped like a user name.
pub fn parse_workspace_name(name: &str) -> Result<WorkspaceKind> {
    let invalid = || {
        Error::invalid(
            "invalid_workspace_name",
            format!(
                "invalid workspace `{}`: expected ORG/NAME or ~USER (lower-case letters, digits, `-`, `_`, `.`)",
                echo(name)
            ),
        )
    };
    if let Some(user) = name.strip_prefix('~') {
        validate_user_name(user).map_err(|_| invalid())?;
        return Ok(WorkspaceKind::Personal);
    }
    let (organization, workspace) = name.split_once('/').ok_or_else(invalid)?;
    validate_user_name(organization).map_err(|_| invalid())?;
    validate_user_name(workspace).map_err(|_| invalid())?;
    Ok(WorkspaceKind::Organization)
}

/// Who is making a request, as established by an API token: a user, or a workload role.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Empty for a workload role, which is a member of no workspace: every
    /// membership check fails for it, so a role reaches only what its policy allows.
    pub user_id: String,
    /// The user's name, or the role's reference (`rk:WS:role/NAME`): the audit actor.
    pub user_name: String,
    pub admin: bool,
    pub token_id: String,
    pub role: Option<std::sync::Arc<WorkloadRole>>,
}

/// A workload role as a request sees it: where it lives and its validated policy.
#[derive(Debug, Clone)]
pub struct WorkloadRole {
    pub id: String,
    pub name: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub policy: super::policy::Policy,
}

impl Principal {
    /// The workspace a request without `--workspace` means: the user's personal
    /// workspace, or the role's own workspace.
    pub fn personal_workspace(&self) -> String {
        match &self.role {
            Some(role) => role.workspace_name.clone(),
            None => personal_workspace_name(&self.user_name),
        }
    }

    /// Fails for a workload role: for actions only people may take.
    pub fn require_user(&self, doing: &str) -> Result<&str> {
        match &self.role {
            None => Ok(&self.user_id),
            Some(_) => Err(Error::Forbidden(format!(
                "{doing} needs a user's API token, not a workload role's"
            ))),
        }
    }
}

/// `rk:WS:role/NAME` into the workspace and the role name.
pub fn parse_role_reference(input: &str) -> Result<(String, String)> {
    let invalid = || {
        Error::invalid(
            "invalid_role_reference",
            format!(
                "invalid role reference `{}`: expected rk:WS:role/NAME (WS is ORG/NAME or ~USER)",
                echo(input)
            ),
        )
    };
    let rest = input
        .trim()
        .strip_prefix(super::policy::REFERENCE_SCHEME)
        .ok_or_else(invalid)?;
    let (workspace, path) = rest.split_once(':').ok_or_else(invalid)?;
    let name = path.strip_prefix("role/").ok_or_else(invalid)?;
    parse_workspace_name(workspace).map_err(|_| invalid())?;
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid());
    }
    Ok((workspace.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_references_parse() {
        assert_eq!(
            parse_role_reference("rk:acme/ci:role/builder").unwrap(),
            ("acme/ci".to_owned(), "builder".to_owned())
        );
        assert_eq!(
            parse_role_reference(&super::super::policy::role_reference("~bob", "x_1")).unwrap(),
            ("~bob".to_owned(), "x_1".to_owned())
        );
        for bad in [
            "",
            "rk:acme/ci:role/",
            "rk:acme/ci:credential/x",
            "acme/ci:role/x",
            "rk:Acme/ci:role/x",
            "rk:acme/ci:role/a b",
        ] {
            assert!(parse_role_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_are_ordered_from_view_to_owner() {
        assert!(Role::Owner > Role::Admin);
        assert!(Role::Admin > Role::Maintain);
        assert!(Role::Maintain > Role::Launch);
        assert!(Role::Launch > Role::View);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("superuser".parse::<Role>().is_err());
    }

    #[test]
    fn workspace_names() {
        assert_eq!(
            parse_workspace_name("~admin").unwrap(),
            WorkspaceKind::Personal
        );
        assert_eq!(
            parse_workspace_name("acme/ci").unwrap(),
            WorkspaceKind::Organization
        );
        for bad in [
            "", "~", "acme", "acme/", "/ci", "Acme/ci", "a/b/c", "~Bob", "acme/c i",
        ] {
            assert!(parse_workspace_name(bad).is_err(), "{bad} accepted");
        }
    }
}
