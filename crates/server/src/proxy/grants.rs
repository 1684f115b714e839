//! Grants: when the upstream last confirmed that a credential (at its current secret
//! version) may read a digest in a repository. A cached blob or manifest is served to a
//! caller only on a grant of the very credential that caller resolved, confirmed within
//! [`GRANT_FRESH_MS`]; otherwise the proxy asks the upstream first.
//!
//! With a cache every replica shares (`shared_cache`, on S3) the grants are shared too:
//! each confirmation is also written to the database (`proxy_grants`, keyed by the
//! SHA-256 of the five values, so the table names nothing), and a replica that has none
//! fresh in memory reads the database before asking the upstream. So a grant confirmed
//! on one replica serves on another within its window. The write is throttled: a
//! confirmation is written when the one last written for that grant is older than
//! [`WRITE_EVERY_MS`], so another replica may see a grant up to that much older than it
//! is — it then expires there sooner, never later. Without a shared cache the grants
//! stay in memory, as the cache they guard does.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::store::SharedStore;

use super::upstream::Session;

/// How long the upstream's word that a credential may read a digest is taken as is.
pub const GRANT_FRESH_MS: i64 = 60_000;
/// A confirmation newer than the one last written by this long is written again.
const WRITE_EVERY_MS: i64 = 10_000;
/// Grants older than this are pruned from the database (by the shared cache's sweep).
pub const GRANT_KEPT_MS: i64 = 24 * 3_600 * 1_000;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GrantKey {
    digest: String,
    credential_id: String,
    secret_version: i64,
    host: String,
    repository: String,
}

impl GrantKey {
    pub fn new(digest: &str, session: &Session) -> Self {
        Self {
            digest: digest.to_owned(),
            credential_id: session.credential.id.clone(),
            secret_version: session.credential.secret_version,
            host: session.host.clone(),
            repository: session.repository.clone(),
        }
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The key of the grant's database row.
    fn stored(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.digest.as_str(),
            self.credential_id.as_str(),
            &self.secret_version.to_string(),
            self.host.as_str(),
            self.repository.as_str(),
        ] {
            // Length-prefixed, so no two different keys hash the same text.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// The grants, in memory and (with a shared cache) in the database. Shared by blobs
/// and manifests.
#[derive(Clone)]
pub struct Grants {
    /// When the upstream last confirmed each grant, as this replica knows.
    confirmed: moka::sync::Cache<GrantKey, i64>,
    /// When this replica last wrote each grant to the database.
    written: moka::sync::Cache<GrantKey, i64>,
    store: Option<SharedStore>,
}

impl Grants {
    /// Grants in memory only, or shared through `store`.
    pub fn new(store: Option<SharedStore>) -> Self {
        let cache = || {
            moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(std::time::Duration::from_secs(24 * 3_600))
                .build()
        };
        Self {
            confirmed: cache(),
            written: cache(),
            store,
        }
    }

    /// Records that the upstream confirmed the grant at `now`.
    pub fn record(&self, digest: &str, session: &Session, now: i64) {
        self.record_key(GrantKey::new(digest, session), now);
    }

    /// Records a confirmation; the database write (if any) runs in the background, as
    /// the caller cannot wait (a body's last chunk is on its way).
    pub fn record_key(&self, key: GrantKey, now: i64) {
        self.confirmed.insert(key.clone(), now);
        let Some(store) = &self.store else {
            return;
        };
        if self
            .written
            .get(&key)
            .is_some_and(|written| now - written < WRITE_EVERY_MS)
        {
            return;
        }
        self.written.insert(key.clone(), now);
        let store = Arc::clone(store);
        let write = async move {
            if let Err(error) = store.record_proxy_grant(&key.stored(), now).await {
                tracing::warn!(error.code = error.code(), "proxy.grant_write_failed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(write)),
            Err(_) => tracing::warn!("proxy.grant_write_without_runtime"),
        }
    }

    /// When the upstream last confirmed the grant, as far as this replica can tell: its
    /// own memory when that is fresh at `now`, else the newer of memory and database. A
    /// database that cannot be read counts as holding nothing (the upstream is asked).
    pub async fn last(&self, digest: &str, session: &Session, now: i64) -> Option<i64> {
        let key = GrantKey::new(digest, session);
        let local = self.confirmed.get(&key);
        if local.is_some_and(|confirmed| now - confirmed < GRANT_FRESH_MS) {
            return local;
        }
        let Some(store) = &self.store else {
            return local;
        };
        let stored = match store.proxy_grant(&key.stored()).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(error.code = error.code(), "proxy.grant_read_failed");
                None
            }
        };
        let newest = local.max(stored);
        if let Some(newest) = newest.filter(|newest| Some(*newest) != local) {
            self.confirmed.insert(key, newest);
        }
        newest
    }

    /// Whether the upstream confirmed recently that this session may read `digest`.
    pub async fn fresh(&self, digest: &str, session: &Session, now: i64) -> bool {
        self.last(digest, session, now)
            .await
            .is_some_and(|confirmed| now - confirmed < GRANT_FRESH_MS)
    }
}
