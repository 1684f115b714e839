//! Domain values shaped as wire types. The secret has no field here to go into.

use regkeeper_wire as wire;

use crate::audit::AuditRow;
use crate::clock::format_timestamp;
use crate::domain::credential::Credential;
use crate::domain::identity::{personal_workspace_name, Role};
use crate::store::{ApiTokenRow, MemberRow, UserRow, WorkspaceRow};

pub fn credential(credential: &Credential) -> wire::Credential {
    wire::Credential {
        id: credential.id.clone(),
        name: credential.name.clone(),
        workspace: credential.workspace_name.clone(),
        kind: credential.kind.as_str().to_owned(),
        auth_method: credential.auth_method.as_str().to_owned(),
        registry: credential.registry_host.clone(),
        path_prefix: credential.path_prefix.clone(),
        username: credential.username.clone(),
        role_arn: credential.settings.role_arn.clone(),
        external_id: credential.settings.external_id.clone(),
        aws_region: credential.settings.aws_region.clone(),
        azure_tenant_id: credential.settings.azure_tenant_id.clone(),
        aws_secret: credential
            .settings
            .aws_secret
            .as_ref()
            .map(|source| source.secret_id.clone()),
        aws_identity: credential
            .settings
            .aws_secret
            .as_ref()
            .map(|source| source.identity_name.clone()),
        aws_secret_keys: credential
            .settings
            .aws_secret
            .as_ref()
            .map(|source| format!("{},{}", source.username_key, source.password_key)),
        has_secret: credential.sealed.is_some(),
        secret_version: credential.secret_version,
        verification: wire::Verification {
            status: credential.verification.status.as_str().to_owned(),
            checked_at: credential.verification.checked_at.map(format_timestamp),
            message: credential.verification.message.clone(),
        },
        token: credential.token.as_ref().map(|token| wire::TokenStatus {
            status: token.status.as_str().to_owned(),
            expires_at: token.expires_at.map(format_timestamp),
            refresh_at: format_timestamp(token.refresh_at),
            last_error: token.last_error.clone(),
        }),
        created_at: format_timestamp(credential.created_at),
        updated_at: format_timestamp(credential.updated_at),
        created_by: credential.created_by.clone(),
        origin: credential.origin.as_str().to_owned(),
    }
}

pub fn user(user: &UserRow) -> wire::User {
    wire::User {
        name: user.name.clone(),
        admin: user.admin,
        personal_workspace: personal_workspace_name(&user.name),
        created_at: format_timestamp(user.created_at),
        disabled: user.disabled_at.is_some(),
    }
}

pub fn role_grant(grant: &crate::service::grants::GrantView) -> wire::RoleGrant {
    wire::RoleGrant {
        role: grant.role.clone(),
        status: grant.status.as_str().to_owned(),
        granted_by: grant.granted_by.clone(),
        granted_at: grant.granted_at.map(format_timestamp),
        allows: grant.allows.clone(),
    }
}

pub fn workspace(workspace: &WorkspaceRow, role: Role) -> wire::Workspace {
    wire::Workspace {
        name: workspace.name.clone(),
        kind: workspace.kind.as_str().to_owned(),
        role: role.as_str().to_owned(),
        created_at: format_timestamp(workspace.created_at),
    }
}

pub fn member(member: &MemberRow) -> wire::Member {
    wire::Member {
        user: member.user_name.clone(),
        role: member.role.as_str().to_owned(),
        added_at: format_timestamp(member.created_at),
    }
}

pub fn api_token(token: &ApiTokenRow) -> wire::ApiToken {
    wire::ApiToken {
        id: token.id.clone(),
        name: token.name.clone(),
        prefix: token.display_prefix.clone(),
        created_at: format_timestamp(token.created_at),
        expires_at: token.expires_at.map(format_timestamp),
        last_used_at: token.last_used_at.map(format_timestamp),
        revoked_at: token.revoked_at.map(format_timestamp),
    }
}

pub fn audit_entry(row: &AuditRow) -> wire::AuditEntry {
    wire::AuditEntry {
        seq: row.seq,
        at: format_timestamp(row.at),
        actor: row.actor.clone(),
        action: row.action.clone(),
        workspace: row.workspace.clone(),
        target: row.target.clone(),
        outcome: row.outcome.clone(),
        detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null),
        hash: row.hash.clone(),
    }
}

/// The one response that carries a registry secret, to an authorised caller.
pub fn resolved(resolution: &crate::service::resolve::Resolution, now: i64) -> wire::Resolved {
    let credential = &resolution.credential;
    let login = &resolution.login;
    wire::Resolved {
        username: login.username.clone(),
        secret: wire::Sensitive::new(secrecy::ExposeSecret::expose_secret(&login.secret)),
        expires_at: login.expires_at.map(format_timestamp),
        registry: credential.registry_host.clone(),
        path_prefix: (!credential.path_prefix.is_empty()).then(|| credential.path_prefix.clone()),
        reference: crate::domain::policy::credential_reference(
            &credential.workspace_name,
            &credential.name,
        ),
        safe_until: login
            .expires_at
            .map(|expires_at| crate::login_cache::safe_until(login.issued_at, expires_at, now))
            .map(format_timestamp),
    }
}

pub fn resolve_explanation(
    explanation: &crate::service::resolve::Explanation,
) -> wire::ResolveExplanation {
    wire::ResolveExplanation {
        workspace: explanation.workspace.clone(),
        registry: explanation.registry.clone(),
        repository: explanation.repository.clone(),
        outcome: explanation.outcome.as_str().to_owned(),
        chosen: explanation.chosen.clone(),
        reason: explanation.reason.clone(),
        candidates: explanation
            .candidates
            .iter()
            .map(|candidate| {
                let credential = &candidate.credential;
                wire::ResolveCandidate {
                    reference: crate::domain::policy::credential_reference(
                        &credential.workspace_name,
                        &credential.name,
                    ),
                    kind: credential.kind.as_str().to_owned(),
                    registry: credential.registry_host.clone(),
                    path_prefix: credential.path_prefix.clone(),
                    matches: candidate.matches,
                    chosen: candidate.chosen,
                    reason: candidate.reason.clone(),
                    token_status: credential
                        .token
                        .as_ref()
                        .map(|token| token.status.as_str().to_owned()),
                    policy: candidate.verdict.as_ref().map(policy_verdict),
                }
            })
            .collect(),
    }
}

fn policy_verdict(verdict: &crate::service::resolve::Verdict) -> wire::PolicyVerdict {
    use crate::domain::policy::Decision;
    let (decision, statement) = match verdict.decision {
        Decision::Allow { statement } => ("allow", Some(statement)),
        Decision::ExplicitDeny { statement } => ("deny", Some(statement)),
        Decision::ImplicitDeny => ("implicit_deny", None),
    };
    wire::PolicyVerdict {
        decision: decision.to_owned(),
        statement,
        sid: verdict.sid.clone(),
    }
}

pub fn role(role: &crate::service::roles::RoleView) -> wire::Role {
    let row = &role.row;
    wire::Role {
        name: row.name.clone(),
        workspace: row.workspace_name.clone(),
        reference: crate::domain::policy::role_reference(&row.workspace_name, &row.name),
        description: row.description.clone(),
        policy: role.policy.document(),
        bindings: role
            .policy
            .statements
            .iter()
            .flat_map(|statement| statement.resources.iter())
            .filter_map(|resource| {
                Some(wire::PolicyBinding {
                    resource: resource.pattern.clone(),
                    credential_id: resource.credential_id.clone()?,
                })
            })
            .collect(),
        created_at: format_timestamp(row.created_at),
        updated_at: format_timestamp(row.updated_at),
        created_by: row.created_by.clone(),
    }
}
