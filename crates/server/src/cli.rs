//! The command line: `regkeeper serve` runs the server; every other command is a
//! client of its REST API (`REGKEEPER_URL`, `REGKEEPER_TOKEN`). Secrets are read from
//! stdin, an environment variable or a file — never from an argument.
//!
//! The client commands are one or two REST calls each through `regkeeper_client`, one
//! file per command group; `kubelet-credential-provider` is
//! `regkeeper_consumers::kubelet::run`, called before any API token is required;
//! `install-kubelet-provider` (`node_install`) only copies files onto a node. No
//! command but `serve` and `restore` (which works on a stopped server's data
//! directory, through `store::sqlite`) opens the store, and none but `serve` the key
//! file. `completions` and `man` are generated from these clap definitions.

mod audit;
mod backup;
mod bootstrap_token;
mod commands;
mod credentials;
mod doctor;
mod federation;
mod keys;
mod node_install;
mod output;
mod reference;
mod roles;
mod sync_targets;
mod tokens;
mod usage;
mod users;
mod whoami;
mod workspaces;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "regkeeper",
    version = regkeeper_client::VERSION,
    about = "Container-registry credentials broker"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage registry credentials.
    #[command(subcommand)]
    Credentials(Box<CredentialsCommand>),
    /// Manage users (site administrators).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage workspaces.
    #[command(subcommand)]
    Workspaces(WorkspacesCommand),
    /// Manage workspace members and their roles.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Manage your API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Master key status and online rotation (site administrators).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Push a credential's login to files, Kubernetes Secrets or webhooks after every
    /// refresh.
    #[command(subcommand)]
    Sync(sync_targets::SyncCommand),
    /// Print working credentials for an image as JSON:
    /// {"username","secret","expiresAt","registry",...}.
    Resolve {
        /// An image reference, e.g. ghcr.io/acme/app:1 (optional with --reference).
        #[arg(required_unless_present = "reference")]
        image: Option<String>,
        #[command(flatten)]
        workspace: WorkspaceArg,
        /// Use this credential instead of the best match: a name in the workspace, or
        /// rk:WS:credential/NAME where a policy grants it.
        #[arg(long)]
        reference: Option<String>,
        /// Print why instead: the candidate credentials, the one a resolve picks and
        /// why (host, path prefix, reference, policy statement). No secret.
        #[arg(long)]
        explain: bool,
        /// With --explain: a table (default) or the JSON answer.
        #[arg(long, value_enum, requires = "explain")]
        output: Option<OutputFormat>,
    },
    /// Manage workload roles, their policies and their API tokens (workspace admins).
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Exchange an OIDC token for a short-lived API token of a workload role and print
    /// it (or save it in the CLI settings with --save).
    Login(federation::LoginArgs),
    /// Kubelet image credential provider: reads a credentialprovider.kubelet.k8s.io/v1
    /// CredentialProviderRequest on stdin, prints the CredentialProviderResponse.
    KubeletCredentialProvider,
    /// Who the API token belongs to: the user or workload role, its workspaces with
    /// their roles, and the token's id and expiry.
    Whoami {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check the settings and the server: DNS, TCP, TLS (with REGKEEPER_CA_FILE), the
    /// token, versions, readiness, the master key, failing credentials and sync
    /// targets. Each problem names the setting to change; exits 1 if a check fails.
    Doctor {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Copy the running server's SQLite database to FILE, consistently, while it
    /// serves (site administrators). On PostgreSQL, prints the pg_dump commands.
    Backup(backup::BackupArgs),
    /// Put a backup in place of a stopped server's SQLite database (in its data
    /// directory). The master key file is not in the backup: keep it with it.
    Restore(backup::RestoreArgs),
    /// Print a shell completion script, e.g. `regkeeper completions bash >
    /// /etc/bash_completion.d/regkeeper`.
    Completions {
        #[arg(value_enum)]
        shell: reference::Shell,
    },
    /// Write man pages for regkeeper, each of its commands, and the two node programs
    /// into DIR (e.g. /usr/local/share/man/man1).
    Man {
        #[arg(value_name = "DIR")]
        directory: PathBuf,
    },
    /// Install the kubelet credential provider, its CredentialProviderConfig and the
    /// node token on a node (the Kubernetes DaemonSet's job), atomically.
    InstallKubeletProvider(node_install::InstallArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file with settings; environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:7070).
    #[arg(long)]
    listen: Option<String>,
    /// postgres://… to use PostgreSQL instead of the embedded SQLite database.
    #[arg(long)]
    database_url: Option<String>,
    /// Address of the pull-through proxy listener.
    #[arg(long)]
    proxy_listen: Option<String>,
    /// Read the bootstrap token (the first admin's API token, used only while the
    /// database is empty) from standard input rather than REGKEEPER_BOOTSTRAP_TOKEN.
    #[arg(long)]
    bootstrap_token_stdin: bool,
}

#[derive(Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Args, Clone, Copy)]
struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

#[derive(Args, Clone)]
struct WorkspaceArg {
    /// Workspace (`ORG/NAME` or `~USER`); defaults to your personal workspace.
    #[arg(long)]
    workspace: Option<String>,
}

#[derive(Args, Clone, Default)]
#[group(multiple = false)]
struct PasswordSource {
    /// Read the password (or secret key, token, JSON key) from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Read the password from this file (e.g. a Google service-account JSON key).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
#[group(multiple = false)]
struct SessionTokenSource {
    /// Read an AWS session token from this environment variable.
    #[arg(long, value_name = "VAR")]
    session_token_env: Option<String>,
    /// Read an AWS session token from this file.
    #[arg(long, value_name = "FILE")]
    session_token_file: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct CredentialFields {
    /// Registry server, e.g. ghcr.io, 123456789012.dkr.ecr.us-east-1.amazonaws.com.
    #[arg(long)]
    registry: Option<String>,
    /// User name; for ECR the access key id, for GCR `_json_key` or `oauth2accesstoken`.
    #[arg(long)]
    username: Option<String>,
    #[command(flatten)]
    password: PasswordSource,
    #[command(flatten)]
    session_token: SessionTokenSource,
    /// Credential type; `auto` guesses it from the registry host.
    #[arg(long = "type", value_name = "TYPE", value_parser = ["auto", "docker", "ecr", "acr", "gcr"])]
    kind: Option<String>,
    /// Repository path prefix this credential serves (the longest matching prefix wins).
    #[arg(long)]
    path_prefix: Option<String>,
    /// ECR: an IAM role to assume.
    #[arg(long)]
    role_arn: Option<String>,
    /// ECR: the external id the role's trust policy requires.
    #[arg(long, requires = "role_arn")]
    external_id: Option<String>,
    /// ECR: use the server's own AWS identity (if the server allows it).
    #[arg(long)]
    ambient: bool,
    /// ECR: the region, for a registry host that does not name it (e.g. a VPC endpoint).
    #[arg(long)]
    aws_region: Option<String>,
    /// ACR: the Azure AD tenant of a service principal (user name = client id).
    #[arg(long)]
    azure_tenant_id: Option<String>,
    /// Read the login from this AWS Secrets Manager secret (name or ARN) at every
    /// resolve, cached at most 5 minutes, instead of storing it (ECS's
    /// `{"username","password"}`); needs --aws-identity.
    #[arg(long, value_name = "NAME-OR-ARN", conflicts_with_all = ["username", "ambient", "role_arn"])]
    aws_secret: Option<String>,
    /// With --aws-secret: the `ecr` credential (same workspace) whose AWS keys, role
    /// or ambient identity read the secret.
    #[arg(long, value_name = "AWS-CRED")]
    aws_identity: Option<String>,
    /// With --aws-secret: the secret's JSON keys of the user name and password, when
    /// they are not `username` and `password`.
    #[arg(long, value_name = "USER,PASS")]
    aws_secret_keys: Option<String>,
    /// Do not verify the credential against the registry before storing it (it is
    /// then marked `skipped` rather than `unverified`).
    #[arg(long)]
    no_verify: bool,
}

#[derive(Subcommand)]
enum CredentialsCommand {
    /// Store a credential.
    Add {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: CredentialFields,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List credentials (never their secrets).
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one credential (never its secret).
    Show {
        name: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Change a credential; only the given fields change.
    Update {
        name: String,
        /// A new name.
        #[arg(long = "name", value_name = "NEW_NAME")]
        new_name: Option<String>,
        #[command(flatten)]
        fields: CredentialFields,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a credential.
    Delete {
        name: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
    },
    /// Log in to the registry with a stored credential and record the result.
    Verify {
        name: String,
        /// Also check pull access to this repository.
        #[arg(long)]
        repository: Option<String>,
        /// Also check whether the credential may push to the repository, by opening a
        /// blob upload there and cancelling it at once (nothing is written).
        #[arg(long, requires = "repository")]
        check_push: bool,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user and print their API token once.
    Create {
        name: String,
        /// Make the user a site administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Disable a user: revoke every API token of theirs (ending their console
    /// sessions) and refuse their sign-in; their personal workspace is kept.
    Disable {
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Enable a disabled user and print their new API token once.
    Enable {
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a user with their tokens, memberships and personal workspace (its
    /// credentials, roles and sync targets). Without --yes, says what would go.
    Delete {
        name: String,
        /// Confirm that the personal workspace and everything in it is deleted too.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand)]
enum WorkspacesCommand {
    /// Create an organisation workspace; you become its owner.
    Create {
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the workspaces you are a member of.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand)]
enum MembersCommand {
    /// Add a member to a workspace, or change their role.
    Add {
        workspace: String,
        user: String,
        #[arg(long, value_parser = ["owner", "admin", "maintain", "launch", "view"])]
        role: String,
    },
    /// List a workspace's members.
    List {
        workspace: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove a member from a workspace.
    Remove { workspace: String, user: String },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Issue a new API token for yourself and print it once.
    Create {
        #[arg(long)]
        name: String,
        /// Lifetime such as 3600s, 90m, 12h, 30d; default: no expiry.
        #[arg(long, value_parser = tokens::parse_duration)]
        expires_in: Option<u64>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List your API tokens, or another user's (site administrators).
    List {
        /// Another user's tokens (site administrators).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke one of your API tokens; site administrators may revoke anyone's.
    Revoke {
        id: String,
        /// The user the token belongs to (site administrators; optional).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Show whether the master key is loaded and its version.
    Status {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Add a master key version and re-wrap every data key, while the server serves.
    /// Refused, naming them and changing nothing, while some sealed value cannot be
    /// opened with the loaded keys.
    Rotate {
        /// Rotate anyway: re-wrap every readable value, leave the unreadable ones as
        /// they are and list them.
        #[arg(long)]
        skip_unreadable: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move the keyring between a key file and AWS KMS, while the server serves: a new
    /// master key version is made in the new home and every data key re-wrapped once
    /// under it. Run it again to finish a move that was interrupted.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["to_kms", "to_file"])))]
    Migrate {
        /// The AWS KMS key (id, ARN or alias) to wrap the keyring, kept in the database.
        #[arg(long, value_name = "KEY-ID")]
        to_kms: Option<String>,
        /// The key file to create on the server (an absolute path).
        #[arg(long, value_name = "PATH")]
        to_file: Option<String>,
        /// As for rotate: leave values that cannot be opened as they are.
        #[arg(long)]
        skip_unreadable: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Show recent audit entries, newest first.
    List {
        /// Only this workspace (you need admin there); default: all (site administrators).
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check the audit log's hash chain.
    Verify {
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Args, Clone, Default)]
struct PolicyFields {
    /// The policy document (JSON), or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    policy_file: Option<PathBuf>,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Subcommand)]
enum RolesCommand {
    /// Create a workload role with an IAM-like policy.
    Create {
        name: String,
        #[command(flatten)]
        policy: PolicyFields,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List a workspace's roles.
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a role with its policy and the credentials its exact grants are bound to.
    Show {
        name: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Replace a role's policy or description.
    Update {
        name: String,
        #[command(flatten)]
        policy: PolicyFields,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a role and every token issued to it.
    Delete {
        name: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
    },
    /// How the role's policy decides an action on a credential, without doing it.
    Simulate {
        name: String,
        /// credentials:Resolve or credentials:Describe.
        #[arg(long, default_value = "credentials:Resolve")]
        action: String,
        /// A credential name in the role's workspace, or rk:WS:credential/NAME.
        #[arg(long)]
        reference: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Manage the API tokens of a role.
    #[command(subcommand)]
    Tokens(RoleTokensCommand),
    /// Manage the OIDC identity providers a role trusts (identity federation).
    #[command(subcommand)]
    Trust(federation::RoleTrustCommand),
    /// Which roles of other workspaces may reach this workspace's credentials.
    #[command(subcommand)]
    Grants(RoleGrantsCommand),
}

#[derive(Subcommand)]
enum RoleGrantsCommand {
    /// Every outside role whose policy reaches the workspace, with its grant's state.
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Grant an outside role (rk:WS:role/NAME) what its policy allows here.
    Add {
        role: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
    },
    /// Revoke an outside role's grant: it stops reaching the workspace at once.
    Revoke {
        role: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
    },
}

#[derive(Subcommand)]
enum RoleTokensCommand {
    /// Issue an API token to a role and print it once.
    Create {
        role: String,
        #[arg(long)]
        name: String,
        /// Lifetime such as 3600s, 90m, 12h, 30d; default: no expiry.
        #[arg(long, value_parser = tokens::parse_duration)]
        expires_in: Option<u64>,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List a role's API tokens.
    List {
        role: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke a role's API token.
    Revoke {
        role: String,
        id: String,
        #[command(flatten)]
        workspace: WorkspaceArg,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if usage::is_information(&error) => error.exit(),
        Err(error) => {
            eprintln!("error: {}", usage::one_line(&error));
            return ExitCode::from(usage::USAGE_EXIT_STATUS);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::InstallKubeletProvider(args) => node_install::run(args),
        other => commands::run(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. A server's message may quote what was typed;
/// anything in it a terminal would act on (ANSI escapes, bidi overrides) is shown
/// escaped.
fn one_line(error: &anyhow::Error) -> String {
    let joined = error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
        .replace(['\r', '\n'], " ");
    crate::text::printable(&joined).into_owned()
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // systemd's LoadCredential= files, if any (see `crate::systemd`).
    let credentials = crate::systemd::credentials_directory(&|name| std::env::var(name).ok());
    let credential_token = match &credentials {
        Some(directory) => crate::systemd::bootstrap_token(directory)?,
        None => None,
    };
    if credential_token.is_some()
        && (args.bootstrap_token_stdin
            || std::env::var_os(bootstrap_token::VARIABLE).is_some_and(|value| !value.is_empty()))
    {
        anyhow::bail!(
            "the credential {} is set and so is {} or {}: give the bootstrap token one way only",
            crate::systemd::BOOTSTRAP_TOKEN_CREDENTIAL,
            bootstrap_token::VARIABLE,
            bootstrap_token::STDIN_FLAG
        );
    }
    // First, while this is the only thread: a token in the environment would stay in
    // /proc/PID/environ for the server's whole life.
    bootstrap_token::move_out_of_environment(args.bootstrap_token_stdin)?;
    let bootstrap_token = if args.bootstrap_token_stdin {
        Some(bootstrap_token::read(&mut std::io::stdin().lock())?)
    } else {
        credential_token
    };
    let overrides = Overrides {
        listen: args.listen,
        database_url: args.database_url.map(secrecy::SecretString::from),
        proxy_listen: args.proxy_listen,
        bootstrap_token,
    };
    let config = Config::load(
        args.config.as_deref(),
        &|name| std::env::var(name).ok(),
        &overrides,
    )?;
    let telemetry = crate::serve::init_logging(config.log_format)?;
    if let Some(directory) = &credentials {
        crate::systemd::seed_master_key(directory, &config.master_key_file)?;
    }
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(crate::serve::run(config));
    // After the runtime: the exporter sends what is left from its own thread.
    telemetry.shutdown();
    served
}
