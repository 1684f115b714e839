//! The audit log as people read it, against the real binary (issue 12 items 14 and
//! 16): a rejected name cannot forge a row of `audit list` or of the console's audit
//! page; a resolve that finds nothing is `not_found`, not `denied`; a removed member's
//! and an outsider's refused pulls show in the workspace's own view; every time has
//! exactly milliseconds; the console's page shows full times and each entry's reason.

use std::time::Duration;

use base64::Engine;
use regex::Regex;
use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::console_http::{pair, request, sign_in};
use super::grants::{credential, member, user, workspace};
use super::support::{ok, raw, ServerOptions, TestServer, ADMIN_TOKEN};

/// A name that, printed raw, ends its row and prints a fake, green, reordered one.
const FORGED_NAME: &str = "x\n999  2026-01-01T00:00:00.000Z  admin  credential.delete  ~admin  prod  success\u{1b}[32m\u{202e}\0";
/// The same, as `audit list` and the console must show it: one escaped cell.
const FORGED_SHOWN: &str = "x\\n999  2026-01-01T00:00:00.000Z  admin  credential.delete  ~admin  prod  success\\u{1b}[32m\\u{202e}\\0";

fn audit_json(server: &TestServer, workspace: Option<&str>) -> wire::AuditList {
    let mut args = vec!["audit", "list", "--limit", "1000", "--output", "json"];
    if let Some(workspace) = workspace {
        args.extend(["--workspace", workspace]);
    }
    serde_json::from_str(&ok(&server.cli(ADMIN_TOKEN, &args, None))).unwrap()
}

/// The console's audit page of `workspace`, signed in as the bootstrap admin.
fn console_audit_page(server: &TestServer, workspace: &str) -> String {
    let (session, _) = sign_in(server, ADMIN_TOKEN, &[]);
    let page = request(
        server,
        "GET",
        &format!("/console/workspaces/{}/audit", segment(workspace)),
        &[pair(&session)],
        &[],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

/// POSTs `body` unchanged to the admin's personal credentials: these tests send the
/// forged values byte for byte, as a hostile client would, not through our client.
fn post_admin_credential(server: &TestServer, body: &serde_json::Value) -> (u16, String) {
    raw(
        server,
        "POST",
        "/api/v1/workspaces/%7Eadmin/credentials",
        Some(ADMIN_TOKEN),
        Some("application/json"),
        Some(body.to_string().as_bytes()),
    )
}

/// Issue 12 item 14: a credential name with a newline, ANSI escapes, U+202E and NUL
/// is refused and audited exactly (JSON), but `audit list` prints it as one escaped
/// line and the console's audit page shows the escaped form.
#[test]
fn a_rejected_name_cannot_forge_audit_rows_or_colour_the_terminal() {
    let server = TestServer::start();
    let body = serde_json::json!({
        "name": FORGED_NAME,
        "registry": "registry.example.com",
        "username": "robot",
        "password": "not-a-secret",
        "verify": false,
    });
    let (status, answer) = post_admin_credential(&server, &body);
    assert_eq!(status, 400, "{answer}");

    // JSON stays exact: the entry holds the name as it was sent.
    let entries = audit_json(&server, None).entries;
    let attempt = entries
        .iter()
        .find(|entry| entry.action == "credential.create")
        .expect("the refused create is audited");
    assert_eq!(attempt.target.as_deref(), Some(FORGED_NAME));
    assert_eq!(attempt.outcome, "failed");

    let table = ok(&server.cli(ADMIN_TOKEN, &["audit", "list"], None));
    assert!(
        !table.contains(['\u{1b}', '\u{202e}', '\0']),
        "raw control or bidi characters in:\n{table}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        entries.len() + 1,
        "one line per entry:\n{table}"
    );
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|line| line.contains("credential.create"))
        .collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(rows[0].contains(FORGED_SHOWN), "{table}");
    assert!(
        !lines.iter().any(|line| line.starts_with("999")),
        "a forged row:\n{table}"
    );

    let page = console_audit_page(&server, "~admin");
    assert!(!page.contains(['\u{1b}', '\u{202e}', '\0']), "{page}");
    assert!(page.contains(&format!("<td>{FORGED_SHOWN}</td>")), "{page}");
}

/// Issue 12 item 14, for tables other than the audit log's: a stored user name (which
/// regkeeper keeps as given) holding a newline, ANSI escapes, U+202E and NUL is one
/// escaped cell in `credentials list`, one escaped value in `credentials show` and on
/// the console's credential page, and exact in JSON and in the console's edit form.
#[test]
fn a_stored_user_name_cannot_forge_credential_rows() {
    let server = TestServer::start();
    let body = serde_json::json!({
        "name": "mirror",
        "registry": "registry.example.com",
        "username": FORGED_NAME,
        "password": "not-a-secret",
        "verify": false,
    });
    let (status, answer) = post_admin_credential(&server, &body);
    assert_eq!(status, 201, "{answer}");

    let list = ok(&server.cli(ADMIN_TOKEN, &["credentials", "list"], None));
    assert_eq!(list.lines().count(), 2, "a header and one row:\n{list}");
    assert!(
        list.lines().nth(1).unwrap().contains(FORGED_SHOWN),
        "{list}"
    );
    let show = ok(&server.cli(ADMIN_TOKEN, &["credentials", "show", "mirror"], None));
    assert!(
        show.contains(&format!("Username     {FORGED_SHOWN}\n")),
        "{show}"
    );
    for text in [&list, &show] {
        assert!(!text.contains(['\u{1b}', '\u{202e}', '\0']), "{text}");
    }
    let json = ok(&server.cli(
        ADMIN_TOKEN,
        &["credentials", "show", "mirror", "--output", "json"],
        None,
    ));
    let shown: wire::Credential = serde_json::from_str(&json).unwrap();
    assert_eq!(shown.username.as_deref(), Some(FORGED_NAME));

    let (session, _) = sign_in(&server, ADMIN_TOKEN, &[]);
    let page = request(
        &server,
        "GET",
        "/console/workspaces/%7Eadmin/credentials/mirror",
        &[pair(&session)],
        &[],
        None,
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("<dd>{FORGED_SHOWN}</dd>")),
        "{}",
        page.body
    );
    assert!(!page.body.contains(['\u{1b}', '\u{202e}', '\0']));
    // A form posts its values back, so they stay exact (maud escapes the markup).
    let edit = request(
        &server,
        "GET",
        "/console/workspaces/%7Eadmin/credentials/mirror/edit",
        &[pair(&session)],
        &[],
        None,
    );
    assert_eq!(edit.status, 200);
    assert!(edit.body.contains(FORGED_NAME), "{}", edit.body);
}

fn resolve_status(client: &Client, workspace: &str, image: &str) -> u16 {
    let path = format!("/api/v1/workspaces/{}/resolve", segment(workspace));
    let input = wire::ResolveInput {
        image: Some(image.into()),
        ..wire::ResolveInput::default()
    };
    match client.post::<_, wire::Resolved>(&path, &input) {
        Ok(_) => 200,
        Err(error) => error.status().expect("an HTTP answer"),
    }
}

/// A pull through the proxy with `token`, naming `workspace` as the Basic user name.
fn proxy_pull_status(server: &TestServer, workspace: &str, token: &str, path: &str) -> u16 {
    let proxy = server.proxy_url.as_deref().expect("the proxy listens");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{workspace}:{token}"));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    match agent
        .get(&format!("{proxy}/v2/{path}"))
        .set("Authorization", &format!("Basic {basic}"))
        .call()
    {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(status, _)) => status,
        Err(error) => panic!("proxy request failed: {error}"),
    }
}

/// Issue 12 item 16 (a), (b) and (d): a resolve that finds nothing is `not_found`; a
/// removed member's refused resolve and proxy pull, and an outsider's, are `denied`
/// and listed in the workspace's own log (`audit list --workspace`, the console's
/// page) with their reason; the page shows full times in UTC.
#[test]
fn misses_and_refusals_are_told_apart_and_shown_to_the_workspace() {
    let server = TestServer::start_with(ServerOptions {
        environment: vec![("REGKEEPER_PROXY_LISTEN".into(), "127.0.0.1:0".into())],
        ..ServerOptions::default()
    });
    let admin = server.admin();
    workspace(&admin, "acme/ci");
    credential(
        &admin,
        "acme/ci",
        "mirror",
        "registry.example.com",
        "audit-gaps-password",
    );
    let bob_token = user(&admin, "bob");
    let carol_token = user(&admin, "carol");
    member(&admin, "acme/ci", "bob", "launch");
    let bob = server.client(&bob_token);
    let carol = server.client(&carol_token);

    assert_eq!(
        resolve_status(&bob, "acme/ci", "registry.example.com/team/app:1"),
        200
    );
    assert_eq!(
        resolve_status(&bob, "acme/ci", "other.example.com/team/app:1"),
        404
    );
    admin
        .delete(&format!(
            "/api/v1/workspaces/{}/members/bob",
            segment("acme/ci")
        ))
        .unwrap();
    assert_eq!(
        resolve_status(&bob, "acme/ci", "registry.example.com/team/app:2"),
        404
    );
    assert_eq!(
        proxy_pull_status(
            &server,
            "acme/ci",
            &bob_token,
            "registry.example.com/team/app/manifests/3"
        ),
        404
    );
    assert_eq!(
        resolve_status(&carol, "acme/ci", "registry.example.com/team/app:4"),
        404
    );

    let entries = audit_json(&server, Some("acme/ci")).entries;
    let find = |actor: &str, action: &str, target: &str| {
        entries
            .iter()
            .find(|entry| {
                entry.actor == actor
                    && entry.action == action
                    && entry.target.as_deref() == Some(target)
            })
            .unwrap_or_else(|| panic!("no {actor} {action} {target} in {entries:#?}"))
    };
    assert_eq!(
        find("bob", "credential.resolve", "mirror").outcome,
        "success"
    );
    let miss = find("bob", "credential.resolve", "other.example.com/team/app:1");
    assert_eq!(miss.outcome, "not_found");
    assert_eq!(miss.detail["error"], "not_found");
    assert_eq!(
        miss.detail["reason"],
        "credential for other.example.com/team/app in acme/ci not found"
    );
    let removed = find(
        "bob",
        "credential.resolve",
        "registry.example.com/team/app:2",
    );
    assert_eq!(removed.outcome, "denied");
    assert_eq!(
        removed.detail["reason"],
        "workspace acme/ci is not visible to the caller"
    );
    let pulled = find("bob", "proxy.pull", "registry.example.com/team/app");
    assert_eq!(pulled.outcome, "denied");
    let outsider = find(
        "carol",
        "credential.resolve",
        "registry.example.com/team/app:4",
    );
    assert_eq!(outsider.outcome, "denied");

    // The table has the reason too.
    let table = ok(&server.cli(
        ADMIN_TOKEN,
        &["audit", "list", "--workspace", "acme/ci"],
        None,
    ));
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("OUTCOME    DETAIL"), "{header}");
    let row = table
        .lines()
        .find(|line| line.contains("proxy.pull"))
        .unwrap_or_else(|| panic!("no proxy.pull in\n{table}"));
    assert!(
        row.contains("denied     workspace acme/ci is not visible to the caller, error=not_found"),
        "{row}"
    );
    assert!(table.lines().any(|line| line
        .contains("not_found  credential for other.example.com/team/app in acme/ci not found")));

    let page = console_audit_page(&server, "acme/ci");
    assert!(
        page.contains("<th scope=\"col\">Reason and detail</th>"),
        "{page}"
    );
    assert!(page.contains("<td>proxy.pull</td>"), "{page}");
    assert!(
        page.contains("<td>workspace acme/ci is not visible to the caller, error=not_found</td>")
    );
    assert!(page.contains("outcome-not_found"));
    let full_time = Regex::new(
        r#"<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC</time>"#,
    )
    .unwrap();
    assert_eq!(
        full_time.find_iter(&page).count(),
        entries.len(),
        "every entry with its full time:\n{page}"
    );
}

/// Issue 12 item 16 (c): every time the REST API and the CLI show has exactly three
/// fractional digits (`.200Z`, never `.2Z` or none), so they line up and sort as text.
#[test]
fn every_time_has_exactly_milliseconds() {
    let server = TestServer::start();
    let milliseconds = Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    // Enough entries that some fall on a whole ten or hundred milliseconds.
    for index in 0..30 {
        ok(&server.cli(
            ADMIN_TOKEN,
            &[
                "tokens",
                "create",
                "--name",
                &format!("t{index}"),
                "--output",
                "json",
            ],
            None,
        ));
    }
    let entries = audit_json(&server, None).entries;
    assert!(entries.len() > 30);
    for entry in &entries {
        assert!(milliseconds.is_match(&entry.at), "{}", entry.at);
    }
    let tokens: wire::ApiTokenList = server.admin().get("/api/v1/tokens").unwrap();
    for token in &tokens.tokens {
        assert!(
            milliseconds.is_match(&token.created_at),
            "{}",
            token.created_at
        );
    }
    let table = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--limit", "1000"], None));
    for line in table.lines().skip(1) {
        let at = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(milliseconds.is_match(at), "{line}");
    }
}
