//! The cache of minted registry logins. A login is refreshed ahead of its expiry (at
//! about two thirds of its lifetime, with jitter); until the refresh succeeds, the last
//! good login is served — but never past its real expiry. One mint per shared
//! identity at a time (single flight), whatever the number of callers. A mint fails
//! with a domain error: the provider's failure in the API's terms, or the store's own
//! (a database out of reach is a 503 `database_unavailable`, never a provider's code).
//!
//! Entries are keyed by shared identity and never evicted (one per cloud identity in
//! use). Single flight is per process: a per-key async mutex is held across the mint
//! closure. Across replicas the `registry_tokens` lease does that job
//! (`service::registry_tokens`). Time comes from the injected `Clock`. This module
//! knows nothing of credentials, providers or the store beyond the closure it is given.
//!
//! Nobody tells it about another replica's refresh. A replica serves what it holds
//! until its own refresh point, then the next lookup reads the database row (a read,
//! not a provider call). Only `adopt` (a sync push) takes a newer stored token earlier.

// `std::sync::Mutex` here (`.clippy.toml`): the map of per-key slots is locked only to
// look a slot up; the slots themselves are `tokio::sync::Mutex`es, held across the mint;
// no guard is held across an `.await` (clippy's `await_holding_lock` would refuse one).
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use rand::Rng;

use crate::clock::Clock;
use crate::domain::credential::Timestamp;
use crate::domain::Result;
use crate::providers::RegistryLogin;

/// Fraction of a token's lifetime after which it is refreshed.
const REFRESH_NUMERATOR: i64 = 2;
const REFRESH_DENOMINATOR: i64 = 3;
/// Jitter around the refresh point, as a fraction of the lifetime (±5 %), so that
/// tokens minted together are not all refreshed together.
const JITTER_PERMILLE: i64 = 50;
/// A login is not handed out for less than this: a client needs time to use it.
pub const MINIMUM_REMAINING_MS: i64 = 30_000;

/// When a token issued at `issued_at` and expiring at `expires_at` should be
/// refreshed, given a jitter draw in `[-1000, 1000]` (per mille of ±JITTER).
pub fn refresh_at(issued_at: Timestamp, expires_at: Timestamp, jitter_draw: i64) -> Timestamp {
    let lifetime = (expires_at - issued_at).max(0);
    let base = issued_at + lifetime * REFRESH_NUMERATOR / REFRESH_DENOMINATOR;
    let jitter = lifetime * JITTER_PERMILLE / 1000 * jitter_draw.clamp(-1000, 1000) / 1000;
    (base + jitter).clamp(
        issued_at,
        expires_at - MINIMUM_REMAINING_MS.min(lifetime / 4),
    )
}

/// Until when a consumer may cache a login that expires at `expires_at`: the earliest
/// refresh point its jitter allows, or, once that has passed (the provider is failing
/// and the last good token is being served), at most a minute ahead and never closer
/// to expiry than [`MINIMUM_REMAINING_MS`].
pub fn safe_until(issued_at: Timestamp, expires_at: Timestamp, now: Timestamp) -> Timestamp {
    let earliest_refresh = refresh_at(issued_at, expires_at, -1000);
    if now < earliest_refresh {
        earliest_refresh
    } else {
        (now + 60_000)
            .min(expires_at - MINIMUM_REMAINING_MS)
            .max(now)
    }
}

/// The refresh point of a fresh login, with a random jitter draw.
pub fn jittered_refresh_at(login: &RegistryLogin) -> Timestamp {
    match login.expires_at {
        Some(expires_at) => {
            let draw = rand::thread_rng().gen_range(-1000..=1000);
            refresh_at(login.issued_at, expires_at, draw)
        }
        None => Timestamp::MAX,
    }
}

#[derive(Clone)]
struct Cached {
    login: RegistryLogin,
    refresh_at: Timestamp,
}

/// What a lookup found, for status reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFreshness {
    Fresh,
    /// Past its refresh point and the refresh failed; still valid.
    Stale,
    Expired,
}

pub struct LoginCache {
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

impl LoginCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut entries = self.entries.lock().expect("token cache lock poisoned");
        Arc::clone(entries.entry(key.to_owned()).or_default())
    }

    /// The cached login for `key` if it is fresh; otherwise mints one with `mint`.
    /// When minting fails, a login that is stale but unexpired is served instead.
    pub async fn get_or_mint<F, Fut>(
        &self,
        key: &str,
        mint: F,
    ) -> Result<(RegistryLogin, LoginFreshness)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<RegistryLogin>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        let now = self.clock.now();
        if let Some(entry) = cached.as_ref() {
            if now < entry.refresh_at {
                return Ok((entry.login.clone(), LoginFreshness::Fresh));
            }
        }
        match mint().await {
            Ok(login) => {
                let refresh_at = jittered_refresh_at(&login);
                *cached = Some(Cached {
                    login: login.clone(),
                    refresh_at,
                });
                Ok((login, LoginFreshness::Fresh))
            }
            Err(error) => match cached.as_ref() {
                Some(entry)
                    if entry
                        .login
                        .expires_at
                        .is_none_or(|expires_at| now + MINIMUM_REMAINING_MS < expires_at) =>
                {
                    tracing::warn!(
                        error.code = error.code(),
                        "token.refresh_failed_serving_stale"
                    );
                    Ok((entry.login.clone(), LoginFreshness::Stale))
                }
                _ => {
                    *cached = None;
                    Err(error)
                }
            },
        }
    }

    /// Replaces what is cached for `key` (after a background refresh).
    pub async fn put(&self, key: &str, login: RegistryLogin, refresh_at: Timestamp) {
        *self.slot(key).lock().await = Some(Cached { login, refresh_at });
    }

    /// Replaces what is cached for `key` only with a newer login (one issued later),
    /// so a token another replica refreshed is picked up without a provider call.
    pub async fn adopt(&self, key: &str, login: RegistryLogin, refresh_at: Timestamp) {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if cached
            .as_ref()
            .is_none_or(|entry| entry.login.issued_at < login.issued_at)
        {
            *cached = Some(Cached { login, refresh_at });
        }
    }

    /// Replaces a login the registry refused (issued at `refused_issued_at`) with one
    /// from `mint` — unless what is cached is already another login, which a request
    /// that saw the same refusal first has minted: then that one is returned.
    pub async fn replace_refused<F, Fut>(
        &self,
        key: &str,
        refused_issued_at: Timestamp,
        mint: F,
    ) -> Result<RegistryLogin>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<RegistryLogin>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(entry) = cached
            .as_ref()
            .filter(|entry| entry.login.issued_at != refused_issued_at)
        {
            return Ok(entry.login.clone());
        }
        match mint().await {
            Ok(login) => {
                let refresh_at = jittered_refresh_at(&login);
                *cached = Some(Cached {
                    login: login.clone(),
                    refresh_at,
                });
                Ok(login)
            }
            Err(error) => {
                *cached = None;
                Err(error)
            }
        }
    }

    /// Drops a login the registry refused, so the next lookup mints a new one.
    pub async fn invalidate(&self, key: &str) {
        *self.slot(key).lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use secrecy::SecretString;

    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::Error;

    const HOUR: i64 = 3_600_000;

    /// A provider's throttling, as the service hands it to the cache.
    fn throttled() -> Error {
        Error::unavailable(
            "aws_throttled",
            "AWS is throttling requests (Throttling); regkeeper will retry",
        )
    }

    fn login(issued_at: Timestamp, lifetime: i64, value: &str) -> RegistryLogin {
        RegistryLogin {
            username: "AWS".into(),
            secret: SecretString::from(value.to_owned()),
            issued_at,
            expires_at: Some(issued_at + lifetime),
        }
    }

    proptest! {
        #[test]
        fn safe_until_never_outlives_any_refresh_point_or_the_expiry(issued in 0i64..1_000_000_000_000, lifetime in 1i64..(48 * HOUR), offset in 0i64..(50 * HOUR), draw in -1000i64..=1000) {
            let expires = issued + lifetime;
            let now = issued + offset;
            let until = safe_until(issued, expires, now);
            prop_assert!(until >= now);
            if now < refresh_at(issued, expires, -1000) {
                prop_assert!(until <= refresh_at(issued, expires, draw));
            } else {
                prop_assert!(until <= now + 60_000);
                prop_assert!(until <= (expires - MINIMUM_REMAINING_MS).max(now));
            }
        }

        #[test]
        fn refresh_happens_inside_the_lifetime(issued in 0i64..1_000_000_000_000, lifetime in 1i64..(48 * HOUR), draw in -1000i64..=1000) {
            let at = refresh_at(issued, issued + lifetime, draw);
            prop_assert!(at >= issued);
            prop_assert!(at <= issued + lifetime);
            if lifetime >= 4 * MINIMUM_REMAINING_MS {
                prop_assert!(at <= issued + lifetime - MINIMUM_REMAINING_MS);
                let ideal = issued + lifetime * 2 / 3;
                prop_assert!((at - ideal).abs() <= lifetime / 20 + 1);
            }
        }
    }

    #[test]
    fn twelve_hour_tokens_refresh_near_eight_hours() {
        assert_eq!(refresh_at(0, 12 * HOUR, 0), 8 * HOUR);
        assert_eq!(refresh_at(0, 12 * HOUR, 1000), 8 * HOUR + 12 * HOUR / 20);
        assert_eq!(refresh_at(0, 12 * HOUR, -1000), 8 * HOUR - 12 * HOUR / 20);
    }

    #[tokio::test]
    async fn a_refused_login_is_replaced_once_however_many_saw_the_refusal() {
        let clock = Arc::new(ManualClock::new(1_000));
        let cache = LoginCache::new(clock.clone());
        let (refused, _) = cache
            .get_or_mint("id", || async { Ok(login(1_000, 12 * HOUR, "revoked")) })
            .await
            .unwrap();
        clock.advance(5_000);
        let replaced = cache
            .replace_refused("id", refused.issued_at, || async {
                Ok(login(6_000, 12 * HOUR, "new"))
            })
            .await
            .unwrap();
        assert_eq!(replaced.issued_at, 6_000);
        // A second request that saw the same refusal gets the new login, no mint.
        let again = cache
            .replace_refused("id", refused.issued_at, || async {
                panic!("minted twice for one refusal")
            })
            .await
            .unwrap();
        assert_eq!(again.issued_at, 6_000);
        // A failed replacement leaves nothing cached, so the refused login is not served.
        let error = cache
            .replace_refused("id", 6_000, || async { Err(throttled()) })
            .await;
        assert!(error.is_err());
        let (fresh, _) = cache
            .get_or_mint("id", || async { Ok(login(7_000, 12 * HOUR, "later")) })
            .await
            .unwrap();
        assert_eq!(fresh.issued_at, 7_000);
    }

    #[tokio::test]
    async fn serves_fresh_then_refreshes_then_serves_stale_until_expiry() {
        let clock = Arc::new(ManualClock::new(0));
        let cache = LoginCache::new(clock.clone());
        let (first, status) = cache
            .get_or_mint("id", || async { Ok(login(0, 12 * HOUR, "one")) })
            .await
            .unwrap();
        assert_eq!(status, LoginFreshness::Fresh);
        // Fresh: no mint happens.
        let (again, _) = cache
            .get_or_mint("id", || async { panic!("minted while fresh") })
            .await
            .unwrap();
        assert_eq!(again.expires_at, first.expires_at);
        // Past the refresh point the mint fails: the last good login is served.
        clock.advance(9 * HOUR);
        let (stale, status) = cache
            .get_or_mint("id", || async { Err(throttled()) })
            .await
            .unwrap();
        assert_eq!(status, LoginFreshness::Stale);
        assert_eq!(stale.expires_at, first.expires_at);
        // Never past its real expiry.
        clock.advance(3 * HOUR);
        let error = cache
            .get_or_mint("id", || async { Err(throttled()) })
            .await
            .unwrap_err();
        assert_eq!(error.code(), "aws_throttled");
        let now = clock.now();
        let (renewed, status) = cache
            .get_or_mint("id", || async move { Ok(login(now, 12 * HOUR, "two")) })
            .await
            .unwrap();
        assert_eq!(status, LoginFreshness::Fresh);
        assert_eq!(renewed.issued_at, now);
    }

    /// Issue 14 item 2: a store that fails during a mint is answered as the store's
    /// failure, with its status and code and without its detail, whatever the
    /// provider — never as a provider's error (`aws_failed`).
    #[tokio::test]
    async fn a_store_failure_while_minting_is_answered_as_the_store_failure() {
        let cache = LoginCache::new(Arc::new(ManualClock::new(0)));
        let error = cache
            .get_or_mint("acr:identity", || async {
                Err(Error::unavailable(
                    "database_unavailable",
                    "the database is unavailable; try again shortly",
                )
                .with_detail("pool timed out while waiting for an open connection"))
            })
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
        assert_eq!(error.code(), "database_unavailable");
        assert_eq!(
            error.to_string(),
            "the database is unavailable; try again shortly"
        );
        let error = cache
            .get_or_mint("gcr:identity", || async {
                Err(Error::internal("database: no such table: registry_tokens"))
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), "internal");
        assert!(!error.to_string().contains("registry_tokens"), "{error}");
    }
}

/// The first retry after a failed refresh waits this long, doubling per failure.
pub const BACKOFF_BASE_MS: i64 = 5_000;
/// Retries never wait longer than this, so service resumes soon after an outage.
pub const BACKOFF_CAP_MS: i64 = 15 * 60_000;

/// How long to wait before the next attempt after `failures` consecutive failures.
pub fn backoff(failures: i64) -> i64 {
    let exponent = u32::try_from((failures - 1).clamp(0, 30)).unwrap_or(30);
    BACKOFF_BASE_MS
        .saturating_mul(1_i64 << exponent)
        .min(BACKOFF_CAP_MS)
}

#[cfg(test)]
mod backoff_tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn doubles_from_five_seconds_up_to_fifteen_minutes() {
        assert_eq!(backoff(1), 5_000);
        assert_eq!(backoff(2), 10_000);
        assert_eq!(backoff(5), 80_000);
        assert_eq!(backoff(100), BACKOFF_CAP_MS);
    }

    proptest! {
        #[test]
        fn is_monotonic_and_capped(failures in 1i64..10_000) {
            prop_assert!(backoff(failures) <= BACKOFF_CAP_MS);
            prop_assert!(backoff(failures) >= BACKOFF_BASE_MS);
            prop_assert!(backoff(failures + 1) >= backoff(failures));
        }
    }
}

/// A token bucket per provider, on the injected clock, so a refresh storm (a fleet of
/// tokens minted together, a recovery after an outage) cannot hammer one cloud API.
pub struct ProviderRateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<&'static str, (f64, Timestamp)>>,
}

impl ProviderRateLimit {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call's allowance for `provider` at `now`, if there is one.
    pub fn try_acquire(&self, provider: &'static str, now: Timestamp) -> bool {
        let mut buckets = self.buckets.lock().expect("rate limit lock poisoned");
        let (tokens, last) = buckets.entry(provider).or_insert((self.burst, now));
        let elapsed_seconds = (now - *last).max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed_seconds * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod rate_limit_tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_steady_rate_per_provider() {
        let limit = ProviderRateLimit::new(2.0, 3.0);
        let granted = (0..10).filter(|_| limit.try_acquire("ecr", 0)).count();
        assert_eq!(granted, 3, "the burst");
        assert!(
            limit.try_acquire("acr", 0),
            "providers have separate buckets"
        );
        assert!(!limit.try_acquire("ecr", 400));
        assert!(limit.try_acquire("ecr", 500), "two per second");
        assert!(!limit.try_acquire("ecr", 500));
        let granted = (0..10).filter(|_| limit.try_acquire("ecr", 60_000)).count();
        assert_eq!(granted, 3, "never more than the burst after a pause");
    }
}
