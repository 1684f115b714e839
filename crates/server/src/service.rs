//! The application: authorisation and business rules for every action, composed of
//! the store, the keyring and the clock. HTTP-agnostic — the REST handlers, the
//! console and the proxy call these functions with an authenticated [`Principal`];
//! they return `domain::Result` and never choose a status code.
//!
//! [`App::audited`] runs an action and, when it fails, appends an entry on its own
//! (best effort): `denied` for `Forbidden`, `Hidden` and `Unauthenticated`,
//! `not_found` for `NotFound`, else `failed`, with the error's code and reason, in the
//! workspace the record names whenever that workspace exists, so its admins see
//! outsiders' and removed members' attempts too.

pub mod access;
pub mod audit_log;
pub mod audit_writer;
pub mod aws_secrets;
pub mod caches;
pub mod credentials;
pub mod grants;
pub mod identity;
pub mod keys;
pub mod lease_worker;
pub mod login_check;
pub mod oidc;
pub mod operations;
pub mod registry_tokens;
pub mod resolve;
pub mod roles;
pub mod sign_outs;
pub mod sync_targets;
pub mod trusts;
pub mod users;

use std::sync::Arc;

use crate::audit::{AuditRecord, Outcome};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::domain::identity::Principal;
use crate::domain::{Error, Result};
use crate::login_cache::LoginCache;
use crate::metrics::Metrics;
use crate::outbound::OutboundClient;
use crate::providers::Providers;
use crate::store::SharedStore;

/// Everything a request needs, shared by reference across the server.
pub struct App {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub keyring: Keyring,
    /// Where the keyring lives (key file or AWS KMS), as this server last loaded it.
    pub key_home: keys::home::HomeState,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The only client that reaches registries and token realms.
    pub outbound: OutboundClient,
    pub providers: Providers,
    pub tokens: LoginCache,
    /// Calls per second each cloud provider receives from the refresher, at most.
    pub provider_rate_limit: crate::login_cache::ProviderRateLimit,
    /// Serialises master-key rotations within this process.
    pub rotation: tokio::sync::Mutex<()>,
    /// Held shared from sealing a secret until it is stored, and exclusively by a
    /// rotation while it swaps the current key: once the swap is done, no write sealed
    /// under the old key is still in flight, so the re-wrap pass sees every such row.
    pub seal_gate: tokio::sync::RwLock<()>,
    /// Where sync targets are written (file root, Kubernetes client, webhooks).
    pub sync: crate::push::Pushers,
    /// Short-lived caches of tokens, workspaces, memberships and resolved credentials.
    pub caches: caches::Caches,
    /// Group commit for audit entries written on their own.
    pub audit_writer: audit_writer::AuditWriter,
    /// OIDC issuers' signing keys, for the token exchange.
    pub oidc_keys: oidc::KeyCache,
    /// Logins read from Secrets Manager, for at most `aws_secrets::SOURCE_CACHE_MS`.
    pub aws_secrets: aws_secrets::SourceCache,
    /// Console sessions signed out on any replica.
    pub sign_outs: sign_outs::SignOuts,
}

impl App {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn record(&self, principal: Option<&Principal>, action: &'static str) -> AuditRecord {
        AuditRecord::new(self.now(), principal, action)
    }

    /// Records a failed or denied action. Best effort: the action has failed already,
    /// and the caller returns that failure whatever happens here.
    pub async fn record_failure(&self, record: AuditRecord, error: &Error) {
        // The store itself is out of reach or full: the entry could not be written
        // either, and trying would only keep the client waiting for a second time-out.
        if let Error::Unavailable { code, .. } = error {
            if crate::store::STORE_UNAVAILABLE_CODES.contains(code) {
                tracing::debug!(error.code = code, "audit.failure_not_recorded");
                return;
            }
        }
        let mut record = record
            .outcome(failure_outcome(error))
            .detail(serde_json::json!({
                "error": error.code(),
                "reason": failure_reason(error),
            }));
        if record.workspace_id.is_none() {
            record.workspace_id = self.targeted_workspace_id(&record).await;
        }
        if let Err(audit_error) = self.audit_writer.append(record).await {
            tracing::error!(error.code = audit_error.code(), "audit.append_failed");
        }
    }

    /// The id of the workspace the record names, if it exists, so the workspace's
    /// admins see every failed or denied attempt on it — a removed member's, an
    /// outsider's, another workspace's role's — in `audit list --workspace` and the
    /// console. The entry tells its readers nothing they may not know: they administer
    /// that workspace, and the caller who was refused never sees the log.
    async fn targeted_workspace_id(&self, record: &AuditRecord) -> Option<String> {
        let workspace = access::workspace_by_name(self, record.workspace.as_deref()?)
            .await
            .ok()??;
        Some(workspace.id)
    }

    /// Runs an audited action: on failure, records the outcome and returns the error.
    pub async fn audited<T>(
        &self,
        record: AuditRecord,
        action: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = action.await;
        if let Err(error) = &result {
            self.record_failure(record, error).await;
        }
        result
    }
}

/// How a failure is recorded: refused (`denied`), nothing there (`not_found`) or
/// anything else (`failed`).
fn failure_outcome(error: &Error) -> Outcome {
    match error {
        Error::Forbidden(_) | Error::Hidden(_) | Error::Unauthenticated(_) => Outcome::Denied,
        Error::NotFound(_) => Outcome::NotFound,
        _ => Outcome::Failed,
    }
}

/// Why, in the audit log's words: what the admins reading it may know, which is more
/// than the caller was told (a hidden workspace is named as such); never internal
/// detail. User input in messages is echoed through `text::echo`; as a backstop for
/// what a provider or registry said (a URL with a signed query, user info), the reason
/// also goes through `text::without_secrets` before it is kept for good, and is cut
/// short like a target.
fn failure_reason(error: &Error) -> String {
    let reason = match error {
        Error::Hidden(what) => format!("{what} is not visible to the caller"),
        Error::Internal(_) => "internal error (see the server log)".to_owned(),
        other => other.to_string(),
    };
    crate::text::without_secrets(&reason)
        .chars()
        .take(crate::audit::TARGET_LIMIT * 2)
        .collect()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 item 19's backstop: a provider's message quoting a signed URL or user
    /// info is not kept in the append-only audit log as it was.
    #[test]
    fn failure_reasons_keep_no_query_or_user_info() {
        let reason = failure_reason(&Error::upstream(
            "aws_failed",
            "error sending request for url \
             (https://api.ecr.us-east-1.amazonaws.com/?X-Amz-Signature=SIGNATURE-CANARY)",
        ));
        assert!(!reason.contains("SIGNATURE-CANARY"), "{reason}");
        assert!(
            reason.contains("api.ecr.us-east-1.amazonaws.com"),
            "{reason}"
        );
        let reason = failure_reason(&Error::unavailable(
            "registry_unreachable",
            "cannot reach https://robot:PASSWORD-CANARY@registry.example.com/v2/",
        ));
        assert!(!reason.contains("PASSWORD-CANARY"), "{reason}");
        assert!(reason.contains("registry.example.com/v2/"), "{reason}");
        let long = failure_reason(&Error::unavailable("x", "a".repeat(10_000)));
        assert_eq!(long.chars().count(), crate::audit::TARGET_LIMIT * 2);
    }
}
