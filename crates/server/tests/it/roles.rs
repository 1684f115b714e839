//! Workload roles against a real server: a role's token resolves exactly what its
//! policy allows, across workspaces too, and nothing else; grants are bound to
//! credential ids; only admins write policies, and only for workspaces they administer.

use regkeeper_client::{segment, Client, ClientError};
use regkeeper_wire as wire;
use serde_json::{json, Value};

use super::support::{ok, status, stderr, TestServer};

fn message<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    result.unwrap_err().to_string()
}

pub fn workspace(admin: &Client, name: &str) {
    let _: wire::Workspace = admin
        .post(
            "/api/v1/workspaces",
            &wire::WorkspaceInput { name: name.into() },
        )
        .unwrap();
}

/// A fresh server and its admin's client, with `workspace_name` made and in it one
/// credential: `[name, registry, password]`.
pub fn started_with_credential(
    workspace_name: &str,
    [name, registry, password]: [&str; 3],
) -> (TestServer, Client) {
    let server = TestServer::start();
    let admin = server.admin();
    workspace(&admin, workspace_name);
    credential(&admin, workspace_name, name, registry, password);
    (server, admin)
}

pub fn credential(
    client: &Client,
    workspace: &str,
    name: &str,
    registry: &str,
    password: &str,
) -> wire::Credential {
    client
        .post(
            &format!("/api/v1/workspaces/{}/credentials", segment(workspace)),
            &wire::CredentialInput {
                name: Some(name.into()),
                registry: Some(registry.into()),
                username: Some(format!("user-{name}")),
                password: Some(wire::Sensitive::new(password)),
                verify: Some(false),
                ..Default::default()
            },
        )
        .unwrap()
}

fn create_role(
    client: &Client,
    workspace: &str,
    name: &str,
    policy: Value,
) -> Result<wire::Role, ClientError> {
    create_described_role(
        client,
        workspace,
        name,
        Some(format!("{name} test role")),
        policy,
    )
}

/// Creates role `name` in `workspace` with `policy` and, if given, `description`.
pub fn create_described_role(
    client: &Client,
    workspace: &str,
    name: &str,
    description: Option<String>,
    policy: Value,
) -> Result<wire::Role, ClientError> {
    client.post(
        &format!("/api/v1/workspaces/{}/roles", segment(workspace)),
        &wire::RoleInput {
            name: Some(name.into()),
            description,
            policy: Some(policy),
        },
    )
}

fn role_token(client: &Client, workspace: &str, role: &str) -> String {
    role_token_expiring(client, workspace, role, Some(3600))
}

/// Mints token `ci` for `role` in `workspace`, expiring after `expires_in_seconds` if
/// given, and returns its secret.
pub fn role_token_expiring(
    client: &Client,
    workspace: &str,
    role: &str,
    expires_in_seconds: Option<u64>,
) -> String {
    let created: wire::ApiTokenCreated = client
        .post(
            &format!(
                "/api/v1/workspaces/{}/roles/{role}/tokens",
                segment(workspace)
            ),
            &wire::ApiTokenInput {
                name: "ci".into(),
                expires_in_seconds,
            },
        )
        .unwrap();
    created.secret.expose().to_owned()
}

fn resolve(client: &Client, input: Value) -> Result<wire::Resolved, ClientError> {
    client.post("/api/v1/resolve", &input)
}

fn resolve_in(
    client: &Client,
    workspace: &str,
    input: Value,
) -> Result<wire::Resolved, ClientError> {
    client.post(
        &format!("/api/v1/workspaces/{}/resolve", segment(workspace)),
        &input,
    )
}

#[test]
fn a_role_token_resolves_exactly_what_its_policy_allows() {
    let server = TestServer::start();
    let admin = server.admin();
    for name in ["acme/ci", "acme/prod", "globex/apps"] {
        workspace(&admin, name);
    }
    credential(
        &admin,
        "acme/ci",
        "shared",
        "registry.acme.example",
        "ci-shared-secret",
    );
    credential(
        &admin,
        "acme/ci",
        "team",
        "registry.acme.example/team",
        "ci-team-secret",
    );
    credential(
        &admin,
        "acme/ci",
        "secret-deploy",
        "deploy.acme.example",
        "ci-deploy-secret",
    );
    let app = credential(
        &admin,
        "acme/prod",
        "app",
        "prod.acme.example",
        "prod-app-secret",
    );
    credential(
        &admin,
        "acme/prod",
        "db",
        "db.acme.example",
        "prod-db-secret",
    );
    credential(
        &admin,
        "globex/apps",
        "main",
        "globex.example",
        "globex-secret",
    );

    let role = create_role(
        &admin,
        "acme/ci",
        "builder",
        json!({"Version": "2026-11-01", "Statement": [
            {"Sid": "OwnWorkspace", "Effect": "Allow", "Action": "credentials:*", "Resource": "rk:acme/ci:credential/*"},
            {"Sid": "ProdApp", "Effect": "Allow", "Action": ["credentials:Resolve"], "Resource": ["rk:acme/prod:credential/app"]},
            {"Sid": "NoDeployKeys", "Effect": "Deny", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/secret-*"}
        ]}),
    )
    .unwrap();
    assert_eq!(role.reference, "rk:acme/ci:role/builder");
    assert_eq!(role.bindings.len(), 1, "{:?}", role.bindings);
    assert_eq!(role.bindings[0].resource, "rk:acme/prod:credential/app");
    assert_eq!(role.bindings[0].credential_id, app.id);

    let token = role_token(&admin, "acme/ci", "builder");
    let builder = server.client(&token);
    let me: wire::Me = builder.get("/api/v1/me").unwrap();
    assert_eq!(me.role.as_deref(), Some("rk:acme/ci:role/builder"));
    assert_eq!(me.personal_workspace, "acme/ci");

    // Its own workspace: best match by image (longest prefix), by registry, by name.
    let team = resolve(
        &builder,
        json!({"image": "registry.acme.example/team/app:1"}),
    )
    .unwrap();
    assert_eq!(team.secret.expose(), "ci-team-secret");
    assert_eq!(team.reference, "rk:acme/ci:credential/team");
    assert_eq!(team.path_prefix.as_deref(), Some("team"));
    let shared = resolve(
        &builder,
        json!({"registry": "https://registry.acme.example/"}),
    )
    .unwrap();
    assert_eq!(shared.secret.expose(), "ci-shared-secret");
    assert_eq!(shared.path_prefix, None);
    let by_name = resolve(&builder, json!({"reference": "shared"})).unwrap();
    assert_eq!(by_name.username, "user-shared");

    // Explicit Deny wins over the workspace-wide Allow.
    let denied = resolve(&builder, json!({"reference": "secret-deploy"}));
    let text = message(denied);
    assert!(text.contains("403") || text.contains("denies"), "{text}");
    assert_eq!(
        status(resolve(
            &builder,
            json!({"image": "deploy.acme.example/x:1"})
        )),
        403
    );

    // Across workspaces: only the full reference the policy names.
    let prod = resolve(
        &builder,
        json!({"reference": "rk:acme/prod:credential/app"}),
    )
    .unwrap();
    assert_eq!(prod.secret.expose(), "prod-app-secret");
    let prod_image = resolve_in(
        &builder,
        "acme/prod",
        json!({"image": "prod.acme.example/app:1"}),
    )
    .unwrap();
    assert_eq!(prod_image.reference, "rk:acme/prod:credential/app");
    assert_eq!(
        status(resolve(
            &builder,
            json!({"reference": "rk:acme/prod:credential/db"})
        )),
        403
    );
    // A bare name means the role's own workspace, never another.
    assert_eq!(status(resolve(&builder, json!({"reference": "app"}))), 404);
    // A workspace the policy never reaches looks like one that does not exist.
    assert_eq!(
        status(resolve(
            &builder,
            json!({"reference": "rk:globex/apps:credential/main"})
        )),
        404
    );
    assert_eq!(
        status(resolve_in(
            &builder,
            "globex/apps",
            json!({"image": "globex.example/x"})
        )),
        404
    );
    // Describe is granted only in its own workspace, and list shows only what it may describe.
    let listed: wire::CredentialList = builder
        .get(&format!(
            "/api/v1/workspaces/{}/credentials",
            segment("acme/ci")
        ))
        .unwrap();
    let mut names: Vec<_> = listed.credentials.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["secret-deploy", "shared", "team"]);
    assert_eq!(
        status(builder.get::<wire::CredentialList>(&format!(
            "/api/v1/workspaces/{}/credentials",
            segment("acme/prod")
        ))),
        404
    );

    // Nothing else: no writes, no members, no tokens, no workspaces, no roles.
    let write: Result<wire::Credential, _> = builder.post(
        &format!("/api/v1/workspaces/{}/credentials", segment("acme/ci")),
        &wire::CredentialInput {
            name: Some("sneaky".into()),
            registry: Some("x.example".into()),
            username: Some("u".into()),
            password: Some(wire::Sensitive::new("p")),
            verify: Some(false),
            ..Default::default()
        },
    );
    assert_eq!(status(write), 404);
    assert_eq!(
        status(builder.get::<wire::MemberList>(&format!(
            "/api/v1/workspaces/{}/members",
            segment("acme/ci")
        ))),
        404
    );
    assert_eq!(
        status(builder.get::<wire::ApiTokenList>("/api/v1/tokens")),
        403
    );
    assert_eq!(
        status(builder.post::<_, wire::Workspace>(
            "/api/v1/workspaces",
            &wire::WorkspaceInput {
                name: "evil/ws".into()
            }
        )),
        403
    );
    assert_eq!(
        status(
            builder
                .get::<wire::RoleList>(&format!("/api/v1/workspaces/{}/roles", segment("acme/ci")))
        ),
        404
    );
    assert_eq!(status(builder.get::<wire::UserList>("/api/v1/users")), 403);

    // Deleted and re-created under the same name: the grant is not inherited.
    admin
        .delete(&format!(
            "/api/v1/workspaces/{}/credentials/app",
            segment("acme/prod")
        ))
        .unwrap();
    credential(
        &admin,
        "acme/prod",
        "app",
        "prod.acme.example",
        "new-prod-app-secret",
    );
    let after = message(resolve(
        &builder,
        json!({"reference": "rk:acme/prod:credential/app"}),
    ));
    assert!(
        after.contains("no statement of its policy allows it"),
        "{after}"
    );
    let simulated: wire::Simulation = admin
        .post(
            &format!(
                "/api/v1/workspaces/{}/roles/builder/simulate",
                segment("acme/ci")
            ),
            &wire::SimulationInput {
                action: "credentials:Resolve".into(),
                reference: "rk:acme/prod:credential/app".into(),
            },
        )
        .unwrap();
    assert_eq!(simulated.decision, "implicit_deny");
    assert!(simulated.exists);
    // Saving the policy again binds the grant to the credential that has the name now.
    let rebound: wire::Role = admin
        .patch(
            &format!("/api/v1/workspaces/{}/roles/builder", segment("acme/ci")),
            &wire::RoleInput {
                policy: Some(role.policy.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_ne!(rebound.bindings[0].credential_id, app.id);
    assert_eq!(
        resolve(
            &builder,
            json!({"reference": "rk:acme/prod:credential/app"})
        )
        .unwrap()
        .secret
        .expose(),
        "new-prod-app-secret"
    );

    // Every resolve is audited under the role's reference, denials included, where the
    // admins of the role's workspace see them.
    let audit: wire::AuditList = admin
        .get("/api/v1/audit?workspace=acme%2Fci&limit=200")
        .unwrap();
    let by_role: Vec<_> = audit
        .entries
        .iter()
        .filter(|entry| {
            entry.actor == "rk:acme/ci:role/builder" && entry.action == "credential.resolve"
        })
        .collect();
    assert!(by_role.iter().any(|entry| entry.outcome == "success"));
    assert!(by_role.iter().any(|entry| entry.outcome == "denied"));

    // Revoking the token, or deleting the role, ends its access.
    let tokens: wire::ApiTokenList = admin
        .get(&format!(
            "/api/v1/workspaces/{}/roles/builder/tokens",
            segment("acme/ci")
        ))
        .unwrap();
    assert_eq!(tokens.tokens.len(), 1);
    admin
        .delete(&format!(
            "/api/v1/workspaces/{}/roles/builder/tokens/{}",
            segment("acme/ci"),
            tokens.tokens[0].id
        ))
        .unwrap();
    assert_eq!(
        status(resolve(&builder, json!({"reference": "shared"}))),
        401
    );
    let second = server.client(&role_token(&admin, "acme/ci", "builder"));
    resolve(&second, json!({"reference": "shared"})).unwrap();
    admin
        .delete(&format!(
            "/api/v1/workspaces/{}/roles/builder",
            segment("acme/ci")
        ))
        .unwrap();
    assert_eq!(
        status(resolve(&second, json!({"reference": "shared"}))),
        401
    );
}

#[test]
fn only_admins_write_policies_and_only_for_workspaces_they_administer() {
    let server = TestServer::start();
    let admin = server.admin();
    for name in ["acme/ci", "acme/prod"] {
        workspace(&admin, name);
    }
    credential(
        &admin,
        "acme/prod",
        "app",
        "prod.acme.example",
        "prod-secret",
    );
    credential(&admin, "acme/ci", "shared", "ci.acme.example", "ci-secret");
    let created: wire::UserCreated = admin
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: "carol".into(),
                admin: false,
            },
        )
        .unwrap();
    let carol = server.client(created.token.expose());
    let created: wire::UserCreated = admin
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: "dave".into(),
                admin: false,
            },
        )
        .unwrap();
    let dave = server.client(created.token.expose());
    for (user, role) in [("carol", "admin"), ("dave", "maintain")] {
        admin
            .put(
                &format!("/api/v1/workspaces/{}/members/{user}", segment("acme/ci")),
                &wire::MemberInput { role: role.into() },
            )
            .unwrap();
    }
    let own = json!({"Statement": [{"Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/*"}]});

    // maintain is not enough to manage roles.
    assert_eq!(
        status(create_role(&dave, "acme/ci", "r1", own.clone())),
        403
    );
    // An admin of acme/ci may grant within it...
    create_role(&carol, "acme/ci", "r1", own.clone()).unwrap();
    // ...but not into acme/prod, which carol cannot see,
    let cross = json!({"Statement": [{"Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/prod:credential/app"}]});
    assert_eq!(
        status(create_role(&carol, "acme/ci", "r2", cross.clone())),
        404
    );
    // nor into workspaces by wildcard (site administrators only).
    let wildcard = json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "rk:acme/*:credential/*"}]});
    let refused = message(create_role(&carol, "acme/ci", "r3", wildcard.clone()));
    assert!(refused.contains("site administrator"), "{refused}");
    // A Deny can name anything: it only takes away.
    create_role(
        &carol,
        "acme/ci",
        "r4",
        json!({"Statement": [
            {"Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/*"},
            {"Effect": "Deny", "Action": "*", "Resource": "rk:*:credential/*"}
        ]}),
    )
    .unwrap();
    // The site administrator, owner of both, may write both.
    create_role(&admin, "acme/ci", "r2", cross).unwrap();
    create_role(&admin, "acme/ci", "r3", wildcard).unwrap();

    // Bad documents get specific errors, and nothing is stored.
    let cases = [
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
            400,
            "unknown action",
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "acme/ci/shared"}]}),
            400,
            "invalid resource",
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}], "Extra": 1}),
            400,
            "unknown field",
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "rk:acme/ci:credential/missing"}]}),
            422,
            "does not exist",
        ),
    ];
    for (document, expected_status, expected) in cases {
        let result = create_role(&carol, "acme/ci", "bad", document.clone());
        let text = message(create_role(&carol, "acme/ci", "bad", document));
        assert_eq!(status(result), expected_status, "{text}");
        assert!(text.contains(expected), "{text}");
    }
    assert_eq!(
        status(admin.get::<wire::Role>(&format!(
            "/api/v1/workspaces/{}/roles/bad",
            segment("acme/ci")
        ))),
        404
    );
    // A role name is unique in its workspace.
    assert_eq!(status(create_role(&carol, "acme/ci", "r1", own)), 409);
}

#[test]
fn users_resolve_full_references_where_they_may_launch() {
    let (server, admin) =
        started_with_credential("acme/prod", ["app", "prod.acme.example", "prod-secret"]);
    let created: wire::UserCreated = admin
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: "erin".into(),
                admin: false,
            },
        )
        .unwrap();
    let erin_token = created.token.expose().to_owned();
    let erin = server.client(&erin_token);
    let reference = json!({"reference": "rk:acme/prod:credential/app"});
    assert_eq!(status(resolve(&erin, reference.clone())), 404);
    admin
        .put(
            &format!("/api/v1/workspaces/{}/members/erin", segment("acme/prod")),
            &wire::MemberInput {
                role: "view".into(),
            },
        )
        .unwrap();
    assert_eq!(status(resolve(&erin, reference.clone())), 403);
    admin
        .put(
            &format!("/api/v1/workspaces/{}/members/erin", segment("acme/prod")),
            &wire::MemberInput {
                role: "launch".into(),
            },
        )
        .unwrap();
    assert_eq!(
        resolve(&erin, reference).unwrap().secret.expose(),
        "prod-secret"
    );
    // The CLI takes the reference without an image, like ECS's credentialsParameter.
    let out = ok(&server.cli(
        &erin_token,
        &["resolve", "--reference", "rk:acme/prod:credential/app"],
        None,
    ));
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["secret"], "prod-secret");
    assert_eq!(printed["reference"], "rk:acme/prod:credential/app");
    // With an image too, the credential must serve the image's registry.
    let mismatch = server.cli(
        &erin_token,
        &[
            "resolve",
            "other.example/app:1",
            "--reference",
            "rk:acme/prod:credential/app",
        ],
        None,
    );
    assert!(!mismatch.status.success());
    assert!(
        stderr(&mismatch).contains("serves prod.acme.example"),
        "{}",
        stderr(&mismatch)
    );
    let bad = server.cli(
        &erin_token,
        &["resolve", "--reference", "rk:acme/prod:app"],
        None,
    );
    assert!(
        stderr(&bad).contains("invalid credential reference"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn roles_through_the_cli() {
    let (server, _) =
        started_with_credential("acme/ci", ["shared", "ci.acme.example", "cli-role-secret"]);
    let token = super::support::ADMIN_TOKEN;
    let policy = r#"{"Statement": [{"Sid": "Ci", "Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/shared"}]}"#;
    let shown = ok(&server.cli(
        token,
        &[
            "roles",
            "create",
            "builder",
            "--workspace",
            "acme/ci",
            "--policy-file",
            "-",
            "--description",
            "CI jobs",
        ],
        Some(policy),
    ));
    assert!(shown.contains("rk:acme/ci:role/builder"), "{shown}");
    assert!(shown.contains("rk:acme/ci:credential/shared"), "{shown}");
    let listed = ok(&server.cli(token, &["roles", "list", "--workspace", "acme/ci"], None));
    assert!(
        listed.contains("builder") && listed.contains("CI jobs"),
        "{listed}"
    );
    let simulated = ok(&server.cli(
        token,
        &[
            "roles",
            "simulate",
            "builder",
            "--workspace",
            "acme/ci",
            "--reference",
            "shared",
        ],
        None,
    ));
    assert!(
        simulated.contains("allow") && simulated.contains("(Ci)"),
        "{simulated}"
    );
    let role_token = ok(&server.cli(
        token,
        &[
            "roles",
            "tokens",
            "create",
            "builder",
            "--workspace",
            "acme/ci",
            "--name",
            "ci",
            "--expires-in",
            "1h",
        ],
        None,
    ));
    let role_token = role_token.trim();
    assert!(role_token.starts_with("rk_"));
    // The role's token resolves through the CLI, its workspace being the default.
    let resolved = ok(&server.cli(role_token, &["resolve", "ci.acme.example/app:1"], None));
    assert!(resolved.contains("cli-role-secret"), "{resolved}");
    let refused = server.cli(
        role_token,
        &[
            "credentials",
            "add",
            "--name",
            "x",
            "--registry",
            "x.example",
            "--username",
            "u",
            "--password-stdin",
            "--no-verify",
        ],
        Some("p"),
    );
    assert!(!refused.status.success());
    let missing = server.cli(
        token,
        &["roles", "create", "other", "--workspace", "acme/ci"],
        None,
    );
    assert!(
        stderr(&missing).contains("--policy-file"),
        "{}",
        stderr(&missing)
    );
    ok(&server.cli(
        token,
        &["roles", "delete", "builder", "--workspace", "acme/ci"],
        None,
    ));
    let gone = server.cli(role_token, &["resolve", "ci.acme.example/app:1"], None);
    assert!(!gone.status.success());
    assert!(!stderr(&gone).contains("cli-role-secret"));
}
