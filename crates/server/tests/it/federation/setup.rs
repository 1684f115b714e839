//! The set-up both federation suites need (the server's and the node-side consumers'),
//! kept in one place so a change to how a trust or a role is made reaches both.

use std::process::Output;

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;
use serde_json::{json, Value};

use crate::peers::identity_provider::IdentityProvider;
use crate::peers::registry::Registry;
use crate::peers::tls::TestCa;
use crate::support::{ok, ServerOptions, TestServer, ADMIN_TOKEN};

pub const AUDIENCE: &str = "regkeeper";

/// A server that may connect to loopback and trusts the test CA: the identity
/// provider it fetches discovery and keys from listens on 127.0.0.1 over HTTPS.
pub fn server_trusting(ca: &TestCa) -> TestServer {
    TestServer::start_with(ServerOptions {
        environment: vec![
            (
                "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".into(),
                "127.0.0.0/8".into(),
            ),
            (
                "REGKEEPER_OUTBOUND_CA_FILE".into(),
                ca.ca_file().display().to_string(),
            ),
        ],
        ..ServerOptions::default()
    })
}

/// `workspace` with a password credential per `(name, registry, password)` and a
/// role per `(role, credential)` allowed to resolve only that credential.
pub fn set_up_workspace(
    server: &TestServer,
    workspace: &str,
    credentials: &[(&str, &str, &str)],
    roles: &[(&str, &str)],
) -> Client {
    let admin = server.admin();
    let _: wire::Workspace = admin
        .post(
            "/api/v1/workspaces",
            &wire::WorkspaceInput {
                name: workspace.into(),
            },
        )
        .unwrap();
    for (name, registry, password) in credentials {
        let _: wire::Credential = admin
            .post(
                &format!("/api/v1/workspaces/{}/credentials", segment(workspace)),
                &wire::CredentialInput {
                    name: Some((*name).into()),
                    registry: Some((*registry).into()),
                    username: Some("robot".into()),
                    password: Some(wire::Sensitive::new(*password)),
                    verify: Some(false),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    for (role, credential) in roles {
        let _: wire::Role = admin
            .post(
                &format!("/api/v1/workspaces/{}/roles", segment(workspace)),
                &wire::RoleInput {
                    name: Some((*role).into()),
                    description: None,
                    policy: Some(json!({"Version": "2026-11-01", "Statement": [{
                        "Effect": "Allow", "Action": ["credentials:Resolve"],
                        "Resource": [format!("rk:{workspace}:credential/{credential}")]}]})),
                },
            )
            .unwrap();
    }
    admin
}

/// `roles trust add` through the CLI, as an operator adds one, with `extra` flags
/// (subject, claims, ...) after the issuer and audience; it may be refused.
pub fn try_add_trust(
    server: &TestServer,
    workspace: &str,
    role: &str,
    issuer: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "roles",
        "trust",
        "add",
        role,
        "--workspace",
        workspace,
        "--issuer",
        issuer,
        "--audience",
        AUDIENCE,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    server.cli(ADMIN_TOKEN, &args, None)
}

/// `try_add_trust`, which must succeed: the trust it stored.
pub fn add_trust(
    server: &TestServer,
    workspace: &str,
    role: &str,
    issuer: &str,
    extra: &[&str],
) -> wire::Trust {
    let output = try_add_trust(server, workspace, role, issuer, extra);
    serde_json::from_str(&ok(&output)).expect("trust JSON")
}

/// The trust `github_claims()` meets: `builder` for any ref of acme/app, owner acme,
/// the trust most tests need before they exchange.
pub fn trust_github_builder(server: &TestServer, workspace: &str, issuer: &str) -> wire::Trust {
    add_trust(
        server,
        workspace,
        "builder",
        issuer,
        &[
            "--subject",
            "repo:acme/app:*",
            "--claim",
            "repository_owner=acme",
        ],
    )
}

/// The claims of a GitHub Actions token for a run on acme/app's main branch.
pub fn github_claims() -> Value {
    json!({
        "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app",
        "repository_owner": "acme",
    })
}

/// Distribution behind htpasswd holding `team/app:1`, a provider with the registry's
/// CA, and a server trusting it where `builder` resolves only the registry's login
/// (`local`) and trusts the provider's GitHub-shaped tokens: what a federated pull
/// needs. `None` where a peer cannot run here.
pub fn federated_pull(workspace: &str) -> Option<(Registry, IdentityProvider, TestServer)> {
    let registry = Registry::htpasswd(&[("robot", "robot-password")])?;
    registry.push_test_image("team/app", "1", "robot", "robot-password");
    let provider = IdentityProvider::start(registry.ca(), "key-1")?;
    let server = server_trusting(registry.ca());
    set_up_workspace(
        &server,
        workspace,
        &[("local", registry.host_port(), "robot-password")],
        &[("builder", "local")],
    );
    trust_github_builder(&server, workspace, &provider.issuer);
    Some((registry, provider, server))
}
