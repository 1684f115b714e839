//! One contract for the store, run against SQLite and PostgreSQL alike: every case in
//! the `contract!` list below runs once on each backend, on a database of its own.
//! The cases live by aggregate in `store_contract/`; the fixtures they share are here,
//! with the one constructor of `StoredToken` (`stored_token`), and `coverage` fails
//! when a `Store` method is called by no case.

use regkeeper::audit::AuditRecord;
use regkeeper::domain::credential::{
    AuthMethod, Credential, CredentialKind, CredentialOrigin, CredentialSettings, SealedSecret,
    Timestamp, Verification, VerificationStatus,
};
use regkeeper::domain::identity::WorkspaceKind;
use regkeeper::domain::Error;
use regkeeper::store::{
    ApiTokenRow, AuditQuery, NewUser, RoleRow, SharedStore, StoredToken, TokenOwner, UserRow,
    WorkspaceRow,
};

use super::support::PostgresDatabase;

mod audit;
mod backup;
mod coverage;
mod credentials;
mod freshness;
mod grants;
mod identity;
mod keys;
mod registry_tokens;
mod roles;
mod shared_state;
mod sync_targets;
mod token_leases;

/// A store under test and whatever keeps its database alive.
struct Subject {
    store: SharedStore,
    _sqlite: Option<tempfile::TempDir>,
    _postgres: Option<PostgresDatabase>,
    raw_url: String,
}

async fn sqlite() -> Option<Subject> {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("contract.db");
    let url = format!("sqlite://{}", path.display());
    let store = regkeeper::store::connect(&url).await.unwrap();
    Some(Subject {
        store,
        _sqlite: Some(directory),
        _postgres: None,
        raw_url: url,
    })
}

async fn postgres() -> Option<Subject> {
    let database = tokio::task::spawn_blocking(PostgresDatabase::create)
        .await
        .unwrap()?;
    let store = regkeeper::store::connect(&database.url).await.unwrap();
    Some(Subject {
        store,
        raw_url: database.url.clone(),
        _sqlite: None,
        _postgres: Some(database),
    })
}

fn record(action: &'static str) -> AuditRecord {
    AuditRecord::new(1_000, None, action)
}

fn new_user(name: &str) -> NewUser {
    let user = UserRow {
        id: uuid(),
        name: name.into(),
        admin: false,
        created_at: 1_000,
        disabled_at: None,
    };
    NewUser {
        workspace: WorkspaceRow {
            id: uuid(),
            name: format!("~{name}"),
            kind: WorkspaceKind::Personal,
            created_at: 1_000,
        },
        token: Some(token(&user.id, &format!("hash-{name}"))),
        user,
    }
}

/// Whether a token with `hash` is stored (revoked or not): how the contract sees a
/// token go with whatever owned it.
async fn token_stored(store: &SharedStore, hash: &str) -> bool {
    store.api_token_by_hash(hash).await.unwrap().is_some()
}

/// `new_user(name)`, created in `store`: where most parts of the contract start.
async fn created_user(store: &SharedStore, name: &str) -> NewUser {
    let user = new_user(name);
    store
        .create_user(&user, record("user.create"))
        .await
        .unwrap();
    user
}

/// Role `name` of `workspace` with no statements, made by `created_by`.
fn role(workspace: &WorkspaceRow, name: &str, created_by: &str) -> RoleRow {
    RoleRow {
        id: uuid(),
        workspace_id: workspace.id.clone(),
        workspace_name: workspace.name.clone(),
        name: name.into(),
        description: String::new(),
        policy: r#"{"statements":[]}"#.into(),
        revision: 1,
        created_at: 2_000,
        updated_at: 2_000,
        created_by: created_by.into(),
    }
}

/// `role(workspace, name, created_by)`, created in `store`.
async fn created_role(
    store: &SharedStore,
    workspace: &WorkspaceRow,
    name: &str,
    created_by: &str,
) -> RoleRow {
    let role = role(workspace, name, created_by);
    store
        .create_role(&role, record("role.create"))
        .await
        .unwrap();
    role
}

fn token(user_id: &str, hash: &str) -> ApiTokenRow {
    ApiTokenRow {
        id: uuid(),
        owner: TokenOwner::User(user_id.into()),
        name: "t".into(),
        token_hash: hash.into(),
        display_prefix: "rk_abcdefg".into(),
        created_at: 1_000,
        expires_at: Some(9_000),
        revoked_at: None,
        last_used_at: None,
        created_by: None,
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn credential(workspace: &WorkspaceRow, name: &str) -> Credential {
    Credential {
        id: uuid(),
        workspace_id: workspace.id.clone(),
        workspace_name: workspace.name.clone(),
        name: name.into(),
        kind: CredentialKind::Ecr,
        auth_method: AuthMethod::AwsRole,
        registry_host: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
        path_prefix: "team".into(),
        username: Some("AKIAIOSFODNN7EXAMPLE".into()),
        settings: CredentialSettings {
            role_arn: Some("arn:aws:iam::123456789012:role/pull".into()),
            external_id: Some("ext-1".into()),
            ambient: false,
            aws_region: Some("us-east-1".into()),
            azure_tenant_id: None,
            aws_secret: None,
        },
        sealed: Some(SealedSecret {
            ciphertext: vec![1, 2, 3],
            wrapped_key: vec![4, 5, 6],
            key_version: 1,
        }),
        secret_version: 1,
        revision: 1,
        created_at: 1_000,
        updated_at: 1_000,
        created_by: "alice".into(),
        origin: CredentialOrigin::User,
        verification: Verification {
            status: VerificationStatus::Unverified,
            checked_at: None,
            message: None,
        },
        token: None,
    }
}

/// Asserts that a write failed with `Conflict` and this code.
#[track_caller]
fn assert_conflict(error: &Error, code: &str) {
    assert!(
        matches!(error, Error::Conflict { code: found, .. } if *found == code),
        "{error:?}"
    );
}

async fn audit_count(store: &SharedStore) -> usize {
    store
        .audit_entries(&AuditQuery {
            limit: 100_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .len()
}

/// How long the contract's minted tokens stay valid, and when they fall due for refresh.
const TOKEN_LIFETIME: Timestamp = 43_200_000;
const TOKEN_REFRESH_AFTER: Timestamp = 28_800_000;

/// Every `StoredToken` the contract writes is built here, so its `status` is set in
/// this one place. A `pending` row is a placeholder as a first mint leases it: no token,
/// due at `issued_at`. Any other status is a token minted at `issued_at`, valid for
/// `TOKEN_LIFETIME` and due for refresh `TOKEN_REFRESH_AFTER` later.
fn stored_token(identity: &str, status: &str, issued_at: Timestamp) -> StoredToken {
    let pending = status == "pending";
    let (username, sealed, lifetime, refresh_after) = if pending {
        (
            "",
            SealedSecret {
                ciphertext: Vec::new(),
                wrapped_key: Vec::new(),
                key_version: 0,
            },
            0,
            0,
        )
    } else {
        (
            "AWS",
            SealedSecret {
                ciphertext: vec![7, 7],
                wrapped_key: vec![8, 8],
                key_version: 1,
            },
            TOKEN_LIFETIME,
            TOKEN_REFRESH_AFTER,
        )
    };
    StoredToken {
        identity: identity.into(),
        username: username.into(),
        sealed,
        issued_at,
        expires_at: Some(issued_at + lifetime),
        refresh_at: issued_at + refresh_after,
        status: status.parse().expect("a registry token status"),
        failures: 0,
        last_error: None,
        next_attempt_at: issued_at + refresh_after,
        updated_at: issued_at,
    }
}

/// The row a resolve's first mint of `identity` leases at `now`.
fn placeholder(identity: &str, now: Timestamp) -> StoredToken {
    stored_token(identity, "pending", now)
}

/// The store says which backend it is, and answers a ping while its database is up.
async fn the_store_names_its_backend_and_answers_pings(subject: Subject) {
    let expected = if subject.raw_url.starts_with("sqlite://") {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(subject.store.backend(), expected);
    subject.store.ping().await.unwrap();
}

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {
            macro_rules! case {
                ($module:ident :: $name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        if let Some(subject) = super::$backend().await {
                            super::$module::$name(subject).await;
                        }
                    }
                };
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        if let Some(subject) = super::$backend().await {
                            super::$name(subject).await;
                        }
                    }
                };
            }
            case!(the_store_names_its_backend_and_answers_pings);
            // Identity: users, API tokens, workspaces and members.
            case!(identity::users_and_personal_workspaces);
            case!(identity::api_tokens);
            case!(identity::api_tokens_are_found_by_id_whoever_owns_them);
            case!(identity::workspaces_and_members);
            // Credentials.
            case!(credentials::credentials_lifecycle);
            case!(credentials::credential_origins);
            case!(credentials::credential_names_ignore_case);
            case!(credentials::best_credential_by_prefix);
            // Workload roles, their trusts and exchanged tokens; grants and user lifecycle.
            case!(roles::workload_roles_and_their_tokens);
            case!(roles::all_roles_span_every_workspace);
            case!(roles::role_trusts_and_exchanged_tokens);
            case!(roles::expired_exchanged_tokens_are_pruned_up_to_the_limit);
            case!(grants::grants_and_user_lifecycle);
            // Registry tokens: rows, counts and links, then leases.
            case!(registry_tokens::registry_tokens_are_put_replaced_and_deleted);
            case!(registry_tokens::token_status_counts_group_rows_by_state);
            case!(registry_tokens::credentials_link_to_their_token);
            case!(token_leases::mint_claims_are_exclusive_and_respect_backoff);
            case!(token_leases::due_tokens_are_leased_to_one_owner_until_the_lease_runs_out);
            case!(token_leases::only_the_lease_holder_finishes);
            case!(token_leases::unreadable_tokens_are_leased_only_as_issued_and_outside_backoff);
            case!(freshness::freshness_follows_token_rows_and_sync_targets);
            // Sync targets.
            case!(sync_targets::sync_targets_lifecycle);
            case!(sync_targets::sync_target_leases);
            case!(sync_targets::aws_secret_settings_round_trip);
            // Audit.
            case!(audit::audit_chain_under_concurrency);
            case!(audit::audit_log_is_append_only);
            case!(audit::no_audit_no_action);
            case!(audit::abandoned_writes_do_not_wedge_the_store);
            case!(audit::audit_appends_chained_to_the_last_known_entry);
            case!(audit::audit_entries_are_read_by_workspace_and_sequence);
            // Master keys: key checks and the sealed values a rotation re-wraps.
            case!(keys::key_checks_and_rewrapping);
            case!(keys::keyring_home_and_migrations);
            case!(keys::sealed_pages_name_every_value);
            // Backups.
            case!(backup::snapshots_copy_sqlite_and_refuse_postgres);
            // What replicas share of the proxy and the console.
            case!(shared_state::proxy_grants_keep_the_newest_confirmation);
            case!(shared_state::the_cached_blob_index_orders_by_last_use);
            case!(shared_state::a_job_lease_has_one_holder_until_it_runs_out);
            case!(shared_state::sign_outs_last_until_their_session_expires);
        }
    };
}

contract!(sqlite);
contract!(postgres);
