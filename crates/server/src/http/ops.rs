//! Health, readiness, metrics, the OpenAPI document and the error answers for unknown
//! routes.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::OpenApi;

use super::error::error_response;
use super::{ApiDoc, ApiState};
use crate::domain::registry_token::RegistryTokenStatus;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(), responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready to serve: the database answers and the master key is loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(),
    responses((status = 200), (status = 503)))]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let database = state.app.store.ping().await;
    let master_key = state.app.keyring.status();
    state
        .app
        .metrics
        .master_key_available
        .set(i64::from(master_key.is_ok()));
    let ready = database.is_ok() && master_key.is_ok();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database.is_ok() { "ok" } else { "unavailable" },
        "masterKey": if master_key.is_ok() { "ok" } else { "unavailable (see `regkeeper key status` or the server log)" },
    });
    if ready {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, super::error::RETRY_AFTER_SECONDS)],
            Json(body),
        )
            .into_response()
    }
}

pub async fn metrics(State(state): State<ApiState>) -> Response {
    let _scrape = state.app.metrics.scrape.lock().await;
    state
        .app
        .metrics
        .master_key_available
        .set(i64::from(state.app.keyring.status().is_ok()));
    match state.app.store.token_status_counts(state.app.now()).await {
        Ok(counts) => {
            for status in RegistryTokenStatus::ALL {
                let count = counts
                    .iter()
                    .find(|(state, _)| *state == status)
                    .map_or(0, |(_, count)| *count);
                state
                    .app
                    .metrics
                    .tokens
                    .get_or_create(&crate::metrics::StatusLabels {
                        status: status.as_str().to_owned(),
                    })
                    .set(count);
            }
        }
        Err(error) => tracing::warn!(error.code = error.code(), "metrics.token_counts_failed"),
    }
    match state.app.store.sync_target_counts().await {
        Ok(counts) => {
            for status in ["pending", "ok", "failing"] {
                let count = counts
                    .iter()
                    .find(|(state, _)| state == status)
                    .map_or(0, |(_, count)| *count);
                state
                    .app
                    .metrics
                    .sync_targets
                    .get_or_create(&crate::metrics::StatusLabels {
                        status: status.to_owned(),
                    })
                    .set(count);
            }
        }
        Err(error) => tracing::warn!(error.code = error.code(), "metrics.sync_counts_failed"),
    }
    freshness(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.app.metrics.render(),
    )
        .into_response()
}

/// The freshness series from the database (`metrics::freshness`). On a read error
/// the previous scrape's series stay, and the log says why.
async fn freshness(state: &ApiState) {
    let limit = i64::try_from(state.app.config.metrics_credential_series_limit).unwrap_or(i64::MAX);
    let credentials = state.app.store.credential_freshness(limit).await;
    let sync_targets = state.app.store.sync_target_freshness(limit).await;
    match (credentials, sync_targets) {
        (Ok(credentials), Ok(sync_targets)) => state
            .app
            .metrics
            .freshness
            .record(&credentials, &sync_targets),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(error.code = error.code(), "metrics.freshness_failed");
        }
    }
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /api/v1/openapi.json",
    )
}

pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method; see /api/v1/openapi.json",
    )
}
