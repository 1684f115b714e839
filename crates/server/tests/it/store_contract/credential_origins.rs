//! The credential origin column (issue 12 item 1) in the store contract.

use regkeeper::domain::credential::{Credential, CredentialOrigin};

use super::{created_user, credential, record, Subject};

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
