//! Issue 15 part 1: `regkeeper key migrate --to-kms` and `--to-file` on a running
//! deployment, with the server killed (SIGKILL) in the middle: after the new keyring
//! was staged (KMS call held by the relay), and half-way through re-wrapping (a
//! credential row locked in PostgreSQL). The restarted server serves from wherever the
//! database says, the same command finishes the move, every secret still resolves, no
//! ciphertext changed, and each data key was re-wrapped exactly once (counted).

use std::time::Duration;

use regkeeper_wire as wire;

use super::kms::{add, key_status, readyz, resolved_password, Database, Kms};
use crate::support::{
    eventually, ok, run_cli, PostgresDatabase, ServerOptions, TestServer, ADMIN_TOKEN,
};

const CREDENTIALS_HELD: usize = 24;

fn names() -> Vec<String> {
    (0..CREDENTIALS_HELD)
        .map(|index| format!("cred-{index:02}"))
        .collect()
}

fn secret(name: &str) -> String {
    format!("{name}-migrated-secret")
}

/// Each credential's ciphertext (hex), by name: a migration must leave them alone.
fn ciphertexts(database: &Database, server: &TestServer) -> Vec<Vec<String>> {
    database.query(
        &server.data_dir,
        "SELECT name, secret_ciphertext FROM credentials ORDER BY name",
    )
}

/// How many credentials' data keys are wrapped by master key `version`.
fn wrapped_by(database: &Database, server: &TestServer, version: u32) -> usize {
    database
        .query(
            &server.data_dir,
            &format!("SELECT name FROM credentials WHERE secret_key_version = {version}"),
        )
        .len()
}

fn migrate(server: &TestServer, target: &[&str]) -> wire::KeyMigration {
    let args = [&["key", "migrate"], target, &["--output", "json"]].concat();
    serde_json::from_str(&ok(&server.cli(ADMIN_TOKEN, &args, None))).unwrap()
}

/// Runs `key migrate` in a thread (the server will be killed under it).
fn migrate_in_background(server: &TestServer, target: &[&str]) -> std::thread::JoinHandle<()> {
    let url = server.url.clone();
    let args: Vec<String> = [&["key", "migrate"], target]
        .concat()
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = run_cli(&url, ADMIN_TOKEN, &args, None, &[]);
    })
}

fn all_resolve(server: &TestServer) {
    for name in names() {
        assert_eq!(resolved_password(server, &name), secret(&name), "{name}");
    }
}

/// SQLite: file → KMS, killed after the new keyring is staged (the switch's Decrypt
/// held by the relay): the restarted server still serves from its key file and says a
/// migration is staged; the same command finishes it. Then KMS → file, and the server
/// restarted with its old settings follows the database and says so.
#[test]
fn migrate_file_to_kms_killed_after_staging_then_back_to_a_file() {
    let Some(kms) = Kms::start() else { return };
    let database = Database::Sqlite;
    let server = TestServer::start_with(database.options(kms.aws_environment()));
    for name in names() {
        add(&server, &name, &secret(&name));
    }
    let before = ciphertexts(&database, &server);
    let old_key_file = std::fs::read(server.data_dir.join("master.key")).unwrap();

    // The second Decrypt is the switch's (the first verifies the staged keyring).
    kms.relay
        .hold_kms("Decrypt", kms.relay.kms_calls("Decrypt") + 2);
    let to_kms = ["--to-kms", kms.key_id.as_str()];
    let migration = migrate_in_background(&server, &to_kms);
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "the switch waits on KMS",
        || kms.relay.held() == 1,
    );
    let kept = server.kill();
    let data_dir = kept.path.clone();
    kms.relay.release();
    migration.join().unwrap();

    let restart = |environment| {
        TestServer::start_with(ServerOptions {
            data_dir: Some(data_dir.clone()),
            ..database.options(environment)
        })
    };
    let server = restart(kms.aws_environment());
    assert_eq!(readyz(&server), 200, "the key file still serves");
    let status = key_status(&server);
    assert_eq!(status.current_version, Some(1));
    let pending = status.migration.unwrap_or_default();
    assert!(pending.contains("staged"), "{pending}");
    assert!(
        pending.contains(&format!("regkeeper key migrate --to-kms {}", kms.key_id)),
        "{pending}"
    );
    let refused = server.cli(ADMIN_TOKEN, &["key", "rotate"], None);
    assert!(!refused.status.success(), "no rotation during a migration");
    all_resolve(&server);
    assert_eq!(wrapped_by(&database, &server, 2), 0);

    let calls = kms.calls();
    let finished = migrate(&server, &to_kms);
    let after = kms.calls();
    eprintln!(
        "resumed migration to KMS: KMS calls (Decrypt, GenerateDataKey) = {:?}",
        (after.0 - calls.0, after.1 - calls.1)
    );
    assert_eq!(
        (after.0 - calls.0, after.1 - calls.1),
        (1, 0),
        "one Decrypt to switch"
    );
    assert!(finished.resumed);
    assert_eq!(
        (finished.previous_version, finished.current_version),
        (1, 2)
    );
    assert_eq!(
        finished.rewrapped, CREDENTIALS_HELD as u64,
        "each data key once"
    );
    assert_eq!(wrapped_by(&database, &server, 2), CREDENTIALS_HELD);
    assert_eq!(
        ciphertexts(&database, &server),
        before,
        "no secret re-encrypted"
    );
    let status = key_status(&server);
    assert_eq!(
        status.home.as_deref(),
        Some(format!("AWS KMS key {}", kms.key_id).as_str())
    );
    assert_eq!(status.migration, None);
    let mismatch = status.settings_mismatch.unwrap_or_default();
    assert!(
        mismatch.contains("REGKEEPER_MASTER_KEY_KMS_KEY_ID is not set"),
        "{mismatch}"
    );
    assert_eq!(
        std::fs::read(data_dir.join("master.key")).unwrap(),
        old_key_file,
        "the old key file is left as it was (version 1 only)"
    );
    let _ = server.stop();

    // Restarted with the old settings (a key file), it follows the database: KMS.
    let server = restart(kms.aws_environment());
    assert_eq!(readyz(&server), 200);
    assert_eq!(key_status(&server).current_version, Some(2));
    all_resolve(&server);

    let moved = data_dir.join("moved.key");
    let moved_text = moved.display().to_string();
    let back = migrate(&server, &["--to-file", &moved_text]);
    assert!(!back.resumed);
    assert_eq!(
        (back.current_version, back.rewrapped),
        (3, CREDENTIALS_HELD as u64)
    );
    let keys = regkeeper::key_file::load(&moved).unwrap();
    assert_eq!(keys.current_version(), 3);
    assert_eq!(keys.versions().count(), 3);
    assert_eq!(ciphertexts(&database, &server), before);
    let _ = server.stop();
    let server = restart(kms.environment());
    let status = key_status(&server);
    assert_eq!(
        status.home.as_deref(),
        Some(format!("key file {moved_text}").as_str())
    );
    let mismatch = status.settings_mismatch.unwrap_or_default();
    assert!(
        mismatch.contains("unset REGKEEPER_MASTER_KEY_KMS_KEY_ID"),
        "{mismatch}"
    );
    all_resolve(&server);
}

/// Holds a lock on credential `name`'s row in its own connection until dropped, so a
/// re-wrap blocks there.
struct RowLock {
    release: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RowLock {
    fn hold(database: &PostgresDatabase, name: &str) -> Self {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let url = database.url.clone();
        let name = name.to_owned();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    use sqlx::Connection;
                    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                    let mut transaction = connection.begin().await.unwrap();
                    sqlx::query("SELECT id FROM credentials WHERE name = $1 FOR UPDATE")
                        .bind(&name)
                        .fetch_one(&mut *transaction)
                        .await
                        .unwrap();
                    locked.send(()).unwrap();
                    let _ = tokio::task::spawn_blocking(move || released.recv()).await;
                    transaction.rollback().await.unwrap();
                });
        });
        is_locked.recv().unwrap();
        Self {
            release,
            thread: Some(thread),
        }
    }
}

impl Drop for RowLock {
    fn drop(&mut self) {
        let _ = self.release.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether a session of this database waits on a row lock.
fn someone_waits_on_a_lock(database: &Database, data_dir: &std::path::Path) -> bool {
    !database
        .query(
            data_dir,
            "SELECT pid::TEXT FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .is_empty()
}

/// Kills the server while `key migrate ARGS` re-wraps (a row in the middle locked),
/// then restarts it (with `environment`) on its data directory (`kept`, which must
/// outlive it): how many data keys the killed run re-wrapped to `version`, and the
/// restarted server.
fn killed_while_rewrapping(
    database: &Database,
    server: TestServer,
    args: &[&str],
    version: u32,
    environment: Vec<(String, String)>,
    kept: &mut Vec<crate::support::DataDir>,
) -> (usize, TestServer) {
    let Database::Postgres(postgres) = database else {
        unreachable!("row locks are PostgreSQL's")
    };
    // Re-wrapped in id order: lock the middle one.
    let ids = database.query(&server.data_dir, "SELECT name FROM credentials ORDER BY id");
    let lock = RowLock::hold(postgres, &ids[CREDENTIALS_HELD / 2][0]);
    let migration = migrate_in_background(&server, args);
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "the re-wrap waits on the locked row",
        || someone_waits_on_a_lock(database, &server.data_dir),
    );
    let data_dir = server.kill();
    drop(lock);
    migration.join().unwrap();
    let server = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir.path.clone()),
        ..database.options(environment)
    });
    kept.push(data_dir);
    let done = wrapped_by(database, &server, version);
    eprintln!(
        "killed while re-wrapping to version {version}: {done} of {CREDENTIALS_HELD} re-wrapped"
    );
    (done, server)
}

/// PostgreSQL: file → KMS → file, each killed half-way through re-wrapping. The
/// restarted server serves from the new home at once (the switch was recorded), every
/// secret resolves, and running the command again re-wraps exactly the rest.
#[test]
fn migrate_file_to_kms_to_file_killed_while_rewrapping() {
    let Some(kms) = Kms::start() else { return };
    let Some(postgres) = PostgresDatabase::create() else {
        return;
    };
    let database = Database::Postgres(postgres);
    let server = TestServer::start_with(database.options(kms.aws_environment()));
    for name in names() {
        add(&server, &name, &secret(&name));
    }
    let before = ciphertexts(&database, &server);
    let mut kept = Vec::new();

    let to_kms = ["--to-kms", kms.key_id.as_str()];
    let (done, server) = killed_while_rewrapping(
        &database,
        server,
        &to_kms,
        2,
        kms.aws_environment(),
        &mut kept,
    );
    assert!(
        done > 0 && done < CREDENTIALS_HELD,
        "killed half-way: {done} of {CREDENTIALS_HELD} re-wrapped"
    );
    assert_eq!(readyz(&server), 200);
    let status = key_status(&server);
    assert_eq!(
        status.current_version,
        Some(2),
        "the new home serves at once"
    );
    assert!(status.migration.unwrap_or_default().contains("switched"));
    all_resolve(&server);
    let finished = migrate(&server, &to_kms);
    assert!(finished.resumed);
    assert_eq!(
        finished.rewrapped as usize + done,
        CREDENTIALS_HELD,
        "each data key re-wrapped once"
    );
    assert_eq!(wrapped_by(&database, &server, 2), CREDENTIALS_HELD);
    assert_eq!(ciphertexts(&database, &server), before);

    let moved = server.data_dir.join("moved.key");
    let moved_text = moved.display().to_string();
    let to_file = ["--to-file", moved_text.as_str()];
    let (done, server) =
        killed_while_rewrapping(&database, server, &to_file, 3, kms.environment(), &mut kept);
    assert!(done > 0 && done < CREDENTIALS_HELD, "{done}");
    let status = key_status(&server);
    assert_eq!(status.current_version, Some(3));
    assert_eq!(
        status.home.as_deref(),
        Some(format!("key file {moved_text}").as_str())
    );
    all_resolve(&server);
    let finished = migrate(&server, &to_file);
    assert!(finished.resumed);
    assert_eq!(finished.rewrapped as usize + done, CREDENTIALS_HELD);
    assert_eq!(wrapped_by(&database, &server, 3), CREDENTIALS_HELD);
    assert_eq!(ciphertexts(&database, &server), before);
    assert_eq!(key_status(&server).migration, None);
    all_resolve(&server);
}
