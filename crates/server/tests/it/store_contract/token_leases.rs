//! The on-demand mint part of the store contract (issue 12 items 11 and 20): a resolve
//! that finds no usable token leases the identity's row exactly as the refresher does,
//! creating it as a `pending` placeholder when it is new, so one mint runs per identity
//! across replicas, and a failed mint's backoff holds for every claimant.

use regkeeper::store::StoredToken;

use super::{placeholder, stored_token, Subject};

/// Issue 12 items 11 and 20: first mints are leased like refreshes, in the store.
pub(super) async fn mint_claims_are_exclusive_and_respect_backoff(subject: Subject) {
    let store = &subject.store;
    let identity = "ecr:contract-claims";
    let now = 1_000_000;
    let first = store
        .claim_token_for_mint(&placeholder(identity, now), now, "replica-a", now + 60_000)
        .await
        .unwrap()
        .expect("a new identity is leased to its first claimant");
    assert_eq!(first.status, "pending");
    assert!(
        store
            .claim_token_for_mint(
                &placeholder(identity, now),
                now + 5,
                "replica-b",
                now + 60_005
            )
            .await
            .unwrap()
            .is_none(),
        "a second replica does not mint while the first holds the lease"
    );
    assert!(
        store
            .claim_due_tokens(now + 5, "refresher", now + 60_005, 10)
            .await
            .unwrap()
            .is_empty(),
        "nor does the refresher"
    );
    // The first mint fails: backoff for 5 s, lease cleared.
    let failed = StoredToken {
        failures: 1,
        last_error: Some("AWS is throttling requests".into()),
        next_attempt_at: now + 5_000,
        ..first.clone()
    };
    assert!(store
        .finish_registry_token(&failed, "replica-a")
        .await
        .unwrap());
    assert!(
        store
            .claim_token_for_mint(
                &placeholder(identity, now),
                now + 10,
                "replica-b",
                now + 60_010
            )
            .await
            .unwrap()
            .is_none(),
        "inside the backoff nobody mints"
    );
    let stored = store.registry_token(identity).await.unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.failures), ("pending", 1));
    let counts = store.token_status_counts(now + 10).await.unwrap();
    assert_eq!(counts, vec![("pending".to_owned(), 1)]);
    // After it, one claimant gets it, with the row's failures as they were.
    let second = store
        .claim_token_for_mint(
            &placeholder(identity, now),
            now + 5_000,
            "replica-b",
            now + 65_000,
        )
        .await
        .unwrap()
        .expect("due again after the backoff");
    assert_eq!(second.failures, 1);
    assert!(
        !store
            .finish_registry_token(&second, "replica-a")
            .await
            .unwrap(),
        "only the holder finishes"
    );
    // A minted token that is not due is nobody's to mint again.
    let minted = stored_token(identity, "fresh", now + 5_000);
    assert!(store
        .finish_registry_token(&minted, "replica-b")
        .await
        .unwrap());
    assert!(store
        .claim_token_for_mint(
            &placeholder(identity, now),
            now + 6_000,
            "replica-a",
            now + 66_000
        )
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.registry_token(identity).await.unwrap().unwrap(),
        minted
    );
}
