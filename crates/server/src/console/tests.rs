//! The console's router in-process: headers, redirects, sign-in and the refusal of
//! forged posts, on a real SQLite store in a temporary directory.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::clock::SystemClock;
use crate::config::{Config, Overrides};
use crate::http::{ApiState, AuthLimiter};
use crate::service::identity;

const TOKEN: &str = "rk_console_unit_test_admin_token_0123456789";

struct Console {
    router: Router,
    app: Arc<crate::service::App>,
    _directory: tempfile::TempDir,
}

async fn console() -> Console {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data").to_string_lossy().into_owned();
    let config = Config::load(
        None,
        &|name| match name {
            "REGKEEPER_DATA_DIR" => Some(data.clone()),
            "REGKEEPER_BOOTSTRAP_TOKEN" => Some(TOKEN.to_owned()),
            _ => None,
        },
        &Overrides::default(),
    )
    .unwrap();
    let app = crate::serve::build_app(config, Arc::new(SystemClock))
        .await
        .unwrap();
    identity::bootstrap(&app).await.unwrap();
    let router = crate::http::router(ApiState {
        app: Arc::clone(&app),
        limiter: Arc::new(AuthLimiter::default()),
    });
    Console {
        router,
        app,
        _directory: directory,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .iter()
            .find(|cookie| cookie.starts_with(&format!("{name}=")))
            .cloned()
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().unwrap())
    }

    fn hidden_csrf(&self) -> String {
        let start = self.body.find("name=\"csrf\" value=\"").unwrap() + 19;
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end].to_owned()
    }
}

/// `name=value` of a `Set-Cookie` line, for a `Cookie` header.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(path: &str, cookies: &[String]) -> Request<Body> {
    let mut request = Request::get(path).header(header::HOST, "console.test");
    if !cookies.is_empty() {
        request = request.header(header::COOKIE, cookies.join("; "));
    }
    request.body(Body::empty()).unwrap()
}

fn post(path: &str, cookies: &[String], form: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post(path)
        .header(header::HOST, "console.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if !cookies.is_empty() {
        request = request.header(header::COOKIE, cookies.join("; "));
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(Body::from(form.to_owned())).unwrap()
}

/// Signs in as the admin; the session cookie pair and the session's CSRF token.
async fn sign_in(console: &Console) -> (String, String) {
    let page = send(&console.router, get("/console/", &[])).await;
    let csrf_cookie = pair(&page.cookie("regkeeper_csrf").unwrap());
    let form = format!("csrf={}&token={TOKEN}", page.hidden_csrf());
    let signed = send(
        &console.router,
        post(
            "/console/sign-in",
            &[csrf_cookie],
            &form,
            &[("origin", "http://console.test")],
        ),
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let session = pair(&signed.cookie("regkeeper_session").unwrap());
    let workspaces = send(
        &console.router,
        get("/console/workspaces", std::slice::from_ref(&session)),
    )
    .await;
    assert_eq!(workspaces.status, StatusCode::OK);
    let csrf = workspaces.hidden_csrf();
    (session, csrf)
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let console = console().await;
    let root = send(&console.router, get("/", &[])).await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.header(header::LOCATION), "/console/");
    for path in [
        "/",
        "/console/",
        "/console/nowhere",
        "/console/static/console.js",
    ] {
        let answer = send(&console.router, get(path, &[])).await;
        assert_eq!(
            answer.header(header::CONTENT_SECURITY_POLICY),
            super::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(answer.header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(answer.header(header::X_FRAME_OPTIONS), "DENY");
    }
    let page = send(&console.router, get("/console/", &[])).await;
    assert_eq!(page.header(header::CACHE_CONTROL), "no-store");
    assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
    let script = send(&console.router, get("/console/static/console.js", &[])).await;
    assert!(script.header(header::CACHE_CONTROL).starts_with("public"));
    assert!(script
        .header(header::CONTENT_TYPE)
        .starts_with("text/javascript"));
    let missing = send(&console.router, get("/console/nowhere", &[])).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("Page not found"));
    // The REST API is untouched: still JSON, without the console's headers.
    let api = send(&console.router, get("/api/v1/nowhere", &[])).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api
        .header(header::CONTENT_TYPE)
        .starts_with("application/json"));
}

#[tokio::test]
async fn type_detection_answers_json() {
    let console = console().await;
    let answer = send(
        &console.router,
        get(
            "/console/detect-type?registry=123456789012.dkr.ecr.us-east-1.amazonaws.com",
            &[],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(json["type"], "ecr");
    assert_eq!(json["label"], "Amazon ECR (us-east-1)");
    let docker = send(
        &console.router,
        get("/console/detect-type?registry=ghcr.io", &[]),
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&docker.body).unwrap();
    assert_eq!(json["type"], "docker");
    assert_eq!(json["label"], "Docker registry");
}

#[tokio::test]
async fn signing_in_sets_a_sealed_strict_cookie() {
    let console = console().await;
    let page = send(&console.router, get("/console/", &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf_cookie = page.cookie("regkeeper_csrf").unwrap();
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"));
    let form = format!("csrf={}&token={TOKEN}", page.hidden_csrf());
    let signed = send(
        &console.router,
        post(
            "/console/sign-in",
            &[pair(&csrf_cookie)],
            &form,
            &[
                ("x-forwarded-proto", "https"),
                ("origin", "https://console.test"),
            ],
        ),
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(signed.header(header::LOCATION), "/console/workspaces");
    let session = signed.cookie("regkeeper_session").unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
        "Secure",
    ] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(!session.contains(TOKEN));
    // Signed in, the sign-in page sends people on.
    let home = send(&console.router, get("/console/", &[pair(&session)])).await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.header(header::LOCATION), "/console/workspaces");
}

#[tokio::test]
async fn a_bad_token_gets_a_clear_message() {
    let console = console().await;
    let page = send(&console.router, get("/console/", &[])).await;
    let csrf_cookie = pair(&page.cookie("regkeeper_csrf").unwrap());
    let form = format!("csrf={}&token=rk_wrong_token", page.hidden_csrf());
    let refused = send(
        &console.router,
        post("/console/sign-in", &[csrf_cookie], &form, &[]),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("<p role=\"alert\""));
    assert!(refused.body.contains("That API token is not valid"));
    assert!(!refused.body.contains("rk_wrong_token"));
    assert!(refused.cookie("regkeeper_session").is_none());
}

#[tokio::test]
async fn forged_posts_are_refused_and_change_nothing() {
    let console = console().await;
    // Sign-in without the double-submit cookie, or from another site.
    let page = send(&console.router, get("/console/", &[])).await;
    let csrf_cookie = pair(&page.cookie("regkeeper_csrf").unwrap());
    let form = format!("csrf={}&token={TOKEN}", page.hidden_csrf());
    let no_cookie = send(&console.router, post("/console/sign-in", &[], &form, &[])).await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    assert!(no_cookie.body.contains(super::pages::REFUSED_MESSAGE));
    let cross_site = send(
        &console.router,
        post(
            "/console/sign-in",
            &[csrf_cookie],
            &form,
            &[("origin", "https://evil.example")],
        ),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    assert!(cross_site.cookie("regkeeper_session").is_none());

    let (session, csrf) = sign_in(&console).await;
    let add = "name=forged&type=docker&registry=registry.example.com&username=me&password=secret";
    let cases = [
        (add.to_owned(), vec![]),
        (format!("csrf=wrong&{add}"), vec![]),
        (
            format!("csrf={csrf}&{add}"),
            vec![("origin", "https://evil.example")],
        ),
        (
            format!("csrf={csrf}&{add}"),
            vec![("sec-fetch-site", "cross-site")],
        ),
    ];
    for (form, extra) in cases {
        let answer = send(
            &console.router,
            post(
                "/console/workspaces/~admin/credentials",
                std::slice::from_ref(&session),
                &form,
                &extra,
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{form}");
        assert!(answer.body.contains(super::pages::REFUSED_MESSAGE));
    }
    let workspace = console
        .app
        .store
        .workspace_by_name("~admin")
        .await
        .unwrap()
        .unwrap();
    assert!(console
        .app
        .store
        .credentials(&workspace.id)
        .await
        .unwrap()
        .is_empty());
    // A refused sign-out leaves the session alone.
    let sign_out = send(
        &console.router,
        post(
            "/console/sign-out",
            std::slice::from_ref(&session),
            "csrf=wrong",
            &[],
        ),
    )
    .await;
    assert_eq!(sign_out.status, StatusCode::FORBIDDEN);
    let still = send(
        &console.router,
        get("/console/workspaces", std::slice::from_ref(&session)),
    )
    .await;
    assert_eq!(still.status, StatusCode::OK);
    // The right token signs out.
    let out = send(
        &console.router,
        post(
            "/console/sign-out",
            &[session],
            &format!("csrf={csrf}"),
            &[],
        ),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out
        .cookie("regkeeper_session")
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn pages_need_a_session_and_workspaces_are_one_segment() {
    let console = console().await;
    let anonymous = send(&console.router, get("/console/workspaces", &[])).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.header(header::LOCATION), "/console/");
    let tampered = send(
        &console.router,
        get(
            "/console/workspaces",
            &["regkeeper_session=AAAAAQ".to_owned()],
        ),
    )
    .await;
    assert_eq!(tampered.status, StatusCode::SEE_OTHER);
    assert!(tampered
        .cookie("regkeeper_session")
        .unwrap()
        .contains("Max-Age=0"));

    let (session, _) = sign_in(&console).await;
    let list = send(
        &console.router,
        get("/console/workspaces", std::slice::from_ref(&session)),
    )
    .await;
    assert!(list.body.contains("<h1>Workspaces</h1>"));
    assert!(list
        .body
        .contains("href=\"/console/workspaces/~admin/credentials\">~admin</a>"));
    for path in [
        "/console/workspaces/~admin/credentials",
        "/console/workspaces/%7Eadmin/credentials",
    ] {
        let page = send(&console.router, get(path, std::slice::from_ref(&session))).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.contains("<h1>Credentials in ~admin</h1>"));
        assert!(page.body.contains(">Add credentials</a>"));
        assert!(page.body.contains(">Audit log</a>"));
    }
    let missing = send(
        &console.router,
        get("/console/workspaces/acme%2Fnone/credentials", &[session]),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.body.contains("Workspace acme/none was not found"),
        "{}",
        missing.body
    );
}

/// Issue 12 item 14: a page's text shows control, bidi and other non-printing
/// characters escaped, while attribute values (form fields post them back) stay exact.
#[test]
fn page_text_is_printable_and_attributes_stay_exact() {
    let document =
        "<p title=\"a\u{202e}b\">x\n\u{1b}[31mfake\u{202e}\0</p><input value=\"a\u{202e}b\">";
    assert_eq!(
        super::printable_text(document),
        "<p title=\"a\u{202e}b\">x\\n\\u{1b}[31mfake\\u{202e}\\0</p><input value=\"a\u{202e}b\">"
    );
    let plain = "<p>Credentials in acme/ci — ghcr.io · Grüße</p>";
    assert!(matches!(
        super::printable_text(plain),
        std::borrow::Cow::Borrowed(_)
    ));
}

/// Issue 12 items 14 and 16 (d): the audit page shows a forged target escaped, the
/// time to the millisecond in UTC, and each entry's reason.
#[test]
fn the_audit_page_shows_exact_times_reasons_and_escaped_targets() {
    let entry = crate::audit::AuditRow {
        seq: 7,
        at: 1_700_000_000_200,
        actor: "mallory".into(),
        action: "credential.create".into(),
        workspace: Some("acme/ci".into()),
        workspace_id: Some("w1".into()),
        target: Some("x\n8  admin  \u{1b}[32mcredential.delete\u{202e}\0".into()),
        outcome: "not_found".into(),
        detail:
            serde_json::json!({"error": "not_found", "reason": "credential x in acme/ci not found"})
                .to_string(),
        prev_hash: String::new(),
        hash: String::new(),
    };
    let shell = super::pages::Shell {
        user: "admin",
        csrf: "token",
    };
    let page = super::pages::audit(&shell, "acme/ci", &[entry], 200).into_string();
    let shown = super::printable_text(&page);
    assert!(
        shown.contains("<td>x\\n8  admin  \\u{1b}[32mcredential.delete\\u{202e}\\0</td>"),
        "{shown}"
    );
    assert!(!shown.contains(['\n', '\u{1b}', '\u{202e}', '\0']));
    assert!(shown.contains(
        "<time datetime=\"2023-11-14T22:13:20.200Z\">2023-11-14 22:13:20.200 UTC</time>"
    ));
    assert!(shown.contains("<th scope=\"col\">Reason and detail</th>"));
    assert!(shown.contains("<td>credential x in acme/ci not found, error=not_found</td>"));
    assert!(shown.contains("outcome-not_found"));
}
