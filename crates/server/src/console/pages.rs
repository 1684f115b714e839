//! The console's HTML, rendered with maud (which escapes every spliced value): the
//! shared layout and one function per page. No logic beyond presentation; handlers
//! gather the data.

use maud::{html, Markup, DOCTYPE};

use crate::audit::AuditRow;
use crate::clock::format_timestamp;
use crate::domain::credential::{AuthMethod, Credential, TokenState, VerificationStatus};
use crate::domain::identity::Role;
use crate::domain::sync_target::SyncTarget;
use crate::store::WorkspaceRow;

use super::paths;
use super::session::{Flash, FlashKind};

mod credential_form;

pub use credential_form::{credential_form, FormPage};

/// What every signed-in page needs for its header.
pub struct Shell<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
}

/// The text of a refused POST (a missing or wrong CSRF token, or another origin).
pub const REFUSED_MESSAGE: &str =
    "This form has expired or did not come from regkeeper; reload the page and try again.";

fn layout(
    title: &str,
    shell: Option<&Shell<'_>>,
    notice: Option<&Flash>,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · regkeeper" }
                link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                a class="skip-link" href="#main" { "Skip to main content" }
                header class="site" {
                    a class="brand" href="/console/" { "regkeeper" }
                    @if let Some(shell) = shell {
                        nav aria-label="Main" {
                            a href="/console/workspaces" { "Workspaces" }
                        }
                        div class="account" {
                            span { "Signed in as " strong { (shell.user) } }
                            form method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(shell.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    @if let Some(notice) = notice {
                        (message(notice))
                    }
                    (content)
                }
            }
        }
    }
}

/// The way back up: the workspace picker, then the workspace's credentials.
fn breadcrumb(workspace: &str) -> Markup {
    html! {
        nav class="breadcrumb" aria-label="Breadcrumb" {
            a href="/console/workspaces" { "Workspaces" }
            " / "
            a href=(paths::credentials(workspace)) { (workspace) }
        }
    }
}

/// A success in `role="status"`, a failure in `role="alert"`.
pub fn message(flash: &Flash) -> Markup {
    match flash.kind {
        FlashKind::Status => html! { p role="status" class="notice success" { (flash.message) } },
        FlashKind::Alert => html! { p role="alert" class="notice failure" { (flash.message) } },
    }
}

/// The ways the sign-in page offers (`REGKEEPER_OIDC_*`, `REGKEEPER_CONSOLE_TOKEN_SIGN_IN`).
#[derive(Debug, Clone, Copy)]
pub struct SignInMethods {
    pub single_sign_on: bool,
    pub token: bool,
}

pub fn sign_in(csrf: &str, notice: Option<&Flash>, methods: SignInMethods) -> Markup {
    layout(
        "Sign in",
        None,
        notice,
        html! {
            h1 { "Sign in" }
            @if methods.single_sign_on {
                p { "Sign in with your organisation's account." }
                // A link, not a form: starting a sign-in changes nothing, and the
                // browser must follow it to the identity provider.
                p { a class="button" href="/console/sign-in/sso" { "Sign in with SSO" } }
            }
            @if methods.token {
                @if methods.single_sign_on {
                    h2 { "Or with an API token" }
                }
                p { "Sign in with your regkeeper API token (it starts with " code { "rk_" } "). "
                    "The server prints the first administrator's token when it starts; "
                    "others come from " code { "regkeeper users create" } " or "
                    code { "regkeeper tokens create" } "." }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(csrf);
                    div class="field" {
                        label for="token" { "API token" }
                        input id="token" name="token" type="password" autocomplete="off" required
                            aria-describedby="token-hint";
                        p class="hint" id="token-hint" {
                            "Kept encrypted in a cookie for at most 12 hours, never shown again."
                        }
                    }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// The page after a single sign-on: it moves on to the workspaces itself, because the
/// session cookie is `SameSite=Strict` and a browser withholds it from a redirect
/// chain that began at the identity provider; a navigation this page starts is the
/// console's own.
pub fn signed_in(user: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="0; url=/console/workspaces";
                title { "Signed in · regkeeper" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                main id="main" {
                    h1 { "Signed in" }
                    p { "You are signed in as " strong { (user) } ". "
                        a href="/console/workspaces" { "Continue to your workspaces" } "." }
                }
            }
        }
    }
}

pub fn workspaces(
    shell: &Shell<'_>,
    notice: Option<&Flash>,
    list: &[(WorkspaceRow, Role)],
) -> Markup {
    layout(
        "Workspaces",
        Some(shell),
        notice,
        html! {
            h1 { "Workspaces" }
            @if list.is_empty() {
                p class="empty" { "You are not a member of any workspace yet. "
                    "A workspace owner or admin can add you with " code { "regkeeper members add" } "." }
            } @else {
                p { "Pick a workspace to see its credentials." }
                ul class="workspaces" {
                    @for (workspace, role) in list {
                        li {
                            a href=(paths::credentials(&workspace.name)) { (workspace.name) }
                            " "
                            span class="role" { "(your role: " (role.as_str()) ")" }
                        }
                    }
                }
            }
        },
    )
}

pub struct CredentialRow<'a> {
    pub credential: &'a Credential,
    pub targets: &'a [SyncTarget],
}

pub fn credentials(
    shell: &Shell<'_>,
    notice: Option<&Flash>,
    workspace: &str,
    may_maintain: bool,
    rows: &[CredentialRow<'_>],
    now: i64,
) -> Markup {
    let title = format!("Credentials in {workspace}");
    layout(
        &title,
        Some(shell),
        notice,
        html! {
            h1 { (title) }
            p class="actions" {
                @if may_maintain {
                    a class="button" href=(paths::new_credential(workspace)) { "Add credentials" }
                }
                a href=(paths::audit(workspace)) { "Audit log" }
            }
            @if rows.is_empty() {
                p class="empty" { "There are no credentials in " (workspace) " yet." }
            } @else {
                (scrolling_table(
                    "credentials-caption",
                    &format!("Credentials in {workspace}"),
                    &["Name", "Type", "Registry", "Verification", "Token", "Sync targets"],
                    html! {
                        @for row in rows {
                            @let credential = row.credential;
                            tr {
                                td { a href=(paths::credential(workspace, &credential.name)) { (credential.name) } }
                                td { (kind_text(credential)) }
                                td { (registry(credential)) }
                                td { (verification(credential)) }
                                td { (token_text(credential.token.as_ref(), now)) }
                                td { (targets_summary(row.targets)) }
                            }
                        }
                    },
                ))
            }
        },
    )
}

fn registry(credential: &Credential) -> String {
    if credential.path_prefix.is_empty() {
        credential.registry_host.clone()
    } else {
        format!("{}/{}", credential.registry_host, credential.path_prefix)
    }
}

fn verification(credential: &Credential) -> Markup {
    let status = credential.verification.status;
    html! {
        span class=(format!("status status-{}", status.as_str())) { (status.as_str()) }
        @if let Some(at) = credential.verification.checked_at {
            ", " (time(at))
        }
    }
}

/// A credential's type, and where its login comes from when that is not regkeeper.
fn kind_text(credential: &Credential) -> String {
    match credential.auth_method {
        AuthMethod::AwsSecret => format!("{} (from AWS Secrets Manager)", credential.kind),
        _ => credential.kind.as_str().to_owned(),
    }
}

fn targets_summary(targets: &[SyncTarget]) -> Markup {
    html! {
        @if targets.is_empty() {
            "none"
        } @else {
            (targets.len()) ": "
            @for (index, target) in targets.iter().enumerate() {
                @if index > 0 { ", " }
                (target.destination.kind().label()) " " (target.destination.summary())
                " (" (target.status.as_str()) ")"
            }
        }
    }
}

/// A `<time>` element with the machine-readable instant and the full UTC reading to
/// the millisecond (`2026-12-06 14:54:04.123 UTC`), where the order of events matters.
fn exact_time(at: i64) -> Markup {
    let full = format_timestamp(at);
    let reading = full.trim_end_matches('Z').replacen('T', " ", 1);
    html! { time datetime=(full) { (reading) " UTC" } }
}

/// A `<time>` element with the machine-readable instant and a short UTC reading.
fn time(at: i64) -> Markup {
    let full = format_timestamp(at);
    let short = full
        .get(..16)
        .map_or_else(|| full.clone(), |minutes| minutes.replace('T', " "));
    html! { time datetime=(full) { (short) " UTC" } }
}

/// "fresh, expires in 11 h 58 min", "expired, expired 5 min ago", or "—" when the
/// credential has no minted token.
pub fn token_text(token: Option<&TokenState>, now: i64) -> String {
    let Some(token) = token else {
        return "—".to_owned();
    };
    match token.expires_at {
        Some(expires_at) if expires_at > now => {
            format!(
                "{}, expires in {}",
                token.status,
                duration(expires_at - now)
            )
        }
        Some(expires_at) => format!(
            "{}, expired {} ago",
            token.status,
            duration(now - expires_at)
        ),
        None => format!("{}, does not expire", token.status),
    }
}

/// A span of time in whole minutes, hours and days, for people.
pub fn duration(milliseconds: i64) -> String {
    let minutes = milliseconds / 60_000;
    if minutes < 1 {
        return "less than a minute".to_owned();
    }
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours, minutes) {
        (0, 0, minutes) => format!("{minutes} min"),
        (0, hours, 0) => format!("{hours} h"),
        (0, hours, minutes) => format!("{hours} h {minutes} min"),
        (days, 0, _) => format!("{days} d"),
        (days, hours, _) => format!("{days} d {hours} h"),
    }
}

pub fn credential(
    shell: &Shell<'_>,
    notice: Option<&Flash>,
    credential: &Credential,
    targets: &[SyncTarget],
    may_maintain: bool,
    now: i64,
) -> Markup {
    let workspace = &credential.workspace_name;
    let name = &credential.name;
    let settings = &credential.settings;
    layout(
        name,
        Some(shell),
        notice,
        html! {
            (breadcrumb(workspace))
            h1 { (name) }
            dl class="details" {
                dt { "Type" } dd { (credential.kind.as_str()) " (" (credential.auth_method.as_str()) ")" }
                dt { "Registry server" } dd { (credential.registry_host) }
                dt { "Repository path prefix" }
                dd { @if credential.path_prefix.is_empty() { "— (the whole registry)" } @else { (credential.path_prefix) } }
                dt { "User name" } dd { (credential.username.as_deref().unwrap_or("—")) }
                @if let Some(role_arn) = &settings.role_arn { dt { "Role ARN" } dd { (role_arn) } }
                @if let Some(external_id) = &settings.external_id { dt { "External ID" } dd { (external_id) } }
                @if let Some(region) = &settings.aws_region { dt { "AWS region" } dd { (region) } }
                @if settings.ambient { dt { "AWS identity" } dd { "the server's own (ambient)" } }
                @if let Some(tenant) = &settings.azure_tenant_id { dt { "Azure tenant" } dd { (tenant) } }
                @if let Some(source) = &settings.aws_secret {
                    dt { "Login" }
                    dd {
                        "read from AWS Secrets Manager secret " code { (source.secret_id) }
                        " (keys " code { (source.username_key) } ", " code { (source.password_key) } ")"
                        ", as the AWS identity of credential " (source.identity_name)
                        "; cached for at most 5 minutes"
                    }
                }
                dt { "Verification" }
                dd {
                    (verification(credential))
                    @if let Some(message) = &credential.verification.message {
                        @if credential.verification.status == VerificationStatus::Failed {
                            br; span class="failure-text" { (message) }
                        } @else {
                            br; (message)
                        }
                    }
                }
                dt { "Token" }
                dd {
                    (token_text(credential.token.as_ref(), now))
                    @if let Some(error) = credential.token.as_ref().and_then(|token| token.last_error.as_ref()) {
                        br; "Last refresh error: " (error)
                    }
                }
                dt { "Created" } dd { (time(credential.created_at)) " by " (credential.created_by) }
                dt { "Updated" } dd { (time(credential.updated_at)) }
            }
            @if may_maintain {
                div class="actions" {
                    form method="post" action=(paths::verify(workspace, name)) {
                        input type="hidden" name="csrf" value=(shell.csrf);
                        button type="submit" { "Verify" }
                    }
                    a class="button" href=(paths::edit(workspace, name)) { "Update" }
                    a class="button danger" href=(paths::delete(workspace, name)) { "Delete" }
                }
            }
            h2 { "Sync targets" }
            @if targets.is_empty() {
                p class="empty" { "None. Add one with " code { "regkeeper sync add " (name) } "." }
            } @else {
                ul class="targets" {
                    @for target in targets {
                        li {
                            (target.destination.kind().label()) " " (target.destination.summary())
                            ": " (target.status.as_str())
                            @if let Some(at) = target.last_synced_at { ", last pushed " (time(at)) }
                            @if let Some(error) = &target.last_error { br; "Last error: " (error) }
                        }
                    }
                }
            }
        },
    )
}

pub fn delete_confirmation(shell: &Shell<'_>, workspace: &str, name: &str) -> Markup {
    let title = format!("Delete {name}?");
    layout(
        &title,
        Some(shell),
        None,
        html! {
            (breadcrumb(workspace))
            h1 { (title) }
            p { "This deletes the credential " strong { (name) } " from " (workspace)
                " with its stored secret and its sync targets. It cannot be undone: pulls and "
                "workloads that use it will stop getting credentials." }
            div class="actions" {
                form method="post" action=(paths::delete(workspace, name)) {
                    input type="hidden" name="csrf" value=(shell.csrf);
                    button type="submit" class="danger" { "Delete " (name) }
                }
                a href=(paths::credential(workspace, name)) { "Cancel" }
            }
        },
    )
}

pub fn audit(shell: &Shell<'_>, workspace: &str, entries: &[AuditRow], limit: i64) -> Markup {
    let title = format!("Audit log of {workspace}");
    layout(
        &title,
        Some(shell),
        None,
        html! {
            (breadcrumb(workspace))
            h1 { (title) }
            @if entries.is_empty() {
                p class="empty" { "Nothing has been recorded in " (workspace) " yet." }
            } @else {
                p { "The newest " (entries.len()) " entries (at most " (limit) "), newest first. "
                    code { "regkeeper audit list" } " shows more, and " code { "regkeeper audit verify" } " checks the chain." }
                (scrolling_table(
                    "audit-caption",
                    &format!("Audit log of {workspace}, newest first"),
                    &["Time (UTC)", "Actor", "Action", "Target", "Outcome", "Reason and detail"],
                    html! {
                        @for entry in entries {
                            tr {
                                td { (exact_time(entry.at)) }
                                td { (entry.actor) }
                                td { (entry.action) }
                                td { (entry.target.as_deref().unwrap_or("—")) }
                                td { span class=(format!("outcome outcome-{}", entry.outcome)) { (entry.outcome) } }
                                td { (audit_detail(&entry.detail)) }
                            }
                        }
                    },
                ))
            }
        },
    )
}

/// A table that scrolls sideways on its own when wider than the page, named by its
/// caption (`id`) also as the scrolling region; `heads` are its column headers, `rows`
/// its body.
fn scrolling_table(id: &str, caption: &str, heads: &[&str], rows: Markup) -> Markup {
    html! {
        div class="table-scroll" tabindex="0" role="region" aria-labelledby=(id) {
            table {
                caption id=(id) { (caption) }
                thead {
                    tr {
                        @for head in heads {
                            th scope="col" { (head) }
                        }
                    }
                }
                tbody { (rows) }
            }
        }
    }
}

/// An entry's reason and facts on one line (`audit::detail_summary`), or "—".
fn audit_detail(detail: &str) -> String {
    let summary = serde_json::from_str(detail)
        .map(|detail| crate::audit::detail_summary(&detail))
        .unwrap_or_default();
    if summary.is_empty() {
        "—".to_owned()
    } else {
        summary
    }
}

/// A page that only explains a failure, with a way on.
pub fn problem(shell: Option<&Shell<'_>>, title: &str, message: &str) -> Markup {
    layout(
        title,
        shell,
        None,
        html! {
            h1 { (title) }
            p role="alert" class="notice failure" { (message) }
            p {
                @if shell.is_some() {
                    a href="/console/workspaces" { "Go to your workspaces" }
                } @else {
                    a href="/console/" { "Go to the sign-in page" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::registry_token::RegistryTokenStatus;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(30_000), "less than a minute");
        assert_eq!(duration(5 * 60_000), "5 min");
        assert_eq!(duration((11 * 60 + 58) * 60_000), "11 h 58 min");
        assert_eq!(duration(3 * 3_600_000), "3 h");
        assert_eq!(duration((26 * 60 + 5) * 60_000), "1 d 2 h");
        assert_eq!(duration(2 * 86_400_000), "2 d");
    }

    #[test]
    fn token_status_says_when_it_expires() {
        let now = 1_000_000_000;
        let token = |expires_at| TokenState {
            status: RegistryTokenStatus::Fresh,
            expires_at,
            refresh_at: now,
            last_error: None,
        };
        assert_eq!(token_text(None, now), "—");
        assert_eq!(
            token_text(Some(&token(Some(now + (11 * 60 + 58) * 60_000 + 500))), now),
            "fresh, expires in 11 h 58 min"
        );
        assert_eq!(
            token_text(Some(&token(Some(now - 5 * 60_000))), now),
            "fresh, expired 5 min ago"
        );
    }

    #[test]
    fn the_sign_in_page_has_the_exact_form() {
        let both = SignInMethods {
            single_sign_on: true,
            token: true,
        };
        let page = sign_in("abc", None, both).into_string();
        assert!(
            page.contains("<a class=\"button\" href=\"/console/sign-in/sso\">Sign in with SSO</a>")
        );
        let sso_only = sign_in(
            "abc",
            None,
            SignInMethods {
                token: false,
                ..both
            },
        )
        .into_string();
        assert!(sso_only.contains("Sign in with SSO") && !sso_only.contains("name=\"token\""));
        let tokens_only = sign_in(
            "abc",
            None,
            SignInMethods {
                single_sign_on: false,
                ..both
            },
        );
        assert!(!tokens_only.into_string().contains("/console/sign-in/sso"));
        assert!(page.contains("<form method=\"post\" action=\"/console/sign-in\">"));
        assert!(page.contains("<label for=\"token\">API token</label>"));
        assert!(page.contains(
            "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required"
        ));
        assert!(page.contains("<input type=\"hidden\" name=\"csrf\" value=\"abc\">"));
        assert!(page.contains("<button type=\"submit\">Sign in</button>"));
        assert!(page.contains("href=\"#main\""));
    }
}
