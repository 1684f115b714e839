//! The add and update form of a credential: Tower's fields, the detected type, and
//! the Amazon ECR options that `console.js` shows only for ECR.

use maud::{html, Markup};

use super::{breadcrumb, layout, Shell};
use crate::console::forms::{detect, CredentialForm, PROVIDERS};
use crate::console::paths;
use crate::console::session::Flash;

/// Where a credential form goes and what it says.
pub struct FormPage<'a> {
    pub workspace: &'a str,
    /// `None` when adding; the stored name when updating.
    pub existing: Option<&'a str>,
    pub form: &'a CredentialForm,
    pub error: Option<&'a str>,
}

pub fn credential_form(shell: &Shell<'_>, page: &FormPage<'_>) -> Markup {
    let form = page.form;
    let (title, action, button, cancel) = match page.existing {
        None => (
            "Add credentials".to_owned(),
            paths::credentials(page.workspace),
            "Add",
            paths::credentials(page.workspace),
        ),
        Some(name) => (
            format!("Update {name}"),
            paths::edit(page.workspace, name),
            "Save",
            paths::credential(page.workspace, name),
        ),
    };
    let detected = if form.registry.trim().is_empty() {
        String::new()
    } else {
        detect(&form.registry).text()
    };
    let alert = page.error.map(Flash::alert);
    layout(
        &title,
        Some(shell),
        alert.as_ref(),
        html! {
            (breadcrumb(page.workspace))
            h1 { (title) }
            form method="post" action=(action) {
                input type="hidden" name="csrf" value=(shell.csrf);
                div class="field" {
                    label for="name" { "Name" }
                    input id="name" name="name" type="text" value=(form.name) required
                        autocomplete="off" spellcheck="false" maxlength="100" aria-describedby="name-hint";
                    p class="hint" id="name-hint" { "Letters, digits, " code { "_" } " and " code { "-" } ", up to 100." }
                }
                div class="field" {
                    label for="type" { "Provider" }
                    select id="type" name="type" {
                        @for (value, label) in PROVIDERS {
                            option value=(value) selected[form.kind == value] { (label) }
                        }
                    }
                }
                div class="field" {
                    label for="registry" { "Registry server" }
                    input id="registry" name="registry" type="text" value=(form.registry) required
                        autocomplete="off" spellcheck="false" inputmode="url" aria-describedby="registry-hint detected-type";
                    p class="hint" id="registry-hint" { "A host with an optional port and path, such as "
                        code { "ghcr.io" } " or " code { "123456789012.dkr.ecr.us-east-1.amazonaws.com" } "." }
                    output id="detected-type" for="registry" aria-live="polite" { (detected) }
                }
                div class="field" {
                    label for="username" { "User name" }
                    input id="username" name="username" type="text" value=(form.username)
                        autocomplete="off" spellcheck="false" aria-describedby="username-hint";
                    p class="hint" id="username-hint" { "For Amazon ECR keys, the access key id; for Google, "
                        code { "_json_key" } " or " code { "oauth2accesstoken" } "." }
                }
                div class="field" {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="new-password"
                        aria-describedby="password-hint";
                    p class="hint" id="password-hint" {
                        @if page.existing.is_some() { "Leave blank to keep the stored password. " }
                        "A password or token; for Amazon ECR the secret access key; for Google the whole service-account JSON key. Never shown again."
                    }
                }
                div class="field" {
                    label for="path_prefix" { "Repository path prefix (optional)" }
                    input id="path_prefix" name="path_prefix" type="text" value=(form.path_prefix)
                        autocomplete="off" spellcheck="false" aria-describedby="path_prefix-hint";
                    p class="hint" id="path_prefix-hint" { "Use this credential only for repositories under this path, such as " code { "team/app" } "." }
                }
                fieldset id="ecr-options" {
                    legend { "Amazon ECR options" }
                    div class="field" {
                        label for="role_arn" { "Role ARN" }
                        input id="role_arn" name="role_arn" type="text" value=(form.role_arn) autocomplete="off" spellcheck="false";
                    }
                    div class="field" {
                        label for="external_id" { "External ID" }
                        input id="external_id" name="external_id" type="text" value=(form.external_id) autocomplete="off" spellcheck="false";
                    }
                    div class="field" {
                        label for="aws_region" { "AWS region" }
                        input id="aws_region" name="aws_region" type="text" value=(form.aws_region)
                            autocomplete="off" spellcheck="false" aria-describedby="aws_region-hint";
                        p class="hint" id="aws_region-hint" { "Needed only when the registry server is not an ECR host name." }
                    }
                    div class="field checkbox" {
                        input id="ambient" name="ambient" type="checkbox" value="true" checked[form.ambient];
                        label for="ambient" { "Use the server's own AWS identity (ambient)" }
                    }
                }
                div class="buttons" {
                    button type="submit" { (button) }
                    a href=(cancel) { "Cancel" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_users_typed_and_label_every_input() {
        let shell = Shell {
            user: "<script>alert(1)</script>",
            csrf: "token\"><b>",
        };
        let form = CredentialForm {
            name: "\"><img src=x onerror=alert(1)>".into(),
            registry: "ghcr.io".into(),
            kind: "auto".into(),
            ..CredentialForm::default()
        };
        let page = credential_form(
            &shell,
            &FormPage {
                workspace: "acme/ci",
                existing: None,
                form: &form,
                error: Some("<b>bad</b>"),
            },
        )
        .into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("<html lang=\"en\">"));
        assert!(page
            .contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
        assert!(page.contains("action=\"/console/workspaces/acme%2Fci/credentials\""));
        assert!(page.contains("<p role=\"alert\""));
        assert!(page.contains("Detected: Docker registry"));
        for id in [
            "name",
            "type",
            "registry",
            "username",
            "password",
            "path_prefix",
            "role_arn",
            "external_id",
            "aws_region",
            "ambient",
        ] {
            assert!(
                page.contains(&format!("<label for=\"{id}\">")),
                "label for {id}"
            );
            assert!(page.contains(&format!("id=\"{id}\"")), "input {id}");
        }
    }
}
