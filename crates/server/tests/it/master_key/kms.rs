//! Issue 15 part 1: the keyring wrapped by AWS KMS (moto_server, behind the relay that
//! counts KMS calls and plays KMS down or denying), on SQLite and PostgreSQL: no key
//! material on disk, restarts, rotation, sealed at start then unsealed without a
//! restart, a wrong encryption context, and two replicas sharing one KMS key.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use regkeeper_wire as wire;

use super::{input, CREDENTIALS};
use crate::peers::aws_relay::{AwsRelay, KmsMode};
use crate::peers::moto::{self, Moto};
use crate::support::{
    eventually, files_under, ok, raw, resolve, PostgresDatabase, ServerOptions, TestServer,
    ADMIN_TOKEN,
};

/// moto with one KMS key, and the relay the servers reach it through.
pub struct Kms {
    pub moto: Moto,
    pub relay: AwsRelay,
    pub key_id: String,
}

impl Kms {
    pub fn start() -> Option<Self> {
        let moto = Moto::start()?;
        let relay = AwsRelay::to_moto(&moto);
        let (status, answer) = moto.call_json_api(
            "kms",
            "TrentService.CreateKey",
            &serde_json::json!({"Description": "regkeeper master keyring"}),
        );
        assert_eq!(status, 200, "CreateKey: {answer}");
        let key_id = answer["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        Some(Self {
            moto,
            relay,
            key_id,
        })
    }

    /// The server's own AWS identity and KMS endpoint (the relay), without the KMS key
    /// setting: what a deployment about to migrate has.
    pub fn aws_environment(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_KMS", self.relay.endpoint_url()),
            ("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", moto::REGION.to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// [`Self::aws_environment`] with `REGKEEPER_MASTER_KEY_KMS_KEY_ID`.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut environment = self.aws_environment();
        environment.push((
            "REGKEEPER_MASTER_KEY_KMS_KEY_ID".to_owned(),
            self.key_id.clone(),
        ));
        environment
    }

    /// KMS calls seen so far: (Decrypt, GenerateDataKey).
    pub fn calls(&self) -> (usize, usize) {
        (
            self.relay.kms_calls("Decrypt"),
            self.relay.kms_calls("GenerateDataKey"),
        )
    }

    /// Unwraps a wrapped keyring as the server does, but asking moto directly (not
    /// through the relay, so the counts stay the server's): the 32-byte keys.
    pub fn unwrap_keys(&self, wrapped: &[u8], deployment_id: &str) -> Vec<Vec<u8>> {
        let (encrypted_key, sealed) = regkeeper::key_encryption::split_envelope(wrapped).unwrap();
        let (status, answer) = self.moto.call_json_api(
            "kms",
            "TrentService.Decrypt",
            &serde_json::json!({
                "CiphertextBlob": BASE64.encode(encrypted_key),
                "EncryptionContext": {"regkeeper:keyring": deployment_id},
            }),
        );
        assert_eq!(status, 200, "Decrypt: {answer}");
        let data_key = BASE64
            .decode(answer["Plaintext"].as_str().unwrap())
            .unwrap();
        let data_key = regkeeper::crypto::Key::from_bytes(&data_key).unwrap();
        let plaintext = regkeeper::key_encryption::open_envelope(
            &data_key,
            sealed,
            &regkeeper::key_encryption::WrapContext::keyring(deployment_id),
        )
        .unwrap();
        let keys = regkeeper::key_file::parse(&plaintext).unwrap();
        keys.versions()
            .map(|(_, key)| key.expose_bytes().to_vec())
            .collect()
    }
}

/// The database a test runs on: the server's SQLite file, or a PostgreSQL database.
pub enum Database {
    Sqlite,
    Postgres(PostgresDatabase),
}

impl Database {
    /// SQLite, and PostgreSQL when it is reachable (always in CI).
    pub fn both() -> Vec<Self> {
        let mut databases = vec![Self::Sqlite];
        databases.extend(PostgresDatabase::create().map(Self::Postgres));
        databases
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    pub fn options(&self, environment: Vec<(String, String)>) -> ServerOptions {
        ServerOptions {
            database_url: match self {
                Self::Sqlite => None,
                Self::Postgres(database) => Some(database.url.clone()),
            },
            environment,
            ..ServerOptions::default()
        }
    }

    /// Runs `statement`; every row's columns as text (NULL as empty, numbers and bytes
    /// as their text or hex).
    pub fn query(&self, data_dir: &std::path::Path, statement: &str) -> Vec<Vec<String>> {
        let statement = statement.to_owned();
        let url = match self {
            Self::Sqlite => format!("sqlite://{}", data_dir.join("regkeeper.db").display()),
            Self::Postgres(database) => database.url.clone(),
        };
        let postgres = matches!(self, Self::Postgres(_));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::{Connection, Row};
                fn text<'r, R: Row>(row: &'r R, index: usize) -> String
                where
                    usize: sqlx::ColumnIndex<R>,
                    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                {
                    if let Ok(Some(value)) = row.try_get::<Option<String>, _>(index) {
                        return value;
                    }
                    if let Ok(Some(value)) = row.try_get::<Option<i64>, _>(index) {
                        return value.to_string();
                    }
                    if let Ok(Some(value)) = row.try_get::<Option<Vec<u8>>, _>(index) {
                        return hex::encode(value);
                    }
                    String::new()
                }
                if postgres {
                    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                    let rows = sqlx::query(&statement)
                        .fetch_all(&mut connection)
                        .await
                        .unwrap_or_else(|error| panic!("{statement}: {error}"));
                    rows.iter()
                        .map(|row| (0..row.columns().len()).map(|i| text(row, i)).collect())
                        .collect()
                } else {
                    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    let rows = sqlx::query(&statement)
                        .fetch_all(&mut connection)
                        .await
                        .unwrap_or_else(|error| panic!("{statement}: {error}"));
                    rows.iter()
                        .map(|row| (0..row.columns().len()).map(|i| text(row, i)).collect())
                        .collect()
                }
            })
    }

    /// The `master_keyring` row's deployment id, wrapped keyring and generation.
    pub fn keyring_row(&self, data_dir: &std::path::Path) -> (String, Vec<u8>, i64) {
        let rows = self.query(
            data_dir,
            "SELECT deployment_id, wrapped_keyring, generation FROM master_keyring",
        );
        let row = &rows[0];
        (
            row[0].clone(),
            hex::decode(&row[1]).unwrap(),
            row[2].parse().unwrap(),
        )
    }
}

pub fn key_status(server: &TestServer) -> wire::KeyStatus {
    serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &["key", "status", "--output", "json"],
        None,
    )))
    .unwrap()
}

pub fn readyz(server: &TestServer) -> u16 {
    raw(server, "GET", "/readyz", None, None, None).0
}

/// Adds credential `name` for quay.io images under `NAME/`.
pub fn add(server: &TestServer, name: &str, password: &str) {
    let _: wire::Credential = server
        .admin()
        .post(
            CREDENTIALS,
            &wire::CredentialInput {
                path_prefix: Some(name.to_owned()),
                ..input(name, password)
            },
        )
        .unwrap();
}

/// The password `regkeeper resolve` gives for an image under credential `name`'s prefix.
pub fn resolved_password(server: &TestServer, name: &str) -> String {
    resolve(server, &format!("quay.io/{name}/app"))
        .secret
        .expose()
        .to_owned()
}

/// Starts a server and says how long it took to say it listens, and what KMS calls it
/// made meanwhile.
fn timed_start(kms: &Kms, options: ServerOptions) -> (TestServer, Duration, (usize, usize)) {
    let before = kms.calls();
    #[allow(clippy::disallowed_methods)] // a test's own stopwatch
    let started = std::time::Instant::now();
    let server = TestServer::start_with(options);
    let took = started.elapsed();
    let after = kms.calls();
    (server, took, (after.0 - before.0, after.1 - before.1))
}

/// Start on KMS, add, rotate, restart, resolve — on both databases; no key file, and no
/// key (nor the keyring's JSON) in any file under the data directory. Prints KMS's
/// cost at start and per rotation for the closing note.
#[test]
fn the_keyring_lives_in_kms_and_never_on_disk() {
    let Some(kms) = Kms::start() else { return };
    for database in Database::both() {
        // For comparison: a server on a key file (a database of its own), which never
        // calls KMS.
        let comparison = match &database {
            Database::Sqlite => Database::Sqlite,
            Database::Postgres(_) => Database::Postgres(PostgresDatabase::create().unwrap()),
        };
        let (server, took, calls) = timed_start(&kms, comparison.options(kms.aws_environment()));
        eprintln!(
            "[{}] first start on a key file: {took:?}, KMS calls {calls:?}",
            database.name()
        );
        assert_eq!(calls, (0, 0));
        let data_dir = server.data_dir.clone();
        let kept = server.stop();
        let (server, took, _) = timed_start(
            &kms,
            ServerOptions {
                data_dir: Some(data_dir),
                ..comparison.options(kms.aws_environment())
            },
        );
        eprintln!("[{}] restart on a key file: {took:?}", database.name());
        let _ = server.stop();
        drop(kept);
        let (server, took, calls) = timed_start(&kms, database.options(kms.environment()));
        eprintln!(
            "[{}] first start (keyring generated): {took:?}, KMS calls (Decrypt, GenerateDataKey) = {calls:?}",
            database.name()
        );
        assert_eq!(calls, (0, 1), "one GenerateDataKey to wrap the new keyring");
        let status = key_status(&server);
        assert_eq!(status.current_version, Some(1));
        assert_eq!(
            status.home.as_deref(),
            Some(format!("AWS KMS key {}", kms.key_id).as_str())
        );
        assert_eq!(status.settings_mismatch, None);
        add(&server, "kept", "kept-canary-secret");
        for index in 0..3 {
            add(
                &server,
                &format!("more-{index}"),
                &format!("more-secret-{index}"),
            );
        }
        let before = kms.calls();
        #[allow(clippy::disallowed_methods)] // a test's own stopwatch
        let started = std::time::Instant::now();
        let rotation: wire::KeyRotation = serde_json::from_str(&ok(&server.cli(
            ADMIN_TOKEN,
            &["key", "rotate", "--output", "json"],
            None,
        )))
        .unwrap();
        let took = started.elapsed();
        let after = kms.calls();
        eprintln!(
            "[{}] rotation: {took:?}, KMS calls (Decrypt, GenerateDataKey) = {:?}",
            database.name(),
            (after.0 - before.0, after.1 - before.1)
        );
        assert_eq!((rotation.current_version, rotation.rewrapped), (2, 4));
        assert_eq!((after.0 - before.0, after.1 - before.1), (0, 1));
        let data_dir = server.data_dir.clone();
        let kept = server.stop();

        let (server, took, calls) = timed_start(
            &kms,
            ServerOptions {
                data_dir: Some(data_dir.clone()),
                ..database.options(kms.environment())
            },
        );
        eprintln!(
            "[{}] restart: {took:?}, KMS calls (Decrypt, GenerateDataKey) = {calls:?}",
            database.name()
        );
        assert_eq!(calls, (1, 0), "one Decrypt at start, nothing per request");
        let log = server.log();
        assert_eq!(resolved_password(&server, "kept"), "kept-canary-secret");
        for index in 0..3 {
            assert_eq!(
                resolved_password(&server, &format!("more-{index}")),
                format!("more-secret-{index}")
            );
        }
        assert_eq!(kms.calls().0 - 1, after.0, "resolving calls KMS no more");
        assert_eq!(key_status(&server).current_version, Some(2));
        let _ = server.stop();

        assert!(!data_dir.join("master.key").exists(), "no key file");
        let (deployment_id, wrapped, _) = database.keyring_row(&data_dir);
        let keys = kms.unwrap_keys(&wrapped, &deployment_id);
        assert_eq!(keys.len(), 2);
        for key in &keys {
            assert!(
                !log.contains(&BASE64.encode(key)),
                "a master key in the log"
            );
            assert!(!log.contains(&hex::encode(key)), "a master key in the log");
        }
        for (path, bytes) in files_under(&kept.path) {
            for key in &keys {
                assert!(
                    !bytes
                        .windows(key.len())
                        .any(|window| window == key.as_slice()),
                    "{} holds a master key",
                    path.display()
                );
                let encoded = BASE64.encode(key);
                assert!(
                    !bytes
                        .windows(encoded.len())
                        .any(|window| window == encoded.as_bytes()),
                    "{} holds a master key in base64",
                    path.display()
                );
            }
            assert!(
                !String::from_utf8_lossy(&bytes).contains("regkeeper-master-keys"),
                "{} holds a keyring",
                path.display()
            );
        }
    }
}

/// KMS unreachable, then denying, at start: the server starts sealed (503
/// `master_key_unavailable`, `/readyz` 503, the specific reason in `key status` and
/// the log) and unseals by itself once KMS answers; then a keyring row whose
/// deployment id was changed (the encryption context no longer matches) seals it,
/// and putting it back unseals it — no restart either time.
#[test]
fn sealed_while_kms_is_down_denies_or_the_context_differs_then_unsealed() {
    let Some(kms) = Kms::start() else { return };
    for database in Database::both() {
        let server = TestServer::start_with(database.options(kms.environment()));
        add(&server, "kept", "kept-secret");
        let data_dir = server.data_dir.clone();
        let _kept = server.stop();
        let restart = || {
            TestServer::start_with(ServerOptions {
                data_dir: Some(data_dir.clone()),
                ..database.options(kms.environment())
            })
        };

        kms.relay.set_kms(KmsMode::Down);
        let server = restart();
        assert_eq!(readyz(&server), 503);
        let reason = key_status(&server).reason.unwrap_or_default();
        assert!(
            reason.contains(&format!(
                "AWS KMS key {} is unreachable at {}",
                kms.key_id,
                kms.relay.endpoint_url()
            )),
            "{reason}"
        );
        let error = server
            .admin()
            .post::<_, wire::Credential>(CREDENTIALS, &input("new", "new-secret"))
            .unwrap_err();
        assert_eq!(
            (error.status(), error.code()),
            (Some(503), Some("master_key_unavailable"))
        );
        assert!(server.log().contains("master_key.unavailable"));

        kms.relay.set_kms(KmsMode::Denied);
        eventually(
            Duration::from_secs(20),
            Duration::from_millis(200),
            "the reason becomes access denied",
            || {
                key_status(&server).reason.is_some_and(|reason| {
                    reason.contains(&format!(
                        "access to AWS KMS key {} is denied (AccessDeniedException",
                        kms.key_id
                    ))
                })
            },
        );
        assert_eq!(readyz(&server), 503);

        kms.relay.set_kms(KmsMode::Up);
        let took = eventually(
            Duration::from_secs(40),
            Duration::from_millis(200),
            "unsealed once KMS answers",
            || readyz(&server) == 200,
        );
        eprintln!("[{}] unsealed {took:?} after KMS answered", database.name());
        assert!(server.log().contains("master_key.unsealed"));
        assert_eq!(resolved_password(&server, "kept"), "kept-secret");
        let _ = server.stop();

        let (deployment_id, _, _) = database.keyring_row(&data_dir);
        database.query(
            &data_dir,
            "UPDATE master_keyring SET deployment_id = 'another-deployment'",
        );
        let server = restart();
        assert_eq!(readyz(&server), 503);
        let reason = key_status(&server).reason.unwrap_or_default();
        assert!(
            reason.contains("with encryption context {regkeeper:keyring=another-deployment}"),
            "{reason}"
        );
        database.query(
            &data_dir,
            &format!("UPDATE master_keyring SET deployment_id = '{deployment_id}'"),
        );
        eventually(
            Duration::from_secs(40),
            Duration::from_millis(200),
            "unsealed once the context matches again",
            || readyz(&server) == 200,
        );
        assert_eq!(resolved_password(&server, "kept"), "kept-secret");
    }
}

/// Two replicas on one PostgreSQL database and one KMS key, no key file anywhere: both
/// serve; a rotation on one is picked up by the other from the database (one Decrypt),
/// which then seals under the new version.
#[test]
fn two_replicas_share_one_kms_key_and_no_key_file() {
    let Some(kms) = Kms::start() else { return };
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    let database = Database::Postgres(database);
    let first = TestServer::start_with(database.options(kms.environment()));
    let second = TestServer::start_with(database.options(kms.environment()));
    add(&first, "from-first", "first-secret");
    assert_eq!(resolved_password(&second, "from-first"), "first-secret");
    let rotation: wire::KeyRotation = serde_json::from_str(&ok(&first.cli(
        ADMIN_TOKEN,
        &["key", "rotate", "--output", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(rotation.current_version, 2);
    let decrypts = kms.calls().0;
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(250),
        "the second replica loads version 2",
        || key_status(&second).current_version == Some(2),
    );
    assert_eq!(
        kms.calls().0 - decrypts,
        1,
        "one Decrypt to follow a rotation"
    );
    add(&second, "from-second", "second-secret");
    let versions = database.query(
        &second.data_dir,
        "SELECT name, secret_key_version FROM credentials ORDER BY name",
    );
    assert_eq!(
        versions,
        vec![
            vec!["from-first".to_owned(), "2".to_owned()],
            vec!["from-second".to_owned(), "2".to_owned()],
        ]
    );
    assert_eq!(resolved_password(&first, "from-second"), "second-secret");
    for server in [&first, &second] {
        assert!(!server.data_dir.join("master.key").exists());
        assert_eq!(readyz(server), 200);
    }
}
