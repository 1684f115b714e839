//! The one error type of the domain and service layers. It knows nothing of HTTP: the
//! `http` module alone turns it into a status code and a client message.

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// A registry or cloud service answered badly or could not be reached.
    #[error("{message}")]
    Upstream { code: &'static str, message: String },
    /// A dependency the operation needs is unavailable (e.g. the master key).
    /// `retry_after_seconds` is how long to wait when the service knows (a failed
    /// mint's backoff); `None` leaves the HTTP layer's default.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after_seconds: Option<u32>,
    },
    /// Anything unexpected. The detail is logged at the HTTP boundary, never returned.
    #[error("internal error: {0}")]
    Internal(String),
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

    /// A 503 with the default wait before a retry.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
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
