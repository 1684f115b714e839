//! The authorisation matrix: five roles, each tried against its own workspace and a
//! second one it has no part in, for every kind of action.

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;
use serde_json::json;

use super::support::{status, TestServer};

const ROLES: [&str; 5] = ["owner", "admin", "maintain", "launch", "view"];
const RANK: [(&str, u8); 5] = [
    ("view", 0),
    ("launch", 1),
    ("maintain", 2),
    ("admin", 3),
    ("owner", 4),
];

fn rank(role: &str) -> u8 {
    RANK.iter().find(|(name, _)| *name == role).unwrap().1
}

fn credential_input(name: &str) -> wire::CredentialInput {
    wire::CredentialInput {
        name: Some(name.into()),
        registry: Some("registry.example.com".into()),
        username: Some("robot".into()),
        password: Some(wire::Sensitive::new("matrix-secret")),
        verify: Some(false),
        ..Default::default()
    }
}

#[test]
fn five_roles_across_two_workspaces() {
    let server = TestServer::start();
    let admin = server.admin();
    for workspace in ["acme/one", "acme/two"] {
        let _: wire::Workspace = admin
            .post(
                "/api/v1/workspaces",
                &wire::WorkspaceInput {
                    name: workspace.into(),
                },
            )
            .unwrap();
        let _: wire::Credential = admin
            .post(
                &format!("/api/v1/workspaces/{}/credentials", segment(workspace)),
                &credential_input("seed"),
            )
            .unwrap();
    }
    let mut users: Vec<(&str, Client)> = Vec::new();
    for role in ROLES {
        let user = format!("user-{role}");
        let created: wire::UserCreated = admin
            .post(
                "/api/v1/users",
                &wire::UserInput {
                    name: user.clone(),
                    admin: false,
                },
            )
            .unwrap();
        admin
            .put(
                &format!("/api/v1/workspaces/{}/members/{user}", segment("acme/one")),
                &wire::MemberInput { role: role.into() },
            )
            .unwrap();
        users.push((role, server.client(created.token.expose())));
    }

    for (role, client) in &users {
        let level = rank(role);
        for (workspace, member) in [("acme/one", true), ("acme/two", false)] {
            let base = format!("/api/v1/workspaces/{}", segment(workspace));
            let expect = |needed: u8, success: u16| -> u16 {
                if !member {
                    404
                } else if level >= needed {
                    success
                } else {
                    403
                }
            };
            let context = format!("{role} in {workspace}");
            assert_eq!(
                status(client.get::<wire::CredentialList>(&format!("{base}/credentials"))),
                expect(0, 200),
                "list: {context}"
            );
            assert_eq!(
                status(client.get::<wire::Credential>(&format!("{base}/credentials/seed"))),
                expect(0, 200),
                "show: {context}"
            );
            assert_eq!(
                status(client.get::<wire::MemberList>(&format!("{base}/members"))),
                expect(0, 200),
                "members: {context}"
            );
            let name = format!("by-{role}");
            assert_eq!(
                status(client.post::<_, wire::Credential>(
                    &format!("{base}/credentials"),
                    &credential_input(&name)
                )),
                expect(2, 200),
                "add: {context}"
            );
            let patch = wire::CredentialInput {
                path_prefix: Some(format!("team-{role}")),
                verify: Some(false),
                ..Default::default()
            };
            assert_eq!(
                status(
                    client
                        .patch::<_, wire::Credential>(&format!("{base}/credentials/seed"), &patch)
                ),
                expect(2, 200),
                "update: {context}"
            );
            if member && level >= 2 {
                assert_eq!(
                    status(client.delete(&format!("{base}/credentials/{name}"))),
                    200,
                    "delete: {context}"
                );
            } else {
                assert_eq!(
                    status(client.delete(&format!("{base}/credentials/seed"))),
                    expect(2, 200),
                    "delete: {context}"
                );
            }
            assert_eq!(
                status(client.put(
                    &format!("{base}/members/user-view"),
                    &wire::MemberInput {
                        role: "view".into()
                    }
                )),
                expect(3, 200),
                "members add: {context}"
            );
            assert_eq!(
                status(client.get::<wire::AuditList>(&format!(
                    "/api/v1/audit?workspace={}",
                    segment(workspace)
                ))),
                expect(3, 200),
                "audit: {context}"
            );
        }
        // Site-wide actions belong to site administrators only.
        assert_eq!(
            status(client.get::<wire::UserList>("/api/v1/users")),
            403,
            "users: {role}"
        );
        assert_eq!(
            status(
                client.post::<_, wire::KeyRotation>("/api/v1/admin/master-key/rotate", &json!({}))
            ),
            403,
            "rotate: {role}"
        );
        assert_eq!(
            status(client.get::<wire::AuditList>("/api/v1/audit")),
            403,
            "whole audit: {role}"
        );
    }

    // Granting or changing the owner role takes an owner.
    let (_, admin_member) = users.iter().find(|(role, _)| *role == "admin").unwrap();
    let base = format!("/api/v1/workspaces/{}", segment("acme/one"));
    assert_eq!(
        status(admin_member.put(
            &format!("{base}/members/user-view"),
            &wire::MemberInput {
                role: "owner".into()
            }
        )),
        403
    );
    assert_eq!(
        status(admin_member.put(
            &format!("{base}/members/user-owner"),
            &wire::MemberInput {
                role: "view".into()
            }
        )),
        403
    );
    // The last owner of a workspace cannot be demoted.
    let error = admin
        .put(
            &format!("/api/v1/workspaces/{}/members/admin", segment("acme/two")),
            &wire::MemberInput {
                role: "view".into(),
            },
        )
        .unwrap_err();
    assert_eq!(error.code(), Some("last_owner"));

    // Denied attempts are in the audit log.
    let audit: wire::AuditList = admin.get("/api/v1/audit?limit=1000").unwrap();
    assert!(audit.entries.iter().any(|entry| entry.outcome == "denied"
        && entry.actor == "user-view"
        && entry.action == "credential.create"));
}
