//! Identity federation in the CLI (issue 13): `regkeeper roles trust …`, the OIDC
//! identity providers a workload role trusts, and `regkeeper login --role`, which
//! exchanges an OIDC token for a short-lived API token of the role.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;
use regkeeper_wire::Sensitive;
use secrecy::zeroize::Zeroizing;

use super::commands::workspace_or_personal;
use super::output;
use super::tokens::parse_duration;
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
            output::list(
                output.output,
                &list,
                &list.trusts,
                &["ID", "ISSUER", "AUDIENCE", "CONDITIONS", "MAX SESSION"],
                |trust| {
                    vec![
                        trust.id.clone(),
                        trust.issuer.clone(),
                        trust.audience.clone(),
                        conditions(trust),
                        format!("{}s", trust.max_session_seconds),
                    ]
                },
            )
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

/// The audience `--github-actions` asks GitHub for unless `--audience` says otherwise;
/// the role's trust must name the same.
pub(super) const DEFAULT_AUDIENCE: &str = "regkeeper";

/// How long `regkeeper login` waits for the browser to come back.
const BROWSER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

#[derive(Args)]
#[command(group(clap::ArgGroup::new("oidc_token").requires("role")
    .args(["oidc_token_file", "oidc_token_env", "github_actions"])))]
pub(super) struct LoginArgs {
    /// The workload role to sign in as: rk:WORKSPACE:role/NAME, with an OIDC token.
    /// Without it, you sign in as yourself through the server's single sign-on in a
    /// browser.
    #[arg(long, requires = "oidc_token")]
    role: Option<String>,
    /// Print the sign-in URL only; do not try to open a browser (single sign-on).
    #[arg(long, conflicts_with = "role")]
    no_browser: bool,
    /// A file holding the OIDC token (a projected Kubernetes service-account token, a
    /// CI system's token).
    #[arg(long)]
    oidc_token_file: Option<std::path::PathBuf>,
    /// An environment variable holding the OIDC token (GitLab's `id_tokens`, ...).
    #[arg(long)]
    oidc_token_env: Option<String>,
    /// Fetch the GitHub Actions job's OIDC token (needs `permissions: id-token: write`).
    #[arg(long)]
    github_actions: bool,
    /// The audience to ask GitHub Actions for; the role's trust must name it.
    #[arg(long, default_value = DEFAULT_AUDIENCE, requires = "github_actions")]
    audience: String,
    /// Write the URL and the new token to the CLI settings file (0600) instead of
    /// printing the token.
    #[arg(long)]
    save: bool,
}

fn read_token(text: Zeroizing<String>, source: &str) -> anyhow::Result<Sensitive> {
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "{source} holds no OIDC token");
    Ok(Sensitive::new(token))
}

pub(super) fn login(client: &Client, args: LoginArgs) -> anyhow::Result<()> {
    let environment = |name: &str| std::env::var(name).ok();
    let Some(role) = args.role else {
        return sign_in_with_browser(client, &environment, args.no_browser);
    };
    let oidc_token = if let Some(path) = &args.oidc_token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the OIDC token file {}", path.display()))?;
        read_token(Zeroizing::new(text), &path.display().to_string())?
    } else if let Some(variable) = &args.oidc_token_env {
        let text = std::env::var(variable)
            .with_context(|| format!("the environment variable {variable} is not set"))?;
        read_token(Zeroizing::new(text), variable)?
    } else {
        regkeeper_client::github_actions_token(&environment, &args.audience)?
    };
    let exchanged = client.exchange_oidc(&role, &oidc_token)?;
    if args.save {
        let path =
            regkeeper_client::save_settings(&environment, client.base_url(), &exchanged.token)?;
        eprintln!(
            "Signed in as {role} until {}; saved in {}.",
            exchanged.expires_at,
            path.display()
        );
    } else {
        eprintln!("Signed in as {role} until {}.", exchanged.expires_at);
        println!("{}", exchanged.token.expose());
    }
    Ok(())
}

/// `regkeeper login` for a person: single sign-on in a browser, and the short-lived
/// token it yields saved in the settings file (0600).
fn sign_in_with_browser(
    client: &Client,
    environment: &dyn Fn(&str) -> Option<String>,
    no_browser: bool,
) -> anyhow::Result<()> {
    let mut open = |url: &str| {
        eprintln!("Open this address in your browser to sign in:\n\n  {url}\n");
        if !no_browser {
            try_browser(url);
        }
    };
    let signed_in = client
        .sign_in_with_browser(&mut open, BROWSER_TIMEOUT)
        .context("signing in with single sign-on")?;
    let path = regkeeper_client::save_settings(environment, client.base_url(), &signed_in.token)?;
    eprintln!(
        "Signed in as {} until {}; saved in {}.",
        signed_in.user,
        signed_in.expires_at,
        path.display()
    );
    Ok(())
}

/// Starts `xdg-open` if this machine has one; the printed address is enough otherwise
/// (a server over SSH has no browser).
fn try_browser(url: &str) {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join("xdg-open").is_file())
    });
    if found {
        // Its output would interleave with ours; whether it worked, the person sees.
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}
