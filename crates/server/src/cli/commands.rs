//! The client side of the CLI: each command is one or two REST calls. Here: which
//! command group runs, the token-less commands (`login`, `kubelet-credential-provider`,
//! `completions`, `man`, `restore`, and `doctor`, which reads the settings itself) and
//! `resolve`; each group is its own file (`credentials`, `users`, `workspaces`,
//! `tokens`, `keys`, `audit`, `roles`, `sync_targets`, `federation`, `whoami`,
//! `doctor`, `backup`, `reference`).

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::output;
use super::{Command, OutputFormat};

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
    // Commands that work without a server, or on the settings themselves.
    match command {
        Command::Completions { shell } => return super::reference::completions(shell),
        Command::Man { directory } => return super::reference::man(&directory),
        Command::Restore(args) => return super::backup::restore(args),
        Command::Doctor { output } => return super::doctor::run(&environment, output),
        _ => {}
    }
    let client = Client::from_environment(&environment)?;
    match command {
        Command::Serve(_) => unreachable!("serve is handled before the client starts"),
        Command::InstallKubeletProvider(_) => {
            unreachable!("install-kubelet-provider is handled before the client starts")
        }
        Command::Credentials(command) => super::credentials::run(&client, *command),
        Command::Users(command) => super::users::run(&client, command),
        Command::Workspaces(command) => super::workspaces::run(&client, command),
        Command::Members(command) => super::workspaces::members(&client, command),
        Command::Tokens(command) => super::tokens::run(&client, command),
        Command::Key(command) => super::keys::run(&client, command),
        Command::Audit(command) => super::audit::run(&client, command),
        Command::Roles(command) => super::roles::run(&client, command),
        Command::Login(_) => unreachable!("login is handled before the token is read"),
        Command::Sync(command) => super::sync_targets::run(&client, command),
        Command::Resolve {
            image,
            workspace,
            reference,
            explain,
            output: format,
        } => {
            let workspace = workspace_or_personal(&client, workspace.workspace)?;
            let path = format!("/api/v1/workspaces/{}/resolve", segment(&workspace));
            let input = wire::ResolveInput {
                image,
                registry: None,
                reference,
                explain,
            };
            if explain {
                let explanation: wire::ResolveExplanation = client.post(&path, &input)?;
                return match format.unwrap_or_default() {
                    OutputFormat::Json => output::json(&explanation),
                    OutputFormat::Table => {
                        print_explanation(&explanation);
                        Ok(())
                    }
                };
            }
            let resolved: wire::Resolved = client.post(&path, &input)?;
            output::json(&resolved)
        }
        Command::KubeletCredentialProvider => {
            unreachable!("the kubelet provider is handled before the token is read")
        }
        Command::Whoami { output } => super::whoami::run(&client, output),
        Command::Backup(args) => super::backup::backup(&client, args),
        Command::Completions { .. }
        | Command::Man { .. }
        | Command::Restore(_)
        | Command::Doctor { .. } => {
            unreachable!("handled before the token is read")
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

/// `resolve --explain` for a person: the outcome and reason, then one row per
/// candidate (escaped by `output`).
fn print_explanation(explanation: &wire::ResolveExplanation) {
    output::fields(&[
        ("Workspace", explanation.workspace.clone()),
        (
            "Image",
            match (&explanation.registry, &explanation.repository) {
                (Some(registry), Some(repository)) if !repository.is_empty() => {
                    format!("{registry}/{repository}")
                }
                (Some(registry), _) => registry.clone(),
                _ => "-".to_owned(),
            },
        ),
        ("Outcome", explanation.outcome.clone()),
        ("Chosen", output::or_dash(explanation.chosen.as_deref())),
        ("Reason", explanation.reason.clone()),
    ]);
    output::line("");
    let rows: Vec<Vec<String>> = explanation
        .candidates
        .iter()
        .map(|candidate| {
            vec![
                if candidate.chosen { "*" } else { "" }.to_owned(),
                candidate.reference.clone(),
                candidate.kind.clone(),
                output::or_dash(
                    Some(&candidate.path_prefix)
                        .filter(|prefix| !prefix.is_empty())
                        .map(String::as_str),
                ),
                output::or_dash(candidate.token_status.as_deref()),
                candidate.policy.as_ref().map_or_else(
                    || "-".to_owned(),
                    |policy| match (&policy.statement, &policy.sid) {
                        (Some(index), Some(sid)) => {
                            format!("{} (statement {index}, {sid})", policy.decision)
                        }
                        (Some(index), None) => format!("{} (statement {index})", policy.decision),
                        _ => policy.decision.clone(),
                    },
                ),
                candidate.reason.clone(),
            ]
        })
        .collect();
    output::table(
        &["", "CANDIDATE", "TYPE", "PREFIX", "TOKEN", "POLICY", "WHY"],
        &rows,
    );
}
