//! Endpoints for operators' commands: the server's version (`GET /api/v1/version`, any
//! caller; `regkeeper doctor`) and a database backup (`POST /api/v1/admin/backup`, site
//! administrators; `regkeeper backup`), whose answer is the SQLite file itself,
//! streamed with its `Content-Length` so a client can tell a cut-off transfer.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use regkeeper_wire as wire;

use crate::service::operations;

use super::auth::Caller;
use super::error::ApiResult;
use super::ApiState;

/// The server's release, the commit it was built from, and its database kind.
#[utoipa::path(get, path = "/api/v1/version", tag = "operations",
    responses((status = 200, body = wire::ServerVersion), (status = 401, body = wire::ErrorBody)))]
pub async fn version(
    State(state): State<ApiState>,
    Caller(_principal): Caller,
) -> Json<wire::ServerVersion> {
    Json(wire::ServerVersion {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: regkeeper_client::COMMIT.to_owned(),
        database: operations::database_kind(&state.app).to_owned(),
    })
}

/// A consistent snapshot of the SQLite database, taken while the server serves
/// (`application/vnd.sqlite3`). It holds sealed secrets and token hashes, never the
/// master key. On PostgreSQL: 422 `backup_needs_pg_dump`.
#[utoipa::path(post, path = "/api/v1/admin/backup", tag = "admin",
    responses((status = 200, description = "the SQLite database file, application/vnd.sqlite3"),
        (status = 403, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub async fn backup(
    State(state): State<ApiState>,
    Caller(principal): Caller,
) -> ApiResult<Response> {
    let snapshot = operations::snapshot(&state.app, &principal).await?;
    let name = format!(
        "regkeeper-{}.db",
        crate::clock::format_timestamp(snapshot.taken_at).replace(':', "")
    );
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(snapshot.file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.sqlite3".to_owned()),
            (header::CONTENT_LENGTH, snapshot.bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
