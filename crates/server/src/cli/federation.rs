//! `regkeeper roles trust …` (issue 13 §1): the OIDC identity providers a workload role
//! trusts.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::commands::{parse_duration, workspace_or_personal};
use super::output;
use super::{OutputArgs, OutputFormat, WorkspaceArg};

#[derive(Subcommand)]
pub(super) enum RoleTrustCommand {
    /// Trust an OIDC identity provider: its tokens for AUDIENCE whose subject and claims
    /// match may be exchanged for the role's API tokens (POST /api/v1/oidc/exchange).
    Add {
        role: String,
        /// The issuer exactly as its tokens' `iss` spells it, e.g.
        /// https://token.actions.githubusercontent.com.
        #[arg(long)]
        issuer: String,
        /// The audience the tokens must be issued for.
        #[arg(long)]
        audience: String,
        /// Pattern for the token's `sub`; `*` matches any run of characters.
        #[arg(long)]
        subject: String,
        /// NAME=PATTERN: a claim condition; nested claims by dotted path, e.g.
        /// kubernetes.io.namespace=ci. Repeatable.
        #[arg(long = "claim", value_name = "NAME=PATTERN")]
        claims: Vec<String>,
        /// The longest life of an exchanged token, such as 15m or 2h; default 1h, at most 12h.
        #[arg(long, value_parser = parse_duration)]
        max_session: Option<u64>,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the identity providers a role trusts.
    List {
        role: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove a trust; tokens exchanged under it stop working.
    Remove {
        role: String,
        trust_id: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
    },
}

fn trusts_path(workspace: &str, role: &str) -> String {
    format!(
        "/api/v1/workspaces/{}/roles/{}/trusts",
        segment(workspace),
        segment(role)
    )
}

fn conditions(trust: &wire::Trust) -> String {
    let mut parts = vec![format!("sub={}", trust.subject)];
    parts.extend(
        trust
            .claims
            .iter()
            .map(|(name, pattern)| format!("{name}={pattern}")),
    );
    parts.join(" ")
}

pub(super) fn trust(client: &Client, command: RoleTrustCommand) -> anyhow::Result<()> {
    match command {
        RoleTrustCommand::Add {
            role,
            issuer,
            audience,
            subject,
            claims,
            max_session,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let mut parsed = BTreeMap::new();
            for claim in &claims {
                let (name, pattern) = claim.split_once('=').with_context(|| {
                    format!("--claim takes NAME=PATTERN, e.g. kubernetes.io.namespace=ci, not `{claim}`")
                })?;
                parsed.insert(name.trim().to_owned(), pattern.to_owned());
            }
            let max_session_seconds = max_session
                .map(i64::try_from)
                .transpose()
                .context("--max-session is too long (at most 12h)")?;
            let created: wire::Trust = client.post(
                &trusts_path(&workspace, &role),
                &wire::TrustInput {
                    issuer,
                    audience,
                    subject,
                    claims: parsed,
                    max_session_seconds,
                },
            )?;
            if output.output == OutputFormat::Json {
                return output::json(&created);
            }
            println!(
                "Role {} now trusts {} (trust {}).",
                created.role, created.issuer, created.id
            );
            Ok(())
        }
        RoleTrustCommand::List {
            role,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let list: wire::TrustList = client.get(&trusts_path(&workspace, &role))?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .trusts
                .iter()
                .map(|trust| {
                    vec![
                        trust.id.clone(),
                        trust.issuer.clone(),
                        trust.audience.clone(),
                        conditions(trust),
                        format!("{}s", trust.max_session_seconds),
                    ]
                })
                .collect();
            output::table(
                &["ID", "ISSUER", "AUDIENCE", "CONDITIONS", "MAX SESSION"],
                &rows,
            );
            Ok(())
        }
        RoleTrustCommand::Remove {
            role,
            trust_id,
            workspace,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            client.delete(&format!(
                "{}/{}",
                trusts_path(&workspace, &role),
                segment(&trust_id)
            ))?;
            println!("Removed trust {trust_id} of role {role}; tokens exchanged under it no longer work.");
            Ok(())
        }
    }
}
