//! Authenticating requests by API token, and limiting how fast one address may fail.
//!
//! [`Caller`] takes the client address from the connection. An address with
//! `FAILURES_PER_WINDOW` failures in the current minute gets 429 `rate_limited` before
//! its token is looked at. A missing or non-Bearer header is 401; otherwise
//! `service::identity::authenticate` decides, and an unknown, revoked or expired token
//! is 401, counted in `regkeeper_auth_failures_total`, recorded in the limiter and
//! logged as `auth.failed` with the address and reason — never the token. What the
//! caller may then do is decided per workspace by `service::access`. The limiter is in
//! memory, per process; the console uses the API's, the proxy has its own.

// `std::sync::Mutex` here (`.clippy.toml`): the failure counts are locked only to read
// or bump a counter; no guard is held across an `.await` (clippy's `await_holding_lock`
// would refuse one).
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::domain::identity::Principal;
use crate::domain::Error;
use crate::service::caches::CachedToken;
use crate::service::identity;

use super::error::ApiError;
use super::ApiState;

const WINDOW_MS: i64 = 60_000;
const FAILURES_PER_WINDOW: u32 = 30;
const TRACKED_ADDRESSES: usize = 10_000;

/// Counts authentication failures per client address in fixed one-minute windows.
#[derive(Default)]
pub struct AuthLimiter {
    failures: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl AuthLimiter {
    pub(crate) fn blocked(&self, address: IpAddr, now: i64) -> bool {
        let failures = self.failures.lock().expect("limiter lock poisoned");
        failures
            .get(&address)
            .is_some_and(|(start, count)| now - start < WINDOW_MS && *count >= FAILURES_PER_WINDOW)
    }

    pub(crate) fn record_failure(&self, address: IpAddr, now: i64) {
        let mut failures = self.failures.lock().expect("limiter lock poisoned");
        if failures.len() >= TRACKED_ADDRESSES {
            failures.retain(|_, (start, _)| now - *start < WINDOW_MS);
        }
        let entry = failures.entry(address).or_insert((now, 0));
        if now - entry.0 >= WINDOW_MS {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

/// The authenticated caller with the token's row as the token cache holds it (see
/// `identity::authenticated`), for `GET /api/v1/me`.
pub struct CallerToken(pub Arc<CachedToken>);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let cached = CallerToken::from_request_parts(parts, state).await?.0;
        Ok(Self(cached.principal.clone()))
    }
}

impl FromRequestParts<ApiState> for CallerToken {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let now = state.app.now();
        if state.limiter.blocked(address, now) {
            return Err(ApiError(Error::RateLimited(
                "too many failed authentications from this address; wait a minute".into(),
            ))
            .into_response());
        }
        let Some(token) = bearer(parts) else {
            state.app.metrics.auth_failures.inc();
            return Err(ApiError(Error::Unauthenticated(
                "send an API token as `Authorization: Bearer rk_…`",
            ))
            .into_response());
        };
        match identity::authenticated(&state.app, token).await {
            Ok(cached) => Ok(Self(cached)),
            Err(error @ Error::Unauthenticated(_)) => {
                state.app.metrics.auth_failures.inc();
                state.limiter.record_failure(address, now);
                tracing::info!(client.address = %address, reason = %error, "auth.failed");
                Err(ApiError(error).into_response())
            }
            Err(error) => Err(ApiError(error).into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = AuthLimiter::default();
        let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..FAILURES_PER_WINDOW {
            assert!(!limiter.blocked(address, 1_000));
            limiter.record_failure(address, 1_000);
        }
        assert!(limiter.blocked(address, 1_000));
        assert!(!limiter.blocked(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1_000));
        assert!(!limiter.blocked(address, 1_000 + WINDOW_MS));
    }
}
