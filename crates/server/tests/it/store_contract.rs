//! One contract for the store, run against SQLite and PostgreSQL alike.

use std::sync::Arc;

use regkeeper::audit::{verify_chain, AuditRecord};
use regkeeper::domain::credential::{
    AuthMethod, Credential, CredentialKind, CredentialOrigin, CredentialSettings, SealedSecret,
    Verification, VerificationStatus,
};
use regkeeper::domain::identity::{Role, WorkspaceKind};
use regkeeper::domain::Error;
use regkeeper::store::{
    ApiTokenRow, AuditQuery, KeyCheck, NewUser, RoleRow, SealedKind, SharedStore, TokenOwner,
    TokenSubject, UserRow, WorkspaceRow,
};

use super::support::PostgresDatabase;

mod credential_origins;
mod sync_targets;
mod token_claims;
mod trust_controls;
use credential_origins::credential_origins;
mod role_trusts;
use role_trusts::role_trusts_and_exchanged_tokens;
use sync_targets::sync_targets_lifecycle;
use token_claims::{mint_claims_are_exclusive_and_respect_backoff, sealed_pages_name_every_value};
use trust_controls::grants_and_user_lifecycle;

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

async fn users_and_personal_workspaces(subject: Subject) {
    let store = &subject.store;
    assert_eq!(store.count_users().await.unwrap(), 0);
    let alice = created_user(store, "alice").await;
    assert_eq!(store.count_users().await.unwrap(), 1);
    assert_eq!(
        store.user_by_name("alice").await.unwrap(),
        Some(alice.user.clone())
    );
    assert_eq!(store.user_by_name("bob").await.unwrap(), None);
    let workspace = store.workspace_by_name("~alice").await.unwrap().unwrap();
    assert_eq!(workspace, alice.workspace);
    assert_eq!(
        store.role_of(&workspace.id, &alice.user.id).await.unwrap(),
        Some(Role::Owner)
    );
    let mut again = new_user("alice");
    again.token = Some(token(&again.user.id, "other-hash"));
    let error = store
        .create_user(&again, record("user.create"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                code: "user_exists",
                ..
            }
        ),
        "{error:?}"
    );
    // The failed creation left nothing behind: no audit entry, no second workspace.
    assert_eq!(audit_count(store).await, 1);
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

async fn api_tokens(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let bob = created_user(store, "bob").await;
    let second = token(&alice.user.id, "hash-second");
    store
        .insert_api_token(&second, record("api_token.create"))
        .await
        .unwrap();
    let (found, subject) = store
        .api_token_by_hash("hash-second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, second);
    assert!(matches!(subject, TokenSubject::User(user) if user.name == "alice"));
    assert!(store.api_token_by_hash("nothing").await.unwrap().is_none());
    store.touch_api_token(&second.id, 5_000).await.unwrap();
    let alice_owner = TokenOwner::User(alice.user.id.clone());
    let listed = store.list_api_tokens(&alice_owner).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|row| row.last_used_at == Some(5_000)));
    // Bob cannot revoke Alice's token; Alice can, once.
    assert!(!store
        .revoke_api_token(
            &TokenOwner::User(bob.user.id.clone()),
            &second.id,
            6_000,
            record("api_token.revoke")
        )
        .await
        .unwrap());
    assert!(store
        .revoke_api_token(&alice_owner, &second.id, 6_000, record("api_token.revoke"))
        .await
        .unwrap());
    assert!(!store
        .revoke_api_token(&alice_owner, &second.id, 7_000, record("api_token.revoke"))
        .await
        .unwrap());
    let (found, _) = store
        .api_token_by_hash("hash-second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.revoked_at, Some(6_000));
}

async fn workspaces_and_members(subject: Subject) {
    let store = &subject.store;
    let alice = new_user("alice");
    let bob = new_user("bob");
    store
        .create_user(&alice, record("user.create"))
        .await
        .unwrap();
    store
        .create_user(&bob, record("user.create"))
        .await
        .unwrap();
    let acme = WorkspaceRow {
        id: uuid(),
        name: "acme/ci".into(),
        kind: WorkspaceKind::Organization,
        created_at: 2_000,
    };
    store
        .create_workspace(&acme, &alice.user.id, record("workspace.create"))
        .await
        .unwrap();
    let duplicate = WorkspaceRow {
        id: uuid(),
        ..acme.clone()
    };
    let error = store
        .create_workspace(&duplicate, &bob.user.id, record("workspace.create"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                code: "workspace_exists",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(store.role_of(&acme.id, &bob.user.id).await.unwrap(), None);
    store
        .put_member(
            &acme.id,
            &bob.user.id,
            Role::View,
            3_000,
            record("member.put"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.role_of(&acme.id, &bob.user.id).await.unwrap(),
        Some(Role::View)
    );
    store
        .put_member(
            &acme.id,
            &bob.user.id,
            Role::Maintain,
            4_000,
            record("member.put"),
        )
        .await
        .unwrap();
    let members = store.members(&acme.id).await.unwrap();
    let names: Vec<(&str, Role)> = members
        .iter()
        .map(|member| (member.user_name.as_str(), member.role))
        .collect();
    assert_eq!(names, vec![("alice", Role::Owner), ("bob", Role::Maintain)]);
    let of_bob: Vec<String> = store
        .workspaces_of(&bob.user.id)
        .await
        .unwrap()
        .into_iter()
        .map(|(w, _)| w.name)
        .collect();
    assert_eq!(of_bob, vec!["acme/ci".to_owned(), "~bob".to_owned()]);
    assert!(store
        .remove_member(&acme.id, &bob.user.id, record("member.remove"))
        .await
        .unwrap());
    assert!(!store
        .remove_member(&acme.id, &bob.user.id, record("member.remove"))
        .await
        .unwrap());
    assert_eq!(store.role_of(&acme.id, &bob.user.id).await.unwrap(), None);
}

async fn credentials_lifecycle(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let workspace = &alice.workspace;
    let first = credential(workspace, "prod");
    store
        .insert_credential(&first, record("credential.create"))
        .await
        .unwrap();
    let entries = audit_count(store).await;
    let error = store
        .insert_credential(&credential(workspace, "prod"), record("credential.create"))
        .await
        .unwrap_err();
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
    assert_eq!(
        audit_count(store).await,
        entries,
        "a failed write leaves no audit entry"
    );
    let loaded = store
        .credential(&workspace.id, "prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.id, first.id);
    assert_eq!(loaded.settings, first.settings);
    assert_eq!(loaded.sealed, first.sealed);
    assert_eq!(loaded.kind, CredentialKind::Ecr);
    assert_eq!(loaded.auth_method, AuthMethod::AwsRole);
    assert_eq!(loaded.workspace_name, "~alice");
    store
        .insert_credential(&credential(workspace, "dev"), record("credential.create"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .credentials(&workspace.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["dev", "prod"]);

    let updated = Credential {
        revision: 2,
        path_prefix: "other".into(),
        sealed: None,
        ..loaded.clone()
    };
    store
        .update_credential(&updated, 1, record("credential.update"))
        .await
        .unwrap();
    let stale = Credential {
        revision: 2,
        ..loaded.clone()
    };
    let error = store
        .update_credential(&stale, 1, record("credential.update"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                code: "concurrent_update",
                ..
            }
        ),
        "{error:?}"
    );
    let renamed = Credential {
        revision: 3,
        name: "dev".into(),
        ..updated.clone()
    };
    let error = store
        .update_credential(&renamed, 2, record("credential.update"))
        .await
        .unwrap_err();
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
    let reloaded = store
        .credential(&workspace.id, "prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reloaded.path_prefix, "other");
    assert_eq!(reloaded.sealed, None);

    assert!(store
        .delete_credential(&first.id, record("credential.delete"))
        .await
        .unwrap());
    assert!(!store
        .delete_credential(&first.id, record("credential.delete"))
        .await
        .unwrap());
    assert!(store
        .credential(&workspace.id, "prod")
        .await
        .unwrap()
        .is_none());
    let recreated = credential(workspace, "prod");
    store
        .insert_credential(&recreated, record("credential.create"))
        .await
        .unwrap();
    assert_ne!(
        store
            .credential(&workspace.id, "prod")
            .await
            .unwrap()
            .unwrap()
            .id,
        first.id
    );
}

async fn key_checks_and_rewrapping(subject: Subject) {
    let store = &subject.store;
    let check = KeyCheck {
        version: 1,
        check_value: vec![9; 8],
        created_at: 1,
    };
    assert_eq!(store.ensure_key_check(&check).await.unwrap(), check);
    let other = KeyCheck {
        version: 1,
        check_value: vec![7; 8],
        created_at: 2,
    };
    assert_eq!(
        store.ensure_key_check(&other).await.unwrap(),
        check,
        "the first check stays"
    );
    assert_eq!(store.key_checks().await.unwrap(), vec![check]);

    let alice = created_user(store, "alice").await;
    let sealed = credential(&alice.workspace, "prod");
    store
        .insert_credential(&sealed, record("credential.create"))
        .await
        .unwrap();
    let pending = store
        .sealed_page(SealedKind::CredentialSecret, "", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|sealed| sealed.sealed.key_version != 2)
        .collect::<Vec<_>>();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].owner_id, sealed.id);
    let old = pending[0].sealed.clone();
    let new = SealedSecret {
        wrapped_key: vec![8, 8],
        key_version: 2,
        ..old.clone()
    };
    assert!(store
        .replace_wrapped_key(SealedKind::CredentialSecret, &sealed.id, &old, &new)
        .await
        .unwrap());
    assert!(
        !store
            .replace_wrapped_key(SealedKind::CredentialSecret, &sealed.id, &old, &new)
            .await
            .unwrap(),
        "compare-and-swap"
    );
    assert!(store
        .sealed_page(SealedKind::CredentialSecret, "", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|sealed| sealed.sealed.key_version != 2)
        .collect::<Vec<_>>()
        .is_empty());
}

async fn audit_chain_under_concurrency(subject: Subject) {
    let store = subject.store.clone();
    let tasks: Vec<_> = (0..24)
        .map(|index| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let record =
                    AuditRecord::new(index, None, "test.concurrent").target(format!("t{index}"));
                store.append_audit(record).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let rows = store
        .audit_entries(&AuditQuery {
            limit: 1_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 24);
    assert_eq!(verify_chain(&rows, None).unwrap().0, 24);
    let newest = store
        .audit_entries(&AuditQuery {
            limit: 2,
            newest_first: true,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|row| row.seq).collect::<Vec<_>>(),
        vec![24, 23]
    );
}

/// The database itself refuses to change or remove audit entries.
async fn audit_log_is_append_only(subject: Subject) {
    subject
        .store
        .append_audit(record("test.append"))
        .await
        .unwrap();
    let attempts = [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ];
    if subject.raw_url.starts_with("sqlite://") {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&subject.raw_url)
            .await
            .unwrap();
        for statement in attempts {
            let error = sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap_err();
            assert!(error.to_string().contains("append-only"), "{error}");
        }
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&subject.raw_url).await.unwrap();
        for statement in attempts.into_iter().chain(["TRUNCATE audit_log"]) {
            let error = sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap_err();
            assert!(error.to_string().contains("append-only"), "{error}");
        }
    }
    assert_eq!(audit_count(&subject.store).await, 1);
}

/// If the audit entry cannot be written, the action it records does not happen.
async fn no_audit_no_action(subject: Subject) {
    let alice = new_user("alice");
    subject
        .store
        .create_user(&alice, record("user.create"))
        .await
        .unwrap();
    if subject.raw_url.starts_with("sqlite://") {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&subject.raw_url)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TRIGGER audit_log_broken BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END",
        )
        .execute(&mut connection)
        .await
        .unwrap();
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&subject.raw_url).await.unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION audit_log_broken() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'audit storage unavailable'; END; $$; \
             CREATE TRIGGER audit_log_broken BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_log_broken();",
        )
        .execute(&mut connection)
        .await
        .unwrap();
    }
    let store = &subject.store;
    let first = credential(&alice.workspace, "prod");
    let error = store
        .insert_credential(&first, record("credential.create"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("audit log write failed"),
        "{error}"
    );
    assert!(store
        .credential(&alice.workspace.id, "prod")
        .await
        .unwrap()
        .is_none());
    let bob = new_user("bob");
    assert!(store
        .create_user(&bob, record("user.create"))
        .await
        .is_err());
    assert!(store.user_by_name("bob").await.unwrap().is_none());
    assert!(store.workspace_by_name("~bob").await.unwrap().is_none());
}

/// Resolve's choice: same host, then the longest prefix covering whole components.
async fn best_credential_by_prefix(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    for (name, prefix) in [
        ("root", ""),
        ("team", "team"),
        ("app", "team/app"),
        ("teamwork", "teamwork"),
    ] {
        let mut entry = credential(&alice.workspace, name);
        entry.path_prefix = prefix.into();
        store
            .insert_credential(&entry, record("credential.create"))
            .await
            .unwrap();
    }
    let mut elsewhere = credential(&alice.workspace, "elsewhere");
    elsewhere.registry_host = "ghcr.io".into();
    elsewhere.path_prefix = "team".into();
    store
        .insert_credential(&elsewhere, record("credential.create"))
        .await
        .unwrap();
    for (repository, expected) in [
        ("team/app/x", "app"),
        ("team/app", "app"),
        ("team/application", "team"),
        ("team/other", "team"),
        ("teamwork/x", "teamwork"),
        ("teams/x", "root"),
        ("other", "root"),
    ] {
        let found = store
            .best_credential_for(&alice.workspace.id, host, repository)
            .await
            .unwrap();
        assert_eq!(
            found.map(|found| found.name).as_deref(),
            Some(expected),
            "{repository}"
        );
    }
    let found = store
        .best_credential_for(&alice.workspace.id, "ghcr.io", "other/x")
        .await
        .unwrap();
    assert!(found.is_none(), "a prefix never covers another path");
    let found = store
        .best_credential_for(&alice.workspace.id, "quay.io", "team/app")
        .await
        .unwrap();
    assert!(found.is_none(), "another host never matches");
}

async fn workload_roles_and_their_tokens(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let role = RoleRow {
        description: "CI".into(),
        ..role(&alice.workspace, "builder", "alice")
    };
    store
        .create_role(&role, record("role.create"))
        .await
        .unwrap();
    let duplicate = RoleRow {
        id: uuid(),
        ..role.clone()
    };
    let error = store
        .create_role(&duplicate, record("role.create"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                code: "role_exists",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        store.role(&alice.workspace.id, "builder").await.unwrap(),
        Some(role.clone())
    );
    assert_eq!(
        store.roles(&alice.workspace.id).await.unwrap(),
        vec![role.clone()]
    );

    // A token of the role authenticates as the role; the user's own are not listed.
    let owner = TokenOwner::Role(role.id.clone());
    let role_token = ApiTokenRow {
        owner: owner.clone(),
        ..token(&alice.user.id, "hash-role")
    };
    store
        .insert_api_token(&role_token, record("role.token_create"))
        .await
        .unwrap();
    let (found, subject_of) = store.api_token_by_hash("hash-role").await.unwrap().unwrap();
    assert_eq!(found, role_token);
    assert_eq!(subject_of, TokenSubject::Role(role.clone()));
    assert_eq!(
        store.list_api_tokens(&owner).await.unwrap(),
        vec![role_token.clone()]
    );
    assert!(!store
        .list_api_tokens(&TokenOwner::User(alice.user.id.clone()))
        .await
        .unwrap()
        .iter()
        .any(|row| row.id == role_token.id));

    // Optimistic concurrency on update.
    let mut changed = role.clone();
    changed.policy = r#"{"statements":[{"effect":"Allow"}]}"#.into();
    changed.revision = 2;
    changed.updated_at = 3_000;
    store
        .update_role(&changed, 1, record("role.update"))
        .await
        .unwrap();
    let error = store
        .update_role(&changed, 1, record("role.update"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error:?}");
    assert_eq!(
        store
            .role(&alice.workspace.id, "builder")
            .await
            .unwrap()
            .unwrap()
            .policy,
        changed.policy
    );

    // Deleting the role takes its tokens with it.
    assert!(store
        .delete_role(&role.id, record("role.delete"))
        .await
        .unwrap());
    assert!(!token_stored(store, "hash-role").await);
    assert!(!store
        .delete_role(&role.id, record("role.delete"))
        .await
        .unwrap());
    assert!(token_stored(store, "hash-alice").await);
}

/// The audit writer's fast path: a batch chained to the entry it wrote last, in one
/// statement, refused (nothing written) once another entry came first.
async fn audit_appends_chained_to_the_last_known_entry(subject: Subject) {
    let store = &subject.store;
    let first = store
        .append_audits(vec![record("one"), record("two")])
        .await
        .unwrap()
        .expect("the newest entry");
    assert_eq!(first.0, 2);
    let fast = store
        .append_audits_after(&[record("three"), record("four")], first.clone())
        .await
        .unwrap();
    let count = audit_count(store).await;
    match store.backend() {
        "sqlite" => {
            let newest = fast.expect("SQLite appends in one statement");
            assert_eq!(newest.0, 4);
            assert_eq!(count, 4);
            // Another writer comes first: the stale link is refused, nothing written.
            store.append_audit(record("other")).await.unwrap();
            assert!(store
                .append_audits_after(&[record("stale")], newest)
                .await
                .unwrap()
                .is_none());
            assert_eq!(audit_count(store).await, 5);
        }
        _ => {
            assert!(fast.is_none(), "other backends use the transactional path");
            assert_eq!(count, 2);
        }
    }
    let rows = store
        .audit_entries(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(rows.iter().all(|row| row.action != "stale"));
    assert_eq!(verify_chain(&rows, None).unwrap().0, rows.len() as i64);
}

/// A request cancelled in the middle of a write (its client hung up) must not leave a
/// pooled connection inside a transaction: that held SQLite's write lock, so every
/// later write waited or failed until the server restarted.
async fn abandoned_writes_do_not_wedge_the_store(subject: Subject) {
    let store = &subject.store;
    for attempt in 0..400u64 {
        // Cancelled at many different points of a write's life, several at once.
        let mut cancelled = tokio::task::JoinSet::new();
        for offset in 0..4 {
            let store = Arc::clone(store);
            let limit = std::time::Duration::from_micros((attempt * 13 + offset * 101) % 900);
            cancelled.spawn(async move {
                tokio::time::timeout(limit, store.append_audit(record("cancelled.write"))).await
            });
        }
        while let Some(result) = cancelled.join_next().await {
            if let Ok(written) = result.unwrap() {
                written.unwrap();
            }
        }
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.append_audit(record("after.cancelled")),
    )
    .await
    .expect("a write after cancelled ones is not blocked")
    .expect("and succeeds");
    let rows = store
        .audit_entries(&AuditQuery {
            limit: 100_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.last().unwrap().action, "after.cancelled");
    assert_eq!(verify_chain(&rows, None).unwrap().0, rows.len() as i64);
}

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        if let Some(subject) = super::$backend().await {
                            super::$name(subject).await;
                        }
                    }
                };
            }
            case!(users_and_personal_workspaces);
            case!(api_tokens);
            case!(workload_roles_and_their_tokens);
            case!(workspaces_and_members);
            case!(credentials_lifecycle);
            case!(credential_origins);
            case!(key_checks_and_rewrapping);
            case!(audit_chain_under_concurrency);
            case!(audit_log_is_append_only);
            case!(no_audit_no_action);
            case!(abandoned_writes_do_not_wedge_the_store);
            case!(audit_appends_chained_to_the_last_known_entry);
            case!(best_credential_by_prefix);
            case!(sync_targets_lifecycle);
            case!(role_trusts_and_exchanged_tokens);
            case!(mint_claims_are_exclusive_and_respect_backoff);
            case!(sealed_pages_name_every_value);
            case!(grants_and_user_lifecycle);
        }
    };
}

contract!(sqlite);
contract!(postgres);
