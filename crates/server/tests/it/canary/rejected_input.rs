//! Issue 12 item 19: secrets pasted into rejected input — user info
//! (`user:PASSWORD@host/app`), a query string (`host/app:1?t=SECRET`) or a fragment —
//! through every route that takes an image, a registry or a path: REST resolve (both
//! routes), `regkeeper resolve`, `credentials verify --repository`, the proxy, the
//! docker credential helper's `get` and the kubelet provider. Each is refused, and its
//! canary appears in no response, CLI output, log line or audit entry, nor in plain
//! text in the database files; the audit log still records each attempt, with the
//! secret redacted.

use std::time::Duration;

use base64::Engine;

use crate::consumers::{helper, kubelet_request, providers};
use crate::support::{
    contains, files_under, ok, raw, stderr, stdout, PostgresDatabase, ServerOptions, TestServer,
    ADMIN_TOKEN,
};

/// One canary per route and spelling, so a leak names where it happened.
struct Canaries {
    run: String,
    all: Vec<String>,
}

impl Canaries {
    fn new() -> Self {
        Self {
            run: uuid::Uuid::new_v4().simple().to_string(),
            all: Vec::new(),
        }
    }

    fn next(&mut self, route: &str) -> String {
        let canary = format!("canary-{route}-{}", self.run);
        self.all.push(canary.clone());
        canary
    }
}

fn proxy_get(server: &TestServer, path: &str) -> String {
    let proxy = server.proxy_url.as_deref().expect("the proxy listens");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("any:{ADMIN_TOKEN}"));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let answer = agent
        .get(&format!("{proxy}/v2/{path}"))
        .set("Authorization", &format!("Basic {basic}"))
        .call();
    let (status, body) = crate::support::status_and_text(answer, "proxy request");
    assert_eq!(status, 400, "{path}: {body}");
    body
}

/// Sends every rejected input and returns everything the server and the clients said.
fn exercise(server: &TestServer, canaries: &mut Canaries) -> Vec<String> {
    let mut seen = Vec::new();
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--no-verify",
            "--name",
            "mirror",
            "--registry",
            "registry.example.com",
            "--username",
            "robot",
            "--password-stdin",
        ],
        Some("rejected-input-robot-password"),
    ));

    // REST resolve, in a workspace and the helper's route.
    let mut bodies = Vec::new();
    for (field, value) in [
        (
            "image",
            format!(
                "u:{}@registry.example.com/app",
                canaries.next("image-userinfo")
            ),
        ),
        (
            "image",
            format!(
                "{}@registry.example.com/app:1",
                canaries.next("image-token")
            ),
        ),
        (
            "image",
            format!("u:pa/{}@registry.example.com", canaries.next("image-slash")),
        ),
        (
            "image",
            format!(
                "registry.example.com/app:1?t={}",
                canaries.next("image-query")
            ),
        ),
        (
            "image",
            format!(
                "registry.example.com/app?t={}",
                canaries.next("image-path-query")
            ),
        ),
        (
            "image",
            format!(
                "registry.example.com/app#{}",
                canaries.next("image-fragment")
            ),
        ),
        (
            "image",
            format!(
                "registry.example.com/app:1%3Ft%3D{}",
                canaries.next("image-encoded")
            ),
        ),
        (
            "registry",
            format!(
                "https://u:{}@registry.example.com",
                canaries.next("registry-userinfo")
            ),
        ),
        (
            "registry",
            format!(
                "registry.example.com/app?token={}",
                canaries.next("registry-query")
            ),
        ),
        (
            "reference",
            format!(
                "rk:~admin:credential/mirror?t={}",
                canaries.next("reference-query")
            ),
        ),
        (
            "reference",
            format!("u:{}@mirror", canaries.next("reference-userinfo")),
        ),
    ] {
        bodies.push(serde_json::json!({ field: value }).to_string());
    }
    for body in &bodies {
        for path in ["/api/v1/workspaces/%7Eadmin/resolve", "/api/v1/resolve"] {
            let (status, answer) = raw(
                server,
                "POST",
                path,
                Some(ADMIN_TOKEN),
                Some("application/json"),
                Some(body.as_bytes()),
            );
            assert_eq!(status, 400, "{path} {body}: {answer}");
            seen.push(answer);
        }
    }

    // The CLI's resolve and verify.
    for image in [
        format!(
            "u:{}@registry.example.com/app:1",
            canaries.next("cli-userinfo")
        ),
        format!(
            "registry.example.com/app:1?t={}",
            canaries.next("cli-query")
        ),
    ] {
        let output = server.cli(ADMIN_TOKEN, &["resolve", &image], None);
        assert!(!output.status.success());
        seen.extend([stdout(&output), stderr(&output)]);
    }
    let repository = format!("app?t={}", canaries.next("verify-repository"));
    let output = server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "verify",
            "mirror",
            "--repository",
            &repository,
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("repository path component `app?[redacted]` is invalid"),
        "{}",
        stderr(&output)
    );
    seen.extend([stdout(&output), stderr(&output)]);

    // The proxy: user info in the host, percent-encoded or not, and a smuggled query.
    for path in [
        format!(
            "u:{}@registry.example.com/app/manifests/1",
            canaries.next("proxy-userinfo")
        ),
        format!(
            "u:{}%40registry.example.com/app/manifests/1",
            canaries.next("proxy-encoded")
        ),
        format!(
            "registry.example.com/u:{}@app/manifests/1",
            canaries.next("proxy-path")
        ),
        format!(
            "registry.example.com/app/manifests/1%3Ft%3D{}",
            canaries.next("proxy-query")
        ),
    ] {
        seen.push(proxy_get(server, &path));
    }

    // The docker credential helper's get.
    for url in [
        format!(
            "https://u:{}@registry.example.com",
            canaries.next("helper-userinfo")
        ),
        format!(
            "registry.example.com/app?token={}",
            canaries.next("helper-query")
        ),
    ] {
        let output = helper(server, ADMIN_TOKEN, "get", &url);
        assert!(!output.status.success());
        seen.extend([stdout(&output), stderr(&output)]);
    }

    // The kubelet provider, both forms.
    for image in [
        format!(
            "u:{}@registry.example.com/app:1",
            canaries.next("kubelet-userinfo")
        ),
        format!(
            "registry.example.com/app:1?t={}",
            canaries.next("kubelet-query")
        ),
    ] {
        for (name, output) in providers(server, &kubelet_request(&image)) {
            assert!(!output.status.success(), "{name}: {}", stdout(&output));
            seen.extend([stdout(&output), stderr(&output)]);
        }
    }
    seen
}

/// The audit log as JSON: it must hold every attempt, redacted.
fn audit(server: &TestServer) -> String {
    ok(&server.cli(
        ADMIN_TOKEN,
        &["audit", "list", "--limit", "1000", "--output", "json"],
        None,
    ))
}

fn assert_nowhere(seen: &[String], log: &str, audit: &str, canaries: &Canaries) {
    for canary in &canaries.all {
        for text in seen {
            assert!(!text.contains(canary), "{canary} in a response: {text}");
        }
        assert!(!log.contains(canary), "{canary} in the server log");
        assert!(!audit.contains(canary), "{canary} in the audit log");
    }
    // The attempts are recorded, with the secret left out.
    for recorded in [
        "[userinfo redacted]@registry.example.com/app",
        "registry.example.com/app:1?[redacted]",
        "https://[userinfo redacted]@registry.example.com",
        "rk:~admin:credential/mirror?[redacted]",
    ] {
        assert!(
            audit.contains(recorded),
            "no {recorded} in the audit log: {audit}"
        );
    }
}

#[test]
fn rejected_input_secrets_are_never_echoed_on_sqlite() {
    let mut canaries = Canaries::new();
    let server = TestServer::start_with(ServerOptions {
        environment: vec![("REGKEEPER_PROXY_LISTEN".into(), "127.0.0.1:0".into())],
        ..ServerOptions::default()
    });
    let seen = exercise(&server, &mut canaries);
    let audit = audit(&server);
    let log = server.log();
    let live_files = files_under(&server.data_dir);
    let data_dir = server.data_dir.clone();
    let _stopped = server.stop();
    assert_nowhere(&seen, &log, &audit, &canaries);
    for (path, bytes) in live_files.into_iter().chain(files_under(&data_dir)) {
        for canary in &canaries.all {
            assert!(
                !contains(&bytes, canary),
                "{canary} in plain text in {}",
                path.display()
            );
        }
    }
}

#[test]
fn rejected_input_secrets_are_never_echoed_on_postgres() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    let mut canaries = Canaries::new();
    let server = TestServer::start_with(ServerOptions {
        database_url: Some(database.url.clone()),
        environment: vec![("REGKEEPER_PROXY_LISTEN".into(), "127.0.0.1:0".into())],
        ..ServerOptions::default()
    });
    let seen = exercise(&server, &mut canaries);
    let audit = audit(&server);
    let log = server.log();
    let _data_dir = server.stop();
    assert_nowhere(&seen, &log, &audit, &canaries);
    let dump = database.dump();
    assert!(
        contains(&dump, "credential.resolve"),
        "the dump holds the audit log"
    );
    for canary in &canaries.all {
        assert!(
            !contains(&dump, canary),
            "{canary} in plain text in pg_dump"
        );
    }
}
