//! Rotation against damage: an undecryptable row refuses the rotation, naming it, with
//! nothing changed (or, asked to, rotates every readable row and names the rest), and a
//! key file replaced behind the server's back is noticed (status, log, metric) and never
//! overwritten.

use regkeeper_wire as wire;

use super::{input, CREDENTIALS};
use crate::support::{ok, raw, stderr, TestServer, ADMIN_TOKEN};

/// Runs `statement` on the server's SQLite database (WAL: alongside the server).
fn sqlite(server: &TestServer, statement: &str) -> Vec<(String, i64)> {
    let path = server.data_dir.join("regkeeper.db");
    let statement = statement.to_owned();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            use sqlx::{Connection, Row};
            let mut connection =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
            sqlx::query(&statement)
                .fetch_all(&mut connection)
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    (
                        row.try_get::<String, _>(0).unwrap_or_default(),
                        row.try_get::<i64, _>(1).unwrap_or_default(),
                    )
                })
                .collect()
        })
}

/// A server holding one credential per name, each with secret `NAME-secret`.
fn server_holding(names: &[&str]) -> TestServer {
    let server = TestServer::start();
    for name in names {
        let _: wire::Credential = server
            .admin()
            .post(CREDENTIALS, &input(name, &format!("{name}-secret")))
            .unwrap();
    }
    server
}

/// Changes the ninth byte of credential `name`'s `column` to a value it did not hold
/// (a fixed 0xFF would leave a 0xFF byte as it was, and the row readable, once in 256
/// runs).
fn damage(server: &TestServer, column: &str, name: &str) {
    sqlite(
        server,
        &format!(
            "UPDATE credentials SET {column} = substr({column}, 1, 8) || \
             CASE WHEN substr({column}, 9, 1) = X'FF' THEN X'00' ELSE X'FF' END || \
             substr({column}, 10) WHERE name = '{name}'"
        ),
    );
}

fn key_status(server: &TestServer) -> wire::KeyStatus {
    serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &["key", "status", "--output", "json"],
        None,
    )))
    .unwrap()
}

fn versions(server: &TestServer) -> Vec<(String, i64)> {
    sqlite(
        server,
        "SELECT name, secret_key_version FROM credentials ORDER BY name",
    )
}

/// Issue 12 item 13: one undecryptable row makes `key rotate` refuse, naming the row,
/// with the key file and the database unchanged (it used to answer 500 with the key
/// file's version advanced and the rotation half done); `--skip-unreadable` rotates
/// every readable row and names the one it left.
#[test]
fn an_undecryptable_row_refuses_rotation_by_name_and_changes_nothing() {
    let server = server_holding(&["alpha", "broken", "omega"]);
    damage(&server, "secret_ciphertext", "broken");
    let key_path = server.data_dir.join("master.key");
    let key_file = std::fs::read(&key_path).unwrap();
    let before = versions(&server);

    let refused = server.cli(ADMIN_TOKEN, &["key", "rotate"], None);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("credential rk:~admin:credential/broken"),
        "{message}"
    );
    assert!(message.contains("nothing changed"), "{message}");
    assert!(message.contains("--skip-unreadable"), "{message}");
    assert!(!message.contains("alpha"), "{message}");
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        key_file,
        "key file untouched"
    );
    assert_eq!(versions(&server), before, "database untouched");
    assert_eq!(key_status(&server).current_version, Some(1));
    assert!(!server.log().contains("request.internal_error"));

    let rotated = ok(&server.cli(
        ADMIN_TOKEN,
        &["key", "rotate", "--skip-unreadable", "--output", "json"],
        None,
    ));
    let rotated: wire::KeyRotation = serde_json::from_str(&rotated).unwrap();
    assert_eq!((rotated.previous_version, rotated.current_version), (1, 2));
    assert_eq!(rotated.rewrapped, 2);
    assert_eq!(
        rotated.skipped,
        vec!["credential rk:~admin:credential/broken"]
    );
    assert_eq!(key_status(&server).current_version, Some(2));
    assert_eq!(
        versions(&server),
        vec![
            ("alpha".to_owned(), 2),
            ("broken".to_owned(), 1),
            ("omega".to_owned(), 2)
        ],
        "every readable row re-wrapped, the broken one left as it was"
    );
    // The readable ones still resolve; the broken one says so.
    for name in ["alpha", "omega"] {
        let (status, body) = raw(
            &server,
            "POST",
            "/api/v1/workspaces/%7Eadmin/resolve",
            Some(ADMIN_TOKEN),
            Some("application/json"),
            Some(format!(r#"{{"reference":"{name}"}}"#).as_bytes()),
        );
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.contains(&format!("{name}-secret")));
    }
}

/// Issue 12 item 13: a row whose wrapped data key cannot be unwrapped is left under its
/// old version with `--skip-unreadable`, and listed.
#[test]
fn skip_unreadable_rotates_the_rest_and_names_what_it_left() {
    let server = server_holding(&["alpha", "broken"]);
    damage(&server, "secret_wrapped_key", "broken");
    let refused = server.cli(ADMIN_TOKEN, &["key", "rotate"], None);
    assert!(
        stderr(&refused).contains("credential rk:~admin:credential/broken"),
        "{}",
        stderr(&refused)
    );
    let rotated = ok(&server.cli(ADMIN_TOKEN, &["key", "rotate", "--skip-unreadable"], None));
    assert!(
        rotated
            .contains("Left as it was (cannot be opened): credential rk:~admin:credential/broken"),
        "{rotated}"
    );
    assert_eq!(
        versions(&server),
        vec![("alpha".to_owned(), 2), ("broken".to_owned(), 1)]
    );
}

/// Issue 12 item 13: a row with a part of its sealed secret missing (ciphertext NULL,
/// or empty) is named as unreadable like a corrupted one; it used to make the
/// rotation answer 500 ("sealed secret row is incomplete").
#[test]
fn a_row_missing_its_ciphertext_is_named_not_a_500() {
    let server = server_holding(&["alpha", "emptied", "nulled"]);
    sqlite(
        &server,
        "UPDATE credentials SET secret_ciphertext = NULL WHERE name = 'nulled'",
    );
    sqlite(
        &server,
        "UPDATE credentials SET secret_ciphertext = X'' WHERE name = 'emptied'",
    );
    let refused = server.cli(ADMIN_TOKEN, &["key", "rotate"], None);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    for name in ["emptied", "nulled"] {
        assert!(
            message.contains(&format!("credential rk:~admin:credential/{name}")),
            "{message}"
        );
    }
    assert!(!message.contains("internal"), "{message}");
    let rotated = ok(&server.cli(
        ADMIN_TOKEN,
        &["key", "rotate", "--skip-unreadable", "--output", "json"],
        None,
    ));
    let rotated: wire::KeyRotation = serde_json::from_str(&rotated).unwrap();
    assert_eq!(
        (rotated.rewrapped, rotated.skipped.len()),
        (1, 2),
        "{rotated:?}"
    );
    assert!(!server.log().contains("request.internal_error"));
}

fn metric(server: &TestServer, name: &str) -> Option<String> {
    let (_, metrics) = raw(server, "GET", "/metrics", None, None, None);
    metrics
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().last().map(str::to_owned))
}

/// `key status` now, with no wait for the server's 10 s reload tick: the status
/// compares the file itself.
fn key_file_now(server: &TestServer, expected: &str) -> wire::KeyStatus {
    let status = key_status(server);
    assert_eq!(status.key_file.as_deref(), Some(expected), "{status:?}");
    status
}

/// Issue 12 item 21: another deployment's valid key file moved over the running
/// server's is reported by `key status`, a warning logged once and
/// `regkeeper_master_key_file_mismatch`; `key rotate` refuses and leaves the file as
/// the operator put it; the original back, all is well again. Each is seen at once
/// (`key status` checks the file itself), not after the reload tick.
#[test]
fn a_replaced_key_file_is_reported_and_never_overwritten() {
    let server = TestServer::start();
    let _: wire::Credential = server
        .admin()
        .post(CREDENTIALS, &input("kept", "kept-secret"))
        .unwrap();
    let key_path = server.data_dir.join("master.key");
    let ours = std::fs::read(&key_path).unwrap();
    let stranger = TestServer::start();
    let theirs_path = stranger.data_dir.join("master.key");
    let theirs = std::fs::read(&theirs_path).unwrap();
    let _stranger = stranger.stop();
    assert_eq!(key_file_now(&server, "matches").current_version, Some(1));
    assert_eq!(
        metric(&server, "regkeeper_master_key_file_mismatch").as_deref(),
        Some("0")
    );

    std::fs::rename(&theirs_path, &key_path).unwrap();
    let status = key_file_now(&server, "differs");
    assert_eq!(
        status.key_file_problem.as_deref(),
        Some("its version 1 is a different key"),
        "{status:?}"
    );
    let printed = ok(&server.cli(ADMIN_TOKEN, &["key", "status"], None));
    assert!(
        printed.contains("no longer holds the loaded keys"),
        "{printed}"
    );
    assert_eq!(
        metric(&server, "regkeeper_master_key_file_mismatch").as_deref(),
        Some("1")
    );
    let refused = server.cli(ADMIN_TOKEN, &["key", "rotate"], None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("master_key_file_changed")
            || stderr(&refused).contains("no longer holds the keys"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        theirs,
        "left as it was put"
    );
    // The server serves on from memory meanwhile.
    let (status, body) = raw(
        &server,
        "POST",
        "/api/v1/workspaces/%7Eadmin/resolve",
        Some(ADMIN_TOKEN),
        Some("application/json"),
        Some(br#"{"reference":"kept"}"#),
    );
    assert_eq!(status, 200, "{body}");

    std::fs::write(&key_path, &ours).unwrap();
    key_file_now(&server, "matches");
    assert_eq!(
        metric(&server, "regkeeper_master_key_file_mismatch").as_deref(),
        Some("0")
    );
    let log = server.log();
    assert_eq!(
        log.matches("master_key.file_mismatch").count(),
        1,
        "one warning per change:\n{log}"
    );
    assert!(log.contains("master_key.file_matches"), "{log}");
    let rotated = ok(&server.cli(ADMIN_TOKEN, &["key", "rotate", "--output", "json"], None));
    let rotated: wire::KeyRotation = serde_json::from_str(&rotated).unwrap();
    assert_eq!(rotated.current_version, 2);
}
