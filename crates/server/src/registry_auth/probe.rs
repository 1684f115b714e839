//! Reading what a registry's answers say during verification: whether a 200 on `/v2/`
//! really came from a registry, what a 404 from the tags list means, and whether a
//! credential may push (a blob upload opened and cancelled). Bodies are read only
//! within small caps and never decompressed: a captive portal's page, a 1 GiB body or a
//! gzip bomb costs at most [`ANSWER_LIMIT`] bytes.

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use super::{RegistryClient, RegistryError};
use crate::outbound::{OutboundClient, OutboundError};

/// The header distribution, Harbor, ECR, GHCR and every other registry send on `/v2/`
/// (Docker Registry HTTP API v2, "API Version Check").
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
/// The most of a `/v2/` or error body read to decide what it is. A registry's `/v2/`
/// answers `{}`; error bodies are a few hundred bytes.
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// What opening a blob upload with the credential showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushCheck {
    /// The registry opened the upload (202): the credential may push. `not_cancelled`
    /// says why the upload could not be cancelled, if it could not (distribution wants
    /// the `delete` action for that, which a pushing token may lack); the registry then
    /// removes it when it purges stale uploads.
    Granted { not_cancelled: Option<String> },
    /// The registry refused it (401 or 403), as it should for a pull credential.
    Refused,
    /// Another answer (a read-only mirror's 405, a 404), so push rights are unknown.
    Unknown(String),
}

/// Accepts a 200 answer to `path` only if it is a registry's: the API version header
/// `registry/2.0`, or else a JSON body within [`ANSWER_LIMIT`] that is not encoded.
pub async fn registry_answer(
    host: &str,
    path: &'static str,
    response: reqwest::Response,
) -> Result<(), RegistryError> {
    let headers = response.headers();
    let version = headers
        .get(API_VERSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if version.trim().eq_ignore_ascii_case("registry/2.0") {
        // The body is left unread: a registry's is `{}`, and nothing else matters.
        return Ok(());
    }
    let not_a_registry = |reason: String| RegistryError::NotARegistry {
        host: host.to_owned(),
        path,
        reason,
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .filter(|value| !value.is_empty());
    let described = || {
        content_type.as_deref().map_or_else(
            || "an untyped body".to_owned(),
            |kind| format!("a {kind} body"),
        )
    };
    if let Some(encoding) = headers
        .get(CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .filter(|encoding| !encoding.trim().eq_ignore_ascii_case("identity"))
    {
        // Never inflated: a few kilobytes of gzip can expand to gigabytes.
        return Err(not_a_registry(format!(
            "no {API_VERSION_HEADER} header and a {} body encoded as {}",
            content_type.as_deref().unwrap_or("untyped"),
            encoding.trim()
        )));
    }
    let body = match OutboundClient::read_capped(response, ANSWER_LIMIT).await {
        Ok(body) => body,
        Err(OutboundError::TooLarge { limit }) => {
            return Err(not_a_registry(format!(
                "no {API_VERSION_HEADER} header and {} larger than {limit} bytes",
                described()
            )))
        }
        Err(other) => return Err(other.into()),
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
        return Ok(());
    }
    Err(not_a_registry(format!(
        "no {API_VERSION_HEADER} header and {} that is not JSON",
        described()
    )))
}

/// The error for a 404 from a repository's tags list, with the registry's error code
/// (`NAME_UNKNOWN`) when its body names one.
pub async fn not_found(host: &str, name: &str, response: reqwest::Response) -> RegistryError {
    RegistryError::RepositoryNotFound {
        host: host.to_owned(),
        repository: name.to_owned(),
        code: error_code(response).await,
    }
}

/// The first `errors[].code` of a registry error body, if it is one (codes are upper
/// case letters and underscores; anything else is not repeated).
async fn error_code(response: reqwest::Response) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
    }
    if response.headers().contains_key(CONTENT_ENCODING) {
        return None;
    }
    let body = OutboundClient::read_capped(response, ANSWER_LIMIT)
        .await
        .ok()?;
    let code = serde_json::from_slice::<Body>(&body)
        .ok()?
        .errors
        .into_iter()
        .next()?
        .code;
    let plain = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|character| character.is_ascii_uppercase() || character == '_');
    plain.then_some(code)
}

impl RegistryClient<'_> {
    /// Opens a blob upload in `name` with `authorization` (`POST
    /// /v2/NAME/blobs/uploads/`), as a push would first, and cancels it at once
    /// (`DELETE` on its `Location`, sent with the credentials only when that is on the
    /// registry's own host and port). Nothing is ever written.
    pub(super) async fn check_push(
        &self,
        base: &url::Url,
        name: &str,
        authorization: &SecretString,
    ) -> Result<PushCheck, RegistryError> {
        let uploads = base
            .join(&format!("v2/{name}/blobs/uploads/"))
            .map_err(|_| OutboundError::Other("the upload URL cannot be built".into()))?;
        let request = self
            .outbound
            .request(Method::POST, uploads.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                authorization.expose_secret(),
            )
            .body(Vec::<u8>::new());
        // No redirect is followed: the credentials go to the registry and nowhere else.
        let response = self.outbound.send_once(request).await?;
        match response.status() {
            StatusCode::ACCEPTED => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(PushCheck::Refused),
            status => {
                return Ok(PushCheck::Unknown(format!(
                    "opening a blob upload answered HTTP {}",
                    status.as_u16()
                )))
            }
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| uploads.join(location).ok())
            .filter(|location| {
                location.scheme() == base.scheme()
                    && location.host_str() == base.host_str()
                    && location.port_or_known_default() == base.port_or_known_default()
            });
        let Some(location) = location else {
            return Ok(PushCheck::Granted {
                not_cancelled: Some("the registry named no upload location on its own host".into()),
            });
        };
        let cancel = self.outbound.request(Method::DELETE, location).header(
            reqwest::header::AUTHORIZATION,
            authorization.expose_secret(),
        );
        let not_cancelled = match self.outbound.send_once(cancel).await {
            Ok(answer) if answer.status().is_success() => None,
            Ok(answer)
                if matches!(
                    answer.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) =>
            {
                Some(format!(
                    "cancelling it was refused (HTTP {}): the credential may push but not delete",
                    answer.status().as_u16()
                ))
            }
            Ok(answer) => Some(format!(
                "cancelling it answered HTTP {}",
                answer.status().as_u16()
            )),
            Err(error) => {
                tracing::info!(error.code = error.code(), "verify.upload_cancel_failed");
                Some(format!("cancelling it failed ({})", error.code()))
            }
        };
        Ok(PushCheck::Granted { not_cancelled })
    }
}
