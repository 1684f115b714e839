//! The application: authorisation and business rules for every action, composed of
//! the store, the keyring and the clock. HTTP-agnostic — the REST handlers (and later
//! the console and proxy) call these functions with an authenticated [`Principal`].

pub mod access;
pub mod audit_log;
pub mod audit_writer;
pub mod caches;
pub mod credentials;
pub mod identity;
pub mod keys;
pub mod oidc;
pub mod resolve;
pub mod roles;
pub mod sync;
pub mod tokens;
pub mod trusts;
pub mod verify;

use std::sync::Arc;

use crate::audit::{AuditRecord, Outcome};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::domain::identity::Principal;
use crate::domain::{Error, Result};
use crate::metrics::Metrics;
use crate::outbound::OutboundClient;
use crate::providers::Providers;
use crate::store::SharedStore;
use crate::tokens::TokenCache;

/// Everything a request needs, shared by reference across the server.
pub struct App {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub keyring: Keyring,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The only client that reaches registries and token realms.
    pub outbound: OutboundClient,
    pub providers: Providers,
    pub tokens: TokenCache,
    /// Calls per second each cloud provider receives from the refresher, at most.
    pub provider_rate_limit: crate::tokens::ProviderRateLimit,
    /// Serialises master-key rotations within this process.
    pub rotation: tokio::sync::Mutex<()>,
    /// Held shared from sealing a secret until it is stored, and exclusively by a
    /// rotation while it swaps the current key: once the swap is done, no write sealed
    /// under the old key is still in flight, so the re-wrap pass sees every such row.
    pub seal_gate: tokio::sync::RwLock<()>,
    /// Where sync targets are written (file root, Kubernetes client, webhooks).
    pub sync: crate::sync::Pushers,
    /// Short-lived caches of tokens, workspaces, memberships and resolved credentials.
    pub caches: caches::Caches,
    /// Group commit for audit entries written on their own.
    pub audit_writer: audit_writer::AuditWriter,
    /// OIDC issuers' signing keys, for the token exchange.
    pub oidc_keys: oidc::KeyCache,
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
        let outcome = match error {
            Error::Forbidden(_) | Error::NotFound(_) | Error::Unauthenticated(_) => Outcome::Denied,
            _ => Outcome::Failed,
        };
        let mut record = record
            .outcome(outcome)
            .detail(serde_json::json!({ "error": error.code() }));
        if record.workspace_id.is_none() {
            record.workspace_id = self.visible_workspace_id(&record).await;
        }
        if let Err(audit_error) = self.audit_writer.append(record).await {
            tracing::error!(error.code = audit_error.code(), "audit.append_failed");
        }
    }

    /// The id of the record's workspace if its actor is a member (or a workload role of
    /// it), so the workspace's admins see failed and denied attempts there; a workspace the actor cannot see
    /// stays unlinked, so the entry reveals nothing about it to anyone else.
    async fn visible_workspace_id(&self, record: &AuditRecord) -> Option<String> {
        let workspace = self
            .store
            .workspace_by_name(record.workspace.as_deref()?)
            .await
            .ok()??;
        // A workload role sees its own workspace, so its admins see its denials there.
        if let Some(role) = record
            .actor
            .strip_prefix(crate::domain::policy::REFERENCE_SCHEME)
        {
            return role
                .split_once(':')
                .is_some_and(|(home, _)| home == workspace.name)
                .then_some(workspace.id);
        }
        let actor = self.store.user_by_name(&record.actor).await.ok()??;
        self.store
            .role_of(&workspace.id, &actor.id)
            .await
            .ok()?
            .map(|_| workspace.id)
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

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
