//! Cross-workspace grants against a real server: a workload role reaches another
//! workspace's credentials only while that workspace holds a grant in force for it,
//! and that workspace's admins see, grant and revoke it.

use regkeeper_client::{segment, Client, ClientError};
use regkeeper_wire as wire;
use serde_json::{json, Value};

use super::support::{ok, stderr, ADMIN_TOKEN};

// The shared set-up of the access tests, kept in `roles` where it was first written;
// re-exported here so the later access tests import every helper from one place.
use super::roles::{create_described_role, role_token_expiring};
pub use super::roles::{credential, started_with_credential, workspace};
pub use super::support::status;

/// Creates a user and returns their API token.
pub fn user(admin: &Client, name: &str) -> String {
    let created: wire::UserCreated = admin
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: name.into(),
                admin: false,
            },
        )
        .unwrap();
    created.token.expose().to_owned()
}

pub fn member(client: &Client, workspace: &str, user: &str, role: &str) {
    client
        .put(
            &format!("/api/v1/workspaces/{}/members/{user}", segment(workspace)),
            &wire::MemberInput { role: role.into() },
        )
        .unwrap();
}

pub fn create_role(
    client: &Client,
    workspace: &str,
    name: &str,
    policy: Value,
) -> Result<wire::Role, ClientError> {
    create_described_role(client, workspace, name, None, policy)
}

pub fn role_token(client: &Client, workspace: &str, role: &str) -> String {
    role_token_expiring(client, workspace, role, None)
}

pub fn resolve_reference(client: &Client, reference: &str) -> Result<wire::Resolved, ClientError> {
    client.post("/api/v1/resolve", &json!({ "reference": reference }))
}

fn grants(client: &Client, workspace: &str) -> Result<Vec<wire::RoleGrant>, ClientError> {
    client
        .get::<wire::RoleGrantList>(&format!(
            "/api/v1/workspaces/{}/role-grants",
            segment(workspace)
        ))
        .map(|list| list.grants)
}

fn grant_of<'a>(list: &'a [wire::RoleGrant], role: &str) -> &'a wire::RoleGrant {
    list.iter()
        .find(|grant| grant.role == role)
        .unwrap_or_else(|| panic!("{role} not listed in {list:?}"))
}

pub fn add_grant(client: &Client, workspace: &str, role: &str) -> Result<Value, ClientError> {
    client.post(
        &format!("/api/v1/workspaces/{}/role-grants", segment(workspace)),
        &wire::RoleGrantInput { role: role.into() },
    )
}

pub fn revoke_grant(client: &Client, workspace: &str, role: &str) -> Result<(), ClientError> {
    client.delete(&format!(
        "/api/v1/workspaces/{}/role-grants/{}",
        segment(workspace),
        segment(role)
    ))
}

const ROLE: &str = "rk:carol/tools:role/puller";

/// Issue 12 item 2: an admin of acme/ci wrote, in her own workspace, a role reaching
/// `rk:acme/ci:credential/app` and `…/deploy-*`, was demoted and removed from acme/ci,
/// and the role's token still resolved both, with nothing showing acme/ci's admins
/// that the role existed. Now the grant lapses with her admin role, acme/ci's admins
/// list it, grant it again as themselves, and revoke it with immediate effect.
#[test]
fn a_cross_workspace_grant_lapses_when_its_writer_loses_admin_and_the_target_controls_it() {
    let (server, admin) =
        started_with_credential("acme/ci", ["app", "registry.acme.example", "app-secret"]);
    credential(
        &admin,
        "acme/ci",
        "deploy-prod",
        "deploy.acme.example",
        "deploy-secret",
    );
    let carol = server.client(&user(&admin, "carol"));
    workspace(&carol, "carol/tools");
    member(&admin, "acme/ci", "carol", "admin");
    let policy = json!({"Statement": [{"Effect": "Allow", "Action": "credentials:Resolve",
        "Resource": ["rk:acme/ci:credential/app", "rk:acme/ci:credential/deploy-*"]}]});
    create_role(&carol, "carol/tools", "puller", policy.clone()).unwrap();
    let puller = server.client(&role_token(&carol, "carol/tools", "puller"));
    let both = [
        "rk:acme/ci:credential/app",
        "rk:acme/ci:credential/deploy-prod",
    ];
    for reference in both {
        resolve_reference(&puller, reference).unwrap();
    }

    // acme/ci's admins see the outside role, who granted it, and what it may do there.
    let listed = grants(&admin, "acme/ci").unwrap();
    let grant = grant_of(&listed, ROLE);
    assert_eq!(grant.status, "in_force");
    assert_eq!(grant.granted_by.as_deref(), Some("carol"));
    assert!(
        grant
            .allows
            .iter()
            .any(|allow| allow.contains("rk:acme/ci:credential/deploy-*")),
        "{grant:?}"
    );

    // Demoted: the grant she made no longer holds, on the very next resolve.
    member(&admin, "acme/ci", "carol", "view");
    for reference in both {
        let refused = resolve_reference(&puller, reference);
        assert_eq!(status(resolve_reference(&puller, reference)), 403);
        let text = refused.unwrap_err().to_string();
        assert!(text.contains("no grant in force in acme/ci"), "{text}");
    }
    assert_eq!(
        grant_of(&grants(&admin, "acme/ci").unwrap(), ROLE).status,
        "lapsed"
    );
    // Her simulator says why: the policy allows it, the target grants nothing.
    let simulated: wire::Simulation = carol
        .post(
            &format!(
                "/api/v1/workspaces/{}/roles/puller/simulate",
                segment("carol/tools")
            ),
            &wire::SimulationInput {
                action: "credentials:Resolve".into(),
                reference: "rk:acme/ci:credential/app".into(),
            },
        )
        .unwrap();
    assert_eq!(
        (simulated.decision.as_str(), simulated.grant_in_force),
        ("allow", Some(false))
    );
    // Removed: still nothing, and she can no longer rewrite what the role reaches there.
    admin
        .delete(&format!(
            "/api/v1/workspaces/{}/members/carol",
            segment("acme/ci")
        ))
        .unwrap();
    for reference in both {
        assert_eq!(status(resolve_reference(&puller, reference)), 403);
    }
    let rewritten: Result<wire::Role, _> = carol.patch(
        &format!("/api/v1/workspaces/{}/roles/puller", segment("carol/tools")),
        &wire::RoleInput {
            policy: Some(policy),
            ..Default::default()
        },
    );
    assert_eq!(status(rewritten), 404);
    // Nor may she list or grant in acme/ci.
    assert_eq!(status(grants(&carol, "acme/ci")), 404);
    assert_eq!(status(add_grant(&carol, "acme/ci", ROLE)), 404);

    // acme/ci's admin grants it as themselves: it works again.
    add_grant(&admin, "acme/ci", ROLE).unwrap();
    let grant = grant_of(&grants(&admin, "acme/ci").unwrap(), ROLE).clone();
    assert_eq!(
        (grant.status.as_str(), grant.granted_by.as_deref()),
        ("in_force", Some("admin"))
    );
    resolve_reference(&puller, "rk:acme/ci:credential/app").unwrap();

    // Revoked through the CLI: the very next resolve is refused, and the role stays
    // listed as reaching acme/ci without a grant.
    let listed = ok(&server.cli(
        ADMIN_TOKEN,
        &["roles", "grants", "list", "--workspace", "acme/ci"],
        None,
    ));
    assert!(
        listed.contains(ROLE) && listed.contains("in_force"),
        "{listed}"
    );
    ok(&server.cli(
        ADMIN_TOKEN,
        &["roles", "grants", "revoke", ROLE, "--workspace", "acme/ci"],
        None,
    ));
    assert_eq!(
        status(resolve_reference(&puller, "rk:acme/ci:credential/app")),
        403
    );
    assert_eq!(
        grant_of(&grants(&admin, "acme/ci").unwrap(), ROLE).status,
        "not_granted"
    );
    let again = server.cli(
        ADMIN_TOKEN,
        &["roles", "grants", "revoke", ROLE, "--workspace", "acme/ci"],
        None,
    );
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not found"), "{}", stderr(&again));
    assert_eq!(status(revoke_grant(&admin, "acme/ci", ROLE)), 404);

    // The role's own workspace needs no grant; a bad reference says what is expected.
    assert_eq!(status(add_grant(&carol, "carol/tools", ROLE)), 400);
    let bad = add_grant(&admin, "acme/ci", "carol/tools:puller").unwrap_err();
    assert!(bad.to_string().contains("rk:WS:role/NAME"), "{bad}");

    // Every grant and revocation is in acme/ci's own audit log.
    let audit: wire::AuditList = admin
        .get("/api/v1/audit?workspace=acme%2Fci&limit=200")
        .unwrap();
    for action in ["role.grant", "role.grant_revoke"] {
        assert!(
            audit
                .entries
                .iter()
                .any(|entry| entry.action == action && entry.target.as_deref() == Some(ROLE)),
            "{action}"
        );
    }
}
