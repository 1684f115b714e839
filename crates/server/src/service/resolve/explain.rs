//! `resolve --explain` (issue 16): why a resolve picks the credential it picks, under
//! the same permissions as the resolve, without opening a secret or minting a token.
//!
//! The choice is the resolve's own (`best_credential`, or the named credential); the
//! candidates around it are the workspace's credentials for the same registry host,
//! each with whether its path prefix covers the repository and why it lost. For a
//! workload role every shown candidate carries its policy's decision (which statement
//! allowed or denied it), and a role sees only the candidates its policy allows, plus
//! the chosen one (whose name a refused resolve already tells it). Failures are audited
//! as `credential.explain`; an explanation that names no secret is not.

use std::sync::Arc;

use crate::domain::credential::Credential;
use crate::domain::identity::{Principal, WorkloadRole};
use crate::domain::policy::{
    credential_reference, role_reference, Action, CredentialFacts, Decision,
};
use crate::domain::Result;

use super::{aim, best_credential, named_credential, target, workspace_for, Aim, Request, Target};
use crate::service::App;

/// What an explained resolve would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It hands `chosen` out.
    Resolved,
    /// The caller's policy refuses `chosen`.
    Denied,
    /// No credential serves the request.
    NoMatch,
    /// The named credential serves another registry than the image's.
    Mismatch,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Resolved => "resolved",
            Outcome::Denied => "denied",
            Outcome::NoMatch => "no_match",
            Outcome::Mismatch => "mismatch",
        }
    }
}

/// A workload role's decision on one credential: `Decision` with the deciding
/// statement's `Sid`.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    pub sid: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub credential: Arc<Credential>,
    pub matches: bool,
    pub chosen: bool,
    pub reason: String,
    pub verdict: Option<Verdict>,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub workspace: String,
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub outcome: Outcome,
    pub chosen: Option<String>,
    pub reason: String,
    pub candidates: Vec<Candidate>,
}

/// Whether a credential with `prefix` serves `repository`: the rule of the store's
/// `best_credential_for` (the prefix is empty, or whole leading path components).
fn covers(prefix: &str, repository: &str) -> bool {
    let (prefix, repository) = (prefix.trim_matches('/'), repository.trim_matches('/'));
    prefix.is_empty()
        || repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn verdict(role: &WorkloadRole, credential: &Credential) -> Verdict {
    let decision = role.policy.evaluate(
        Action::Resolve,
        &CredentialFacts {
            workspace: &credential.workspace_name,
            name: &credential.name,
            id: &credential.id,
        },
    );
    let statement = match decision {
        Decision::Allow { statement } | Decision::ExplicitDeny { statement } => Some(statement),
        Decision::ImplicitDeny => None,
    };
    Verdict {
        sid: statement
            .and_then(|index| role.policy.statements.get(index))
            .and_then(|statement| statement.sid.clone()),
        decision,
    }
}

/// "statement 2 (Sid `NoProd`)" or "statement 2".
fn statement_name(verdict: &Verdict) -> String {
    let index = match verdict.decision {
        Decision::Allow { statement } | Decision::ExplicitDeny { statement } => statement,
        Decision::ImplicitDeny => return "no statement".to_owned(),
    };
    match &verdict.sid {
        Some(sid) => format!("statement {index} (Sid {sid})"),
        None => format!("statement {index}"),
    }
}

fn reference(credential: &Credential) -> String {
    credential_reference(&credential.workspace_name, &credential.name)
}

/// Explains what [`super::resolve`] would do for `request`, with its permission checks.
pub async fn explain(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    request: Request<'_>,
) -> Result<Explanation> {
    let Aim {
        named,
        workspace_name,
        record,
    } = aim(app, principal, workspace, &request, "credential.explain");
    app.audited(record, async {
        let target = target(&request, &app.config.outbound.http_registries)?;
        let named = named?;
        let workspace = workspace_for(app, principal, &workspace_name).await?;
        let (chosen, by_name) = match (&named, &target) {
            (Some(named), _) => (
                named_credential(app, &workspace.id, &named.name).await?,
                true,
            ),
            (None, Some(target)) => (best_credential(app, &workspace.id, target).await?, false),
            (None, None) => unreachable!("target() requires a reference without a target"),
        };
        let role = principal.role.as_ref();
        let mut candidates = Vec::new();
        if let Some(chosen) = &chosen {
            candidates.push(Candidate {
                credential: Arc::clone(chosen),
                matches: target
                    .as_ref()
                    .is_none_or(|target| chosen.registry_host == target.host),
                chosen: true,
                reason: if by_name {
                    "named by the reference".to_owned()
                } else {
                    chosen_reason(chosen, target.as_ref())
                },
                verdict: role.map(|role| verdict(role, chosen)),
            });
        }
        if let (Some(target), false) = (&target, by_name) {
            let mut others: Vec<Credential> = app
                .store
                .credentials(&workspace.id)
                .await?
                .into_iter()
                .filter(|credential| {
                    credential.registry_host == target.host
                        && chosen.as_ref().is_none_or(|chosen| chosen.id != credential.id)
                })
                .collect();
            // Longest prefix first, as the resolve ranks them.
            others.sort_by(|a, b| {
                b.path_prefix
                    .len()
                    .cmp(&a.path_prefix.len())
                    .then_with(|| a.name.cmp(&b.name))
            });
            for credential in others {
                let verdict = role.map(|role| verdict(role, &credential));
                if verdict
                    .as_ref()
                    .is_some_and(|verdict| !verdict.decision.allowed())
                {
                    continue;
                }
                let matches = covers(&credential.path_prefix, &target.repository);
                let reason = match (&chosen, matches) {
                    (_, false) => format!(
                        "its path prefix `{}` does not cover `{}`",
                        credential.path_prefix, target.repository
                    ),
                    (Some(chosen), true) if credential.path_prefix == chosen.path_prefix => format!(
                        "the same path prefix as {}, whose name sorts first",
                        chosen.name
                    ),
                    (Some(chosen), true) if credential.path_prefix.is_empty() => format!(
                        "serves all of {}, but {}'s path prefix `{}` is longer",
                        target.host, chosen.name, chosen.path_prefix
                    ),
                    (Some(chosen), true) => format!(
                        "its path prefix `{}` covers `{}`, but {}'s `{}` is longer",
                        credential.path_prefix, target.repository, chosen.name, chosen.path_prefix
                    ),
                    (None, true) => "covers the repository".to_owned(),
                };
                candidates.push(Candidate {
                    credential: Arc::new(credential),
                    matches,
                    chosen: false,
                    reason,
                    verdict,
                });
            }
        }
        let (outcome, reason) = match (&chosen, &named, &target) {
            (None, Some(named), _) => (
                Outcome::NoMatch,
                format!(
                    "no credential {} exists",
                    credential_reference(&workspace.name, &named.name)
                ),
            ),
            (None, None, Some(target)) => (
                Outcome::NoMatch,
                format!(
                    "no credential of {} for {} has a path prefix covering `{}` ({} with other prefixes)",
                    workspace.name,
                    target.host,
                    target.repository,
                    candidates.len()
                ),
            ),
            (None, None, None) => unreachable!("target() requires a reference without a target"),
            (Some(chosen), Some(_), Some(target)) if chosen.registry_host != target.host => (
                Outcome::Mismatch,
                format!(
                    "{} serves {}, not {}",
                    reference(chosen),
                    chosen.registry_host,
                    target.host
                ),
            ),
            (Some(chosen), _, _) => match &candidates[0].verdict {
                Some(verdict) if !verdict.decision.allowed() => (
                    Outcome::Denied,
                    format!(
                        "{} is the match, but {} of the policy of {} denies credentials:Resolve on it{}",
                        reference(chosen),
                        statement_name(verdict),
                        role.map_or_else(String::new, |role| role_reference(&role.workspace_name, &role.name)),
                        if verdict.decision == Decision::ImplicitDeny {
                            " (no statement allows it)"
                        } else {
                            ""
                        }
                    ),
                ),
                Some(verdict) => (
                    Outcome::Resolved,
                    format!(
                        "{}: {}; {} of the role's policy allows it",
                        reference(chosen),
                        candidates[0].reason,
                        statement_name(verdict)
                    ),
                ),
                None => (
                    Outcome::Resolved,
                    format!(
                        "{}: {}; the caller has the launch role in {}",
                        reference(chosen),
                        candidates[0].reason,
                        workspace.name
                    ),
                ),
            },
        };
        Ok(Explanation {
            workspace: workspace.name.clone(),
            registry: target.as_ref().map(|target| target.host.clone()),
            repository: target.as_ref().map(|target| target.repository.clone()),
            outcome,
            chosen: chosen.as_deref().map(reference),
            reason,
            candidates,
        })
    })
    .await
}

fn chosen_reason(chosen: &Credential, target: Option<&Target>) -> String {
    let Some(target) = target else {
        return "named by the reference".to_owned();
    };
    if chosen.path_prefix.is_empty() {
        format!(
            "serves all of {} (no path prefix), and no credential with a prefix covers `{}`",
            target.host, target.repository
        )
    } else {
        format!(
            "serves {} with the longest path prefix covering `{}`: `{}`",
            target.host, target.repository, chosen.path_prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    /// The same rule as the store's `covering_prefixes`: whole leading components.
    #[test]
    fn prefixes_cover_whole_leading_components() {
        assert!(covers("", "team/app"));
        assert!(covers("team", "team/app"));
        assert!(covers("team/app", "team/app"));
        assert!(covers("/team/", "team/app"));
        assert!(!covers("tea", "team/app"));
        assert!(!covers("team/app/x", "team/app"));
        assert!(!covers("team", ""));
    }
}
