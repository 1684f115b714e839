//! The one error type of the domain and service layers. It knows nothing of HTTP: the
//! `http` module alone turns it into a status code.
//!
//! Two messages, kept apart as dropshot's `HttpError` keeps its external and internal
//! ones: an error's `Display` is the message a client may be shown (the REST API, the
//! console, the proxy, a stored verification or push status, the audit log), and what
//! a lower layer said — a database error, a file path, an I/O error — goes in a
//! [`Detail`], which has no `Display`: it can be logged (`?detail`, once, where the
//! failure is handled) but not formatted into a message by accident.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every internal error tells its client.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

/// Internal detail of a failure, for the log only. Deliberately not `Display`; its
/// `Debug` is the text itself, for a log field (`error.detail = ?detail`).
#[derive(Clone, PartialEq, Eq)]
pub struct Detail(String);

impl Detail {
    pub fn new(detail: impl fmt::Display) -> Self {
        Self(detail.to_string())
    }

    /// The same detail after `context`, what was being done when it happened.
    #[must_use]
    pub fn context(self, context: &str) -> Self {
        Self(format!("{context}: {}", self.0))
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or a field is invalid. `code` is a stable snake_case
    /// identifier; the message names the field and what would be valid.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Well-formed but not acceptable in this combination or server configuration.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    /// The caller can see the object but lacks the role for this action.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by that name exists (for a caller allowed to look).
    #[error("{0} not found")]
    NotFound(String),
    /// It may exist, but the caller may not see it: not a member of the workspace, or
    /// a workload role whose policy does not reach it. Answered exactly as
    /// [`Error::NotFound`] (same status, code and message), so names cannot be probed;
    /// only the audit log tells the two apart (`denied` rather than `not_found`).
    #[error("{0} not found")]
    Hidden(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    RateLimited(String),
    /// A registry or cloud service answered badly or could not be reached. `message`
    /// is for the client; `detail`, if any, for the log.
    #[error("{message}")]
    Upstream {
        code: &'static str,
        message: String,
        detail: Option<Detail>,
    },
    /// A dependency the operation needs is unavailable (e.g. the master key).
    /// `retry_after_seconds` is how long to wait when the service knows (a failed
    /// mint's backoff); `None` leaves the HTTP layer's default. `message` is for the
    /// client; `detail`, if any, for the log.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after_seconds: Option<u32>,
        detail: Option<Detail>,
    },
    /// Anything unexpected. The client is told [`INTERNAL_MESSAGE`]; the detail is
    /// logged where the failure is handled.
    #[error("{}", INTERNAL_MESSAGE)]
    Internal(Detail),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A 502 with no internal detail.
    pub fn upstream(code: &'static str, message: impl Into<String>) -> Self {
        Self::Upstream {
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// A 503 with the default wait before a retry and no internal detail.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code,
            message: message.into(),
            retry_after_seconds: None,
            detail: None,
        }
    }

    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::Internal(Detail::new(detail))
    }

    /// The same error with `detail` for the log: for [`Error::Upstream`] and
    /// [`Error::Unavailable`], whose client message stays as it is; the other kinds
    /// carry no detail and are returned unchanged.
    #[must_use]
    pub fn with_detail(mut self, detail: impl fmt::Display) -> Self {
        if let Self::Upstream { detail: slot, .. } | Self::Unavailable { detail: slot, .. } =
            &mut self
        {
            *slot = Some(Detail::new(detail));
        }
        self
    }

    /// The internal detail, for the log of whoever handles the failure.
    pub fn detail(&self) -> Option<&Detail> {
        match self {
            Self::Internal(detail) => Some(detail),
            Self::Upstream { detail, .. } | Self::Unavailable { detail, .. } => detail.as_ref(),
            _ => None,
        }
    }

    /// This failure as an internal one, for a caller it does not concern as such (a
    /// lookup shared by several waiters, an audit batch written for several
    /// requests): its detail, or what it said, is kept for the log after `context`.
    pub fn to_internal(&self, context: &str) -> Self {
        match self {
            Self::Internal(detail) => Self::Internal(detail.clone().context(context)),
            other => Self::internal(format_args!("{context}: {other:?}")),
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Upstream { .. }
                | Self::RateLimited(_)
                | Self::Internal(_)
        )
    }

    /// A stable snake_case code for clients and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Conflict { code, .. }
            | Self::Upstream { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) | Self::Hidden(_) => "not_found",
            Self::RateLimited(_) => "rate_limited",
            Self::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "database: no such table: /var/lib/regkeeper/DETAIL-CANARY";

    /// Issue 14 item 3: whatever the kind, the detail is not in the message.
    #[test]
    fn the_detail_never_reaches_the_message() {
        for error in [
            Error::internal(CANARY),
            Error::upstream("aws_failed", "AWS answered unexpectedly").with_detail(CANARY),
            Error::unavailable("master_key_unavailable", "secrets are unavailable")
                .with_detail(CANARY),
            Error::internal(CANARY).to_internal("audit log write failed"),
            Error::unavailable("database_unavailable", "down")
                .with_detail(CANARY)
                .to_internal("shared lookup"),
        ] {
            assert!(!error.to_string().contains("CANARY"), "{error}");
            let logged = format!("{:?}", error.detail().expect("a detail"));
            assert!(logged.contains("DETAIL-CANARY"), "{logged}");
        }
        assert_eq!(Error::internal(CANARY).to_string(), INTERNAL_MESSAGE);
        assert_eq!(
            Error::upstream("aws_failed", "AWS answered unexpectedly")
                .with_detail(CANARY)
                .to_string(),
            "AWS answered unexpectedly"
        );
    }

    #[test]
    fn only_upstream_and_unavailable_take_a_detail() {
        let error = Error::conflict("credential_exists", "exists").with_detail(CANARY);
        assert!(error.detail().is_none());
        assert_eq!(error.to_string(), "exists");
    }
}
