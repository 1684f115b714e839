//! Identity federation (issue 13 §1-2) against a real server and a real OIDC provider
//! (oauth2-mock-server over HTTPS with the test CA): roles trust issuers through the
//! CLI and REST API, tokens from the provider are exchanged for role tokens that
//! resolve credentials, and every adversarial token is refused with one 401
//! `oidc_token_rejected` naming the failed check, never echoing the token.

pub mod setup;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;
use serde_json::{json, Value};

use super::peers::identity_provider::{IdentityProvider, SigningKey};
use super::peers::tls::TestCa;
use super::support::{ok, raw, stderr, ServerOptions, TestServer, ADMIN_TOKEN};
use setup::{
    add_trust, federated_pull, github_claims, server_trusting, set_up_workspace,
    trust_github_builder, try_add_trust, AUDIENCE,
};

const WORKSPACE: &str = "acme/ci";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("fits")
}

/// A workspace with credential `hub` and roles `builder` and `deployer`, each allowed
/// to resolve it.
fn set_up(server: &TestServer) -> Client {
    set_up_workspace(
        server,
        WORKSPACE,
        &[("hub", "registry.example.com", "hub-password-42")],
        &[("builder", "hub"), ("deployer", "hub")],
    )
}

fn trust_cli(server: &TestServer, role: &str, issuer: &str, extra: &[&str]) -> wire::Trust {
    add_trust(server, WORKSPACE, role, issuer, extra)
}

fn exchange(server: &TestServer, role: &str, token: &str) -> (u16, Value) {
    let body = json!({"role": format!("rk:{WORKSPACE}:role/{role}"), "token": token});
    let (status, text) = raw(
        server,
        "POST",
        "/api/v1/oidc/exchange",
        None,
        Some("application/json"),
        Some(body.to_string().as_bytes()),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a refusal naming `check`, without the token in it.
fn assert_rejected(server: &TestServer, role: &str, token: &str, check: &str) {
    let (status, body) = exchange(server, role, token);
    assert_eq!(status, 401, "{check}: {body}");
    assert_eq!(body["error"]["code"], "oidc_token_rejected", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(check), "expected `{check}` in: {message}");
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(
        signature.len() < 8 || !message.contains(signature),
        "the message echoes the token: {message}"
    );
}

fn resolve_with(server: &TestServer, token: &str) -> Result<wire::Resolved, u16> {
    server
        .client(token)
        .post(
            &format!("/api/v1/workspaces/{}/resolve", segment(WORKSPACE)),
            &wire::ResolveInput {
                image: Some("registry.example.com/team/app:1".into()),
                ..Default::default()
            },
        )
        .map_err(|error| error.status().unwrap_or(0))
}

/// Issue 13 items 1 and 2: trusts through the CLI contract; a provider's GitHub- and
/// Kubernetes-shaped tokens exchanged for role tokens that resolve credentials; a
/// replay returns the same token; the exchange is audited as `oidc:ISSUER#SUB` and
/// counted; removing the trust ends the session it granted.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_exchange_end_to_end_with_a_real_provider() {
    let ca = TestCa::generate();
    let Some(provider) = IdentityProvider::start(&ca, "key-1") else {
        return;
    };
    let server = server_trusting(&ca);
    let admin = set_up(&server);

    // Refused before anything is stored: open to every GitHub user.
    let open = try_add_trust(
        &server,
        WORKSPACE,
        "builder",
        "https://token.actions.githubusercontent.com",
        &["--subject", "repo:*"],
    );
    assert!(!open.status.success());
    assert!(
        stderr(&open).contains("repository_owner"),
        "{}",
        stderr(&open)
    );
    let too_long = try_add_trust(
        &server,
        WORKSPACE,
        "builder",
        &provider.issuer,
        &["--subject", "x", "--max-session", "13h"],
    );
    assert!(stderr(&too_long).contains("12 h"), "{}", stderr(&too_long));

    let github = trust_cli(
        &server,
        "builder",
        &provider.issuer,
        &[
            "--subject",
            "repo:acme/app:*",
            "--claim",
            "repository_owner=acme",
            "--max-session",
            "30m",
        ],
    );
    assert_eq!(github.max_session_seconds, 1800);
    assert_eq!(github.role, format!("rk:{WORKSPACE}:role/builder"));
    let kubernetes = trust_cli(
        &server,
        "deployer",
        &provider.issuer,
        &[
            "--subject",
            "system:serviceaccount:ci:*",
            "--claim",
            "kubernetes.io.namespace=ci",
            "--claim",
            "kubernetes.io.serviceaccount.name=build*",
        ],
    );
    assert_eq!(
        kubernetes.max_session_seconds, 3600,
        "the default is an hour"
    );
    let listed = ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "roles",
            "trust",
            "list",
            "deployer",
            "--workspace",
            WORKSPACE,
        ],
        None,
    ));
    assert!(
        listed.contains(&kubernetes.id) && listed.contains("kubernetes.io.namespace=ci"),
        "{listed}"
    );

    // GitHub-shaped token from the provider.
    let jwt = provider.token(AUDIENCE, &github_claims()).await;
    let (status, body) = exchange(&server, "builder", &jwt);
    assert_eq!(status, 200, "{body}");
    let issued = body["token"].as_str().unwrap().to_owned();
    assert!(issued.starts_with("rk_"));
    let expires_at = time::OffsetDateTime::parse(
        body["expiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(
        (expires_at - (now() + 1800)).abs() <= 5,
        "min(exp + 30m, now + 30m) is now + 30m: {expires_at}"
    );
    let resolved = resolve_with(&server, &issued).expect("the role token resolves");
    assert_eq!(resolved.username, "robot");
    assert_eq!(resolved.secret.expose(), "hub-password-42");
    // A replay of the same JWT gets the same token, not a new row.
    let (_, again) = exchange(&server, "builder", &jwt);
    assert_eq!(again["token"].as_str(), Some(issued.as_str()));
    let tokens: wire::ApiTokenList = admin
        .get(&format!(
            "/api/v1/workspaces/{}/roles/builder/tokens",
            segment(WORKSPACE)
        ))
        .unwrap();
    assert_eq!(tokens.tokens.len(), 1, "one row for two exchanges");

    // Kubernetes-shaped token, nested claims.
    let pod = json!({
        "sub": "system:serviceaccount:ci:builder",
        "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder", "uid": "u-1"}},
    });
    let (status, body) = exchange(&server, "deployer", &provider.token(AUDIENCE, &pod).await);
    assert_eq!(status, 200, "{body}");
    let mut other_namespace = pod.clone();
    other_namespace["kubernetes.io"]["namespace"] = json!("prod");
    let token = provider.token(AUDIENCE, &other_namespace).await;
    assert_rejected(&server, "deployer", &token, "claim kubernetes.io.namespace");

    // Audited with the federated principal and the role; counted by outcome.
    let audit: wire::AuditList = admin.get("/api/v1/audit?limit=500").unwrap();
    let principal = format!("oidc:{}#repo:acme/app:ref:refs/heads/main", provider.issuer);
    assert!(
        audit
            .entries
            .iter()
            .any(|entry| entry.action == "oidc.exchange"
                && entry.actor == principal
                && entry.target.as_deref() == Some(&format!("rk:{WORKSPACE}:role/builder"))),
        "no audit entry for {principal}"
    );
    assert!(audit
        .entries
        .iter()
        .any(|entry| entry.action == "oidc.exchange" && entry.outcome == "denied"));
    let (_, openapi) = raw(&server, "GET", "/api/v1/openapi.json", None, None, None);
    assert!(openapi.contains("/api/v1/oidc/exchange") && openapi.contains("/trusts"));
    let (_, metrics) = raw(&server, "GET", "/metrics", None, None, None);
    assert!(
        metrics.contains("regkeeper_oidc_exchanges_total{outcome=\"issued\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("regkeeper_oidc_exchanges_total{outcome=\"reused\"} 1"));
    assert!(metrics.contains("regkeeper_oidc_exchanges_total{outcome=\"rejected\"} 1"));
    assert!(!server.log().contains(&issued) && !server.log().contains(&jwt));

    // Removing the trust ends the session it granted.
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "roles",
            "trust",
            "remove",
            "builder",
            &github.id,
            "--workspace",
            WORKSPACE,
        ],
        None,
    ));
    assert_eq!(resolve_with(&server, &issued).unwrap_err(), 401);
    assert_rejected(&server, "builder", &jwt, "issuer unknown to the role");
}

/// Issue 13 item 2: the adversarial list — audience, expired, future `nbf`, issuer,
/// a second issuer reusing the first's `kid`, `none`, HS256 with the public key,
/// unknown `kid`, subject, claim, a token for role A presented for role B, size.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_exchange_refuses_adversarial_tokens() {
    let ca = TestCa::generate();
    let Some(provider) = IdentityProvider::start(&ca, "shared-kid") else {
        return;
    };
    let Some(second) = IdentityProvider::start(&ca, "shared-kid") else {
        return;
    };
    let server = server_trusting(&ca);
    set_up(&server);
    trust_github_builder(&server, WORKSPACE, &provider.issuer);
    trust_cli(
        &server,
        "deployer",
        &second.issuer,
        &["--subject", "repo:acme/app:*"],
    );
    let base = |issuer: &str| {
        let mut claims = github_claims();
        claims["iss"] = json!(issuer);
        claims["aud"] = json!(AUDIENCE);
        claims["iat"] = json!(now());
        claims["exp"] = json!(now() + 600);
        claims
    };
    let good = provider.key.sign(&base(&provider.issuer));
    assert_eq!(
        exchange(&server, "builder", &good).0,
        200,
        "the forged-but-valid baseline"
    );

    let wrong_audience = provider.token("someone-else", &github_claims()).await;
    assert_rejected(&server, "builder", &wrong_audience, "audience");
    let mut claims = base(&provider.issuer);
    claims["exp"] = json!(now() - 120);
    assert_rejected(&server, "builder", &provider.key.sign(&claims), "expired");
    let mut claims = base(&provider.issuer);
    claims["nbf"] = json!(now() + 600);
    assert_rejected(
        &server,
        "builder",
        &provider.key.sign(&claims),
        "not yet valid",
    );
    // A real token of the second issuer, for a role that trusts only the first.
    let foreign = second.token(AUDIENCE, &github_claims()).await;
    assert_rejected(&server, "builder", &foreign, "issuer unknown to the role");
    // The second issuer's key, same kid, claiming to be the first issuer.
    let impostor = second.key.sign(&base(&provider.issuer));
    assert_rejected(&server, "builder", &impostor, "signature");
    // And the other way round: the first's key for the second's role.
    assert_rejected(
        &server,
        "deployer",
        &provider.key.sign(&base(&second.issuer)),
        "signature",
    );

    let encode =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        encode(&base(&provider.issuer))
    );
    assert_rejected(&server, "builder", &none, "algorithm");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("shared-kid".into());
    let public = provider.key.pair.public_key_pem();
    let confused = jsonwebtoken::encode(
        &header,
        &base(&provider.issuer),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_rejected(&server, "builder", &confused, "algorithm");
    let stranger = SigningKey::generate("unknown-kid");
    assert_rejected(
        &server,
        "builder",
        &stranger.sign(&base(&provider.issuer)),
        "signature",
    );

    let mut claims = base(&provider.issuer);
    claims["sub"] = json!("repo:evil/app:ref:refs/heads/main");
    assert_rejected(&server, "builder", &provider.key.sign(&claims), "subject");
    let mut claims = base(&provider.issuer);
    claims["repository_owner"] = json!("evil");
    assert_rejected(
        &server,
        "builder",
        &provider.key.sign(&claims),
        "claim repository_owner",
    );
    // Role A's token presented for role B (which trusts another issuer).
    assert_rejected(&server, "deployer", &good, "issuer unknown to the role");
    assert_rejected(&server, "nobody", &good, "issuer unknown to the role");
    let mut claims = base(&provider.issuer);
    claims["padding"] = json!("x".repeat(17 * 1024));
    assert_rejected(
        &server,
        "builder",
        &provider.key.sign(&claims),
        "larger than 16384 bytes",
    );
}

/// Issue 13 item 2: the issuer's documents come only through the guarded outbound
/// client: an issuer on a loopback address the server does not allow gets no
/// connection at all.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_keys_on_a_forbidden_address_make_no_connection() {
    let ca = TestCa::generate();
    let Some(provider) = IdentityProvider::start(&ca, "key-1") else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let tripwire = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    // No REGKEEPER_OUTBOUND_ALLOW_NETWORKS: loopback is forbidden.
    let server = TestServer::start();
    set_up(&server);
    trust_cli(
        &server,
        "builder",
        &tripwire,
        &["--subject", "repo:acme/app:*"],
    );
    let mut claims = github_claims();
    claims["iss"] = json!(tripwire);
    claims["aud"] = json!(AUDIENCE);
    claims["exp"] = json!(now() + 600);
    assert_rejected(&server, "builder", &provider.key.sign(&claims), "forbidden");
    assert!(
        listener.accept().is_err(),
        "a connection reached the forbidden address"
    );
}

fn outbound_trusting(ca: &TestCa) -> regkeeper::outbound::OutboundClient {
    regkeeper::outbound::OutboundClient::new(&regkeeper::config::OutboundConfig {
        allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ca_file: Some(ca.ca_file().to_owned()),
        http_registries: Vec::new(),
        timeout: None,
        token_realms: Vec::new(),
    })
    .expect("outbound client")
}

/// Issue 13 item 2: an unknown `kid` then a key rotation: keys are cached per issuer,
/// an unknown `kid` re-fetches at most once a minute (the clock is passed in), and the
/// discovery document must name the issuer exactly.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_unknown_kid_refetches_at_most_once_a_minute() {
    use regkeeper::service::oidc::{KeyCache, KeysError, REFETCH_INTERVAL_MS};
    let ca = TestCa::generate();
    let Some(mut provider) = IdentityProvider::start(&ca, "key-1") else {
        return;
    };
    let outbound = outbound_trusting(&ca);
    let cache = KeyCache::default();
    let issuer = provider.issuer.clone();
    let keys = cache
        .keys(&outbound, &issuer, Some("key-1"), 0)
        .await
        .unwrap();
    assert!(keys.find("key-1").is_some());

    let rotated = SigningKey::generate("key-2");
    provider.add_key(&rotated);
    let soon = cache
        .keys(&outbound, &issuer, Some("key-2"), REFETCH_INTERVAL_MS - 1)
        .await
        .unwrap();
    assert!(soon.find("key-2").is_none(), "re-fetched within the minute");
    let later = cache
        .keys(&outbound, &issuer, Some("key-2"), REFETCH_INTERVAL_MS)
        .await
        .unwrap();
    assert!(
        later.find("key-2").is_some(),
        "the rotated key is fetched after a minute"
    );

    let spelled_otherwise = format!("{issuer}/");
    let error = cache
        .keys(&outbound, &spelled_otherwise, None, 0)
        .await
        .unwrap_err();
    assert!(matches!(error, KeysError::IssuerMismatch { .. }), "{error}");
}

/// Serves a discovery document whose JWKS is 10 MiB, over TLS with the test CA.
/// Hand-written (`fake_*`): no real provider serves such a JWKS.
/// A `fake_*` issuer over TLS (oauth2-mock-server cannot point its `jwks_uri` elsewhere
/// nor serve 10 MiB of keys): its discovery document names `jwks_uri`, or its own
/// `/jwks`, which answers 10 MiB of padding.
async fn fake_oversized_jwks(ca: &TestCa) -> String {
    fake_issuer(ca, None).await
}

async fn fake_issuer(ca: &TestCa, jwks_uri: Option<String>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(ca.rustls_server_config()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let jwks_uri = jwks_uri.unwrap_or_else(|| format!("{issuer}/jwks"));
    let discovery = json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let discovery = discovery.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = vec![0; 4096];
                let read = stream.read(&mut head).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&head[..read]).into_owned();
                let body = if head.starts_with("GET /jwks") {
                    format!("{{\"keys\":[],\"padding\":\"{}\"}}", "x".repeat(10 << 20))
                } else {
                    discovery
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    issuer
}

/// Issue 13 item 2: an allowed issuer whose discovery document points its `jwks_uri`
/// at an address the server may not reach gets the key fetch refused before any
/// connection: the tripwire on 127.0.0.2 (outside the allowed 127.0.0.1/32) is never
/// connected to.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_jwks_uri_on_a_forbidden_address_makes_no_connection() {
    use regkeeper::service::oidc::{KeyCache, KeysError};
    let ca = TestCa::generate();
    let tripwire = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    tripwire.set_nonblocking(true).unwrap();
    let jwks_uri = format!(
        "https://127.0.0.2:{}/jwks",
        tripwire.local_addr().unwrap().port()
    );
    let issuer = fake_issuer(&ca, Some(jwks_uri)).await;
    let outbound = regkeeper::outbound::OutboundClient::new(&regkeeper::config::OutboundConfig {
        allow_networks: vec!["127.0.0.1/32".parse().unwrap()],
        ca_file: Some(ca.ca_file().to_owned()),
        http_registries: Vec::new(),
        timeout: None,
        token_realms: Vec::new(),
    })
    .expect("outbound client");
    let error = KeyCache::default()
        .keys(&outbound, &issuer, Some("any"), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, KeysError::Outbound(outbound) if outbound.to_string().contains("forbidden")),
        "{error}"
    );
    assert!(
        tripwire.accept().is_err(),
        "a connection reached the forbidden JWKS address"
    );
}

/// Issue 13 item 2: a 10 MiB JWKS is refused (size-capped), not buffered.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_oversized_jwks_is_refused() {
    use regkeeper::service::oidc::{KeyCache, KeysError};
    let ca = TestCa::generate();
    let issuer = fake_oversized_jwks(&ca).await;
    let error = KeyCache::default()
        .keys(&outbound_trusting(&ca), &issuer, Some("any"), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, KeysError::Outbound(outbound) if outbound.to_string().contains("larger than")),
        "{error}"
    );
    // And through the server, as one rejection naming the cause.
    let server = server_trusting(&ca);
    set_up(&server);
    trust_cli(
        &server,
        "builder",
        &issuer,
        &["--subject", "repo:acme/app:*"],
    );
    let key = SigningKey::generate("any");
    let mut claims = github_claims();
    claims["iss"] = json!(issuer);
    claims["aud"] = json!(AUDIENCE);
    claims["exp"] = json!(now() + 600);
    assert_rejected(&server, "builder", &key.sign(&claims), "larger than");
}

/// A stand-in for GitHub Actions' OIDC token endpoint (`fake_*`: GitHub's cannot run
/// here): answers `{"value": TOKEN}` to a GET carrying the request token and an
/// `audience`, and 401 to anything else. Plain http on loopback.
fn fake_github_actions_token_endpoint(token: String, bearer: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/token?api-version=2.0",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line);
            }
            let authorised = head.iter().any(|line| {
                line.to_ascii_lowercase().starts_with("authorization:")
                    && line.trim_end().ends_with(&format!("Bearer {bearer}"))
            });
            let audience = head
                .first()
                .is_some_and(|line| line.contains(&format!("&audience={AUDIENCE} ")));
            let (status, body) = if authorised && audience {
                ("200 OK", json!({"value": token}).to_string())
            } else {
                ("401 Unauthorized", "{}".to_owned())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// Issue 13 item 3: `regkeeper login --role` with `--oidc-token-file`,
/// `--oidc-token-env` and `--github-actions`, printing the token or saving it (0600)
/// in the CLI settings that later commands use.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_login_with_a_role() {
    use std::os::unix::fs::PermissionsExt;
    let ca = TestCa::generate();
    let Some(provider) = IdentityProvider::start(&ca, "key-1") else {
        return;
    };
    let server = server_trusting(&ca);
    set_up(&server);
    trust_github_builder(&server, WORKSPACE, &provider.issuer);
    let role = format!("rk:{WORKSPACE}:role/builder");
    let jwt = provider.token(AUDIENCE, &github_claims()).await;
    let directory = tempfile::tempdir().unwrap();
    let token_file = directory.path().join("oidc-token");
    std::fs::write(&token_file, format!("{jwt}\n")).unwrap();

    let from_file = super::support::run_cli(
        &server.url,
        "",
        &[
            "login",
            "--role",
            &role,
            "--oidc-token-file",
            token_file.to_str().unwrap(),
        ],
        None,
        &[],
    );
    let issued = ok(&from_file).trim().to_owned();
    assert!(issued.starts_with("rk_"), "{issued}");
    assert!(resolve_with(&server, &issued).is_ok());
    let from_env = super::support::run_cli(
        &server.url,
        "",
        &[
            "login",
            "--role",
            &role,
            "--oidc-token-env",
            "JOB_OIDC_TOKEN",
        ],
        None,
        &[("JOB_OIDC_TOKEN", &jwt)],
    );
    assert_eq!(
        ok(&from_env).trim(),
        issued,
        "the same JWT gets the same token"
    );

    let github_jwt = provider.token(AUDIENCE, &github_claims()).await;
    let endpoint = fake_github_actions_token_endpoint(github_jwt, "request-token-1");
    let home = directory.path().join("home");
    let home_text = home.display().to_string();
    let github = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", endpoint.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-1"),
        ("HOME", home_text.as_str()),
    ];
    let saved = super::support::run_cli(
        &server.url,
        "",
        &["login", "--role", &role, "--github-actions", "--save"],
        None,
        &github,
    );
    assert!(ok(&saved).trim().is_empty(), "--save prints no token");
    let settings = home.join(".config/regkeeper/config.toml");
    let mode = std::fs::metadata(&settings).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let resolved = super::support::run_cli(
        &server.url,
        "",
        &[
            "resolve",
            "registry.example.com/team/app:1",
            "--workspace",
            WORKSPACE,
        ],
        None,
        &[("HOME", home_text.as_str())],
    );
    assert!(
        ok(&resolved).contains("hub-password-42"),
        "the saved token resolves"
    );

    let wrong_request_token = super::support::run_cli(
        &server.url,
        "",
        &["login", "--role", &role, "--github-actions"],
        None,
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", endpoint.as_str()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong"),
        ],
    );
    assert!(
        stderr(&wrong_request_token).contains("HTTP 401"),
        "{}",
        stderr(&wrong_request_token)
    );
    let no_role = super::support::run_cli(
        &server.url,
        "",
        &["login", "--oidc-token-file", token_file.to_str().unwrap()],
        None,
        &[],
    );
    // An OIDC token is a workload's; without --role, login is a person's SSO.
    assert!(
        !no_role.status.success() && stderr(&no_role).contains("--role"),
        "{}",
        stderr(&no_role)
    );
    assert!(!stderr(&no_role).contains(&jwt));
}

/// Issue 13 item 1: a trust removed on one replica ends the sessions it granted on
/// another within the caches' documented bound (the NOTIFY of `role_trusts` and
/// `api_tokens`; at most `service::caches::CACHE_TTL`, 5 s), on PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_trust_removed_on_one_replica_ends_sessions_on_another() {
    use std::time::Duration;

    use super::support::eventually;

    let ca = TestCa::generate();
    let Some(provider) = IdentityProvider::start(&ca, "key-1") else {
        return;
    };
    let Some(database) = tokio::task::spawn_blocking(super::support::PostgresDatabase::create)
        .await
        .unwrap()
    else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let environment = vec![
        (
            "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".to_owned(),
            "127.0.0.0/8".to_owned(),
        ),
        (
            "REGKEEPER_OUTBOUND_CA_FILE".to_owned(),
            ca.ca_file().display().to_string(),
        ),
        (
            "REGKEEPER_MASTER_KEY_FILE".to_owned(),
            keys.path().join("master.key").display().to_string(),
        ),
    ];
    let start = || {
        TestServer::start_with(ServerOptions {
            database_url: Some(database.url.clone()),
            data_dir: None,
            environment: environment.clone(),
        })
    };
    let first = start();
    let second = start();
    set_up(&first);
    let trust = trust_github_builder(&first, WORKSPACE, &provider.issuer);
    let jwt = provider.token(AUDIENCE, &github_claims()).await;
    let (status, body) = exchange(&second, "builder", &jwt);
    assert_eq!(status, 200, "{body}");
    let issued = body["token"].as_str().unwrap().to_owned();
    // Cached on the second replica by a successful request.
    assert!(resolve_with(&second, &issued).is_ok());
    ok(&first.cli(
        ADMIN_TOKEN,
        &[
            "roles",
            "trust",
            "remove",
            "builder",
            &trust.id,
            "--workspace",
            WORKSPACE,
        ],
        None,
    ));
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        "the token refused on the other replica",
        || resolve_with(&second, &issued).is_err(),
    );
    assert_eq!(resolve_with(&second, &issued).unwrap_err(), 401);
    assert_rejected(&second, "builder", &jwt, "issuer unknown to the role");
}

/// Issue 13 item 2, end to end with real peers: a GitHub-shaped token from the
/// provider → the exchange → `resolve` with the issued role token → skopeo pulls from
/// distribution (htpasswd, TLS) with the login it got.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_exchanged_token_lets_skopeo_pull() {
    let Some((registry, provider, server)) = federated_pull(WORKSPACE) else {
        return;
    };
    let jwt = provider.token(AUDIENCE, &github_claims()).await;
    let (status, body) = exchange(&server, "builder", &jwt);
    assert_eq!(status, 200, "{body}");
    let resolved: wire::Resolved = server
        .client(body["token"].as_str().unwrap())
        .post(
            &format!("/api/v1/workspaces/{}/resolve", segment(WORKSPACE)),
            &wire::ResolveInput {
                image: Some(registry.image("team/app:1")),
                ..Default::default()
            },
        )
        .unwrap();
    registry.assert_pulls_with("team/app:1", &resolved);
}
