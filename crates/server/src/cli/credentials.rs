//! `regkeeper credentials …`: a workspace's registry credentials, and the secrets
//! (password, session token) read from the one source a flag names, never from an
//! argument that would show in the process list or the shell's history.
//!
//! `credentials list` has a TOKEN column (a minted token's status and expiry) and
//! `credentials show` a token line; `--output json` prints the API's answer exactly.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use regkeeper_client::{segment, Client};
use regkeeper_wire::{self as wire, Sensitive};
use zeroize::Zeroizing;

use super::commands::workspace_or_personal;
use super::output::{self, or_dash};
use super::{
    CredentialFields, CredentialsCommand, OutputFormat, PasswordSource, SessionTokenSource,
};

fn credentials_path(workspace: &str) -> String {
    format!("/api/v1/workspaces/{}/credentials", segment(workspace))
}

/// Reads a secret from the one source given. Trailing line breaks are dropped (an
/// `echo` or a file's last newline is never part of a password).
fn read_password(source: &PasswordSource) -> anyhow::Result<Option<Sensitive>> {
    if source.password_stdin {
        let mut buffer = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut buffer)
            .context("reading the password from standard input")?;
        return non_empty(buffer, "standard input").map(Some);
    }
    read_variable_or_file(
        ("--password-env", source.password_env.as_deref()),
        ("--password-file", source.password_file.as_deref()),
    )
}

fn read_session_token(source: &SessionTokenSource) -> anyhow::Result<Option<Sensitive>> {
    read_variable_or_file(
        ("--session-token-env", source.session_token_env.as_deref()),
        ("--session-token-file", source.session_token_file.as_deref()),
    )
}

/// The secret in the environment variable or the file that a flag (named for errors)
/// gives, if one does.
fn read_variable_or_file(
    (variable_flag, variable): (&str, Option<&str>),
    (file_flag, path): (&str, Option<&Path>),
) -> anyhow::Result<Option<Sensitive>> {
    if let Some(variable) = variable {
        let value = std::env::var(variable).with_context(|| {
            format!("{variable_flag}: environment variable {variable} is not set")
        })?;
        return non_empty(
            Zeroizing::new(value),
            &format!("environment variable {variable}"),
        )
        .map(Some);
    }
    if let Some(path) = path {
        return read_secret_file(path, file_flag).map(Some);
    }
    Ok(None)
}

fn read_secret_file(path: &Path, flag: &str) -> anyhow::Result<Sensitive> {
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{flag}: {} is not UTF-8 text", path.display()))?;
    non_empty(Zeroizing::new(text.to_owned()), &path.display().to_string())
}

fn non_empty(value: Zeroizing<String>, source: &str) -> anyhow::Result<Sensitive> {
    let trimmed = value.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        bail!("the password from {source} is empty");
    }
    Ok(Sensitive::new(trimmed))
}

fn credential_input(
    fields: CredentialFields,
    name: Option<String>,
) -> anyhow::Result<wire::CredentialInput> {
    Ok(wire::CredentialInput {
        name,
        password: read_password(&fields.password)?,
        session_token: read_session_token(&fields.session_token)?,
        registry: fields.registry,
        kind: fields.kind,
        username: fields.username,
        path_prefix: fields.path_prefix,
        role_arn: fields.role_arn,
        external_id: fields.external_id,
        ambient: fields.ambient.then_some(true),
        aws_region: fields.aws_region,
        azure_tenant_id: fields.azure_tenant_id,
        aws_secret: fields.aws_secret,
        aws_identity: fields.aws_identity,
        aws_secret_keys: fields.aws_secret_keys,
        verify: fields.no_verify.then_some(false),
        // A person's: only the docker credential helper marks what it creates.
        origin: None,
    })
}

pub(super) fn run(client: &Client, command: CredentialsCommand) -> anyhow::Result<()> {
    match command {
        CredentialsCommand::Add {
            name,
            fields,
            workspace,
            output,
        } => {
            if fields.registry.is_none() {
                bail!("--registry is required");
            }
            let has_password = fields.password.password_stdin
                || fields.password.password_env.is_some()
                || fields.password.password_file.is_some();
            if fields.aws_secret.is_some() {
                if has_password {
                    bail!("--aws-secret reads the password from Secrets Manager: give no --password-*");
                }
                if fields.aws_identity.is_none() {
                    bail!("--aws-secret needs --aws-identity AWS-CRED, the ecr credential whose AWS identity reads the secret");
                }
            } else if !fields.ambient && !has_password {
                bail!("one of --password-stdin, --password-env or --password-file is required (unless --ambient or --aws-secret)");
            }
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let input = credential_input(fields, Some(name))?;
            let created: wire::Credential = client.post(&credentials_path(&workspace), &input)?;
            print_credential(&created, output.output)
        }
        CredentialsCommand::List { workspace, output } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let list: wire::CredentialList = client.get(&credentials_path(&workspace))?;
            output::list(
                output.output,
                &list,
                &list.credentials,
                &[
                    "NAME", "TYPE", "REGISTRY", "USERNAME", "VERIFIED", "TOKEN", "UPDATED",
                ],
                |credential| {
                    vec![
                        credential.name.clone(),
                        credential.kind.clone(),
                        registry_with_prefix(credential),
                        or_dash(credential.username.as_deref()),
                        credential.verification.status.clone(),
                        credential.token.as_ref().map_or_else(
                            || "-".to_owned(),
                            |token| match &token.expires_at {
                                Some(expires_at) => format!("{} until {expires_at}", token.status),
                                None => token.status.clone(),
                            },
                        ),
                        credential.updated_at.clone(),
                    ]
                },
            )
        }
        CredentialsCommand::Show {
            name,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let found: wire::Credential = client.get(&format!(
                "{}/{}",
                credentials_path(&workspace),
                segment(&name)
            ))?;
            print_credential(&found, output.output)
        }
        CredentialsCommand::Update {
            name,
            new_name,
            fields,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let input = credential_input(fields, new_name)?;
            let updated: wire::Credential = client.patch(
                &format!("{}/{}", credentials_path(&workspace), segment(&name)),
                &input,
            )?;
            print_credential(&updated, output.output)
        }
        CredentialsCommand::Verify {
            name,
            repository,
            check_push,
            workspace,
            output,
        } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let verified: wire::Credential = client.post(
                &format!("{}/{}/verify", credentials_path(&workspace), segment(&name)),
                &wire::VerifyInput {
                    repository,
                    check_push: check_push.then_some(true),
                },
            )?;
            print_credential(&verified, output.output)?;
            // Not a failure: the registry takes no login, so pulls work without one.
            if verified.verification.status == "unverifiable" {
                eprintln!(
                    "warning: {}",
                    verified
                        .verification
                        .message
                        .as_deref()
                        .unwrap_or("the registry asks for no credentials")
                );
                return Ok(());
            }
            if verified.verification.status != "ok" {
                bail!(
                    "{}",
                    verified
                        .verification
                        .message
                        .as_deref()
                        .unwrap_or("verification failed")
                );
            }
            Ok(())
        }
        CredentialsCommand::Delete { name, workspace } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            client.delete(&format!(
                "{}/{}",
                credentials_path(&workspace),
                segment(&name)
            ))?;
            output::line(&format!("Deleted credential {name} from {workspace}."));
            Ok(())
        }
    }
}

fn registry_with_prefix(credential: &wire::Credential) -> String {
    if credential.path_prefix.is_empty() {
        credential.registry.clone()
    } else {
        format!("{}/{}", credential.registry, credential.path_prefix)
    }
}

fn print_credential(credential: &wire::Credential, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return output::json(credential);
    }
    let mut pairs = vec![
        ("Name", credential.name.clone()),
        ("Id", credential.id.clone()),
        ("Workspace", credential.workspace.clone()),
        ("Type", credential.kind.clone()),
        ("Auth method", credential.auth_method.clone()),
        ("Registry", registry_with_prefix(credential)),
        ("Username", or_dash(credential.username.as_deref())),
        (
            "Secret",
            match &credential.aws_secret {
                Some(secret) => format!("read from AWS Secrets Manager secret {secret}"),
                None if credential.has_secret => {
                    format!("stored (version {})", credential.secret_version)
                }
                None => "none".into(),
            },
        ),
    ];
    for (label, value) in [
        ("Role ARN", &credential.role_arn),
        ("External id", &credential.external_id),
        ("AWS region", &credential.aws_region),
        ("Azure tenant", &credential.azure_tenant_id),
        ("AWS identity", &credential.aws_identity),
        ("Secret keys", &credential.aws_secret_keys),
    ] {
        if let Some(value) = value {
            pairs.push((label, value.clone()));
        }
    }
    pairs.push((
        "Origin",
        match credential.origin.as_str() {
            "helper" => "helper (a docker login through docker-credential-regkeeper)".into(),
            other => other.to_owned(),
        },
    ));
    let verification = &credential.verification;
    pairs.push((
        "Verified",
        match (&verification.checked_at, &verification.message) {
            (Some(at), Some(message)) => format!("{} at {at}: {message}", verification.status),
            (Some(at), None) => format!("{} at {at}", verification.status),
            _ => verification.status.clone(),
        },
    ));
    if let Some(token) = &credential.token {
        let mut line = token.status.clone();
        if let Some(expires_at) = &token.expires_at {
            line.push_str(&format!(", expires {expires_at}"));
        }
        line.push_str(&format!(", refresh at {}", token.refresh_at));
        if let Some(error) = &token.last_error {
            line.push_str(&format!("; last error: {error}"));
        }
        pairs.push(("Token", line));
    }
    pairs.push((
        "Created",
        format!("{} by {}", credential.created_at, credential.created_by),
    ));
    pairs.push(("Updated", credential.updated_at.clone()));
    output::fields(&pairs);
    Ok(())
}
