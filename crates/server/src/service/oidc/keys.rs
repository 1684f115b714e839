//! The signing keys of OIDC issuers: the discovery document and its `jwks_uri`, fetched
//! only through the guarded outbound client (https, address policy, size cap) and kept
//! per issuer, so one issuer's keys never verify another's tokens.
//!
//! Keys are kept for [`KEYS_TTL_MS`]; a token naming a `kid` the cached set lacks (a key
//! rotation) re-fetches at most once per [`REFETCH_INTERVAL_MS`] per issuer, so a flood
//! of forged `kid`s cannot turn regkeeper into a load generator against the issuer.
//!
//! Limits: the cache is per replica and is not told when another replica re-fetches;
//! a JWKS holding one key `jsonwebtoken` cannot parse is refused whole.

// `std::sync::Mutex` here (`.clippy.toml`): the key and discovery maps are locked only
// to read or replace an entry; the fetch that awaits holds the `tokio::sync::Mutex`
// `fetching` instead; no guard is held across an `.await` (clippy's `await_holding_lock`
// would refuse one).
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;
use url::Url;

use crate::outbound::{OutboundClient, OutboundError};

/// How long fetched keys are used before they are fetched again.
pub const KEYS_TTL_MS: i64 = 10 * 60 * 1000;
/// The least time between two fetches for one issuer when a `kid` is unknown.
pub const REFETCH_INTERVAL_MS: i64 = 60 * 1000;
/// Discovery documents are a few KiB.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// A JWKS holds a handful of keys; 256 KiB is far beyond any real one.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why an issuer's keys could not be had. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{0}")]
    Outbound(#[from] OutboundError),
    #[error("the issuer's {document} answered HTTP {status}")]
    Status { document: &'static str, status: u16 },
    #[error("the issuer's {document} is not valid: {message}")]
    Invalid {
        document: &'static str,
        message: String,
    },
    /// The discovery document names another issuer than the one it was fetched for.
    #[error("the discovery document's issuer is `{found}`, not the token's issuer")]
    IssuerMismatch { found: String },
}

struct Entry<T = JwkSet> {
    keys: Arc<T>,
    fetched_at: i64,
}

/// Per-issuer keys, shared by every request of this replica.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// One fetch at a time: concurrent exchanges for a cold issuer wait for the first
    /// fetch rather than each fetching.
    fetching: tokio::sync::Mutex<()>,
    /// Discovery documents for single sign-on, which needs the authorization and token
    /// endpoints; kept as long as keys.
    documents: Mutex<HashMap<String, Entry<serde_json::Value>>>,
}

impl KeyCache {
    fn cached(&self, issuer: &str) -> Option<(Arc<JwkSet>, i64)> {
        let entries = self.entries.lock().expect("key cache lock poisoned");
        entries
            .get(issuer)
            .map(|entry| (Arc::clone(&entry.keys), entry.fetched_at))
    }

    /// The issuer's keys, holding `kid` if the issuer has it. Fetched if none are
    /// cached or they are older than [`KEYS_TTL_MS`]; fetched again if they lack `kid`
    /// and the last fetch is at least [`REFETCH_INTERVAL_MS`] old.
    pub async fn keys(
        &self,
        outbound: &OutboundClient,
        issuer: &str,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Arc<JwkSet>, KeysError> {
        let usable = |keys: &JwkSet, fetched_at: i64| {
            now - fetched_at < KEYS_TTL_MS
                && (kid.is_none_or(|kid| keys.find(kid).is_some())
                    || now - fetched_at < REFETCH_INTERVAL_MS)
        };
        if let Some((keys, fetched_at)) = self.cached(issuer) {
            if usable(&keys, fetched_at) {
                return Ok(keys);
            }
        }
        let _fetching = self.fetching.lock().await;
        if let Some((keys, fetched_at)) = self.cached(issuer) {
            if usable(&keys, fetched_at) {
                return Ok(keys);
            }
        }
        let keys = Arc::new(fetch(outbound, issuer).await?);
        self.entries
            .lock()
            .expect("key cache lock poisoned")
            .insert(
                issuer.to_owned(),
                Entry {
                    keys: Arc::clone(&keys),
                    fetched_at: now,
                },
            );
        Ok(keys)
    }
}

impl KeyCache {
    /// The issuer's discovery document (its `issuer` checked to be exactly `issuer`),
    /// fetched if none is cached or it is older than [`KEYS_TTL_MS`].
    pub async fn discovery(
        &self,
        outbound: &OutboundClient,
        issuer: &str,
        now: i64,
    ) -> Result<Arc<serde_json::Value>, KeysError> {
        {
            let documents = self.documents.lock().expect("key cache lock poisoned");
            if let Some(entry) = documents.get(issuer) {
                if now - entry.fetched_at < KEYS_TTL_MS {
                    return Ok(Arc::clone(&entry.keys));
                }
            }
        }
        let document = Arc::new(discovery(outbound, issuer).await?);
        self.documents
            .lock()
            .expect("key cache lock poisoned")
            .insert(
                issuer.to_owned(),
                Entry {
                    keys: Arc::clone(&document),
                    fetched_at: now,
                },
            );
        Ok(document)
    }
}

pub(super) async fn get_json(
    outbound: &OutboundClient,
    url: Url,
    document: &'static str,
    limit: usize,
) -> Result<serde_json::Value, KeysError> {
    let response = outbound
        .send(
            outbound
                .request(reqwest::Method::GET, url)
                .header(reqwest::header::ACCEPT, "application/json"),
        )
        .await?;
    let status = response.status();
    if !status.is_success() {
        return Err(KeysError::Status {
            document,
            status: status.as_u16(),
        });
    }
    let body = OutboundClient::read_capped(response, limit).await?;
    serde_json::from_slice(&body).map_err(|error| KeysError::Invalid {
        document,
        message: error.to_string(),
    })
}

async fn discovery(
    outbound: &OutboundClient,
    issuer: &str,
) -> Result<serde_json::Value, KeysError> {
    let invalid = |document, message: &str| KeysError::Invalid {
        document,
        message: message.to_owned(),
    };
    let discovery_url = Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
    .map_err(|_| invalid("discovery document", "the issuer is not a URL"))?;
    let discovery = get_json(
        outbound,
        discovery_url,
        "discovery document",
        MAX_DISCOVERY_BYTES,
    )
    .await?;
    let found = discovery
        .get("issuer")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| invalid("discovery document", "it has no `issuer`"))?;
    if found != issuer {
        return Err(KeysError::IssuerMismatch {
            found: crate::text::echo(found),
        });
    }
    Ok(discovery)
}

async fn fetch(outbound: &OutboundClient, issuer: &str) -> Result<JwkSet, KeysError> {
    let invalid = |document, message: &str| KeysError::Invalid {
        document,
        message: message.to_owned(),
    };
    let discovery = discovery(outbound, issuer).await?;
    let jwks_uri = discovery
        .get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .and_then(|uri| Url::parse(uri).ok())
        .ok_or_else(|| invalid("discovery document", "it has no valid `jwks_uri`"))?;
    let jwks = get_json(outbound, jwks_uri, "JWKS", MAX_JWKS_BYTES).await?;
    serde_json::from_value(jwks).map_err(|error| KeysError::Invalid {
        document: "JWKS",
        message: error.to_string(),
    })
}
