//! The web console over plain HTTP against the real binary: the session cookie's
//! attributes, refused forged posts, the security headers, and what a viewer sees.
//! (The browser tests are in `console.rs`.)

use regkeeper_wire as wire;

use super::grants::{member, started_with_credential, user};
use super::support::{TestServer, ADMIN_TOKEN};

pub(super) struct Answer {
    pub(super) status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    content_security_policy: Option<String>,
    pub(super) body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .find(|cookie| cookie.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }

    fn hidden_csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end].to_owned()
    }
}

/// `name=value` of a `Set-Cookie` line.
pub(super) fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

pub(super) fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    cookies: &[String],
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> Answer {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut request = agent.request(method, &format!("{}{path}", server.url));
    if !cookies.is_empty() {
        request = request.set("Cookie", &cookies.join("; "));
    }
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = match form {
        Some(form) => request
            .set("Content-Type", "application/x-www-form-urlencoded")
            .send_string(form),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {path}: {error}"),
    };
    Answer {
        status: response.status(),
        location: response.header("location").map(str::to_owned),
        set_cookies: response
            .all("set-cookie")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        content_security_policy: response
            .header("content-security-policy")
            .map(str::to_owned),
        body: response.into_string().unwrap_or_default(),
    }
}

/// Signs in with `token`; the `Set-Cookie` of the session and the session's CSRF token.
pub(super) fn sign_in(
    server: &TestServer,
    token: &str,
    headers: &[(&str, &str)],
) -> (String, String) {
    let page = request(server, "GET", "/console/", &[], &[], None);
    assert_eq!(page.status, 200);
    let csrf_cookie = pair(page.cookie("regkeeper_csrf").expect("a sign-in cookie"));
    let form = format!("csrf={}&token={token}", page.hidden_csrf());
    let signed = request(
        server,
        "POST",
        "/console/sign-in",
        &[csrf_cookie],
        headers,
        Some(&form),
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location.as_deref(), Some("/console/workspaces"));
    let session = signed
        .cookie("regkeeper_session")
        .expect("a session cookie")
        .to_owned();
    let page = request(
        server,
        "GET",
        "/console/workspaces",
        &[pair(&session)],
        &[],
        None,
    );
    assert_eq!(page.status, 200);
    (session, page.hidden_csrf())
}

#[test]
fn signing_in_sets_a_strict_http_only_cookie_and_pages_are_locked_down() {
    let server = TestServer::start();
    let root = request(&server, "GET", "/", &[], &[], None);
    assert_eq!(
        (root.status, root.location.as_deref()),
        (303, Some("/console/"))
    );
    let page = request(&server, "GET", "/console/", &[], &[], None);
    let policy = page.content_security_policy.clone().unwrap_or_default();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    assert!(page.body.contains("<label for=\"token\">API token</label>"));

    let (session, _) = sign_in(&server, ADMIN_TOKEN, &[]);
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(!session.contains("Secure"));
    assert!(!session.contains(ADMIN_TOKEN));
    // Behind a TLS-terminating proxy the cookie is Secure.
    let (secure, _) = sign_in(&server, ADMIN_TOKEN, &[("X-Forwarded-Proto", "https")]);
    assert!(secure.contains("; Secure"), "{secure}");
    assert!(!server.log().contains(ADMIN_TOKEN));
}

#[test]
fn a_post_without_its_csrf_token_is_refused_and_changes_nothing() {
    let server = TestServer::start();
    let (session, csrf) = sign_in(&server, ADMIN_TOKEN, &[]);
    let form = "name=forged&type=docker&registry=registry.example.com&username=me&password=pw";
    for (body, headers) in [
        (form.to_owned(), vec![]),
        (format!("csrf=not-the-token&{form}"), vec![]),
        (
            format!("csrf={csrf}&{form}"),
            vec![("Origin", "https://evil.example")],
        ),
    ] {
        let answer = request(
            &server,
            "POST",
            "/console/workspaces/~admin/credentials",
            &[pair(&session)],
            &headers,
            Some(&body),
        );
        assert_eq!(answer.status, 403, "{body}");
        assert!(answer
            .body
            .contains("This form has expired or did not come from regkeeper"));
    }
    let listed: wire::CredentialList = server
        .admin()
        .get("/api/v1/workspaces/%7Eadmin/credentials")
        .unwrap();
    assert!(listed.credentials.is_empty());
}

#[test]
fn a_viewer_sees_credentials_but_no_controls() {
    let (server, admin) = started_with_credential(
        "acme/ci",
        ["mirror", "registry.example.com", "viewer-canary-secret"],
    );
    let token = user(&admin, "viewer");
    member(&admin, "acme/ci", "viewer", "view");
    let (session, _) = sign_in(&server, &token, &[]);
    let cookies = [pair(&session)];
    let workspaces = request(&server, "GET", "/console/workspaces", &cookies, &[], None);
    assert!(workspaces
        .body
        .contains("href=\"/console/workspaces/acme%2Fci/credentials\">acme/ci</a>"));
    let list = request(
        &server,
        "GET",
        "/console/workspaces/acme%2Fci/credentials",
        &cookies,
        &[],
        None,
    );
    assert_eq!(list.status, 200);
    assert!(list.body.contains("<h1>Credentials in acme/ci</h1>"));
    assert!(list.body.contains(">mirror</a>"));
    assert!(list.body.contains("skipped"));
    assert!(!list.body.contains("Add credentials"));
    assert!(!list.body.contains("viewer-canary-secret"));
    let shown = request(
        &server,
        "GET",
        "/console/workspaces/acme%2Fci/credentials/mirror",
        &cookies,
        &[],
        None,
    );
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains("<h1>mirror</h1>"));
    assert!(!shown.body.contains(">Verify</button>"));
    assert!(!shown.body.contains(">Delete</a>"));
    // The add form itself says why not.
    let add = request(
        &server,
        "GET",
        "/console/workspaces/acme%2Fci/credentials/new",
        &cookies,
        &[],
        None,
    );
    assert_eq!(add.status, 403);
    assert!(add.body.contains("role=\"alert\""));
    assert!(add.body.contains("maintain or higher"), "{}", add.body);
}

/// Issue 12 item 17: a disabled, or deleted, user's console session ends on their
/// very next request (the session's API token is revoked with the user).
#[test]
fn a_disabled_or_deleted_users_console_session_ends_at_once() {
    let server = TestServer::start();
    let admin = server.admin();
    let mut sessions = Vec::new();
    for name in ["gina", "hank"] {
        let (session, _) = sign_in(&server, &user(&admin, name), &[]);
        sessions.push(pair(&session));
    }
    let _: wire::UserDisabled = admin
        .post("/api/v1/users/gina/disable", &serde_json::json!({}))
        .unwrap();
    let _: wire::UserDeleted = admin.delete_for("/api/v1/users/hank?confirm=true").unwrap();
    for session in sessions {
        let page = request(&server, "GET", "/console/workspaces", &[session], &[], None);
        assert_eq!(
            (page.status, page.location.as_deref()),
            (303, Some("/console/")),
            "{}",
            page.body
        );
    }
}
