//! The secret canary: a unique secret goes through add, update, list, show and a
//! master-key rotation, and must then appear nowhere — not in any response, CLI output,
//! log line, audit entry or metric, nor in plain text in the database files.

mod rejected_input;

use super::support::{
    contains, files_under, ok, raw, stderr, stdout, PostgresDatabase, ServerOptions, TestServer,
    ADMIN_TOKEN,
};

struct Transcript(Vec<String>);

impl Transcript {
    fn record(&mut self, text: impl Into<String>) {
        self.0.push(text.into());
    }
}

/// Runs every flow that handles a secret and returns everything the server said.
fn exercise(server: &TestServer, first: &str, second: &str) -> Transcript {
    let mut seen = Transcript(Vec::new());
    let mut cli = |args: &[&str], stdin: Option<&str>| {
        let output = server.cli(ADMIN_TOKEN, args, stdin);
        seen.record(stdout(&output));
        seen.record(stderr(&output));
        output
    };
    let add_quay = [
        "credentials",
        "add",
        "--no-verify",
        "--name",
        "canary",
        "--registry",
        "quay.io",
        "--username",
        "robot",
        "--password-stdin",
    ];
    ok(&cli(&add_quay, Some(first)));
    ok(&cli(
        &[
            "credentials",
            "add",
            "--no-verify",
            "--name",
            "canary-ecr",
            "--registry",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "--username",
            "AKIAIOSFODNN7EXAMPLE",
            "--password-stdin",
            "--output",
            "json",
        ],
        Some(first),
    ));
    // Mistakes that carry the secret must not echo it back: the same name again.
    let _ = cli(&add_quay, Some(first));
    let _ = cli(
        &[
            "credentials",
            "add",
            "--no-verify",
            "--name",
            "canary-gcr",
            "--registry",
            "gcr.io",
            "--username",
            "_json_key",
            "--password-stdin",
        ],
        Some(first),
    );
    ok(&cli(
        &[
            "credentials",
            "update",
            "--no-verify",
            "canary",
            "--password-stdin",
        ],
        Some(second),
    ));
    ok(&cli(&["credentials", "list"], None));
    ok(&cli(&["credentials", "list", "--output", "json"], None));
    ok(&cli(
        &["credentials", "show", "canary", "--output", "json"],
        None,
    ));
    ok(&cli(&["credentials", "show", "canary-ecr"], None));
    ok(&cli(&["key", "rotate"], None));
    ok(&cli(
        &["audit", "list", "--limit", "1000", "--output", "json"],
        None,
    ));
    ok(&cli(&["audit", "verify"], None));
    // Verification fails here (no network): its error must not carry the secret.
    let _ = cli(&["credentials", "verify", "canary"], None);
    // The one place a secret is meant to appear: the resolve answer to its caller. It
    // proves the search would find the secret, and stays out of the transcript.
    let resolved = server.cli(ADMIN_TOKEN, &["resolve", "quay.io/team/app:1"], None);
    assert!(
        stdout(&resolved).contains(second),
        "resolve hands out the current secret"
    );
    let body = format!(r#"{{"name":"canary-x","registry":"quay.io","ambient":"{first}"}}"#);
    let (_, response) = raw(
        server,
        "POST",
        "/api/v1/workspaces/%7Eadmin/credentials",
        Some(ADMIN_TOKEN),
        Some("application/json"),
        Some(body.as_bytes()),
    );
    seen.record(response);
    for path in [
        "/metrics",
        "/readyz",
        "/api/v1/workspaces/%7Eadmin/credentials",
    ] {
        seen.record(raw(server, "GET", path, Some(ADMIN_TOKEN), None, None).1);
    }
    seen
}

fn assert_nowhere(seen: &Transcript, log: &str, secrets: &[&str]) {
    for secret in secrets {
        for text in &seen.0 {
            assert!(
                !text.contains(secret),
                "secret in a response or CLI output: {text}"
            );
        }
        assert!(!log.contains(secret), "secret in the server log");
    }
    assert!(
        log.contains("credential.created"),
        "the log was captured at debug level"
    );
    assert!(
        seen.0.iter().any(|text| text.contains("credential.update")),
        "the audit log was read"
    );
}

#[test]
fn canary_on_sqlite() {
    let first = format!("canary-first-{}", uuid::Uuid::new_v4().simple());
    let second = format!("canary-second-{}", uuid::Uuid::new_v4().simple());
    let server = TestServer::start();
    let seen = exercise(&server, &first, &second);
    let log = server.log();
    let data_dir = server.data_dir.clone();
    // The WAL is inspected while the server still runs, before any checkpoint folds it in.
    let live_files = files_under(&data_dir);
    assert!(
        live_files
            .iter()
            .any(|(path, _)| path.to_string_lossy().ends_with("-wal")),
        "WAL file present"
    );
    let _stopped = server.stop();
    assert_nowhere(&seen, &log, &[&first, &second]);
    for (path, bytes) in live_files.into_iter().chain(files_under(&data_dir)) {
        for secret in [&first, &second] {
            assert!(
                !contains(&bytes, secret),
                "secret in plain text in {}",
                path.display()
            );
        }
    }
}

#[test]
fn canary_on_postgres() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    let first = format!("canary-pg-first-{}", uuid::Uuid::new_v4().simple());
    let second = format!("canary-pg-second-{}", uuid::Uuid::new_v4().simple());
    let server = TestServer::start_with(ServerOptions {
        database_url: Some(database.url.clone()),
        ..ServerOptions::default()
    });
    let seen = exercise(&server, &first, &second);
    let log = server.log();
    assert!(
        !log.contains(&database.url),
        "the database URL is not logged"
    );
    let data_dir = server.stop();
    assert_nowhere(&seen, &log, &[&first, &second]);
    let dump = database.dump();
    assert!(
        contains(&dump, "canary-ecr"),
        "the dump holds the credentials"
    );
    for secret in [&first, &second] {
        assert!(!contains(&dump, secret), "secret in plain text in pg_dump");
    }
    for (path, bytes) in files_under(&data_dir.path) {
        for secret in [&first, &second] {
            assert!(
                !contains(&bytes, secret),
                "secret in plain text in {}",
                path.display()
            );
        }
    }
}
