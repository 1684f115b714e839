//! Short-lived in-process caches of what every request reads: who a token belongs to,
//! workspaces, memberships, workload roles' cross-workspace grants and the credential
//! a resolve picks. Without them a resolve
//! costs four database reads before its one write; with them, a busy replica serves
//! repeated resolves from memory.
//!
//! Every entry lives at most [`CACHE_TTL`]. A change made through this replica clears
//! the affected cache at once (revoking a token, changing a role, a member or a
//! credential), so it takes effect here immediately. On PostgreSQL every replica also
//! hears of every committed change through [`crate::store::watch_changes`] (triggers
//! and LISTEN/NOTIFY) and clears the affected cache when the notification arrives —
//! milliseconds after the commit —, and clears everything whenever its subscription
//! is established or lost; `CACHE_TTL` remains the bound when notifications are lost
//! without the connection being seen to drop, or when a lookup that read the database
//! before the commit stores its answer after the notification. An API token's expiry
//! and revocation times are checked against the clock on every request, cached or not.
//!
//! Invalidation is coarse: a change clears the whole affected cache, on every replica.
//! The in-process cache of minted logins is not one of these: it holds logins,
//! not permissions, hears of no change, and every resolve passes the access checks
//! first.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use crate::domain::credential::Credential;
use crate::domain::identity::{Principal, Role};
use crate::store::{ApiTokenRow, WorkspaceRow};

/// Hashes the keys: foldhash's keyed quality hasher, seeded per cache, rather than the
/// standard library's SipHash, which took a tenth of the CPU of a resolve that misses
/// (a new image: its key is hashed on the lookup, the insert and moka's housekeeping).
type Hasher = foldhash::quality::RandomState;

/// How long another replica's change can go unnoticed here.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
const CAPACITY: u64 = 100_000;

/// An authenticated token: its row (for expiry, revocation and last use) and the
/// principal built from it, a workload role's policy already parsed.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub row: ApiTokenRow,
    pub principal: Principal,
}

pub struct Caches {
    /// By token hash.
    pub tokens: Cache<String, Arc<CachedToken>, Hasher>,
    /// By name; `None` for a workspace that does not exist.
    pub workspaces: Cache<String, Option<WorkspaceRow>, Hasher>,
    /// By (workspace id, user id); `None` for a non-member.
    pub memberships: Cache<(String, String), Option<Role>, Hasher>,
    /// By (workspace id, workload role id): whether the role holds a grant in force
    /// there. Grants, memberships and users are identities, so every change that can
    /// end a grant clears this too.
    pub role_grants: Cache<(String, String), bool, Hasher>,
    /// By (workspace id, registry host, repository): the best credential, if any. Async,
    /// so that concurrent misses for one key wait for a single lookup instead of all
    /// querying the database when the entry expires.
    pub best_credentials:
        moka::future::Cache<(String, String, String), Option<Arc<Credential>>, Hasher>,
    /// By (workspace id, credential name).
    pub named_credentials: moka::future::Cache<(String, String), Option<Arc<Credential>>, Hasher>,
}

fn cache<K, V>() -> Cache<K, V, Hasher>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(CACHE_TTL)
        .build_with_hasher(Hasher::default())
}

fn loading_cache<K, V>() -> moka::future::Cache<K, V, Hasher>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::future::Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(CACHE_TTL)
        .build_with_hasher(Hasher::default())
}

/// The error of a lookup that several waiters shared.
pub fn shared_error(error: Arc<crate::domain::Error>) -> crate::domain::Error {
    match &*error {
        crate::domain::Error::Internal(detail) => crate::domain::Error::Internal(detail.clone()),
        other => other.to_internal("a shared lookup failed"),
    }
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            tokens: cache(),
            workspaces: cache(),
            memberships: cache(),
            role_grants: cache(),
            best_credentials: loading_cache(),
            named_credentials: loading_cache(),
        }
    }
}

impl Caches {
    /// After a change to users, tokens, workload roles, their grants, workspaces or
    /// memberships.
    pub fn forget_identities(&self) {
        self.tokens.invalidate_all();
        self.workspaces.invalidate_all();
        self.memberships.invalidate_all();
        self.role_grants.invalidate_all();
    }

    /// After a change to any credential (its secret, name, registry or existence).
    pub fn forget_credentials(&self) {
        self.best_credentials.invalidate_all();
        self.named_credentials.invalidate_all();
    }

    /// After a change the database announced (another replica's, or this one's own).
    pub fn forget(&self, change: crate::store::Change) {
        match change {
            crate::store::Change::Identities => self.forget_identities(),
            crate::store::Change::Credentials => self.forget_credentials(),
            crate::store::Change::SignOut(_) => {}
            crate::store::Change::Everything => {
                self.forget_identities();
                self.forget_credentials();
            }
        }
    }
}
