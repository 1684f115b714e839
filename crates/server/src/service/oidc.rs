//! The OIDC token exchange (issue 13 §2): a CI job's or pod's signed identity token in,
//! a short-lived API token of a workload role out, under the role's trusts.
//!
//! Checks, in order: size (at most [`MAX_TOKEN_BYTES`]), algorithm (asymmetric only:
//! RS*, PS*, ES256/384, EdDSA; never `none`, never HS*, so a public key can never be
//! used as an HMAC secret), issuer (one the role trusts; its discovery document must
//! name it exactly), signature (a key of that issuer's JWKS), lifetime (`exp`, `nbf`,
//! `iat` against the injected clock with [`LEEWAY_SECONDS`]), audience, subject and
//! claim conditions. Every refusal is one [`ExchangeError::Rejected`] naming the check,
//! never the token.
//!
//! The issued token is an ordinary API token of the role (the same authentication,
//! policy and caches as `roles tokens create`), tied to the trust that let it in: it
//! expires at the earliest of the JWT's `exp` plus the trust's maximum session and now
//! plus that session, is deleted with its trust, and is pruned once expired.
//!
//! Replays: the token's secret is derived, HMAC-SHA256 under a key derived from the
//! master key, from the SHA-256 of the JWT and the trust's id. Presenting the same JWT
//! again derives the same secret, finds its row by hash, and returns it: no new row, and
//! nothing secret stored beyond the usual hash. A token revoked by an admin stays
//! revoked for that JWT. After a master-key rotation the derivation changes and a replay
//! gets a new token; the old one keeps working until it expires.

mod keys;
pub mod sign_in;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::audit::Outcome;
use crate::domain::policy::{role_reference, REFERENCE_SCHEME};
use crate::domain::trust::Trust;
use crate::domain::{Error, Result};
use crate::metrics::OutcomeLabels;
use crate::store::{ApiTokenRow, TokenOwner, TrustRow};
use crate::text::echo;

use super::identity::{hash_token, TOKEN_PREFIX};
use super::trusts::parse_claims;
use super::{new_id, App};

pub use keys::{KeyCache, KeysError, KEYS_TTL_MS, REFETCH_INTERVAL_MS};

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 60;
/// The algorithms an issuer may sign with.
const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const DERIVATION_LABEL: &str = "oidc-exchange-token";
/// Characters of the derived secret after `rk_`, as generated tokens have.
const TOKEN_CHARS: usize = 40;

/// Why an exchange failed: a refused token, or something else going wrong.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The token was refused; the text names the failed check and never the token.
    #[error("the OIDC token was rejected: {0}")]
    Rejected(String),
    #[error(transparent)]
    Other(#[from] Error),
}

/// A successful exchange.
pub struct Exchanged {
    pub token: SecretString,
    pub expires_at: i64,
}

/// What the token claims before its signature is checked: for the audit entry of a
/// refusal, marked unverified there.
struct Claimed {
    issuer: String,
    subject: String,
}

/// How many characters of an issuer or subject a label keeps: labels are stored (audit
/// actors, token names), so this stays what it was when the first ones were written.
const LABEL_LIMIT: usize = 64;

/// A label kept for good: printable, without secrets, at most [`LABEL_LIMIT`] characters.
pub(crate) fn label(text: &str) -> String {
    crate::text::echo_within(text, LABEL_LIMIT)
}

pub(crate) fn principal_label(issuer: &str, subject: &str) -> String {
    format!("oidc:{}#{}", label(issuer), label(subject))
}

fn reject(check: impl Into<String>) -> ExchangeError {
    ExchangeError::Rejected(check.into())
}

fn decode_part(part: &str) -> Option<serde_json::Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `(workspace, role)` of `rk:WS:role/NAME`.
fn parse_role_reference(reference: &str) -> Result<(String, String)> {
    reference
        .strip_prefix(REFERENCE_SCHEME)
        .and_then(|rest| rest.rsplit_once(":role/"))
        .filter(|(workspace, name)| !workspace.is_empty() && !name.is_empty())
        .map(|(workspace, name)| (workspace.to_owned(), name.to_owned()))
        .ok_or_else(|| {
            Error::invalid(
                "invalid_role_reference",
                format!(
                    "`{}` is not a role reference: use rk:WORKSPACE:role/NAME",
                    echo(reference)
                ),
            )
        })
}

fn count(app: &App, outcome: &str) {
    app.metrics
        .oidc_exchanges
        .get_or_create(&OutcomeLabels {
            outcome: outcome.to_owned(),
        })
        .inc();
}

pub(crate) fn claim_text(value: &serde_json::Value, name: &str) -> Option<String> {
    value
        .get(name)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// A JWT's header and payload before anything is verified, and its algorithm if it is
/// one regkeeper accepts (the error names it otherwise). Size and shape are checked
/// here; the caller records the unverified issuer and subject before checking the
/// algorithm, so a refusal's audit entry says who the token claimed to be.
pub(crate) fn parse(
    jwt: &str,
) -> std::result::Result<
    (
        serde_json::Value,
        serde_json::Value,
        std::result::Result<Algorithm, ExchangeError>,
    ),
    ExchangeError,
> {
    if jwt.len() > MAX_TOKEN_BYTES {
        return Err(reject(format!(
            "the token is larger than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(
            "malformed: not a signed JWT (three dot-separated parts)",
        ));
    };
    let (Some(header), Some(payload)) = (decode_part(header), decode_part(payload)) else {
        return Err(reject(
            "malformed: the header or payload is not base64url JSON",
        ));
    };
    let named = claim_text(&header, "alg").unwrap_or_default();
    let algorithm = named
        .parse::<Algorithm>()
        .ok()
        .filter(|parsed| ALLOWED.contains(parsed))
        .ok_or_else(|| {
            reject(format!(
                "algorithm `{}` is not accepted (RS256/384/512, PS256/384/512, ES256/384 or EdDSA)",
                echo(&named)
            ))
        });
    Ok((header, payload, algorithm))
}

/// The `aud` claim as a list, whether it is one string or an array.
pub(crate) fn audiences(claims: &serde_json::Value) -> Vec<&str> {
    match claims.get("aud") {
        Some(serde_json::Value::String(one)) => vec![one.as_str()],
        Some(serde_json::Value::Array(many)) => {
            many.iter().filter_map(serde_json::Value::as_str).collect()
        }
        _ => Vec::new(),
    }
}

/// The claims of `jwt` once its signature (a key of `issuer`'s JWKS, fetched through
/// the key cache) and lifetime (`exp` required; `nbf`, `iat`; [`LEEWAY_SECONDS`]
/// against the injected clock) are verified, and its `exp` in seconds. Shared by the
/// exchange and single sign-on, so an ID token is checked exactly as a CI job's token.
pub(crate) async fn verified_claims(
    app: &App,
    jwt: &str,
    header: &serde_json::Value,
    algorithm: Algorithm,
    issuer: &str,
) -> std::result::Result<(serde_json::Value, i64), ExchangeError> {
    let kid = claim_text(header, "kid");
    let keys = app
        .oidc_keys
        .keys(&app.outbound, issuer, kid.as_deref(), app.now())
        .await
        .map_err(|error| match error {
            KeysError::IssuerMismatch { .. } => reject(format!("issuer: {error}")),
            KeysError::Outbound(outbound) if outbound.retryable() => {
                ExchangeError::Other(Error::upstream(
                    "oidc_issuer_unreachable",
                    format!("the issuer's keys could not be fetched: {outbound}"),
                ))
            }
            other => reject(format!(
                "signature: the issuer's keys are unavailable ({other})"
            )),
        })?;
    let jwk = match kid.as_deref() {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| reject("signature: no key of the issuer has the token's key id"))?;
    if jwk
        .common
        .key_algorithm
        .is_some_and(|key_algorithm| format!("{key_algorithm:?}") != format!("{algorithm:?}"))
    {
        return Err(reject(
            "algorithm: the issuer's key is for another algorithm",
        ));
    }
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|_| reject("signature: the issuer's key is not usable"))?;
    let mut validation = Validation::new(algorithm);
    // Lifetime is checked below against the injected clock; audience per trust.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let verified = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
        .map_err(|_| reject("signature"))?
        .claims;

    let now_seconds = app.now().div_euclid(1000);
    let seconds = |name: &str| verified.get(name).and_then(serde_json::Value::as_i64);
    let expires = seconds("exp").ok_or_else(|| reject("expired: the token has no `exp`"))?;
    if expires + LEEWAY_SECONDS < now_seconds {
        return Err(reject("expired"));
    }
    if seconds("nbf").is_some_and(|nbf| nbf > now_seconds + LEEWAY_SECONDS) {
        return Err(reject("not yet valid (nbf)"));
    }
    if seconds("iat").is_some_and(|iat| iat > now_seconds + LEEWAY_SECONDS) {
        return Err(reject("not yet valid (iat is in the future)"));
    }
    Ok((verified, expires))
}

/// Exchanges `jwt` for an API token of the role `role_ref`. Audited and counted
/// whatever the outcome.
pub async fn exchange(
    app: &App,
    role_ref: &str,
    jwt: &SecretString,
) -> std::result::Result<Exchanged, ExchangeError> {
    let mut claimed = None;
    let mut workspace_id = None;
    let result = attempt(app, role_ref, jwt, &mut claimed, &mut workspace_id).await;
    match &result {
        Ok((_, reused)) => count(app, if *reused { "reused" } else { "issued" }),
        Err(error) => {
            count(
                app,
                if matches!(error, ExchangeError::Rejected(_)) {
                    "rejected"
                } else {
                    "failed"
                },
            );
            let (outcome, detail) = match error {
                ExchangeError::Rejected(check) => (
                    Outcome::Denied,
                    serde_json::json!({ "check": check, "verified": false }),
                ),
                ExchangeError::Other(error) => (
                    Outcome::Failed,
                    serde_json::json!({ "error": error.code(), "verified": false }),
                ),
            };
            let mut record = app.record(None, "oidc.exchange").target(label(role_ref));
            record.actor = claimed.as_ref().map_or_else(
                || "oidc:unknown".to_owned(),
                |claimed: &Claimed| principal_label(&claimed.issuer, &claimed.subject),
            );
            if let Ok((workspace, _)) = parse_role_reference(role_ref) {
                record = record.workspace(workspace_id.as_deref(), &workspace);
            }
            if let Err(audit_error) = app
                .audit_writer
                .append(record.outcome(outcome).detail(detail))
                .await
            {
                tracing::error!(error.code = audit_error.code(), "audit.append_failed");
            }
        }
    }
    result.map(|(exchanged, _)| exchanged)
}

/// The exchange proper; `(token, whether it was an earlier exchange's)`.
async fn attempt(
    app: &App,
    role_ref: &str,
    jwt: &SecretString,
    claimed: &mut Option<Claimed>,
    workspace_id: &mut Option<String>,
) -> std::result::Result<(Exchanged, bool), ExchangeError> {
    let jwt = jwt.expose_secret();
    if jwt.len() > MAX_TOKEN_BYTES {
        return Err(reject(format!(
            "the token is larger than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let (workspace, role_name) = parse_role_reference(role_ref)?;
    let (header, payload, algorithm) = parse(jwt)?;
    let issuer = claim_text(&payload, "iss").unwrap_or_default();
    *claimed = Some(Claimed {
        issuer: issuer.clone(),
        subject: claim_text(&payload, "sub").unwrap_or_default(),
    });
    let algorithm = algorithm?;

    let found_workspace = super::access::workspace_by_name(app, &workspace).await?;
    let role = match &found_workspace {
        Some(found) => app.store.role(&found.id, &role_name).await?,
        None => None,
    };
    *workspace_id = found_workspace.map(|found| found.id);
    // An unknown role looks like one that does not trust the issuer, so the endpoint
    // tells an unauthenticated caller nothing about which roles exist.
    let unknown_issuer = || reject("issuer unknown to the role");
    let role = role.ok_or_else(unknown_issuer)?;
    let trusts: Vec<TrustRow> = app
        .store
        .trusts(&role.id)
        .await?
        .into_iter()
        .filter(|trust| trust.issuer == issuer)
        .collect();
    if trusts.is_empty() {
        return Err(unknown_issuer());
    }

    let (verified, expires) = verified_claims(app, jwt, &header, algorithm, &issuer).await?;
    let audiences = audiences(&verified);
    let for_audience: Vec<&TrustRow> = trusts
        .iter()
        .filter(|trust| audiences.contains(&trust.audience.as_str()))
        .collect();
    if for_audience.is_empty() {
        return Err(reject("audience"));
    }
    let mut first_failure = None;
    let mut accepted = None;
    for row in for_audience {
        let trust = Trust {
            issuer: row.issuer.clone(),
            audience: row.audience.clone(),
            subject: row.subject.clone(),
            claims: parse_claims(row)?,
            max_session_seconds: row.max_session_seconds,
        };
        match trust.failed_condition(&verified) {
            None => {
                accepted = Some(row);
                break;
            }
            Some(failure) => {
                first_failure.get_or_insert(failure);
            }
        }
    }
    let Some(trust) = accepted else {
        return Err(reject(
            first_failure.unwrap_or_else(|| "subject".to_owned()),
        ));
    };
    issue(app, &role, trust, &verified, jwt, expires).await
}

/// Issues (or finds, for a replay) the role's token for a verified JWT.
async fn issue(
    app: &App,
    role: &crate::store::RoleRow,
    trust: &TrustRow,
    verified: &serde_json::Value,
    jwt: &str,
    jwt_expires_seconds: i64,
) -> std::result::Result<(Exchanged, bool), ExchangeError> {
    let keys = app.keyring.keys()?;
    let derivation = keys
        .derived_key(keys.current_version(), DERIVATION_LABEL)
        .ok_or_else(|| Error::internal("the current master key is missing"))?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(derivation.expose_bytes())
        .map_err(Error::internal)?;
    mac.update(&Sha256::digest(jwt.as_bytes()));
    mac.update(trust.id.as_bytes());
    let token = SecretString::from(format!(
        "{TOKEN_PREFIX}{}",
        token_characters(&mac.finalize().into_bytes())
    ));
    let hash = hash_token(token.expose_secret());
    let subject = verified
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let principal = principal_label(&trust.issuer, subject);
    let reference = role_reference(&role.workspace_name, &role.name);
    let now = app.now();
    let mut record = app.record(None, "oidc.exchange").target(reference.clone());
    record.actor = principal.clone();
    let record = record.workspace(Some(&role.workspace_id), &role.workspace_name);

    if let Some((existing, _)) = app.store.api_token_by_hash(&hash).await? {
        if existing.revoked_at.is_some() {
            return Err(reject(
                "the token issued for this OIDC token has been revoked",
            ));
        }
        if let Some(expires_at) = existing.expires_at.filter(|expires_at| *expires_at > now) {
            let record = record.detail(serde_json::json!({
                "trust": trust.id, "tokenId": existing.id, "reused": true,
            }));
            app.audit_writer.append(record).await?;
            return Ok((Exchanged { token, expires_at }, true));
        }
        // Expired but not yet pruned: clear it so this exchange can issue afresh.
        app.store.prune_exchanged_tokens(now, 1000).await?;
    }
    let session_ms = trust.max_session_seconds * 1000;
    let expires_at = (jwt_expires_seconds * 1000 + session_ms).min(now + session_ms);
    let row = ApiTokenRow {
        id: new_id(),
        owner: TokenOwner::Role(role.id.clone()),
        name: label(&format!("oidc {principal}")),
        token_hash: hash,
        display_prefix: token.expose_secret().chars().take(9).collect(),
        created_at: now,
        expires_at: Some(expires_at),
        revoked_at: None,
        last_used_at: None,
        // Issued to a federated identity, not created by a user.
        created_by: None,
    };
    let record = record.detail(serde_json::json!({
        "trust": trust.id, "tokenId": row.id, "expiresAt": expires_at,
    }));
    match app
        .store
        .insert_exchanged_token(&row, &trust.id, record)
        .await
    {
        Ok(()) => Ok((Exchanged { token, expires_at }, false)),
        // A concurrent replay of the same JWT inserted it first: the same token.
        Err(Error::Conflict { .. }) => Ok((Exchanged { token, expires_at }, true)),
        Err(error) => Err(error.into()),
    }
}

/// 40 alphanumeric characters from a 32-byte MAC (about 238 bits, as generated tokens),
/// by reading it as a big number in base 62.
fn token_characters(mac: &[u8]) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut digits = mac.to_vec();
    let mut out = Vec::with_capacity(TOKEN_CHARS);
    for _ in 0..TOKEN_CHARS {
        let mut remainder = 0u32;
        for digit in &mut digits {
            let value = (remainder << 8) | u32::from(*digit);
            *digit = u8::try_from(value / 62).expect("quotient fits a byte");
            remainder = value % 62;
        }
        out.push(ALPHABET[remainder as usize]);
    }
    String::from_utf8(out).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_tokens_look_like_generated_ones() {
        let characters = token_characters(&[0xAB; 32]);
        assert_eq!(characters.len(), TOKEN_CHARS);
        assert!(characters.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(characters, token_characters(&[0xAC; 32]));
    }

    #[test]
    fn role_references_parse() {
        assert_eq!(
            parse_role_reference("rk:acme/ci:role/builder").unwrap(),
            ("acme/ci".to_owned(), "builder".to_owned())
        );
        assert!(parse_role_reference("rk:acme/ci:credential/x").is_err());
        assert!(parse_role_reference("acme/ci:role/x").is_err());
    }
}
