//! The workload-role part of the store contract: roles are unique by name in their
//! workspace, listed across workspaces, updated only at the revision they were read at,
//! and take their tokens with them; and their trusts (issue 13, migration 0012) come
//! back as they went in, with their audit entries, while tokens exchanged under a trust
//! authenticate as the role, conflict on a replayed hash, are pruned once expired (and
//! only those, a limited number at a time), and go with their trust and with their role.

use regkeeper::domain::Error;
use regkeeper::store::{ApiTokenRow, RoleRow, TokenOwner, TokenSubject, TrustRow};

use super::{
    assert_conflict, audit_count, created_role, created_user, record, role, token, token_stored,
    uuid, Subject,
};

pub(super) async fn workload_roles_and_their_tokens(subject: Subject) {
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
    assert_conflict(&error, "role_exists");
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

fn trust(role: &RoleRow, subject: &str) -> TrustRow {
    TrustRow {
        id: uuid(),
        role_id: role.id.clone(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        audience: "regkeeper".into(),
        subject: subject.into(),
        claims: r#"{"repository_owner":"acme"}"#.into(),
        max_session_seconds: 3600,
        created_at: 2_000,
        created_by: "alice".into(),
    }
}

/// A token of `role` with `hash`, as an exchange issues it, expiring at `expires_at`.
fn exchanged_token(role: &RoleRow, hash: &str, expires_at: i64) -> ApiTokenRow {
    ApiTokenRow {
        owner: TokenOwner::Role(role.id.clone()),
        expires_at: Some(expires_at),
        // The fixture's user owner is replaced by the role.
        ..token(&role.id, hash)
    }
}

/// Issue 13 item 1: trusts and exchanged tokens on both backends.
pub(super) async fn role_trusts_and_exchanged_tokens(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let role = created_role(store, &alice.workspace, "builder", "alice").await;
    let first = trust(&role, "repo:acme/app:*");
    let second = TrustRow {
        created_at: 3_000,
        ..trust(&role, "repo:acme/lib:*")
    };
    let before = audit_count(store).await;
    store
        .insert_trust(&first, record("role.trust_add"))
        .await
        .unwrap();
    store
        .insert_trust(&second, record("role.trust_add"))
        .await
        .unwrap();
    assert_eq!(audit_count(store).await, before + 2);
    assert_eq!(
        store.trusts(&role.id).await.unwrap(),
        vec![first.clone(), second.clone()]
    );

    let exchanged = |hash: &str, expires_at: i64| exchanged_token(&role, hash, expires_at);
    let live = exchanged("hash-live", 50_000);
    let expired = exchanged("hash-expired", 4_000);
    let other = exchanged("hash-other-trust", 50_000);
    store
        .insert_exchanged_token(&live, &first.id, record("oidc.exchange"))
        .await
        .unwrap();
    store
        .insert_exchanged_token(&expired, &first.id, record("oidc.exchange"))
        .await
        .unwrap();
    store
        .insert_exchanged_token(&other, &second.id, record("oidc.exchange"))
        .await
        .unwrap();
    let (found, subject_of) = store.api_token_by_hash("hash-live").await.unwrap().unwrap();
    assert_eq!(found, live);
    assert_eq!(subject_of, TokenSubject::Role(role.clone()));
    // A replay that derived the same token conflicts instead of adding a row.
    let replay = ApiTokenRow {
        id: uuid(),
        ..live.clone()
    };
    let error = store
        .insert_exchanged_token(&replay, &first.id, record("oidc.exchange"))
        .await
        .unwrap_err();
    assert_conflict(&error, "token_exists");

    // Only expired exchanged tokens are pruned; a user's expired token is not.
    let user_expired = token(&alice.user.id, "hash-user-expired");
    store
        .insert_api_token(&user_expired, record("token.create"))
        .await
        .unwrap();
    assert_eq!(store.prune_exchanged_tokens(10_000, 100).await.unwrap(), 1);
    assert!(!token_stored(store, "hash-expired").await);
    assert!(token_stored(store, "hash-live").await);
    assert!(token_stored(store, "hash-user-expired").await);

    // Removing a trust takes its tokens with it, and only its own.
    assert!(!store
        .delete_trust(&uuid(), &first.id, record("role.trust_remove"))
        .await
        .unwrap());
    let before = audit_count(store).await;
    assert!(store
        .delete_trust(&role.id, &first.id, record("role.trust_remove"))
        .await
        .unwrap());
    assert_eq!(audit_count(store).await, before + 1);
    assert!(!token_stored(store, "hash-live").await);
    assert!(token_stored(store, "hash-other-trust").await);
    assert_eq!(store.trusts(&role.id).await.unwrap(), vec![second.clone()]);

    // Deleting the role takes its trusts and their tokens.
    assert!(store
        .delete_role(&role.id, record("role.delete"))
        .await
        .unwrap());
    assert!(store.trusts(&role.id).await.unwrap().is_empty());
    assert!(!token_stored(store, "hash-other-trust").await);
}

/// Pruning deletes at most `limit` expired exchanged tokens a call, and says how many.
pub(super) async fn expired_exchanged_tokens_are_pruned_up_to_the_limit(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let role = created_role(store, &alice.workspace, "builder", "alice").await;
    let through = trust(&role, "repo:acme/app:*");
    store
        .insert_trust(&through, record("role.trust_add"))
        .await
        .unwrap();
    let expired = ["hash-a", "hash-b", "hash-c"];
    for (hash, expires_at) in expired.iter().zip([3_000, 4_000, 5_000]) {
        store
            .insert_exchanged_token(
                &exchanged_token(&role, hash, expires_at),
                &through.id,
                record("oidc.exchange"),
            )
            .await
            .unwrap();
    }
    store
        .insert_exchanged_token(
            &exchanged_token(&role, "hash-live", 50_000),
            &through.id,
            record("oidc.exchange"),
        )
        .await
        .unwrap();
    assert_eq!(store.prune_exchanged_tokens(10_000, 2).await.unwrap(), 2);
    assert_eq!(store.prune_exchanged_tokens(10_000, 2).await.unwrap(), 1);
    assert_eq!(store.prune_exchanged_tokens(10_000, 2).await.unwrap(), 0);
    for hash in expired {
        assert!(!token_stored(store, hash).await, "{hash}");
    }
    assert!(token_stored(store, "hash-live").await);
}

/// The administrative listing of roles spans every workspace.
pub(super) async fn all_roles_span_every_workspace(subject: Subject) {
    let store = &subject.store;
    assert!(store.all_roles().await.unwrap().is_empty());
    let mut created = Vec::new();
    for name in ["alice", "bob"] {
        let user = created_user(store, name).await;
        for role_name in ["builder", "deployer"] {
            let role = created_role(store, &user.workspace, role_name, name).await;
            created.push(role);
        }
    }
    let mut listed = store.all_roles().await.unwrap();
    listed.sort_by(|one, other| one.id.cmp(&other.id));
    created.sort_by(|one, other| one.id.cmp(&other.id));
    assert_eq!(listed, created);
}
