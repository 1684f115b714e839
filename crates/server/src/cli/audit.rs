//! `regkeeper audit …`: the audit log as a table (details summarised) or JSON, and the
//! check of its hash chain, which fails the command when an entry does not verify.
//!
//! `audit list` has a DETAIL column (`audit::detail_summary`).

use anyhow::bail;
use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::output::{self, or_dash};
use super::{AuditCommand, OutputFormat};

pub(super) fn run(client: &Client, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List {
            workspace,
            limit,
            output,
        } => {
            let mut path = format!("/api/v1/audit?limit={limit}");
            if let Some(workspace) = &workspace {
                path.push_str(&format!("&workspace={}", segment(workspace)));
            }
            let list: wire::AuditList = client.get(&path)?;
            output::list(
                output.output,
                &list,
                &list.entries,
                &[
                    "SEQ",
                    "AT",
                    "ACTOR",
                    "ACTION",
                    "WORKSPACE",
                    "TARGET",
                    "OUTCOME",
                    "DETAIL",
                ],
                |entry| {
                    vec![
                        entry.seq.to_string(),
                        entry.at.clone(),
                        entry.actor.clone(),
                        entry.action.clone(),
                        or_dash(entry.workspace.as_deref()),
                        or_dash(entry.target.as_deref()),
                        entry.outcome.clone(),
                        or_dash(Some(&crate::audit::detail_summary(&entry.detail))),
                    ]
                },
            )
        }
        AuditCommand::Verify { output } => {
            let result: wire::AuditVerification = client.get("/api/v1/audit/verify")?;
            if output.output == OutputFormat::Json {
                output::json(&result)?;
            } else {
                output::line(&result.message);
            }
            if !result.ok {
                bail!(
                    "the audit log failed verification at entry {}",
                    result.first_bad_seq.unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}
