//! `regkeeper workspaces …` and `regkeeper members …`: workspaces and who belongs to
//! them with which role.

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::output;
use super::{MembersCommand, OutputFormat, WorkspacesCommand};

pub(super) fn run(client: &Client, command: WorkspacesCommand) -> anyhow::Result<()> {
    match command {
        WorkspacesCommand::Create { name, output } => {
            let created: wire::Workspace =
                client.post("/api/v1/workspaces", &wire::WorkspaceInput { name })?;
            if output.output == OutputFormat::Json {
                return output::json(&created);
            }
            output::line(&format!(
                "Created workspace {}; you are its owner.",
                created.name
            ));
            Ok(())
        }
        WorkspacesCommand::List { output } => {
            let list: wire::WorkspaceList = client.get("/api/v1/workspaces")?;
            output::list(
                output.output,
                &list,
                &list.workspaces,
                &["NAME", "KIND", "ROLE"],
                |workspace| {
                    vec![
                        workspace.name.clone(),
                        workspace.kind.clone(),
                        workspace.role.clone(),
                    ]
                },
            )
        }
    }
}

pub(super) fn members(client: &Client, command: MembersCommand) -> anyhow::Result<()> {
    match command {
        MembersCommand::Add {
            workspace,
            user,
            role,
        } => {
            client.put(
                &format!(
                    "/api/v1/workspaces/{}/members/{}",
                    segment(&workspace),
                    segment(&user)
                ),
                &wire::MemberInput { role: role.clone() },
            )?;
            output::line(&format!("{user} is now {role} in {workspace}."));
            Ok(())
        }
        MembersCommand::List { workspace, output } => {
            let list: wire::MemberList = client.get(&format!(
                "/api/v1/workspaces/{}/members",
                segment(&workspace)
            ))?;
            output::list(
                output.output,
                &list,
                &list.members,
                &["USER", "ROLE", "ADDED"],
                |member| {
                    vec![
                        member.user.clone(),
                        member.role.clone(),
                        member.added_at.clone(),
                    ]
                },
            )
        }
        MembersCommand::Remove { workspace, user } => {
            client.delete(&format!(
                "/api/v1/workspaces/{}/members/{}",
                segment(&workspace),
                segment(&user)
            ))?;
            output::line(&format!("Removed {user} from {workspace}."));
            Ok(())
        }
    }
}
