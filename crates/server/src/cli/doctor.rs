//! `regkeeper doctor`: checks, in order, what stands between this CLI and a working
//! server, and says for each problem which setting to change: the client settings
//! (`REGKEEPER_URL`, `REGKEEPER_TOKEN`/`REGKEEPER_TOKEN_FILE`, `REGKEEPER_CA_FILE`, or
//! the settings file), the server's name (DNS), a TCP connection, TLS with the CA
//! setting in use, `/healthz`, the token (and whose it is), the server's version
//! against the CLI's, `/readyz`, the master key (site administrators), and the
//! credentials and sync targets that are failing in the caller's workspaces.
//!
//! A check that cannot run because an earlier one failed is reported as `skip`. The
//! exit status is non-zero when any check fails; warnings do not fail. Everything the
//! server says is printed through `text::printable` (or as exact JSON).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use regkeeper_client::{segment, Client, ClientError};
use regkeeper_wire as wire;
use serde::Serialize;

use super::output;
use super::{OutputArgs, OutputFormat};

/// How many credentials' sync targets are listed, at most (one request each).
const MAX_CREDENTIALS_EXAMINED: usize = 200;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

#[derive(Serialize)]
struct Check {
    check: String,
    status: Status,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, check: &str, status: Status, message: impl Into<String>) {
        self.0.push(Check {
            check: check.to_owned(),
            status,
            message: message.into(),
            fix: None,
        });
    }

    fn problem(
        &mut self,
        check: &str,
        status: Status,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Check {
            check: check.to_owned(),
            status,
            message: message.into(),
            fix: Some(fix.into()),
        });
    }

    fn skip(&mut self, check: &str, because: &str) {
        self.add(check, Status::Skip, because);
    }
}

pub(super) fn run(
    environment: &dyn Fn(&str) -> Option<String>,
    output: OutputArgs,
) -> anyhow::Result<()> {
    let mut checks = Checks::default();
    examine(environment, &mut checks);
    let failed = checks
        .0
        .iter()
        .filter(|check| check.status == Status::Fail)
        .count();
    let report = Report {
        ok: failed == 0,
        checks: checks.0,
    };
    if output.output == OutputFormat::Json {
        output::json(&report)?;
    } else {
        print_report(&report);
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} checks failed (see above)",
            report.checks.len()
        );
    }
    Ok(())
}

fn print_report(report: &Report) {
    let width = report
        .checks
        .iter()
        .map(|check| check.check.chars().count())
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        output::line(&format!(
            "{:<4}  {:<width$}  {}",
            check.status.label(),
            check.check,
            check.message
        ));
        if let Some(fix) = &check.fix {
            output::line(&format!("{:<4}  {:<width$}  fix: {fix}", "", ""));
        }
    }
    let problems = report
        .checks
        .iter()
        .filter(|check| matches!(check.status, Status::Fail | Status::Warn))
        .count();
    if problems == 0 {
        println!("No problems found.");
    }
}

fn examine(environment: &dyn Fn(&str) -> Option<String>, checks: &mut Checks) {
    // The address and TLS settings first: without them nothing else can be tried.
    let anonymous = match Client::anonymous_from_environment(environment) {
        Ok(client) => client,
        Err(error) => {
            checks.problem(
                "settings",
                Status::Fail,
                error.to_string(),
                "correct the setting named above (environment, or ~/.config/regkeeper/config.toml)",
            );
            return;
        }
    };
    let sources = anonymous.sources().clone();
    let url_setting = sources.url.clone();
    let ca = sources.ca_file.as_ref().map_or_else(
        || "built-in roots".to_owned(),
        |(setting, path)| format!("built-in roots and {} ({setting})", path.display()),
    );
    checks.add(
        "settings",
        Status::Ok,
        format!(
            "server {} (from {url_setting}); CLI {}; TLS trusts {ca}",
            anonymous.base_url(),
            regkeeper_client::VERSION
        ),
    );
    // The token is read now, but checked once the server is known to answer.
    let with_token = Client::from_environment(environment);
    if !reachable(&anonymous, &url_setting, &sources, checks) {
        for check in ["token", "version", "readiness", "master key", "credentials"] {
            checks.skip(check, "the server cannot be reached");
        }
        return;
    }
    readiness(&anonymous, checks);
    let client = match with_token {
        Ok(client) => client,
        Err(error) => {
            let fix = if error.is_missing_token() {
                "export REGKEEPER_TOKEN=rk_… (or REGKEEPER_TOKEN_FILE), or put token = \"rk_…\" in ~/.config/regkeeper/config.toml"
            } else {
                "correct the setting named above"
            };
            checks.problem("token", Status::Fail, error.to_string(), fix);
            for check in ["version", "master key", "credentials"] {
                checks.skip(check, "no usable API token");
            }
            return;
        }
    };
    let token_setting = client
        .sources()
        .token
        .clone()
        .unwrap_or_else(|| "REGKEEPER_TOKEN".to_owned());
    let me = match client.get::<wire::Me>("/api/v1/me") {
        Ok(me) => me,
        Err(error) => {
            let (message, fix) = match &error {
                ClientError::Api { status: 401, .. } => (
                    format!("the server refused the API token from {token_setting}: {error}"),
                    format!("set {token_setting} to a valid, unexpired API token (`regkeeper tokens create` with one that works, or the bootstrap admin's)"),
                ),
                _ => (
                    format!("asking who the token belongs to failed: {error}"),
                    "check REGKEEPER_URL names a regkeeper server".to_owned(),
                ),
            };
            checks.problem("token", Status::Fail, message, fix);
            for check in ["version", "master key", "credentials"] {
                checks.skip(check, "the token was not accepted");
            }
            return;
        }
    };
    checks.add("token", Status::Ok, describe_token(&me, &token_setting));
    version(&client, checks);
    master_key(&client, checks);
    credentials(&client, &me, checks);
}

fn describe_token(me: &wire::Me, setting: &str) -> String {
    let who = match (&me.role, me.admin) {
        (Some(role), _) => format!("workload role {role}"),
        (None, true) => format!("user {} (site administrator)", me.user),
        (None, false) => format!("user {}", me.user),
    };
    let token = me.token.as_ref().map_or_else(String::new, |token| {
        format!(
            ", token {} \"{}\" {}",
            token.id,
            token.name,
            token.expires_at.as_deref().map_or_else(
                || "without expiry".to_owned(),
                |at| format!("expiring {at}")
            )
        )
    });
    format!("accepted ({setting}): {who}{token}")
}

/// DNS, TCP, then TLS and `/healthz`; whether the server answered.
fn reachable(
    client: &Client,
    url_setting: &str,
    sources: &regkeeper_client::SettingSources,
    checks: &mut Checks,
) -> bool {
    let url = match url::Url::parse(client.base_url()) {
        Ok(url) => url,
        Err(error) => {
            checks.problem(
                "address",
                Status::Fail,
                format!("{} is not a URL: {error}", client.base_url()),
                format!("set {url_setting} to http(s)://HOST:PORT of the server"),
            );
            return false;
        }
    };
    let Some(host) = url
        .host_str()
        .map(|host| host.trim_matches(['[', ']']).to_owned())
    else {
        checks.problem(
            "address",
            Status::Fail,
            format!("{} names no host", client.base_url()),
            format!("set {url_setting} to http(s)://HOST:PORT of the server"),
        );
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses = match (host.as_str(), port).to_socket_addrs() {
        Ok(addresses) => addresses.collect::<Vec<_>>(),
        Err(error) => {
            checks.problem(
                "address",
                Status::Fail,
                format!("cannot resolve {host}: {error}"),
                format!("correct the host name in {url_setting}, or the machine's DNS settings"),
            );
            return false;
        }
    };
    let shown = addresses
        .iter()
        .map(|address| address.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    checks.add("address", Status::Ok, format!("{host} resolves to {shown}"));
    let mut refusals = Vec::new();
    let connected = addresses.iter().find(|address| {
        match TcpStream::connect_timeout(address, CONNECT_TIMEOUT) {
            Ok(_) => true,
            Err(error) => {
                refusals.push(format!("{address}: {error}"));
                false
            }
        }
    });
    match connected {
        Some(address) => checks.add(
            "connection",
            Status::Ok,
            format!("TCP connection to {address}"),
        ),
        None => {
            checks.problem(
                "connection",
                Status::Fail,
                format!("nothing accepts connections on port {port} of {host} ({})", refusals.join("; ")),
                format!("start the server (regkeeper serve), or correct the port in {url_setting}; a firewall may be in the way"),
            );
            return false;
        }
    }
    let https = url.scheme() == "https";
    match client.probe("/healthz") {
        Ok((200, body)) if body.contains("\"status\"") => {
            if https {
                checks.add(
                    "tls",
                    Status::Ok,
                    format!("the server's certificate is trusted for {host}"),
                );
            } else if is_loopback(&host) {
                checks.add("tls", Status::Ok, "plain http on this machine's loopback");
            } else {
                checks.problem(
                    "tls",
                    Status::Warn,
                    format!("plain http to {host}: the API token and resolved secrets cross the network unencrypted"),
                    format!("serve regkeeper behind TLS and use https:// in {url_setting}"),
                );
            }
            checks.add("health", Status::Ok, "GET /healthz answered ok");
            true
        }
        Ok((status, _)) => {
            checks.problem(
                "health",
                Status::Fail,
                format!("GET /healthz answered HTTP {status}, not regkeeper's health answer"),
                format!("check that {url_setting} names the regkeeper server itself (scheme, host, port, no path)"),
            );
            false
        }
        Err(error) if error.is_certificate_refused() => {
            let fix = match &sources.ca_file {
                Some((setting, path)) => format!(
                    "{setting} ({}) does not hold the CA that signed the server's certificate: point it at that CA's PEM file",
                    path.display()
                ),
                None => "set REGKEEPER_CA_FILE to the PEM file of the CA that signed the server's certificate (or ca_file in the settings file)".to_owned(),
            };
            checks.problem(
                "tls",
                Status::Fail,
                format!("the server's certificate is not trusted: {error}"),
                fix,
            );
            false
        }
        Err(error) => {
            let fix = if https {
                format!("if the server listens without TLS, use http:// in {url_setting}")
            } else {
                format!("if the server (or a proxy in front of it) speaks TLS, use https:// in {url_setting}")
            };
            checks.problem("health", Status::Fail, error.to_string(), fix);
            false
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn readiness(client: &Client, checks: &mut Checks) {
    match client.probe("/readyz") {
        Ok((200, _)) => checks.add(
            "readiness",
            Status::Ok,
            "GET /readyz: ready (database and master key)",
        ),
        Ok((status, body)) => {
            let parts: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let database = parts["database"].as_str().unwrap_or("unknown");
            let master_key = parts["masterKey"].as_str().unwrap_or("unknown");
            let mut fixes = Vec::new();
            if database != "ok" {
                fixes.push("the server cannot use its database: check REGKEEPER_DATABASE_URL (or REGKEEPER_DATA_DIR) and the database itself, then the server log");
            }
            if !master_key.starts_with("ok") {
                fixes.push("the server has no usable master key: REGKEEPER_MASTER_KEY_FILE (or REGKEEPER_MASTER_KEY_KMS_KEY_ID) on the server must name the key the database was sealed with; `regkeeper key status` says more");
            }
            checks.problem(
                "readiness",
                Status::Fail,
                format!("GET /readyz answered HTTP {status}: database {database}, master key {master_key}"),
                fixes.join("; "),
            );
        }
        Err(error) => checks.problem(
            "readiness",
            Status::Fail,
            error.to_string(),
            "the server answered /healthz but not /readyz: see its log",
        ),
    }
}

fn version(client: &Client, checks: &mut Checks) {
    let ours = env!("CARGO_PKG_VERSION");
    match client.get::<wire::ServerVersion>("/api/v1/version") {
        Ok(server) if server.version == ours && server.commit == regkeeper_client::COMMIT => checks
            .add(
                "version",
                Status::Ok,
                format!(
                    "server {} (commit {}), the CLI's own; database {}",
                    server.version, server.commit, server.database
                ),
            ),
        Ok(server) if server.version == ours => checks.add(
            "version",
            Status::Ok,
            format!(
                "server {} (commit {}), CLI commit {}; database {}",
                server.version,
                server.commit,
                regkeeper_client::COMMIT,
                server.database
            ),
        ),
        Ok(server) => checks.problem(
            "version",
            Status::Warn,
            format!(
                "server {} (commit {}), CLI {}",
                server.version,
                server.commit,
                regkeeper_client::VERSION
            ),
            "use the CLI of the server's release: commands and answers may differ between releases",
        ),
        Err(error) if error.status() == Some(404) => checks.problem(
            "version",
            Status::Warn,
            "the server does not say its version (GET /api/v1/version): it is older than this CLI",
            "upgrade the server, or use the CLI of its release",
        ),
        Err(error) => checks.problem(
            "version",
            Status::Warn,
            error.to_string(),
            "see the server log",
        ),
    }
}

fn master_key(client: &Client, checks: &mut Checks) {
    match client.get::<wire::KeyStatus>("/api/v1/admin/master-key") {
        Ok(status) => match (status.current_version, status.key_file_problem) {
            (Some(version), None) => checks.add("master key", Status::Ok, format!("loaded, current version {version}")),
            (Some(version), Some(problem)) => checks.problem(
                "master key",
                Status::Warn,
                format!("loaded (version {version}), but the key file no longer holds it: {problem}"),
                "put back the key file the server loaded (REGKEEPER_MASTER_KEY_FILE on the server) before it restarts; `key rotate` is refused meanwhile",
            ),
            (None, _) => checks.problem(
                "master key",
                Status::Fail,
                format!("unavailable: {}", status.reason.unwrap_or_default()),
                "on the server, REGKEEPER_MASTER_KEY_FILE (or REGKEEPER_MASTER_KEY_KMS_KEY_ID) must name the key the database was sealed with; the server reloads the file within 10 s",
            ),
        },
        Err(error) if error.status() == Some(403) => {
            checks.skip("master key", "reading the key status needs a site administrator's token");
        }
        Err(error) => checks.problem("master key", Status::Warn, error.to_string(), "see the server log"),
    }
}

/// Failing credentials (verification failed, token expired or never minted, refresh
/// failing) and failing sync targets in every workspace the caller belongs to.
fn credentials(client: &Client, me: &wire::Me, checks: &mut Checks) {
    let workspaces = if me.role.is_some() {
        vec![me.personal_workspace.clone()]
    } else {
        match client.get::<wire::WorkspaceList>("/api/v1/workspaces") {
            Ok(list) => list
                .workspaces
                .into_iter()
                .map(|workspace| workspace.name)
                .collect(),
            Err(error) => {
                checks.problem(
                    "credentials",
                    Status::Warn,
                    format!("listing your workspaces failed: {error}"),
                    "see the server log",
                );
                return;
            }
        }
    };
    let mut examined = 0;
    let mut targets_examined = 0;
    let mut problems = 0;
    let mut unexamined = 0;
    for workspace in &workspaces {
        let path = format!("/api/v1/workspaces/{}/credentials", segment(workspace));
        let list = match client.get::<wire::CredentialList>(&path) {
            Ok(list) => list,
            Err(error) => {
                checks.problem(
                    &format!("credentials in {workspace}"),
                    Status::Warn,
                    format!("could not be listed: {error}"),
                    "a workload role needs credentials:Describe in its policy to list them",
                );
                problems += 1;
                continue;
            }
        };
        for credential in &list.credentials {
            examined += 1;
            let name = format!("{workspace}/{}", credential.name);
            if let Some((status, message)) = credential_problem(credential) {
                problems += 1;
                checks.problem(
                    &format!("credential {name}"),
                    status,
                    message,
                    format!(
                        "regkeeper credentials verify {} --workspace {workspace}; if the registry refuses it, give it a new secret with regkeeper credentials update {} --workspace {workspace} --password-stdin",
                        credential.name, credential.name
                    ),
                );
            }
            if targets_examined >= MAX_CREDENTIALS_EXAMINED {
                unexamined += 1;
                continue;
            }
            targets_examined += 1;
            let path = format!(
                "/api/v1/workspaces/{}/credentials/{}/sync-targets",
                segment(workspace),
                segment(&credential.name)
            );
            let Ok(targets) = client.get::<wire::SyncTargetList>(&path) else {
                continue;
            };
            for target in targets
                .targets
                .iter()
                .filter(|target| target.status == "failing")
            {
                problems += 1;
                checks.problem(
                    &format!("sync target {name}"),
                    Status::Fail,
                    format!(
                        "{} {} failing after {} attempts: {}",
                        target.kind,
                        target.destination,
                        target.failures,
                        target.last_error.as_deref().unwrap_or("no error recorded")
                    ),
                    format!(
                        "regkeeper sync list {} --workspace {workspace}; fix the destination (or the server's REGKEEPER_SYNC_* settings), then regkeeper sync run {} {} --workspace {workspace}",
                        credential.name, credential.name, target.id
                    ),
                );
            }
        }
    }
    let mut summary = format!(
        "{examined} credentials in {} workspaces examined, sync targets of {targets_examined}",
        workspaces.len()
    );
    if unexamined > 0 {
        summary.push_str(&format!(" ({unexamined} more not examined)"));
    }
    if problems == 0 {
        checks.add(
            "credentials",
            Status::Ok,
            format!("{summary}; none failing"),
        );
    } else {
        checks.add(
            "credentials",
            Status::Ok,
            format!("{summary}; problems listed above"),
        );
    }
}

/// Why a credential does not work, if it does not: a failed verification, an expired
/// token, a first mint that never succeeded (fail), or a failing refresh of a token
/// still valid (warn).
fn credential_problem(credential: &wire::Credential) -> Option<(Status, String)> {
    if credential.verification.status == "failed" {
        return Some((
            Status::Fail,
            format!(
                "verification failed: {}",
                credential
                    .verification
                    .message
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    let token = credential.token.as_ref()?;
    let error = token.last_error.as_deref().unwrap_or("no error recorded");
    match token.status.as_str() {
        "expired" => Some((
            Status::Fail,
            format!("its registry token expired; last refresh error: {error}"),
        )),
        "pending" if token.last_error.is_some() => Some((
            Status::Fail,
            format!("no registry token could be minted yet: {error}"),
        )),
        "stale" => Some((
            Status::Warn,
            format!(
                "refreshing its registry token fails (the current one serves until {}): {error}",
                token.expires_at.as_deref().unwrap_or("it expires")
            ),
        )),
        _ => None,
    }
}
