//! The single mapping from domain errors to HTTP: status, stable code and a client
//! message. Internal detail is logged here, once, and never sent to the client. The
//! proxy answers with [`status_of`] too; only its registry-protocol codes are its own.
//!
//! Every 503 carries `Retry-After`: the error's own `retry_after_seconds` (a failed
//! mint's remaining backoff) or [`RETRY_AFTER_SECONDS`], which `/readyz`'s 503 and
//! the proxy's also use.

use std::sync::LazyLock;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use regex::Regex;
use regkeeper_wire::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;

use crate::domain::Error;

pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::Invalid { .. } => StatusCode::BAD_REQUEST,
        Error::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) | Error::Hidden(_) => StatusCode::NOT_FOUND,
        Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
        },
    };
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"regkeeper\""),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}

/// What a 503 tells clients to wait before trying again: long enough for a database
/// fail-over or restart to make progress, short enough for a pull to still succeed.
pub const RETRY_AFTER_SECONDS: &str = "5";

/// Replaces the default `Retry-After` of a 503 with the wait `error` knows, if any.
pub fn set_retry_after(response: &mut Response, error: &Error) {
    if let Error::Unavailable {
        retry_after_seconds: Some(seconds),
        ..
    } = error
    {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(*seconds),
        );
    }
}

/// The message a client gets for `error`: its external message, never its detail.
/// An internal error's detail is logged here; 503s and 502s are logged here with the
/// message the client gets and their detail, if any. Called once per failed request,
/// by the REST API and by the console.
pub fn client_message(error: &Error) -> String {
    let detail = error.detail().map(tracing::field::debug);
    match error {
        Error::Internal(_) => tracing::error!(error.detail = detail, "request.internal_error"),
        Error::Unavailable { code, message, .. } => {
            tracing::warn!(error.code = code, error.message = %message, error.detail = detail, "request.unavailable");
        }
        Error::Upstream { code, message, .. } => {
            tracing::warn!(error.code = code, error.message = %message, error.detail = detail, "request.upstream_failed");
        }
        _ => {}
    }
    error.to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let mut response = error_response(status, self.0.code(), client_message(&self.0));
        set_retry_after(&mut response, &self.0);
        response
    }
}

/// A JSON request body whose rejections answer in the API's error shape, with serde's
/// message stripped of any quoted input (a misplaced secret must not be echoed).
pub struct ApiJson<T>(pub T);

static QUOTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#""(?:[^"\\]|\\.)*""#).expect("valid regex"));

fn redact_quoted(message: &str) -> String {
    QUOTED.replace_all(message, "\"…\"").into_owned()
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// As [`ApiJson`], but a request with no body and no `Content-Type` (`curl -X POST
/// URL`) is the input's default: for endpoints whose body holds only options, so a call
/// written before the options existed keeps working.
pub struct ApiJsonOrDefault<T>(pub T);

impl<T, S> FromRequest<S> for ApiJsonOrDefault<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if request
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
        {
            return ApiJson::from_request(request, state)
                .await
                .map(|ApiJson(value)| Self(value));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                error_response(
                    rejection.status(),
                    "invalid_body",
                    "the request body could not be read",
                )
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Self(T::default()))
        } else {
            Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ))
        }
    }
}

/// As [`ApiJson`], but a body in which any object names a key twice is refused first
/// (400 `duplicate_key`, naming the key): for documents such as role policies, where
/// serde's keeping the last of two equal keys would make the server obey something
/// other than what a reviewer read.
pub struct UniqueKeysJson<T>(pub T);

impl<T, S> FromRequest<S> for UniqueKeysJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                let essence = value
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            });
        if !json {
            return Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body exceeds the server's size limit",
                    )
                } else {
                    error_response(
                        rejection.status(),
                        "invalid_body",
                        "the request body could not be read",
                    )
                }
            })?;
        crate::domain::json_keys::reject_duplicate_keys(&bytes)
            .map_err(|error| ApiError(error).into_response())?;
        axum::Json::<T>::from_bytes(&bytes)
            .map(|axum::Json(value)| Self(value))
            .map_err(json_rejection)
    }
}

fn json_rejection(rejection: JsonRejection) -> Response {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonDataError(error) => error_response(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!(
                "invalid request body: {}",
                redact_quoted(&error.body_text())
            ),
        ),
        JsonRejection::JsonSyntaxError(error) => error_response(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {}", redact_quoted(&error.body_text())),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body exceeds the server's size limit",
        ),
        other => error_response(
            other.status(),
            "invalid_body",
            redact_quoted(&other.body_text()),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One error of every kind, those that can carry internal detail carrying
    /// `detail`. The match makes a new kind a compile error here until it is added.
    pub(crate) fn one_of_each(detail: &str) -> Vec<Error> {
        let errors = vec![
            Error::invalid("invalid_name", "name: must not be empty"),
            Error::unprocessable("ambient_account_not_allowed", "not allowed"),
            Error::Unauthenticated("the API token is not valid"),
            Error::Forbidden("reading credentials needs the view role".into()),
            Error::NotFound("credential ghcr in ~admin".into()),
            Error::Hidden("workspace team".into()),
            Error::conflict("credential_exists", "credential ghcr exists"),
            Error::RateLimited("too many attempts".into()),
            Error::upstream("acr_exchange_failed", "the exchange failed").with_detail(detail),
            Error::unavailable("master_key_unavailable", "secrets are unavailable")
                .with_detail(detail),
            Error::internal(detail),
        ];
        let mut seen = [false; 11];
        for error in &errors {
            let index = match error {
                Error::Invalid { .. } => 0,
                Error::Unprocessable { .. } => 1,
                Error::Unauthenticated(_) => 2,
                Error::Forbidden(_) => 3,
                Error::NotFound(_) => 4,
                Error::Hidden(_) => 5,
                Error::Conflict { .. } => 6,
                Error::RateLimited(_) => 7,
                Error::Upstream { .. } => 8,
                Error::Unavailable { .. } => 9,
                Error::Internal(_) => 10,
            };
            seen[index] = true;
        }
        assert!(seen.iter().all(|seen| *seen), "one error of each kind");
        errors
    }

    /// Issue 14 item 3: no kind of error sends its internal detail to a client.
    #[test]
    fn no_answer_carries_internal_detail() {
        const CANARY: &str = "database: error returned from database: /srv/DETAIL-CANARY";
        for error in one_of_each(CANARY) {
            let message = client_message(&error);
            assert!(!message.contains("CANARY"), "{}: {message}", error.code());
            assert!(
                !message.contains("database:"),
                "{}: {message}",
                error.code()
            );
        }
        assert_eq!(
            client_message(&Error::internal(CANARY)),
            crate::domain::error::INTERNAL_MESSAGE
        );
    }

    #[test]
    fn quoted_input_is_redacted_but_field_names_stay() {
        let message = r#"Failed to deserialize the JSON body into the target type: ambient: invalid type: string "canary-secret", expected a boolean at line 1 column 30"#;
        let redacted = redact_quoted(message);
        assert!(!redacted.contains("canary"), "{redacted}");
        assert!(redacted.contains("ambient"));
        let unknown = "unknown field `pasword`, expected one of `name`, `registry`";
        assert_eq!(redact_quoted(unknown), unknown);
    }

    #[test]
    fn every_error_kind_has_a_status() {
        assert_eq!(
            status_of(&Error::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&Error::conflict("credential_exists", "x")),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(&Error::unavailable("master_key_unavailable", "")),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn unavailable_answers_carry_retry_after() {
        let response = ApiError(Error::unavailable("database_unavailable", "down")).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[axum::http::header::RETRY_AFTER],
            RETRY_AFTER_SECONDS
        );
        // Issue 12 item 20: a failed mint's backoff says how long it really lasts.
        let response = ApiError(Error::Unavailable {
            code: "token_mint_backing_off",
            message: "backing off".into(),
            retry_after_seconds: Some(37),
            detail: None,
        })
        .into_response();
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "37");
        let response = ApiError(Error::NotFound("x".into())).into_response();
        assert!(!response
            .headers()
            .contains_key(axum::http::header::RETRY_AFTER));
    }
}
