//! The store contract of migration 0008's tables: cross-workspace role grants (in
//! force only while their granter administers the workspace and is enabled),
//! disabling a user with their tokens, enabling with a new one, and deleting a user
//! with their personal workspace; each write with its audit entry.

use regkeeper::domain::identity::{Role, WorkspaceKind};
use regkeeper::store::{
    ApiTokenRow, RoleGrantRow, RoleRow, SharedStore, TokenOwner, TokenSubject, WorkspaceRow,
};

use super::{audit_count, credential, new_user, record, role, token, token_stored, uuid, Subject};

/// A token of `role` made by user `user_id`: one disabling or deleting them revokes.
fn role_token_by(role: &RoleRow, user_id: &str, hash: &str) -> ApiTokenRow {
    ApiTokenRow {
        owner: TokenOwner::Role(role.id.clone()),
        created_by: Some(user_id.into()),
        ..token(user_id, hash)
    }
}

/// Stores `grant` with its `role.grant` audit entry.
async fn put_grant(store: &SharedStore, grant: &RoleGrantRow) {
    store
        .put_role_grant(grant, record("role.grant"))
        .await
        .unwrap();
}

/// Issue 12 items 2 and 17: grants, user disabling and deletion, on both backends.
pub(super) async fn grants_and_user_lifecycle(subject: Subject) {
    let store = &subject.store;
    let alice = new_user("alice");
    let bob = new_user("bob");
    for user in [&alice, &bob] {
        store
            .create_user(user, record("user.create"))
            .await
            .unwrap();
    }
    let target = WorkspaceRow {
        id: uuid(),
        name: "acme/ci".into(),
        kind: WorkspaceKind::Organization,
        created_at: 1_000,
    };
    store
        .create_workspace(&target, &alice.user.id, record("workspace.create"))
        .await
        .unwrap();
    store
        .put_member(
            &target.id,
            &bob.user.id,
            Role::Admin,
            1_000,
            record("member.put"),
        )
        .await
        .unwrap();
    // A role in bob's personal workspace, with a token, reaching acme/ci.
    let role = RoleRow {
        created_at: 1_000,
        updated_at: 1_000,
        ..role(&bob.workspace, "puller", "bob")
    };
    store
        .create_role(&role, record("role.create"))
        .await
        .unwrap();
    let role_token = ApiTokenRow {
        owner: TokenOwner::Role(role.id.clone()),
        ..token(&bob.user.id, "hash-bob-role")
    };
    store
        .insert_api_token(&role_token, record("role.token_create"))
        .await
        .unwrap();
    // Issue 12 item 17: a role in acme/ci with a token bob created there, and one from
    // before creators were recorded (no creator).
    let deployer = RoleRow {
        id: uuid(),
        workspace_id: target.id.clone(),
        workspace_name: target.name.clone(),
        name: "deployer".into(),
        ..role.clone()
    };
    store
        .create_role(&deployer, record("role.create"))
        .await
        .unwrap();
    let by_bob = role_token_by(&deployer, &bob.user.id, "hash-acme-by-bob");
    let unattributed = ApiTokenRow {
        owner: TokenOwner::Role(deployer.id.clone()),
        ..token(&bob.user.id, "hash-acme-unattributed")
    };
    for row in [&by_bob, &unattributed] {
        store
            .insert_api_token(row, record("role.token_create"))
            .await
            .unwrap();
    }
    assert_eq!(
        store.role_tokens_created_by(&bob.user.id).await.unwrap(),
        vec![by_bob.clone()]
    );
    assert!(store
        .all_roles()
        .await
        .unwrap()
        .iter()
        .any(|found| found.id == role.id));

    // Whether target holds a grant in force for the role, asked afresh each time.
    let grant_in_force = || store.role_grant_in_force(&target.id, &role.id);
    assert!(!grant_in_force().await.unwrap());
    let before = audit_count(store).await;
    let grant = RoleGrantRow {
        id: uuid(),
        workspace_id: target.id.clone(),
        role_id: role.id.clone(),
        role_workspace_name: role.workspace_name.clone(),
        role_name: role.name.clone(),
        granted_by_user_id: bob.user.id.clone(),
        granted_by: "bob".into(),
        granted_at: 2_000,
        in_force: true,
    };
    put_grant(store, &grant).await;
    assert!(grant_in_force().await.unwrap());
    // Granted again by alice: one row, now hers.
    let renewed = RoleGrantRow {
        id: uuid(),
        granted_by_user_id: alice.user.id.clone(),
        granted_by: "alice".into(),
        ..grant.clone()
    };
    put_grant(store, &renewed).await;
    let listed = store.role_grants(&target.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].granted_by.as_str(),
            listed[0].role_name.as_str(),
            listed[0].in_force
        ),
        ("alice", "puller", true)
    );
    assert_eq!(audit_count(store).await, before + 2);
    // The granter demoted: the grant lapses; back to bob, and bob disabled: lapses too.
    store
        .put_member(
            &target.id,
            &alice.user.id,
            Role::Maintain,
            3_000,
            record("member.put"),
        )
        .await
        .unwrap();
    assert!(!grant_in_force().await.unwrap());
    assert!(!store.role_grants(&target.id).await.unwrap()[0].in_force);
    put_grant(store, &grant).await;
    assert!(grant_in_force().await.unwrap());

    // Disabling bob revokes his tokens (not his role's) and refuses a second time.
    let second = token(&bob.user.id, "hash-bob-second");
    store
        .insert_api_token(&second, record("api_token.create"))
        .await
        .unwrap();
    assert!(store
        .disable_user(&bob.user.id, 4_000, record("user.disable"))
        .await
        .unwrap());
    assert!(!store
        .disable_user(&bob.user.id, 4_500, record("user.disable"))
        .await
        .unwrap());
    let (found, subject_of) = store
        .api_token_by_hash("hash-bob-second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.revoked_at, Some(4_000));
    assert!(matches!(subject_of, TokenSubject::User(user) if user.disabled_at == Some(4_000)));
    let (found, _) = store
        .api_token_by_hash("hash-bob-role")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.revoked_at, None);
    // ...and the role tokens he created anywhere, but not those nobody is recorded for.
    let revoked_by_bob = store
        .api_token_by_hash("hash-acme-by-bob")
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(revoked_by_bob.revoked_at, Some(4_000));
    assert_eq!(
        revoked_by_bob.created_by.as_deref(),
        Some(bob.user.id.as_str())
    );
    assert_eq!(
        store
            .api_token_by_hash("hash-acme-unattributed")
            .await
            .unwrap()
            .unwrap()
            .0
            .revoked_at,
        None
    );
    assert_eq!(
        store
            .user_by_name("bob")
            .await
            .unwrap()
            .unwrap()
            .disabled_at,
        Some(4_000)
    );
    assert!(!grant_in_force().await.unwrap());
    assert_eq!(
        store
            .api_token_by_id(&second.id)
            .await
            .unwrap()
            .map(|row| row.id),
        Some(second.id.clone())
    );

    // Enabled with a new token.
    let fresh = token(&bob.user.id, "hash-bob-fresh");
    assert!(store
        .enable_user(&bob.user.id, &fresh, record("user.enable"))
        .await
        .unwrap());
    assert!(!store
        .enable_user(&bob.user.id, &fresh, record("user.enable"))
        .await
        .unwrap());
    assert_eq!(
        store
            .user_by_name("bob")
            .await
            .unwrap()
            .unwrap()
            .disabled_at,
        None
    );
    assert!(token_stored(store, "hash-bob-fresh").await);
    assert!(grant_in_force().await.unwrap());

    // Deleted: user, tokens (his and his role's), memberships, ~bob and what it held.
    let kept = credential(&bob.workspace, "mine");
    store
        .insert_credential(&kept, record("credential.create"))
        .await
        .unwrap();
    let later = role_token_by(&deployer, &bob.user.id, "hash-acme-by-bob-later");
    store
        .insert_api_token(&later, record("role.token_create"))
        .await
        .unwrap();
    let before = audit_count(store).await;
    assert!(store
        .delete_user(
            &bob.user.id,
            &bob.workspace.id,
            6_000,
            record("user.delete")
        )
        .await
        .unwrap());
    // The role tokens he created in acme/ci stay, revoked (when first revoked), with
    // no creator left to name.
    for (hash, revoked_at) in [
        ("hash-acme-by-bob", 4_000),
        ("hash-acme-by-bob-later", 6_000),
    ] {
        let (found, _) = store.api_token_by_hash(hash).await.unwrap().unwrap();
        assert_eq!(
            (found.revoked_at, found.created_by),
            (Some(revoked_at), None),
            "{hash}"
        );
    }
    assert!(store
        .role_tokens_created_by(&bob.user.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(audit_count(store).await, before + 1);
    assert!(store.user_by_name("bob").await.unwrap().is_none());
    assert!(store.workspace_by_name("~bob").await.unwrap().is_none());
    for hash in ["hash-bob", "hash-bob-fresh", "hash-bob-role"] {
        assert!(
            store.api_token_by_hash(hash).await.unwrap().is_none(),
            "{hash}"
        );
    }
    assert_eq!(store.role_of(&target.id, &bob.user.id).await.unwrap(), None);
    assert!(store.role_grants(&target.id).await.unwrap().is_empty());
    assert!(!store
        .delete_user(
            &bob.user.id,
            &bob.workspace.id,
            6_500,
            record("user.delete")
        )
        .await
        .unwrap());

    // Revoking a grant: once.
    let alices = RoleRow {
        id: uuid(),
        workspace_id: alice.workspace.id.clone(),
        workspace_name: alice.workspace.name.clone(),
        name: "other".into(),
        ..role.clone()
    };
    store
        .create_role(&alices, record("role.create"))
        .await
        .unwrap();
    put_grant(
        store,
        &RoleGrantRow {
            id: uuid(),
            role_id: alices.id.clone(),
            ..renewed
        },
    )
    .await;
    assert!(store
        .delete_role_grant(&target.id, &alices.id, record("role.grant_revoke"))
        .await
        .unwrap());
    assert!(!store
        .delete_role_grant(&target.id, &alices.id, record("role.grant_revoke"))
        .await
        .unwrap());
}
