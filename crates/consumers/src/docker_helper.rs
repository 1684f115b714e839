//! `docker-credential-regkeeper`: the docker-credential-helpers protocol (SPEC §2.2) on
//! top of regkeeper. The action is the first argument; its input comes on standard
//! input; `get` prints a login, `list` a map; "not found" is a fixed text on standard
//! output and exit status 1; every other failure is one line on standard error.
//!
//! `get` is on the path of every pull, so it does the least it can: read the
//! environment, send one `POST /api/v1/resolve`, print. The other actions work on the
//! caller's personal workspace, the one `get` resolves in.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::SystemTime;

use regkeeper_client::{segment, Client, ClientError};
use regkeeper_wire as wire;
use regkeeper_wire::docker_helper::{
    HelperCredentials, CREDENTIALS_NOT_FOUND, IDENTITY_TOKEN_USERNAME,
};
use regkeeper_wire::text::echo;
use zeroize::Zeroizing;

use crate::federation::{self, RoleSettings};
use crate::{describe, json_problem, one_line, Environment};

pub const PROGRAM: &str = "docker-credential-regkeeper";

/// What `--help` prints: the protocol's actions and the settings this program reads.
/// The man page (`regkeeper man`) has the same text.
pub const USAGE: &str = "\
Usage: docker-credential-regkeeper ACTION

A docker credential helper (Docker, Podman, skopeo, buildah, crane) that hands out the
registry logins stored in regkeeper. Clients run it themselves: name it in the client's
configuration, e.g. \"credHelpers\": {\"ghcr.io\": \"regkeeper\"} or
\"credsStore\": \"regkeeper\" in ~/.docker/config.json or the containers auth.json.

Actions (input on standard input):
  get       read a registry server URL, print {\"ServerURL\",\"Username\",\"Secret\"}
  store     read {\"ServerURL\",\"Username\",\"Secret\"} (after `docker login`) and save it in
            your personal workspace; only credentials it created itself are changed
  erase     read a registry server URL (`docker logout`) and delete the credential
            `store` created for it; credentials added with regkeeper are kept
            (store and erase refuse http:// server URLs: add plain-http registries
            with `regkeeper credentials add`)
  list      print {\"SERVER\": \"USERNAME\", ...} for your personal workspace
  version   print the version
  help      print this help

Settings (environment, else ~/.config/regkeeper/config.toml with url, token, ca_file):
  REGKEEPER_URL         the regkeeper server (default http://127.0.0.1:7070)
  REGKEEPER_TOKEN       an API token (or REGKEEPER_TOKEN_FILE, a file holding one)
  REGKEEPER_ROLE        instead of a token, for `get`: a role (rk:WORKSPACE:role/NAME) to
                        exchange the OIDC token in REGKEEPER_OIDC_TOKEN_FILE for; the
                        role's token is kept (0600) in ~/.cache/regkeeper/tokens until
                        shortly before it expires
  REGKEEPER_CA_FILE     a PEM bundle to trust for the server's certificate

A miss prints \"credentials not found in native keychain\" on standard output and exits 1;
any other failure is one line on standard error, exit status 1.
";

/// Enough for any server URL or login; a client never sends more.
const INPUT_LIMIT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// Printed on standard output, as clients look for exactly this text there.
    #[error("{CREDENTIALS_NOT_FOUND}")]
    NotFound,
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Regkeeper(String),
    #[error("cannot write to standard output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<ClientError> for HelperError {
    fn from(error: ClientError) -> Self {
        Self::Regkeeper(describe(&error))
    }
}

/// Runs one action and returns the exit status, printing as the protocol wants.
pub fn main(
    action: Option<&str>,
    environment: Environment<'_>,
    input: &mut dyn Read,
    output: &mut dyn Write,
    errors: &mut dyn Write,
    clock: &dyn Fn() -> SystemTime,
) -> u8 {
    match run(action, environment, input, output, clock) {
        Ok(()) => 0,
        Err(HelperError::NotFound) => {
            let _ = writeln!(output, "{CREDENTIALS_NOT_FOUND}");
            1
        }
        Err(error) => {
            let _ = writeln!(errors, "{PROGRAM}: {}", one_line(&error.to_string()));
            1
        }
    }
}

pub fn run(
    action: Option<&str>,
    environment: Environment<'_>,
    input: &mut dyn Read,
    output: &mut dyn Write,
    clock: &dyn Fn() -> SystemTime,
) -> Result<(), HelperError> {
    if matches!(action, Some("store" | "erase" | "list")) {
        if let Some(settings) = RoleSettings::from_environment(environment)? {
            return Err(HelperError::Usage(format!(
                "{} works on a person's personal workspace and needs their API token (REGKEEPER_TOKEN); REGKEEPER_ROLE ({}) serves `get` only",
                action.unwrap_or_default(),
                settings.role()
            )));
        }
    }
    match action {
        Some("get") => get(environment, input, output, clock),
        Some("store") => store(environment, input),
        Some("erase") => erase(environment, input),
        Some("list") => list(environment, output),
        Some("version" | "--version" | "-v") => {
            writeln!(output, "{PROGRAM} (regkeeper) {}", regkeeper_client::VERSION)?;
            Ok(())
        }
        Some("help" | "--help" | "-h") => {
            output.write_all(USAGE.as_bytes())?;
            Ok(())
        }
        Some(other) => Err(HelperError::Usage(format!(
            "unknown action `{}`: use get, store, erase, list or version (see {PROGRAM} --help)",
            echo(other)
        ))),
        None => Err(HelperError::Usage(
            "usage: docker-credential-regkeeper get|store|erase|list|version (the input comes on standard input)"
                .to_owned(),
        )),
    }
}

fn get(
    environment: Environment<'_>,
    input: &mut dyn Read,
    output: &mut dyn Write,
    clock: &dyn Fn() -> SystemTime,
) -> Result<(), HelperError> {
    let server_url = read_server_url(input)?;
    let request = wire::ResolveInput {
        registry: Some(server_url.clone()),
        ..wire::ResolveInput::default()
    };
    let resolve = |client: &Client| client.post::<_, wire::Resolved>("/api/v1/resolve", &request);
    let resolved = match federation::with_client(environment, clock, &resolve) {
        Ok(resolved) => resolved,
        Err(ClientError::Api { status: 404, .. }) => return Err(HelperError::NotFound),
        Err(error) if error.is_missing_token() => {
            return Err(HelperError::Regkeeper(format!(
                "{error}; or set REGKEEPER_ROLE and REGKEEPER_OIDC_TOKEN_FILE to exchange an OIDC token for a role's"
            )))
        }
        Err(error) => return Err(error.into()),
    };
    let credentials = HelperCredentials {
        server_url,
        username: resolved.username,
        secret: resolved.secret,
    };
    // Serialised into a buffer that is wiped, since it holds the secret.
    let text =
        Zeroizing::new(serde_json::to_string(&credentials).expect("helper credentials serialise"));
    writeln!(output, "{}", text.as_str())?;
    output.flush()?;
    Ok(())
}

/// What the helper marks the credentials it creates with, and requires of those it
/// changes or deletes (`wire::CredentialInput::origin`, `?origin=` on delete).
const HELPER_ORIGIN: &str = "helper";

/// Saves a login `docker login` (or `podman login`, `skopeo login`) has just made as a
/// `docker` credential in the caller's personal workspace: it updates the host's
/// credential without a path prefix if `store` itself created it, else creates one
/// named after the host, marked as the helper's (origin `helper`).
///
/// A credential for that host that a person added (`regkeeper credentials add`, the
/// API, the console) is never touched: a login on a laptop must not replace a curated
/// user name and password, nor reset its verification. `store` then fails with one line
/// naming the credential and the command that changes it. The server checks the origin
/// again on the update itself (409 `origin_mismatch`), so a credential added between
/// the look-up and the update is safe too.
///
/// It is stored without verification (`verify: false`, shown as `skipped`): the client
/// calls `store` only after its own login to the registry succeeded, from where the
/// pulls will run, whereas the regkeeper server may be unable to reach that registry at
/// all (its outbound policy refuses private addresses unless allowed) and would only
/// double the login's latency. `regkeeper credentials verify` checks it from the server.
fn store(environment: Environment<'_>, input: &mut dyn Read) -> Result<(), HelperError> {
    let bytes = read_input(input)?;
    let credentials: HelperCredentials = serde_json::from_slice(&bytes).map_err(|error| {
        HelperError::Input(format!(
            "store expects {{\"ServerURL\",\"Username\",\"Secret\"}} as JSON on standard input, but {}",
            json_problem(&error)
        ))
    })?;
    if credentials.username == IDENTITY_TOKEN_USERNAME {
        return Err(HelperError::Input(
            "identity tokens (user name <token>) cannot be stored as a docker credential: log in with a user name and password or token, or add the credential with `regkeeper credentials add`"
                .to_owned(),
        ));
    }
    if credentials.secret.is_empty() {
        return Err(HelperError::Input(
            "store was given an empty Secret".to_owned(),
        ));
    }
    let HelperCredentials {
        server_url,
        username,
        secret,
    } = credentials;
    let server = ServerAddress::parse(&server_url)?;
    refuse_plain_http(&server, "store")?;
    let client = Client::from_environment(environment)?;
    let workspace = personal_workspace(&client)?;
    let path = credentials_path(&workspace);
    let existing = credential_for_host(&client, &workspace, &server.host)?;
    let update = wire::CredentialInput {
        username: Some(username),
        password: Some(secret),
        verify: Some(false),
        origin: Some(HELPER_ORIGIN.to_owned()),
        ..wire::CredentialInput::default()
    };
    match existing {
        Some(credential) if credential.origin != HELPER_ORIGIN => Err(not_the_helpers(
            &credential,
            &workspace,
            &server.host,
            "update",
        )),
        Some(credential) => {
            let changed = client.patch::<_, wire::Credential>(
                &format!("{path}/{}", segment(&credential.name)),
                &update,
            );
            refused_by_origin(changed, &credential, &workspace, &server.host, "update")?;
            Ok(())
        }
        None => {
            let name = credential_name(&server.host);
            let create = wire::CredentialInput {
                name: Some(name.clone()),
                registry: Some(server.without_path.clone()),
                kind: Some("docker".to_owned()),
                ..update
            };
            match client.post::<_, wire::Credential>(&path, &create) {
                Ok(_) => Ok(()),
                Err(ClientError::Api { status: 409, .. }) => Err(HelperError::Regkeeper(format!(
                    "a credential named {name} already exists in {workspace} for another registry or path prefix; rename it, or add this login with `regkeeper credentials add`"
                ))),
                Err(error) => Err(error.into()),
            }
        }
    }
}

/// Deletes what `store` created for a host: its credential without a path prefix, if
/// the helper made it. One a person added is left alone, with one line saying how to
/// delete it deliberately (a `docker logout` must not remove a curated credential or an
/// ECR role).
fn erase(environment: Environment<'_>, input: &mut dyn Read) -> Result<(), HelperError> {
    let server_url = read_server_url(input)?;
    let server = ServerAddress::parse(&server_url)?;
    refuse_plain_http(&server, "erase")?;
    let client = Client::from_environment(environment)?;
    let workspace = personal_workspace(&client)?;
    match credential_for_host(&client, &workspace, &server.host)? {
        None => Err(HelperError::NotFound),
        Some(credential) if credential.origin != HELPER_ORIGIN => Err(not_the_helpers(
            &credential,
            &workspace,
            &server.host,
            "delete",
        )),
        Some(credential) => {
            let deleted = client.delete(&format!(
                "{}/{}?origin={HELPER_ORIGIN}",
                credentials_path(&workspace),
                segment(&credential.name)
            ));
            refused_by_origin(deleted, &credential, &workspace, &server.host, "delete")
        }
    }
}

/// Why `store` or `erase` leaves a credential alone, and the command that would change
/// it (`update` or `delete`) on purpose.
fn not_the_helpers(
    credential: &wire::Credential,
    workspace: &str,
    host: &str,
    command: &str,
) -> HelperError {
    let how = if command == "update" {
        format!(
            "regkeeper credentials update {} --password-stdin",
            credential.name
        )
    } else {
        format!("regkeeper credentials delete {}", credential.name)
    };
    HelperError::Regkeeper(format!(
        "credential {workspace}/{} serves {host} but was added with regkeeper, not by a docker login, so the credential helper leaves it unchanged; to {command} it, run `{how}`",
        credential.name
    ))
}

/// The server's own origin check (409 `origin_mismatch`) as the same line.
fn refused_by_origin<T>(
    result: Result<T, ClientError>,
    credential: &wire::Credential,
    workspace: &str,
    host: &str,
    command: &str,
) -> Result<T, HelperError> {
    match result {
        Err(error) if error.code() == Some("origin_mismatch") => {
            Err(not_the_helpers(credential, workspace, host, command))
        }
        other => other.map_err(HelperError::from),
    }
}

/// Every registry host the personal workspace has a credential for, with its user name
/// (the one without a path prefix when there are several).
fn list(environment: Environment<'_>, output: &mut dyn Write) -> Result<(), HelperError> {
    let client = Client::from_environment(environment)?;
    let workspace = personal_workspace(&client)?;
    let listed: wire::CredentialList = client.get(&credentials_path(&workspace))?;
    let mut servers = BTreeMap::new();
    let mut credentials = listed.credentials;
    // Those with a path prefix first, so the host-wide one overwrites them.
    credentials.sort_by_key(|credential| credential.path_prefix.is_empty());
    for credential in credentials {
        servers.insert(credential.registry, credential.username.unwrap_or_default());
    }
    serde_json::to_writer(&mut *output, &servers).map_err(std::io::Error::from)?;
    writeln!(output)?;
    Ok(())
}

fn personal_workspace(client: &Client) -> Result<String, HelperError> {
    Ok(client.get::<wire::Me>("/api/v1/me")?.personal_workspace)
}

fn credentials_path(workspace: &str) -> String {
    format!("/api/v1/workspaces/{}/credentials", segment(workspace))
}

/// The workspace's credential for `host` without a path prefix, if any (see
/// [`pick_for_host`]).
fn credential_for_host(
    client: &Client,
    workspace: &str,
    host: &str,
) -> Result<Option<wire::Credential>, HelperError> {
    let listed: wire::CredentialList = client.get(&credentials_path(workspace))?;
    Ok(pick_for_host(listed.credentials, host))
}

/// Of `credentials`, the one without a path prefix for `host` that `store` and `erase`
/// act on: the helper's own if there is one, whatever the list order (a curated
/// credential for the same host must not hide it), else any other, which they then
/// refuse to touch.
fn pick_for_host(credentials: Vec<wire::Credential>, host: &str) -> Option<wire::Credential> {
    let mut serving = credentials.into_iter().filter(|credential| {
        credential.path_prefix.is_empty()
            && ServerAddress::parse(&credential.registry).is_ok_and(|stored| stored.host == host)
    });
    let first = serving.next()?;
    if first.origin == HELPER_ORIGIN {
        return Some(first);
    }
    Some(
        serving
            .find(|credential| credential.origin == HELPER_ORIGIN)
            .unwrap_or(first),
    )
}

fn read_input(input: &mut dyn Read) -> Result<Zeroizing<Vec<u8>>, HelperError> {
    let mut bytes = Zeroizing::new(Vec::new());
    input
        .take(INPUT_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|error| HelperError::Input(format!("cannot read standard input: {error}")))?;
    Ok(bytes)
}

fn read_server_url(input: &mut dyn Read) -> Result<String, HelperError> {
    let bytes = read_input(input)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| HelperError::Input("the server URL on standard input is not UTF-8".into()))?
        .trim();
    if text.is_empty() {
        return Err(HelperError::Input(
            "expected a registry server URL on standard input".into(),
        ));
    }
    Ok(text.to_owned())
}

/// A registry server URL as a docker client names it, reduced to what identifies the
/// registry. Helpers are per registry host, so a path is dropped.
#[derive(Debug, PartialEq, Eq)]
struct ServerAddress {
    /// Canonical `host[:port]`, for comparing with what regkeeper stored: lower case,
    /// default ports dropped, Docker Hub's host names as `docker.io`. This repeats the
    /// server's normalisation (`domain::registry::normalize`) only to find an existing
    /// credential; what is created is normalised by the server.
    host: String,
    /// The server as given, scheme kept (it decides the default port), path dropped.
    without_path: String,
    /// Given as `http://`: a plain-http registry, which `store` and `erase` leave to
    /// `regkeeper credentials add` (see [`refuse_plain_http`]).
    plain_http: bool,
}

const DOCKER_HUB_HOSTS: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

impl ServerAddress {
    fn parse(server_url: &str) -> Result<Self, HelperError> {
        let trimmed = server_url.trim();
        let lower = trimmed.to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("https://") {
            ("https://", &trimmed[8..])
        } else if lower.starts_with("http://") {
            ("http://", &trimmed[7..])
        } else {
            ("", trimmed)
        };
        let authority = rest.split('/').next().unwrap_or_default();
        // Never echoed: a URL with user info or a query may carry a secret.
        if authority.is_empty() || authority.contains(['@', '?', '#']) || rest.contains(['?', '#'])
        {
            return Err(HelperError::Input(
                "the server URL has no registry host, or has user info or a query: expected host[:port], optionally with https://".into(),
            ));
        }
        let authority_lower = authority.to_ascii_lowercase();
        let (name, port) = match authority_lower.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name, Some(port)),
            _ => (authority_lower.as_str(), None),
        };
        let default_port = match scheme {
            "http://" => port == Some("80") || port == Some("443"),
            _ => port == Some("443"),
        };
        let host = match port {
            Some(port) if !default_port => format!("{name}:{port}"),
            _ if DOCKER_HUB_HOSTS.contains(&name) => "docker.io".to_owned(),
            _ => name.to_owned(),
        };
        Ok(Self {
            host,
            without_path: format!("{scheme}{authority}"),
            plain_http: scheme == "http://",
        })
    }
}

/// `store` and `erase` never act on a plain-http server URL. Their credential is found
/// by host alone, so `http://HOST` would otherwise overwrite or delete the credential
/// meant for HOST over TLS; and whether a host may get credentials over plain http at
/// all is the operator's server setting (`REGKEEPER_OUTBOUND_HTTP_REGISTRIES`, which
/// `get` is answered by), which this program cannot read. One line says how to add it.
fn refuse_plain_http(server: &ServerAddress, action: &str) -> Result<(), HelperError> {
    if !server.plain_http {
        return Ok(());
    }
    Err(HelperError::Input(format!(
        "{action} does not handle plain-http server URLs (http://{}): add a credential for a plain-http registry with `regkeeper credentials add --registry {}`; the server hands it out over plain http only if its operator lists the registry in REGKEEPER_OUTBOUND_HTTP_REGISTRIES",
        server.host, server.host
    )))
}

/// A credential name (`[A-Za-z0-9_-]{1,100}`) made from a host: every other character
/// becomes `-`, runs of them one, e.g. `127.0.0.1:5000` → `127-0-0-1-5000`.
fn credential_name(host: &str) -> String {
    let mut name = String::new();
    for character in host.chars() {
        if character.is_ascii_alphanumeric() || character == '_' {
            name.push(character);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    let name: String = name.chars().take(100).collect();
    if name.is_empty() {
        "registry".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' clock: a fixed instant (2027-01-15), never the system's.
    fn fixed_now() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)
    }

    fn run_action(action: Option<&str>, input: &str) -> (u8, String, String) {
        let environment = |name: &str| match name {
            // Nothing listens on port 1, so an action that reaches the network fails.
            "REGKEEPER_URL" => Some("http://127.0.0.1:1".to_owned()),
            "REGKEEPER_TOKEN" => Some("rk_unit_test".to_owned()),
            _ => None,
        };
        let mut output = Vec::new();
        let mut errors = Vec::new();
        let status = main(
            action,
            &environment,
            &mut input.as_bytes(),
            &mut output,
            &mut errors,
            &fixed_now,
        );
        (
            status,
            String::from_utf8(output).unwrap(),
            String::from_utf8(errors).unwrap(),
        )
    }

    #[test]
    fn server_urls_reduce_to_the_host_regkeeper_stores() {
        for (given, host, without_path) in [
            (
                "https://index.docker.io/v1/",
                "docker.io",
                "https://index.docker.io",
            ),
            ("registry-1.docker.io", "docker.io", "registry-1.docker.io"),
            ("127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"),
            (
                "https://Registry.Example.com:443/team",
                "registry.example.com",
                "https://Registry.Example.com:443",
            ),
            (
                "http://plain.example:80",
                "plain.example",
                "http://plain.example:80",
            ),
            ("[::1]:5000", "[::1]:5000", "[::1]:5000"),
            ("ghcr.io\n", "ghcr.io", "ghcr.io"),
        ] {
            let address = ServerAddress::parse(given).unwrap();
            assert_eq!(address.host, host, "{given}");
            assert_eq!(address.without_path, without_path, "{given}");
        }
        for refused in ["", "https://", "user:pw@host", "host/path?token=x"] {
            let error = ServerAddress::parse(refused).unwrap_err().to_string();
            assert!(
                !error.contains("pw") && !error.contains("token=x"),
                "{error}"
            );
        }
    }

    #[test]
    fn credential_names_fit_the_name_rule() {
        assert_eq!(credential_name("127.0.0.1:5000"), "127-0-0-1-5000");
        assert_eq!(credential_name("docker.io"), "docker-io");
        assert_eq!(credential_name("[::1]:5000"), "1-5000");
        assert_eq!(credential_name("::"), "registry");
        let long = credential_name(&format!("{}.example.com", "a".repeat(150)));
        assert_eq!(long.len(), 100);
        for name in [long, credential_name("x_y.z-1")] {
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        }
    }

    #[test]
    fn version_needs_no_server() {
        let (status, output, errors) = run_action(Some("version"), "");
        assert_eq!(status, 0, "{errors}");
        assert!(output.starts_with("docker-credential-regkeeper (regkeeper) "));
    }

    /// Issue 12 item 15: `--help`, `-h` and `help` print the usage on stdout and exit 0
    /// without needing a server (they answered "unknown action").
    #[test]
    fn help_prints_the_usage_on_stdout() {
        for action in ["--help", "-h", "help"] {
            let (status, output, errors) = run_action(Some(action), "");
            assert_eq!((status, errors.as_str()), (0, ""), "{action}");
            assert!(
                output.starts_with("Usage: docker-credential-regkeeper ACTION"),
                "{output}"
            );
            for word in ["get", "store", "erase", "list", "REGKEEPER_TOKEN"] {
                assert!(output.contains(word), "{action}: {word}");
            }
        }
    }

    /// Issue 12 item 15: with no token configured anywhere, every action that needs the
    /// server fails at once with one line naming the settings, before any connection
    /// (the URL here would otherwise give "cannot reach regkeeper").
    #[test]
    fn no_token_fails_before_reaching_the_server() {
        let environment = |name: &str| match name {
            "REGKEEPER_URL" => Some("http://127.0.0.1:1".to_owned()),
            _ => None,
        };
        for (action, input) in [
            ("get", "ghcr.io"),
            (
                "store",
                r#"{"ServerURL":"ghcr.io","Username":"u","Secret":"s3cret-canary"}"#,
            ),
            ("erase", "ghcr.io"),
            ("list", ""),
        ] {
            let mut output = Vec::new();
            let mut errors = Vec::new();
            let status = main(
                Some(action),
                &environment,
                &mut input.as_bytes(),
                &mut output,
                &mut errors,
                &fixed_now,
            );
            let errors = String::from_utf8(errors).unwrap();
            assert_eq!(status, 1, "{action}");
            assert!(output.is_empty(), "{action}");
            assert_eq!(errors.lines().count(), 1, "{errors}");
            assert!(errors.contains("no API token"), "{action}: {errors}");
            assert!(errors.contains("REGKEEPER_TOKEN_FILE"), "{errors}");
            assert!(!errors.contains("cannot reach"), "{errors}");
            assert!(!errors.contains("s3cret-canary"), "{errors}");
        }
    }

    #[test]
    fn unknown_actions_and_bad_input_fail_on_stderr() {
        let (status, output, errors) = run_action(Some("frobnicate"), "");
        assert_eq!((status, output.as_str()), (1, ""));
        assert!(errors.contains("unknown action `frobnicate`"), "{errors}");
        let (status, _, errors) = run_action(None, "");
        assert_eq!(status, 1);
        assert!(errors.contains("usage"), "{errors}");
        let (status, _, errors) = run_action(Some("get"), "  \n");
        assert_eq!(status, 1);
        assert!(errors.contains("server URL"), "{errors}");
    }

    #[test]
    fn store_never_echoes_the_secret() {
        let (status, output, errors) = run_action(
            Some("store"),
            r#"{"ServerURL":"127.0.0.1:5000","Username":"robot","Secret":"store-canary-5521"}"#,
        );
        assert_eq!(status, 1);
        assert!(output.is_empty(), "{output}");
        assert!(errors.contains("cannot reach regkeeper"), "{errors}");
        assert!(!errors.contains("store-canary-5521"));
        assert_eq!(errors.lines().count(), 1, "{errors}");
        let (_, _, errors) = run_action(Some("store"), r#""store-canary-5521""#);
        assert!(errors.contains("JSON"), "{errors}");
        assert!(!errors.contains("store-canary-5521"), "{errors}");
        let (_, _, errors) = run_action(
            Some("store"),
            r#"{"ServerURL":"ghcr.io","Username":"<token>","Secret":"store-canary-5521"}"#,
        );
        assert!(errors.contains("identity tokens"), "{errors}");
    }

    fn listed(name: &str, registry: &str, path_prefix: &str, origin: &str) -> wire::Credential {
        serde_json::from_value(serde_json::json!({
            "id": format!("id-{name}"), "name": name, "workspace": "~u", "type": "docker",
            "authMethod": "password", "registry": registry, "pathPrefix": path_prefix,
            "hasSecret": true, "secretVersion": 1,
            "verification": {"status": "skipped"},
            "createdAt": "", "updatedAt": "", "createdBy": "u", "origin": origin,
        }))
        .unwrap()
    }

    /// Issue 12 item 1: with a curated and a helper-made credential both serving a
    /// host, `store` and `erase` act on the helper's own whatever the list order; the
    /// curated one alone is found (and then refused) only when the helper has none.
    #[test]
    fn the_helpers_own_credential_is_preferred_for_a_host() {
        let curated = listed("curated", "registry.example.com", "", "user");
        let prefixed = listed("team", "registry.example.com", "team", HELPER_ORIGIN);
        let own = listed(
            "registry-example-com",
            "https://registry.example.com:443",
            "",
            HELPER_ORIGIN,
        );
        let other = listed("ghcr", "ghcr.io", "", HELPER_ORIGIN);
        for order in [
            vec![
                curated.clone(),
                prefixed.clone(),
                own.clone(),
                other.clone(),
            ],
            vec![own.clone(), curated.clone(), other.clone()],
            vec![
                other.clone(),
                prefixed.clone(),
                curated.clone(),
                own.clone(),
            ],
        ] {
            let picked = pick_for_host(order, "registry.example.com").unwrap();
            assert_eq!(picked.name, "registry-example-com");
        }
        let picked = pick_for_host(
            vec![prefixed.clone(), curated.clone(), other.clone()],
            "registry.example.com",
        )
        .unwrap();
        assert_eq!(picked.name, "curated");
        assert!(pick_for_host(vec![prefixed, other], "registry.example.com").is_none());
    }

    /// Issue 12 item 5, the helper's side: `store` and `erase` with an `http://` server
    /// URL refuse in one line, before reaching the server (they would have acted on the
    /// host's TLS credential), and say how to add a plain-http registry.
    #[test]
    fn store_and_erase_refuse_plain_http_server_urls() {
        for (action, input) in [
            (
                "store",
                r#"{"ServerURL":"http://registry.example.com","Username":"u","Secret":"plain-canary"}"#,
            ),
            ("erase", "http://registry.example.com:80"),
            ("erase", "HTTP://registry.example.com:5000/"),
        ] {
            let (status, output, errors) = run_action(Some(action), input);
            assert_eq!((status, output.as_str()), (1, ""), "{action} {input}");
            assert_eq!(errors.lines().count(), 1, "{errors}");
            assert!(errors.contains("plain-http"), "{errors}");
            assert!(errors.contains("regkeeper credentials add"), "{errors}");
            assert!(!errors.contains("cannot reach"), "{errors}");
            assert!(!errors.contains("plain-canary"), "{errors}");
        }
        // https:// and no scheme still go on to the server (unreachable here).
        let (_, _, errors) = run_action(Some("erase"), "https://registry.example.com");
        assert!(errors.contains("cannot reach"), "{errors}");
    }

    #[test]
    fn an_unreachable_server_is_an_error_not_a_miss() {
        let (status, output, errors) = run_action(Some("get"), "ghcr.io");
        assert_eq!(status, 1);
        assert!(output.is_empty(), "not found is only for a 404: {output}");
        assert!(errors.contains("REGKEEPER_URL"), "{errors}");
    }
}
