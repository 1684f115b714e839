//! The on-demand mint part of the store contract (issue 12 items 11 and 20): a resolve
//! that finds no usable token leases the identity's row exactly as the refresher does,
//! creating it as a `pending` placeholder when it is new, so one mint runs per identity
//! across replicas, and a failed mint's backoff holds for every claimant.

use regkeeper::domain::credential::SealedSecret;
use regkeeper::domain::registry_token::RegistryTokenStatus;
use regkeeper::store::StoredToken;

use super::Subject;

fn placeholder(identity: &str, now: i64) -> StoredToken {
    StoredToken {
        identity: identity.to_owned(),
        username: String::new(),
        sealed: SealedSecret {
            ciphertext: Vec::new(),
            wrapped_key: Vec::new(),
            key_version: 0,
        },
        issued_at: now,
        expires_at: Some(now),
        refresh_at: now,
        status: RegistryTokenStatus::Pending,
        failures: 0,
        last_error: None,
        next_attempt_at: now,
        updated_at: now,
    }
}

/// Issue 12 items 11 and 20: first mints are leased like refreshes, in the store.
pub async fn mint_claims_are_exclusive_and_respect_backoff(subject: Subject) {
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
    assert_eq!(
        (stored.status, stored.failures),
        (RegistryTokenStatus::Pending, 1)
    );
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
    let minted = StoredToken {
        username: "AWS".into(),
        sealed: SealedSecret {
            ciphertext: vec![1, 2, 3],
            wrapped_key: vec![4, 5],
            key_version: 1,
        },
        issued_at: now + 5_000,
        expires_at: Some(now + 5_000 + 43_200_000),
        refresh_at: now + 5_000 + 28_800_000,
        status: RegistryTokenStatus::Fresh,
        failures: 0,
        last_error: None,
        next_attempt_at: now + 5_000 + 28_800_000,
        updated_at: now + 5_000,
        ..second
    };
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

/// Issue 12 item 13: a rotation reads every sealed value page by page, whatever its
/// master key version, each with a label naming it, and re-wraps minted tokens too.
pub async fn sealed_pages_name_every_value(subject: Subject) {
    use regkeeper::store::SealedKind;

    let store = &subject.store;
    let alice = super::created_user(store, "alice").await;
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let credential = super::credential(&alice.workspace, name);
        store
            .insert_credential(&credential, super::record("credential.create"))
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
    let minted = StoredToken {
        username: "AWS".into(),
        sealed: SealedSecret {
            ciphertext: vec![1],
            wrapped_key: vec![2],
            key_version: 1,
        },
        status: RegistryTokenStatus::Fresh,
        issued_at: 20,
        expires_at: Some(43_200_020),
        ..leased
    };
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
