//! What operators' commands ask of the server besides the everyday actions: the build
//! and database kind (`regkeeper doctor`), the API token behind a request
//! (`regkeeper whoami`), and a consistent copy of an SQLite database taken while the
//! server serves (`regkeeper backup`).
//!
//! A snapshot is written by `Store::snapshot_into` (SQLite's `VACUUM INTO`) to a new
//! 0600 file beside the database, named `DB.backup-UUID`, which is opened and unlinked
//! at once: the answer streams from the open file, and nothing stays behind once it is
//! sent or abandoned (only a crash in the middle of the copy can leave one; it may be
//! deleted). The copy holds what the database holds: sealed secrets, token hashes,
//! never a key. Its `database.backup` audit entry is written first, so the backup
//! records that it was taken. PostgreSQL is refused (`backup_needs_pg_dump`).

use std::path::{Path, PathBuf};

use crate::config::Database;
use crate::domain::identity::Principal;
use crate::domain::{Error, Result};

use super::access::require_site_admin;
use super::App;

/// `sqlite` or `postgres`.
pub fn database_kind(app: &App) -> &'static str {
    app.store.backend()
}

/// A snapshot of the database, unlinked already: read it to the end.
pub struct Snapshot {
    pub file: std::fs::File,
    pub bytes: u64,
    /// When it was taken, for the file name offered to the client.
    pub taken_at: i64,
}

/// Takes a consistent snapshot of the SQLite database (site administrators).
pub async fn snapshot(app: &App, principal: &Principal) -> Result<Snapshot> {
    let record = app
        .record(Some(principal), "database.backup")
        .detail(serde_json::json!({ "database": database_kind(app) }));
    app.audited(record.clone(), async {
        require_site_admin(principal, "backing up the database")?;
        let Database::Sqlite(database) = &app.config.database else {
            return Err(crate::store::backup_needs_pg_dump());
        };
        let taken_at = app.now();
        app.audit_writer.append(record).await?;
        let path = snapshot_path(database);
        create_private(&path)?;
        let copied = app.store.snapshot_into(&path).await;
        // Opened before it is unlinked, and unlinked whatever happened.
        let opened = std::fs::File::open(&path);
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(error = %error, path = %path.display(), "backup.remove_failed");
        }
        copied?;
        let file =
            opened.map_err(|error| Error::internal(format!("opening the snapshot: {error}")))?;
        let bytes = file
            .metadata()
            .map_err(|error| Error::internal(format!("reading the snapshot's size: {error}")))?
            .len();
        tracing::info!(backup.bytes = bytes, "backup.taken");
        Ok(Snapshot {
            file,
            bytes,
            taken_at,
        })
    })
    .await
}

/// Beside the database, on the same file system, where the server may write.
fn snapshot_path(database: &Path) -> PathBuf {
    let name = database
        .file_name()
        .map_or_else(|| "regkeeper.db".into(), |name| name.to_string_lossy());
    database.with_file_name(format!("{name}.backup-{}", uuid::Uuid::new_v4().simple()))
}

/// An empty file only the server's user may read: `VACUUM INTO` accepts an empty
/// file, and would otherwise create one with the umask's permissions.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|error| {
            Error::unavailable(
                "backup_not_written",
                "the server could not create the snapshot file beside its database; the server log says why",
            )
            .with_detail(format!("creating {}: {error}", path.display()))
        })
}
