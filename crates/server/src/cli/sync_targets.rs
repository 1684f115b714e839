//! `regkeeper sync …`: a credential's push targets (docker config files, Kubernetes
//! Secrets, webhooks, AWS Secrets Manager secrets for ECS), each command one or two REST calls. `add` and `run` exit
//! non-zero when the push failed; a generated signing key is printed once, by `add`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use regkeeper_client::{segment, Client};
use regkeeper_wire::{self as wire, Sensitive};
use zeroize::Zeroizing;

use super::output::{self, or_dash};
use super::{OutputArgs, OutputFormat, WorkspaceArg};

#[derive(Subcommand)]
pub(super) enum SyncCommand {
    /// Add a sync target to a credential: pushed once now, then after every refresh
    /// or change of the credential.
    Add {
        /// The credential.
        name: String,
        #[command(flatten)]
        destination: Destination,
        /// Kubernetes: the Secret's name (default: regkeeper-NAME).
        #[arg(long, requires = "kubernetes_namespace")]
        secret_name: Option<String>,
        /// Webhook: use your own signing key from this environment variable instead of
        /// one the server makes (and prints once).
        #[arg(
            long,
            value_name = "VAR",
            requires = "webhook",
            conflicts_with = "signing_key_file"
        )]
        signing_key_env: Option<String>,
        /// Webhook: use your own signing key from this file.
        #[arg(long, value_name = "FILE", requires = "webhook")]
        signing_key_file: Option<PathBuf>,
        /// Secrets Manager: the secret's region (default: the ARN's, else the
        /// --aws-identity credential's).
        #[arg(long, value_name = "REGION", requires = "aws_secret")]
        aws_region: Option<String>,
        /// Secrets Manager: the `ecr` credential (same workspace) whose AWS keys, role
        /// or ambient identity write the secret.
        #[arg(long, value_name = "AWS-CRED", requires = "aws_secret")]
        aws_identity: Option<String>,
        /// Secrets Manager: take over an existing secret regkeeper did not create
        /// (it is tagged managed-by=regkeeper first).
        #[arg(long, requires = "aws_secret")]
        adopt: bool,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List a credential's sync targets and how their pushes are going.
    List {
        name: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove a sync target (what it delivered is left in place).
    Remove {
        name: String,
        id: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
    },
    /// Push to a credential's sync targets now (all of them, or one).
    Run {
        name: String,
        id: Option<String>,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(super) struct Destination {
    /// A docker config.json path, relative to this workspace's directory under the
    /// server's sync root (REGKEEPER_SYNC_FILE_ROOT).
    #[arg(long, value_name = "PATH")]
    file: Option<String>,
    /// A Kubernetes namespace to keep a kubernetes.io/dockerconfigjson Secret in
    /// (repeat for several).
    #[arg(long = "kubernetes-namespace", value_name = "NS")]
    kubernetes_namespace: Vec<String>,
    /// An https URL that receives a signed POST (header Regkeeper-Signature).
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// An AWS Secrets Manager secret (name or ARN) to keep the login in as
    /// {"username","password"}, for an ECS task definition's
    /// repositoryCredentials.credentialsParameter; created if absent. Needs
    /// --aws-identity.
    #[arg(long, value_name = "NAME-OR-ARN")]
    aws_secret: Option<String>,
}

fn targets_path(client: &Client, workspace: Option<String>, name: &str) -> anyhow::Result<String> {
    let workspace = match workspace {
        Some(workspace) => workspace,
        None => client.get::<wire::Me>("/api/v1/me")?.personal_workspace,
    };
    Ok(format!(
        "/api/v1/workspaces/{}/credentials/{}/sync-targets",
        segment(&workspace),
        segment(name)
    ))
}

fn read_signing_key(
    env: Option<&str>,
    file: Option<&PathBuf>,
) -> anyhow::Result<Option<Sensitive>> {
    let value = match (env, file) {
        (Some(variable), _) => Zeroizing::new(std::env::var(variable).with_context(|| {
            format!("--signing-key-env: environment variable {variable} is not set")
        })?),
        (None, Some(path)) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("--signing-key-file: cannot read {}", path.display()))?,
        ),
        (None, None) => return Ok(None),
    };
    let trimmed = value.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        bail!("the signing key is empty");
    }
    Ok(Some(Sensitive::new(trimmed)))
}

pub(super) fn run(client: &Client, command: SyncCommand) -> anyhow::Result<()> {
    match command {
        SyncCommand::Add {
            name,
            destination,
            secret_name,
            signing_key_env,
            signing_key_file,
            aws_region,
            aws_identity,
            adopt,
            workspace,
            output,
        } => {
            let path = targets_path(client, workspace.workspace, &name)?;
            let kind = if destination.file.is_some() {
                "file"
            } else if destination.webhook.is_some() {
                "webhook"
            } else if destination.aws_secret.is_some() {
                if aws_identity.is_none() {
                    bail!("--aws-secret needs --aws-identity AWS-CRED, the ecr credential whose AWS identity writes the secret");
                }
                "aws_secret"
            } else {
                "kubernetes"
            };
            let input = wire::SyncTargetInput {
                kind: kind.to_owned(),
                path: destination.file,
                namespaces: destination.kubernetes_namespace,
                secret_name,
                url: destination.webhook,
                signing_key: read_signing_key(
                    signing_key_env.as_deref(),
                    signing_key_file.as_ref(),
                )?,
                aws_secret: destination.aws_secret,
                aws_region,
                aws_identity,
                adopt,
            };
            let created: wire::SyncTargetCreated = client.post(&path, &input)?;
            if output.output == OutputFormat::Json {
                output::json(&created)?;
            } else {
                print_target(&created.target);
                if let Some(key) = &created.signing_key {
                    println!(
                        "\nThe webhook signing key is shown only now; give it to the receiver:\n\n    {}\n",
                        key.expose()
                    );
                }
            }
            if created.target.status == "failing" {
                bail!(
                    "sync target {} was added, but its first push failed ({}); it is retried with backoff (see `regkeeper sync list {name}`)",
                    created.target.id,
                    created.target.last_error.as_deref().unwrap_or("unknown error")
                );
            }
            Ok(())
        }
        SyncCommand::List {
            name,
            workspace,
            output,
        } => {
            let path = targets_path(client, workspace.workspace, &name)?;
            let list: wire::SyncTargetList = client.get(&path)?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            print_table(&list.targets);
            Ok(())
        }
        SyncCommand::Remove {
            name,
            id,
            workspace,
        } => {
            let path = targets_path(client, workspace.workspace, &name)?;
            client.delete(&format!("{path}/{}", segment(&id)))?;
            output::line(&format!("Removed sync target {id} of {name}."));
            Ok(())
        }
        SyncCommand::Run {
            name,
            id,
            workspace,
            output,
        } => {
            let path = targets_path(client, workspace.workspace, &name)?;
            let ids = match id {
                Some(id) => vec![id],
                None => client
                    .get::<wire::SyncTargetList>(&path)?
                    .targets
                    .into_iter()
                    .map(|target| target.id)
                    .collect(),
            };
            let mut pushed = Vec::new();
            for id in ids {
                let target: wire::SyncTarget = client.post(
                    &format!("{path}/{}/sync", segment(&id)),
                    &serde_json::json!({}),
                )?;
                pushed.push(target);
            }
            if output.output == OutputFormat::Json {
                output::json(&wire::SyncTargetList {
                    targets: pushed.clone(),
                })?;
            } else {
                print_table(&pushed);
            }
            let failing = pushed
                .iter()
                .filter(|target| target.status == "failing")
                .count();
            if failing > 0 {
                bail!("{failing} of {} sync targets failed", pushed.len());
            }
            Ok(())
        }
    }
}

fn print_target(target: &wire::SyncTarget) {
    output::fields(&[
        ("ID", target.id.clone()),
        ("CREDENTIAL", target.credential.clone()),
        ("TYPE", target.kind.clone()),
        ("DESTINATION", target.destination.clone()),
        ("STATUS", target.status.clone()),
        ("LAST SYNCED", or_dash(target.last_synced_at.as_deref())),
        ("NEXT ATTEMPT", or_dash(target.next_attempt_at.as_deref())),
        ("LAST ERROR", or_dash(target.last_error.as_deref())),
    ]);
}

fn print_table(targets: &[wire::SyncTarget]) {
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|target| {
            vec![
                target.id.clone(),
                target.kind.clone(),
                target.destination.clone(),
                match target.failures {
                    0 => target.status.clone(),
                    failures => format!("{} ({failures}x)", target.status),
                },
                or_dash(target.last_synced_at.as_deref()),
                or_dash(target.next_attempt_at.as_deref()),
                or_dash(target.last_error.as_deref()),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "TYPE",
            "DESTINATION",
            "STATUS",
            "LAST SYNCED",
            "NEXT ATTEMPT",
            "LAST ERROR",
        ],
        &rows,
    );
}
