//! REST API behaviour at its edges: limits, error shapes, authentication and the
//! operational endpoints.

use regkeeper_wire as wire;

use super::support::{raw, send_admin_json, ServerOptions, TestServer, ADMIN_TOKEN};

fn error_of(body: &str) -> wire::ErrorDetail {
    serde_json::from_str::<wire::ErrorBody>(body)
        .unwrap_or_else(|error| panic!("not the error shape ({error}): {body}"))
        .error
}

const CREDENTIALS: &str = "/api/v1/workspaces/%7Eadmin/credentials";

/// Posts `body` as JSON to `~admin`'s credentials as the admin: status and body.
fn post_credential(server: &TestServer, body: &[u8]) -> (u16, String) {
    send_admin_json(server, "POST", CREDENTIALS, body)
}

#[test]
fn bodies_are_bounded_and_strict() {
    // A small limit, so the oversized body fits in the socket buffers and the client
    // reads the 413 instead of failing to write a body the server will not read.
    let server = TestServer::start_with(ServerOptions {
        environment: vec![("REGKEEPER_MAX_BODY_BYTES".into(), "2048".into())],
        ..ServerOptions::default()
    });
    let big = format!(
        r#"{{"name":"x","registry":"quay.io","username":"u","password":"{}"}}"#,
        "a".repeat(8 * 1024)
    );
    let (status, body) = post_credential(&server, big.as_bytes());
    assert_eq!(
        (status, error_of(&body).code.as_str()),
        (413, "body_too_large")
    );

    let misspelt = br#"{"name":"x","registry":"quay.io","username":"u","pasword":"p"}"#;
    let (status, body) = post_credential(&server, misspelt);
    let error = error_of(&body);
    assert_eq!((status, error.code.as_str()), (400, "invalid_body"));
    assert!(
        error.message.contains("unknown field `pasword`"),
        "{}",
        error.message
    );

    let wrong_type = br#"{"name":"x","registry":"quay.io","ambient":"api-canary-value"}"#;
    let (status, body) = post_credential(&server, wrong_type);
    assert_eq!(status, 400);
    assert!(!body.contains("api-canary-value"), "input echoed: {body}");

    let (status, body) = post_credential(&server, b"{not json");
    assert_eq!(
        (status, error_of(&body).code.as_str()),
        (400, "invalid_json")
    );
    let (status, body) = raw(
        &server,
        "POST",
        CREDENTIALS,
        Some(ADMIN_TOKEN),
        Some("text/plain"),
        Some(b"{}"),
    );
    assert_eq!(
        (status, error_of(&body).code.as_str()),
        (415, "unsupported_media_type")
    );

    let no_secret = br#"{"name":"x","registry":"quay.io","username":"u"}"#;
    let (status, body) = post_credential(&server, no_secret);
    assert_eq!(
        (status, error_of(&body).code.as_str()),
        (400, "missing_password")
    );
    let ambient =
        br#"{"name":"x","registry":"123456789012.dkr.ecr.us-east-1.amazonaws.com","ambient":true}"#;
    let (status, body) = post_credential(&server, ambient);
    assert_eq!(
        (status, error_of(&body).code.as_str()),
        (422, "ambient_credentials_disabled")
    );
}

#[test]
fn unknown_and_invisible_things_answer_404_alike() {
    let server = TestServer::start();
    let (status, body) = raw(
        &server,
        "GET",
        "/api/v1/nothing",
        Some(ADMIN_TOKEN),
        None,
        None,
    );
    assert_eq!((status, error_of(&body).code.as_str()), (404, "not_found"));
    let (status, body) = raw(
        &server,
        "DELETE",
        "/api/v1/me",
        Some(ADMIN_TOKEN),
        None,
        None,
    );
    assert_eq!(
        (status, error_of(&body).code.as_str()),
        (405, "method_not_allowed")
    );

    let created: wire::UserCreated = server
        .admin()
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: "eve".into(),
                admin: false,
            },
        )
        .unwrap();
    let eve = created.token.expose();
    let (_, hidden) = raw(&server, "GET", CREDENTIALS, Some(eve), None, None);
    let (status, missing) = raw(
        &server,
        "GET",
        "/api/v1/workspaces/%7Enobody/credentials",
        Some(eve),
        None,
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(error_of(&hidden).code, error_of(&missing).code);
    assert_eq!(
        error_of(&hidden).message.replace("~admin", "~nobody"),
        error_of(&missing).message
    );
}

#[test]
fn authentication_is_required_and_failures_are_rate_limited() {
    let server = TestServer::start();
    let (status, body) = raw(&server, "GET", "/api/v1/me", None, None, None);
    assert_eq!(
        (status, error_of(&body).code.as_str()),
        (401, "unauthenticated")
    );
    let mut statuses = Vec::new();
    for _ in 0..35 {
        statuses.push(
            raw(
                &server,
                "GET",
                "/api/v1/me",
                Some("rk_wrong_token_value"),
                None,
                None,
            )
            .0,
        );
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429);
    let (status, body) = raw(&server, "GET", "/metrics", None, None, None);
    assert_eq!(status, 200);
    assert!(body.contains("regkeeper_auth_failures_total"), "{body}");
}

#[test]
fn operational_endpoints() {
    let server = TestServer::start();
    assert_eq!(raw(&server, "GET", "/healthz", None, None, None).0, 200);
    let (status, body) = raw(&server, "GET", "/readyz", None, None, None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(&server, "GET", "/api/v1/openapi.json", None, None, None);
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/workspaces/{workspace}/credentials",
        "/api/v1/users",
        "/api/v1/admin/master-key/rotate",
        "/api/v1/audit/verify",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(document["components"]["schemas"]
        .get("CredentialInput")
        .is_some());
    let _: wire::Me = server.admin().get("/api/v1/me").unwrap();
    let (_, metrics) = raw(&server, "GET", "/metrics", None, None, None);
    assert!(
        metrics.contains(
            "regkeeper_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("regkeeper_master_key_available 1"),
        "{metrics}"
    );
}

/// The README's `POST /api/v1/admin/master-key/rotate` with no body (and no
/// `Content-Type`) rotates with the default options; a body that is not declared JSON
/// is still refused.
#[test]
fn master_key_rotation_needs_no_body() {
    let server = TestServer::start();
    let path = "/api/v1/admin/master-key/rotate";
    let (status, body) = raw(&server, "POST", path, Some(ADMIN_TOKEN), None, None);
    assert_eq!(status, 200, "{body}");
    let rotation: wire::KeyRotation = serde_json::from_str(&body).unwrap();
    assert_eq!(rotation.current_version, rotation.previous_version + 1);
    let (status, body) = raw(&server, "POST", path, Some(ADMIN_TOKEN), None, Some(b""));
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(
        &server,
        "POST",
        path,
        Some(ADMIN_TOKEN),
        None,
        Some(br#"{"skipUnreadable":true}"#),
    );
    assert_eq!(status, 415, "{body}");
    let (status, body) = raw(
        &server,
        "POST",
        path,
        Some(ADMIN_TOKEN),
        Some("application/json"),
        Some(br#"{"skipUnreadable":true}"#),
    );
    assert_eq!(status, 200, "{body}");
}
