//! The registry-token leases of the store contract: at most one replica works on an
//! identity's row at a time. The refresher leases the rows that are due; a resolve that
//! finds no usable token (issue 12 items 11 and 20) leases the row exactly as the
//! refresher does, creating it as a `pending` placeholder when it is new, so one mint
//! runs per identity across replicas and a failed mint's backoff holds for every
//! claimant; a replica that cannot open the stored token re-mints it under the same
//! rule. Only the lease holder writes a result, and a dead replica's lease runs out.

use regkeeper::domain::registry_token::RegistryTokenStatus;
use regkeeper::store::StoredToken;

use super::{placeholder, stored_token, Subject};

/// `token` after a failed attempt that backs off until `next_attempt_at`.
fn failed_attempt(token: &StoredToken, next_attempt_at: i64) -> StoredToken {
    StoredToken {
        failures: token.failures + 1,
        last_error: Some("AWS is throttling requests".into()),
        next_attempt_at,
        ..token.clone()
    }
}

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
    assert_eq!(first.status, RegistryTokenStatus::Pending);
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
    let failed = failed_attempt(&first, now + 5_000);
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
    assert_eq!(counts, vec![(RegistryTokenStatus::Pending, 1)]);
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

/// The refresher's claim: only rows due at `now` that no live lease holds, oldest
/// first, at most `limit`; a placeholder whose failed first mint is due again is
/// retried too; a dead replica's lease runs out and its late result is refused.
pub(super) async fn due_tokens_are_leased_to_one_owner_until_the_lease_runs_out(subject: Subject) {
    let store = &subject.store;
    let due = |identity: &str, next_attempt_at| StoredToken {
        next_attempt_at,
        ..stored_token(identity, "fresh", 1_000)
    };
    let a = due("ecr:a", 1_000);
    let b = due("ecr:b", 2_000);
    let c = due("ecr:c", 3_000);
    let later = due("ecr:later", 50_000);
    let retry = failed_attempt(&placeholder("ecr:retry", 500), 4_000);
    for token in [&later, &c, &retry, &a, &b] {
        store.put_registry_token(token).await.unwrap();
    }
    assert_eq!(
        store
            .claim_due_tokens(10_000, "replica-a", 20_000, 2)
            .await
            .unwrap(),
        vec![a.clone(), b.clone()],
        "the oldest due, up to the limit"
    );
    assert_eq!(
        store
            .claim_due_tokens(10_000, "replica-b", 25_000, 10)
            .await
            .unwrap(),
        vec![c.clone(), retry.clone()],
        "what is due and not leased; never a row that is not due"
    );
    assert!(store
        .claim_due_tokens(15_000, "replica-c", 30_000, 10)
        .await
        .unwrap()
        .is_empty());
    // Replica A died: once its lease has run out, another replica takes its rows.
    assert_eq!(
        store
            .claim_due_tokens(20_001, "replica-c", 80_000, 10)
            .await
            .unwrap(),
        vec![a.clone(), b.clone()]
    );
    let late = stored_token("ecr:a", "fresh", 20_002);
    assert!(!store
        .finish_registry_token(&late, "replica-a")
        .await
        .unwrap());
    assert_eq!(
        store.registry_token("ecr:a").await.unwrap(),
        Some(a.clone())
    );
    assert!(store
        .finish_registry_token(&late, "replica-c")
        .await
        .unwrap());
    assert_eq!(store.registry_token("ecr:a").await.unwrap(), Some(late));
    assert_eq!(
        store
            .claim_due_tokens(50_000, "replica-d", 110_000, 10)
            .await
            .unwrap(),
        vec![c, retry, later],
        "due at exactly `next_attempt_at`"
    );
}

/// Only the lease holder writes a result, which clears its lease: a claimant with no
/// lease, or another's, writes nothing; a mint's lease runs out like a refresh's.
pub(super) async fn only_the_lease_holder_finishes(subject: Subject) {
    let store = &subject.store;
    let identity = "ecr:finish";
    let token = stored_token(identity, "fresh", 1_000);
    store.put_registry_token(&token).await.unwrap();
    let stored = || async { store.registry_token(identity).await.unwrap() };
    let result = stored_token(identity, "fresh", 2_000);
    assert!(
        !store
            .finish_registry_token(&result, "replica-a")
            .await
            .unwrap(),
        "nobody holds a lease"
    );
    assert_eq!(stored().await, Some(token.clone()));
    let due_at = token.next_attempt_at;
    assert_eq!(
        store
            .claim_due_tokens(due_at, "replica-a", due_at + 60_000, 10)
            .await
            .unwrap(),
        vec![token.clone()]
    );
    assert!(
        !store
            .finish_registry_token(&result, "replica-b")
            .await
            .unwrap(),
        "another replica holds the lease"
    );
    assert_eq!(stored().await, Some(token.clone()));
    // The holder records a failure with its backoff, which clears the lease.
    let failed = failed_attempt(&token, due_at + 5_000);
    assert!(store
        .finish_registry_token(&failed, "replica-a")
        .await
        .unwrap());
    assert_eq!(stored().await, Some(failed.clone()));
    assert!(
        !store
            .finish_registry_token(&result, "replica-a")
            .await
            .unwrap(),
        "the lease went with the first result"
    );
    assert_eq!(stored().await, Some(failed.clone()));
    // With the lease cleared, the row is due again after its backoff alone, long
    // before replica A's lease would have run out.
    assert_eq!(
        store
            .claim_due_tokens(due_at + 5_000, "replica-b", due_at + 65_000, 10)
            .await
            .unwrap(),
        vec![failed]
    );

    // A replica that leased a first mint and died: its lease runs out too, and the next
    // claimant gets the row as stored, not its own placeholder.
    let abandoned = "ecr:abandoned";
    let first = placeholder(abandoned, 10_000);
    assert_eq!(
        store
            .claim_token_for_mint(&first, 10_000, "replica-a", 70_000)
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.registry_token(abandoned).await.unwrap(),
        Some(first.clone()),
        "the placeholder is stored as given"
    );
    assert_eq!(
        store
            .claim_token_for_mint(
                &placeholder(abandoned, 70_001),
                70_001,
                "replica-b",
                130_001
            )
            .await
            .unwrap(),
        Some(first)
    );
    assert!(!store
        .finish_registry_token(&stored_token(abandoned, "fresh", 70_002), "replica-a")
        .await
        .unwrap());
}

/// A replica that cannot open the stored token re-mints it under the row's lease: only
/// while the row still holds the token issued at `issued_at`, no live lease holds it,
/// and no failed attempt's backoff runs; a healthy token's refresh point is no reason
/// to wait.
pub(super) async fn unreadable_tokens_are_leased_only_as_issued_and_outside_backoff(
    subject: Subject,
) {
    let store = &subject.store;
    let identity = "ecr:unreadable";
    let token = stored_token(identity, "fresh", 1_000);
    store.put_registry_token(&token).await.unwrap();
    // A claim at `now` by `owner` of the token issued at `issued_at`, leased a minute.
    let claim = |identity: &'static str, issued_at, now, owner: &'static str| async move {
        store
            .claim_unreadable_token(identity, issued_at, now, owner, now + 60_000)
            .await
            .unwrap()
    };
    assert_eq!(claim("ecr:missing", 1_000, 2_000, "replica-a").await, None);
    assert_eq!(
        claim(identity, 500, 2_000, "replica-a").await,
        None,
        "the row holds another token than the one found unreadable"
    );
    assert_eq!(
        claim(identity, 1_000, 2_000, "replica-a").await,
        Some(token.clone()),
        "not due for refresh, and leased all the same"
    );
    assert_eq!(claim(identity, 1_000, 3_000, "replica-b").await, None);
    assert!(store
        .claim_token_for_mint(&placeholder(identity, 3_000), 3_000, "replica-b", 63_000)
        .await
        .unwrap()
        .is_none());
    // The re-mint fails: its backoff holds for every replica.
    let failed = failed_attempt(&token, 10_000);
    assert!(store
        .finish_registry_token(&failed, "replica-a")
        .await
        .unwrap());
    assert_eq!(
        claim(identity, 1_000, 5_000, "replica-b").await,
        None,
        "inside the backoff"
    );
    assert_eq!(
        claim(identity, 1_000, 10_000, "replica-b").await,
        Some(failed)
    );
    let reminted = stored_token(identity, "fresh", 10_000);
    assert!(!store
        .finish_registry_token(&reminted, "replica-a")
        .await
        .unwrap());
    assert!(store
        .finish_registry_token(&reminted, "replica-b")
        .await
        .unwrap());
    assert_eq!(
        claim(identity, 1_000, 11_000, "replica-a").await,
        None,
        "a newer token replaced the unreadable one"
    );
    assert_eq!(
        store.registry_token(identity).await.unwrap(),
        Some(reminted)
    );
}
