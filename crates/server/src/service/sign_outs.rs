//! Console sessions signed out before they expired, shared by every replica. A session
//! cookie is sealed and cannot be taken back, so signing out records the session's
//! random id in the database (`console_sign_outs`, with the session's expiry; expired
//! rows are pruned at the next sign-out) and here, and a replayed cookie is refused.
//!
//! Every replica keeps the ids in memory, so checking a request costs no query. On
//! PostgreSQL the insert's trigger announces the id on the invalidation channel and
//! each replica's listener adds it ([`SignOuts::heard`]) milliseconds after the commit;
//! whenever the listener (re)connects or loses its connection, the replica reloads
//! every unexpired sign-out from the database ([`SignOuts::reload`]), so one missed
//! while nobody listened is not lost. SQLite is one process: the ids are loaded once at
//! start, which keeps sign-outs across a restart.

use std::time::Duration;

use crate::domain::credential::Timestamp;
use crate::domain::Result;

use super::App;

/// A console session's id: 16 random bytes sealed inside its cookie.
pub type SessionId = [u8; 16];

/// The longest a console session lives (`console::session`): no sign-out needs
/// remembering longer.
const REMEMBER: Duration = Duration::from_secs(12 * 60 * 60);

/// The ids of signed-out sessions, in memory.
pub struct SignOuts(moka::sync::Cache<SessionId, ()>);

impl Default for SignOuts {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(REMEMBER)
                .build(),
        )
    }
}

impl SignOuts {
    /// Whether the session was signed out (here or on any replica this one heard of).
    pub fn contains(&self, id: &SessionId) -> bool {
        self.0.contains_key(id)
    }

    /// A sign-out another replica (or this one) recorded, announced by the database.
    pub fn heard(&self, id: SessionId) {
        self.0.insert(id, ());
    }

    /// Signs the session out: remembered here at once, then recorded for every replica.
    /// If the database cannot be written the session still ends here, and the error
    /// says so to the caller (who logs it).
    pub async fn record(&self, app: &App, id: SessionId, expires_at: Timestamp) -> Result<()> {
        self.0.insert(id, ());
        app.store
            .record_sign_out(&hex::encode(id), expires_at, app.now())
            .await
    }

    /// Loads every unexpired sign-out from the database: at start, and whenever
    /// announcements may have been missed.
    pub async fn reload(&self, app: &App) -> Result<usize> {
        let rows = app.store.sign_outs(app.now()).await?;
        let count = rows.len();
        for (hex_id, _) in rows {
            let mut id = SessionId::default();
            if hex::decode_to_slice(&hex_id, &mut id).is_ok() {
                self.0.insert(id, ());
            }
        }
        Ok(count)
    }
}
