//! The sync-target part of the store contract: stored settings and sealed keys come
//! back as they went in, `behind` follows the credential's revision and its token,
//! the worker leases only due targets and a request any target, leases are exclusive
//! until they run out and only their holder finishes, audit entries go with the
//! writes, counts follow the stored status, and targets go with their credential.

use regkeeper::domain::credential::SealedSecret;
use regkeeper::domain::sync_target::{Delivered, SyncDestination, SyncStatus, SyncTarget};
use regkeeper::store::SealedKind;

use regkeeper::store::SharedStore;

use super::{audit_count, created_user, credential, record, stored_token, uuid, Subject};

pub(super) fn target(
    credential: &regkeeper::domain::credential::Credential,
    destination: SyncDestination,
) -> SyncTarget {
    SyncTarget {
        id: uuid(),
        credential_id: credential.id.clone(),
        credential_name: credential.name.clone(),
        workspace_id: credential.workspace_id.clone(),
        workspace_name: credential.workspace_name.clone(),
        destination,
        signing_key: None,
        status: SyncStatus::Pending,
        failures: 0,
        last_error: None,
        next_attempt_at: Some(1_000),
        last_attempt_at: None,
        last_synced_at: None,
        delivered: Delivered::default(),
        behind: true,
        created_at: 1_000,
        created_by: "alice".into(),
    }
}

/// A request's lease on target `id` at `now`, held by `owner` until `lease_until`.
async fn claim(
    store: &SharedStore,
    id: &str,
    now: i64,
    owner: &str,
    lease_until: i64,
) -> Option<SyncTarget> {
    store
        .claim_sync_target(id, now, owner, lease_until)
        .await
        .unwrap()
}

/// The worker's leases on up to `limit` due targets at `now`, held by `owner` until
/// `lease_until`.
async fn claim_due(
    store: &SharedStore,
    now: i64,
    owner: &str,
    lease_until: i64,
    limit: i64,
) -> Vec<SyncTarget> {
    store
        .claim_due_sync_targets(now, owner, lease_until, limit)
        .await
        .unwrap()
}

/// The targets' ids, sorted.
fn ids(targets: &[SyncTarget]) -> Vec<String> {
    let mut ids: Vec<String> = targets.iter().map(|target| target.id.clone()).collect();
    ids.sort();
    ids
}

/// Marks a leased target delivered as of `delivered`.
pub(super) fn synced(mut target: SyncTarget, at: i64, delivered: Delivered) -> SyncTarget {
    target.status = SyncStatus::Ok;
    target.failures = 0;
    target.next_attempt_at = None;
    target.last_attempt_at = Some(at);
    target.last_synced_at = Some(at);
    target.delivered = delivered;
    target
}

pub(super) async fn sync_targets_lifecycle(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let mut ecr = credential(&alice.workspace, "ecr");
    store
        .insert_credential(&ecr, record("credential.create"))
        .await
        .unwrap();
    let file = target(
        &ecr,
        SyncDestination::File {
            path: "ci/config.json".into(),
        },
    );
    let mut hook = target(
        &ecr,
        SyncDestination::Webhook {
            url: "https://hooks.example.com/rk?team=a".into(),
        },
    );
    hook.signing_key = Some(SealedSecret {
        ciphertext: vec![1, 2],
        wrapped_key: vec![3, 4],
        key_version: 2,
    });
    hook.created_at = 1_001;
    let kubernetes = target(
        &ecr,
        SyncDestination::Kubernetes {
            namespaces: vec!["ci".into(), "build".into()],
            secret_name: "regkeeper-ecr".into(),
        },
    );
    store
        .insert_sync_target(&file, None, record("sync_target.create"))
        .await
        .unwrap();
    // Leased to its creator for its first push.
    store
        .insert_sync_target(
            &hook,
            Some(("creator", 5_000)),
            record("sync_target.create"),
        )
        .await
        .unwrap();
    assert_eq!(audit_count(store).await, 4);
    let listed = store.sync_targets(&ecr.id).await.unwrap();
    assert_eq!(
        listed,
        vec![file.clone(), hook.clone()],
        "read back as written"
    );

    // A master-key rotation finds the signing key, with its credential's workspace for
    // the binding, and swaps in the re-wrapped data key by compare-and-swap.
    let pending = store
        .sealed_page(SealedKind::SyncSigningKey, "", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|sealed| sealed.sealed.key_version != 3)
        .collect::<Vec<_>>();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].owner_id, hook.id);
    assert_eq!(pending[0].workspace_id, ecr.workspace_id);
    let rewrapped = SealedSecret {
        wrapped_key: vec![9, 9],
        key_version: 3,
        ..pending[0].sealed.clone()
    };
    assert!(store
        .replace_wrapped_key(
            SealedKind::SyncSigningKey,
            &hook.id,
            &pending[0].sealed,
            &rewrapped
        )
        .await
        .unwrap());
    assert!(!store
        .replace_wrapped_key(
            SealedKind::SyncSigningKey,
            &hook.id,
            &pending[0].sealed,
            &rewrapped
        )
        .await
        .unwrap());
    assert!(store
        .sealed_page(SealedKind::SyncSigningKey, "", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|sealed| sealed.sealed.key_version != 3)
        .collect::<Vec<_>>()
        .is_empty());
    hook.signing_key = Some(rewrapped);

    // Leases: one holder at a time; the creator's lease keeps the hook from the worker.
    let due = claim_due(store, 2_000, "replica-a", 62_000, 10).await;
    assert_eq!(ids(&due), vec![file.id.clone()]);
    assert!(claim_due(store, 2_000, "replica-b", 62_000, 10)
        .await
        .is_empty());
    let due = claim_due(store, 6_000, "replica-b", 66_000, 10).await;
    assert_eq!(ids(&due), vec![hook.id.clone()]);

    // Only the lease holder finishes, with its audit entry in the same transaction.
    let delivered = Delivered {
        revision: Some(1),
        token_issued_at: None,
        key: Some("ghcr.io".into()),
    };
    let done = synced(file.clone(), 3_000, delivered.clone());
    assert!(!store
        .finish_sync_target(&done, "replica-b", Some(record("sync_target.push")))
        .await
        .unwrap());
    assert_eq!(audit_count(store).await, 4, "no entry for a lost lease");
    assert!(store
        .finish_sync_target(&done, "replica-a", Some(record("sync_target.push")))
        .await
        .unwrap());
    assert_eq!(audit_count(store).await, 5);
    let mut failing = hook.clone();
    failing.status = SyncStatus::Failing;
    failing.failures = 1;
    failing.last_error = Some("the webhook answered HTTP 503".into());
    failing.next_attempt_at = Some(100_000);
    assert!(store
        .finish_sync_target(&failing, "replica-b", None)
        .await
        .unwrap());
    let listed = store.sync_targets(&ecr.id).await.unwrap();
    assert_eq!(listed[0].status, SyncStatus::Ok);
    assert_eq!(listed[0].delivered, delivered);
    assert!(!listed[0].behind, "delivered the credential's revision");
    assert_eq!(listed[1].last_error, failing.last_error);
    // Nothing is due: one is up to date, the other waits for its backoff.
    assert!(claim_due(store, 70_000, "replica-a", 130_000, 10)
        .await
        .is_empty());

    // A changed credential puts its targets behind.
    let previous = ecr.revision;
    ecr.revision += 1;
    ecr.username = Some("AKIAIOSFODNN7OTHER01".into());
    store
        .update_credential(&ecr, previous, record("credential.update"))
        .await
        .unwrap();
    let due = claim_due(store, 71_000, "replica-a", 131_000, 10).await;
    assert_eq!(ids(&due), vec![file.id.clone()]);
    assert!(due[0].behind);
    let revision_two = Delivered {
        revision: Some(2),
        ..delivered.clone()
    };
    assert!(store
        .finish_sync_target(
            &synced(due[0].clone(), 71_000, revision_two),
            "replica-a",
            None
        )
        .await
        .unwrap());

    // So does a token minted after the one delivered, and only a newer one.
    store
        .put_registry_token(&stored_token("ecr:shared", "fresh", 50_000))
        .await
        .unwrap();
    store
        .link_token_identity(&ecr.id, Some("ecr:shared"))
        .await
        .unwrap();
    let due = claim_due(store, 72_000, "replica-a", 132_000, 10).await;
    assert_eq!(due.len(), 1, "never delivered a token");
    let with_token = Delivered {
        revision: Some(2),
        token_issued_at: Some(50_000),
        key: Some("ghcr.io".into()),
    };
    assert!(store
        .finish_sync_target(
            &synced(due[0].clone(), 72_000, with_token),
            "replica-a",
            None
        )
        .await
        .unwrap());
    assert!(!store.sync_targets(&ecr.id).await.unwrap()[0].behind);
    store
        .put_registry_token(&stored_token("ecr:shared", "fresh", 40_000))
        .await
        .unwrap();
    assert!(
        !store.sync_targets(&ecr.id).await.unwrap()[0].behind,
        "an older token is no reason to push"
    );
    store
        .put_registry_token(&stored_token("ecr:shared", "fresh", 90_000))
        .await
        .unwrap();
    assert!(
        store.sync_targets(&ecr.id).await.unwrap()[0].behind,
        "re-minted"
    );

    // A push on request leases one target whatever its schedule, once.
    assert!(claim(store, &hook.id, 73_000, "request-1", 133_000)
        .await
        .is_some());
    assert!(claim(store, &hook.id, 73_000, "request-2", 133_000)
        .await
        .is_none());
    assert!(claim(store, "no-such-target", 73_000, "request-2", 133_000)
        .await
        .is_none());

    store
        .insert_sync_target(&kubernetes, None, record("sync_target.create"))
        .await
        .unwrap();
    assert_eq!(
        store.sync_target_counts().await.unwrap(),
        vec![
            ("failing".to_owned(), 1),
            ("ok".to_owned(), 1),
            ("pending".to_owned(), 1)
        ]
    );
    let before = audit_count(store).await;
    assert!(!store
        .delete_sync_target(
            "another-credential",
            &kubernetes.id,
            record("sync_target.delete")
        )
        .await
        .unwrap());
    assert!(store
        .delete_sync_target(&ecr.id, &kubernetes.id, record("sync_target.delete"))
        .await
        .unwrap());
    assert_eq!(audit_count(store).await, before + 1);

    // Targets go with their credential.
    assert!(store
        .delete_credential(&ecr.id, record("credential.delete"))
        .await
        .unwrap());
    assert!(store.sync_targets(&ecr.id).await.unwrap().is_empty());
    assert!(store.sync_target_counts().await.unwrap().is_empty());
}

/// The worker's claim takes only targets that are due — a retry whose time has come,
/// or, with nothing scheduled, one that is behind — and that no live lease holds, at
/// most `limit`; a push on request takes one target whatever its schedule; a dead
/// replica's lease runs out, and its late result writes nothing.
pub(super) async fn sync_target_leases(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let ecr = credential(&alice.workspace, "ecr");
    store
        .insert_credential(&ecr, record("credential.create"))
        .await
        .unwrap();
    let file = |path: &str| SyncDestination::File { path: path.into() };
    let retry = SyncTarget {
        status: SyncStatus::Failing,
        failures: 1,
        last_error: Some("the webhook answered HTTP 503".into()),
        ..target(&ecr, file("retry.json"))
    };
    let unscheduled = SyncTarget {
        next_attempt_at: None,
        ..target(&ecr, file("new.json"))
    };
    let backing_off = SyncTarget {
        status: SyncStatus::Failing,
        failures: 3,
        next_attempt_at: Some(90_000),
        ..target(&ecr, file("backoff.json"))
    };
    let current = synced(
        target(&ecr, file("current.json")),
        900,
        Delivered {
            revision: Some(ecr.revision),
            token_issued_at: None,
            key: None,
        },
    );
    for created in [&retry, &unscheduled, &backing_off, &current] {
        store
            .insert_sync_target(created, None, record("sync_target.create"))
            .await
            .unwrap();
    }
    let first = claim_due(store, 10_000, "replica-a", 20_000, 1).await;
    assert_eq!(first.len(), 1, "at most the limit");
    let second = claim_due(store, 10_000, "replica-b", 25_000, 10).await;
    assert_eq!(
        ids(&[first.clone(), second.clone()].concat()),
        ids(&[retry.clone(), unscheduled.clone()]),
        "each due target once; not one backing off, nor one up to date"
    );
    let (first, second) = (first[0].clone(), second[0].clone());
    assert!(claim_due(store, 15_000, "replica-c", 30_000, 10)
        .await
        .is_empty());

    // A push on request: any target no live lease holds, due or not, once.
    for requested in [&backing_off, &current] {
        let claimed = claim(store, &requested.id, 15_000, "request", 30_000)
            .await
            .expect("claimed whatever its schedule");
        assert_eq!(claimed.id, requested.id);
    }
    assert!(claim(store, &first.id, 15_000, "request", 30_000)
        .await
        .is_none());

    // Replica A died: once its lease has run out, the worker and requests take its
    // target again; replica B's lease still holds.
    let taken_over = claim_due(store, 20_001, "replica-c", 80_000, 10).await;
    assert_eq!(ids(&taken_over), vec![first.id.clone()]);
    assert!(claim(store, &second.id, 20_001, "request-2", 80_000)
        .await
        .is_none());
    assert!(claim(store, &second.id, 25_001, "request-2", 85_000)
        .await
        .is_some());

    // Replica A's late result writes nothing, not even its audit entry.
    let stored = store.sync_targets(&ecr.id).await.unwrap();
    let entries = audit_count(store).await;
    let delivered = Delivered {
        revision: Some(ecr.revision),
        token_issued_at: None,
        key: None,
    };
    let late = synced(first.clone(), 20_002, delivered.clone());
    assert!(!store
        .finish_sync_target(&late, "replica-a", Some(record("sync_target.push")))
        .await
        .unwrap());
    assert_eq!(store.sync_targets(&ecr.id).await.unwrap(), stored);
    assert_eq!(audit_count(store).await, entries);
    assert!(store
        .finish_sync_target(&late, "replica-c", Some(record("sync_target.push")))
        .await
        .unwrap());
    assert_eq!(audit_count(store).await, entries + 1);
    let finished = store
        .sync_targets(&ecr.id)
        .await
        .unwrap()
        .into_iter()
        .find(|target| target.id == first.id)
        .unwrap();
    assert_eq!(
        (finished.status, finished.delivered, finished.behind),
        (SyncStatus::Ok, delivered, false)
    );
    // The request that took over replica B's target records a failure.
    let failed = SyncTarget {
        status: SyncStatus::Failing,
        failures: second.failures + 1,
        next_attempt_at: Some(120_000),
        ..second
    };
    assert!(store
        .finish_sync_target(&failed, "request-2", None)
        .await
        .unwrap());
    // Counted by stored status: two delivered, two failing (one of them backing off).
    assert_eq!(
        store.sync_target_counts().await.unwrap(),
        vec![("failing".to_owned(), 2), ("ok".to_owned(), 2)]
    );
}

/// An `aws_secret` target (which migration 0014 admits) and a credential read from
/// Secrets Manager keep every setting through a write and a read.
pub(super) async fn aws_secret_settings_round_trip(subject: Subject) {
    use regkeeper::domain::credential::{AuthMethod, AwsSecretSource, CredentialKind};
    use regkeeper::domain::sync_target::AwsSecretDestination;
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let ecr = credential(&alice.workspace, "aws");
    store
        .insert_credential(&ecr, record("credential.create"))
        .await
        .unwrap();
    let mut source = credential(&alice.workspace, "harbor");
    source.kind = CredentialKind::Docker;
    source.auth_method = AuthMethod::AwsSecret;
    source.username = None;
    source.sealed = None;
    source.settings = regkeeper::domain::credential::CredentialSettings {
        aws_region: Some("eu-west-1".into()),
        aws_secret: Some(AwsSecretSource {
            secret_id: "prod/harbor-login".into(),
            identity_id: ecr.id.clone(),
            identity_name: ecr.name.clone(),
            username_key: "user".into(),
            password_key: "token".into(),
        }),
        ..Default::default()
    };
    store
        .insert_credential(&source, record("credential.create"))
        .await
        .unwrap();
    let read = store
        .credential(&alice.workspace.id, "harbor")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.auth_method, AuthMethod::AwsSecret);
    assert_eq!(read.settings, source.settings);
    assert!(read.sealed.is_none());

    let secret = target(
        &source,
        SyncDestination::AwsSecret(AwsSecretDestination {
            secret_id: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecs/x-Ab12".into(),
            region: Some("eu-west-1".into()),
            identity_id: ecr.id.clone(),
            identity_name: ecr.name.clone(),
            adopt: true,
        }),
    );
    store
        .insert_sync_target(&secret, None, record("sync_target.create"))
        .await
        .unwrap();
    assert_eq!(
        store.sync_targets(&source.id).await.unwrap(),
        vec![secret],
        "read back as written"
    );
}
