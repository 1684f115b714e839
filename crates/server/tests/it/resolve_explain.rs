//! Issue 16 part 4: `regkeeper resolve IMAGE --explain` and `"explain": true` on the
//! REST resolve. Against a real server: the candidates of the image's host with why
//! each won or lost (path prefix), the policy statement that allowed or denied a
//! workload role, the launch role's right to ask (view's refusal), and never a secret.

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;
use serde_json::{json, Value};

use super::roles::{create_described_role, role_token_expiring, workspace};
use super::support::{ok, status, TestServer, ADMIN_TOKEN};

const WORKSPACE: &str = "acme/ci";
const HOST: &str = "registry.example.com";

fn explain(
    client: &Client,
    input: Value,
) -> Result<wire::ResolveExplanation, regkeeper_client::ClientError> {
    client.post(
        &format!("/api/v1/workspaces/{}/resolve", segment(WORKSPACE)),
        &input,
    )
}

/// A docker credential `name` for `registry` with `prefix`, not verified.
fn add(admin: &Client, name: &str, registry: &str, prefix: &str, secret: &str) {
    let _: wire::Credential = admin
        .post(
            &format!("/api/v1/workspaces/{}/credentials", segment(WORKSPACE)),
            &wire::CredentialInput {
                name: Some(name.into()),
                registry: Some(registry.into()),
                path_prefix: Some(prefix.into()).filter(|prefix: &String| !prefix.is_empty()),
                username: Some(format!("user-{name}")),
                password: Some(wire::Sensitive::new(secret)),
                verify: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
}

fn user_with_role(server: &TestServer, admin: &Client, name: &str, role: &str) -> Client {
    let created: wire::UserCreated = admin
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: name.into(),
                admin: false,
            },
        )
        .unwrap();
    admin
        .put(
            &format!("/api/v1/workspaces/{}/members/{name}", segment(WORKSPACE)),
            &wire::MemberInput { role: role.into() },
        )
        .unwrap();
    server.client(created.token.expose())
}

#[test]
fn explain_names_the_candidates_the_winner_and_the_deciding_statement() {
    let server = TestServer::start();
    let admin = server.admin();
    workspace(&admin, WORKSPACE);
    let secret = format!("explain-canary-{}", uuid::Uuid::new_v4().simple());
    for (name, prefix) in [("whole", ""), ("team", "team"), ("other", "other")] {
        add(&admin, name, HOST, prefix, &secret);
    }
    add(&admin, "elsewhere", "ghcr.io", "", &secret);
    let image = format!("{HOST}/team/app:1");

    // A member with launch may ask; the answer holds no secret.
    let launcher = user_with_role(&server, &admin, "launcher", "launch");
    let explanation = explain(&launcher, json!({"image": image, "explain": true})).unwrap();
    assert_eq!(explanation.outcome, "resolved");
    assert_eq!(
        explanation.chosen.as_deref(),
        Some("rk:acme/ci:credential/team")
    );
    assert_eq!(explanation.registry.as_deref(), Some(HOST));
    assert_eq!(explanation.repository.as_deref(), Some("team/app"));
    let summary: Vec<(&str, bool, bool)> = explanation
        .candidates
        .iter()
        .map(|candidate| {
            (
                candidate.reference.as_str(),
                candidate.matches,
                candidate.chosen,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("rk:acme/ci:credential/team", true, true),
            ("rk:acme/ci:credential/other", false, false),
            ("rk:acme/ci:credential/whole", true, false),
        ],
        "the winner first, then by prefix length; another host's credential is no candidate"
    );
    assert!(
        explanation.candidates[0]
            .reason
            .contains("longest path prefix"),
        "{explanation:?}"
    );
    assert!(
        explanation.candidates[1]
            .reason
            .contains("does not cover `team/app`"),
        "{explanation:?}"
    );
    assert!(
        explanation.candidates[2].reason.contains("is longer"),
        "{explanation:?}"
    );
    assert!(
        explanation.reason.contains("launch role"),
        "{}",
        explanation.reason
    );
    assert!(explanation.candidates.iter().all(|c| c.policy.is_none()));

    // View may list, not resolve, so not explain either.
    let viewer = user_with_role(&server, &admin, "viewer", "view");
    assert_eq!(
        status(explain(&viewer, json!({"image": image, "explain": true}))),
        403
    );
    // No match is an answer, not an error.
    let nothing = explain(
        &launcher,
        json!({"image": "quay.io/team/app:1", "explain": true}),
    )
    .unwrap();
    assert_eq!(
        (
            nothing.outcome.as_str(),
            nothing.chosen,
            nothing.candidates.len()
        ),
        ("no_match", None, 0)
    );

    // A workload role: the statement that decides, by index and Sid. It sees the
    // candidates its policy allows and the one chosen, not the others.
    create_described_role(
        &admin,
        WORKSPACE,
        "deployer",
        None,
        json!({"Statement": [
            {"Sid": "NoTeam", "Effect": "Deny", "Action": ["credentials:Resolve"],
             "Resource": ["rk:acme/ci:credential/team"]},
            {"Sid": "Whole", "Effect": "Allow", "Action": ["credentials:Resolve"],
             "Resource": ["rk:acme/ci:credential/whole"]}
        ]}),
    )
    .unwrap();
    let role = server.client(&role_token_expiring(
        &admin,
        WORKSPACE,
        "deployer",
        Some(3600),
    ));
    let denied = explain(&role, json!({"image": image, "explain": true})).unwrap();
    assert_eq!(denied.outcome, "denied");
    assert!(
        denied.reason.contains("statement 0 (Sid NoTeam)"),
        "{}",
        denied.reason
    );
    let seen: Vec<(&str, &str, Option<usize>, Option<&str>)> = denied
        .candidates
        .iter()
        .map(|candidate| {
            let policy = candidate
                .policy
                .as_ref()
                .expect("a role's candidates carry a verdict");
            (
                candidate.reference.as_str(),
                policy.decision.as_str(),
                policy.statement,
                policy.sid.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "rk:acme/ci:credential/team",
                "deny",
                Some(0),
                Some("NoTeam")
            ),
            (
                "rk:acme/ci:credential/whole",
                "allow",
                Some(1),
                Some("Whole")
            ),
        ]
    );
    // The resolve itself agrees: refused.
    assert_eq!(
        status(role.post::<_, wire::Resolved>(
            &format!("/api/v1/workspaces/{}/resolve", segment(WORKSPACE)),
            &json!({"image": image}),
        )),
        403
    );
    let allowed = explain(
        &role,
        json!({"image": format!("{HOST}/base/app:1"), "explain": true}),
    )
    .unwrap();
    assert_eq!(allowed.outcome, "resolved");
    assert_eq!(
        allowed.chosen.as_deref(),
        Some("rk:acme/ci:credential/whole")
    );
    assert!(
        allowed.reason.contains("statement 1 (Sid Whole)"),
        "{}",
        allowed.reason
    );

    // A reference names its credential; with an image of another host, that is said.
    let named = explain(
        &launcher,
        json!({"image": "ghcr.io/acme/app:1", "reference": "team", "explain": true}),
    )
    .unwrap();
    assert_eq!(named.outcome, "mismatch");
    assert_eq!(named.candidates.len(), 1);
    assert_eq!(named.candidates[0].reason, "named by the reference");

    // The CLI: a table for people, the JSON with --output json; no secret in either.
    let table = ok(&server.cli(
        ADMIN_TOKEN,
        &["resolve", &image, "--workspace", WORKSPACE, "--explain"],
        None,
    ));
    for expected in [
        "Outcome    resolved",
        "Chosen     rk:acme/ci:credential/team",
        "CANDIDATE",
        "rk:acme/ci:credential/whole",
        "does not cover `team/app`",
    ] {
        assert!(table.contains(expected), "{expected} missing:\n{table}");
    }
    let printed = ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "resolve",
            &image,
            "--workspace",
            WORKSPACE,
            "--explain",
            "--output",
            "json",
        ],
        None,
    ));
    let parsed: wire::ResolveExplanation = serde_json::from_str(&printed).unwrap();
    assert_eq!(parsed.chosen.as_deref(), Some("rk:acme/ci:credential/team"));
    for output in [&table, &printed] {
        assert!(!output.contains(&secret), "the secret was printed");
    }
    assert!(!server.log().contains(&secret));
    // --output alone belongs to --explain.
    let usage = server.cli(ADMIN_TOKEN, &["resolve", &image, "--output", "json"], None);
    assert!(!usage.status.success());
}
