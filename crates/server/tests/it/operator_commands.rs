//! The operator's commands: `doctor` (each problem with the setting to change, exit
//! status 1 when a check fails), `whoami`, `--version` naming the commit in all three
//! binaries, `GET /api/v1/version`, shell completions and man pages.

use std::process::{Command, Output};

use regkeeper_wire as wire;

use super::cli::behind_tls;
use super::peers::tls::TestCa;
use super::support::{binary, ok, run_cli, stderr, stdout, ServerOptions, TestServer, ADMIN_TOKEN};

fn doctor(url: &str, token: &str, environment: &[(&str, &str)]) -> (Output, serde_json::Value) {
    let output = run_cli(
        url,
        token,
        &["doctor", "--output", "json"],
        None,
        environment,
    );
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}{}", stdout(&output), stderr(&output)));
    (output, report)
}

/// The check named `name` in a doctor report.
fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

#[test]
fn doctor_passes_on_a_healthy_server_and_names_the_setting_for_each_problem() {
    let server = TestServer::start();
    let table = ok(&server.cli(ADMIN_TOKEN, &["doctor"], None));
    assert!(table.contains("No problems found."), "{table}");
    let (output, report) = doctor(&server.url, ADMIN_TOKEN, &[]);
    assert!(output.status.success());
    assert_eq!(report["ok"], true, "{report:#}");
    for name in [
        "settings",
        "address",
        "connection",
        "tls",
        "health",
        "readiness",
        "version",
        "master key",
        "credentials",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report:#}");
    }
    let token = check(&report, "token")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        token.contains("user admin (site administrator)") && token.contains("REGKEEPER_TOKEN"),
        "{token}"
    );
    let version = check(&report, "version")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")) && version.contains("database sqlite"),
        "{version}"
    );

    // A refused token: exit status 1, and the fix names REGKEEPER_TOKEN.
    let (output, report) = doctor(&server.url, "rk_not_a_real_token_0000000000000000", &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("checks failed"),
        "{}",
        stderr(&output)
    );
    let refused = check(&report, "token");
    assert_eq!(refused["status"], "fail");
    assert!(
        refused["fix"]
            .as_str()
            .unwrap()
            .contains("set REGKEEPER_TOKEN"),
        "{refused}"
    );
    assert!(
        !report.to_string().contains("rk_not_a_real_token"),
        "the token is never echoed: {report}"
    );

    // Nothing listening: the connection fails, naming REGKEEPER_URL, and the checks
    // after it are skipped.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (output, report) = doctor(&format!("http://127.0.0.1:{closed}"), ADMIN_TOKEN, &[]);
    assert_eq!(output.status.code(), Some(1));
    let connection = check(&report, "connection");
    assert_eq!(connection["status"], "fail");
    assert!(
        connection["fix"]
            .as_str()
            .unwrap()
            .contains("REGKEEPER_URL"),
        "{connection}"
    );
    assert_eq!(check(&report, "token")["status"], "skip");

    // A host that does not resolve.
    let (_, report) = doctor("http://regkeeper.invalid:7070", ADMIN_TOKEN, &[]);
    let address = check(&report, "address");
    assert_eq!(address["status"], "fail");
    assert!(
        address["message"]
            .as_str()
            .unwrap()
            .contains("cannot resolve regkeeper.invalid"),
        "{address}"
    );
}

#[test]
fn doctor_tells_a_missing_or_wrong_ca_and_a_plain_http_port_apart() {
    let server = TestServer::start();
    let ca = TestCa::generate();
    let (_forwarder, url) = behind_tls(&server, &ca);

    let (output, report) = doctor(&url, ADMIN_TOKEN, &[]);
    assert_eq!(output.status.code(), Some(1));
    let tls = check(&report, "tls");
    assert_eq!(tls["status"], "fail", "{report:#}");
    assert!(
        tls["fix"]
            .as_str()
            .unwrap()
            .starts_with("set REGKEEPER_CA_FILE"),
        "{tls}"
    );

    let other = TestCa::generate();
    let wrong = other.ca_file().to_str().unwrap();
    let (_, report) = doctor(&url, ADMIN_TOKEN, &[("REGKEEPER_CA_FILE", wrong)]);
    let tls = check(&report, "tls");
    assert_eq!(tls["status"], "fail");
    let fix = tls["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("REGKEEPER_CA_FILE ({wrong}) does not hold the CA")),
        "{fix}"
    );

    let right = ca.ca_file().to_str().unwrap();
    let (output, report) = doctor(&url, ADMIN_TOKEN, &[("REGKEEPER_CA_FILE", right)]);
    assert!(output.status.success(), "{report:#}");
    assert_eq!(check(&report, "tls")["status"], "ok");

    // https:// to a plain-http listener.
    let plain = server.url.replace("http://", "https://");
    let (_, report) = doctor(&plain, ADMIN_TOKEN, &[]);
    let health = check(&report, "health");
    assert_eq!(health["status"], "fail", "{report:#}");
    assert!(
        health["fix"]
            .as_str()
            .unwrap()
            .contains("use http:// in REGKEEPER_URL"),
        "{health}"
    );
}

#[test]
fn doctor_reports_an_unavailable_master_key_and_failing_credentials() {
    let temporary = tempfile::tempdir().unwrap();
    let data_dir = temporary.path().join("data");
    let server = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir.clone()),
        ..ServerOptions::default()
    });
    // A credential whose registry cannot be reached fails its verification.
    let _: wire::Credential = server
        .admin()
        .post(
            "/api/v1/workspaces/%7Eadmin/credentials",
            &wire::CredentialInput {
                name: Some("broken".into()),
                registry: Some("127.0.0.1:1".into()),
                username: Some("u".into()),
                password: Some(wire::Sensitive::new("p")),
                verify: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    let verified = server.cli(ADMIN_TOKEN, &["credentials", "verify", "broken"], None);
    assert!(!verified.status.success(), "{}", stdout(&verified));
    let (output, report) = doctor(&server.url, ADMIN_TOKEN, &[]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let broken = check(&report, "credential ~admin/broken");
    assert_eq!(broken["status"], "fail");
    assert!(
        broken["message"]
            .as_str()
            .unwrap()
            .starts_with("verification failed"),
        "{broken}"
    );
    assert!(
        broken["fix"]
            .as_str()
            .unwrap()
            .contains("regkeeper credentials verify broken --workspace ~admin"),
        "{broken}"
    );

    // The key file replaced under the running server: the key still serves from
    // memory, and doctor warns before a restart would lose it.
    let key = data_dir.join("master.key");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let warned = super::support::poll_until(
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(500),
        || {
            let (_, report) = doctor(&server.url, ADMIN_TOKEN, &[]);
            (check(&report, "master key")["status"] == "warn").then_some(report)
        },
    );
    let (report, _) = warned.expect("doctor warns about the missing key file");
    assert!(
        check(&report, "master key")["fix"]
            .as_str()
            .unwrap()
            .contains("REGKEEPER_MASTER_KEY_FILE"),
        "{report:#}"
    );
    std::fs::write(&key, original).unwrap();

    // A server started without its key: not ready, and the master key check fails.
    let stopped = server.stop();
    std::fs::remove_file(stopped.path.join("master.key")).unwrap();
    let keyless = TestServer::start_with(ServerOptions {
        data_dir: Some(stopped.path.clone()),
        ..ServerOptions::default()
    });
    let (output, report) = doctor(&keyless.url, ADMIN_TOKEN, &[]);
    assert_eq!(output.status.code(), Some(1));
    let readiness = check(&report, "readiness");
    assert_eq!(readiness["status"], "fail");
    assert!(
        readiness["fix"]
            .as_str()
            .unwrap()
            .contains("REGKEEPER_MASTER_KEY_FILE"),
        "{readiness}"
    );
    assert_eq!(check(&report, "master key")["status"], "fail");
}

#[test]
fn whoami_names_the_user_or_role_its_workspaces_and_token() {
    let server = TestServer::start();
    let admin = server.admin();
    let _: wire::Workspace = admin
        .post(
            "/api/v1/workspaces",
            &wire::WorkspaceInput {
                name: "acme/ci".into(),
            },
        )
        .unwrap();
    let created: wire::ApiTokenCreated = admin
        .post(
            "/api/v1/tokens",
            &wire::ApiTokenInput {
                name: "laptop".into(),
                expires_in_seconds: Some(3600),
            },
        )
        .unwrap();
    let said: serde_json::Value = serde_json::from_str(&ok(&server.cli(
        created.secret.expose(),
        &["whoami", "--output", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(said["kind"], "user");
    assert_eq!(said["name"], "admin");
    assert_eq!(said["siteAdmin"], true);
    assert_eq!(said["token"]["id"], created.token.id.as_str());
    assert_eq!(said["token"]["name"], "laptop");
    assert!(said["token"]["expiresAt"].is_string(), "{said:#}");
    let workspaces = said["workspaces"].to_string();
    assert!(
        workspaces.contains("acme/ci")
            && workspaces.contains("~admin")
            && workspaces.contains("owner"),
        "{workspaces}"
    );
    assert!(
        !said.to_string().contains(created.secret.expose()),
        "the token is never shown"
    );
    let table = ok(&server.cli(created.secret.expose(), &["whoami"], None));
    assert!(
        table.contains("user admin (site administrator)") && table.contains("\"laptop\""),
        "{table}"
    );

    // A workload role's token.
    let policy = r#"{"Version": "2026-11-01", "Statement": [{"Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/*"}]}"#;
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "roles",
            "create",
            "ci",
            "--workspace",
            "acme/ci",
            "--policy-file",
            "-",
        ],
        Some(policy),
    ));
    let token: wire::ApiTokenCreated = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "roles",
            "tokens",
            "create",
            "ci",
            "--name",
            "runner",
            "--workspace",
            "acme/ci",
            "--output",
            "json",
        ],
        None,
    )))
    .unwrap();
    let said: serde_json::Value = serde_json::from_str(&ok(&server.cli(
        token.secret.expose(),
        &["whoami", "--output", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(said["kind"], "role", "{said:#}");
    assert_eq!(said["name"], "rk:acme/ci:role/ci");
    assert_eq!(said["defaultWorkspace"], "acme/ci");
    assert_eq!(said["token"]["name"], "runner");
}

fn commit() -> String {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn every_binary_names_its_commit_and_the_server_says_its_version() {
    let expected = format!(
        "{} (commit {})",
        env!("CARGO_PKG_VERSION"),
        regkeeper_client::COMMIT
    );
    // Built from this checkout: build.rs read REGKEEPER_COMMIT, else HEAD.
    match std::env::var("REGKEEPER_COMMIT") {
        Ok(commit) if !commit.is_empty() => assert_eq!(regkeeper_client::COMMIT, commit),
        _ => {
            let head = commit();
            if !head.is_empty() {
                assert_eq!(regkeeper_client::COMMIT, head);
            }
        }
    }
    let regkeeper = Command::new(binary()).arg("--version").output().unwrap();
    assert_eq!(stdout(&regkeeper).trim(), format!("regkeeper {expected}"));
    for (program, argument) in [
        ("docker-credential-regkeeper", "version"),
        ("regkeeper-kubelet-credential-provider", "--version"),
    ] {
        let output = Command::new(super::consumers::sibling(program))
            .arg(argument)
            .output()
            .unwrap();
        assert!(output.status.success(), "{program}: {}", stderr(&output));
        assert_eq!(
            stdout(&output).trim(),
            format!("{program} (regkeeper) {expected}")
        );
    }
    let server = TestServer::start();
    let version: wire::ServerVersion = server.admin().get("/api/v1/version").unwrap();
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.commit, regkeeper_client::COMMIT);
    assert_eq!(version.database, "sqlite");
    let anonymous = regkeeper_client::Client::new(&server.url, None);
    assert_eq!(
        super::support::status(anonymous.get::<wire::ServerVersion>("/api/v1/version")),
        401
    );
}

#[test]
fn completions_load_in_bash_and_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run_cli("http://127.0.0.1:1", "", &["completions", shell], None, &[]);
        let script = ok(&output);
        for command in ["credentials", "doctor", "whoami", "backup", "restore"] {
            assert!(script.contains(command), "{shell}: {command} missing");
        }
    }
    let script = ok(&run_cli(
        "http://127.0.0.1:1",
        "",
        &["completions", "bash"],
        None,
        &[],
    ));
    let temporary = tempfile::tempdir().unwrap();
    let file = temporary.path().join("regkeeper.bash");
    std::fs::write(&file, script).unwrap();
    // Loaded as bash-completion would, then asked to complete `regkeeper cre`.
    let completed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source {}; complete -p regkeeper; COMP_WORDS=(regkeeper cre); COMP_CWORD=1; COMP_LINE='regkeeper cre'; COMP_POINT=13; _regkeeper regkeeper cre regkeeper; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .unwrap();
    let said = stdout(&completed);
    assert!(completed.status.success(), "{said}{}", stderr(&completed));
    assert!(
        said.contains("complete") && said.lines().any(|line| line == "credentials"),
        "{said}"
    );
    let refused = run_cli(
        "http://127.0.0.1:1",
        "",
        &["completions", "powershell"],
        None,
        &[],
    );
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn man_pages_cover_every_command_and_the_node_programs_and_render_cleanly() {
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path().join("man1");
    let said = ok(&run_cli(
        "http://127.0.0.1:1",
        "",
        &["man", &directory.to_string_lossy()],
        None,
        &[],
    ));
    let pages = std::fs::read_dir(&directory).unwrap().count();
    assert!(
        said.starts_with(&format!("Wrote {pages} man pages")),
        "{said}"
    );
    for page in [
        "regkeeper.1",
        "regkeeper-serve.1",
        "regkeeper-credentials-add.1",
        "regkeeper-roles-trust-add.1",
        "regkeeper-doctor.1",
        "regkeeper-backup.1",
        "regkeeper-restore.1",
        "regkeeper-kubelet-credential-provider.1",
        "docker-credential-regkeeper.1",
        "docker-credential-regkeeper-get.1",
        "regkeeper-kubelet-credential-provider.1",
    ] {
        assert!(directory.join(page).is_file(), "{page} missing");
    }
    let add = std::fs::read_to_string(directory.join("regkeeper-credentials-add.1")).unwrap();
    assert!(
        add.contains("regkeeper\\-credentials\\-add") && add.contains("password\\-stdin"),
        "{add}"
    );
    let helper = std::fs::read_to_string(directory.join("docker-credential-regkeeper.1")).unwrap();
    assert!(helper.contains("REGKEEPER_TOKEN"), "{helper}");
    // Every page renders without a groff warning.
    for entry in std::fs::read_dir(&directory).unwrap().flatten() {
        let rendered = Command::new("groff")
            // -k: through preconv, as man(1) does, for the UTF-8 of the help texts.
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(entry.path())
            .output()
            .expect("groff runs (Debian package groff-base)");
        assert!(
            rendered.status.success() && rendered.stderr.is_empty(),
            "{}: {}",
            entry.path().display(),
            String::from_utf8_lossy(&rendered.stderr)
        );
    }
}
