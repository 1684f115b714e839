//! The webhook delivery: a JSON `POST` over https through the guarded `outbound`
//! client, signed with HMAC-SHA256 so the receiver can tell it came from regkeeper,
//! unaltered and recently.
//!
//! Headers:
//! - `Regkeeper-Signature: t=UNIX_SECONDS,v1=HEX`, where `HEX` is the lower-case hex
//!   HMAC-SHA256, keyed with the target's signing key (its UTF-8 bytes, as shown once
//!   when the target was made), of `UNIX_SECONDS`, a `.`, and the raw request body;
//! - `Regkeeper-Event: credential.synced` and `Regkeeper-Delivery: ID` (the body's `id`).
//!
//! A receiver recomputes the HMAC over the bytes it received, compares in constant
//! time, rejects a timestamp more than five minutes from its clock, and remembers the
//! ids it saw in that window to reject a replay. The body: `type`, `id`, `createdAt`,
//! `target`, `credential` {`reference`, `workspace`, `name`, `id`}, `registry`,
//! `pathPrefix` (if any), `serverAddress` (the docker config key), `username`,
//! `secret` and `expiresAt` (absent for a login that does not expire).
//!
//! Redirects are not followed (the body carries a secret); any 2xx is success.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::clock::format_timestamp;
use crate::outbound::OutboundClient;

use super::{Delivery, SyncError};

pub const SIGNATURE_HEADER: &str = "Regkeeper-Signature";
pub const EVENT_HEADER: &str = "Regkeeper-Event";
pub const DELIVERY_HEADER: &str = "Regkeeper-Delivery";
pub const EVENT: &str = "credential.synced";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    created_at: String,
    target: &'a str,
    credential: CredentialRef<'a>,
    registry: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    path_prefix: &'a str,
    server_address: &'a str,
    username: &'a str,
    secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

#[derive(Serialize)]
struct CredentialRef<'a> {
    reference: &'a str,
    workspace: &'a str,
    name: &'a str,
    id: &'a str,
}

fn body(delivery: &Delivery) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        serde_json::to_vec(&Payload {
            kind: EVENT,
            id: &delivery.event_id,
            created_at: format_timestamp(delivery.at),
            target: &delivery.target_id,
            credential: CredentialRef {
                reference: &delivery.reference,
                workspace: &delivery.workspace_name,
                name: &delivery.credential_name,
                id: &delivery.credential_id,
            },
            registry: &delivery.registry,
            path_prefix: &delivery.path_prefix,
            server_address: &delivery.server_address,
            username: &delivery.username,
            secret: delivery.secret.expose_secret(),
            expires_at: delivery.expires_at.map(format_timestamp),
        })
        .expect("the payload serializes"),
    )
}

/// The `v1` signature: hex HMAC-SHA256 of `TIMESTAMP.BODY` under `key`.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub(super) async fn post(
    outbound: &OutboundClient,
    url: &str,
    key: &SecretString,
    delivery: &Delivery,
) -> Result<(), SyncError> {
    let url = url::Url::parse(url).map_err(|_| {
        SyncError::Webhook(crate::outbound::OutboundError::Other("not a URL".into()))
    })?;
    let body = body(delivery);
    let timestamp = delivery.at.div_euclid(1000);
    let signed = signature(key.expose_secret().as_bytes(), timestamp, &body);
    let request = outbound
        .request(reqwest::Method::POST, url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, format!("t={timestamp},v1={signed}"))
        .header(EVENT_HEADER, EVENT)
        .header(DELIVERY_HEADER, delivery.event_id.as_str())
        .body(body.to_vec());
    let response = outbound
        .send_once(request)
        .await
        .map_err(SyncError::Webhook)?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(SyncError::WebhookStatus(status.as_u16()))
    }
}

/// A new signing key: `rkwh_` and 43 base64url characters (256 random bits).
pub fn generate_key() -> SecretString {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    SecretString::from(format!(
        "rkwh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"rkwh_test",b"1700000000.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"rkwh_test", 1_700_000_000, b"{}"),
            "1aa95274a29d1fa650feb42309ad1acdbc37f8941154942b3ffbbd6f63a06ee6"
        );
    }

    #[test]
    fn body_carries_the_login_and_where_it_is_from() {
        let delivery = super::super::tests::delivery();
        let body: serde_json::Value = serde_json::from_slice(&body(&delivery)).unwrap();
        assert_eq!(body["type"], "credential.synced");
        assert_eq!(body["id"], "event-1");
        assert_eq!(body["credential"]["reference"], "rk:acme/ci:credential/ecr");
        assert_eq!(body["serverAddress"], "ghcr.io");
        assert_eq!(body["secret"], "canary-sync-secret");
        assert!(body.get("pathPrefix").is_none());
        assert!(body["expiresAt"].as_str().unwrap().starts_with("2027-"));
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let one = generate_key();
        let two = generate_key();
        assert_eq!(one.expose_secret().len(), 5 + 43);
        assert_ne!(one.expose_secret(), two.expose_secret());
    }
}
