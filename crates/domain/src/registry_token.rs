//! A minted registry token's status: the one vocabulary the token service writes, the
//! store keeps in `registry_tokens.status`, and the metrics and credential views report.

use std::fmt;
use std::str::FromStr;

use super::{Error, Result};

/// Where a minted registry token stands, as its row records it (`as_str` is the stored
/// text). The token service writes it; the store reads it back, and counts tokens by
/// it for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryTokenStatus {
    /// Minted or refreshed, and served.
    Fresh,
    /// A refresh failed while the token is still valid: it is served while the retries
    /// back off.
    Stale,
    /// A refresh failed and the token has run out.
    Expired,
    /// No token yet: the first mint is leased, or failed and backs off.
    Pending,
}

impl RegistryTokenStatus {
    /// Every status, in the order the metrics report them.
    pub const ALL: [Self; 4] = [Self::Fresh, Self::Stale, Self::Expired, Self::Pending];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Stale => "stale",
            Self::Expired => "expired",
            Self::Pending => "pending",
        }
    }
}

impl fmt::Display for RegistryTokenStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for RegistryTokenStatus {
    type Err = Error;

    /// Reads a stored status; anything else is a damaged row.
    fn from_str(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| Error::internal(format!("stored token status {value} is unknown")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_statuses_read_back_as_stored() {
        for status in RegistryTokenStatus::ALL {
            assert_eq!(
                status.as_str().parse::<RegistryTokenStatus>().unwrap(),
                status
            );
        }
        assert_eq!(
            ["fresh", "stale", "expired", "pending"],
            RegistryTokenStatus::ALL.map(RegistryTokenStatus::as_str)
        );
        assert!("refreshing".parse::<RegistryTokenStatus>().is_err());
    }
}
