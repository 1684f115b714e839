//! Trust policies of workload roles (issue 13 §1): which OIDC issuer, audience, subject
//! and claims may exchange a token for a role's API token, like an IAM role's
//! web-identity trust policy. Checked when written, so that a trust letting anyone on a
//! shared issuer in (every GitHub or GitLab user, any subject) is never stored.

use std::collections::BTreeMap;

use url::Url;
use wildmatch::WildMatch;

use super::{Error, Result};
use crate::text::echo;

/// How long an exchanged token lives at most unless the trust says otherwise.
pub const DEFAULT_MAX_SESSION_SECONDS: i64 = 3600;
/// The longest session a trust may grant.
pub const MAX_SESSION_SECONDS: i64 = 12 * 3600;
/// The shortest session a trust may grant: less could not outlive a clock skew.
pub const MIN_SESSION_SECONDS: i64 = 60;
const MAX_PATTERN: usize = 500;
const MAX_CLAIMS: usize = 20;

pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
pub const GITLAB_ISSUER: &str = "https://gitlab.com";

/// A validated trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Exactly as the tokens' `iss` and the discovery document's `issuer` spell it.
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    /// Dotted claim path (`kubernetes.io.namespace`) to pattern.
    pub claims: BTreeMap<String, String>,
    pub max_session_seconds: i64,
}

fn invalid(code: &'static str, message: String) -> Error {
    Error::invalid(code, message)
}

fn check_pattern(what: &str, pattern: &str) -> Result<()> {
    if pattern.is_empty()
        || pattern.chars().count() > MAX_PATTERN
        || pattern.chars().any(char::is_control)
    {
        return Err(invalid(
            "invalid_trust",
            format!("the {what} must be 1-{MAX_PATTERN} printable characters"),
        ));
    }
    Ok(())
}

fn check_claim_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-:/".contains(c))
        });
    if !valid {
        return Err(invalid(
            "invalid_trust",
            format!(
                "invalid claim name `{}`: use a claim name or a dotted path to a nested one (kubernetes.io.namespace)",
                echo(name)
            ),
        ));
    }
    if matches!(name, "iss" | "aud" | "sub" | "exp" | "nbf" | "iat") {
        return Err(invalid(
            "invalid_trust",
            format!("the claim `{name}` is checked by --issuer, --audience, --subject and the token's lifetime; use those"),
        ));
    }
    Ok(())
}

/// Whether `pattern` lets every value through.
fn open(pattern: &str) -> bool {
    pattern.chars().all(|c| c == '*')
}

/// A pattern pinned to one GitHub owner or GitLab namespace: a literal prefix up to
/// and including the first `/`, such as `acme/*` or `acme/app`.
fn pinned_owner(pattern: &str) -> bool {
    pattern
        .split_once('/')
        .is_some_and(|(owner, _)| !owner.is_empty() && !owner.contains('*'))
}

impl Trust {
    pub fn new(
        issuer: &str,
        audience: &str,
        subject: &str,
        claims: BTreeMap<String, String>,
        max_session_seconds: Option<i64>,
    ) -> Result<Self> {
        let url = Url::parse(issuer).map_err(|_| {
            invalid(
                "invalid_trust",
                format!("the issuer `{}` is not a URL", echo(issuer)),
            )
        })?;
        if url.scheme() != "https"
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(invalid(
                "invalid_trust",
                format!(
                    "the issuer `{}` must be an https URL without query or fragment, as its tokens' `iss` spells it",
                    echo(issuer)
                ),
            ));
        }
        check_pattern("issuer", issuer)?;
        check_pattern("audience", audience)?;
        if audience.contains('*') {
            return Err(invalid(
                "invalid_trust",
                "the audience is matched exactly: name the one audience the tokens are issued for"
                    .to_owned(),
            ));
        }
        check_pattern("subject", subject)?;
        if claims.len() > MAX_CLAIMS {
            return Err(invalid(
                "invalid_trust",
                format!("a trust has at most {MAX_CLAIMS} claim conditions"),
            ));
        }
        for (name, pattern) in &claims {
            check_claim_name(name)?;
            check_pattern(&format!("pattern of claim {name}"), pattern)?;
        }
        let max_session_seconds = max_session_seconds.unwrap_or(DEFAULT_MAX_SESSION_SECONDS);
        if !(MIN_SESSION_SECONDS..=MAX_SESSION_SECONDS).contains(&max_session_seconds) {
            return Err(invalid(
                "invalid_max_session",
                format!(
                    "the maximum session must be between {MIN_SESSION_SECONDS} s and 12 h, not {max_session_seconds} s"
                ),
            ));
        }
        let trust = Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            subject: subject.to_owned(),
            claims,
            max_session_seconds,
        };
        trust.refuse_open_to_anyone()?;
        Ok(trust)
    }

    /// Refuses a trust that anyone with an account on a shared issuer could satisfy.
    fn refuse_open_to_anyone(&self) -> Result<()> {
        let claim_pinned = |name: &str, check: fn(&str) -> bool| {
            self.claims.get(name).is_some_and(|pattern| check(pattern))
        };
        let literal = |pattern: &str| !pattern.contains('*');
        let issuer = self.issuer.trim_end_matches('/');
        if issuer == GITHUB_ISSUER {
            let pinned = claim_pinned("repository_owner", literal)
                || claim_pinned("repository_owner_id", literal)
                || claim_pinned("repository", pinned_owner)
                || claim_pinned("repository_id", literal)
                || self.subject.strip_prefix("repo:").is_some_and(pinned_owner);
            if !pinned {
                return Err(invalid(
                    "trust_too_open",
                    "every GitHub Actions job in the world can get a token from this issuer: pin the owner with --claim repository_owner=OWNER (or --claim repository=OWNER/REPO, or --subject 'repo:OWNER/REPO:*')".to_owned(),
                ));
            }
        } else if issuer == GITLAB_ISSUER {
            let pinned = claim_pinned("namespace_path", literal)
                || claim_pinned("namespace_id", literal)
                || claim_pinned("project_path", pinned_owner)
                || claim_pinned("project_id", literal)
                || self
                    .subject
                    .strip_prefix("project_path:")
                    .is_some_and(pinned_owner);
            if !pinned {
                return Err(invalid(
                    "trust_too_open",
                    "every GitLab.com CI job can get a token from this issuer: pin the namespace with --claim namespace_path=GROUP (or --claim project_path=GROUP/PROJECT, or --subject 'project_path:GROUP/PROJECT:*')".to_owned(),
                ));
            }
        }
        if open(&self.subject) {
            return Err(invalid(
                "trust_too_open",
                "a subject of `*` lets every identity of the issuer in: name the subject (wildcards within it are fine, e.g. `system:serviceaccount:ci:*`)".to_owned(),
            ));
        }
        Ok(())
    }

    /// The first condition `claims` (the token's payload) fails, if any: `subject` or
    /// `claim NAME`.
    pub fn failed_condition(&self, claims: &serde_json::Value) -> Option<String> {
        let subject = claims.get("sub").and_then(serde_json::Value::as_str);
        if !subject.is_some_and(|subject| WildMatch::new(&self.subject).matches(subject)) {
            return Some("subject".to_owned());
        }
        for (name, pattern) in &self.claims {
            let matched = claim_value(claims, name)
                .is_some_and(|value| WildMatch::new(pattern).matches(&value));
            if !matched {
                return Some(format!("claim {name}"));
            }
        }
        None
    }
}

/// The value of a claim named by a dotted path, as text; numbers and booleans in their
/// JSON spelling. A name with dots may also be a top-level claim (`kubernetes.io` is
/// one): each prefix is tried, the longest first.
pub fn claim_value(claims: &serde_json::Value, path: &str) -> Option<String> {
    if let Some(value) = claims.get(path) {
        return scalar(value);
    }
    let mut split = path.len();
    while let Some(index) = path[..split].rfind('.') {
        if let Some(inner) = claims.get(&path[..index]) {
            if let Some(found) = claim_value(inner, &path[index + 1..]) {
                return Some(found);
            }
        }
        split = index;
    }
    None
}

fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Parses `NAME=PATTERN` as `--claim` takes it.
pub fn parse_claim_condition(text: &str) -> Result<(String, String)> {
    text.split_once('=')
        .map(|(name, pattern)| (name.trim().to_owned(), pattern.to_owned()))
        .ok_or_else(|| {
            invalid(
                "invalid_trust",
                format!("a claim condition is NAME=PATTERN, not `{}`", echo(text)),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trust(issuer: &str, subject: &str, claims: &[(&str, &str)]) -> Result<Trust> {
        Trust::new(
            issuer,
            "regkeeper",
            subject,
            claims
                .iter()
                .map(|(name, pattern)| ((*name).to_owned(), (*pattern).to_owned()))
                .collect(),
            None,
        )
    }

    /// Issue 13 item 1: trusts open to anyone on a shared issuer are refused, saying what to pin.
    #[test]
    fn open_trusts_are_refused_with_what_to_pin() {
        let github = trust(GITHUB_ISSUER, "repo:*", &[]).unwrap_err();
        assert!(github.to_string().contains("repository_owner"), "{github}");
        let github = trust(GITHUB_ISSUER, "*", &[("repository", "*/app")]).unwrap_err();
        assert!(github.to_string().contains("pin the owner"), "{github}");
        assert!(trust(GITHUB_ISSUER, "repo:acme/app:*", &[]).is_ok());
        assert!(trust(GITHUB_ISSUER, "repo:*", &[("repository_owner", "acme")]).is_ok());
        assert!(trust(GITHUB_ISSUER, "repo:*", &[("repository_owner", "ac*")]).is_err());
        let gitlab = trust("https://gitlab.com", "project_path:*", &[]).unwrap_err();
        assert!(gitlab.to_string().contains("namespace_path"), "{gitlab}");
        assert!(trust("https://gitlab.com", "x:*", &[("namespace_path", "acme")]).is_ok());
        let bare = trust("https://cluster.example", "*", &[]).unwrap_err();
        assert!(bare.to_string().contains("name the subject"), "{bare}");
        assert!(trust(
            "https://cluster.example",
            "system:serviceaccount:ci:*",
            &[("kubernetes.io.namespace", "ci")]
        )
        .is_ok());
    }

    /// Issue 13 item 1: --max-session defaults to 1 h and is at most 12 h.
    #[test]
    fn max_session_defaults_to_an_hour_and_caps_at_twelve() {
        let made = trust("https://idp.example", "a", &[]).unwrap();
        assert_eq!(made.max_session_seconds, 3600);
        let too_long = Trust::new(
            "https://idp.example",
            "a",
            "a",
            BTreeMap::new(),
            Some(12 * 3600 + 1),
        );
        assert!(too_long.unwrap_err().to_string().contains("12 h"));
        assert!(Trust::new(
            "https://idp.example",
            "a",
            "a",
            BTreeMap::new(),
            Some(12 * 3600)
        )
        .is_ok());
        assert!(trust("http://idp.example", "a", &[]).is_err());
        assert!(Trust::new("https://idp.example", "*", "a", BTreeMap::new(), None).is_err());
        assert!(trust("https://idp.example", "a", &[("sub", "x")]).is_err());
    }

    /// Issue 13 item 1: subject patterns and nested claim conditions (Kubernetes tokens).
    #[test]
    fn conditions_match_nested_claims_with_wildcards() {
        let made = trust(
            "https://cluster.example",
            "system:serviceaccount:ci:*",
            &[
                ("kubernetes.io.namespace", "ci"),
                ("kubernetes.io.serviceaccount.name", "build*"),
            ],
        )
        .unwrap();
        let mut token = json!({
            "sub": "system:serviceaccount:ci:builder",
            "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder", "uid": "1"}}
        });
        assert_eq!(made.failed_condition(&token), None);
        token["kubernetes.io"]["namespace"] = json!("prod");
        assert_eq!(
            made.failed_condition(&token).as_deref(),
            Some("claim kubernetes.io.namespace")
        );
        token["sub"] = json!("system:serviceaccount:prod:builder");
        assert_eq!(made.failed_condition(&token).as_deref(), Some("subject"));
        assert_eq!(
            claim_value(&json!({"a": {"b": 7}}), "a.b").as_deref(),
            Some("7")
        );
        assert_eq!(claim_value(&json!({"a": {"b": [1]}}), "a.b"), None);
    }
}
