//! The user lifecycle against a real server: site administrators disable, enable and
//! delete users and list and revoke anyone's API tokens, through the CLI and REST; a
//! disabled or deleted user's tokens stop at once, and nothing is left without an owner.

use regkeeper_client::segment;
use regkeeper_wire as wire;

use super::grants::{
    create_role, credential, member, resolve_reference, role_token, started_with_credential,
    status, user, workspace,
};
use super::support::{ok, stderr, TestServer, ADMIN_TOKEN};

fn me(server: &TestServer, token: &str) -> u16 {
    status(server.client(token).get::<wire::Me>("/api/v1/me"))
}

fn audited(server: &TestServer, action: &str, target: &str) -> bool {
    let audit: wire::AuditList = server.admin().get("/api/v1/audit?limit=500").unwrap();
    audit.entries.iter().any(|entry| {
        entry.action == action
            && entry.target.as_deref() == Some(target)
            && entry.outcome == "success"
    })
}

/// Issue 12 item 17: users could not be removed. Disabling revokes every token of
/// the user at once, keeps their personal workspace, and enabling issues a new token.
#[test]
fn disabling_a_user_revokes_every_token_at_once_and_enabling_issues_a_new_one() {
    let server = TestServer::start();
    let admin = server.admin();
    let bob = user(&admin, "bob");
    let created: wire::ApiTokenCreated = server
        .client(&bob)
        .post(
            "/api/v1/tokens",
            &wire::ApiTokenInput {
                name: "laptop".into(),
                expires_in_seconds: None,
            },
        )
        .unwrap();
    let second = created.secret.expose().to_owned();
    workspace(&server.client(&bob), "bob/team");
    credential(
        &server.client(&bob),
        "~bob",
        "mine",
        "registry.example.com",
        "bob-secret",
    );
    assert_eq!((me(&server, &bob), me(&server, &second)), (200, 200));

    // Only site administrators, and not on themselves.
    let carol = user(&admin, "carol");
    let refused = server.cli(&carol, &["users", "disable", "bob"], None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("site administrator"),
        "{}",
        stderr(&refused)
    );
    let own = server.cli(ADMIN_TOKEN, &["users", "disable", "admin"], None);
    assert!(stderr(&own).contains("yourself"), "{}", stderr(&own));

    let said = ok(&server.cli(ADMIN_TOKEN, &["users", "disable", "bob"], None));
    assert!(said.contains("revoked 2 API token(s)"), "{said}");
    assert!(said.contains("~bob is kept"), "{said}");
    assert!(
        said.contains("Warning: bob is the only owner of bob/team"),
        "{said}"
    );
    assert_eq!((me(&server, &bob), me(&server, &second)), (401, 401));
    let listed = ok(&server.cli(ADMIN_TOKEN, &["users", "list"], None));
    let line = listed.lines().find(|line| line.starts_with("bob")).unwrap();
    assert!(line.contains("disabled"), "{listed}");
    let tokens: wire::ApiTokenList = admin.get("/api/v1/users/bob/tokens").unwrap();
    assert!(tokens.tokens.iter().all(|token| token.revoked_at.is_some()));
    assert_eq!(
        status(
            admin
                .post::<_, wire::UserDisabled>("/api/v1/users/bob/disable", &serde_json::json!({}))
        ),
        409
    );

    // Enabled: a new token works, the old ones stay revoked, ~bob kept its credential.
    let enabled = server.cli(ADMIN_TOKEN, &["users", "enable", "bob"], None);
    let fresh = ok(&enabled).trim().to_owned();
    assert!(fresh.starts_with("rk_"), "{fresh}");
    assert_eq!((me(&server, &fresh), me(&server, &bob)), (200, 401));
    let kept: wire::CredentialList = server
        .client(&fresh)
        .get(&format!(
            "/api/v1/workspaces/{}/credentials",
            segment("~bob")
        ))
        .unwrap();
    assert_eq!(kept.credentials.len(), 1);
    for action in ["user.disable", "user.enable"] {
        assert!(audited(&server, action, "bob"), "{action}");
    }
}

/// Issue 12 item 17: deleting a user says what goes with their personal workspace,
/// refuses to orphan an organisation workspace, and ends their tokens at once.
#[test]
fn deleting_a_user_needs_confirmation_and_never_orphans_a_workspace() {
    let server = TestServer::start();
    let admin = server.admin();
    let dave = user(&admin, "dave");
    let dave_client = server.client(&dave);
    credential(
        &dave_client,
        "~dave",
        "one",
        "one.example.com",
        "dave-secret-1",
    );
    credential(
        &dave_client,
        "~dave",
        "two",
        "two.example.com",
        "dave-secret-2",
    );
    workspace(&dave_client, "dave/team");

    // Without --yes: what would be deleted, and nothing is.
    let unconfirmed = server.cli(ADMIN_TOKEN, &["users", "delete", "dave"], None);
    assert!(!unconfirmed.status.success());
    // The only owner of dave/team: refused, naming it, even with --yes.
    let orphan = server.cli(ADMIN_TOKEN, &["users", "delete", "dave", "--yes"], None);
    assert!(!orphan.status.success());
    assert!(
        stderr(&orphan).contains("only owner of dave/team"),
        "{}",
        stderr(&orphan)
    );
    assert!(
        stderr(&unconfirmed).contains("dave/team"),
        "{}",
        stderr(&unconfirmed)
    );
    member(&dave_client, "dave/team", "admin", "owner");
    let unconfirmed = server.cli(ADMIN_TOKEN, &["users", "delete", "dave"], None);
    let text = stderr(&unconfirmed);
    assert!(
        text.contains("also deletes ~dave with its 2 credential(s)") && text.contains("--yes"),
        "{text}"
    );
    assert_eq!(me(&server, &dave), 200);

    let said = ok(&server.cli(ADMIN_TOKEN, &["users", "delete", "dave", "--yes"], None));
    assert!(
        said.contains("deleted ~dave with its 2 credential(s)"),
        "{said}"
    );
    assert_eq!(me(&server, &dave), 401);
    let users: wire::UserList = admin.get("/api/v1/users").unwrap();
    assert!(users.users.iter().all(|user| user.name != "dave"));
    // dave/team lives on with its new owner; dave is no longer a member.
    let members: wire::MemberList = admin
        .get(&format!(
            "/api/v1/workspaces/{}/members",
            segment("dave/team")
        ))
        .unwrap();
    assert!(members.members.iter().all(|member| member.user != "dave"));
    // A new dave starts with an empty ~dave.
    let new_dave = server.client(&user(&admin, "dave"));
    let empty: wire::CredentialList = new_dave
        .get(&format!(
            "/api/v1/workspaces/{}/credentials",
            segment("~dave")
        ))
        .unwrap();
    assert!(empty.credentials.is_empty());
    assert!(audited(&server, "user.delete", "dave"));
    assert_eq!(
        status(admin.delete_for::<wire::UserDeleted>("/api/v1/users/nobody?confirm=true")),
        404
    );
}

/// Issue 12 item 17: the workload-role tokens a user minted in an organisation
/// workspace are revoked when the user is disabled, and when deleted (they used to
/// keep working: role tokens recorded no creator); tokens others minted for the same
/// role keep working, and the revoked ones stay listed for the workspace's admins.
#[test]
fn disabling_or_deleting_a_user_revokes_the_role_tokens_they_created() {
    let (server, admin) =
        started_with_credential("acme/ci", ["app", "registry.acme.example", "app-secret"]);
    let grace = server.client(&user(&admin, "grace"));
    member(&admin, "acme/ci", "grace", "admin");
    let policy = serde_json::json!({"Statement": [{"Effect": "Allow",
        "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/app"}]});
    create_role(&grace, "acme/ci", "deployer", policy).unwrap();
    let by_grace = server.client(&role_token(&grace, "acme/ci", "deployer"));
    let by_admin = server.client(&role_token(&admin, "acme/ci", "deployer"));
    for client in [&by_grace, &by_admin] {
        resolve_reference(client, "rk:acme/ci:credential/app").unwrap();
    }

    let said = ok(&server.cli(ADMIN_TOKEN, &["users", "disable", "grace"], None));
    assert!(
        said.contains("and 1 workload-role token(s) they created"),
        "{said}"
    );
    assert_eq!(
        status(resolve_reference(&by_grace, "rk:acme/ci:credential/app")),
        401
    );
    resolve_reference(&by_admin, "rk:acme/ci:credential/app").unwrap();

    // Enabled, grace mints another; deleting grace revokes it too.
    let fresh = ok(&server.cli(ADMIN_TOKEN, &["users", "enable", "grace"], None))
        .trim()
        .to_owned();
    let again = server.client(&role_token(&server.client(&fresh), "acme/ci", "deployer"));
    resolve_reference(&again, "rk:acme/ci:credential/app").unwrap();
    let deleted: wire::UserDeleted = admin
        .delete_for("/api/v1/users/grace?confirm=true")
        .unwrap();
    assert_eq!(deleted.revoked_role_tokens, 1);
    assert_eq!(
        status(resolve_reference(&again, "rk:acme/ci:credential/app")),
        401
    );
    resolve_reference(&by_admin, "rk:acme/ci:credential/app").unwrap();
    let listed = ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "roles",
            "tokens",
            "list",
            "deployer",
            "--workspace",
            "acme/ci",
            "--output",
            "json",
        ],
        None,
    ));
    let listed: wire::ApiTokenList = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.tokens.len(), 3, "{listed:?}");
    assert_eq!(
        listed
            .tokens
            .iter()
            .filter(|token| token.revoked_at.is_some())
            .count(),
        2,
        "{listed:?}"
    );
}

/// Issue 12 item 17: site administrators list and revoke any user's API tokens.
#[test]
fn site_administrators_list_and_revoke_any_users_tokens() {
    let server = TestServer::start();
    let admin = server.admin();
    let erin = user(&admin, "erin");
    let frank = user(&admin, "frank");
    let listed = ok(&server.cli(
        ADMIN_TOKEN,
        &["tokens", "list", "--user", "erin", "--output", "json"],
        None,
    ));
    let list: wire::ApiTokenList = serde_json::from_str(&listed).unwrap();
    assert_eq!(list.tokens.len(), 1);
    let id = list.tokens[0].id.clone();
    // Not for anyone else.
    assert_eq!(
        status(
            server
                .client(&frank)
                .get::<wire::ApiTokenList>("/api/v1/users/erin/tokens")
        ),
        403
    );
    let foreign = server.cli(&frank, &["tokens", "revoke", &id], None);
    assert!(!foreign.status.success());
    assert_eq!(me(&server, &erin), 200);

    ok(&server.cli(ADMIN_TOKEN, &["tokens", "revoke", &id], None));
    assert_eq!(me(&server, &erin), 401);
    assert!(audited(&server, "api_token.revoke", &id));

    let frank_tokens: wire::ApiTokenList = admin.get("/api/v1/users/frank/tokens").unwrap();
    let frank_id = frank_tokens.tokens[0].id.clone();
    ok(&server.cli(
        ADMIN_TOKEN,
        &["tokens", "revoke", &frank_id, "--user", "frank"],
        None,
    ));
    assert_eq!(me(&server, &frank), 401);
}
