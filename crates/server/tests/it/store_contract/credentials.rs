//! The credential part of the store contract: credentials are unique by name in their
//! workspace without regard to case, found by any spelling, read back as written,
//! updated only at the revision they were read at, deleted once; resolve picks the
//! longest covering prefix on the same host; and a credential's origin (issue 12 item
//! 1) is stored and never changed by an update.

use regkeeper::domain::credential::{AuthMethod, Credential, CredentialKind, CredentialOrigin};

use super::{assert_conflict, audit_count, created_user, credential, record, Subject};

pub(super) async fn credentials_lifecycle(subject: Subject) {
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
    assert_conflict(&error, "credential_exists");
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
    assert_conflict(&error, "concurrent_update");
    let renamed = Credential {
        revision: 3,
        name: "dev".into(),
        ..updated.clone()
    };
    let error = store
        .update_credential(&renamed, 2, record("credential.update"))
        .await
        .unwrap_err();
    assert_conflict(&error, "credential_exists");
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

/// Resolve's choice: same host, then the longest prefix covering whole components.
pub(super) async fn best_credential_by_prefix(subject: Subject) {
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

/// Issue 12 item 1: a credential's origin (a person, or the docker credential helper's
/// `store`) is stored, read back, and never changed by an update; the column accepts
/// only the two origins.
pub(super) async fn credential_origins(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let workspace = &alice.workspace;
    let curated = credential(workspace, "curated");
    let from_login = Credential {
        origin: CredentialOrigin::Helper,
        ..credential(workspace, "from-login")
    };
    for created in [&curated, &from_login] {
        store
            .insert_credential(created, record("credential.create"))
            .await
            .unwrap();
    }
    let origins: Vec<(String, CredentialOrigin)> = store
        .credentials(&workspace.id)
        .await
        .unwrap()
        .into_iter()
        .map(|credential| (credential.name, credential.origin))
        .collect();
    assert_eq!(
        origins,
        vec![
            ("curated".to_owned(), CredentialOrigin::User),
            ("from-login".to_owned(), CredentialOrigin::Helper),
        ]
    );
    // An update writes everything but the origin, which records who created it.
    let updated = Credential {
        revision: 2,
        username: Some("changed".into()),
        origin: CredentialOrigin::User,
        ..from_login.clone()
    };
    store
        .update_credential(&updated, 1, record("credential.update"))
        .await
        .unwrap();
    let reloaded = store
        .credential(&workspace.id, "from-login")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reloaded.username.as_deref(), Some("changed"));
    assert_eq!(reloaded.origin, CredentialOrigin::Helper);

    let statement = format!(
        "UPDATE credentials SET origin = 'robot' WHERE id = '{}'",
        curated.id
    );
    let refused = if subject.raw_url.starts_with("sqlite://") {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&subject.raw_url)
            .await
            .unwrap();
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .map(|_| ())
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&subject.raw_url).await.unwrap();
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .map(|_| ())
    };
    assert!(refused.is_err(), "an unknown origin was stored");
}

/// Migration 0008: credential names are unique in a workspace without regard to case,
/// and a credential is found by any spelling of its name.
pub(super) async fn credential_names_ignore_case(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let workspace = &alice.workspace;
    let prod = credential(workspace, "Prod");
    store
        .insert_credential(&prod, record("credential.create"))
        .await
        .unwrap();
    let error = store
        .insert_credential(&credential(workspace, "PROD"), record("credential.create"))
        .await
        .unwrap_err();
    assert_conflict(&error, "credential_exists");
    let found = |name: &'static str| async move {
        store
            .credential(&workspace.id, name)
            .await
            .unwrap()
            .map(|found| (found.id, found.name))
    };
    for spelling in ["Prod", "prod", "PROD"] {
        assert_eq!(
            found(spelling).await,
            Some((prod.id.clone(), "Prod".to_owned())),
            "{spelling}"
        );
    }
    // A credential may change the case of its own name, but not take another's.
    let renamed = Credential {
        revision: 2,
        name: "prod".into(),
        ..prod.clone()
    };
    store
        .update_credential(&renamed, 1, record("credential.update"))
        .await
        .unwrap();
    assert_eq!(
        found("PROD").await,
        Some((prod.id.clone(), "prod".to_owned()))
    );
    let dev = credential(workspace, "dev");
    store
        .insert_credential(&dev, record("credential.create"))
        .await
        .unwrap();
    let taking = Credential {
        revision: 2,
        name: "PROD".into(),
        ..dev.clone()
    };
    let error = store
        .update_credential(&taking, 1, record("credential.update"))
        .await
        .unwrap_err();
    assert_conflict(&error, "credential_exists");
    assert_eq!(found("dev").await, Some((dev.id.clone(), "dev".to_owned())));
}
