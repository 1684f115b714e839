//! Identity federation for the node-side consumers (issue 13 §3) with real parts: the
//! docker credential helper with `REGKEEPER_ROLE` + `REGKEEPER_OIDC_TOKEN_FILE` under
//! skopeo pulling from distribution, its 0600 token cache counted through the
//! server's `regkeeper_oidc_exchanges_total`, and the kubelet provider given
//! Kubernetes-shaped service-account tokens from oauth2-mock-server (KEP-4412).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use regkeeper_wire::kubelet::{CredentialProviderResponse, API_VERSION};
use serde_json::{json, Value};

use super::consumers::{run, sibling};
use super::federation::setup::{
    add_trust, federated_pull, github_claims, server_trusting, set_up_workspace, AUDIENCE,
};
use super::peers::identity_provider::IdentityProvider;
use super::peers::registry::{Registry, SKOPEO_BINARY};
use super::peers::tls::TestCa;
use super::support::{ok, raw, run_cli, stderr, stdout, TestServer};

const WORKSPACE: &str = "acme/k8s";

fn role_reference(name: &str) -> String {
    format!("rk:{WORKSPACE}:role/{name}")
}

/// The workspace with a password credential per `(name, registry, password)` and a
/// role per `(role, credential)` allowed to resolve only that credential.
fn set_up(server: &TestServer, credentials: &[(&str, &str, &str)], roles: &[(&str, &str)]) {
    set_up_workspace(server, WORKSPACE, credentials, roles);
}

fn trust(server: &TestServer, role: &str, issuer: &str, extra: &[&str]) {
    add_trust(server, WORKSPACE, role, issuer, extra);
}

/// Every exchange the server answered, whatever its outcome.
fn exchanges(server: &TestServer) -> u64 {
    let (status, metrics) = raw(server, "GET", "/metrics", None, None, None);
    assert_eq!(status, 200);
    metrics
        .lines()
        .filter(|line| line.starts_with("regkeeper_oidc_exchanges_total{"))
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|value| value.parse::<f64>().ok())
                .expect("a counter value") as u64
        })
        .sum()
}

/// skopeo with only the helper configured for the registry, and the helper with
/// only the role, the OIDC token file and the server's address.
fn skopeo_pull(registry: &Registry, home: &Path, environment: &[(&str, &str)]) -> Output {
    let auth_file = home.join("auth.json");
    std::fs::write(
        &auth_file,
        json!({"credHelpers": {registry.host_port(): "regkeeper"}}).to_string(),
    )
    .unwrap();
    let target = home.join("layout");
    let _ = std::fs::remove_dir_all(&target);
    let helper_directory = sibling("docker-credential-regkeeper")
        .parent()
        .unwrap()
        .to_owned();
    let mut command = Command::new(SKOPEO_BINARY);
    command
        .arg("--insecure-policy")
        .arg("copy")
        .arg(format!("--src-authfile={}", auth_file.display()))
        .arg(format!(
            "--src-cert-dir={}",
            registry.ca().cert_dir().display()
        ))
        .arg(format!("docker://{}", registry.image("team/app:1")))
        .arg(format!("oci:{}:pulled", target.display()))
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:{}",
                helper_directory.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in environment {
        command.env(name, value);
    }
    command.output().expect("skopeo runs")
}

fn cache_files(home: &Path) -> Vec<PathBuf> {
    let directory = home.join(".cache/regkeeper/tokens");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Issue 13 §3 (helper): `docker-credential-regkeeper` with `REGKEEPER_ROLE` and
/// `REGKEEPER_OIDC_TOKEN_FILE` and no API token lets skopeo pull from distribution;
/// the exchanged token is kept in one 0600 file under ~/.cache/regkeeper/tokens and
/// reused by the next pull (no second exchange); a cached token the server refuses is
/// exchanged again once; a new OIDC token means a new exchange; neither token is
/// printed.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_helper_with_a_role_lets_skopeo_pull_and_caches_the_token() {
    let Some((registry, provider, server)) = federated_pull(WORKSPACE) else {
        return;
    };
    let claims = github_claims();
    let jwt = provider.token(AUDIENCE, &claims).await;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("oidc-token");
    std::fs::write(&token_file, format!("{jwt}\n")).unwrap();
    let token_path = token_file.display().to_string();
    let role = role_reference("builder");
    let environment = [
        ("REGKEEPER_URL", server.url.as_str()),
        ("REGKEEPER_ROLE", role.as_str()),
        ("REGKEEPER_OIDC_TOKEN_FILE", token_path.as_str()),
    ];
    let signature = jwt.rsplit('.').next().unwrap().to_owned();
    let assert_pulled = |output: &Output, what: &str| {
        assert!(
            output.status.success(),
            "{what}: skopeo failed: {}\nregistry log:\n{}",
            stderr(output),
            registry.log()
        );
        assert!(!stderr(output).contains(&signature), "{what}");
    };

    let before = exchanges(&server);
    assert_pulled(
        &skopeo_pull(&registry, home.path(), &environment),
        "first pull",
    );
    assert_eq!(
        exchanges(&server),
        before + 1,
        "one exchange for the first pull"
    );
    let files = cache_files(home.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let directory_mode = std::fs::metadata(files[0].parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(directory_mode & 0o777, 0o700);
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let cached_token = cached["token"].as_str().unwrap().to_owned();
    assert!(cached_token.starts_with("rk_"), "{cached}");
    assert!(!std::fs::read_to_string(&files[0])
        .unwrap()
        .contains(&signature));

    // The next pull (a new helper process) uses the cached token: no exchange.
    assert_pulled(
        &skopeo_pull(&registry, home.path(), &environment),
        "second pull",
    );
    assert_eq!(
        exchanges(&server),
        before + 1,
        "the cached token was reused"
    );

    // A cached token the server refuses is forgotten and exchanged again, once.
    let mut planted = cached.clone();
    planted["token"] = json!("rk_revoked0000000000000000000000");
    std::fs::write(&files[0], planted.to_string()).unwrap();
    assert_pulled(
        &skopeo_pull(&registry, home.path(), &environment),
        "after a 401",
    );
    assert_eq!(
        exchanges(&server),
        before + 2,
        "one re-exchange after the 401"
    );
    let refreshed: Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert!(refreshed["token"].as_str().unwrap().starts_with("rk_"));
    assert_ne!(refreshed["token"], planted["token"]);

    // A new OIDC token (the next job's) is a new exchange and a new cache file.
    let mut next_claims = claims.clone();
    next_claims["jti"] = json!("next-job");
    let next_jwt = provider.token(AUDIENCE, &next_claims).await;
    std::fs::write(&token_file, &next_jwt).unwrap();
    assert_pulled(
        &skopeo_pull(&registry, home.path(), &environment),
        "next job",
    );
    assert_eq!(exchanges(&server), before + 3);
    assert_eq!(cache_files(home.path()).len(), 2);

    // The helper alone: a refused OIDC token is one line naming both variables.
    let other_role = role_reference("nobody");
    let refused = run(
        &sibling("docker-credential-regkeeper"),
        &["get"],
        registry.host_port(),
        &[
            ("REGKEEPER_URL", server.url.as_str()),
            ("REGKEEPER_ROLE", other_role.as_str()),
            ("REGKEEPER_OIDC_TOKEN_FILE", token_path.as_str()),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains("REGKEEPER_OIDC_TOKEN_FILE") && message.contains("REGKEEPER_ROLE"),
        "{message}"
    );
    assert!(!message.contains(&signature), "{message}");
    assert_eq!(stdout(&refused), "");
    assert!(!server.log().contains(&signature));
}

/// A kubelet `CredentialProviderRequest` carrying a pod's service-account token and
/// its service account's annotations, as the kubelet sends it under KEP-4412.
fn pod_request(image: &str, token: &str, role: Option<&str>) -> String {
    let mut annotations = serde_json::Map::new();
    if let Some(role) = role {
        annotations.insert("regkeeper.io/role".into(), json!(role));
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": image,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": annotations,
    })
    .to_string()
}

/// A Kubernetes-shaped service-account token's claims.
fn service_account(namespace: &str, name: &str) -> Value {
    json!({
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": format!("uid-{namespace}-{name}")},
            "pod": {"name": format!("{name}-pod"), "uid": format!("pod-{namespace}")},
        },
    })
}

/// Issue 13 §3 (kubelet, KEP-4412): with no regkeeper token on the node, the provider
/// — the standalone binary and `regkeeper kubelet-credential-provider` — exchanges
/// each pod's service-account token for the role its annotation names and hands out
/// only what that role allows, with strictly the v1 response fields and a cache
/// no longer than the session; another namespace's service account is refused that
/// role, a role's policy denies what it does not allow, and a token without the
/// annotation is refused; no token appears in any output. A node-level
/// `REGKEEPER_ROLE` + `REGKEEPER_OIDC_TOKEN_FILE` serves requests without a
/// service-account token, exchanging once for two calls (its 0600 cache).
#[tokio::test(flavor = "multi_thread")]
async fn kubelet_provider_exchanges_each_pods_service_account_token() {
    let ca = TestCa::generate();
    let Some(provider) = IdentityProvider::start(&ca, "cluster-key") else {
        return;
    };
    let server = server_trusting(&ca);
    set_up(
        &server,
        &[
            ("team-a-registry", "a.registry.example", "password-a-canary"),
            ("team-b-registry", "b.registry.example", "password-b-canary"),
        ],
        &[("team-a", "team-a-registry"), ("team-b", "team-b-registry")],
    );
    for team in ["team-a", "team-b"] {
        trust(
            &server,
            team,
            &provider.issuer,
            &[
                "--subject",
                &format!("system:serviceaccount:{team}:puller"),
                "--claim",
                &format!("kubernetes.io.namespace={team}"),
            ],
        );
    }
    let token_a = provider
        .token(AUDIENCE, &service_account("team-a", "puller"))
        .await;
    let token_b = provider
        .token(AUDIENCE, &service_account("team-b", "puller"))
        .await;
    let signatures: Vec<String> = [&token_a, &token_b]
        .iter()
        .map(|token| token.rsplit('.').next().unwrap().to_owned())
        .collect();
    let role_a = role_reference("team-a");
    let role_b = role_reference("team-b");
    // Both forms of the provider, with the server's address and nothing else.
    let providers = |request: &str| -> Vec<(&'static str, Output)> {
        vec![
            (
                "binary",
                run(
                    &sibling("regkeeper-kubelet-credential-provider"),
                    &[],
                    request,
                    &[("REGKEEPER_URL", server.url.as_str())],
                ),
            ),
            (
                "regkeeper kubelet-credential-provider",
                run_cli(
                    &server.url,
                    "",
                    &["kubelet-credential-provider"],
                    Some(request),
                    &[],
                ),
            ),
        ]
    };
    let no_secret_leaks = |name: &str, output: &Output| {
        for signature in &signatures {
            assert!(!stdout(output).contains(signature), "{name}");
            assert!(!stderr(output).contains(signature), "{name}");
        }
    };

    let request = pod_request("a.registry.example/team/app", &token_a, Some(&role_a));
    for (name, output) in providers(&request) {
        no_secret_leaks(name, &output);
        let text = ok(&output);
        let value: Value = serde_json::from_str(&text).expect("JSON response");
        let mut fields: Vec<&String> = value.as_object().unwrap().keys().collect();
        fields.sort();
        // The kubelet decodes strictly: nothing beyond the v1 fields.
        assert_eq!(
            fields,
            [
                "apiVersion",
                "auth",
                "cacheDuration",
                "cacheKeyType",
                "kind"
            ],
            "{name}: {text}"
        );
        let response: CredentialProviderResponse = serde_json::from_value(value).unwrap();
        let login = &response.auth["a.registry.example"];
        assert_eq!(login.username, "robot", "{name}");
        assert_eq!(login.password.expose(), "password-a-canary", "{name}");
        assert_eq!(response.auth.len(), 1, "{name}");
        assert_eq!(response.cache_duration.as_deref(), Some("5m0s"), "{name}");
    }

    // Pod A's role does not allow team B's registry.
    let request = pod_request("b.registry.example/team/app", &token_a, Some(&role_a));
    for (name, output) in providers(&request) {
        no_secret_leaks(name, &output);
        assert!(!output.status.success(), "{name}");
        assert!(!stdout(&output).contains("password-b-canary"), "{name}");
        assert!(
            stderr(&output).contains("no statement of its policy allows it"),
            "{name}: {}",
            stderr(&output)
        );
    }

    // Pod B's service account may not take team A's role, however it is annotated.
    let request = pod_request("a.registry.example/team/app", &token_b, Some(&role_a));
    for (name, output) in providers(&request) {
        no_secret_leaks(name, &output);
        assert!(!output.status.success(), "{name}");
        assert_eq!(stdout(&output), "", "{name}");
        let message = stderr(&output);
        assert!(
            message.contains("regkeeper.io/role") && message.contains("oidc_token_rejected"),
            "{name}: {message}"
        );
    }
    // With its own role it gets its own registry only.
    let request = pod_request("b.registry.example/team/app", &token_b, Some(&role_b));
    for (name, output) in providers(&request) {
        let response: CredentialProviderResponse = serde_json::from_str(&ok(&output)).unwrap();
        assert_eq!(
            response.auth["b.registry.example"].password.expose(),
            "password-b-canary",
            "{name}"
        );
    }

    // A token without the annotation: refused, never answered with a node's token.
    let request = pod_request("a.registry.example/team/app", &token_a, None);
    for (name, output) in providers(&request) {
        no_secret_leaks(name, &output);
        assert!(!output.status.success(), "{name}");
        assert!(
            stderr(&output).contains("no annotation regkeeper.io/role"),
            "{name}: {}",
            stderr(&output)
        );
    }

    // A node-level role instead (REGKEEPER_ROLE + REGKEEPER_OIDC_TOKEN_FILE) serves a
    // request without a service-account token, and caches the role token in a 0600 file.
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("node-token");
    std::fs::write(&token_file, &token_a).unwrap();
    let token_path = token_file.display().to_string();
    let home_path = home.path().display().to_string();
    let request = json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": "a.registry.example/team/app",
    })
    .to_string();
    let before = exchanges(&server);
    for _ in 0..2 {
        let output = run(
            &sibling("regkeeper-kubelet-credential-provider"),
            &[],
            &request,
            &[
                ("REGKEEPER_URL", server.url.as_str()),
                ("REGKEEPER_ROLE", role_a.as_str()),
                ("REGKEEPER_OIDC_TOKEN_FILE", token_path.as_str()),
                ("HOME", home_path.as_str()),
            ],
        );
        no_secret_leaks("node role", &output);
        let response: CredentialProviderResponse = serde_json::from_str(&ok(&output)).unwrap();
        assert_eq!(
            response.auth["a.registry.example"].password.expose(),
            "password-a-canary"
        );
    }
    assert_eq!(
        exchanges(&server),
        before + 1,
        "the second call used the cache"
    );
    let files = cache_files(home.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    for signature in &signatures {
        assert!(!server.log().contains(signature));
    }
}
