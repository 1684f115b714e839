//! Upgrades: a database made with the first migration set (`0001_foundation`, the
//! first release's schema) and rows as that release wrote them
//! (`tests/fixtures/upgrade/`) is served by the current server, which applies every
//! later migration at start, on SQLite and PostgreSQL; and a database migrated by a
//! newer release is refused by an older binary, naming the way back.
//!
//! The fixtures hold rows only: the test applies migration 0001 itself, with sqlx, from
//! the migration file that no release may edit (sqlx's checksum would refuse it). The
//! rows were written by `regenerate_upgrade_fixtures` below (run it with `--ignored`
//! after changing it), which seals the secrets under the fixture's key file with the
//! crypto and JSON formats the first release used (`regkeeper/v1` associated data, the
//! `{"password":…}` plaintext, key file format `regkeeper-master-keys/v1`), unchanged
//! since.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use regkeeper_wire as wire;

use super::support::{ok, poll_until, PostgresDatabase, ServerOptions, TestServer};

/// The fixture's API tokens (their hashes are in the fixture).
const ADMIN_TOKEN: &str = "rk_upgrade_fixture_admin_token_0123456789abcdef";
const ALICE_TOKEN: &str = "rk_upgrade_fixture_alice_token_0123456789abcdef";
/// The fixture's registry passwords, sealed in it.
const QUAY_PASSWORD: &str = "upgrade-fixture-quay-password-7f3a";
const GHCR_PASSWORD: &str = "upgrade-fixture-ghcr-token-91c2";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The first migration of `backend`'s set, as sqlx reads it from the repository.
async fn first_migration(backend: &str) -> sqlx::migrate::Migrator {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut migrator = sqlx::migrate::Migrator::new(directory).await.unwrap();
    let first = migrator.migrations[0].clone();
    assert_eq!(first.version, 1, "the first migration is 0001_foundation");
    migrator.migrations = vec![first].into();
    migrator
}

/// A data directory holding the fixture's master key file, as the first release made it.
fn data_dir_with_fixture_key(parent: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = parent.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = data_dir.join("master.key");
    std::fs::copy(fixtures().join("master.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    data_dir
}

/// What the first release's users see after the upgrade: their credentials, secrets
/// that still open, their tokens, an intact audit chain, and what later releases added
/// (workload roles) working on the upgraded database.
fn assert_served_after_upgrade(server: &TestServer) {
    let whoami: serde_json::Value = serde_json::from_str(&ok(&server.cli(
        ALICE_TOKEN,
        &["whoami", "--output", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(whoami["name"], "alice", "{whoami}");
    let workspaces = whoami["workspaces"].to_string();
    assert!(
        workspaces.contains("acme/ci") && workspaces.contains("maintain"),
        "{workspaces}"
    );

    let list: wire::CredentialList = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "list",
            "--workspace",
            "acme/ci",
            "--output",
            "json",
        ],
        None,
    )))
    .unwrap();
    let mut names: Vec<(&str, &str, &str)> = list
        .credentials
        .iter()
        .map(|credential| {
            (
                credential.name.as_str(),
                credential.kind.as_str(),
                credential.registry.as_str(),
            )
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            (
                "ecr-prod",
                "ecr",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com"
            ),
            ("quay-robot", "docker", "quay.io"),
        ]
    );

    let resolved: wire::Resolved = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &["resolve", "quay.io/acme/app:1", "--workspace", "acme/ci"],
        None,
    )))
    .unwrap();
    assert_eq!(resolved.username, "acme+robot");
    assert_eq!(resolved.secret.expose(), QUAY_PASSWORD);
    let resolved: wire::Resolved = serde_json::from_str(&ok(&server.cli(
        ALICE_TOKEN,
        &["resolve", "ghcr.io/alice/tool:2"],
        None,
    )))
    .unwrap();
    assert_eq!(resolved.secret.expose(), GHCR_PASSWORD);

    let verified = ok(&server.cli(ADMIN_TOKEN, &["audit", "verify"], None));
    assert!(verified.contains("intact"), "{verified}");

    // Migration 0003's workload roles, on the upgraded database.
    let policy = r#"{"Version": "2026-11-01", "Statement": [{"Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/quay-robot"}]}"#;
    let created = server.cli(
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
    );
    ok(&created);
}

#[test]
fn a_first_release_sqlite_database_is_upgraded_and_served() {
    let temporary = tempfile::tempdir().unwrap();
    let data_dir = data_dir_with_fixture_key(temporary.path());
    let database = data_dir.join("regkeeper.db");
    let rows = std::fs::read_to_string(fixtures().join("sqlite-0001.sql")).unwrap();
    runtime().block_on(async {
        use sqlx::sqlite::SqliteConnectOptions;
        let options = SqliteConnectOptions::new()
            .filename(&database)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        first_migration("sqlite").await.run(&pool).await.unwrap();
        sqlx::raw_sql(&rows).execute(&pool).await.unwrap();
        pool.close().await;
    });
    let server = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir),
        ..ServerOptions::default()
    });
    assert_served_after_upgrade(&server);
}

#[test]
fn a_first_release_postgres_database_is_upgraded_and_served() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    let rows = std::fs::read_to_string(fixtures().join("postgres-0001.sql")).unwrap();
    runtime().block_on(async {
        let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
        first_migration("postgres").await.run(&pool).await.unwrap();
        sqlx::raw_sql(&rows).execute(&pool).await.unwrap();
        pool.close().await;
    });
    let temporary = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(ServerOptions {
        database_url: Some(database.url.clone()),
        data_dir: Some(data_dir_with_fixture_key(temporary.path())),
        ..ServerOptions::default()
    });
    assert_served_after_upgrade(&server);
}

/// Rolling back the binary without rolling back the database: sqlx finds a migration
/// it does not know and refuses to start, changing nothing, and the error says what
/// to do.
#[test]
fn an_older_binary_refuses_a_database_a_newer_release_migrated() {
    let server = TestServer::start();
    let credential = ok(&server.cli(
        super::support::ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--name",
            "kept",
            "--registry",
            "quay.io",
            "--username",
            "u",
            "--password-stdin",
            "--no-verify",
        ],
        Some("kept-password"),
    ));
    assert!(credential.contains("kept"), "{credential}");
    let data = server.stop();
    let database = data.path.join("regkeeper.db");
    let future = 99_990_101_i64;
    runtime().block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, 'from a newer release', TRUE, X'00', 1)",
        )
        .bind(future)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    let before = std::fs::read(&database).unwrap();
    let mut child = Command::new(super::support::binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("REGKEEPER_DATA_DIR", &data.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        child.try_wait().unwrap()
    });
    let Some((status, _)) = exited else {
        let _ = child.kill();
        panic!("the server started on a database with an unknown migration");
    };
    assert!(!status.success());
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors).unwrap();
    for expected in [
        &format!("migration {future}"),
        "does not know",
        "restoring the backup taken before the upgrade",
    ] {
        assert!(errors.contains(expected), "{expected}: {errors}");
    }
    assert_eq!(std::fs::read(&database).unwrap(), before, "nothing changed");
}

/// Writes `tests/fixtures/upgrade/{sqlite,postgres}-0001.sql`: the rows the first
/// release wrote for a small team, sealed under `master.key` (kept if present).
#[test]
#[ignore = "regenerates the upgrade fixtures; run with --ignored and commit the result"]
fn regenerate_upgrade_fixtures() {
    use regkeeper::audit::{AuditRecord, AuditRow};
    use regkeeper::crypto::{key_check, Binding, Key, MasterKeys};

    let directory = fixtures();
    std::fs::create_dir_all(&directory).unwrap();
    let key_path = directory.join("master.key");
    let key = match std::fs::read_to_string(&key_path) {
        Ok(text) => {
            let file: serde_json::Value = serde_json::from_str(&text).unwrap();
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(file["keys"][0]["key"].as_str().unwrap())
                .unwrap();
            Key::from_bytes(&bytes).unwrap()
        }
        Err(_) => {
            let key = Key::generate();
            use base64::Engine;
            let text = serde_json::json!({
                "format": "regkeeper-master-keys/v1",
                "current": 1,
                "keys": [{"version": 1, "key": base64::engine::general_purpose::STANDARD.encode(key.expose_bytes())}],
            });
            std::fs::write(&key_path, format!("{text:#}\n")).unwrap();
            key
        }
    };
    let check = key_check(&key, 1);
    let keys = MasterKeys::from_parts(1, [(1, key)].into_iter().collect()).unwrap();

    let at = |minutes: i64| 1_764_000_000_000 + minutes * 60_000;
    let (admin, alice) = (
        "0b5d6a2e-0001-4000-8000-000000000001",
        "0b5d6a2e-0001-4000-8000-000000000002",
    );
    let (w_admin, w_alice, w_acme) = (
        "0b5d6a2e-0002-4000-8000-000000000001",
        "0b5d6a2e-0002-4000-8000-000000000002",
        "0b5d6a2e-0002-4000-8000-000000000003",
    );
    let (quay, ecr, ghcr) = (
        "0b5d6a2e-0003-4000-8000-000000000001",
        "0b5d6a2e-0003-4000-8000-000000000002",
        "0b5d6a2e-0003-4000-8000-000000000003",
    );
    let seal = |workspace: &str, credential: &str, secret: serde_json::Value| {
        keys.seal(
            secret.to_string().as_bytes(),
            Binding {
                purpose: "credential-secret",
                workspace_id: workspace,
                owner_id: credential,
                version: 1,
            },
        )
    };
    let quay_sealed = seal(
        w_acme,
        quay,
        serde_json::json!({ "password": QUAY_PASSWORD }),
    );
    let ecr_sealed = seal(
        w_acme,
        ecr,
        serde_json::json!({ "password": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" }),
    );
    let ghcr_sealed = seal(
        w_alice,
        ghcr,
        serde_json::json!({ "password": GHCR_PASSWORD }),
    );

    let hash = |token: &str| regkeeper::service::identity::hash_token(token);
    let mut audit = Vec::new();
    let mut previous: Option<(i64, String)> = None;
    let mut append = |record: AuditRecord| {
        let row = AuditRow::chained(record, previous.take());
        previous = Some((row.seq, row.hash.clone()));
        audit.push(row);
    };
    let entry = |minutes, actor: &str, action: &'static str| {
        let mut record = AuditRecord::new(at(minutes), None, action);
        record.actor = actor.to_owned();
        record
    };
    append(entry(0, "system", "user.create").target("admin"));
    append(entry(1, "admin", "user.create").target("alice"));
    append(
        entry(2, "admin", "workspace.create")
            .workspace(Some(w_acme), "acme/ci")
            .target("acme/ci"),
    );
    append(
        entry(3, "admin", "member.put")
            .workspace(Some(w_acme), "acme/ci")
            .target("alice")
            .detail(serde_json::json!({"role": "maintain"})),
    );
    append(
        entry(4, "admin", "credential.create")
            .workspace(Some(w_acme), "acme/ci")
            .target("quay-robot"),
    );
    append(
        entry(5, "admin", "credential.create")
            .workspace(Some(w_acme), "acme/ci")
            .target("ecr-prod"),
    );
    append(
        entry(6, "alice", "credential.create")
            .workspace(Some(w_alice), "~alice")
            .target("ghcr"),
    );
    append(
        entry(7, "alice", "credential.resolve")
            .workspace(Some(w_alice), "~alice")
            .target("ghcr"),
    );

    let sqlite_blob = |bytes: &[u8]| format!("X'{}'", hex::encode(bytes));
    let postgres_blob = |bytes: &[u8]| format!("'\\x{}'::bytea", hex::encode(bytes));
    type Blob<'a> = &'a dyn Fn(&[u8]) -> String;
    let files: [(&str, Blob); 2] = [
        ("sqlite-0001.sql", &sqlite_blob),
        ("postgres-0001.sql", &postgres_blob),
    ];
    for (file, blob) in files {
        let text = |value: &str| format!("'{}'", value.replace('\'', "''"));
        let optional = |value: &Option<String>| value.as_deref().map_or("NULL".to_owned(), text);
        let mut sql = String::from(
            "-- Rows as regkeeper's first release (migration 0001_foundation) wrote them for a\n\
             -- small team; generated by tests/it/upgrades.rs regenerate_upgrade_fixtures.\n\
             -- Secrets are sealed under master.key beside this file (a test key).\n",
        );
        sql.push_str(&format!(
            "INSERT INTO users (id, name, is_admin, created_at) VALUES\n  ('{admin}', 'admin', TRUE, {}),\n  ('{alice}', 'alice', FALSE, {});\n",
            at(0),
            at(1)
        ));
        sql.push_str(&format!(
            "INSERT INTO workspaces (id, name, kind, created_at) VALUES\n  ('{w_admin}', '~admin', 'personal', {}),\n  ('{w_alice}', '~alice', 'personal', {}),\n  ('{w_acme}', 'acme/ci', 'organization', {});\n",
            at(0),
            at(1),
            at(2)
        ));
        sql.push_str(&format!(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES\n  ('{w_admin}', '{admin}', 'owner', {}),\n  ('{w_alice}', '{alice}', 'owner', {}),\n  ('{w_acme}', '{admin}', 'owner', {}),\n  ('{w_acme}', '{alice}', 'maintain', {});\n",
            at(0),
            at(1),
            at(2),
            at(3)
        ));
        sql.push_str(&format!(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, display_prefix, created_at, expires_at, revoked_at, last_used_at) VALUES\n  ('0b5d6a2e-0004-4000-8000-000000000001', '{admin}', 'bootstrap', '{}', '{}', {}, NULL, NULL, {}),\n  ('0b5d6a2e-0004-4000-8000-000000000002', '{alice}', 'laptop', '{}', '{}', {}, NULL, NULL, NULL);\n",
            hash(ADMIN_TOKEN),
            &ADMIN_TOKEN[..10],
            at(0),
            at(7),
            hash(ALICE_TOKEN),
            &ALICE_TOKEN[..10],
            at(1)
        ));
        sql.push_str(&format!(
            "INSERT INTO master_key_checks (version, check_value, created_at) VALUES (1, {}, {});\n",
            blob(&check),
            at(0)
        ));
        let credential = |id: &str,
                          workspace: &str,
                          name: &str,
                          kind: &str,
                          method: &str,
                          host: &str,
                          prefix: &str,
                          username: &str,
                          settings: &str,
                          sealed: &regkeeper::domain::credential::SealedSecret,
                          minutes: i64,
                          by: &str| {
            format!(
                "  ('{id}', '{workspace}', '{name}', '{kind}', '{method}', '{host}', '{prefix}', '{username}', '{settings}', {}, {}, {}, 1, 1, {}, {}, '{by}', 'skipped', NULL, NULL)",
                blob(&sealed.ciphertext),
                blob(&sealed.wrapped_key),
                sealed.key_version,
                at(minutes),
                at(minutes)
            )
        };
        sql.push_str(
            "INSERT INTO credentials (id, workspace_id, name, kind, auth_method, registry_host, path_prefix, username, settings, secret_ciphertext, secret_wrapped_key, secret_key_version, secret_version, revision, created_at, updated_at, created_by, verify_status, verify_message, verified_at) VALUES\n",
        );
        sql.push_str(
            &[
                credential(
                    quay,
                    w_acme,
                    "quay-robot",
                    "docker",
                    "password",
                    "quay.io",
                    "",
                    "acme+robot",
                    "{}",
                    &quay_sealed,
                    4,
                    "admin",
                ),
                credential(
                    ecr,
                    w_acme,
                    "ecr-prod",
                    "ecr",
                    "aws_keys",
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                    "",
                    "AKIAIOSFODNN7EXAMPLE",
                    r#"{"aws_region":"us-east-1"}"#,
                    &ecr_sealed,
                    5,
                    "admin",
                ),
                credential(
                    ghcr,
                    w_alice,
                    "ghcr",
                    "docker",
                    "password",
                    "ghcr.io",
                    "alice",
                    "alice",
                    "{}",
                    &ghcr_sealed,
                    6,
                    "alice",
                ),
            ]
            .join(",\n"),
        );
        sql.push_str(";\n");
        sql.push_str("INSERT INTO audit_log (seq, at, actor, action, workspace, workspace_id, target, outcome, detail, prev_hash, hash) VALUES\n");
        sql.push_str(
            &audit
                .iter()
                .map(|row| {
                    format!(
                        "  ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                        row.seq,
                        row.at,
                        text(&row.actor),
                        text(&row.action),
                        optional(&row.workspace),
                        optional(&row.workspace_id),
                        optional(&row.target),
                        text(&row.outcome),
                        text(&row.detail),
                        text(&row.prev_hash),
                        text(&row.hash)
                    )
                })
                .collect::<Vec<_>>()
                .join(",\n"),
        );
        sql.push_str(";\n");
        std::fs::write(directory.join(file), sql).unwrap();
    }
}

/// The key file in the fixtures is what `regenerate_upgrade_fixtures` sealed with, so
/// the fixtures cannot be regenerated under another key by accident.
#[test]
fn the_upgrade_fixtures_are_sealed_under_their_key_file() {
    let key = std::fs::read_to_string(fixtures().join("master.key")).unwrap();
    assert!(key.contains("regkeeper-master-keys/v1"), "{key}");
    for file in ["sqlite-0001.sql", "postgres-0001.sql"] {
        let rows = std::fs::read_to_string(fixtures().join(file)).unwrap();
        assert!(
            !rows.contains(QUAY_PASSWORD) && !rows.contains(GHCR_PASSWORD),
            "{file} holds a secret in plain text"
        );
        assert!(
            !rows.contains(ADMIN_TOKEN),
            "{file} holds a token in plain text"
        );
    }
}
