//! Issue 12's fixes to the node-side consumers, with real parts: `podman login` and
//! `podman logout` through `docker-credential-regkeeper` against distribution over TLS
//! (item 1), plain-http server URLs (item 5), and the helper and the kubelet provider
//! without a token (item 15).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regkeeper_wire as wire;
use regkeeper_wire::docker_helper::HelperCredentials;

use super::super::peers::process::available;
use super::super::peers::registry::Registry;
use super::super::support::{
    add_login, ok, raw, stderr, stdout, ServerOptions, TestServer, ADMIN_TOKEN,
};
use super::{
    assert_not_found, credentials, helper, helper_home, path_with_helper, run, run_with_stdin,
    server_for, sibling, HelperClient, HELPER, PROVIDER, ROBOT, ROBOT_PASSWORD,
};

const PODMAN_BINARY: &str = "/usr/bin/podman";
const DEPLOYER: &str = "deployer";
const DEPLOYER_PASSWORD: &str = "deployer-consumer-canary-77d0";

/// podman configured with nothing but the helper for the registry: an auth file with
/// `credHelpers`, the helper's directory on PATH, and its own storage in a temporary
/// directory (login and logout need no containers, but podman opens its store).
struct HelperPodman<'a> {
    registry: &'a Registry,
    url: String,
    home: tempfile::TempDir,
    auth_file: PathBuf,
}

impl<'a> HelperPodman<'a> {
    fn new(registry: &'a Registry, server: &TestServer) -> Option<Self> {
        if !available(Path::new(PODMAN_BINARY), "Debian package podman") {
            return None;
        }
        let (home, auth_file) = helper_home(registry);
        Some(Self {
            registry,
            url: server.url.clone(),
            home,
            auth_file,
        })
    }
}

impl HelperClient for HelperPodman<'_> {
    fn registry(&self) -> &Registry {
        self.registry
    }

    fn auth_file(&self) -> &Path {
        &self.auth_file
    }

    fn run(&self, args: &[String], stdin: &str) -> Output {
        let storage = self.home.path().join("storage");
        let mut command = Command::new(PODMAN_BINARY);
        command
            .arg(format!("--root={}", storage.join("root").display()))
            .arg(format!("--runroot={}", storage.join("run").display()))
            .arg("--storage-driver=vfs")
            .arg("--events-backend=none")
            .args(args)
            .env_clear()
            .env("PATH", path_with_helper())
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("REGKEEPER_URL", &self.url)
            .env("REGKEEPER_TOKEN", ADMIN_TOKEN);
        run_with_stdin(&mut command, stdin, "podman")
    }
}

fn only_credential(server: &TestServer) -> wire::Credential {
    let mut stored = credentials(server);
    assert_eq!(stored.len(), 1, "{stored:?}");
    stored.remove(0)
}

/// Issue 12 item 1: `podman login` never overwrites, and `podman logout` never deletes,
/// a credential a person added; both fail saying which credential and how to change it.
/// A credential `store` created is still updated and erased as before, and the server
/// itself refuses the helper's update or delete of a curated one.
#[test]
fn podman_login_and_logout_leave_a_curated_credential_alone() {
    // `None` only outside CI: with CI=true a missing registry, skopeo or podman fails
    // the test (`peers::process::available`), as PostgreSQL does.
    let Some(registry) =
        Registry::htpasswd(&[(ROBOT, ROBOT_PASSWORD), (DEPLOYER, DEPLOYER_PASSWORD)])
    else {
        return;
    };
    let host = registry.host_port().to_owned();
    let server = server_for(&registry, &[]);
    let Some(podman) = HelperPodman::new(&registry, &server) else {
        return;
    };

    // Curated: added and verified with the CLI.
    ok(&add_login(
        &server,
        ["curated", &host, ROBOT],
        ROBOT_PASSWORD,
    ));
    let before = only_credential(&server);
    assert_eq!(
        (before.origin.as_str(), before.verification.status.as_str()),
        ("user", "ok")
    );

    let login = podman.login(DEPLOYER, DEPLOYER_PASSWORD);
    assert!(!login.status.success(), "podman login overwrote it");
    let message = stderr(&login);
    assert!(message.contains("credential ~admin/curated"), "{message}");
    assert!(
        message.contains("regkeeper credentials update curated --password-stdin"),
        "{message}"
    );
    assert!(!message.contains(DEPLOYER_PASSWORD), "{message}");
    let after_login = only_credential(&server);
    assert_eq!(after_login.username.as_deref(), Some(ROBOT));
    assert_eq!(after_login.secret_version, before.secret_version);
    assert_eq!(after_login.verification.status, "ok");
    assert_eq!(after_login.updated_at, before.updated_at);
    let resolved = super::super::support::resolve(&server, &format!("{host}/team/app:1"));
    assert_eq!(resolved.secret.expose(), ROBOT_PASSWORD);

    // (podman 4.3 then overflows its stack in go-multierror's `errors.Is` while
    // reporting the helper's failure; the helper's line comes first, and the exit
    // status is non-zero either way.)
    let logout = podman.logout();
    assert!(!logout.status.success(), "podman logout deleted it");
    let message = stderr(&logout);
    assert!(message.contains("credential ~admin/curated"), "{message}");
    assert!(
        message.contains("regkeeper credentials delete curated"),
        "{message}"
    );
    assert_eq!(only_credential(&server).id, before.id);

    // The server enforces it too, for a credential added after the helper looked.
    let admin = server.admin();
    let path = "/api/v1/workspaces/%7Eadmin/credentials/curated";
    let refused = admin
        .patch::<_, wire::Credential>(
            path,
            &wire::CredentialInput {
                username: Some(DEPLOYER.into()),
                password: Some(wire::Sensitive::new(DEPLOYER_PASSWORD)),
                verify: Some(false),
                origin: Some("helper".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(refused.code(), Some("origin_mismatch"), "{refused}");
    let refused = admin.delete(&format!("{path}?origin=helper")).unwrap_err();
    assert_eq!(refused.code(), Some("origin_mismatch"), "{refused}");
    let (status, body) = raw(
        &server,
        "DELETE",
        &format!("{path}?origin=robot"),
        Some(ADMIN_TOKEN),
        None,
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        only_credential(&server).secret_version,
        before.secret_version
    );

    // Once the person removes theirs, the helper's own credential works as before.
    ok(&server.cli(ADMIN_TOKEN, &["credentials", "delete", "curated"], None));
    let login = podman.login(DEPLOYER, DEPLOYER_PASSWORD);
    assert!(login.status.success(), "{}", stderr(&login));
    let created = only_credential(&server);
    assert_eq!(
        (
            created.origin.as_str(),
            created.username.as_deref(),
            created.verification.status.as_str()
        ),
        ("helper", Some(DEPLOYER), "skipped")
    );
    let login = podman.login(ROBOT, ROBOT_PASSWORD);
    assert!(login.status.success(), "{}", stderr(&login));
    let updated = only_credential(&server);
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.username.as_deref(), Some(ROBOT));
    assert_eq!(updated.secret_version, created.secret_version + 1);
    assert_eq!(updated.origin, "helper");
    let logout = podman.logout();
    assert!(logout.status.success(), "{}", stderr(&logout));
    assert!(credentials(&server).is_empty());
    assert!(!server.log().contains(DEPLOYER_PASSWORD));
}

/// Issue 12 item 5: a plain-http server URL (`http://HOST`, `http://HOST:80`) does not
/// get the credential meant for TLS, through the helper or `POST /api/v1/resolve`; only
/// a registry the operator listed in REGKEEPER_OUTBOUND_HTTP_REGISTRIES does.
#[test]
fn plain_http_server_urls_get_only_what_the_operator_listed() {
    let server = TestServer::start_with(ServerOptions {
        environment: vec![(
            "REGKEEPER_OUTBOUND_HTTP_REGISTRIES".to_owned(),
            "127.0.0.1:5000".to_owned(),
        )],
        ..ServerOptions::default()
    });
    for (name, registry) in [("tls", "registry.example.com"), ("plain", "127.0.0.1:5000")] {
        super::robot_credential(&server.admin(), "%7Eadmin", name, registry);
    }
    for server_url in [
        "http://registry.example.com",
        "http://registry.example.com:80",
        "http://registry.example.com:80/team",
        "http://registry.example.com:443",
        "http://127.0.0.1:5001",
    ] {
        assert_not_found(&helper(&server, ADMIN_TOKEN, "get", server_url));
    }
    for body in [
        r#"{"registry":"http://registry.example.com:80"}"#,
        r#"{"registry":"http://registry.example.com"}"#,
    ] {
        let (status, answer) = raw(
            &server,
            "POST",
            "/api/v1/resolve",
            Some(ADMIN_TOKEN),
            Some("application/json"),
            Some(body.as_bytes()),
        );
        assert_eq!(status, 404, "{body}: {answer}");
        assert!(!answer.contains(ROBOT_PASSWORD), "{answer}");
        assert!(
            answer.contains("REGKEEPER_OUTBOUND_HTTP_REGISTRIES"),
            "{answer}"
        );
    }
    for (server_url, name) in [
        ("https://registry.example.com", "tls"),
        ("registry.example.com", "tls"),
        ("http://127.0.0.1:5000", "plain"),
        ("127.0.0.1:5000", "plain"),
    ] {
        let got: HelperCredentials =
            serde_json::from_str(&ok(&helper(&server, ADMIN_TOKEN, "get", server_url))).unwrap();
        assert_eq!(
            got.secret.expose(),
            format!("{ROBOT_PASSWORD}-{name}"),
            "{server_url}"
        );
    }
}

/// Runs `program` with a URL whose listener records connections, and no token.
fn without_token(program: &Path, args: &[&str], stdin: &str) -> (Output, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let output = run(program, args, stdin, &[("REGKEEPER_URL", &url)]);
    let connected = listener.accept().is_ok();
    (output, connected)
}

/// Issue 12 item 15: with no token configured at all, the helper, the kubelet provider
/// and the CLI fail at once, naming where a token goes, without connecting to the
/// server (they used to ask it, and the CLI relayed a message about HTTP headers).
#[test]
fn no_token_fails_fast_without_a_network_call() {
    let kubelet_request = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": "ghcr.io/acme/app:1",
    })
    .to_string();
    let cases: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (sibling(HELPER), vec!["get"], "ghcr.io"),
        (sibling(HELPER), vec!["list"], ""),
        (
            sibling(HELPER),
            vec!["store"],
            r#"{"ServerURL":"ghcr.io","Username":"u","Secret":"store-canary-0b1c"}"#,
        ),
        (sibling(HELPER), vec!["erase"], "ghcr.io"),
        (sibling(PROVIDER), vec![], &kubelet_request),
        (
            PathBuf::from(super::super::support::binary()),
            vec!["kubelet-credential-provider"],
            &kubelet_request,
        ),
        (
            PathBuf::from(super::super::support::binary()),
            vec!["credentials", "list"],
            "",
        ),
    ];
    for (program, args, stdin) in &cases {
        let (output, connected) = without_token(program, args, stdin);
        let what = format!("{} {}", program.display(), args.join(" "));
        assert_eq!(output.status.code(), Some(1), "{what}: {}", stderr(&output));
        assert!(!connected, "{what} connected to the server");
        assert_eq!(stdout(&output), "", "{what}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{what}: {message}");
        for expected in [
            "no API token",
            "REGKEEPER_TOKEN,",
            "REGKEEPER_TOKEN_FILE",
            "token = \"rk_…\"",
            "/nonexistent/.config/regkeeper/config.toml",
        ] {
            assert!(message.contains(expected), "{what}: {expected}: {message}");
        }
        assert!(!message.contains("header"), "{what}: {message}");
        assert!(!message.contains("store-canary"), "{what}: {message}");
    }

    // Help needs neither a token nor a server, and is not an "unknown action".
    for action in ["--help", "-h", "help"] {
        let (output, connected) = without_token(&sibling(HELPER), &[action], "");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{action}: {}",
            stderr(&output)
        );
        assert!(!connected);
        assert!(
            stdout(&output).starts_with("Usage: docker-credential-regkeeper ACTION"),
            "{action}: {}",
            stdout(&output)
        );
        assert_eq!(stderr(&output), "", "{action}");
    }
}
