//! Reading and verifying the audit log.

use crate::audit::{verify_chain, AuditRow};
use crate::domain::identity::{Principal, Role};
use crate::domain::Result;
use crate::store::AuditQuery;

use super::access::{require, require_site_admin};
use super::App;

const VERIFY_PAGE: i64 = 1000;
pub const MAX_LIST_LIMIT: i64 = 1000;

/// The newest entries of one workspace (for its admins) or of everything (site administrators).
pub async fn list(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>> {
    let workspace_id = match workspace {
        Some(name) => Some(
            require(
                app,
                principal,
                Some(name),
                Role::Admin,
                "reading the audit log",
            )
            .await?
            .workspace
            .id,
        ),
        None => {
            require_site_admin(principal, "reading the whole audit log")?;
            None
        }
    };
    app.store
        .audit_entries(&AuditQuery {
            workspace_id,
            after_seq: 0,
            limit: limit.clamp(1, MAX_LIST_LIMIT),
            newest_first: true,
        })
        .await
}

pub struct ChainCheck {
    pub checked: i64,
    pub broken_at: Option<(i64, String)>,
}

pub async fn check_chain(app: &App, principal: &Principal) -> Result<ChainCheck> {
    require_site_admin(principal, "verifying the audit log")?;
    let mut previous = None;
    let mut checked = 0;
    loop {
        let after_seq = previous.as_ref().map_or(0, |(seq, _): &(i64, String)| *seq);
        let page: Vec<AuditRow> = app
            .store
            .audit_entries(&AuditQuery {
                workspace_id: None,
                after_seq,
                limit: VERIFY_PAGE,
                newest_first: false,
            })
            .await?;
        if page.is_empty() {
            return Ok(ChainCheck {
                checked,
                broken_at: None,
            });
        }
        match verify_chain(&page, previous.clone()) {
            Ok((count, last)) => {
                checked += count;
                previous = last;
            }
            Err(broken) => {
                return Ok(ChainCheck {
                    checked,
                    broken_at: Some((broken.seq, broken.problem)),
                })
            }
        }
    }
}
