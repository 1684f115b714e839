//! `regkeeper roles …`: workload roles, their policies and their API tokens.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::commands::workspace_or_personal;
use super::output::{self, or_dash};
use super::tokens::{print_created_token, print_tokens};
use super::{OutputFormat, PolicyFields, RoleGrantsCommand, RoleTokensCommand, RolesCommand};

fn roles_path(workspace: &str) -> String {
    format!("/api/v1/workspaces/{}/roles", segment(workspace))
}

fn role_path(workspace: &str, name: &str) -> String {
    format!("{}/{}", roles_path(workspace), segment(name))
}

/// Reads a policy document from a file, or standard input for `-`.
fn read_policy(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the policy from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the policy file {}", path.display()))?
    };
    // Parsed into a value, the last of two equal keys would silently win before the
    // server could refuse it, so the text is checked here.
    crate::domain::json_keys::reject_duplicate_keys(text.as_bytes())
        .map_err(|error| anyhow::anyhow!("the policy in {}: {error}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("the policy in {} is not valid JSON", path.display()))
}

fn input(name: Option<String>, fields: PolicyFields) -> anyhow::Result<wire::RoleInput> {
    Ok(wire::RoleInput {
        name,
        description: fields.description,
        policy: fields.policy_file.as_deref().map(read_policy).transpose()?,
    })
}

fn print_role(role: &wire::Role) -> anyhow::Result<()> {
    output::fields(&[
        ("Name", role.name.clone()),
        ("Workspace", role.workspace.clone()),
        ("Reference", role.reference.clone()),
        (
            "Description",
            or_dash(Some(role.description.as_str()).filter(|d| !d.is_empty())),
        ),
        (
            "Created",
            format!("{} by {}", role.created_at, role.created_by),
        ),
        ("Updated", role.updated_at.clone()),
    ]);
    println!("Policy:");
    println!("{}", output::json_for_people(&role.policy)?);
    if !role.bindings.is_empty() {
        println!("Exact grants, bound to the credential that had the name when saved:");
        let rows: Vec<Vec<String>> = role
            .bindings
            .iter()
            .map(|binding| vec![binding.resource.clone(), binding.credential_id.clone()])
            .collect();
        output::table(&["RESOURCE", "CREDENTIAL ID"], &rows);
    }
    Ok(())
}

pub(super) fn run(client: &Client, command: RolesCommand) -> anyhow::Result<()> {
    match command {
        RolesCommand::Create {
            name,
            policy,
            workspace,
            output,
        } => {
            if policy.policy_file.is_none() {
                anyhow::bail!("a role needs a policy: give --policy-file FILE (or - for stdin)");
            }
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let created: wire::Role =
                client.post(&roles_path(&workspace), &input(Some(name), policy)?)?;
            if output.output == OutputFormat::Json {
                return output::json(&created);
            }
            print_role(&created)
        }
        RolesCommand::List { workspace, output } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let list: wire::RoleList = client.get(&roles_path(&workspace))?;
            output::list(
                output.output,
                &list,
                &list.roles,
                &["NAME", "REFERENCE", "STATEMENTS", "DESCRIPTION"],
                |role| {
                    vec![
                        role.name.clone(),
                        role.reference.clone(),
                        role.policy["Statement"]
                            .as_array()
                            .map_or(0, Vec::len)
                            .to_string(),
                        or_dash(Some(role.description.as_str()).filter(|d| !d.is_empty())),
                    ]
                },
            )
        }
        RolesCommand::Show {
            name,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let role: wire::Role = client.get(&role_path(&workspace, &name))?;
            if output.output == OutputFormat::Json {
                return output::json(&role);
            }
            print_role(&role)
        }
        RolesCommand::Update {
            name,
            policy,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let updated: wire::Role =
                client.patch(&role_path(&workspace, &name), &input(None, policy)?)?;
            if output.output == OutputFormat::Json {
                return output::json(&updated);
            }
            print_role(&updated)
        }
        RolesCommand::Delete { name, workspace } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            client.delete(&role_path(&workspace, &name))?;
            output::line(&format!(
                "Deleted role {name} from {workspace}, with its tokens."
            ));
            Ok(())
        }
        RolesCommand::Simulate {
            name,
            action,
            reference,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let result: wire::Simulation = client.post(
                &format!("{}/simulate", role_path(&workspace, &name)),
                &wire::SimulationInput { action, reference },
            )?;
            if output.output == OutputFormat::Json {
                return output::json(&result);
            }
            output::fields(&[
                ("Decision", result.decision.clone()),
                ("Reference", result.reference.clone()),
                ("Exists", result.exists.to_string()),
                (
                    "Statement",
                    match (result.statement, &result.sid) {
                        (Some(index), Some(sid)) => format!("{index} ({sid})"),
                        (Some(index), None) => index.to_string(),
                        (None, _) => "none (denied by default)".to_owned(),
                    },
                ),
                (
                    "Grant there",
                    match result.grant_in_force {
                        Some(true) => "in force".to_owned(),
                        Some(false) => {
                            "none in force: the role reaches nothing there (roles grants add)"
                                .to_owned()
                        }
                        None => "-".to_owned(),
                    },
                ),
            ]);
            Ok(())
        }
        RolesCommand::Tokens(command) => tokens(client, command),
        RolesCommand::Trust(command) => super::federation::trust(client, command),
        RolesCommand::Grants(command) => grants(client, command),
    }
}

fn grants_path(workspace: &str) -> String {
    format!("/api/v1/workspaces/{}/role-grants", segment(workspace))
}

fn grants(client: &Client, command: RoleGrantsCommand) -> anyhow::Result<()> {
    match command {
        RoleGrantsCommand::List { workspace, output } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let list: wire::RoleGrantList = client.get(&grants_path(&workspace))?;
            output::list(
                output.output,
                &list,
                &list.grants,
                &["ROLE", "STATUS", "GRANTED BY", "GRANTED AT", "ALLOWS HERE"],
                |grant| {
                    vec![
                        grant.role.clone(),
                        grant.status.clone(),
                        or_dash(grant.granted_by.as_deref()),
                        or_dash(grant.granted_at.as_deref()),
                        grant.allows.join("; "),
                    ]
                },
            )
        }
        RoleGrantsCommand::Add { role, workspace } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let _: serde_json::Value = client.post(
                &grants_path(&workspace),
                &wire::RoleGrantInput { role: role.clone() },
            )?;
            println!("Granted {role} what its policy allows in {workspace}.");
            Ok(())
        }
        RoleGrantsCommand::Revoke { role, workspace } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            client.delete(&format!("{}/{}", grants_path(&workspace), segment(&role)))?;
            println!("Revoked the grant of {role} in {workspace}; it reaches nothing there now.");
            Ok(())
        }
    }
}

fn tokens(client: &Client, command: RoleTokensCommand) -> anyhow::Result<()> {
    match command {
        RoleTokensCommand::Create {
            role,
            name,
            expires_in,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let created: wire::ApiTokenCreated = client.post(
                &format!("{}/tokens", role_path(&workspace, &role)),
                &wire::ApiTokenInput {
                    name,
                    expires_in_seconds: expires_in,
                },
            )?;
            print_created_token(&created, output.output, &format!(" for role {role}"))
        }
        RoleTokensCommand::List {
            role,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let list: wire::ApiTokenList =
                client.get(&format!("{}/tokens", role_path(&workspace, &role)))?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            print_tokens(&list.tokens);
            Ok(())
        }
        RoleTokensCommand::Revoke {
            role,
            id,
            workspace,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            client.delete(&format!(
                "{}/tokens/{}",
                role_path(&workspace, &role),
                segment(&id)
            ))?;
            output::line(&format!("Revoked API token {id} of role {role}."));
            Ok(())
        }
    }
}
