//! Credential references (`rk:WS:credential/NAME`) and the IAM-like policy documents
//! of workload roles: Allow and Deny statements over actions and references with `*`
//! wildcards, deny by default, an explicit Deny winning.
//!
//! An Allow that names one credential exactly is bound to that credential's immutable
//! id when the policy is saved, so a credential deleted and re-created under the same
//! name does not inherit the grant. A Deny matches by name, so it keeps applying to
//! whatever carries that name later; a wildcard matches by name by design.
//!
//! Names match without regard to case (credential names are unique that way too), so
//! `Deny rk:acme/ci:credential/deploy-*` also holds for `Deploy-prod`. A document that
//! names a key twice is refused ([`Policy::parse_json`]), never read as its last value.
//!
//! [`Policy`] derives serde for one purpose: its stored JSON form, statements with
//! their bound ids, which the store keeps as text. Users' documents are parsed from
//! IAM's spelling, and responses show [`Policy::document`]; no domain type is a
//! response shape (those are `regkeeper_wire`'s).

use std::fmt;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use super::credential::validate_name;
use super::identity::parse_workspace_name;
use super::json_keys::reject_duplicate_keys;
use super::{Error, Result};
use crate::text::echo;

/// The scheme every reference starts with.
pub const REFERENCE_SCHEME: &str = "rk:";
/// The only policy language version, accepted when given.
pub const POLICY_VERSION: &str = "2026-11-01";
const MAX_STATEMENTS: usize = 100;
const MAX_ENTRIES: usize = 100;

/// A credential as named by a caller: a bare name, meaning the caller's own workspace,
/// or a full reference that names the workspace too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    pub workspace: Option<String>,
    pub name: String,
}

impl CredentialRef {
    /// Parses `NAME` or `rk:WS:credential/NAME`.
    pub fn parse(input: &str) -> Result<Self> {
        let input = input.trim();
        let Some(rest) = input.strip_prefix(REFERENCE_SCHEME) else {
            validate_name(input).map_err(|_| invalid_reference(input))?;
            return Ok(Self {
                workspace: None,
                name: input.to_owned(),
            });
        };
        let (workspace, name) = split_reference(rest).ok_or_else(|| invalid_reference(input))?;
        parse_workspace_name(workspace).map_err(|_| invalid_reference(input))?;
        validate_name(name).map_err(|_| invalid_reference(input))?;
        Ok(Self {
            workspace: Some(workspace.to_owned()),
            name: name.to_owned(),
        })
    }
}

/// The full reference of a credential.
pub fn credential_reference(workspace: &str, name: &str) -> String {
    format!("{REFERENCE_SCHEME}{workspace}:credential/{name}")
}

/// The full reference of a workload role, also its name as an audit actor.
pub fn role_reference(workspace: &str, name: &str) -> String {
    format!("{REFERENCE_SCHEME}{workspace}:role/{name}")
}

/// `WS:credential/NAME` into its two parts. The workspace contains no `:`.
fn split_reference(rest: &str) -> Option<(&str, &str)> {
    let (workspace, path) = rest.split_once(':')?;
    let name = path.strip_prefix("credential/")?;
    Some((workspace, name))
}

fn invalid_reference(input: &str) -> Error {
    Error::invalid(
        "invalid_reference",
        format!(
            "invalid credential reference `{}`: expected a credential name or rk:WS:credential/NAME (WS is ORG/NAME or ~USER)",
            echo(input)
        ),
    )
}

/// What a role's token may be allowed to do to a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Hand out working registry credentials (`resolve`, the helpers, the proxy).
    Resolve,
    /// Read a credential's metadata (`credentials list` and `show`).
    Describe,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::Resolve, Action::Describe];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Resolve => "credentials:Resolve",
            Action::Describe => "credentials:Describe",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| unknown_action(value))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

fn unknown_action(value: &str) -> Error {
    Error::invalid(
        "invalid_policy",
        format!(
            "unknown action `{}`: use credentials:Resolve, credentials:Describe, credentials:* or *",
            echo(value)
        ),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One or several strings, as IAM documents allow for `Action` and `Resource`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

/// A policy document as users write it, in IAM's spelling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentInput {
    #[serde(rename = "Version", default)]
    version: Option<String>,
    #[serde(rename = "Statement")]
    statement: Vec<StatementInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementInput {
    #[serde(rename = "Sid", default)]
    sid: Option<String>,
    #[serde(rename = "Effect")]
    effect: Effect,
    #[serde(rename = "Action")]
    action: OneOrMany,
    #[serde(rename = "Resource")]
    resource: OneOrMany,
}

/// A resource pattern: `*`, or `rk:WS:credential/NAME` where WS and NAME may hold `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub pattern: String,
    /// For an Allow naming one credential exactly: the id it was bound to on save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

impl Resource {
    /// `(workspace, name)` patterns; `None` for `*`.
    fn parts(&self) -> Option<(&str, &str)> {
        if self.pattern == "*" {
            return None;
        }
        self.pattern
            .strip_prefix(REFERENCE_SCHEME)
            .and_then(split_reference)
    }

    /// Whether the pattern names exactly one credential (no wildcard).
    pub fn exact(&self) -> Option<(&str, &str)> {
        self.parts()
            .filter(|(workspace, name)| !workspace.contains('*') && !name.contains('*'))
    }

    fn matches_workspace(&self, workspace: &str) -> bool {
        match self.parts() {
            None => true,
            Some((pattern, _)) => matches_folded(pattern, workspace),
        }
    }

    fn matches(&self, credential: &CredentialFacts<'_>, bind_to_id: bool) -> bool {
        let Some((workspace, name)) = self.parts() else {
            return true;
        };
        if !matches_folded(workspace, credential.workspace)
            || !matches_folded(name, credential.name)
        {
            return false;
        }
        match (&self.credential_id, bind_to_id) {
            (Some(id), true) => id == credential.id,
            _ => true,
        }
    }
}

/// A `*` pattern against a name, without regard to ASCII case: names are ASCII, and
/// unique without regard to case, so `Deploy-prod` is the credential `deploy-*` means.
fn matches_folded(pattern: &str, value: &str) -> bool {
    WildMatch::new(&pattern.to_ascii_lowercase()).matches(&value.to_ascii_lowercase())
}

fn parse_resource(value: &str) -> Result<Resource> {
    let invalid = || {
        Error::invalid(
            "invalid_policy",
            format!(
                "invalid resource `{}`: expected * or rk:WS:credential/NAME, where WS and NAME may contain * wildcards",
                echo(value)
            ),
        )
    };
    let value = value.trim();
    if value == "*" {
        return Ok(Resource {
            pattern: value.to_owned(),
            credential_id: None,
        });
    }
    let rest = value.strip_prefix(REFERENCE_SCHEME).ok_or_else(invalid)?;
    let (workspace, name) = split_reference(rest).ok_or_else(invalid)?;
    // Checked with each `*` standing for one ordinary character, so a pattern is valid
    // exactly when some name it matches is.
    let workspace_ok = if workspace == "*" {
        true
    } else {
        let sample = workspace.replace('*', "x");
        parse_workspace_name(&sample).is_ok()
            || (workspace.contains('*') && parse_workspace_name(&format!("{sample}/x")).is_ok())
    };
    let name_ok = name == "*" || validate_name(&name.replace('*', "x")).is_ok();
    if !workspace_ok || !name_ok || value.contains('?') {
        return Err(invalid());
    }
    Ok(Resource {
        pattern: value.to_owned(),
        credential_id: None,
    })
}

/// Actions as written, validated: each must name or match at least one known action.
fn parse_action(value: &str) -> Result<String> {
    let value = value.trim();
    let matcher = WildMatch::new(&value.to_ascii_lowercase());
    if value.contains('?')
        || !Action::ALL
            .iter()
            .any(|action| matcher.matches(&action.as_str().to_ascii_lowercase()))
    {
        return Err(unknown_action(value));
    }
    Ok(value.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<Resource>,
}

impl Statement {
    fn covers(&self, action: Action) -> bool {
        let action = action.as_str().to_ascii_lowercase();
        self.actions
            .iter()
            .any(|pattern| WildMatch::new(&pattern.to_ascii_lowercase()).matches(&action))
    }
}

/// A validated policy, as stored: statements with their resources' bound ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// What a decision is about: one credential, by workspace, name and immutable id.
#[derive(Debug, Clone, Copy)]
pub struct CredentialFacts<'a> {
    pub workspace: &'a str,
    pub name: &'a str,
    pub id: &'a str,
}

/// The outcome of evaluating a policy, with the statement that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        statement: usize,
    },
    ExplicitDeny {
        statement: usize,
    },
    /// No statement allows it: denied by default.
    ImplicitDeny,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

impl Policy {
    /// Parses and validates a document in IAM's spelling (`Version`, `Statement`,
    /// `Sid`, `Effect`, `Action`, `Resource`). Exact Allow resources are not yet bound:
    /// the caller binds them with [`Policy::exact_allows`] before saving.
    pub fn parse(document: &serde_json::Value) -> Result<Self> {
        let input: DocumentInput = serde_json::from_value(document.clone()).map_err(|error| {
            Error::invalid(
                "invalid_policy",
                // A policy holds no secret, so serde's message may quote it.
                format!("invalid policy document: {error}"),
            )
        })?;
        if let Some(version) = &input.version {
            if version != POLICY_VERSION {
                return Err(Error::invalid(
                    "invalid_policy",
                    format!(
                        "unsupported policy Version `{}`: use {POLICY_VERSION} or leave it out",
                        echo(version)
                    ),
                ));
            }
        }
        if input.statement.is_empty() || input.statement.len() > MAX_STATEMENTS {
            return Err(Error::invalid(
                "invalid_policy",
                format!("a policy has 1 to {MAX_STATEMENTS} statements"),
            ));
        }
        let mut statements = Vec::with_capacity(input.statement.len());
        for (index, statement) in input.statement.into_iter().enumerate() {
            let actions = statement.action.into_vec();
            let resources = statement.resource.into_vec();
            for (field, list) in [("Action", &actions), ("Resource", &resources)] {
                if list.is_empty() || list.len() > MAX_ENTRIES {
                    return Err(Error::invalid(
                        "invalid_policy",
                        format!("statement {index}: {field} has 1 to {MAX_ENTRIES} entries"),
                    ));
                }
            }
            if let Some(sid) = &statement.sid {
                if sid.len() > 100 || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(Error::invalid(
                        "invalid_policy",
                        format!("statement {index}: a Sid is 1-100 letters and digits"),
                    ));
                }
            }
            statements.push(Statement {
                sid: statement.sid,
                effect: statement.effect,
                actions: actions
                    .iter()
                    .map(|action| parse_action(action))
                    .collect::<Result<_>>()?,
                resources: resources
                    .iter()
                    .map(|resource| parse_resource(resource))
                    .collect::<Result<_>>()?,
            });
        }
        Ok(Self { statements })
    }

    /// Parses a document from its JSON text, refusing any key named twice in one
    /// object (at any depth) before anything reads it.
    pub fn parse_json(text: &[u8]) -> Result<Self> {
        reject_duplicate_keys(text)?;
        let document: serde_json::Value = serde_json::from_slice(text).map_err(|error| {
            Error::invalid(
                "invalid_policy",
                format!("invalid policy document: {error}"),
            )
        })?;
        Self::parse(&document)
    }

    /// The document in IAM's spelling, as users wrote it (bound ids left out).
    pub fn document(&self) -> serde_json::Value {
        let statements: Vec<serde_json::Value> = self
            .statements
            .iter()
            .map(|statement| {
                let mut value = serde_json::json!({
                    "Effect": statement.effect,
                    "Action": statement.actions,
                    "Resource": statement.resources.iter().map(|r| &r.pattern).collect::<Vec<_>>(),
                });
                if let Some(sid) = &statement.sid {
                    value["Sid"] = serde_json::Value::String(sid.clone());
                }
                value
            })
            .collect();
        serde_json::json!({ "Version": POLICY_VERSION, "Statement": statements })
    }

    /// Every Allow resource that names one credential exactly, to be bound to its id.
    pub fn exact_allows_mut(&mut self) -> impl Iterator<Item = &mut Resource> {
        self.statements
            .iter_mut()
            .filter(|statement| statement.effect == Effect::Allow)
            .flat_map(|statement| statement.resources.iter_mut())
            .filter(|resource| resource.exact().is_some())
    }

    /// Workspace patterns of the Allow statements: what the policy can grant into.
    pub fn allow_workspace_patterns(&self) -> impl Iterator<Item = &str> {
        self.statements
            .iter()
            .filter(|statement| statement.effect == Effect::Allow)
            .flat_map(|statement| statement.resources.iter())
            .map(|resource| resource.parts().map_or("*", |(workspace, _)| workspace))
    }

    /// Explicit Deny first, then Allow, else the default deny.
    pub fn evaluate(&self, action: Action, credential: &CredentialFacts<'_>) -> Decision {
        let matching = |effect: Effect| {
            self.statements.iter().position(|statement| {
                statement.effect == effect
                    && statement.covers(action)
                    && statement
                        .resources
                        .iter()
                        .any(|resource| resource.matches(credential, effect == Effect::Allow))
            })
        };
        if let Some(statement) = matching(Effect::Deny) {
            return Decision::ExplicitDeny { statement };
        }
        match matching(Effect::Allow) {
            Some(statement) => Decision::Allow { statement },
            None => Decision::ImplicitDeny,
        }
    }

    /// Whether an Allow statement names `workspace` itself, not by a wildcard: the
    /// role's writer chose that name, so a refusal there may say why.
    pub fn names_workspace(&self, workspace: &str) -> bool {
        self.allow_workspace_patterns()
            .any(|pattern| pattern.eq_ignore_ascii_case(workspace))
    }

    /// Whether any Allow statement for any action could reach into `workspace`.
    pub fn reaches(&self, workspace: &str) -> bool {
        Action::ALL
            .into_iter()
            .any(|action| self.may_reach(action, workspace))
    }

    /// Whether any Allow statement for `action` could reach into `workspace`. A role
    /// that has none sees the workspace exactly as a non-member does: not at all.
    pub fn may_reach(&self, action: Action, workspace: &str) -> bool {
        self.statements.iter().any(|statement| {
            statement.effect == Effect::Allow
                && statement.covers(action)
                && statement
                    .resources
                    .iter()
                    .any(|resource| resource.matches_workspace(workspace))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts<'a>(workspace: &'a str, name: &'a str, id: &'a str) -> CredentialFacts<'a> {
        CredentialFacts {
            workspace,
            name,
            id,
        }
    }

    #[test]
    fn references_parse_bare_and_full() {
        assert_eq!(
            CredentialRef::parse("ecr-prod").unwrap(),
            CredentialRef {
                workspace: None,
                name: "ecr-prod".into()
            }
        );
        assert_eq!(
            CredentialRef::parse("rk:acme/ci:credential/ecr-prod").unwrap(),
            CredentialRef {
                workspace: Some("acme/ci".into()),
                name: "ecr-prod".into()
            }
        );
        assert_eq!(
            CredentialRef::parse("rk:~bob:credential/x")
                .unwrap()
                .workspace,
            Some("~bob".into())
        );
        for bad in [
            "",
            "rk:",
            "rk:acme/ci",
            "rk:acme/ci:role/x",
            "rk:acme/ci:credential/",
            "rk:Acme/ci:credential/x",
            "rk:acme/ci:credential/a b",
            "rk:acme/*:credential/x",
            "a/b",
            "rk::credential/x",
        ] {
            assert!(CredentialRef::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            credential_reference("acme/ci", "x"),
            "rk:acme/ci:credential/x"
        );
    }

    fn policy(document: serde_json::Value) -> Policy {
        Policy::parse(&document).unwrap()
    }

    #[test]
    fn default_deny_allow_and_explicit_deny_wins() {
        let policy = policy(json!({
            "Version": POLICY_VERSION,
            "Statement": [
                {"Effect": "Allow", "Action": "credentials:*", "Resource": "rk:acme/*:credential/*"},
                {"Sid": "NoProd", "Effect": "Deny", "Action": ["credentials:Resolve"], "Resource": ["rk:acme/prod:credential/*"]}
            ]
        }));
        let ci = facts("acme/ci", "ecr", "1");
        let prod = facts("acme/prod", "ecr", "2");
        let other = facts("globex/ci", "ecr", "3");
        assert!(policy.evaluate(Action::Resolve, &ci).allowed());
        assert_eq!(
            policy.evaluate(Action::Resolve, &prod),
            Decision::ExplicitDeny { statement: 1 }
        );
        assert!(policy.evaluate(Action::Describe, &prod).allowed());
        assert_eq!(
            policy.evaluate(Action::Resolve, &other),
            Decision::ImplicitDeny
        );
        assert!(policy.may_reach(Action::Resolve, "acme/prod"));
        assert!(!policy.may_reach(Action::Resolve, "globex/ci"));
    }

    #[test]
    fn exact_allows_bind_to_an_id_and_denies_match_by_name() {
        let mut policy = policy(json!({"Statement": [
            {"Effect": "Allow", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/ecr"},
            {"Effect": "Deny", "Action": "*", "Resource": "rk:acme/ci:credential/old"}
        ]}));
        let exact: Vec<_> = policy
            .exact_allows_mut()
            .map(|r| r.pattern.clone())
            .collect();
        assert_eq!(exact, ["rk:acme/ci:credential/ecr"]);
        for resource in policy.exact_allows_mut() {
            resource.credential_id = Some("id-1".into());
        }
        assert!(policy
            .evaluate(Action::Resolve, &facts("acme/ci", "ecr", "id-1"))
            .allowed());
        // Deleted and re-created under the same name: a new id, no grant.
        assert_eq!(
            policy.evaluate(Action::Resolve, &facts("acme/ci", "ecr", "id-2")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            policy.evaluate(Action::Resolve, &facts("acme/ci", "old", "id-9")),
            Decision::ExplicitDeny { statement: 1 }
        );
    }

    #[test]
    fn wildcards_in_names_and_actions() {
        let policy = policy(json!({"Statement": [
            {"Effect": "Allow", "Action": "credentials:Res*", "Resource": ["rk:~bob:credential/ecr-*", "rk:acme/*:credential/shared"]}
        ]}));
        assert!(policy
            .evaluate(Action::Resolve, &facts("~bob", "ecr-eu", "1"))
            .allowed());
        assert!(!policy
            .evaluate(Action::Resolve, &facts("~bob", "gcr", "1"))
            .allowed());
        assert!(!policy
            .evaluate(Action::Describe, &facts("~bob", "ecr-eu", "1"))
            .allowed());
        assert!(policy
            .evaluate(Action::Resolve, &facts("acme/x", "shared", "1"))
            .allowed());
        let everything = self::policy(
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        );
        assert!(everything
            .evaluate(Action::Describe, &facts("z/z", "q", "1"))
            .allowed());
    }

    #[test]
    fn invalid_documents_say_what_is_wrong() {
        let cases = [
            (json!({}), "Statement"),
            (json!({"Statement": []}), "1 to 100 statements"),
            (
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
                "unsupported policy Version",
            ),
            (
                json!({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}),
                "invalid policy document",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
                "unknown action",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::x"}]}),
                "invalid resource",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "rk:acme/ci:credential/a b"}]}),
                "invalid resource",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}),
                "Action has 1 to",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}]}),
                "invalid policy document",
            ),
        ];
        for (document, expected) in cases {
            let error = Policy::parse(&document).unwrap_err().to_string();
            assert!(error.contains(expected), "{document}: {error}");
        }
    }

    /// Issue 12 item 3: a Deny by name held only for the exact case, so a maintainer's
    /// `Deploy-prod` was resolvable under `Deny … deploy-*`.
    #[test]
    fn names_match_without_regard_to_case() {
        let policy = policy(json!({"Statement": [
            {"Effect": "Allow", "Action": "credentials:Resolve", "Resource": ["rk:acme/ci:credential/*", "rk:acme/ci:credential/App"]},
            {"Effect": "Deny", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/deploy-*"}
        ]}));
        for name in ["deploy-prod", "Deploy-prod", "DEPLOY-PROD", "dEpLoY-x"] {
            assert_eq!(
                policy.evaluate(Action::Resolve, &facts("acme/ci", name, "1")),
                Decision::ExplicitDeny { statement: 1 },
                "{name}"
            );
        }
        assert!(policy
            .evaluate(Action::Resolve, &facts("acme/ci", "app", "1"))
            .allowed());
        assert!(policy.names_workspace("acme/ci"));
        assert!(!policy.names_workspace("acme/prod"));
    }

    /// Issue 12 item 4: the last of two `Effect` keys used to win, turning a Deny into
    /// an Allow. The text parser refuses it, naming the key.
    #[test]
    fn documents_with_a_key_twice_are_refused() {
        let text =
            br#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Effect":"Allow"}]}"#;
        let error = Policy::parse_json(text).unwrap_err();
        assert_eq!(error.code(), "duplicate_key");
        assert!(
            error.to_string().contains("`Effect` in Statement[0]"),
            "{error}"
        );
        for text in [
            &br#"{"Statement":[],"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#[..],
            br#"{"Version":"2026-11-01","Version":"2026-11-01","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            br#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Resource":"rk:a/b:credential/x"}]}"#,
        ] {
            assert_eq!(Policy::parse_json(text).unwrap_err().code(), "duplicate_key");
        }
        let fine =
            Policy::parse_json(br#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#)
                .unwrap();
        assert_eq!(fine.statements[0].effect, Effect::Deny);
    }

    #[test]
    fn the_document_round_trips_in_iam_spelling() {
        let document = json!({"Version": POLICY_VERSION, "Statement": [
            {"Sid": "Ci", "Effect": "Allow", "Action": ["credentials:Resolve"], "Resource": ["rk:acme/ci:credential/*"]}
        ]});
        assert_eq!(policy(document.clone()).document(), document);
    }

    proptest::proptest! {
        /// Issue 12 item 4: whatever a statement says first, repeating its `Effect`
        /// key is refused rather than resolved to either value.
        #[test]
        fn a_repeated_effect_is_refused_whichever_comes_last(
            first in proptest::bool::ANY,
            second in proptest::bool::ANY,
            statements in 1usize..4,
        ) {
            let effect = |allow: bool| if allow { "Allow" } else { "Deny" };
            let plain = r#"{"Effect":"Allow","Action":"*","Resource":"*"}"#;
            let mut list = vec![plain.to_owned(); statements - 1];
            list.push(format!(
                r#"{{"Effect":"{}","Action":"*","Resource":"*","Effect":"{}"}}"#,
                effect(first),
                effect(second)
            ));
            let text = format!(r#"{{"Statement":[{}]}}"#, list.join(","));
            let error = Policy::parse_json(text.as_bytes()).unwrap_err();
            proptest::prop_assert_eq!(error.code(), "duplicate_key");
        }

        #[test]
        fn parsing_never_panics(value in "\\PC{0,80}") {
            let _ = CredentialRef::parse(&value);
            let _ = parse_resource(&value);
            let _ = parse_action(&value);
        }
    }
}
