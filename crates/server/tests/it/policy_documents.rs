//! What a policy document and a credential name mean, against a real server: a key
//! named twice is refused rather than read as its last value, and names match
//! without regard to case, so a Deny by name cannot be sidestepped with capitals.

use regkeeper_client::segment;
use regkeeper_wire as wire;
use serde_json::json;

use super::grants::{
    create_role, credential, member, resolve_reference, role_token, status, user, workspace,
};
use super::support::{send_admin_json, stderr, TestServer, ADMIN_TOKEN};

const DUPLICATE_EFFECT: &str = r#"{"Statement":[{"Effect":"Deny","Action":"credentials:Resolve","Resource":"rk:acme/ci:credential/*","Effect":"Allow"}]}"#;

/// Issue 12 item 4: `"Effect":"Deny", …, "Effect":"Allow"` was stored as an Allow.
/// Through REST (create and update) and the CLI it is now a 400 naming the key, and
/// nothing is stored.
#[test]
fn a_policy_naming_a_key_twice_is_refused_through_rest_and_cli() {
    let server = TestServer::start();
    let admin = server.admin();
    workspace(&admin, "acme/ci");
    let roles = format!("/api/v1/workspaces/{}/roles", segment("acme/ci"));
    let body = format!(r#"{{"name":"twice","policy":{DUPLICATE_EFFECT}}}"#);
    let (code, answer) = send_admin_json(&server, "POST", &roles, body.as_bytes());
    assert_eq!(code, 400, "{answer}");
    let answer: wire::ErrorBody = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer.error.code, "duplicate_key");
    assert!(
        answer
            .error
            .message
            .contains("`Effect` in policy.Statement[0]"),
        "{}",
        answer.error.message
    );
    assert_eq!(
        status(admin.get::<wire::Role>(&format!("{roles}/twice"))),
        404
    );
    // The request's own keys count too, at the top level.
    let (code, answer) = send_admin_json(
        &server,
        "POST",
        &roles,
        br#"{"name":"a","name":"b","policy":{"Statement":[]}}"#,
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("`name` at the top level"), "{answer}");

    // An update cannot turn a Deny into an Allow either.
    create_role(
        &admin,
        "acme/ci",
        "reader",
        json!({"Statement": [{"Effect": "Deny", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/*"}]}),
    )
    .unwrap();
    let (code, answer) = send_admin_json(
        &server,
        "PATCH",
        &format!("{roles}/reader"),
        format!(r#"{{"policy":{DUPLICATE_EFFECT}}}"#).as_bytes(),
    );
    assert_eq!(code, 400, "{answer}");
    let stored: wire::Role = admin.get(&format!("{roles}/reader")).unwrap();
    assert_eq!(stored.policy["Statement"][0]["Effect"], "Deny");

    // The CLI refuses the file before sending it, naming the key.
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("policy.json");
    std::fs::write(&file, DUPLICATE_EFFECT).unwrap();
    let file = file.display().to_string();
    for args in [
        vec![
            "roles",
            "create",
            "twice",
            "--workspace",
            "acme/ci",
            "--policy-file",
            &file,
        ],
        vec![
            "roles",
            "update",
            "reader",
            "--workspace",
            "acme/ci",
            "--policy-file",
            &file,
        ],
    ] {
        let output = server.cli(ADMIN_TOKEN, &args, None);
        assert!(!output.status.success());
        let text = stderr(&output);
        assert!(
            text.contains("duplicate key `Effect` in Statement[0]"),
            "{text}"
        );
    }
    let stdin = server.cli(
        ADMIN_TOKEN,
        &[
            "roles",
            "create",
            "twice",
            "--workspace",
            "acme/ci",
            "--policy-file",
            "-",
        ],
        Some(DUPLICATE_EFFECT),
    );
    assert!(
        stderr(&stdin).contains("duplicate key `Effect`"),
        "{}",
        stderr(&stdin)
    );
    assert_eq!(
        status(admin.get::<wire::Role>(&format!("{roles}/twice"))),
        404
    );
}

/// Issue 12 item 3: with `Deny credentials:Resolve rk:acme/ci:credential/deploy-*`, a
/// maintainer added `Deploy-prod` and the role resolved it. The Deny now holds
/// whatever the case, and no second name differing only by case can be added.
#[test]
fn a_deny_by_name_holds_whatever_the_case_and_names_are_unique_without_it() {
    let server = TestServer::start();
    let admin = server.admin();
    workspace(&admin, "acme/ci");
    let maintainer = server.client(&user(&admin, "mia"));
    member(&admin, "acme/ci", "mia", "maintain");
    create_role(
        &admin,
        "acme/ci",
        "builder",
        json!({"Statement": [
            {"Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/*"},
            {"Sid": "NoDeployKeys", "Effect": "Deny", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/deploy-*"}
        ]}),
    )
    .unwrap();
    let builder = server.client(&role_token(&admin, "acme/ci", "builder"));
    credential(
        &maintainer,
        "acme/ci",
        "Deploy-prod",
        "deploy.acme.example",
        "deploy-secret",
    );
    credential(
        &maintainer,
        "acme/ci",
        "app",
        "app.acme.example",
        "app-secret",
    );

    let refused = resolve_reference(&builder, "rk:acme/ci:credential/Deploy-prod");
    let text = refused.unwrap_err().to_string();
    assert!(text.contains("denies"), "{text}");
    let by_image: Result<wire::Resolved, _> = builder.post(
        &format!("/api/v1/workspaces/{}/resolve", segment("acme/ci")),
        &json!({"image": "deploy.acme.example/app:1"}),
    );
    assert_eq!(status(by_image), 403);
    resolve_reference(&builder, "rk:acme/ci:credential/app").unwrap();

    // Another spelling is the same credential, and cannot be added beside it.
    let path = format!("/api/v1/workspaces/{}/credentials", segment("acme/ci"));
    let shown: wire::Credential = maintainer.get(&format!("{path}/DEPLOY-PROD")).unwrap();
    assert_eq!(shown.name, "Deploy-prod");
    let twin: Result<wire::Credential, _> = maintainer.post(
        &path,
        &wire::CredentialInput {
            name: Some("deploy-prod".into()),
            registry: Some("other.acme.example".into()),
            username: Some("u".into()),
            password: Some(wire::Sensitive::new("p")),
            verify: Some(false),
            ..Default::default()
        },
    );
    let text = twin.unwrap_err().to_string();
    assert!(text.contains("without regard to case"), "{text}");
    let renamed: Result<wire::Credential, _> = maintainer.patch(
        &format!("{path}/app"),
        &wire::CredentialInput {
            name: Some("DEPLOY-prod".into()),
            verify: Some(false),
            ..Default::default()
        },
    );
    assert_eq!(status(renamed), 409);
}
