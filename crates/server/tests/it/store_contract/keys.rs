//! The master-key part of the store contract: key checks (the first one of a version
//! stays), and the sealed values a rotation reads page by page, each named by a label,
//! and re-wraps by compare-and-swap.

use regkeeper::domain::credential::SealedSecret;
use regkeeper::store::{
    KeyCheck, KeyHome, KeyMigration, KeyringRecord, MigrationStage, SealedKind,
};

use super::{created_user, credential, placeholder, record, stored_token, Subject};

pub(super) async fn key_checks_and_rewrapping(subject: Subject) {
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
/// Issue 12 item 13: a rotation reads every sealed value page by page, whatever its
/// master key version, each with a label naming it, and re-wraps minted tokens too.
pub(super) async fn sealed_pages_name_every_value(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let credential = credential(&alice.workspace, name);
        store
            .insert_credential(&credential, record("credential.create"))
            .await
            .unwrap();
        ids.push((credential.id.clone(), name));
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = store
            .sealed_page(SealedKind::CredentialSecret, &after, 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after.clone_from(&last.owner_id);
        seen.extend(page.into_iter().map(|row| (row.owner_id, row.label)));
    }
    let expected: Vec<(String, String)> = ids
        .iter()
        .map(|(id, name)| {
            (
                id.clone(),
                format!("credential rk:~alice:credential/{name}"),
            )
        })
        .collect();
    assert_eq!(seen, expected);

    // A minted token is a sealed value too; a placeholder is not.
    let identity = "ecr:contract-sealed";
    let leased = store
        .claim_token_for_mint(&placeholder(identity, 10), 10, "replica-a", 60_010)
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .sealed_page(SealedKind::RegistryToken, "", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(leased, placeholder(identity, 10));
    let minted = stored_token(identity, "fresh", 20);
    assert!(store
        .finish_registry_token(&minted, "replica-a")
        .await
        .unwrap());
    let tokens = store
        .sealed_page(SealedKind::RegistryToken, "", 10)
        .await
        .unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].label, format!("token {identity}"));
    assert_eq!(
        (tokens[0].workspace_id.as_str(), tokens[0].secret_version),
        ("", 20)
    );
    let rewrapped = SealedSecret {
        wrapped_key: vec![9],
        key_version: 2,
        ..minted.sealed.clone()
    };
    assert!(store
        .replace_wrapped_key(
            SealedKind::RegistryToken,
            identity,
            &minted.sealed,
            &rewrapped
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .registry_token(identity)
            .await
            .unwrap()
            .unwrap()
            .sealed,
        rewrapped
    );
}

/// Issue 15: where the keyring lives — one row, the first insert wins, replaced only by
/// compare-and-swap on its generation (with the new version's check, or not at all);
/// one migration at a time, recorded with its check, switched with the home at once.
pub(super) async fn keyring_home_and_migrations(subject: Subject) {
    let store = &subject.store;
    assert!(store.keyring_record().await.unwrap().is_none());
    let ours = KeyringRecord {
        deployment_id: "deployment-a".into(),
        home: KeyHome::Kms("alias/rk".into()),
        wrapped_keyring: Some(vec![1, 2, 3]),
        current_version: 1,
        generation: 1,
        updated_at: 10,
    };
    let stored = store.insert_keyring_record(&ours).await.unwrap();
    assert_eq!(stored.deployment_id, "deployment-a");
    let theirs = KeyringRecord {
        deployment_id: "deployment-b".into(),
        ..ours.clone()
    };
    let stored = store.insert_keyring_record(&theirs).await.unwrap();
    assert_eq!(
        stored.deployment_id, "deployment-a",
        "the first record stays"
    );

    let rotated = KeyringRecord {
        wrapped_keyring: Some(vec![4, 5]),
        current_version: 2,
        generation: 2,
        ..ours.clone()
    };
    let check = KeyCheck {
        version: 2,
        check_value: vec![2; 4],
        created_at: 11,
    };
    assert!(
        !store
            .replace_keyring(5, &rotated, Some(&check))
            .await
            .unwrap(),
        "a stale generation replaces nothing"
    );
    assert!(
        store.key_checks().await.unwrap().is_empty(),
        "nor records its check"
    );
    assert!(store
        .replace_keyring(1, &rotated, Some(&check))
        .await
        .unwrap());
    let read = store.keyring_record().await.unwrap().unwrap();
    assert_eq!(
        (read.generation, read.current_version, read.wrapped_keyring),
        (2, 2, Some(vec![4, 5]))
    );
    assert_eq!(store.key_checks().await.unwrap(), vec![check.clone()]);
    let conflicting = KeyCheck {
        check_value: vec![7; 4],
        ..check.clone()
    };
    let error = store
        .replace_keyring(
            2,
            &KeyringRecord {
                generation: 3,
                ..rotated.clone()
            },
            Some(&conflicting),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "rotation_in_progress");
    assert_eq!(
        store.keyring_record().await.unwrap().unwrap().generation,
        2,
        "rolled back"
    );

    assert!(store.key_migration().await.unwrap().is_none());
    let migration = KeyMigration {
        target: KeyHome::File("/keys/moved.key".into()),
        from_version: 2,
        new_version: 3,
        stage: MigrationStage::Staged,
        staged_keyring: None,
        started_at: 12,
    };
    let new_check = KeyCheck {
        version: 3,
        check_value: vec![3; 4],
        created_at: 12,
    };
    store
        .start_key_migration(&migration, &new_check)
        .await
        .unwrap();
    let error = store
        .start_key_migration(&migration, &new_check)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "master_key_migration_in_progress");
    let recorded = store.key_migration().await.unwrap().unwrap();
    assert_eq!(
        (
            recorded.target.clone(),
            recorded.new_version,
            recorded.stage
        ),
        (
            KeyHome::File("/keys/moved.key".into()),
            3,
            MigrationStage::Staged
        )
    );
    let switched = KeyringRecord {
        home: KeyHome::File("/keys/moved.key".into()),
        wrapped_keyring: None,
        current_version: 3,
        generation: 3,
        ..rotated.clone()
    };
    assert!(!store.switch_key_home(1, &switched).await.unwrap());
    assert_eq!(
        store.key_migration().await.unwrap().unwrap().stage,
        MigrationStage::Staged
    );
    assert!(store.switch_key_home(2, &switched).await.unwrap());
    assert_eq!(
        store.key_migration().await.unwrap().unwrap().stage,
        MigrationStage::Switched
    );
    let read = store.keyring_record().await.unwrap().unwrap();
    assert_eq!(
        (read.home, read.wrapped_keyring),
        (KeyHome::File("/keys/moved.key".into()), None)
    );
    store.finish_key_migration().await.unwrap();
    assert!(store.key_migration().await.unwrap().is_none());
}
