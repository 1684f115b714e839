//! Single sign-on (issue 13 §4) against a real server and a real OIDC provider
//! (oauth2-mock-server over HTTPS with the test CA, whose /authorize redirects back with
//! a code and no login page). The test plays the browser over HTTP: it follows the
//! console's redirect to the provider, picks the person (and forges `aud` or `nonce`)
//! with the provider's `claims` parameter, and brings the code back with the cookies a
//! browser would send. `regkeeper login` is run as a person would, the test opening
//! the address it prints.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use regkeeper_wire as wire;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};

use super::peers::identity_provider::IdentityProvider;
use super::peers::tls::TestCa;
use super::support::{binary, ok, ServerOptions, TestServer, ADMIN_TOKEN};

const CLIENT_ID: &str = "regkeeper-console";
/// Unique, so that finding it anywhere it must not be is never a coincidence.
const CLIENT_SECRET: &str = "sso-canary-client-secret-5be1d0";

struct Setup {
    _ca: TestCa,
    provider: IdentityProvider,
    server: TestServer,
    /// Follows no redirect, trusts the test CA: the browser, one step at a time.
    browser: reqwest::Client,
}

/// A provider demanding the client secret, and a server signing in through it.
async fn start(extra: &[(&str, &str)]) -> Option<Setup> {
    start_on(None, extra).await
}

async fn start_on(database_url: Option<String>, extra: &[(&str, &str)]) -> Option<Setup> {
    let ca = TestCa::generate();
    let mut provider = IdentityProvider::start(&ca, "sso-key")?;
    provider.require_client(CLIENT_ID, CLIENT_SECRET);
    let secret_file = ca.directory().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let mut environment = vec![
        (
            "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".to_owned(),
            "127.0.0.0/8".to_owned(),
        ),
        (
            "REGKEEPER_OUTBOUND_CA_FILE".to_owned(),
            ca.ca_file().display().to_string(),
        ),
        ("REGKEEPER_OIDC_ISSUER".to_owned(), provider.issuer.clone()),
        ("REGKEEPER_OIDC_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
        (
            "REGKEEPER_OIDC_CLIENT_SECRET_FILE".to_owned(),
            secret_file.display().to_string(),
        ),
    ];
    environment.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    let server = TestServer::start_with(ServerOptions {
        environment,
        database_url,
        ..ServerOptions::default()
    });
    let ca_pem = std::fs::read(ca.ca_file()).unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .build()
        .unwrap();
    Some(Setup {
        _ca: ca,
        provider,
        server,
        browser,
    })
}

/// `name=value` of each `Set-Cookie`, and the whole header by name.
fn cookies(response: &reqwest::Response) -> HashMap<String, (String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|header| {
            let pair = header.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), (value.to_owned(), header.to_owned())))
        })
        .collect()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

/// What came back to the console's callback: its status, page, and cookies.
struct Returned {
    status: u16,
    page: String,
    cookies: HashMap<String, (String, String)>,
}

impl Setup {
    /// Starts a console sign-in and walks it to the callback as a browser would, with
    /// the provider naming the person by `claims`; `tamper` may change the callback URL.
    async fn console_sign_in(&self, claims: &Value, tamper: &dyn Fn(String) -> String) -> Returned {
        let start = self
            .browser
            .get(format!("{}/console/sign-in/sso", self.server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 303);
        let pending = cookies(&start)
            .remove("regkeeper_sso")
            .expect("the pending sign-in's cookie");
        assert!(
            pending.1.contains("HttpOnly") && pending.1.contains("SameSite=Lax"),
            "{}",
            pending.1
        );
        let authorize = location(&start);
        assert!(authorize.starts_with(&format!("{}/authorize?", self.provider.issuer)));
        for part in [
            "code_challenge_method=S256",
            "state=",
            "nonce=",
            "scope=openid",
        ] {
            assert!(authorize.contains(part), "{authorize} lacks {part}");
        }
        let mut authorize = reqwest::Url::parse(&authorize).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("claims", &claims.to_string());
        let provider = self.browser.get(authorize).send().await.unwrap();
        assert_eq!(provider.status(), 302);
        let callback = tamper(location(&provider));
        assert!(callback.starts_with(&format!(
            "{}/console/sign-in/sso/callback?",
            self.server.url
        )));
        let answer = self
            .browser
            .get(callback)
            .header(COOKIE, format!("regkeeper_sso={}", pending.0))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let cookies = cookies(&answer);
        Returned {
            status,
            page: answer.text().await.unwrap(),
            cookies,
        }
    }

    async fn console_get(&self, path: &str, session: &str) -> reqwest::Response {
        self.browser
            .get(format!("{}{path}", self.server.url))
            .header(COOKIE, format!("regkeeper_session={session}"))
            .send()
            .await
            .unwrap()
    }

    /// The console's workspace list, as the session a sign-in returned sees it.
    async fn workspaces_page(&self, signed_in: &Returned) -> String {
        let (session, _) = &signed_in.cookies["regkeeper_session"];
        self.console_get("/console/workspaces", session)
            .await
            .text()
            .await
            .unwrap()
    }

    fn audit(&self) -> Vec<wire::AuditEntry> {
        let list: wire::AuditList = self.server.admin().get("/api/v1/audit?limit=500").unwrap();
        list.entries
    }

    /// Runs `regkeeper users COMMAND NAME` as the admin, which must succeed.
    fn users(&self, command: &str, name: &str) {
        ok(&self
            .server
            .cli(ADMIN_TOKEN, &["users", command, name], None));
    }

    /// Signs in as `console_sign_in` does and asserts it is refused: no session, the
    /// page says `expected`, and a refusal with `reason` is audited.
    async fn assert_sign_in_refused(
        &self,
        claims: &Value,
        tamper: &dyn Fn(String) -> String,
        status: u16,
        expected: &str,
        reason: &str,
    ) {
        let returned = self.console_sign_in(claims, tamper).await;
        assert_eq!(returned.status, status, "{}", returned.page);
        assert!(returned.page.contains(expected), "{}", returned.page);
        assert!(!returned.cookies.contains_key("regkeeper_session"));
        assert!(self
            .audit()
            .iter()
            .any(|entry| entry.action == "auth.sso_sign_in"
                && entry.outcome == "denied"
                && entry.detail["reason"] == reason));
    }
}

fn no_tamper(url: String) -> String {
    url
}

/// Issue 13 item 4: "Sign in with SSO" signs alice in through the provider (code flow
/// with PKCE, the client secret sent to the token endpoint), her session works like a
/// token session, the sign-in is audited, and signing out revokes the session's token.
#[tokio::test(flavor = "multi_thread")]
async fn sso_signs_a_person_in_to_the_console_and_out_again() {
    let Some(setup) = start(&[]).await else {
        return;
    };
    setup.users("create", "alice");
    let page = reqwest::get(format!("{}/console/", setup.server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with SSO") && page.contains("name=\"token\""));

    let returned = setup
        .console_sign_in(
            &json!({"preferred_username": "Alice", "email": "x@example.com"}),
            &no_tamper,
        )
        .await;
    assert_eq!(returned.status, 200, "{}", returned.page);
    assert!(returned.page.contains("alice"), "{}", returned.page);
    let (session, header) = returned.cookies["regkeeper_session"].clone();
    assert!(header.contains("SameSite=Strict") && header.contains("HttpOnly"));
    assert!(returned.cookies["regkeeper_sso"].1.contains("Max-Age=0"));

    let workspaces = setup.console_get("/console/workspaces", &session).await;
    assert_eq!(workspaces.status(), 200);
    let page = workspaces.text().await.unwrap();
    assert!(
        page.contains("Signed in as <strong>alice</strong>"),
        "{page}"
    );
    assert!(page.contains("~alice"));

    let audit = setup.audit();
    let entry = audit
        .iter()
        .find(|entry| entry.action == "auth.sso_sign_in" && entry.outcome == "success")
        .expect("the sign-in is audited");
    assert_eq!(entry.actor, "alice");
    assert_eq!(entry.detail["client"], "console");
    let tokens: wire::ApiTokenList = setup
        .server
        .admin()
        .get("/api/v1/users/alice/tokens")
        .unwrap();
    let sso_token = tokens
        .tokens
        .iter()
        .find(|token| token.name == "sso: console")
        .expect("the session's token");
    assert!(sso_token.expires_at.is_some());

    // Signing out revokes the token: a copied cookie is dead everywhere.
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let out = setup
        .browser
        .post(format!("{}/console/sign-out", setup.server.url))
        .header(COOKIE, format!("regkeeper_session={session}"))
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let tokens: wire::ApiTokenList = setup
        .server
        .admin()
        .get("/api/v1/users/alice/tokens")
        .unwrap();
    assert!(tokens
        .tokens
        .iter()
        .any(|token| token.id == sso_token.id && token.revoked_at.is_some()));
    let log = setup.server.log();
    assert!(!log.contains(CLIENT_SECRET), "the client secret was logged");
}

/// Issue 13 item 4: an answer whose `state` is not the browser's own is refused.
#[tokio::test(flavor = "multi_thread")]
async fn sso_refuses_a_state_mismatch() {
    let Some(setup) = start(&[]).await else {
        return;
    };
    setup.users("create", "alice");
    let swap_state = |url: String| {
        let mut url = reqwest::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if name == "state" {
                    "forged-state-forged-state-forged-state-0000".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    };
    setup
        .assert_sign_in_refused(
            &json!({"preferred_username": "alice"}),
            &swap_state,
            400,
            "(state)",
            "state_mismatch",
        )
        .await;
}

/// Issue 13 item 4: an ID token carrying another sign-in's nonce, or issued for
/// another client, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn sso_refuses_a_foreign_nonce_or_audience() {
    let Some(setup) = start(&[]).await else {
        return;
    };
    setup.users("create", "alice");
    for (claims, expected) in [
        (
            json!({"preferred_username": "alice", "nonce": "another-sign-in"}),
            "nonce",
        ),
        (
            json!({"preferred_username": "alice", "aud": "some-other-client"}),
            "audience",
        ),
    ] {
        setup
            .assert_sign_in_refused(&claims, &no_tamper, 401, expected, "id_token_rejected")
            .await;
    }
}

/// Issue 13 item 4: a person regkeeper does not know, or whose user is disabled, is
/// refused with a page saying so.
#[tokio::test(flavor = "multi_thread")]
async fn sso_refuses_unknown_and_disabled_users() {
    let Some(setup) = start(&[]).await else {
        return;
    };
    setup
        .assert_sign_in_refused(
            &json!({"preferred_username": "mallory"}),
            &no_tamper,
            403,
            "No regkeeper user is named `mallory`",
            "unknown_user",
        )
        .await;
    assert!(setup
        .audit()
        .iter()
        .any(|entry| entry.actor == format!("oidc:{}#johndoe", setup.provider.issuer)));
    setup.users("create", "bob");
    setup.users("disable", "bob");
    setup
        .assert_sign_in_refused(
            &json!({"preferred_username": "bob"}),
            &no_tamper,
            403,
            "is disabled",
            "user_disabled",
        )
        .await;
}

/// Issue 13 item 4: with `REGKEEPER_OIDC_AUTO_CREATE=true` a new person becomes a user
/// with a personal workspace; with `REGKEEPER_CONSOLE_TOKEN_SIGN_IN=false` the console
/// offers and accepts only single sign-on; `REGKEEPER_OIDC_USERNAME_CLAIM` picks the
/// claim.
#[tokio::test(flavor = "multi_thread")]
async fn sso_auto_creates_users_and_can_replace_token_sign_in() {
    let Some(setup) = start(&[
        ("REGKEEPER_OIDC_AUTO_CREATE", "true"),
        ("REGKEEPER_CONSOLE_TOKEN_SIGN_IN", "false"),
        ("REGKEEPER_OIDC_USERNAME_CLAIM", "login"),
    ])
    .await
    else {
        return;
    };
    let sign_in = reqwest::get(format!("{}/console/", setup.server.url))
        .await
        .unwrap();
    let csrf = cookies(&sign_in)["regkeeper_csrf"].0.clone();
    let page = sign_in.text().await.unwrap();
    assert!(
        page.contains("Sign in with SSO") && !page.contains("name=\"token\""),
        "{page}"
    );
    let refused = setup
        .browser
        .post(format!("{}/console/sign-in", setup.server.url))
        .header(COOKIE, format!("regkeeper_csrf={csrf}"))
        .form(&[("csrf", csrf.as_str()), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = refused.text().await.unwrap();
    assert!(refused.contains("turned off"), "{refused}");

    let returned = setup
        .console_sign_in(
            &json!({"login": "newcomer", "preferred_username": "ignored"}),
            &no_tamper,
        )
        .await;
    assert_eq!(returned.status, 200, "{}", returned.page);
    let users: wire::UserList = setup.server.admin().get("/api/v1/users").unwrap();
    assert!(users
        .users
        .iter()
        .any(|user| user.name == "newcomer" && !user.admin));
    assert!(!users.users.iter().any(|user| user.name == "ignored"));
    let page = setup.workspaces_page(&returned).await;
    assert!(page.contains("~newcomer"), "{page}");
    assert!(setup
        .audit()
        .iter()
        .any(|entry| entry.action == "user.create"
            && entry.target.as_deref() == Some("newcomer")
            && entry.actor.starts_with("oidc:")));
}

/// Issue 13 item 4: `regkeeper login` without `--role` signs a person in through the
/// provider over a loopback redirect and saves a short-lived token (0600) that works.
#[tokio::test(flavor = "multi_thread")]
async fn regkeeper_login_signs_a_person_in_through_the_browser() {
    let Some(mut setup) = start(&[]).await else {
        return;
    };
    setup.users("create", "carol");
    setup
        .provider
        .set_login(&json!({"preferred_username": "carol"}));
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["login", "--no-browser"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("REGKEEPER_URL", &setup.server.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.trim()
                .starts_with("https://")
                .then(|| line.trim().to_owned())
        })
        .expect("the sign-in address");
    assert!(
        url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    let provider = setup.browser.get(&url).send().await.unwrap();
    assert_eq!(provider.status(), 302);
    let callback = location(&provider);
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let page = setup.browser.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("You can close this tab"));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|line| line.contains("Signed in as carol")),
        "{rest:?}"
    );

    let settings = home.path().join(".config/regkeeper/config.toml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&settings).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&settings).unwrap();
    let token = text
        .lines()
        .find_map(|line| line.strip_prefix("token = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let me: Value = setup.server.client(&token).get("/api/v1/me").unwrap();
    assert_eq!(me["user"], "carol", "{me}");
    let tokens: wire::ApiTokenList = setup
        .server
        .admin()
        .get("/api/v1/users/carol/tokens")
        .unwrap();
    assert!(tokens
        .tokens
        .iter()
        .any(|token| token.name == "sso: regkeeper login" && token.expires_at.is_some()));
    assert!(!rest.join("\n").contains(&token), "the token was printed");
    // Neither the client secret nor the issued token is kept or shown anywhere else.
    let audit = serde_json::to_string(&setup.audit()).unwrap();
    let log = setup.server.log();
    for secret in [CLIENT_SECRET, token.as_str()] {
        assert!(!log.contains(secret) && !audit.contains(secret));
        for (path, bytes) in super::support::files_under(&setup.server.data_dir) {
            assert!(
                !super::support::contains(&bytes, secret),
                "{} holds a secret",
                path.display()
            );
        }
    }

    // The server refuses a redirect that is not the CLI's loopback listener.
    let (status, body) = super::support::raw(
        &setup.server,
        "POST",
        "/api/v1/oidc/login/start",
        None,
        Some("application/json"),
        Some(
            json!({"redirectUri": "https://evil.example.com/", "state": "s".repeat(20),
                "nonce": "n".repeat(20), "codeChallenge": "c".repeat(43)})
            .to_string()
            .as_bytes(),
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_redirect_uri"));
    let (_, openapi) = super::support::raw(
        &setup.server,
        "GET",
        "/api/v1/openapi.json",
        None,
        None,
        None,
    );
    assert!(
        openapi.contains("/api/v1/oidc/login/start") && openapi.contains("\"/api/v1/oidc/login\"")
    );
}

/// Issue 13 item 4: "Sign in with SSO" in Chromium (playwright-core): the console, the
/// provider and back, landing signed in; signing out ends the session.
#[tokio::test(flavor = "multi_thread")]
async fn sso_in_a_real_browser() {
    use std::path::Path;
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !super::peers::process::available(Path::new("/usr/bin/chromium"), "Debian package chromium")
        || !super::peers::process::available(
            &browser.join("node_modules/playwright-core/package.json"),
            "npm ci --prefix crates/server/tests/browser",
        )
    {
        return;
    }
    let Some(mut setup) = start(&[]).await else {
        return;
    };
    setup.users("create", "dana");
    setup
        .provider
        .set_login(&json!({"preferred_username": "dana"}));
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let home = tempfile::tempdir().unwrap();
    let output = Command::new("/usr/bin/node")
        .arg(browser.join("sso.mjs"))
        .current_dir(&browser)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CONSOLE_URL", &setup.server.url)
        .env("USER_NAME", "dana")
        .env("SCREENSHOT", artifacts.join("sso-signed-in.png"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{printed}\n--- server log ---\n{}",
        setup.server.log()
    );
    assert!(printed.contains("all steps passed"), "{printed}");
    assert!(!setup.server.log().contains(CLIENT_SECRET));
}

/// Issue 13 item 4: on PostgreSQL too, a first sign-in creates the user, their personal
/// workspace and their token together, and a known user signs in.
#[tokio::test(flavor = "multi_thread")]
async fn sso_auto_creates_users_on_postgres() {
    let Some(database) = tokio::task::spawn_blocking(super::support::PostgresDatabase::create)
        .await
        .unwrap()
    else {
        return;
    };
    let Some(setup) = start_on(
        Some(database.url.clone()),
        &[("REGKEEPER_OIDC_AUTO_CREATE", "true")],
    )
    .await
    else {
        return;
    };
    let returned = setup
        .console_sign_in(&json!({"preferred_username": "erin"}), &no_tamper)
        .await;
    assert_eq!(returned.status, 200, "{}", returned.page);
    let again = setup
        .console_sign_in(&json!({"preferred_username": "erin"}), &no_tamper)
        .await;
    assert_eq!(again.status, 200, "{}", again.page);
    let tokens: wire::ApiTokenList = setup
        .server
        .admin()
        .get("/api/v1/users/erin/tokens")
        .unwrap();
    assert_eq!(
        tokens
            .tokens
            .iter()
            .filter(|token| token.name == "sso: console")
            .count(),
        2
    );
    let page = setup.workspaces_page(&again).await;
    assert!(page.contains("~erin"), "{page}");
}
