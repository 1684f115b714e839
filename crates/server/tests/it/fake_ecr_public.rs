//! A hand-written stand-in for the ECR Public API (`SpencerFrontendService`), which
//! moto_server does not implement, so ECR Public minting can be tested end to end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use regkeeper_wire as wire;

use super::support::{ok, run_cli, ServerOptions, TestServer, ADMIN_TOKEN};

pub const PUBLIC_TOKEN: &str = "fake-ecr-public-token";

pub struct FakeEcrPublic {
    pub url: String,
    pub calls: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeEcrPublic {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/",
            post(move |headers: HeaderMap| {
                let counter = Arc::clone(&counter);
                async move {
                    let target = headers.get("x-amz-target").and_then(|value| value.to_str().ok()).unwrap_or_default();
                    let signed = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
                    if target != "SpencerFrontendService.GetAuthorizationToken" || !signed.starts_with("AWS4-HMAC-SHA256") {
                        return (StatusCode::BAD_REQUEST, String::from("{}"));
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{PUBLIC_TOKEN}"));
                    let expires = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 12 * 3600;
                    (
                        StatusCode::OK,
                        serde_json::json!({"authorizationData": {"authorizationToken": token, "expiresAt": expires}}).to_string(),
                    )
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            calls,
            _runtime: runtime,
        }
    }
}

#[test]
fn ecr_public_tokens_come_from_the_public_api_and_are_shared() {
    let fake = FakeEcrPublic::start();
    let server = TestServer::start_with(ServerOptions {
        environment: vec![("AWS_ENDPOINT_URL".into(), fake.url.clone())],
        ..ServerOptions::default()
    });
    let added = ok(&run_cli(
        &server.url,
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--name",
            "public",
            "--registry",
            "public.ecr.aws",
            "--username",
            "AKIAIOSFODNN7EXAMPLE",
            "--password-env",
            "AWS_SECRET",
            "--no-verify",
            "--output",
            "json",
        ],
        None,
        &[("AWS_SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
    ));
    let added: wire::Credential = serde_json::from_str(&added).unwrap();
    assert_eq!(
        (added.kind.as_str(), added.aws_region.as_deref()),
        ("ecr", Some("us-east-1"))
    );
    for _ in 0..3 {
        let resolved: wire::Resolved = serde_json::from_str(&ok(&server.cli(
            ADMIN_TOKEN,
            &["resolve", "public.ecr.aws/team/app:1"],
            None,
        )))
        .unwrap();
        assert_eq!(
            (resolved.username.as_str(), resolved.secret.expose()),
            ("AWS", PUBLIC_TOKEN)
        );
        assert!(resolved.expires_at.is_some());
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        1,
        "one mint, then the cached token"
    );
    let shown: wire::Credential = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &["credentials", "show", "public", "--output", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(
        shown.token.map(|token| token.status),
        Some("fresh".to_owned())
    );
    let (_, metrics) = super::support::raw(&server, "GET", "/metrics", None, None, None);
    assert!(
        metrics.contains("regkeeper_tokens{status=\"fresh\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("regkeeper_token_refreshes_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
}
