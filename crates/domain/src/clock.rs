//! Time as an injected dependency, so expiry and refresh logic is tested on a clock the
//! test controls instead of with sleeps.
//!
//! Logic asks `App::now()` (or the [`Clock`] it was given, as the login cache and the
//! providers are) and never reads the OS clock itself: [`SystemClock`] is the one
//! reader. The background loops' periods and a resolve's polls while another replica
//! holds a mint lease are tokio timers; the AWS SDK signs with the OS clock.
//! `.clippy.toml` forbids reading the OS clock anywhere else; durations that are only
//! reported (a request's latency) are measured with a [`Stopwatch`].

use std::sync::atomic::{AtomicI64, Ordering};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::credential::Timestamp;

pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    // The one reader of the time of day (`.clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let now = OffsetDateTime::now_utc();
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// Elapsed time for what is only reported (a request's latency, how long a
/// connection took), never decided on: logic that acts on time uses a [`Clock`] or a
/// tokio timer, which tests control.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    // The one reader of the monotonic clock (`.clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start))
    }

    pub fn advance(&self, milliseconds: i64) {
        self.0.fetch_add(milliseconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 in UTC with exactly three fractional digits, so times line up in a column
/// and sort as text (`time`'s own RFC 3339 drops trailing zeros: `.2Z` next to `.172Z`).
const RFC3339_MILLISECONDS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// RFC 3339 in UTC with millisecond precision (`2026-12-06T14:54:04.200Z`), as every
/// API response, table and page shows time.
pub fn format_timestamp(timestamp: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp) * 1_000_000)
        .ok()
        .and_then(|time| time.format(RFC3339_MILLISECONDS).ok())
        .unwrap_or_else(|| timestamp.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 item 16 (c): always exactly milliseconds, never `.2Z` or no fraction.
    #[test]
    fn formats_as_rfc3339_utc_with_exactly_milliseconds() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            format_timestamp(1_700_000_000_200),
            "2023-11-14T22:13:20.200Z"
        );
        assert_eq!(
            format_timestamp(1_700_000_000_020),
            "2023-11-14T22:13:20.020Z"
        );
        // Before 1970 too, and what RFC 3339 parsers read back is the same instant.
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999Z");
        let parsed = OffsetDateTime::parse(
            &format_timestamp(1_700_000_000_200),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(parsed.unix_timestamp_nanos(), 1_700_000_000_200_000_000);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now(), 1_000);
        clock.advance(500);
        assert_eq!(clock.now(), 1_500);
    }
}
