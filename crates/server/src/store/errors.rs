//! Database errors as the domain's: one conversion, [`database_error`], reached from
//! every statement through [`OrDatabase::or_db`], so the store's functions return the
//! domain's `Result` and `?` works on sqlx's. (The domain knows nothing of sqlx, so
//! there is no `From<sqlx::Error>` for its error.)

use crate::domain::{Error, Result};

/// `.or_db()` on a sqlx result: its error as the domain's, by [`database_error`].
pub(super) trait OrDatabase<T> {
    fn or_db(self) -> Result<T>;
}

impl<T> OrDatabase<T> for std::result::Result<T, sqlx::Error> {
    fn or_db(self) -> Result<T> {
        self.map_err(database_error)
    }
}

/// Turns a database error into ours. The database being out of reach (refused or
/// dropped connections, a pool that waited in vain, a PostgreSQL shutting down or
/// starting up) and a full disk are conditions that pass without anyone changing
/// regkeeper, so they are `Unavailable` (503 with `Retry-After`), not internal errors;
/// their detail goes to the debug log, since the client message must not carry it.
pub(super) fn database_error(error: sqlx::Error) -> Error {
    match unavailability(&error) {
        Some((code, message)) => {
            tracing::debug!(error.detail = %error, error.code = code, "store.database_unavailable");
            Error::unavailable(code, message)
        }
        None => Error::internal(format!("database: {error}")),
    }
}

/// A failed audit insert: "try again later" when the database is unreachable or full
/// (so the action answers 503, not 500), else an internal error saying what failed.
pub(super) fn audit_write_error(error: sqlx::Error) -> Error {
    match database_error(error) {
        Error::Internal(detail) => Error::Internal(detail.context("audit log write failed")),
        other => other,
    }
}

/// A unique-constraint violation as `Conflict` with `code` and `message`; any other
/// error as [`database_error`] does.
pub(super) fn conflict_or(error: sqlx::Error, code: &'static str, message: String) -> Error {
    if is_unique_violation(&error) {
        Error::conflict(code, message)
    } else {
        database_error(error)
    }
}

pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

/// The code and client message for errors that mean "try again later".
fn unavailability(error: &sqlx::Error) -> Option<(&'static str, &'static str)> {
    const UNREACHABLE: (&str, &str) = (
        super::STORE_UNAVAILABLE_CODES[0],
        "the database is unavailable; try again shortly",
    );
    const FULL: (&str, &str) = (
        super::STORE_UNAVAILABLE_CODES[1],
        "the database's disk is full; nothing was stored (an operator must free space)",
    );
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(UNREACHABLE),
        sqlx::Error::Database(database) => {
            let code = database.code()?;
            match code.as_ref() {
                // SQLite's SQLITE_FULL; PostgreSQL's disk_full.
                "13" | "53100" => Some(FULL),
                sqlstate if refusing(sqlstate, database.message()) => Some(UNREACHABLE),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether a PostgreSQL SQLSTATE says the database is there but will not serve us for
/// now — an operator or a fail-over will change that, not a different request:
/// connection exceptions (class 08), too many connections (53300), administrator or
/// crash shutdown and "cannot connect now" (57P01–57P03), a read-only transaction on a
/// standby or a database set read-only (25006), and a database that is not accepting
/// connections (`ALTER DATABASE … ALLOW_CONNECTIONS false`, 55000 with that message;
/// other 55000s are bugs of ours).
fn refusing(sqlstate: &str, message: &str) -> bool {
    match sqlstate {
        "53300" | "57P01" | "57P02" | "57P03" | "25006" => true,
        "55000" => message.contains("not currently accepting connections"),
        sqlstate => sqlstate.starts_with("08"),
    }
}

#[cfg(test)]
mod tests {
    use super::{database_error, refusing};
    use crate::domain::Error;

    #[test]
    fn an_unreachable_database_is_unavailable_not_internal() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(refused),
        ] {
            let mapped = database_error(error);
            assert!(
                matches!(
                    mapped,
                    Error::Unavailable {
                        code: "database_unavailable",
                        ..
                    }
                ),
                "{mapped:?}"
            );
        }
        assert!(matches!(
            database_error(sqlx::Error::RowNotFound),
            Error::Internal(_)
        ));
    }

    /// Issue 12 item 10: every "database unreachable or refusing" SQLSTATE is a 503, not a 500.
    #[test]
    fn a_refusing_database_is_unavailable_whatever_it_answers() {
        for (sqlstate, message) in [
            (
                "55000",
                "database \"x\" is not currently accepting connections",
            ),
            (
                "57P01",
                "terminating connection due to administrator command",
            ),
            ("57P03", "the database system is starting up"),
            ("53300", "sorry, too many clients already"),
            ("25006", "cannot execute INSERT in a read-only transaction"),
            ("08006", "connection failure"),
        ] {
            assert!(refusing(sqlstate, message), "{sqlstate}");
        }
        assert!(!refusing("55000", "currval of sequence is not yet defined"));
        assert!(!refusing("23505", "duplicate key"));
        assert!(!refusing("42P01", "relation does not exist"));
    }
}
