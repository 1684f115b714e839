//! What operators' commands read: the server's version (`GET /api/v1/version`, for
//! `regkeeper doctor`) and the token behind a request (`Me.token`, for
//! `regkeeper whoami`). A database backup (`POST /api/v1/admin/backup`) is the SQLite
//! file itself, not JSON.

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The server's build and database kind: nothing a caller could use against it beyond
/// what `--version` of the same release prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServerVersion {
    /// The release, e.g. `0.1.0`.
    pub version: String,
    /// The commit it was built from, or `unknown`.
    pub commit: String,
    /// `sqlite` or `postgres`: how the server is backed up (`regkeeper backup`, or
    /// `pg_dump`).
    pub database: String,
}

/// The API token a request was made with (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeToken {
    pub id: String,
    pub name: String,
    /// The first characters of the token, e.g. `rk_Ab12Cd`.
    pub prefix: String,
    pub created_at: String,
    /// Absent when the token never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}
