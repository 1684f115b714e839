//! The audit record: who did what, when, with what outcome — never a secret. Entries
//! form a hash chain (each hash covers the previous one), so an edited, removed or
//! reordered entry is detected by [`verify_chain`].

use sha2::{Digest, Sha256};

use crate::credential::Timestamp;
use crate::identity::Principal;

/// The hash that the first entry chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest target an entry keeps: a name or reference is far shorter, and rejected
/// input (which may be anything up to the request body limit) is cut to this.
pub const TARGET_LIMIT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The caller was refused: no access to the workspace, too low a role, a policy
    /// that does not allow it, no valid credentials.
    Denied,
    /// The caller was allowed to look, and nothing matched (no credential for that
    /// image, no such name).
    NotFound,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Failed => "failed",
        }
    }
}

/// An entry to append. `detail` is a JSON object of non-secret facts (a type, a
/// registry host, an error code); callers must never put secret material in it.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: String,
    pub action: &'static str,
    pub workspace: Option<String>,
    pub workspace_id: Option<String>,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

impl AuditRecord {
    pub fn new(at: Timestamp, principal: Option<&Principal>, action: &'static str) -> Self {
        Self {
            at,
            actor: principal.map_or_else(|| "system".to_owned(), |p| p.user_name.clone()),
            action,
            workspace: None,
            workspace_id: None,
            target: None,
            outcome: Outcome::Success,
            detail: serde_json::json!({}),
        }
    }

    pub fn workspace(mut self, id: Option<&str>, name: &str) -> Self {
        self.workspace_id = id.map(str::to_owned);
        self.workspace = Some(name.to_owned());
        self
    }

    /// What the action was about: a name, or the input that named it, cut to
    /// [`TARGET_LIMIT`] characters and otherwise exact (it is escaped where it is
    /// shown). Input that may hold an address goes through
    /// [`crate::text::without_secrets`] first.
    pub fn target(mut self, target: impl AsRef<str>) -> Self {
        self.target = Some(target.as_ref().chars().take(TARGET_LIMIT).collect());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// A one-line reading of an entry's `detail` for tables and pages: a failure's reason
/// first, then every other fact as `key=value` (nested values, such as a role's
/// policy, elided as `…`; `--output json` and the API give them whole). Not escaped:
/// the table or page that shows it escapes it.
pub fn detail_summary(detail: &serde_json::Value) -> String {
    use serde_json::Value;
    let Some(facts) = detail.as_object() else {
        return String::new();
    };
    let reason = facts.get("reason").and_then(Value::as_str);
    let others = facts
        .iter()
        .filter(|(key, _)| key.as_str() != "reason")
        .filter_map(|(key, value)| match value {
            Value::Null => None,
            Value::String(text) if text.is_empty() => None,
            Value::String(text) => Some(format!("{key}={text}")),
            Value::Bool(_) | Value::Number(_) => Some(format!("{key}={value}")),
            Value::Array(_) | Value::Object(_) => Some(format!("{key}=…")),
        });
    reason
        .map(str::to_owned)
        .into_iter()
        .chain(others)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub workspace: Option<String>,
    pub workspace_id: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// Builds the next row of the chain after `previous` (`None` for the first).
    pub fn chained(record: AuditRecord, previous: Option<(i64, String)>) -> Self {
        let (seq, prev_hash) = match previous {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let mut row = Self {
            seq,
            at: record.at,
            actor: record.actor,
            action: record.action.to_owned(),
            workspace: record.workspace,
            workspace_id: record.workspace_id,
            target: record.target,
            outcome: record.outcome.as_str().to_owned(),
            detail: record.detail.to_string(),
            prev_hash,
            hash: String::new(),
        };
        row.hash = row.compute_hash();
        row
    }

    /// SHA-256 over the previous hash and every field, as one JSON array so that no
    /// two different entries can serialise alike.
    ///
    /// The array is serialised straight into the hasher (a tuple serialises as the same
    /// compact JSON array as `json!([...]).to_string()`, byte for byte): every resolve
    /// appends an entry, and building a `Value` tree and a string first cost an
    /// allocation per field.
    pub fn compute_hash(&self) -> String {
        let fields = (
            self.seq,
            self.at,
            &self.actor,
            &self.action,
            &self.workspace,
            &self.workspace_id,
            &self.target,
            &self.outcome,
            &self.detail,
        );
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(b"\n");
        serde_json::to_writer(&mut hasher, &fields)
            .expect("strings and integers serialise into a hasher");
        hex::encode(hasher.finalize())
    }
}

/// An entry's `seq` and `hash`: what the next entry must link to.
pub type ChainLink = (i64, String);

/// Where the chain first breaks and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: String,
}

/// Walks the rows in `seq` order and checks numbering, links and hashes. `previous`
/// is the last verified (seq, hash) before these rows, to verify in pages.
pub fn verify_chain<'a>(
    rows: impl IntoIterator<Item = &'a AuditRow>,
    previous: Option<ChainLink>,
) -> Result<(i64, Option<ChainLink>), ChainBreak> {
    let mut last = previous;
    let mut checked = 0;
    for row in rows {
        let (expected_seq, expected_prev) = match &last {
            Some((seq, hash)) => (seq + 1, hash.as_str()),
            None => (1, GENESIS_HASH),
        };
        if row.seq != expected_seq {
            return Err(ChainBreak {
                seq: row.seq,
                problem: format!("entry {expected_seq} is missing (found {} next)", row.seq),
            });
        }
        if row.prev_hash != expected_prev {
            return Err(ChainBreak {
                seq: row.seq,
                problem: format!("entry {} does not link to entry {}", row.seq, row.seq - 1),
            });
        }
        if row.compute_hash() != row.hash {
            return Err(ChainBreak {
                seq: row.seq,
                problem: format!("entry {} was altered after it was written", row.seq),
            });
        }
        checked += 1;
        last = Some((row.seq, row.hash.clone()));
    }
    Ok((checked, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(length: usize) -> Vec<AuditRow> {
        let mut rows: Vec<AuditRow> = Vec::new();
        for index in 0..length {
            let record = AuditRecord::new(1_000 + index as i64, None, "credential.create")
                .workspace(Some("ws-1"), "acme/ci")
                .target(format!("cred-{index}"));
            let previous = rows.last().map(|row| (row.seq, row.hash.clone()));
            rows.push(AuditRow::chained(record, previous));
        }
        rows
    }

    /// Issue 12 item 16 (d): the reason and facts of an entry read on one line.
    #[test]
    fn details_read_as_one_line() {
        assert_eq!(
            detail_summary(&serde_json::json!({
                "error": "not_found",
                "reason": "workspace acme/ci is not visible to the caller",
            })),
            "workspace acme/ci is not visible to the caller, error=not_found"
        );
        assert_eq!(
            detail_summary(&serde_json::json!({
                "id": "c1",
                "registry": "ghcr.io",
                "repository": null,
                "pathPrefix": "",
                "secretVersion": 2,
                "policy": {"Statement": []},
            })),
            "id=c1, policy=…, registry=ghcr.io, secretVersion=2"
        );
        assert_eq!(detail_summary(&serde_json::json!({})), "");
        assert_eq!(detail_summary(&serde_json::Value::Null), "");
    }

    /// The hash is the one entries were always written with: SHA-256 over the previous
    /// hash, a newline and the fields as one compact JSON array.
    #[test]
    fn hashes_cover_the_fields_as_one_json_array() {
        let mut row = chain(2).pop().unwrap();
        row.workspace = None;
        row.target = Some("quote \" and \\ and \u{1b} and é".into());
        row.detail = r#"{"id":"c1"}"#.into();
        let fields = serde_json::json!([
            row.seq,
            row.at,
            row.actor,
            row.action,
            row.workspace,
            row.workspace_id,
            row.target,
            row.outcome,
            row.detail,
        ]);
        let mut hasher = Sha256::new();
        hasher.update(row.prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(fields.to_string().as_bytes());
        assert_eq!(row.compute_hash(), hex::encode(hasher.finalize()));
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(5);
        assert_eq!(verify_chain(&rows, None).unwrap().0, 5);
        // In pages, continuing from the last verified entry.
        let (_, last) = verify_chain(&rows[..2], None).unwrap();
        assert_eq!(verify_chain(&rows[2..], last).unwrap().0, 3);
    }

    #[test]
    fn edits_removals_and_reordering_are_detected() {
        let mut altered = chain(5);
        altered[2].actor = "mallory".into();
        assert_eq!(verify_chain(&altered, None).unwrap_err().seq, 3);

        let mut removed = chain(5);
        removed.remove(1);
        assert_eq!(verify_chain(&removed, None).unwrap_err().seq, 3);

        let mut reordered = chain(5);
        reordered.swap(1, 2);
        assert!(verify_chain(&reordered, None).is_err());

        // Re-hashing an edited entry still breaks the link to the next one.
        let mut rehashed = chain(5);
        rehashed[2].outcome = "denied".into();
        rehashed[2].hash = rehashed[2].compute_hash();
        assert_eq!(verify_chain(&rehashed, None).unwrap_err().seq, 4);
    }
}
