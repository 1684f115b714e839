//! Issue 12 item 10: a PostgreSQL that is up but refuses us — a database set read-only
//! (as a standby after a fail-over is), or one that does not accept connections
//! (`ALTER DATABASE … ALLOW_CONNECTIONS false`) — answers 503 with `Retry-After`
//! within the documented wait on every endpoint, never 500, and service resumes by
//! itself once the database accepts us again.

use std::time::Duration;

use super::{
    api, docker_credential, log_tail, password_of, resolve_secret, server_holding_steady,
    CREDENTIALS,
};
use crate::support::{poll_until, PostgresDatabase, TestServer};

/// The pool waits at most 3 s for a connection (README, "Errors"); a second of slack
/// for the request around it.
const DOCUMENTED_WAIT: Duration = Duration::from_secs(4);

/// Ends every session of the test database but ours, so the server's pooled
/// connections go and new ones meet the database's new settings.
fn drop_sessions(database: &PostgresDatabase) -> String {
    format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        database.name
    )
}

fn assert_unavailable(answer: &super::Answer, what: &str, server: &TestServer) {
    assert_eq!(
        answer.status,
        503,
        "{what}: {}\nserver log:\n{}",
        answer.body,
        log_tail(server)
    );
    assert_eq!(answer.retry_after.as_deref(), Some("5"), "{what}");
    assert!(
        answer.elapsed < DOCUMENTED_WAIT,
        "{what} took {:?}",
        answer.elapsed
    );
    let (code, message) = answer.error();
    assert_eq!(code, "database_unavailable", "{what}: {message}");
}

fn wait_for_resolve(server: &TestServer) {
    let mut last = None;
    let recovered = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let answer = resolve_secret(&server.url, "steady");
        if answer.status == 200 {
            return Some(answer);
        }
        last = Some(format!("{} {}", answer.status, answer.body));
        None
    });
    let Some((answer, _)) = recovered else {
        panic!("no recovery: {}", last.unwrap_or_default());
    };
    assert_eq!(answer.json()["secret"], password_of("steady").as_str());
}

/// Issue 12 item 10: a resolve whose audit append meets a read-only database, and every
/// endpoint of a database with `ALLOW_CONNECTIONS false`, answer 503 `database_unavailable`
/// with `Retry-After` within the documented wait (they answered 500 `internal`).
#[test]
fn a_database_that_refuses_us_answers_503_with_retry_after_and_recovers() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    let server = server_holding_steady(database.url.clone());
    wait_for_resolve(&server);

    // Read-only (25006): the resolve's reads work, its audit append cannot be written.
    database.as_admin(&[
        &format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            database.name
        ),
        &drop_sessions(&database),
    ]);
    assert_unavailable(
        &resolve_secret(&server.url, "steady"),
        "resolve on a read-only database",
        &server,
    );
    let add = api(
        &server.url,
        "POST",
        CREDENTIALS,
        Some(docker_credential(
            "later",
            "later.registry.example",
            &password_of("later"),
            false,
        )),
    );
    assert_unavailable(&add, "add on a read-only database", &server);
    database.as_admin(&[
        &format!(
            "ALTER DATABASE {} RESET default_transaction_read_only",
            database.name
        ),
        &drop_sessions(&database),
    ]);
    wait_for_resolve(&server);

    // Not accepting connections (55000): every endpoint.
    database.as_admin(&[
        &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", database.name),
        &drop_sessions(&database),
    ]);
    assert_unavailable(
        &resolve_secret(&server.url, "steady"),
        "resolve while connections are refused",
        &server,
    );
    for (method, path) in [
        ("GET", CREDENTIALS),
        ("GET", "/api/v1/workspaces/%7Eadmin/credentials/steady"),
        ("GET", "/api/v1/workspaces"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/tokens"),
    ] {
        let answer = api(&server.url, method, path, None);
        assert_unavailable(&answer, &format!("{method} {path}"), &server);
    }
    let ready = api(&server.url, "GET", "/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.retry_after.as_deref(), Some("5"));

    database.as_admin(&[&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        database.name
    )]);
    wait_for_resolve(&server);
    assert_eq!(api(&server.url, "GET", "/readyz", None).status, 200);
    assert!(
        !server.log().contains("request.internal_error"),
        "a refusal became a 500:\n{}",
        log_tail(&server)
    );
}
