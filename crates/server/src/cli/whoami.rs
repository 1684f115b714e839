//! `regkeeper whoami`: who the API token in use belongs to (a user, or a workload
//! role), the workspaces it reaches with which role, and the token itself (id, name,
//! expiry; never the token). Two REST calls: `/api/v1/me` and, for a user, their
//! workspaces.

use regkeeper_client::Client;
use regkeeper_wire as wire;
use serde::Serialize;

use super::output;
use super::{OutputArgs, OutputFormat};

/// What `--output json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    /// `user` or `role`.
    kind: &'static str,
    /// The user's name, or the role's reference `rk:WS:role/NAME`.
    name: String,
    site_admin: bool,
    /// Where commands without `--workspace` act.
    default_workspace: String,
    workspaces: Vec<WorkspaceRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<wire::MeToken>,
    server: String,
}

#[derive(Serialize)]
struct WorkspaceRole {
    name: String,
    role: String,
}

pub(super) fn run(client: &Client, output: OutputArgs) -> anyhow::Result<()> {
    let me: wire::Me = client.get("/api/v1/me")?;
    let identity = match &me.role {
        Some(role) => Identity {
            kind: "role",
            name: role.clone(),
            site_admin: false,
            // A role lives in one workspace and reaches others only through grants,
            // which its policy names.
            workspaces: vec![WorkspaceRole {
                name: me.personal_workspace.clone(),
                role: "workload role (its policy decides)".to_owned(),
            }],
            default_workspace: me.personal_workspace,
            token: me.token,
            server: client.base_url().to_owned(),
        },
        None => {
            let list: wire::WorkspaceList = client.get("/api/v1/workspaces")?;
            Identity {
                kind: "user",
                name: me.user,
                site_admin: me.admin,
                default_workspace: me.personal_workspace,
                workspaces: list
                    .workspaces
                    .into_iter()
                    .map(|workspace| WorkspaceRole {
                        name: workspace.name,
                        role: workspace.role,
                    })
                    .collect(),
                token: me.token,
                server: client.base_url().to_owned(),
            }
        }
    };
    if output.output == OutputFormat::Json {
        return output::json(&identity);
    }
    let who = match (identity.kind, identity.site_admin) {
        ("role", _) => format!("workload role {}", identity.name),
        (_, true) => format!("user {} (site administrator)", identity.name),
        _ => format!("user {}", identity.name),
    };
    let workspaces = identity
        .workspaces
        .iter()
        .map(|workspace| format!("{} ({})", workspace.name, workspace.role))
        .collect::<Vec<_>>()
        .join(", ");
    let token = match &identity.token {
        Some(token) => format!(
            "{} \"{}\" ({}…), created {}, {}",
            token.id,
            token.name,
            token.prefix,
            token.created_at,
            token
                .expires_at
                .as_deref()
                .map_or_else(|| "never expires".to_owned(), |at| format!("expires {at}"))
        ),
        None => "-".to_owned(),
    };
    output::fields(&[
        ("Signed in as", who),
        ("Server", identity.server.clone()),
        ("Default workspace", identity.default_workspace.clone()),
        ("Workspaces", output::or_dash(Some(workspaces.as_str()))),
        ("Token", token),
    ]);
    Ok(())
}
