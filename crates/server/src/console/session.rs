//! The console's cookies: the session, sealed with a key derived from the master key
//! (no server-side session table: sessions survive restarts and work on every replica
//! that shares the key file), the CSRF tokens forms carry, and one-shot flash messages.
//! Pure functions of keys, values and time, so every rule is unit-tested here.

use std::fmt;
use subtle::ConstantTimeEq;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::{open_with_key, seal_with_key, MasterKeys};

pub const SESSION_COOKIE: &str = "regkeeper_session";
/// The pre-session double-submit token of the sign-in form.
pub const CSRF_COOKIE: &str = "regkeeper_csrf";
pub const FLASH_COOKIE: &str = "regkeeper_flash";
/// A single sign-on under way: its `state`, `nonce` and PKCE verifier.
pub const PENDING_COOKIE: &str = "regkeeper_sso";
/// Time enough to sign in at the identity provider, short enough that a stolen
/// cookie is soon useless.
pub const PENDING_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// Every console cookie is scoped to the console, so the REST API never receives one.
pub const COOKIE_PATH: &str = "/console";
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;
const FLASH_LIFETIME_SECONDS: i64 = 60;

const SESSION_LABEL: &str = "console-session";
const CSRF_LABEL: &str = "console-csrf";
const FLASH_LABEL: &str = "console-flash";
const SESSION_CONTEXT: &[u8] = b"regkeeper/console-session/v1";
const FLASH_CONTEXT: &[u8] = b"regkeeper/console-flash/v1";
const PENDING_LABEL: &str = "console-sso";
const PENDING_CONTEXT: &[u8] = b"regkeeper/console-sso/v1";
const SESSION_ID_BYTES: usize = 16;
const EXPIRY_BYTES: usize = 8;
const VERSION_BYTES: usize = 4;
/// Far longer than any token regkeeper issues or accepts; a longer "token" is refused
/// before it is hashed or sealed, which also keeps the cookie under browser limits.
pub const MAX_TOKEN_CHARS: usize = 512;
const MAX_COOKIE_CHARS: usize = 3000;
/// A flash message is a sentence or two; a longer one is cut to fit in a cookie.
const MAX_FLASH_CHARS: usize = 1000;

/// An open session: the API token it signs in with, re-authenticated on every request.
pub struct Session {
    token: SecretString,
    id: [u8; SESSION_ID_BYTES],
    key_version: u32,
    pub expires_at: i64,
}

impl Session {
    pub fn token(&self) -> &str {
        self.token.expose_secret()
    }

    /// The session's random id, which a sign-out records (`service::sign_outs`).
    pub fn id(&self) -> &[u8; SESSION_ID_BYTES] {
        &self.id
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "Session {{ token: [REDACTED], expires_at: {} }}",
            self.expires_at
        )
    }
}

/// Seals `token` into a session cookie value that expires 12 hours after `now`: the
/// master key version, then AES-256-GCM over the expiry, a random session id and the
/// token, under a key derived from that version. `None` only if the current version's
/// key cannot be derived, which a ready keyring never causes.
pub fn seal_session(keys: &MasterKeys, token: &str, now: i64) -> Option<String> {
    let version = keys.current_version();
    let key = keys.derived_key(version, SESSION_LABEL)?;
    let mut id = [0u8; SESSION_ID_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let expires_at = now.saturating_add(SESSION_LIFETIME_MS);
    let mut plaintext = Zeroizing::new(Vec::with_capacity(
        EXPIRY_BYTES + SESSION_ID_BYTES + token.len(),
    ));
    plaintext.extend_from_slice(&expires_at.to_be_bytes());
    plaintext.extend_from_slice(&id);
    plaintext.extend_from_slice(token.as_bytes());
    Some(with_version(
        version,
        &seal_with_key(&key, &plaintext, SESSION_CONTEXT),
    ))
}

/// Opens a session cookie value; `None` if it was altered, sealed under a key version
/// this server lacks, or has expired at `now`.
pub fn open_session(keys: &MasterKeys, value: &str, now: i64) -> Option<Session> {
    let (key_version, sealed) = split_version(value)?;
    let key = keys.derived_key(key_version, SESSION_LABEL)?;
    let plaintext = open_with_key(&key, &sealed, SESSION_CONTEXT).ok()?;
    let (expiry, rest) = plaintext.split_first_chunk::<EXPIRY_BYTES>()?;
    let (id, token) = rest.split_first_chunk::<SESSION_ID_BYTES>()?;
    let expires_at = i64::from_be_bytes(*expiry);
    if expires_at <= now || expires_at > now.saturating_add(SESSION_LIFETIME_MS) {
        return None;
    }
    let token = std::str::from_utf8(token).ok()?;
    Some(Session {
        token: SecretString::from(token.to_owned()),
        id: *id,
        key_version,
        expires_at,
    })
}

/// The CSRF token of a session's forms: an HMAC of its random id, so it is stable for
/// the session's life and cannot be made without the server's key.
pub fn csrf_token(keys: &MasterKeys, session: &Session) -> Option<String> {
    let mac = csrf_mac(keys, session)?;
    Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Whether a form's `csrf` field is the session's token (compared in constant time).
pub fn csrf_valid(keys: &MasterKeys, session: &Session, given: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(given.trim()) else {
        return false;
    };
    csrf_mac(keys, session).is_some_and(|mac| mac.verify_slice(&given).is_ok())
}

fn csrf_mac(keys: &MasterKeys, session: &Session) -> Option<Hmac<Sha256>> {
    let key = keys.derived_key(session.key_version, CSRF_LABEL)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_bytes()).ok()?;
    mac.update(&session.id);
    Some(mac)
}

/// A fresh random value for the sign-in form's double-submit cookie.
pub fn new_sign_in_token() -> String {
    new_random_value()
}

/// 32 random bytes from the OS, base64url: the sign-in form's double-submit value and
/// single sign-on's `state`, `nonce` and PKCE verifier.
pub fn new_random_value() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether the sign-in form's `csrf` field equals its cookie, in constant time; an
/// absent or implausibly short cookie never matches.
pub fn sign_in_token_matches(cookie: Option<&str>, given: &str) -> bool {
    let Some(cookie) = cookie else {
        return false;
    };
    if cookie.len() < 32 {
        return false;
    }
    bool::from(cookie.as_bytes().ct_eq(given.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    /// Shown in `<p role="status">`.
    Status,
    /// Shown in `<p role="alert">`.
    Alert,
}

/// A message for the page after a redirect ("Deleted ghcr."). Sealed like the session,
/// so another site cannot plant text on a regkeeper page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
}

impl Flash {
    pub fn status(message: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Status,
            message: message.into(),
        }
    }

    pub fn alert(message: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Alert,
            message: message.into(),
        }
    }
}

pub fn seal_flash(keys: &MasterKeys, flash: &Flash) -> Option<String> {
    let version = keys.current_version();
    let key = keys.derived_key(version, FLASH_LABEL)?;
    let marker = match flash.kind {
        FlashKind::Status => 's',
        FlashKind::Alert => 'a',
    };
    let mut plaintext = String::with_capacity(MAX_FLASH_CHARS + 4);
    plaintext.push(marker);
    plaintext.extend(flash.message.chars().take(MAX_FLASH_CHARS));
    Some(with_version(
        version,
        &seal_with_key(&key, plaintext.as_bytes(), FLASH_CONTEXT),
    ))
}

pub fn open_flash(keys: &MasterKeys, value: &str) -> Option<Flash> {
    let (version, sealed) = split_version(value)?;
    let key = keys.derived_key(version, FLASH_LABEL)?;
    let plaintext = open_with_key(&key, &sealed, FLASH_CONTEXT).ok()?;
    let text = std::str::from_utf8(&plaintext).ok()?;
    let kind = match text.chars().next()? {
        's' => FlashKind::Status,
        'a' => FlashKind::Alert,
        _ => return None,
    };
    Some(Flash {
        kind,
        message: text[1..].to_owned(),
    })
}

/// What the browser carries between leaving for the identity provider and coming
/// back: random values only, and the redirect URI the code is bound to. No `Debug`:
/// the verifier is what makes a stolen code useless.
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: SecretString,
    pub redirect_uri: String,
}

/// Seals a pending sign-in that expires [`PENDING_LIFETIME_MS`] after `now`.
pub fn seal_pending(keys: &MasterKeys, pending: &Pending, now: i64) -> Option<String> {
    let version = keys.current_version();
    let key = keys.derived_key(version, PENDING_LABEL)?;
    let expires_at = now.saturating_add(PENDING_LIFETIME_MS);
    // None of the four holds a newline: three are base64url, the URI is a parsed URL.
    let text = Zeroizing::new(format!(
        "{}\n{}\n{}\n{}",
        pending.state,
        pending.nonce,
        pending.verifier.expose_secret(),
        pending.redirect_uri
    ));
    let mut plaintext = Zeroizing::new(Vec::with_capacity(EXPIRY_BYTES + text.len()));
    plaintext.extend_from_slice(&expires_at.to_be_bytes());
    plaintext.extend_from_slice(text.as_bytes());
    Some(with_version(
        version,
        &seal_with_key(&key, &plaintext, PENDING_CONTEXT),
    ))
}

/// Opens a pending sign-in; `None` if altered, foreign or expired at `now`.
pub fn open_pending(keys: &MasterKeys, value: &str, now: i64) -> Option<Pending> {
    let (version, sealed) = split_version(value)?;
    let key = keys.derived_key(version, PENDING_LABEL)?;
    let plaintext = Zeroizing::new(open_with_key(&key, &sealed, PENDING_CONTEXT).ok()?);
    let (expiry, rest) = plaintext.split_first_chunk::<EXPIRY_BYTES>()?;
    let expires_at = i64::from_be_bytes(*expiry);
    if expires_at <= now || expires_at > now.saturating_add(PENDING_LIFETIME_MS) {
        return None;
    }
    let text = std::str::from_utf8(rest).ok()?;
    let mut parts = text.split('\n');
    let (Some(state), Some(nonce), Some(verifier), Some(redirect_uri), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(Pending {
        state: state.to_owned(),
        nonce: nonce.to_owned(),
        verifier: SecretString::from(verifier.to_owned()),
        redirect_uri: redirect_uri.to_owned(),
    })
}

/// The pending sign-in's cookie: `SameSite=Lax`, unlike every other console cookie,
/// because the browser must send it on the identity provider's redirect back, a
/// cross-site top-level navigation that `Strict` would strip it from. It holds no
/// authority: it only lets this browser finish the sign-in it started.
pub fn set_pending_cookie(value: &str, lifetime: Lifetime, secure: bool) -> String {
    let max_age = match lifetime {
        Lifetime::Expired => 0,
        _ => PENDING_LIFETIME_MS / 1000,
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{PENDING_COOKIE}={value}; Path={COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

fn with_version(version: u32, sealed: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(VERSION_BYTES + sealed.len());
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes.extend_from_slice(sealed);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn split_version(value: &str) -> Option<(u32, Vec<u8>)> {
    if value.len() > MAX_COOKIE_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    let (version, sealed) = bytes.split_first_chunk::<VERSION_BYTES>()?;
    Some((u32::from_be_bytes(*version), sealed.to_vec()))
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// How long a cookie lives.
#[derive(Debug, Clone, Copy)]
pub enum Lifetime {
    /// The session's 12 hours.
    Session,
    /// Until the browser closes.
    Browser,
    /// A minute: a flash message.
    Flash,
    /// Remove it now.
    Expired,
}

/// A `Set-Cookie` value: always HttpOnly, SameSite=Strict and scoped to `/console`;
/// `Secure` when the request came over TLS (see [`super::guard::over_tls`]).
pub fn set_cookie(name: &str, value: &str, lifetime: Lifetime, secure: bool) -> String {
    let max_age = match lifetime {
        Lifetime::Session => format!("; Max-Age={}", SESSION_LIFETIME_MS / 1000),
        Lifetime::Browser => String::new(),
        Lifetime::Flash => format!("; Max-Age={FLASH_LIFETIME_SECONDS}"),
        Lifetime::Expired => "; Max-Age=0".to_owned(),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict{max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "rk_console_canary_token_0123456789abcdef";
    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_session_round_trips_without_showing_the_token() {
        let keys = MasterKeys::generate();
        let value = seal_session(&keys, TOKEN, NOW).unwrap();
        assert!(!value.contains(TOKEN));
        let decoded = URL_SAFE_NO_PAD.decode(&value).unwrap();
        assert!(!decoded
            .windows(TOKEN.len())
            .any(|part| part == TOKEN.as_bytes()));
        let session = open_session(&keys, &value, NOW + 1).unwrap();
        assert_eq!(session.token(), TOKEN);
        assert_eq!(session.expires_at, NOW + SESSION_LIFETIME_MS);
        let printed = format!("{session:?}");
        assert!(printed.contains("REDACTED") && !printed.contains(TOKEN));
        // Two sign-ins with one token are two sessions.
        let other = seal_session(&keys, TOKEN, NOW).unwrap();
        assert_ne!(value, other);
    }

    #[test]
    fn an_expired_session_is_refused() {
        let keys = MasterKeys::generate();
        let value = seal_session(&keys, TOKEN, NOW).unwrap();
        assert!(open_session(&keys, &value, NOW + SESSION_LIFETIME_MS - 1).is_some());
        assert!(open_session(&keys, &value, NOW + SESSION_LIFETIME_MS).is_none());
        // Nor is one that claims to live longer than a session may (a clock far behind).
        assert!(open_session(&keys, &value, NOW - 1).is_none());
    }

    #[test]
    fn a_tampered_or_foreign_session_is_refused() {
        let keys = MasterKeys::generate();
        let value = seal_session(&keys, TOKEN, NOW).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for index in 0..bytes.len() {
            bytes[index] ^= 0x01;
            let altered = URL_SAFE_NO_PAD.encode(&bytes);
            assert!(open_session(&keys, &altered, NOW).is_none(), "byte {index}");
            bytes[index] ^= 0x01;
        }
        assert!(open_session(&MasterKeys::generate(), &value, NOW).is_none());
        assert!(open_session(&keys, "", NOW).is_none());
        assert!(open_session(&keys, "not base64!", NOW).is_none());
        assert!(open_session(&keys, &"A".repeat(MAX_COOKIE_CHARS + 4), NOW).is_none());
        // A flash cookie is no session, though sealed under the same master key.
        let flash = seal_flash(&keys, &Flash::status("hello")).unwrap();
        assert!(open_session(&keys, &flash, NOW).is_none());
    }

    #[test]
    fn sessions_survive_a_master_key_rotation() {
        let keys = MasterKeys::generate();
        let value = seal_session(&keys, TOKEN, NOW).unwrap();
        let rotated = keys.with_new_version();
        let session = open_session(&rotated, &value, NOW).unwrap();
        assert_eq!(session.token(), TOKEN);
        let csrf = csrf_token(&keys, &session).unwrap();
        assert!(csrf_valid(&rotated, &session, &csrf));
    }

    #[test]
    fn a_signed_out_session_stays_out() {
        let keys = MasterKeys::generate();
        let value = seal_session(&keys, TOKEN, NOW).unwrap();
        let signed_out = crate::service::sign_outs::SignOuts::default();
        let session = open_session(&keys, &value, NOW).unwrap();
        assert!(!signed_out.contains(session.id()));
        signed_out.heard(*session.id());
        assert!(signed_out.contains(open_session(&keys, &value, NOW).unwrap().id()));
        let other = open_session(&keys, &seal_session(&keys, TOKEN, NOW).unwrap(), NOW).unwrap();
        assert!(!signed_out.contains(other.id()));
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let keys = MasterKeys::generate();
        let first = open_session(&keys, &seal_session(&keys, TOKEN, NOW).unwrap(), NOW).unwrap();
        let second = open_session(&keys, &seal_session(&keys, TOKEN, NOW).unwrap(), NOW).unwrap();
        let token = csrf_token(&keys, &first).unwrap();
        assert!(!token.contains(TOKEN));
        assert!(csrf_valid(&keys, &first, &token));
        assert!(!csrf_valid(&keys, &second, &token));
        assert!(!csrf_valid(&keys, &first, ""));
        assert!(!csrf_valid(&keys, &first, "not-a-token"));
        assert!(!csrf_valid(&MasterKeys::generate(), &first, &token));
        let mut altered = token.clone().into_bytes();
        altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
        assert!(!csrf_valid(
            &keys,
            &first,
            std::str::from_utf8(&altered).unwrap()
        ));
    }

    #[test]
    fn the_sign_in_token_must_match_its_cookie() {
        let token = new_sign_in_token();
        assert!(token.len() >= 32);
        assert!(sign_in_token_matches(Some(&token), &token));
        assert!(!sign_in_token_matches(None, &token));
        assert!(!sign_in_token_matches(Some(&token), ""));
        assert!(!sign_in_token_matches(Some(&token), &new_sign_in_token()));
        assert!(!sign_in_token_matches(Some("short"), "short"));
    }

    #[test]
    fn flash_messages_round_trip_and_resist_tampering() {
        let keys = MasterKeys::generate();
        let flash = Flash::alert("Verification of ghcr failed.");
        let value = seal_flash(&keys, &flash).unwrap();
        assert_eq!(open_flash(&keys, &value), Some(flash));
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(open_flash(&keys, &URL_SAFE_NO_PAD.encode(&bytes)).is_none());
        let long = Flash::status("x".repeat(5000));
        let opened = open_flash(&keys, &seal_flash(&keys, &long).unwrap()).unwrap();
        assert_eq!(opened.message.len(), MAX_FLASH_CHARS);
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped_to_the_console() {
        let plain = set_cookie(SESSION_COOKIE, "v", Lifetime::Session, false);
        assert_eq!(
            plain,
            "regkeeper_session=v; Path=/console; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
        let secure = set_cookie(SESSION_COOKIE, "v", Lifetime::Session, true);
        assert!(secure.ends_with("; Secure"));
        assert!(set_cookie(FLASH_COOKIE, "", Lifetime::Expired, false).contains("Max-Age=0"));
        assert!(!set_cookie(CSRF_COOKIE, "v", Lifetime::Browser, false).contains("Max-Age"));
    }

    /// Issue 13 item 4: the pending sign-in round-trips sealed, expires, resists
    /// tampering, and rides a Lax cookie.
    #[test]
    fn a_pending_sign_in_is_sealed_short_lived_and_lax() {
        let keys = MasterKeys::generate();
        let pending = Pending {
            state: "state-value".into(),
            nonce: "nonce-value".into(),
            verifier: SecretString::from("verifier-canary-value".to_owned()),
            redirect_uri: "https://rk.example.com/console/sign-in/sso/callback".into(),
        };
        let value = seal_pending(&keys, &pending, NOW).unwrap();
        assert!(!value.contains("canary"));
        let opened = open_pending(&keys, &value, NOW + 1).unwrap();
        assert_eq!(opened.state, "state-value");
        assert_eq!(opened.nonce, "nonce-value");
        assert_eq!(opened.verifier.expose_secret(), "verifier-canary-value");
        assert_eq!(opened.redirect_uri, pending.redirect_uri);
        assert!(open_pending(&keys, &value, NOW + PENDING_LIFETIME_MS).is_none());
        assert!(open_pending(&MasterKeys::generate(), &value, NOW).is_none());
        let session = seal_session(&keys, TOKEN, NOW).unwrap();
        assert!(open_pending(&keys, &session, NOW).is_none());
        assert!(open_session(&keys, &value, NOW).is_none());
        assert_eq!(
            set_pending_cookie("v", Lifetime::Session, false),
            "regkeeper_sso=v; Path=/console; HttpOnly; SameSite=Lax; Max-Age=600"
        );
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; regkeeper_csrf=abc".parse().unwrap());
        headers.append(header::COOKIE, "regkeeper_session=xyz".parse().unwrap());
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, FLASH_COOKIE), None);
    }
}
