//! Trusts of workload roles (issue 13 §1): added, listed and removed by admins of the
//! role's workspace, each change audited. Removing a trust deletes the tokens exchanged
//! under it in the same transaction, so the sessions it granted end with it.

use std::collections::BTreeMap;

use crate::domain::identity::Principal;
use crate::domain::trust::Trust;
use crate::domain::{Error, Result};
use crate::store::{RoleRow, TrustRow};

use super::roles::{administered, change_role};
use super::{new_id, App};

/// A stored trust with its conditions parsed back, and the role it belongs to.
pub struct TrustView {
    pub row: TrustRow,
    pub claims: BTreeMap<String, String>,
}

pub fn parse_claims(row: &TrustRow) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(&row.claims)
        .map_err(|error| Error::internal(format!("stored trust claims: {error}")))
}

fn view(row: TrustRow) -> Result<TrustView> {
    Ok(TrustView {
        claims: parse_claims(&row)?,
        row,
    })
}

pub async fn add(
    app: &App,
    principal: &Principal,
    workspace: &str,
    role: &str,
    trust: Trust,
) -> Result<(RoleRow, TrustView)> {
    change_role(
        app,
        principal,
        "role.trust_add",
        (workspace, role),
        "managing workload role trusts",
        |found, record| async move {
            let row = TrustRow {
                id: new_id(),
                role_id: found.id.clone(),
                issuer: trust.issuer.clone(),
                audience: trust.audience.clone(),
                subject: trust.subject.clone(),
                claims: serde_json::to_string(&trust.claims).expect("claims serialise"),
                max_session_seconds: trust.max_session_seconds,
                created_at: app.now(),
                created_by: principal.user_name.clone(),
            };
            let record = record.detail(serde_json::json!({
                "id": row.id,
                "issuer": row.issuer,
                "audience": row.audience,
                "subject": row.subject,
                "claims": trust.claims,
                "maxSessionSeconds": row.max_session_seconds,
            }));
            app.store.insert_trust(&row, record).await?;
            app.caches.forget_identities();
            Ok((found, view(row)?))
        },
    )
    .await
}

pub async fn list(
    app: &App,
    principal: &Principal,
    workspace: &str,
    role: &str,
) -> Result<(RoleRow, Vec<TrustView>)> {
    let (_, found) = administered(
        app,
        principal,
        workspace,
        role,
        "reading workload role trusts",
    )
    .await?;
    let trusts = app
        .store
        .trusts(&found.id)
        .await?
        .into_iter()
        .map(view)
        .collect::<Result<_>>()?;
    Ok((found, trusts))
}

pub async fn remove(
    app: &App,
    principal: &Principal,
    workspace: &str,
    role: &str,
    trust_id: &str,
) -> Result<()> {
    change_role(
        app,
        principal,
        "role.trust_remove",
        (workspace, role),
        "managing workload role trusts",
        |found, record| async move {
            let record = record.detail(serde_json::json!({ "id": trust_id }));
            if !app.store.delete_trust(&found.id, trust_id, record).await? {
                return Err(Error::NotFound(format!("trust {trust_id} of role {role}")));
            }
            // The tokens exchanged under it are gone; no cache may keep them alive.
            app.caches.forget_identities();
            Ok(())
        },
    )
    .await
}
