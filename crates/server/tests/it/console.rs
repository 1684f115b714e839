//! The web console in a real browser: `tests/browser/console.mjs` drives Debian's
//! Chromium through playwright-core against a real server and a real htpasswd registry,
//! as a person would (sign in, add, verify, delete; a viewer; forged posts; phone width;
//! axe). Its screenshots are the test's artefacts, in `target/test-artifacts/console/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::peers::process::available;
use super::peers::registry::Registry;
use super::support::{ok, poll_until, ServerOptions, TestServer, ADMIN_TOKEN};

const CHROMIUM: &str = "/usr/bin/chromium";
const NODE: &str = "/usr/bin/node";
const REGISTRY_USER: &str = "robot";
/// Unique, so that finding it anywhere it must not be is never a coincidence.
const REGISTRY_PASSWORD: &str = "console-canary-registry-password-7f3a9c";
const REGISTRY_WRONG_PASSWORD: &str = "console-canary-wrong-password-51d2e8";
const VIEWER_WORKSPACE: &str = "acme/view";
/// The whole browser run; it takes well under a minute on an idle machine.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn browser_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn artifacts_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/console")
}

#[test]
fn console_in_a_real_browser() {
    let browser = browser_directory();
    if !available(Path::new(CHROMIUM), "Debian package chromium")
        || !available(Path::new(NODE), "Debian package nodejs")
        || !available(
            &browser.join("node_modules/playwright-core/package.json"),
            "npm ci --prefix crates/server/tests/browser",
        )
    {
        return;
    }
    let Some(registry) = Registry::htpasswd(&[(REGISTRY_USER, REGISTRY_PASSWORD)]) else {
        return;
    };
    let server = TestServer::start_with(ServerOptions {
        environment: vec![
            (
                "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".to_owned(),
                "127.0.0.0/8".to_owned(),
            ),
            (
                "REGKEEPER_OUTBOUND_CA_FILE".to_owned(),
                registry.ca_file().display().to_string(),
            ),
        ],
        ..ServerOptions::default()
    });

    let viewer_token = ok(&server.cli(ADMIN_TOKEN, &["users", "create", "viewer"], None))
        .trim()
        .to_owned();
    ok(&server.cli(
        ADMIN_TOKEN,
        &["workspaces", "create", VIEWER_WORKSPACE],
        None,
    ));
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "members",
            "add",
            VIEWER_WORKSPACE,
            "viewer",
            "--role",
            "view",
        ],
        None,
    ));

    let artifacts = artifacts_directory();
    // Only this run's pictures, never a stale one from an earlier run.
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("artefacts directory");
    let artifacts = artifacts.canonicalize().expect("artefacts directory");
    let home = tempfile::tempdir().expect("temporary HOME for Chromium");
    let output_path = artifacts.join("console.log");
    let output = std::fs::File::create(&output_path).expect("output file");

    let mut child = Command::new(NODE)
        .arg(browser.join("console.mjs"))
        .current_dir(&browser)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CHROMIUM", CHROMIUM)
        .env("CONSOLE_URL", &server.url)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("VIEWER_TOKEN", &viewer_token)
        .env("VIEWER_WORKSPACE", VIEWER_WORKSPACE)
        .env("REGISTRY", registry.host_port())
        .env("REGISTRY_USER", REGISTRY_USER)
        .env("REGISTRY_PASSWORD", REGISTRY_PASSWORD)
        .env("REGISTRY_WRONG_PASSWORD", REGISTRY_WRONG_PASSWORD)
        .env("SCREENSHOT_DIR", &artifacts)
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("output file"))
        .stderr(output)
        .spawn()
        .expect("node starts");
    // Waiting on the process's exit; the script's own steps wait on the pages.
    let status = poll_until(SCRIPT_TIMEOUT, Duration::from_millis(200), || {
        child.try_wait().expect("node's status")
    })
    .map(|(status, _)| status);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let printed = std::fs::read_to_string(&output_path).unwrap_or_default();
    let log = server.log();
    assert!(
        status.is_some_and(|status| status.success()),
        "the browser run {} (artefacts in {}):\n{printed}\n--- server log ---\n{log}",
        match status {
            Some(status) => format!("failed ({status})"),
            None => format!("did not finish within {SCRIPT_TIMEOUT:?}"),
        },
        artifacts.display(),
    );
    println!("{printed}");

    for (what, secret) in [
        ("the registry password", REGISTRY_PASSWORD),
        ("the wrong registry password", REGISTRY_WRONG_PASSWORD),
        ("the admin API token", ADMIN_TOKEN),
        ("the viewer's API token", viewer_token.as_str()),
    ] {
        assert!(!log.contains(secret), "the server log contains {what}");
        assert!(!printed.contains(secret), "the browser run printed {what}");
    }

    // What the browser did went through the service like any other client.
    let listed = ok(&server.cli(ADMIN_TOKEN, &["credentials", "list"], None));
    assert!(
        !listed.contains("e2e-registry") && !listed.contains("forged"),
        "{listed}"
    );
    let audit = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--limit", "100"], None));
    for action in [
        "credential.create",
        "credential.verify",
        "credential.delete",
    ] {
        assert!(
            audit.contains(action),
            "no {action} in the audit log:\n{audit}"
        );
    }
}
