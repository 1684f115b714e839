//! `regkeeper users …`: users and their lifecycle, for site administrators. A new
//! user's API token is shown once; disable, enable and delete each say what happens to
//! the user's personal workspace.

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::output;
use super::{OutputFormat, UsersCommand};

fn user_path(name: &str) -> String {
    format!("/api/v1/users/{}", segment(name))
}

pub(super) fn run(client: &Client, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create {
            name,
            admin,
            output,
        } => {
            let created: wire::UserCreated =
                client.post("/api/v1/users", &wire::UserInput { name, admin })?;
            output::secret_once(
                output.output,
                &created,
                &format!(
                    "Created user {} with workspace {}. Their API token is shown only now:",
                    created.user.name, created.user.personal_workspace
                ),
                created.token.expose(),
            )
        }
        UsersCommand::List { output } => {
            let list: wire::UserList = client.get("/api/v1/users")?;
            output::list(
                output.output,
                &list,
                &list.users,
                &["NAME", "ADMIN", "WORKSPACE", "CREATED", "STATUS"],
                |user| {
                    vec![
                        user.name.clone(),
                        user.admin.to_string(),
                        user.personal_workspace.clone(),
                        user.created_at.clone(),
                        if user.disabled { "disabled" } else { "active" }.to_owned(),
                    ]
                },
            )
        }
        UsersCommand::Disable { name, output } => {
            let disabled: wire::UserDisabled = client.post(
                &format!("{}/disable", user_path(&name)),
                &serde_json::json!({}),
            )?;
            if output.output == OutputFormat::Json {
                return output::json(&disabled);
            }
            println!(
                "Disabled user {name}: revoked {} API token(s), which ends their console sessions, and {} workload-role token(s) they created.",
                disabled.revoked_tokens, disabled.revoked_role_tokens
            );
            println!("{}.", disabled.personal_workspace);
            if !disabled.sole_owner_of.is_empty() {
                println!(
                    "Warning: {name} is the only owner of {}; nobody can manage it until {name} is enabled again.",
                    disabled.sole_owner_of.join(", ")
                );
            }
            Ok(())
        }
        UsersCommand::Enable { name, output } => {
            let enabled: wire::UserCreated = client.post(
                &format!("{}/enable", user_path(&name)),
                &serde_json::json!({}),
            )?;
            output::secret_once(
                output.output,
                &enabled,
                &format!("Enabled user {name}; their old tokens stay revoked. Their new API token is shown only now:"),
                enabled.token.expose(),
            )
        }
        UsersCommand::Delete { name, yes, output } => {
            let path = format!("{}?confirm={yes}", user_path(&name));
            let deleted: wire::UserDeleted = client.delete_for(&path)?;
            if output.output == OutputFormat::Json {
                return output::json(&deleted);
            }
            println!(
                "Deleted user {name}, revoked {} API token(s) and {} workload-role token(s) they created elsewhere, and deleted {} with its {} credential(s) and {} workload role(s).",
                deleted.revoked_tokens,
                deleted.revoked_role_tokens,
                deleted.personal_workspace,
                deleted.deleted_credentials,
                deleted.deleted_roles
            );
            Ok(())
        }
    }
}
