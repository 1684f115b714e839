//! Issue 16 part 4: OpenTelemetry traces. The real `regkeeper serve`, with only the
//! standard `OTEL_*` variables set, exports OTLP/HTTP protobuf to a receiver that
//! decodes it with the OpenTelemetry project's own definitions: the spans arrive
//! (REST request, resolve, token mint), a request's `traceparent` makes its spans part
//! of the caller's trace, the headers and service name come from the variables, the
//! last spans are flushed on SIGTERM, and no secret is in what was sent.

use crate::peers::moto::{self, Moto};
use crate::peers::otlp::OtlpReceiver;
use crate::support::{add, login_flags, ok, ServerOptions, TestServer, ADMIN_TOKEN};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn resolve_with_traceparent(server: &TestServer, image: &str) -> u16 {
    let response = ureq::post(&format!("{}/api/v1/workspaces/~admin/resolve", server.url))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .set("traceparent", &format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
        .send_json(serde_json::json!({ "image": image }));
    match response {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(status, _)) => status,
        Err(error) => panic!("resolve: {error}"),
    }
}

fn attribute<'a>(span: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &span["attributes"][name]
}

#[test]
fn spans_reach_an_otlp_receiver_in_the_callers_trace_without_secrets() {
    let Some(receiver) = OtlpReceiver::start() else {
        return;
    };
    let moto = Moto::start();
    let sync_root = tempfile::tempdir().unwrap();
    let mut environment = vec![
        (
            "REGKEEPER_PROXY_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "REGKEEPER_SYNC_FILE_ROOT".to_owned(),
            sync_root.path().display().to_string(),
        ),
        (
            "REGKEEPER_OUTBOUND_TIMEOUT_SECONDS".to_owned(),
            "2".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            receiver.endpoint(),
        ),
        (
            "OTEL_SERVICE_NAME".to_owned(),
            "regkeeper-under-test".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
            "authorization=Bearer collector-key".to_owned(),
        ),
    ];
    if let Some(moto) = &moto {
        environment.push((
            "AWS_ENDPOINT_URL".to_owned(),
            moto.endpoint_url().to_owned(),
        ));
    }
    let server = TestServer::start_with(ServerOptions {
        environment,
        ..ServerOptions::default()
    });
    let password = format!("otel-canary-{}", uuid::Uuid::new_v4().simple());
    let mut flags = login_flags(["hub", "registry.example.com", "robot"]).to_vec();
    flags.push("--no-verify");
    ok(&add(&server, &flags, &password));
    assert_eq!(
        resolve_with_traceparent(&server, "registry.example.com/team/app:1"),
        200
    );
    // A sync target's first push, inside the request that adds it.
    ok(&server.cli(
        ADMIN_TOKEN,
        &["sync", "add", "hub", "--file", "hub/config.json"],
        None,
    ));
    // A proxied pull in the caller's trace (registry.example.com is out of reach: the
    // answer is an error, the spans are there all the same).
    let proxied = ureq::get(&format!(
        "{}/v2/registry.example.com/team/app/manifests/1",
        server.proxy_url.as_deref().expect("the proxy listens")
    ))
    .set(
        "Authorization",
        &format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("any:{ADMIN_TOKEN}")
            )
        ),
    )
    .set("traceparent", &format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
    .call();
    assert!(proxied.is_err(), "no upstream answers");
    if moto.is_some() {
        ok(&moto::add_ecr_login(&server, "ecr", HOST, &["--no-verify"]));
        assert_eq!(
            resolve_with_traceparent(&server, &format!("{HOST}/team/app:1")),
            200
        );
    }
    // SIGTERM: the server flushes the spans it still holds before it exits.
    let log = server.log();
    server.stop();

    let spans = receiver.spans();
    assert!(
        spans.iter().all(|span| span.get("error").is_none()),
        "{spans:#?}"
    );
    let named = |name: &str| -> Vec<&serde_json::Value> {
        spans.iter().filter(|span| span["name"] == name).collect()
    };
    // Request spans are named as OpenTelemetry's HTTP conventions say: METHOD ROUTE.
    let requests: Vec<&serde_json::Value> = spans
        .iter()
        .filter(|span| span["attributes"].get("http.route").is_some())
        .collect();
    assert!(requests.iter().all(|span| {
        span["name"]
            == format!(
                "{} {}",
                attribute(span, "http.request.method").as_str().unwrap(),
                attribute(span, "http.route").as_str().unwrap()
            )
    }));
    let resolve_requests: Vec<_> = requests
        .iter()
        .filter(|span| attribute(span, "http.route") == "/api/v1/workspaces/{workspace}/resolve")
        .collect();
    assert!(!resolve_requests.is_empty(), "{spans:#?}\nlog:\n{log}");
    for request in &resolve_requests {
        assert_eq!(request["traceId"], TRACE_ID, "the caller's trace");
        assert_eq!(request["parentSpanId"], PARENT_SPAN_ID, "the caller's span");
        assert_eq!(request["kind"], 2, "SPAN_KIND_SERVER");
        assert_eq!(attribute(request, "http.request.method"), "POST");
        assert_eq!(attribute(request, "http.response.status_code"), 200);
        assert_eq!(
            request["resource"]["service.name"], "regkeeper-under-test",
            "OTEL_SERVICE_NAME"
        );
        assert_eq!(
            request["authorization"], "Bearer collector-key",
            "OTEL_EXPORTER_OTLP_HEADERS"
        );
    }
    // The credential add (no traceparent) is a trace of its own.
    assert!(
        requests.iter().any(|span| {
            attribute(span, "http.route") == "/api/v1/workspaces/{workspace}/credentials"
                && span["traceId"] != TRACE_ID
                && span["parentSpanId"] == ""
        }),
        "{requests:#?}"
    );
    let resolves: Vec<_> = named("credential.resolve")
        .into_iter()
        .filter(|span| attribute(span, "resolve.action") == "credential.resolve")
        .collect();
    assert_eq!(resolves.len(), resolve_requests.len(), "{spans:#?}");
    for resolve in &resolves {
        assert_eq!(resolve["traceId"], TRACE_ID);
        assert!(
            resolve_requests
                .iter()
                .any(|request| request["spanId"] == resolve["parentSpanId"]),
            "a resolve is a child of its request: {resolve:#?}"
        );
        assert_eq!(attribute(resolve, "resolve.action"), "credential.resolve");
        assert!(
            attribute(resolve, "credential.id").is_string(),
            "{resolve:#?}"
        );
    }
    if moto.is_some() {
        let mints = named("token.mint");
        assert_eq!(mints.len(), 1, "{spans:#?}");
        assert_eq!(mints[0]["traceId"], TRACE_ID);
        assert_eq!(attribute(mints[0], "provider"), "ecr");
        assert!(
            resolves
                .iter()
                .any(|resolve| resolve["spanId"] == mints[0]["parentSpanId"]),
            "the mint is a child of the resolve: {mints:#?}"
        );
    }

    let pushes = named("sync.push");
    assert_eq!(pushes.len(), 1, "{spans:#?}");
    assert_eq!(attribute(pushes[0], "sync.kind"), "file");
    assert!(
        requests.iter().any(|request| {
            request["spanId"] == pushes[0]["parentSpanId"]
                && attribute(request, "http.route")
                    == "/api/v1/workspaces/{workspace}/credentials/{name}/sync-targets"
        }),
        "the push is a child of the request that added the target: {spans:#?}"
    );
    let proxy = named("proxy.request");
    assert_eq!(proxy.len(), 1, "{spans:#?}");
    assert_eq!(proxy[0]["traceId"], TRACE_ID);
    assert_eq!(proxy[0]["parentSpanId"], PARENT_SPAN_ID);
    assert_eq!(attribute(proxy[0], "proxy.kind"), "manifest");
    assert!(attribute(proxy[0], "http.response.status_code").as_i64() >= Some(400));
    assert!(
        spans.iter().any(|span| span["name"] == "credential.resolve"
            && span["parentSpanId"] == proxy[0]["spanId"]),
        "the proxy's permission check is a child of its request: {spans:#?}"
    );

    // No secret in what was sent: not the password, not the API token, not moto's key.
    let raw = receiver.raw();
    assert!(!raw.is_empty());
    let decoded = serde_json::to_string(&spans).unwrap();
    for secret in [password.as_str(), ADMIN_TOKEN, moto::SECRET_ACCESS_KEY] {
        assert!(
            !crate::support::contains(&raw, secret),
            "{secret} was exported"
        );
        assert!(!decoded.contains(secret), "{secret} was exported");
    }
}
