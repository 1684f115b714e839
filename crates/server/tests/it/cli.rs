//! The CLI end to end against a real server process, as a new user would drive it.

use regkeeper_wire as wire;

use super::peers::tls::TestCa;
use super::support::{
    contains, files_under, login_flags, ok, run_cli, stderr, stdout, PostgresDatabase,
    ServerOptions, TestServer, ADMIN_TOKEN,
};

const SECRET: &str = "cli-e2e-secret-5c1f0e";

/// `credentials add --no-verify` of a login, `[name, registry, username]`, with
/// `password` on stdin.
fn add_with_stdin(
    server: &TestServer,
    token: &str,
    login: [&str; 3],
    password: &str,
) -> std::process::Output {
    let flags = ["credentials", "add", "--no-verify", "--password-stdin"];
    server.cli(
        token,
        &[&flags[..], &login_flags(login)].concat(),
        Some(password),
    )
}

fn add_list_restart(options: ServerOptions, secret: &str) {
    let server = TestServer::start_with(options.clone());
    let added = ok(&add_with_stdin(
        &server,
        ADMIN_TOKEN,
        ["ghcr", "https://GHCR.io/acme", "bob"],
        &format!("{secret}\n"),
    ));
    assert!(added.contains("ghcr.io/acme"), "{added}");
    let listed = ok(&server.cli(ADMIN_TOKEN, &["credentials", "list"], None));
    assert!(
        listed.contains("ghcr") && listed.contains("docker") && listed.contains("bob"),
        "{listed}"
    );
    assert!(!listed.contains(secret));
    let data_dir = server.stop();

    let restarted = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir.path.clone()),
        ..options
    });
    assert!(
        !restarted.stdout.contains("Created user"),
        "bootstrap ran twice: {}",
        restarted.stdout
    );
    let json = ok(&restarted.cli(
        ADMIN_TOKEN,
        &["credentials", "list", "--output", "json"],
        None,
    ));
    let list: wire::CredentialList = serde_json::from_str(&json).unwrap();
    assert_eq!(list.credentials.len(), 1);
    let credential = &list.credentials[0];
    assert_eq!(
        (
            credential.name.as_str(),
            credential.registry.as_str(),
            credential.path_prefix.as_str()
        ),
        ("ghcr", "ghcr.io", "acme")
    );
    assert!(credential.has_secret);
    assert!(!json.contains(secret));
    let _restarted_dir = restarted.stop();
    for (path, bytes) in files_under(&data_dir.path) {
        assert!(
            !contains(&bytes, secret),
            "secret in plain text in {}",
            path.display()
        );
    }
}

#[test]
fn add_list_and_restart_on_sqlite() {
    add_list_restart(ServerOptions::default(), SECRET);
}

#[test]
fn add_list_and_restart_on_postgres() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    let secret = "cli-e2e-postgres-secret-9d2a";
    add_list_restart(
        ServerOptions {
            database_url: Some(database.url.clone()),
            ..ServerOptions::default()
        },
        secret,
    );
    let dump = database.dump();
    assert!(contains(&dump, "ghcr.io"), "the dump holds the credential");
    assert!(!contains(&dump, secret), "secret in plain text in pg_dump");
}

#[test]
fn identity_administration_and_visibility() {
    let server = TestServer::start();
    let alice_token = ok(&server.cli(ADMIN_TOKEN, &["users", "create", "alice"], None))
        .trim()
        .to_owned();
    assert!(alice_token.starts_with("rk_"), "{alice_token}");
    let added = ok(&run_cli(
        &server.url,
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--no-verify",
            "--name",
            "hub",
            "--registry",
            "index.docker.io",
            "--username",
            "admin",
            "--password-env",
            "HUB_PASSWORD",
        ],
        None,
        &[("HUB_PASSWORD", "hub-password")],
    ));
    assert!(
        added.contains("docker.io") && added.contains("skipped"),
        "{added}"
    );
    // Alice sees nothing of ~admin: the workspace answers as if it did not exist.
    let denied = server.cli(
        &alice_token,
        &["credentials", "list", "--workspace", "~admin"],
        None,
    );
    assert!(!denied.status.success());
    let message = stderr(&denied);
    assert!(message.contains("workspace ~admin not found"), "{message}");
    assert_eq!(
        message.trim().lines().count(),
        1,
        "one-line error: {message}"
    );

    ok(&server.cli(
        ADMIN_TOKEN,
        &["members", "add", "~admin", "alice", "--role", "view"],
        None,
    ));
    let listed = ok(&server.cli(
        &alice_token,
        &["credentials", "list", "--workspace", "~admin"],
        None,
    ));
    assert!(listed.contains("hub"), "{listed}");
    let refused = server.cli(
        &alice_token,
        &[
            "credentials",
            "add",
            "--no-verify",
            "--workspace",
            "~admin",
            "--name",
            "x",
            "--registry",
            "quay.io",
            "--username",
            "u",
            "--password-stdin",
        ],
        Some("pw"),
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("needs maintain"),
        "{}",
        stderr(&refused)
    );

    ok(&server.cli(&alice_token, &["workspaces", "create", "acme/ci"], None));
    let workspaces = ok(&server.cli(&alice_token, &["workspaces", "list"], None));
    assert!(
        workspaces.contains("acme/ci") && workspaces.contains("owner"),
        "{workspaces}"
    );
    let members = ok(&server.cli(&alice_token, &["members", "list", "acme/ci"], None));
    assert!(
        members.contains("alice") && members.contains("owner"),
        "{members}"
    );
}

#[test]
fn secrets_come_from_stdin_env_or_file_never_arguments() {
    let server = TestServer::start();
    let key_file = server.data_dir.with_extension("key.json");
    std::fs::write(
        &key_file,
        r#"{"type":"service_account","client_email":"puller@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}"#,
    )
    .unwrap();
    let added = ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--no-verify",
            "--name",
            "gar",
            "--registry",
            "europe-docker.pkg.dev",
            "--username",
            "_json_key",
            "--password-file",
            key_file.to_str().unwrap(),
            "--output",
            "json",
        ],
        None,
    ));
    let credential: wire::Credential = serde_json::from_str(&added).unwrap();
    assert_eq!(
        (credential.kind.as_str(), credential.auth_method.as_str()),
        ("gcr", "gcp_json_key")
    );

    let from_env = run_cli(
        &server.url,
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--no-verify",
            "--name",
            "ecr",
            "--registry",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "--username",
            "AKIAIOSFODNN7EXAMPLE",
            "--password-env",
            "AWS_SECRET",
            "--role-arn",
            "arn:aws:iam::123456789012:role/pull",
            "--external-id",
            "ext-42",
            "--output",
            "json",
        ],
        None,
        &[("AWS_SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
    );
    let credential: wire::Credential = serde_json::from_str(&ok(&from_env)).unwrap();
    assert_eq!(credential.kind, "ecr");
    assert_eq!(credential.auth_method, "aws_role");
    assert_eq!(credential.aws_region.as_deref(), Some("eu-west-1"));
    assert_eq!(credential.external_id.as_deref(), Some("ext-42"));

    // There is no flag that takes a password as an argument.
    let add_x = |password_flags: &[&str]| {
        let fixed = ["credentials", "add", "--no-verify"];
        let login = login_flags(["x", "quay.io", "u"]);
        server.cli(
            ADMIN_TOKEN,
            &[&fixed[..], &login, password_flags].concat(),
            None,
        )
    };
    let refused = add_x(&["--password", "hunter2"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--password"),
        "{}",
        stderr(&refused)
    );
    let missing_env = add_x(&["--password-env", "NOT_SET_ANYWHERE"]);
    assert!(
        stderr(&missing_env).contains("NOT_SET_ANYWHERE is not set"),
        "{}",
        stderr(&missing_env)
    );
}

#[test]
fn update_show_delete_and_clear_errors() {
    let server = TestServer::start();
    ok(&add_with_stdin(
        &server,
        ADMIN_TOKEN,
        ["quay", "quay.io", "robot"],
        "first",
    ));
    let duplicate = add_with_stdin(&server, ADMIN_TOKEN, ["quay", "quay.io", "robot"], "x");
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );
    let invalid = add_with_stdin(&server, ADMIN_TOKEN, ["bad name", "quay.io", "u"], "x");
    assert!(
        stderr(&invalid).contains("invalid credential name"),
        "{}",
        stderr(&invalid)
    );

    let updated = ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "update",
            "--no-verify",
            "quay",
            "--password-stdin",
            "--path-prefix",
            "team/app",
            "--output",
            "json",
        ],
        Some("second"),
    ));
    let credential: wire::Credential = serde_json::from_str(&updated).unwrap();
    assert_eq!(credential.secret_version, 2);
    assert_eq!(credential.path_prefix, "team/app");
    assert_eq!(
        credential.username.as_deref(),
        Some("robot"),
        "unchanged fields stay"
    );
    let renamed = ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "update",
            "--no-verify",
            "quay",
            "--name",
            "quay-robot",
            "--output",
            "json",
        ],
        None,
    ));
    let renamed: wire::Credential = serde_json::from_str(&renamed).unwrap();
    assert_eq!(
        (
            renamed.name.as_str(),
            renamed.id.as_str(),
            renamed.secret_version
        ),
        ("quay-robot", credential.id.as_str(), 2)
    );
    let shown = ok(&server.cli(ADMIN_TOKEN, &["credentials", "show", "quay-robot"], None));
    assert!(
        shown.contains("quay.io/team/app") && shown.contains("stored (version 2)"),
        "{shown}"
    );
    ok(&server.cli(ADMIN_TOKEN, &["credentials", "delete", "quay-robot"], None));
    let gone = server.cli(ADMIN_TOKEN, &["credentials", "show", "quay-robot"], None);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("not found"), "{}", stderr(&gone));

    let unreachable = run_cli(
        "http://127.0.0.1:9",
        ADMIN_TOKEN,
        &["credentials", "list"],
        None,
        &[],
    );
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable).contains("cannot reach regkeeper"),
        "{}",
        stderr(&unreachable)
    );
}

#[test]
fn api_tokens_audit_and_key_rotation() {
    let server = TestServer::start();
    let created = ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "tokens",
            "create",
            "--name",
            "ci",
            "--expires-in",
            "1h",
            "--output",
            "json",
        ],
        None,
    ));
    let token: wire::ApiTokenCreated = serde_json::from_str(&created).unwrap();
    assert!(token.secret.expose().starts_with("rk_"));
    assert!(token.token.expires_at.is_some());
    ok(&server.cli(token.secret.expose(), &["credentials", "list"], None));
    let listed = ok(&server.cli(ADMIN_TOKEN, &["tokens", "list"], None));
    assert!(
        listed.contains("ci") && listed.contains(&token.token.prefix),
        "{listed}"
    );
    assert!(!listed.contains(token.secret.expose()));
    ok(&server.cli(ADMIN_TOKEN, &["tokens", "revoke", &token.token.id], None));
    let revoked = server.cli(token.secret.expose(), &["credentials", "list"], None);
    assert!(stderr(&revoked).contains("revoked"), "{}", stderr(&revoked));

    ok(&add_with_stdin(
        &server,
        ADMIN_TOKEN,
        ["a", "quay.io", "u"],
        "pw",
    ));
    let rotated = ok(&server.cli(ADMIN_TOKEN, &["key", "rotate"], None));
    assert!(
        rotated.contains("from version 1 to 2; 1 data keys re-wrapped"),
        "{rotated}"
    );
    assert!(ok(&server.cli(ADMIN_TOKEN, &["key", "status"], None)).contains("current version 2"));
    let audit = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--limit", "100"], None));
    for action in [
        "user.bootstrap",
        "api_token.create",
        "api_token.revoke",
        "credential.create",
        "master_key.rotate",
    ] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }
    let verified = ok(&server.cli(ADMIN_TOKEN, &["audit", "verify"], None));
    assert!(verified.contains("chain is intact"), "{verified}");
}

/// A TLS-terminating forwarder to `server`, as a company's reverse proxy would be, with
/// a certificate only the test CA vouches for. It runs while the runtime lives.
pub(super) fn behind_tls(server: &TestServer, ca: &TestCa) -> (tokio::runtime::Runtime, String) {
    let upstream = server.url.trim_start_matches("http://").to_owned();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(ca.rustls_server_config()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (runtime, url)
}

#[test]
fn ca_file_lets_the_cli_reach_a_server_behind_a_private_ca() {
    let server = TestServer::start();
    let ca = TestCa::generate();
    let (_forwarder, url) = behind_tls(&server, &ca);
    let refused = run_cli(&url, ADMIN_TOKEN, &["credentials", "list"], None, &[]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("UnknownIssuer") && message.contains("set REGKEEPER_CA_FILE"),
        "{message}"
    );
    let ca_file = ("REGKEEPER_CA_FILE", ca.ca_file().to_str().expect("UTF-8"));
    let listed = ok(&run_cli(
        &url,
        ADMIN_TOKEN,
        &["credentials", "list"],
        None,
        &[ca_file],
    ));
    assert!(!listed.contains("error"), "{listed}");
}

/// Issue 12 item 15: a usage error is one line on stderr with exit status 2, as the
/// README promises for every error (clap printed the error, a tip, the usage and a
/// pointer to --help over several lines); --help still prints the help, with status 0.
#[test]
fn usage_errors_are_one_line() {
    for (args, expected) in [
        (
            &["credentials", "add", "--bogus"][..],
            "unexpected argument '--bogus' found",
        ),
        (
            &["credentials"],
            "`regkeeper credentials` needs a command: add, list",
        ),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (
            &["credentials", "add", "--registry", "ghcr.io"],
            "required arguments were not provided: --name <NAME>",
        ),
    ] {
        let output = run_cli("http://127.0.0.1:1", "rk_unused", args, None, &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(message.starts_with("error: "), "{message}");
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(message.trim_end().ends_with("--help`"), "{message}");
    }
    let help = run_cli(
        "http://127.0.0.1:1",
        "rk_unused",
        &["credentials", "--help"],
        None,
        &[],
    );
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("Usage: regkeeper credentials"));
}
