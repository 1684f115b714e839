//! The client side of the CLI: each command is one or two REST calls. Here: which
//! command group runs, the token-less commands (`login`, `kubelet-credential-provider`)
//! and `resolve`; each group is its own file (`credentials`, `users`, `workspaces`,
//! `tokens`, `keys`, `audit`, `roles`, `sync_targets`, `federation`).

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::output;
use super::Command;

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
