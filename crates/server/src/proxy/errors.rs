//! The proxy's one mapping from failures to the OCI distribution error body
//! (`{"errors":[{"code","message"}]}`) and status. A domain error answers with the
//! REST API's status (`http::error::status_of`); only its registry-protocol code is
//! the proxy's own. Internal detail is logged here, once, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::error::INTERNAL_MESSAGE;
use crate::domain::Error;
use crate::http::error::status_of;
use crate::outbound::OutboundError;
use crate::registry_auth::RegistryError;

use super::path::PathError;
use super::upstream::UpstreamError;

/// The challenge a client gets until it sends a regkeeper API token as its password.
pub const CHALLENGE: &str = "Basic realm=\"regkeeper\"";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    #[error("too many failed authentications from this address; wait a minute")]
    RateLimited,
    #[error("the proxy serves the read API only (GET and HEAD)")]
    MethodNotAllowed,
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Service(#[from] Error),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream has no such manifest, blob or repository.
    #[error("{what} is unknown to {host}")]
    NotFound {
        code: &'static str,
        host: String,
        what: String,
    },
    #[error("{host} answered HTTP {status}")]
    UpstreamStatus { host: String, status: u16 },
    #[error("{host} sent content that does not match its digest {expected} (got {computed}); nothing was served")]
    DigestMismatch {
        host: String,
        expected: String,
        computed: String,
    },
    #[error("{host} sent a manifest or tag list larger than {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("{host} sent a tag list that is not JSON")]
    BadTagList { host: String },
    #[error("the requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("blob cache: {0}")]
    Cache(std::io::Error),
}

impl ProxyError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            Self::Path(PathError::UnknownRoute) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            Self::Path(error) => (StatusCode::BAD_REQUEST, error.oci_code()),
            Self::Service(error) => service_status(error),
            Self::Upstream(error) => upstream_status(error),
            Self::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            Self::UpstreamStatus { status: 429, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
            }
            Self::UpstreamStatus { .. }
            | Self::DigestMismatch { .. }
            | Self::TooLarge { .. }
            | Self::BadTagList { .. } => (StatusCode::BAD_GATEWAY, "UNKNOWN"),
            Self::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID"),
            Self::Cache(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }

    /// A short stable name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::RateLimited => "rate_limited",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Path(_) => "invalid_path",
            Self::Service(error) => error.code(),
            Self::Upstream(UpstreamError::Outbound(error)) => error.code(),
            Self::Upstream(UpstreamError::Registry(error)) => error.code(),
            Self::Upstream(UpstreamError::Refused { .. }) => "upstream_refused",
            Self::Upstream(UpstreamError::Denied { .. }) => "upstream_denied",
            Self::Upstream(UpstreamError::Relogin(error)) => error.code(),
            Self::NotFound { .. } => "upstream_not_found",
            Self::UpstreamStatus { .. } => "upstream_status",
            Self::DigestMismatch { .. } => "digest_mismatch",
            Self::TooLarge { .. } => "upstream_too_large",
            Self::BadTagList { .. } => "upstream_bad_tag_list",
            Self::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            Self::Cache(_) => "cache_failed",
        }
    }
}

/// A domain error's status, as the REST API answers it, and its registry-protocol code.
fn service_status(error: &Error) -> (StatusCode, &'static str) {
    let code = match error {
        Error::Unauthenticated(_) => "UNAUTHORIZED",
        Error::Forbidden(_) => "DENIED",
        Error::NotFound(_) | Error::Hidden(_) => "NAME_UNKNOWN",
        Error::Invalid { .. } | Error::Unprocessable { .. } => "NAME_INVALID",
        Error::RateLimited(_) => "TOOMANYREQUESTS",
        Error::Unavailable { .. } => "UNAVAILABLE",
        Error::Upstream { .. } | Error::Conflict { .. } | Error::Internal(_) => "UNKNOWN",
    };
    (status_of(error), code)
}

fn upstream_status(error: &UpstreamError) -> (StatusCode, &'static str) {
    match error {
        UpstreamError::Refused { .. } | UpstreamError::Denied { .. } => {
            (StatusCode::FORBIDDEN, "DENIED")
        }
        // The token service turned the stored login down.
        UpstreamError::Registry(RegistryError::Unauthorized { .. }) => {
            (StatusCode::FORBIDDEN, "DENIED")
        }
        UpstreamError::Registry(RegistryError::Outbound(OutboundError::Timeout { .. }))
        | UpstreamError::Outbound(OutboundError::Timeout { .. }) => {
            (StatusCode::GATEWAY_TIMEOUT, "UNAVAILABLE")
        }
        UpstreamError::Registry(_) | UpstreamError::Outbound(_) => {
            (StatusCode::BAD_GATEWAY, "UNKNOWN")
        }
        UpstreamError::Relogin(error) => service_status(error),
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Service(error) | Self::Upstream(UpstreamError::Relogin(error)) => {
                let detail = error.detail().map(tracing::field::debug);
                if let Error::Internal(_) = error {
                    tracing::error!(error.detail = detail, "proxy.internal_error");
                } else if status.is_server_error() {
                    tracing::warn!(error.kind = error.code(), error.message = %error, error.detail = detail, "proxy.upstream_failed");
                }
                error.to_string()
            }
            Self::Cache(error) => {
                tracing::error!(error = %error, "proxy.cache_failed");
                INTERNAL_MESSAGE.to_owned()
            }
            other => {
                if status.is_server_error() {
                    tracing::warn!(error.kind = other.kind(), error.message = %other, "proxy.upstream_failed");
                }
                other.to_string()
            }
        };
        let body = serde_json::json!({
            "errors": [{ "code": code, "message": message, "detail": null }]
        });
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::Service(error) | Self::Upstream(UpstreamError::Relogin(error)) = &self {
            crate::http::error::set_retry_after(&mut response, error);
        }
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE && !headers.contains_key(header::RETRY_AFTER) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(crate::http::error::RETRY_AFTER_SECONDS),
            );
        }
        if let Self::RangeNotSatisfiable { size } = self {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                headers.insert(header::CONTENT_RANGE, value);
            }
        }
        headers.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_get_oci_codes_and_statuses() {
        let cases: Vec<(ProxyError, u16, &str)> = vec![
            (ProxyError::Unauthenticated("x"), 401, "UNAUTHORIZED"),
            (ProxyError::MethodNotAllowed, 405, "UNSUPPORTED"),
            (
                ProxyError::Path(PathError::TagInvalid("-".into())),
                400,
                "TAG_INVALID",
            ),
            (
                ProxyError::Service(Error::Forbidden("no".into())),
                403,
                "DENIED",
            ),
            (
                ProxyError::Service(Error::NotFound("x".into())),
                404,
                "NAME_UNKNOWN",
            ),
            (
                ProxyError::NotFound {
                    code: "BLOB_UNKNOWN",
                    host: "h".into(),
                    what: "blob".into(),
                },
                404,
                "BLOB_UNKNOWN",
            ),
            (
                ProxyError::UpstreamStatus {
                    host: "h".into(),
                    status: 429,
                },
                429,
                "TOOMANYREQUESTS",
            ),
            (
                ProxyError::Upstream(UpstreamError::Outbound(OutboundError::Timeout {
                    host: "h".into(),
                })),
                504,
                "UNAVAILABLE",
            ),
            (
                ProxyError::DigestMismatch {
                    host: "h".into(),
                    expected: "a".into(),
                    computed: "b".into(),
                },
                502,
                "UNKNOWN",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(
                error.status_and_code(),
                (StatusCode::from_u16(status).unwrap(), code)
            );
        }
        let response = ProxyError::Unauthenticated("x").into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], CHALLENGE);
    }

    /// Issue 14 item 3: a domain error answers the proxy's client with the REST API's
    /// status (so a conflict is a 409 and an unprocessable request a 422 here too),
    /// and no error's internal detail reaches the body, directly or as a failed relogin.
    #[tokio::test]
    async fn domain_errors_answer_with_the_api_status_and_no_detail() {
        const CANARY: &str = "database: no such table: registry_tokens (/srv/DETAIL-CANARY)";
        let errors = crate::http::error::tests::one_of_each(CANARY)
            .into_iter()
            .zip(crate::http::error::tests::one_of_each(CANARY));
        for (error, again) in errors {
            let status = status_of(&error);
            let what = error.code();
            for failure in [
                ProxyError::Service(error),
                ProxyError::Upstream(UpstreamError::Relogin(again)),
            ] {
                assert_eq!(failure.status_and_code().0, status, "{what}");
                let response = failure.into_response();
                assert_eq!(response.status(), status, "{what}");
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let body = String::from_utf8(body.to_vec()).unwrap();
                assert!(!body.contains("CANARY"), "{what}: {body}");
                assert!(!body.contains("database:"), "{what}: {body}");
            }
        }
        assert_eq!(
            ProxyError::Service(Error::conflict("rotation_in_progress", "x")).status_and_code(),
            (StatusCode::CONFLICT, "UNKNOWN")
        );
        assert_eq!(
            ProxyError::Service(Error::unprocessable("invalid_scope", "x")).status_and_code(),
            (StatusCode::UNPROCESSABLE_ENTITY, "NAME_INVALID")
        );
    }
}
