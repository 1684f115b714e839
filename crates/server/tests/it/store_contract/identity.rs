//! The identity part of the store contract: users with their personal workspaces, API
//! tokens (found by hash or id, touched, listed and revoked by their owner only), and
//! organisation workspaces with their members.

use regkeeper::domain::identity::{Role, WorkspaceKind};
use regkeeper::store::{ApiTokenRow, TokenOwner, TokenSubject, WorkspaceRow};

use super::{
    assert_conflict, audit_count, created_role, created_user, new_user, record, token, uuid,
    Subject,
};

pub(super) async fn users_and_personal_workspaces(subject: Subject) {
    let store = &subject.store;
    assert_eq!(store.count_users().await.unwrap(), 0);
    let alice = created_user(store, "alice").await;
    assert_eq!(store.count_users().await.unwrap(), 1);
    assert_eq!(
        store.user_by_name("alice").await.unwrap(),
        Some(alice.user.clone())
    );
    assert_eq!(store.user_by_name("bob").await.unwrap(), None);
    let workspace = store.workspace_by_name("~alice").await.unwrap().unwrap();
    assert_eq!(workspace, alice.workspace);
    assert_eq!(
        store.role_of(&workspace.id, &alice.user.id).await.unwrap(),
        Some(Role::Owner)
    );
    let mut again = new_user("alice");
    again.token = Some(token(&again.user.id, "other-hash"));
    let error = store
        .create_user(&again, record("user.create"))
        .await
        .unwrap_err();
    assert_conflict(&error, "user_exists");
    // The failed creation left nothing behind: no audit entry, no second workspace.
    assert_eq!(audit_count(store).await, 1);
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

pub(super) async fn api_tokens(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let bob = created_user(store, "bob").await;
    let second = token(&alice.user.id, "hash-second");
    store
        .insert_api_token(&second, record("api_token.create"))
        .await
        .unwrap();
    let (found, subject) = store
        .api_token_by_hash("hash-second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, second);
    assert!(matches!(subject, TokenSubject::User(user) if user.name == "alice"));
    assert!(store.api_token_by_hash("nothing").await.unwrap().is_none());
    store.touch_api_token(&second.id, 5_000).await.unwrap();
    let alice_owner = TokenOwner::User(alice.user.id.clone());
    let listed = store.list_api_tokens(&alice_owner).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|row| row.last_used_at == Some(5_000)));
    // Bob cannot revoke Alice's token; Alice can, once.
    assert!(!store
        .revoke_api_token(
            &TokenOwner::User(bob.user.id.clone()),
            &second.id,
            6_000,
            record("api_token.revoke")
        )
        .await
        .unwrap());
    assert!(store
        .revoke_api_token(&alice_owner, &second.id, 6_000, record("api_token.revoke"))
        .await
        .unwrap());
    assert!(!store
        .revoke_api_token(&alice_owner, &second.id, 7_000, record("api_token.revoke"))
        .await
        .unwrap());
    let (found, _) = store
        .api_token_by_hash("hash-second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.revoked_at, Some(6_000));
}

pub(super) async fn workspaces_and_members(subject: Subject) {
    let store = &subject.store;
    let alice = new_user("alice");
    let bob = new_user("bob");
    store
        .create_user(&alice, record("user.create"))
        .await
        .unwrap();
    store
        .create_user(&bob, record("user.create"))
        .await
        .unwrap();
    let acme = WorkspaceRow {
        id: uuid(),
        name: "acme/ci".into(),
        kind: WorkspaceKind::Organization,
        created_at: 2_000,
    };
    store
        .create_workspace(&acme, &alice.user.id, record("workspace.create"))
        .await
        .unwrap();
    let duplicate = WorkspaceRow {
        id: uuid(),
        ..acme.clone()
    };
    let error = store
        .create_workspace(&duplicate, &bob.user.id, record("workspace.create"))
        .await
        .unwrap_err();
    assert_conflict(&error, "workspace_exists");
    assert_eq!(store.role_of(&acme.id, &bob.user.id).await.unwrap(), None);
    store
        .put_member(
            &acme.id,
            &bob.user.id,
            Role::View,
            3_000,
            record("member.put"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.role_of(&acme.id, &bob.user.id).await.unwrap(),
        Some(Role::View)
    );
    store
        .put_member(
            &acme.id,
            &bob.user.id,
            Role::Maintain,
            4_000,
            record("member.put"),
        )
        .await
        .unwrap();
    let members = store.members(&acme.id).await.unwrap();
    let names: Vec<(&str, Role)> = members
        .iter()
        .map(|member| (member.user_name.as_str(), member.role))
        .collect();
    assert_eq!(names, vec![("alice", Role::Owner), ("bob", Role::Maintain)]);
    let of_bob: Vec<String> = store
        .workspaces_of(&bob.user.id)
        .await
        .unwrap()
        .into_iter()
        .map(|(w, _)| w.name)
        .collect();
    assert_eq!(of_bob, vec!["acme/ci".to_owned(), "~bob".to_owned()]);
    assert!(store
        .remove_member(&acme.id, &bob.user.id, record("member.remove"))
        .await
        .unwrap());
    assert!(!store
        .remove_member(&acme.id, &bob.user.id, record("member.remove"))
        .await
        .unwrap());
    assert_eq!(store.role_of(&acme.id, &bob.user.id).await.unwrap(), None);
}

/// An API token is found by its id whoever owns it, a user or a workload role.
pub(super) async fn api_tokens_are_found_by_id_whoever_owns_them(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let own = alice.token.clone().expect("created with a token");
    let builder = created_role(store, &alice.workspace, "builder", "alice").await;
    let of_role = ApiTokenRow {
        owner: TokenOwner::Role(builder.id.clone()),
        ..token(&alice.user.id, "hash-role")
    };
    store
        .insert_api_token(&of_role, record("role.token_create"))
        .await
        .unwrap();
    for expected in [own, of_role] {
        assert_eq!(
            store.api_token_by_id(&expected.id).await.unwrap(),
            Some(expected)
        );
    }
    assert_eq!(store.api_token_by_id(&uuid()).await.unwrap(), None);
}
