//! Backups and restores as the README tells operators to take them: `regkeeper backup`
//! of a running SQLite server, restored with `regkeeper restore` into a fresh data
//! directory holding the key file, then served; and the documented `pg_dump` /
//! `pg_restore` recipe for PostgreSQL. Neither backup holds a secret in plain text.

use std::path::Path;
use std::process::Output;

use regkeeper_wire as wire;

use super::support::{
    binary, contains, ok, stderr, stdout, PostgresDatabase, ServerOptions, TestServer, ADMIN_TOKEN,
};

const CREDENTIALS: &str = "/api/v1/workspaces/%7Eadmin/credentials";

fn add_credential(server: &TestServer, name: &str, password: &str) {
    let _: wire::Credential = server
        .admin()
        .post(
            CREDENTIALS,
            &wire::CredentialInput {
                name: Some(name.into()),
                registry: Some(format!("{name}.example.com")),
                username: Some("robot".into()),
                password: Some(wire::Sensitive::new(password)),
                verify: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
}

fn resolve_secret(server: &TestServer, image: &str) -> String {
    let resolved: wire::Resolved =
        serde_json::from_str(&ok(&server.cli(ADMIN_TOKEN, &["resolve", image], None))).unwrap();
    resolved.secret.expose().to_owned()
}

/// `regkeeper restore` as an operator runs it on the server's machine: only the data
/// directory set, no server URL or token.
fn restore(file: &Path, data_dir: &Path, extra: &[&str]) -> Output {
    let mut command = std::process::Command::new(binary());
    command
        .arg("restore")
        .arg(file)
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("REGKEEPER_DATA_DIR", data_dir);
    command.output().unwrap()
}

/// A fresh data directory holding a copy of `from`'s master key file.
fn data_dir_with_key_of(from: &Path, parent: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = parent.join("restored");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(from.join("master.key"), data_dir.join("master.key")).unwrap();
    data_dir
}

#[test]
fn a_running_sqlite_server_is_backed_up_and_restored_into_a_fresh_data_dir() {
    let server = TestServer::start();
    let password = format!("backup-canary-{}", uuid::Uuid::new_v4().simple());
    add_credential(&server, "before", &password);
    let temporary = tempfile::tempdir().unwrap();
    let backup = temporary.path().join("regkeeper-backup.db");
    let backup_text = backup.to_string_lossy().into_owned();

    // Writes go on while the backup is taken; the snapshot is whatever was committed
    // when it began.
    let writer = {
        let client = server.admin();
        std::thread::spawn(move || {
            for index in 0..20 {
                let _: wire::Credential = client
                    .post(
                        CREDENTIALS,
                        &wire::CredentialInput {
                            name: Some(format!("during-{index}")),
                            registry: Some(format!("during-{index}.example.com")),
                            username: Some("robot".into()),
                            password: Some(wire::Sensitive::new("during-password")),
                            verify: Some(false),
                            ..Default::default()
                        },
                    )
                    .unwrap();
            }
        })
    };
    let said = ok(&server.cli(ADMIN_TOKEN, &["backup", &backup_text], None));
    writer.join().unwrap();
    assert!(
        said.contains("bytes") && said.contains("not the master key"),
        "{said}"
    );
    let bytes = std::fs::read(&backup).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"));
    assert!(
        !contains(&bytes, &password),
        "the backup holds the password in plain text"
    );
    assert!(
        !contains(&bytes, ADMIN_TOKEN),
        "the backup holds an API token in plain text"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the backup is readable by others: {mode:o}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&server.data_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".backup-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "snapshot files left behind: {leftovers:?}"
    );
    add_credential(&server, "after", "after-password");

    // An existing file is not replaced by accident.
    let again = server.cli(ADMIN_TOKEN, &["backup", &backup_text], None);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&backup).unwrap(), bytes);

    let restored_dir = data_dir_with_key_of(&server.data_dir, temporary.path());
    let said = ok(&restore(&backup, &restored_dir, &[]));
    assert!(said.contains("Restored"), "{said}");
    let restored = TestServer::start_with(ServerOptions {
        data_dir: Some(restored_dir.clone()),
        ..ServerOptions::default()
    });
    assert_eq!(
        resolve_secret(&restored, "before.example.com/app:1"),
        password
    );
    let list: wire::CredentialList = restored.admin().get(CREDENTIALS).unwrap();
    assert!(
        list.credentials
            .iter()
            .all(|credential| credential.name != "after"),
        "the backup holds only what was committed when it was taken"
    );
    let verified = ok(&restored.cli(ADMIN_TOKEN, &["audit", "verify"], None));
    assert!(verified.contains("intact"), "{verified}");
    let audit = ok(&restored.cli(ADMIN_TOKEN, &["audit", "list", "--output", "json"], None));
    assert!(
        audit.contains("database.backup"),
        "the backup records itself: {audit}"
    );

    // A running server's database is not replaced under it, with or without --force.
    let refused = restore(&backup, &restored_dir, &[]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    let in_use = restore(&backup, &restored_dir, &["--force"]);
    assert!(!in_use.status.success(), "{}", stdout(&in_use));
    assert!(
        stderr(&in_use).contains("stop the server"),
        "{}",
        stderr(&in_use)
    );

    // Stopped, --force restores and keeps the replaced database aside.
    add_credential(&restored, "after-restore", "x");
    let stopped = restored.stop();
    let said = ok(&restore(&backup, &stopped.path, &["--force"]));
    assert!(said.contains("kept as"), "{said}");
    let kept: Vec<_> = std::fs::read_dir(&stopped.path)
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("regkeeper.db.before-restore-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    let restarted = TestServer::start_with(ServerOptions {
        data_dir: Some(stopped.path.clone()),
        ..ServerOptions::default()
    });
    let list: wire::CredentialList = restarted.admin().get(CREDENTIALS).unwrap();
    assert!(list
        .credentials
        .iter()
        .all(|credential| credential.name != "after-restore"));
}

#[test]
fn a_restore_refuses_what_is_not_a_usable_backup() {
    let temporary = tempfile::tempdir().unwrap();
    let data_dir = temporary.path().join("data");
    let garbage = temporary.path().join("garbage.db");
    std::fs::write(&garbage, "rk_not_a_database_at_all").unwrap();
    let refused = restore(&garbage, &data_dir, &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("is not an SQLite database"),
        "{}",
        stderr(&refused)
    );
    assert!(!data_dir.join("regkeeper.db").exists());

    // A backup of a newer release (a migration this one does not know).
    let server = TestServer::start();
    let backup = temporary.path().join("newer.db");
    ok(&server.cli(ADMIN_TOKEN, &["backup", &backup.to_string_lossy()], None));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            // Kept in the rollback journal mode `VACUUM INTO` wrote it in.
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&backup)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99990101, 'newer', TRUE, X'00', 1)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        });
    let refused = restore(&backup, &data_dir, &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("newer regkeeper"),
        "{}",
        stderr(&refused)
    );
    assert!(!data_dir.join("regkeeper.db").exists());
    assert!(
        match std::fs::read_dir(&data_dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(_) => true,
        },
        "a refused restore leaves nothing behind"
    );

    // Without the key file, the restore warns that the secrets will not open.
    let good = temporary.path().join("good.db");
    ok(&server.cli(ADMIN_TOKEN, &["backup", &good.to_string_lossy()], None));
    let keyless = temporary.path().join("keyless");
    let restored = restore(&good, &keyless, &[]);
    ok(&restored);
    assert!(
        stderr(&restored).contains("there is no key file"),
        "{}",
        stderr(&restored)
    );
}

#[test]
fn backups_need_a_site_administrator() {
    let server = TestServer::start();
    let created: wire::UserCreated = server
        .admin()
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: "bob".into(),
                admin: false,
            },
        )
        .unwrap();
    let temporary = tempfile::tempdir().unwrap();
    let file = temporary.path().join("bob.db");
    let refused = server.cli(
        created.token.expose(),
        &["backup", &file.to_string_lossy()],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("needs a site administrator"),
        "{}",
        stderr(&refused)
    );
    assert!(std::fs::read_dir(temporary.path())
        .unwrap()
        .next()
        .is_none());
}

/// The README's PostgreSQL recipe, as written: `regkeeper backup` refuses and prints
/// it; `pg_dump --format=custom` of the running server's database, `pg_restore` into a
/// new database, a server started on it with the key file, and a resolve.
#[test]
fn postgres_is_backed_up_with_the_documented_pg_dump_recipe() {
    let Some(original) = PostgresDatabase::create() else {
        return;
    };
    let server = TestServer::start_with(ServerOptions {
        database_url: Some(original.url.clone()),
        ..ServerOptions::default()
    });
    let password = format!("pg-backup-canary-{}", uuid::Uuid::new_v4().simple());
    add_credential(&server, "kept", &password);
    let temporary = tempfile::tempdir().unwrap();

    let refused = server.cli(
        ADMIN_TOKEN,
        &["backup", &temporary.path().join("x.db").to_string_lossy()],
        None,
    );
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(said.contains("backup_needs_pg_dump"), "{said}");
    assert!(said.contains(regkeeper::store::PG_DUMP_RECIPE), "{said}");

    let dump = temporary.path().join("regkeeper.pgdump");
    let restored = PostgresDatabase::create().expect("PostgreSQL answered a moment ago");
    // The recipe's commands, with its variables set as an operator would.
    let recipe = format!("set -eu\n{}\n", regkeeper::store::PG_DUMP_RECIPE);
    let ran = std::process::Command::new("bash")
        .arg("-c")
        .arg(&recipe)
        .current_dir(temporary.path())
        .env("REGKEEPER_DATABASE_URL", &original.url)
        .env("NEW_DATABASE_URL", &restored.url)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "the recipe failed: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let bytes = std::fs::read(&dump).unwrap();
    assert!(
        !contains(&bytes, &password),
        "the dump holds the password in plain text"
    );

    let old_data = server.stop();
    let restored_dir = data_dir_with_key_of(&old_data.path, temporary.path());
    let restarted = TestServer::start_with(ServerOptions {
        database_url: Some(restored.url.clone()),
        data_dir: Some(restored_dir),
        ..ServerOptions::default()
    });
    assert_eq!(
        resolve_secret(&restarted, "kept.example.com/app:1"),
        password
    );
    let verified = ok(&restarted.cli(ADMIN_TOKEN, &["audit", "verify"], None));
    assert!(verified.contains("intact"), "{verified}");
}
