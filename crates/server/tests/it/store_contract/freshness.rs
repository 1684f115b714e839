//! The freshness metrics' reads (issue 16, migration 0016): each credential with a
//! minted token comes with that token's expiry, last success and failure total (the
//! total grows only with a lease holder's failed result), failing ones first and up to
//! a limit, with the count of all; sync targets with their last successful push.

use regkeeper::domain::credential::Credential;
use regkeeper::domain::registry_token::RegistryTokenStatus;
use regkeeper::domain::sync_target::{Delivered, SyncDestination, SyncStatus};
use regkeeper::store::{CredentialFreshness, StoredToken, SyncTargetFreshness};

use super::sync_targets::{synced, target};
use super::{created_user, credential, placeholder, record, stored_token, Subject, TOKEN_LIFETIME};

pub(super) async fn freshness_follows_token_rows_and_sync_targets(subject: Subject) {
    let store = &subject.store;
    assert!(store
        .credential_freshness(10)
        .await
        .unwrap()
        .rows
        .is_empty());
    let alice = created_user(store, "alice").await;
    let workspace = &alice.workspace;
    // Two credentials share one identity; one has a row never minted; a password
    // credential has no row and no series.
    let [early, shared, pending, password] =
        ["early", "shared", "pending", "password"].map(|name| Credential {
            path_prefix: name.into(),
            ..credential(workspace, name)
        });
    for created in [&early, &shared, &pending, &password] {
        store
            .insert_credential(created, record("credential.create"))
            .await
            .unwrap();
    }
    for (credential, identity) in [
        (&early, "ecr:shared"),
        (&shared, "ecr:shared"),
        (&pending, "ecr:pending"),
    ] {
        store
            .link_token_identity(&credential.id, Some(identity))
            .await
            .unwrap();
    }
    let minted = stored_token("ecr:shared", "fresh", 10_000);
    store.put_registry_token(&minted).await.unwrap();
    store
        .put_registry_token(&placeholder("ecr:pending", 20_000))
        .await
        .unwrap();
    let row = |name: &str, status, success, expires, failures| CredentialFreshness {
        workspace: workspace.name.clone(),
        credential: name.to_owned(),
        status,
        last_success_at: success,
        expires_at: expires,
        refresh_failures_total: failures,
    };
    let fresh = RegistryTokenStatus::Fresh;
    let expiry = Some(10_000 + TOKEN_LIFETIME);
    let all = store.credential_freshness(10).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(
        all.rows,
        vec![
            // The placeholder "expires" at its creation, so it sorts first.
            row("pending", RegistryTokenStatus::Pending, None, None, 0),
            row("early", fresh, Some(10_000), expiry, 0),
            row("shared", fresh, Some(10_000), expiry, 0),
        ]
    );

    // A lease holder's failed attempt adds one to the total; a rate-limited hand-back
    // (failures unchanged) and a success add nothing.
    let due = minted.next_attempt_at;
    let leased = store
        .claim_due_tokens(due, "replica-a", due + 60_000, 10)
        .await
        .unwrap();
    // The placeholder, due since its creation, is leased too and left to its lease.
    assert!(leased.contains(&minted), "{leased:?}");
    let failed = StoredToken {
        status: RegistryTokenStatus::Stale,
        failures: 1,
        last_error: Some("AWS is throttling requests".into()),
        next_attempt_at: due + 5_000,
        ..minted.clone()
    };
    assert!(store
        .finish_registry_token(&failed, "replica-a")
        .await
        .unwrap());
    let leased = store
        .claim_due_tokens(due + 5_000, "replica-b", due + 65_000, 10)
        .await
        .unwrap();
    assert_eq!(leased, vec![failed.clone()]);
    let handed_back = StoredToken {
        next_attempt_at: due + 6_000,
        ..failed.clone()
    };
    assert!(store
        .finish_registry_token(&handed_back, "replica-b")
        .await
        .unwrap());
    let failing = store.credential_freshness(10).await.unwrap();
    assert_eq!(
        failing.rows[..2],
        [
            row("early", RegistryTokenStatus::Stale, Some(10_000), expiry, 1),
            row(
                "shared",
                RegistryTokenStatus::Stale,
                Some(10_000),
                expiry,
                1
            ),
        ],
        "failing first, counted once for the shared row: {failing:?}"
    );
    store
        .claim_due_tokens(due + 6_000, "replica-b", due + 66_000, 10)
        .await
        .unwrap();
    let refreshed = stored_token("ecr:shared", "fresh", due + 6_000);
    assert!(store
        .finish_registry_token(&refreshed, "replica-b")
        .await
        .unwrap());
    let limited = store.credential_freshness(1).await.unwrap();
    assert_eq!(limited.total, 3);
    assert_eq!(
        limited.rows,
        vec![row("pending", RegistryTokenStatus::Pending, None, None, 0)]
    );
    let after = store.credential_freshness(10).await.unwrap();
    assert_eq!(
        after.rows[1],
        row(
            "early",
            fresh,
            Some(due + 6_000),
            Some(due + 6_000 + TOKEN_LIFETIME),
            1
        ),
        "the total outlives the success"
    );

    // Sync targets: the last successful push, none before the first.
    let file = target(
        &early,
        SyncDestination::File {
            path: "ci/config.json".into(),
        },
    );
    store
        .insert_sync_target(&file, None, record("sync_target.create"))
        .await
        .unwrap();
    let sync_row = |last_success_at, status: &str| SyncTargetFreshness {
        workspace: workspace.name.clone(),
        credential: "early".into(),
        target: file.id.clone(),
        kind: "file".into(),
        status: status.into(),
        last_success_at,
    };
    let targets = store.sync_target_freshness(10).await.unwrap();
    assert_eq!(
        (targets.total, targets.rows),
        (1, vec![sync_row(None, "pending")])
    );
    store
        .claim_sync_target(&file.id, 30_000, "replica-a", 90_000)
        .await
        .unwrap()
        .expect("the lease");
    let done = synced(file.clone(), 31_000, Delivered::default());
    assert_eq!(done.status, SyncStatus::Ok);
    assert!(store
        .finish_sync_target(&done, "replica-a", None)
        .await
        .unwrap());
    let targets = store.sync_target_freshness(10).await.unwrap();
    assert_eq!(targets.rows, vec![sync_row(Some(31_000), "ok")]);
    let none = store.sync_target_freshness(0).await.unwrap();
    assert_eq!((none.total, none.rows.len()), (1, 0));
}
