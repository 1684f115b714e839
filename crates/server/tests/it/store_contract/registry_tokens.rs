//! The registry-token rows of the store contract (migration 0002): a row comes back as
//! it was put, a put replaces it without taking its lease away, a delete removes only
//! its identity; the metrics' counts group rows by state at a given time; and
//! credentials link to the row of their identity, which every credential read joins.

use regkeeper::domain::credential::Credential;
use regkeeper::domain::registry_token::RegistryTokenStatus;
use regkeeper::store::StoredToken;

use super::{created_user, credential, placeholder, record, stored_token, Subject};

/// Put, read, replace and delete; a put leaves a lease to its holder.
pub(super) async fn registry_tokens_are_put_replaced_and_deleted(subject: Subject) {
    let store = &subject.store;
    assert_eq!(store.registry_token("ecr:unknown").await.unwrap(), None);
    let first = StoredToken {
        failures: 2,
        last_error: Some("AWS is throttling requests".into()),
        ..stored_token("ecr:put", "stale", 1_000)
    };
    store.put_registry_token(&first).await.unwrap();
    assert_eq!(
        store.registry_token("ecr:put").await.unwrap(),
        Some(first.clone()),
        "read back as written"
    );
    let replaced = stored_token("ecr:put", "fresh", 2_000);
    store.put_registry_token(&replaced).await.unwrap();
    assert_eq!(
        store.registry_token("ecr:put").await.unwrap(),
        Some(replaced.clone()),
        "one row per identity, the newer put wins"
    );
    assert_eq!(
        store.token_status_counts(3_000).await.unwrap(),
        vec![(RegistryTokenStatus::Fresh, 1)]
    );

    // A put while a refresher holds the lease: the lease stays, so no one else takes
    // the row, and the holder's result, written later, is the one kept.
    let due_at = replaced.next_attempt_at;
    let leased = store
        .claim_due_tokens(due_at, "refresher", due_at + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(leased, vec![replaced.clone()]);
    let minted_elsewhere = StoredToken {
        next_attempt_at: due_at,
        ..stored_token("ecr:put", "fresh", due_at)
    };
    store.put_registry_token(&minted_elsewhere).await.unwrap();
    assert_eq!(
        store.registry_token("ecr:put").await.unwrap(),
        Some(minted_elsewhere.clone())
    );
    assert!(
        store
            .claim_due_tokens(due_at + 1, "replica-b", due_at + 60_001, 10)
            .await
            .unwrap()
            .is_empty(),
        "the put kept the refresher's lease"
    );
    let refreshed = stored_token("ecr:put", "fresh", due_at + 10);
    assert!(store
        .finish_registry_token(&refreshed, "refresher")
        .await
        .unwrap());
    assert_eq!(
        store.registry_token("ecr:put").await.unwrap(),
        Some(refreshed)
    );

    // A delete removes its identity's row only, and may find none.
    let other = stored_token("ecr:other", "fresh", 1_000);
    store.put_registry_token(&other).await.unwrap();
    store.delete_registry_token("ecr:put").await.unwrap();
    assert_eq!(store.registry_token("ecr:put").await.unwrap(), None);
    store.delete_registry_token("ecr:put").await.unwrap();
    assert_eq!(
        store.registry_token("ecr:other").await.unwrap(),
        Some(other)
    );
}

/// The metrics' counts: one per state at `now`, in state order; a row past its expiry
/// counts as `expired` whatever its stored status, a placeholder as `pending`.
pub(super) async fn token_status_counts_group_rows_by_state(subject: Subject) {
    let store = &subject.store;
    let now = 100_000_000;
    assert!(store.token_status_counts(now).await.unwrap().is_empty());
    let recent = now - 1_000;
    let long_ago = now - 50_000_000;
    for token in [
        stored_token("ecr:fresh", "fresh", recent),
        StoredToken {
            expires_at: None,
            ..stored_token("ecr:never-expires", "fresh", long_ago)
        },
        stored_token("ecr:stale", "stale", recent),
        stored_token("ecr:expired-fresh", "fresh", long_ago),
        stored_token("ecr:expired-stale", "stale", long_ago),
        stored_token("ecr:expired", "expired", long_ago),
        // A placeholder "expires" when it is created, and stays pending all the same.
        placeholder("ecr:pending", recent),
    ] {
        store.put_registry_token(&token).await.unwrap();
    }
    assert_eq!(
        store.token_status_counts(now).await.unwrap(),
        vec![
            (RegistryTokenStatus::Expired, 3),
            (RegistryTokenStatus::Fresh, 2),
            (RegistryTokenStatus::Pending, 1),
            (RegistryTokenStatus::Stale, 1),
        ]
    );
    // Earlier, the long-ago tokens were still valid: counted by their stored status.
    assert_eq!(
        store.token_status_counts(long_ago + 1).await.unwrap(),
        vec![
            (RegistryTokenStatus::Expired, 1),
            (RegistryTokenStatus::Fresh, 3),
            (RegistryTokenStatus::Pending, 1),
            (RegistryTokenStatus::Stale, 2),
        ]
    );
}

/// A credential links to its identity's row; every credential read carries that row's
/// state, and the refresher finds the oldest credential that still uses the row.
pub(super) async fn credentials_link_to_their_token(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let workspace = &alice.workspace;
    let older = credential(workspace, "older");
    let newer = Credential {
        created_at: 2_000,
        ..credential(workspace, "newer")
    };
    for created in [&older, &newer] {
        store
            .insert_credential(created, record("credential.create"))
            .await
            .unwrap();
    }
    let identity = "ecr:linked";
    // The name of the credential the refresher would mint `identity` for.
    let minted_for = || async {
        store
            .credential_by_token_identity(identity)
            .await
            .unwrap()
            .map(|credential| credential.name)
    };
    assert_eq!(minted_for().await, None);
    // Linked newest first: the oldest credential is found all the same.
    store
        .link_token_identity(&newer.id, Some(identity))
        .await
        .unwrap();
    store
        .link_token_identity(&older.id, Some(identity))
        .await
        .unwrap();
    assert_eq!(minted_for().await, Some("older".to_owned()));
    assert!(store
        .credential_by_token_identity("ecr:nobody")
        .await
        .unwrap()
        .is_none());
    // No row yet: a linked credential reads with no token state.
    let read = store.credential(&workspace.id, "older").await.unwrap();
    assert_eq!(read.unwrap().token, None);

    let token = StoredToken {
        last_error: Some("AWS is throttling requests".into()),
        ..stored_token(identity, "stale", 5_000)
    };
    store.put_registry_token(&token).await.unwrap();
    let read = store
        .credential(&workspace.id, "older")
        .await
        .unwrap()
        .unwrap()
        .token
        .expect("the linked row's state");
    assert_eq!(read.status, RegistryTokenStatus::Stale);
    assert_eq!(
        (read.expires_at, read.refresh_at, read.last_error),
        (token.expires_at, token.refresh_at, token.last_error.clone())
    );
    // Every read of a credential carries it, the list and resolve's choice too.
    let listed = store.credentials(&workspace.id).await.unwrap();
    assert!(listed.iter().all(|credential| credential.token.is_some()));
    let chosen = store
        .best_credential_for(&workspace.id, &older.registry_host, "team/app")
        .await
        .unwrap()
        .unwrap();
    assert!(chosen.token.is_some());

    // Unlinked (its secret changed): the next credential is found; once none uses the
    // identity, nothing is.
    store.link_token_identity(&older.id, None).await.unwrap();
    let read = store.credential(&workspace.id, "older").await.unwrap();
    assert_eq!(read.unwrap().token, None);
    assert_eq!(minted_for().await, Some("newer".to_owned()));
    assert!(store
        .delete_credential(&newer.id, record("credential.delete"))
        .await
        .unwrap());
    assert_eq!(minted_for().await, None);

    // A deleted row leaves a linked credential with no token state.
    store
        .link_token_identity(&older.id, Some(identity))
        .await
        .unwrap();
    store.delete_registry_token(identity).await.unwrap();
    let read = store.credential(&workspace.id, "older").await.unwrap();
    assert_eq!(read.unwrap().token, None);
}
