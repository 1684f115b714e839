//! Feeds arbitrary bytes to the kubelet credential provider: the request the kubelet
//! writes on standard input, and the resolve answer regkeeper sends back, through
//! `read_request` and `respond`.
//!
//! Input: `REQUEST \0 RESOLVED-JSON \0 NOW-SECONDS`, each part optional. `$S` in the
//! request stands for a secret canary, which no error or response may repeat.

#![no_main]

#[path = "common.rs"]
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::replace;
use libfuzzer_sys::fuzz_target;
use regkeeper_consumers::kubelet::{self, Lookup, NOT_FOUND_CACHE_SECONDS, PASSWORD_CACHE_SECONDS};
use regkeeper_wire::kubelet::{API_VERSION, RESPONSE_KIND};
use regkeeper_wire::Resolved;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const CANARY: &str = "sa-canary-5eb1d7";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |byte| *byte == 0);
    let request_bytes = replace(parts.next().unwrap_or_default(), b"$S", CANARY.as_bytes());
    let resolved: Option<Resolved> = parts
        .next()
        .and_then(|bytes| serde_json::from_slice(bytes).ok());
    let now_seconds: i64 = parts
        .next()
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1_767_225_600);
    let Some(now) = system_time(now_seconds) else {
        return;
    };

    let request = match kubelet::read_request(&mut request_bytes.as_slice()) {
        Ok(request) => request,
        Err(error) => {
            // The request may hold a service-account token: never quoted.
            assert!(!error.to_string().contains(CANARY), "{error}");
            return;
        }
    };
    let echoed = request.api_version.contains(CANARY) || request.kind.contains(CANARY);
    let not_found = kubelet::respond(&request, &Lookup::NotFound, now);
    match &not_found {
        Ok(response) => {
            assert_eq!(response.api_version, API_VERSION);
            assert_eq!(response.kind, RESPONSE_KIND);
            assert!(response.auth.is_empty());
            assert_eq!(
                response.cache_duration.as_deref().map(go_seconds),
                Some(Some(NOT_FOUND_CACHE_SECONDS))
            );
            let text = serde_json::to_string(response).expect("a response serialises");
            assert!(!text.contains(CANARY), "{text}");
            // The kubelet decodes responses strictly: a field it does not know (this one
            // was once sent) fails every pull on the node.
            assert!(!text.contains("serviceAccountTokenCacheType"), "{text}");
        }
        Err(error) => assert!(echoed || !error.to_string().contains(CANARY), "{error}"),
    }
    let Some(resolved) = resolved else {
        return;
    };
    let found = kubelet::respond(&request, &Lookup::Found(resolved.clone()), now);
    assert_eq!(found.is_ok(), not_found.is_ok());
    let Ok(response) = found else {
        return;
    };
    let text = serde_json::to_string(&response).expect("a response serialises");
    assert!(
        resolved.secret.expose().contains(CANARY)
            || resolved.username.contains(CANARY)
            || resolved.registry.contains(CANARY)
            || resolved
                .path_prefix
                .as_deref()
                .unwrap_or("")
                .contains(CANARY)
            || !text.contains(CANARY),
        "{text}"
    );
    // The login is offered only for the credential's registry (and prefix).
    assert_eq!(response.auth.len(), 1);
    let (key, auth) = response.auth.iter().next().expect("one login");
    assert!(key.starts_with(&resolved.registry), "{key}");
    assert_eq!(auth.password.expose(), resolved.secret.expose());
    // The cache never outlives the login.
    let seconds = response
        .cache_duration
        .as_deref()
        .and_then(go_seconds)
        .expect("a Go duration");
    let limits: Vec<&String> = [&resolved.safe_until, &resolved.expires_at]
        .into_iter()
        .flatten()
        .collect();
    if limits.is_empty() {
        assert_eq!(seconds, PASSWORD_CACHE_SECONDS);
    }
    let now_nanos = i128::from(now_seconds) * 1_000_000_000;
    for limit in limits {
        match OffsetDateTime::parse(limit, &Rfc3339) {
            Ok(at) => assert!(
                now_nanos + i128::from(seconds) * 1_000_000_000 <= at.unix_timestamp_nanos()
                    || seconds == 0,
                "{seconds}s from {now_seconds} outlives {limit}"
            ),
            Err(_) => assert_eq!(seconds, 0, "{limit}"),
        }
    }
});

fn system_time(seconds: i64) -> Option<SystemTime> {
    let offset = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

/// Reads back what `go_duration` prints: `45s`, `5m0s`, `7h59m30s`.
fn go_seconds(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut number = String::new();
    for character in text.chars() {
        match character {
            '0'..='9' => number.push(character),
            'h' | 'm' | 's' => {
                let value: u64 = number.parse().ok()?;
                number.clear();
                let unit = match character {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total = total.checked_add(value.checked_mul(unit)?)?;
            }
            _ => return None,
        }
    }
    number.is_empty().then_some(total)
}
