//! The client side of the CLI: each command is one or two REST calls.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use regkeeper_client::{segment, Client};
use regkeeper_wire::{self as wire, Sensitive};
use zeroize::Zeroizing;

use super::output::{self, or_dash};
use super::{
    AuditCommand, Command, CredentialFields, CredentialsCommand, KeyCommand, MembersCommand,
    OutputFormat, PasswordSource, SessionTokenSource, TokensCommand, UsersCommand,
    WorkspacesCommand,
};

pub(super) fn run(command: Command) -> anyhow::Result<()> {
    let environment = |name: &str| std::env::var(name).ok();
    if let Command::Login(args) = command {
        // A login is how a job without an API token gets one.
        let client = Client::anonymous_from_environment(&environment)?;
        return super::federation::login(&client, args);
    }
    if let Command::KubeletCredentialProvider = command {
        // The same code as the standalone `regkeeper-kubelet-credential-provider`,
        // which needs no API token when it exchanges an OIDC or service-account token.
        // Like that binary's entry point, this hands the system clock to the logic.
        #[allow(clippy::disallowed_methods)]
        return Ok(regkeeper_consumers::kubelet::run(
            &environment,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
            &std::time::SystemTime::now,
        )?);
    }
    let client = Client::from_environment(&environment)?;
    match command {
        Command::Serve(_) => unreachable!("serve is handled before the client starts"),
        Command::Credentials(command) => credentials(&client, *command),
        Command::Users(command) => users(&client, command),
        Command::Workspaces(command) => workspaces(&client, command),
        Command::Members(command) => members(&client, command),
        Command::Tokens(command) => tokens(&client, command),
        Command::Key(command) => key(&client, command),
        Command::Audit(command) => audit(&client, command),
        Command::Roles(command) => super::roles::run(&client, command),
        Command::Login(_) => unreachable!("login is handled before the token is read"),
        Command::Sync(command) => super::sync::run(&client, command),
        Command::Resolve {
            image,
            workspace,
            reference,
        } => {
            let workspace = workspace_or_personal(&client, workspace.workspace)?;
            let resolved: wire::Resolved = client.post(
                &format!("/api/v1/workspaces/{}/resolve", segment(&workspace)),
                &wire::ResolveInput {
                    image,
                    registry: None,
                    reference,
                },
            )?;
            output::json(&resolved)
        }
        Command::KubeletCredentialProvider => {
            unreachable!("the kubelet provider is handled before the token is read")
        }
    }
}

/// The caller's personal workspace, asked of the server, when `--workspace` is absent.
pub(super) fn workspace_or_personal(
    client: &Client,
    workspace: Option<String>,
) -> anyhow::Result<String> {
    match workspace {
        Some(workspace) => Ok(workspace),
        None => Ok(client.get::<wire::Me>("/api/v1/me")?.personal_workspace),
    }
}

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
    if let Some(variable) = &source.password_env {
        let value = std::env::var(variable).with_context(|| {
            format!("--password-env: environment variable {variable} is not set")
        })?;
        return non_empty(
            Zeroizing::new(value),
            &format!("environment variable {variable}"),
        )
        .map(Some);
    }
    if let Some(path) = &source.password_file {
        return read_secret_file(path, "--password-file").map(Some);
    }
    Ok(None)
}

fn read_session_token(source: &SessionTokenSource) -> anyhow::Result<Option<Sensitive>> {
    if let Some(variable) = &source.session_token_env {
        let value = std::env::var(variable).with_context(|| {
            format!("--session-token-env: environment variable {variable} is not set")
        })?;
        return non_empty(
            Zeroizing::new(value),
            &format!("environment variable {variable}"),
        )
        .map(Some);
    }
    if let Some(path) = &source.session_token_file {
        return read_secret_file(path, "--session-token-file").map(Some);
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
        verify: fields.no_verify.then_some(false),
        // A person's: only the docker credential helper marks what it creates.
        origin: None,
    })
}

fn credentials(client: &Client, command: CredentialsCommand) -> anyhow::Result<()> {
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
            if !fields.ambient && !has_password {
                bail!("one of --password-stdin, --password-env or --password-file is required (unless --ambient)");
            }
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let input = credential_input(fields, Some(name))?;
            let created: wire::Credential = client.post(&credentials_path(&workspace), &input)?;
            print_credential(&created, output.output)
        }
        CredentialsCommand::List { workspace, output } => {
            let workspace = workspace_or_personal(client, workspace.workspace)?;
            let list: wire::CredentialList = client.get(&credentials_path(&workspace))?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .credentials
                .iter()
                .map(|credential| {
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
                })
                .collect();
            output::table(
                &[
                    "NAME", "TYPE", "REGISTRY", "USERNAME", "VERIFIED", "TOKEN", "UPDATED",
                ],
                &rows,
            );
            Ok(())
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
            if credential.has_secret {
                format!("stored (version {})", credential.secret_version)
            } else {
                "none".into()
            },
        ),
    ];
    for (label, value) in [
        ("Role ARN", &credential.role_arn),
        ("External id", &credential.external_id),
        ("AWS region", &credential.aws_region),
        ("Azure tenant", &credential.azure_tenant_id),
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

fn users(client: &Client, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create {
            name,
            admin,
            output,
        } => {
            let created: wire::UserCreated =
                client.post("/api/v1/users", &wire::UserInput { name, admin })?;
            if output.output == OutputFormat::Json {
                return output::json(&created);
            }
            eprintln!(
                "{}",
                crate::text::printable(&format!(
                    "Created user {} with workspace {}. Their API token is shown only now:",
                    created.user.name, created.user.personal_workspace
                ))
            );
            println!("{}", created.token.expose());
            Ok(())
        }
        UsersCommand::List { output } => {
            let list: wire::UserList = client.get("/api/v1/users")?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .users
                .iter()
                .map(|user| {
                    vec![
                        user.name.clone(),
                        user.admin.to_string(),
                        user.personal_workspace.clone(),
                        user.created_at.clone(),
                        if user.disabled { "disabled" } else { "active" }.to_owned(),
                    ]
                })
                .collect();
            output::table(&["NAME", "ADMIN", "WORKSPACE", "CREATED", "STATUS"], &rows);
            Ok(())
        }
        other => super::users::run(client, other),
    }
}

fn workspaces(client: &Client, command: WorkspacesCommand) -> anyhow::Result<()> {
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
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .workspaces
                .iter()
                .map(|workspace| {
                    vec![
                        workspace.name.clone(),
                        workspace.kind.clone(),
                        workspace.role.clone(),
                    ]
                })
                .collect();
            output::table(&["NAME", "KIND", "ROLE"], &rows);
            Ok(())
        }
    }
}

fn members(client: &Client, command: MembersCommand) -> anyhow::Result<()> {
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
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .members
                .iter()
                .map(|member| {
                    vec![
                        member.user.clone(),
                        member.role.clone(),
                        member.added_at.clone(),
                    ]
                })
                .collect();
            output::table(&["USER", "ROLE", "ADDED"], &rows);
            Ok(())
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

/// Parses `3600`, `3600s`, `90m`, `12h` or `30d` into seconds.
pub(super) fn parse_duration(value: &str) -> Result<u64, String> {
    let (number, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => value.split_at(index),
        None => (value, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{value}` is not a duration such as 12h or 30d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{value}`: use a unit of s, m, h or d")),
    };
    number
        .checked_mul(scale)
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| format!("`{value}` is out of range"))
}

/// A new token: its secret on stdout (this once), what it is on stderr; or all as JSON.
pub(super) fn print_created_token(
    created: &wire::ApiTokenCreated,
    format: OutputFormat,
    whose: &str,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return output::json(created);
    }
    eprintln!(
        "{}",
        crate::text::printable(&format!(
            "Created API token {} ({}){whose}. It is shown only now:",
            created.token.name, created.token.id
        ))
    );
    println!("{}", created.secret.expose());
    Ok(())
}

pub(super) fn print_tokens(tokens: &[wire::ApiToken]) {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|token| {
            vec![
                token.id.clone(),
                token.name.clone(),
                format!("{}…", token.prefix),
                token.created_at.clone(),
                or_dash(token.expires_at.as_deref()),
                or_dash(token.last_used_at.as_deref()),
                if token.revoked_at.is_some() {
                    "revoked".into()
                } else {
                    "active".into()
                },
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "PREFIX",
            "CREATED",
            "EXPIRES",
            "LAST USED",
            "STATE",
        ],
        &rows,
    );
}

fn tokens(client: &Client, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create {
            name,
            expires_in,
            output,
        } => {
            let created: wire::ApiTokenCreated = client.post(
                "/api/v1/tokens",
                &wire::ApiTokenInput {
                    name,
                    expires_in_seconds: expires_in,
                },
            )?;
            print_created_token(&created, output.output, "")
        }
        TokensCommand::List { user, output } => {
            let path = match &user {
                Some(user) => format!("/api/v1/users/{}/tokens", segment(user)),
                None => "/api/v1/tokens".to_owned(),
            };
            let list: wire::ApiTokenList = client.get(&path)?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            print_tokens(&list.tokens);
            Ok(())
        }
        TokensCommand::Revoke { id, user } => {
            match &user {
                Some(user) => {
                    client.delete(&format!(
                        "/api/v1/users/{}/tokens/{}",
                        segment(user),
                        segment(&id)
                    ))?;
                    output::line(&format!("Revoked API token {id} of {user}."));
                }
                None => {
                    client.delete(&format!("/api/v1/tokens/{}", segment(&id)))?;
                    output::line(&format!("Revoked API token {id}."));
                }
            }
            Ok(())
        }
    }
}

fn key(client: &Client, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Status { output } => {
            let status: wire::KeyStatus = client.get("/api/v1/admin/master-key")?;
            if output.output == OutputFormat::Json {
                return output::json(&status);
            }
            match (status.current_version, status.reason) {
                (Some(version), _) => println!("Master key available, current version {version}."),
                (None, reason) => output::line(&format!(
                    "Master key unavailable: {}",
                    reason.unwrap_or_default()
                )),
            }
            if let Some(problem) = status.key_file_problem {
                // The server still serves from memory: say so, and that a restart or a
                // rotation would act on a different file.
                println!(
                    "Warning: the master key file no longer holds the loaded keys ({problem}); key rotate is refused until the original file is back or the server restarts on the new one."
                );
            }
            Ok(())
        }
        KeyCommand::Rotate {
            skip_unreadable,
            output,
        } => {
            let rotation: wire::KeyRotation = client.post(
                "/api/v1/admin/master-key/rotate",
                &wire::KeyRotateInput { skip_unreadable },
            )?;
            if output.output == OutputFormat::Json {
                return output::json(&rotation);
            }
            println!(
                "Master key rotated from version {} to {}; {} data keys re-wrapped.",
                rotation.previous_version, rotation.current_version, rotation.rewrapped
            );
            for label in &rotation.skipped {
                println!("Left as it was (cannot be opened): {label}");
            }
            Ok(())
        }
    }
}

fn audit(client: &Client, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List {
            workspace,
            limit,
            output,
        } => {
            let mut path = format!("/api/v1/audit?limit={limit}");
            if let Some(workspace) = &workspace {
                path.push_str(&format!("&workspace={}", segment(workspace)));
            }
            let list: wire::AuditList = client.get(&path)?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .entries
                .iter()
                .map(|entry| {
                    vec![
                        entry.seq.to_string(),
                        entry.at.clone(),
                        entry.actor.clone(),
                        entry.action.clone(),
                        or_dash(entry.workspace.as_deref()),
                        or_dash(entry.target.as_deref()),
                        entry.outcome.clone(),
                        or_dash(Some(&crate::audit::detail_summary(&entry.detail))),
                    ]
                })
                .collect();
            output::table(
                &[
                    "SEQ",
                    "AT",
                    "ACTOR",
                    "ACTION",
                    "WORKSPACE",
                    "TARGET",
                    "OUTCOME",
                    "DETAIL",
                ],
                &rows,
            );
            Ok(())
        }
        AuditCommand::Verify { output } => {
            let result: wire::AuditVerification = client.get("/api/v1/audit/verify")?;
            if output.output == OutputFormat::Json {
                output::json(&result)?;
            } else {
                output::line(&result.message);
            }
            if !result.ok {
                bail!(
                    "the audit log failed verification at entry {}",
                    result.first_bad_seq.unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
