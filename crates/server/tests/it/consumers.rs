//! The node-side consumers end to end with real parts: `docker-credential-regkeeper`
//! driven by skopeo against distribution with htpasswd over TLS (get, store through
//! `skopeo login`, erase through `skopeo logout`, list), and the kubelet provider — the
//! standalone binary and `regkeeper kubelet-credential-provider` — against a real
//! server, with an ECR credential minted through moto so the login expires.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use regkeeper_wire as wire;
use regkeeper_wire::docker_helper::{HelperCredentials, CREDENTIALS_NOT_FOUND};
use regkeeper_wire::kubelet::{CacheKeyType, CredentialProviderResponse, API_VERSION};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::peers::moto::{self, Moto};
use super::peers::registry::{Registry, SkopeoAuth, SKOPEO_BINARY};
use super::registry_logins::moto_ecr_login;
use super::support::{
    add, add_login, ok, run_cli, server_for, stderr, stdout, TestServer, ADMIN_TOKEN,
};

mod trust;

const HELPER: &str = "docker-credential-regkeeper";
const PROVIDER: &str = "regkeeper-kubelet-credential-provider";
const ROBOT: &str = "robot";
const ROBOT_PASSWORD: &str = "robot-consumer-canary-5f1e";

/// A binary of the workspace built next to `regkeeper`.
pub(super) fn sibling(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_regkeeper")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build the whole workspace (`cargo nextest run --workspace` or `cargo build --workspace`) so the consumers crate's binaries sit next to regkeeper",
        path.display()
    );
    path
}

/// A server that may reach the loopback registry and trusts its test CA.
/// Runs `program` with only PATH, a throwaway HOME and `environment`, feeding `stdin`.
pub(super) fn run(
    program: &Path,
    args: &[&str],
    stdin: &str,
    environment: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in environment {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("program starts");
    let mut input = child.stdin.take().expect("stdin piped");
    // A program that fails before reading its input (no token) may have exited.
    if let Err(error) = input.write_all(stdin.as_bytes()) {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write stdin: {error}"
        );
    }
    drop(input);
    child.wait_with_output().expect("program finishes")
}

pub(super) fn helper(server: &TestServer, token: &str, action: &str, stdin: &str) -> Output {
    run(
        &sibling(HELPER),
        &[action],
        stdin,
        &[("REGKEEPER_URL", &server.url), ("REGKEEPER_TOKEN", token)],
    )
}

/// Asserts the helper's exact "not found" answer.
#[track_caller]
fn assert_not_found(output: &Output) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert_eq!(stdout(output), format!("{CREDENTIALS_NOT_FOUND}\n"));
    assert_eq!(stderr(output), "", "nothing on stderr for a miss");
}

/// A registry client (skopeo, podman) configured with nothing but the helper; both
/// take the same login and logout flags, so those are written once here.
trait HelperClient {
    fn registry(&self) -> &Registry;
    fn auth_file(&self) -> &Path;
    /// Runs the client with `args`, writing `stdin` to it.
    fn run(&self, args: &[String], stdin: &str) -> Output;

    fn login(&self, username: &str, password: &str) -> Output {
        self.run(
            &[
                "login".to_owned(),
                format!("--authfile={}", self.auth_file().display()),
                format!("--cert-dir={}", self.registry().ca().cert_dir().display()),
                format!("--username={username}"),
                "--password-stdin".to_owned(),
                self.registry().host_port().to_owned(),
            ],
            &format!("{password}\n"),
        )
    }

    fn logout(&self) -> Output {
        self.run(
            &[
                "logout".to_owned(),
                format!("--authfile={}", self.auth_file().display()),
                self.registry().host_port().to_owned(),
            ],
            "",
        )
    }
}

/// A temporary home with an auth file that names the helper (`credHelpers`) for
/// `registry` and nothing else.
fn helper_home(registry: &Registry) -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().expect("temporary directory");
    let auth_file = home.path().join("auth.json");
    let auth = serde_json::json!({"credHelpers": {registry.host_port(): "regkeeper"}});
    std::fs::write(&auth_file, auth.to_string()).expect("write auth file");
    (home, auth_file)
}

/// PATH with the helper's directory first, so the client finds the helper just built.
fn path_with_helper() -> String {
    let helper_directory = sibling(HELPER).parent().unwrap().to_owned();
    format!(
        "{}:{}",
        helper_directory.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `command` with `stdin` written to it and its output captured.
fn run_with_stdin(command: &mut Command, stdin: &str, program: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    let mut input = child.stdin.take().expect("stdin piped");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("{program} finishes: {error}"))
}

/// skopeo configured with nothing but the helper: an auth file naming it for the
/// registry, the helper's directory on PATH, and regkeeper's URL and token.
struct HelperSkopeo<'a> {
    registry: &'a Registry,
    url: String,
    token: String,
    home: tempfile::TempDir,
    auth_file: PathBuf,
}

impl<'a> HelperSkopeo<'a> {
    fn new(registry: &'a Registry, server: &TestServer, token: &str) -> Self {
        let (home, auth_file) = helper_home(registry);
        Self {
            registry,
            url: server.url.clone(),
            token: token.to_owned(),
            home,
            auth_file,
        }
    }

    fn pull(&self, reference: &str) -> Output {
        let target = self.home.path().join("layout");
        let _ = std::fs::remove_dir_all(&target);
        self.run(
            &[
                "copy".to_owned(),
                format!("--src-authfile={}", self.auth_file.display()),
                format!("--src-cert-dir={}", self.registry.ca().cert_dir().display()),
                format!("docker://{}", self.registry.image(reference)),
                format!("oci:{}:pulled", target.display()),
            ],
            "",
        )
    }
}

impl HelperClient for HelperSkopeo<'_> {
    fn registry(&self) -> &Registry {
        self.registry
    }

    fn auth_file(&self) -> &Path {
        &self.auth_file
    }

    fn run(&self, args: &[String], stdin: &str) -> Output {
        let mut command = Command::new(SKOPEO_BINARY);
        command
            .arg("--insecure-policy")
            .args(args)
            .env_clear()
            .env("PATH", path_with_helper())
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.home.path())
            .env("REGKEEPER_URL", &self.url)
            .env("REGKEEPER_TOKEN", &self.token);
        run_with_stdin(&mut command, stdin, "skopeo")
    }
}

#[track_caller]
fn assert_success(output: &Output, what: &str, registry: &Registry) {
    assert!(
        output.status.success(),
        "{what} failed: {}\nregistry log:\n{}",
        stderr(output),
        registry.log()
    );
}

fn credentials(server: &TestServer) -> Vec<wire::Credential> {
    serde_json::from_str::<wire::CredentialList>(&ok(&server.cli(
        ADMIN_TOKEN,
        &["credentials", "list", "--output", "json"],
        None,
    )))
    .unwrap()
    .credentials
}

#[test]
fn skopeo_pulls_with_only_the_docker_helper_configured() {
    let Some(registry) = Registry::htpasswd(&[(ROBOT, ROBOT_PASSWORD)]) else {
        return;
    };
    registry.push_test_image("team/app", "1", ROBOT, ROBOT_PASSWORD);
    let host = registry.host_port().to_owned();
    let server = server_for(&registry, &[]);
    let skopeo = HelperSkopeo::new(&registry, &server, ADMIN_TOKEN);

    // Nothing stored yet: the helper has nothing, so skopeo goes anonymous and is refused.
    assert_not_found(&helper(&server, ADMIN_TOKEN, "get", &host));
    let refused = skopeo.pull("team/app:1");
    assert!(!refused.status.success(), "an anonymous pull succeeded");
    let message = stderr(&refused);
    assert!(
        message.contains("unauthorized")
            || message.contains("authentication required")
            || message.contains("401"),
        "{message}"
    );

    ok(&add_login(&server, ["local", &host, ROBOT], ROBOT_PASSWORD));
    for server_url in [host.clone(), format!("https://{host}/")] {
        let got = helper(&server, ADMIN_TOKEN, "get", &format!("{server_url}\n"));
        let credentials: HelperCredentials = serde_json::from_str(&ok(&got)).unwrap();
        assert_eq!(credentials.server_url, server_url);
        assert_eq!(credentials.username, ROBOT);
        assert_eq!(credentials.secret.expose(), ROBOT_PASSWORD);
    }
    assert_success(
        &skopeo.pull("team/app:1"),
        "pull through the helper",
        &registry,
    );

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&helper(&server, ADMIN_TOKEN, "list", ""))).unwrap();
    assert_eq!(listed, serde_json::json!({ host.clone(): ROBOT }));
    let version = ok(&helper(&server, ADMIN_TOKEN, "version", ""));
    assert!(version.starts_with(HELPER), "{version}");

    // `erase` leaves a credential added with regkeeper alone (issue 12 item 1), on
    // stderr with the command that deletes it; `store`'s own are erased (see below).
    let erase = helper(&server, ADMIN_TOKEN, "erase", &host);
    assert_eq!(erase.status.code(), Some(1), "{}", stderr(&erase));
    assert_eq!(stdout(&erase), "");
    assert!(
        stderr(&erase).contains("`regkeeper credentials delete local`"),
        "{}",
        stderr(&erase)
    );
    assert_eq!(credentials(&server).len(), 1);
    ok(&server.cli(ADMIN_TOKEN, &["credentials", "delete", "local"], None));
    assert_not_found(&helper(&server, ADMIN_TOKEN, "erase", &host));
    assert!(!server.log().contains(ROBOT_PASSWORD));
}

#[test]
fn skopeo_login_stores_through_the_helper_and_logout_erases() {
    let Some(registry) =
        Registry::htpasswd(&[(ROBOT, ROBOT_PASSWORD), ("deployer", "deployer-pw")])
    else {
        return;
    };
    registry.push_test_image("team/app", "1", ROBOT, ROBOT_PASSWORD);
    let host = registry.host_port().to_owned();
    let server = server_for(&registry, &[]);
    let skopeo = HelperSkopeo::new(&registry, &server, ADMIN_TOKEN);

    let auth_file_before = std::fs::read_to_string(&skopeo.auth_file).unwrap();
    let login = skopeo.login(ROBOT, ROBOT_PASSWORD);
    assert_success(&login, "skopeo login", &registry);
    assert!(!stderr(&login).contains(ROBOT_PASSWORD));
    assert_eq!(
        std::fs::read_to_string(&skopeo.auth_file).unwrap(),
        auth_file_before,
        "the login went to the helper, not into the auth file"
    );
    let stored = credentials(&server);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let credential = &stored[0];
    assert_eq!(credential.name, host.replace(['.', ':'], "-"));
    assert_eq!(
        (
            credential.kind.as_str(),
            credential.registry.as_str(),
            credential.username.as_deref(),
            credential.verification.status.as_str(),
        ),
        ("docker", host.as_str(), Some(ROBOT), "skipped")
    );
    assert_eq!(credential.origin, "helper");
    assert_success(&skopeo.pull("team/app:1"), "pull after login", &registry);

    // Logging in again updates the same credential rather than adding another.
    assert_success(
        &skopeo.login("deployer", "deployer-pw"),
        "second login",
        &registry,
    );
    let stored = credentials(&server);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].username.as_deref(), Some("deployer"));
    assert_eq!(stored[0].secret_version, credential.secret_version + 1);
    assert_success(&skopeo.pull("team/app:1"), "pull as deployer", &registry);

    assert_success(&skopeo.logout(), "skopeo logout", &registry);
    assert!(credentials(&server).is_empty());
    let listed = ok(&helper(&server, ADMIN_TOKEN, "list", ""));
    assert_eq!(listed.trim(), "{}");
    assert!(!server.log().contains(ROBOT_PASSWORD));
}

#[test]
fn the_helper_tells_a_miss_from_a_failure() {
    let server = TestServer::start();
    assert_not_found(&helper(&server, ADMIN_TOKEN, "get", "registry.example.com"));
    assert_not_found(&helper(
        &server,
        ADMIN_TOKEN,
        "get",
        "https://index.docker.io/v1/",
    ));

    // A bad token or an unreachable server is an error on stderr, never a miss, and
    // the token is not repeated.
    let canary = "rk_consumer_canary_token_0000000000";
    let refused = helper(&server, canary, "get", "registry.example.com");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(stdout(&refused), "");
    let message = stderr(&refused);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("REGKEEPER_TOKEN"), "{message}");
    assert!(!message.contains(canary), "{message}");

    let unreachable = run(
        &sibling(HELPER),
        &["get"],
        "registry.example.com",
        &[
            ("REGKEEPER_URL", "http://127.0.0.1:1"),
            ("REGKEEPER_TOKEN", ADMIN_TOKEN),
        ],
    );
    assert_eq!(unreachable.status.code(), Some(1));
    assert_eq!(stdout(&unreachable), "");
    assert!(stderr(&unreachable).contains("REGKEEPER_URL"));

    // The token may come from a file, as on a node with a mounted secret.
    let directory = tempfile::tempdir().unwrap();
    let token_file = directory.path().join("token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    assert_not_found(&run(
        &sibling(HELPER),
        &["get"],
        "registry.example.com",
        &[
            ("REGKEEPER_URL", &server.url),
            ("REGKEEPER_TOKEN_FILE", &token_file.display().to_string()),
        ],
    ));
}

/// Seconds in a Go duration as the provider prints it (`7h59m30s`, `5m0s`, `0s`).
fn go_duration_seconds(text: &str) -> i64 {
    let mut total = 0;
    let mut number = String::new();
    for character in text.chars() {
        match character {
            '0'..='9' => number.push(character),
            'h' | 'm' | 's' => {
                let value: i64 = number.parse().expect("a number before each unit");
                number.clear();
                total += value
                    * match character {
                        'h' => 3600,
                        'm' => 60,
                        _ => 1,
                    };
            }
            other => panic!("unexpected {other:?} in duration {text}"),
        }
    }
    assert!(number.is_empty(), "duration {text} ends without a unit");
    total
}

pub(super) fn kubelet_request(image: &str) -> String {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": image,
    })
    .to_string()
}

/// Both forms of the provider, answering the same request.
pub(super) fn providers(server: &TestServer, request: &str) -> Vec<(&'static str, Output)> {
    vec![
        (
            PROVIDER,
            run(
                &sibling(PROVIDER),
                &[],
                request,
                &[
                    ("REGKEEPER_URL", &server.url),
                    ("REGKEEPER_TOKEN", ADMIN_TOKEN),
                ],
            ),
        ),
        (
            "regkeeper kubelet-credential-provider",
            run_cli(
                &server.url,
                ADMIN_TOKEN,
                &["kubelet-credential-provider"],
                Some(request),
                &[],
            ),
        ),
    ]
}

fn parse_response(name: &str, output: &Output) -> CredentialProviderResponse {
    let text = ok(output);
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON response");
    assert_eq!(value["apiVersion"], API_VERSION, "{name}");
    assert_eq!(value["kind"], "CredentialProviderResponse", "{name}");
    serde_json::from_value(value).expect("a v1 CredentialProviderResponse")
}

#[test]
fn kubelet_provider_hands_out_an_ecr_login_for_no_longer_than_it_is_safe() {
    let Some(moto) = Moto::start() else { return };
    let (user, token) = moto_ecr_login(&moto);
    let Some(registry) = Registry::htpasswd(&[(user.as_str(), token.as_str())]) else {
        return;
    };
    registry.push_test_image("team/app", "1", &user, &token);
    let host = registry.host_port().to_owned();
    let server = server_for(&registry, &[("AWS_ENDPOINT_URL", moto.endpoint_url())]);
    ok(&moto::add_ecr_login(&server, "ecr", &host, &[]));
    // The same registry login, stored as a password for one path prefix.
    ok(&add(
        &server,
        &[
            "--name",
            "team-tools",
            "--registry",
            &host,
            "--path-prefix",
            "team/tools",
            "--username",
            &user,
        ],
        &token,
    ));

    let image = format!("{host}/team/app");
    let resolved = super::support::resolve(&server, &format!("{image}:1"));
    let limit = [&resolved.safe_until, &resolved.expires_at]
        .into_iter()
        .flatten()
        .map(|at| OffsetDateTime::parse(at, &Rfc3339).expect("RFC 3339"))
        .min()
        .expect("an ECR login has an expiry");
    let started = OffsetDateTime::now_utc();
    for (name, output) in providers(&server, &kubelet_request(&image)) {
        let response = parse_response(name, &output);
        assert_eq!(response.cache_key_type, CacheKeyType::Image, "{name}");
        let seconds = go_duration_seconds(response.cache_duration.as_deref().unwrap());
        let safe = (limit - started).whole_seconds();
        assert!(
            seconds > 0 && seconds <= safe,
            "{name}: cacheDuration {seconds}s, but the login is safe for {safe}s"
        );
        assert!(seconds >= safe - 120, "{name}: {seconds}s of {safe}s");
        let auth = &response.auth[&host];
        assert_eq!(
            (auth.username.as_str(), auth.password.expose()),
            (user.as_str(), token.as_str()),
            "{name}"
        );
        assert_eq!(response.auth.len(), 1, "{name}");
        assert!(!stderr(&output).contains(&token), "{name}");
    }
    // What the kubelet would pull with works.
    let pulled = registry.skopeo_pull(
        "team/app:1",
        &SkopeoAuth::Basic {
            username: &user,
            password: &token,
        },
    );
    assert!(pulled.status.success(), "{}", stderr(&pulled));

    // A credential limited to a path prefix is keyed and cached by image.
    for (name, output) in providers(
        &server,
        &kubelet_request(&format!("{host}/team/tools/lint")),
    ) {
        let response = parse_response(name, &output);
        assert_eq!(response.cache_key_type, CacheKeyType::Image, "{name}");
        assert_eq!(response.cache_duration.as_deref(), Some("5m0s"), "{name}");
        let keys: Vec<&String> = response.auth.keys().collect();
        assert_eq!(keys, [&format!("{host}/team/tools")], "{name}");
    }

    // No credential: an empty answer, so the pull goes on without one.
    for (name, output) in providers(&server, &kubelet_request("ghcr.io/elsewhere/app")) {
        let response = parse_response(name, &output);
        assert!(response.auth.is_empty(), "{name}");
        assert_eq!(response.cache_key_type, CacheKeyType::Image, "{name}");
    }

    // Another API version is refused, on stderr, with what to change.
    let old =
        kubelet_request(&image).replace(API_VERSION, "credentialprovider.kubelet.k8s.io/v1beta1");
    for (name, output) in providers(&server, &old) {
        assert!(!output.status.success(), "{name}");
        assert_eq!(stdout(&output), "", "{name}");
        assert!(
            stderr(&output).contains("apiVersion"),
            "{name}: {}",
            stderr(&output)
        );
    }
    assert!(!server.log().contains(&token));
}

/// Adds credential `name` for `registry` to `workspace` (as a path segment), unverified:
/// user [`ROBOT`], password [`ROBOT_PASSWORD`] with `-{name}` appended.
fn robot_credential(admin: &regkeeper_client::Client, workspace: &str, name: &str, registry: &str) {
    let _: wire::Credential = admin
        .post(
            &format!("/api/v1/workspaces/{workspace}/credentials"),
            &wire::CredentialInput {
                name: Some(name.into()),
                registry: Some(registry.into()),
                username: Some(ROBOT.into()),
                password: Some(wire::Sensitive::new(format!("{ROBOT_PASSWORD}-{name}"))),
                verify: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
}

/// A node holding a workload role's token: the helper hands out exactly what the role's
/// policy allows, refuses a credential it denies, and misses what does not exist.
#[test]
fn a_workload_role_token_gets_through_the_helper_only_what_its_policy_allows() {
    let server = TestServer::start();
    let admin = server.admin();
    let _: wire::Workspace = admin
        .post(
            "/api/v1/workspaces",
            &wire::WorkspaceInput {
                name: "acme/nodes".into(),
            },
        )
        .unwrap();
    for (name, registry) in [("allowed", "allowed.example"), ("other", "other.example")] {
        robot_credential(&admin, "acme%2Fnodes", name, registry);
    }
    let _: wire::Role = admin
        .post(
            "/api/v1/workspaces/acme%2Fnodes/roles",
            &wire::RoleInput {
                name: Some("nodes".into()),
                policy: Some(serde_json::json!({"Statement": [{
                    "Effect": "Allow", "Action": "credentials:Resolve",
                    "Resource": "rk:acme/nodes:credential/allowed"}]})),
                ..Default::default()
            },
        )
        .unwrap();
    let created: wire::ApiTokenCreated = admin
        .post(
            "/api/v1/workspaces/acme%2Fnodes/roles/nodes/tokens",
            &wire::ApiTokenInput {
                name: "kubelets".into(),
                expires_in_seconds: None,
            },
        )
        .unwrap();
    let token = created.secret.expose();

    let allowed = helper(&server, token, "get", "https://allowed.example/");
    let login: HelperCredentials = serde_json::from_str(&ok(&allowed)).unwrap();
    assert_eq!(login.username, ROBOT);
    assert_eq!(login.secret.expose(), format!("{ROBOT_PASSWORD}-allowed"));

    // Denied by the policy: a clear failure, not a silent miss, and no secret.
    let denied = helper(&server, token, "get", "other.example");
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(stdout(&denied), "");
    assert!(
        stderr(&denied).contains("no statement of its policy allows it"),
        "{}",
        stderr(&denied)
    );
    assert!(!stderr(&denied).contains(ROBOT_PASSWORD));

    assert_not_found(&helper(&server, token, "get", "unknown.example"));
}
