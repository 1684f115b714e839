//! Migration `0008_trust_controls` on data written before it, on SQLite and
//! PostgreSQL: credential names that differ only by case are all kept (none lost, the
//! migration does not fail), new ones are refused; existing cross-workspace roles keep
//! a grant only where their creator still administers the target.

use std::path::Path;

use regkeeper::audit::AuditRecord;
use regkeeper::domain::Error;
use regkeeper::store::SharedStore;

use super::support::PostgresDatabase;

/// The migration under test; everything before it is applied first.
const VERSION: i64 = 8;

/// Rows in the schema just before 0008: in acme/ci `Deploy-prod` (older) and
/// `deploy-prod` (newer), and `app`; roles of alice/tools reaching acme/ci, one created
/// by alice (admin of acme/ci), one by mallory (a member of nothing), and one by alice
/// that only denies acme/ci's credentials (so reaches nothing there to grant).
const BEFORE: &[&str] = &[
    "INSERT INTO users (id, name, is_admin, created_at) VALUES ('u-alice', 'alice', FALSE, 1)",
    "INSERT INTO users (id, name, is_admin, created_at) VALUES ('u-mallory', 'mallory', FALSE, 1)",
    "INSERT INTO workspaces (id, name, kind, created_at) VALUES ('w-ci', 'acme/ci', 'organization', 1)",
    "INSERT INTO workspaces (id, name, kind, created_at) VALUES ('w-tools', 'alice/tools', 'organization', 1)",
    "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ('w-ci', 'u-alice', 'admin', 1)",
    "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ('w-tools', 'u-alice', 'owner', 1)",
    "INSERT INTO credentials (id, workspace_id, name, kind, auth_method, registry_host, settings, \
     secret_version, revision, created_at, updated_at, created_by, verify_status) VALUES \
     ('c-upper', 'w-ci', 'Deploy-prod', 'docker', 'password', 'deploy.example.com', '{}', 1, 1, 10, 10, 'alice', 'skipped')",
    "INSERT INTO credentials (id, workspace_id, name, kind, auth_method, registry_host, settings, \
     secret_version, revision, created_at, updated_at, created_by, verify_status) VALUES \
     ('c-lower', 'w-ci', 'deploy-prod', 'docker', 'password', 'deploy.example.com', '{}', 1, 1, 20, 20, 'alice', 'skipped')",
    "INSERT INTO credentials (id, workspace_id, name, kind, auth_method, registry_host, settings, \
     secret_version, revision, created_at, updated_at, created_by, verify_status) VALUES \
     ('c-app', 'w-ci', 'app', 'docker', 'password', 'app.example.com', '{}', 1, 1, 30, 30, 'alice', 'skipped')",
    "INSERT INTO workload_roles (id, workspace_id, name, description, policy, revision, created_at, updated_at, created_by) \
     VALUES ('r-alice', 'w-tools', 'puller', '', \
     '{\"statements\":[{\"effect\":\"Allow\",\"actions\":[\"credentials:Resolve\"],\"resources\":[{\"pattern\":\"rk:acme/ci:credential/app\",\"credentialId\":\"c-app\"}]}]}', \
     1, 1, 1, 'alice')",
    "INSERT INTO workload_roles (id, workspace_id, name, description, policy, revision, created_at, updated_at, created_by) \
     VALUES ('r-mallory', 'w-tools', 'sneaky', '', \
     '{\"statements\":[{\"effect\":\"Allow\",\"actions\":[\"credentials:Resolve\"],\"resources\":[{\"pattern\":\"rk:acme/ci:credential/app\",\"credentialId\":\"c-app\"}]}]}', \
     1, 1, 1, 'mallory')",
    "INSERT INTO workload_roles (id, workspace_id, name, description, policy, revision, created_at, updated_at, created_by) \
     VALUES ('r-deny', 'w-tools', 'fenced', '', \
     '{\"statements\":[{\"effect\":\"Allow\",\"actions\":[\"credentials:Resolve\"],\"resources\":[{\"pattern\":\"rk:alice/tools:credential/*\"}]},\
     {\"effect\":\"Deny\",\"actions\":[\"credentials:Resolve\"],\"resources\":[{\"pattern\":\"rk:acme/ci:credential/deploy-*\"}]}]}', \
     1, 1, 1, 'alice')",
];

async fn migrator(backend: &str) -> sqlx::migrate::Migrator {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut migrator = sqlx::migrate::Migrator::new(directory).await.unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|migration| migration.version < VERSION)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    migrator
}

async fn after_migration(store: SharedStore) {
    let record = || AuditRecord::new(100, None, "test");
    let ci = store.workspace_by_name("acme/ci").await.unwrap().unwrap();
    // Nothing lost: all three are there, each reachable by its exact spelling.
    assert_eq!(store.credentials(&ci.id).await.unwrap().len(), 3);
    let upper = store
        .credential(&ci.id, "Deploy-prod")
        .await
        .unwrap()
        .unwrap();
    let lower = store
        .credential(&ci.id, "deploy-prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (upper.id.as_str(), lower.id.as_str()),
        ("c-upper", "c-lower")
    );
    // Any other spelling finds the older one, which holds the name.
    let other = store
        .credential(&ci.id, "DEPLOY-PROD")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.id, "c-upper");
    assert_eq!(
        store.credential(&ci.id, "APP").await.unwrap().unwrap().id,
        "c-app"
    );

    // No new name may differ from an existing one only by case.
    let mut third = upper.clone();
    third.id = "c-third".into();
    third.name = "DePloy-PROD".into();
    let error = store.insert_credential(&third, record()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                code: "credential_exists",
                ..
            }
        ),
        "{error:?}"
    );
    third.name = "App".into();
    assert!(store.insert_credential(&third, record()).await.is_err());
    // The newer duplicate can still be updated under its own name...
    let mut kept = lower.clone();
    kept.revision = 2;
    kept.username = Some("changed".into());
    store.update_credential(&kept, 1, record()).await.unwrap();
    // ...but not renamed to another spelling of a taken name, only to a free one.
    let mut renamed = kept.clone();
    renamed.revision = 3;
    renamed.name = "DEPLOY-prod".into();
    let error = store
        .update_credential(&renamed, 2, record())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error:?}");
    renamed.name = "deploy-prod-2".into();
    store
        .update_credential(&renamed, 2, record())
        .await
        .unwrap();
    let mut fourth = upper.clone();
    fourth.id = "c-fourth".into();
    fourth.name = "DEPLOY-PROD-2".into();
    assert!(store.insert_credential(&fourth, record()).await.is_err());
    // The older one may change its own case.
    let mut recased = upper.clone();
    recased.revision = 2;
    recased.name = "deploy-PROD".into();
    store
        .update_credential(&recased, 1, record())
        .await
        .unwrap();

    // Alice still administers acme/ci: her role keeps its reach. Mallory's does not,
    // and a role that only denies acme/ci's credentials is granted nothing there.
    assert!(store.role_grant_in_force(&ci.id, "r-alice").await.unwrap());
    assert!(!store.role_grant_in_force(&ci.id, "r-deny").await.unwrap());
    assert!(!store
        .role_grant_in_force(&ci.id, "r-mallory")
        .await
        .unwrap());
    let grants = store.role_grants(&ci.id).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].granted_by, "alice");
}

/// Issue 12 item 3, on SQLite: existing case duplicates survive migration 0008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0008_keeps_case_duplicates_and_refuses_new_ones_on_sqlite() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", directory.path().join("old.db").display());
    {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        migrator("sqlite").await.run(&pool).await.unwrap();
        for statement in BEFORE {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    after_migration(regkeeper::store::connect(&url).await.unwrap()).await;
}

/// Issue 12 item 3, on PostgreSQL: existing case duplicates survive migration 0008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0008_keeps_case_duplicates_and_refuses_new_ones_on_postgres() {
    // `None` only outside CI: with CI=true an unreachable PostgreSQL fails the test.
    let Some(database) = tokio::task::spawn_blocking(PostgresDatabase::create)
        .await
        .unwrap()
    else {
        return;
    };
    {
        let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
        migrator("postgres").await.run(&pool).await.unwrap();
        for statement in BEFORE {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    after_migration(regkeeper::store::connect(&database.url).await.unwrap()).await;
}
