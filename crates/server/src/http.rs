//! The REST API: routing, authentication, request limits, and the one place where
//! domain errors become HTTP status codes (`error`). Handlers are thin: they parse,
//! call `service`, and shape the response with `views`. The web console's pages
//! (`crate::console`) are merged into the same router, under `/` and `/console`.
//!
//! Every request is bounded by a 60 s time-out (503 `timeout`) and 1024 requests in
//! progress; a panic in a handler is caught and answered as a generic 500. The answers
//! that have no domain error (an unknown route, 405, the time-out, a caught panic)
//! use `error::error_response`'s body shape. `/readyz` gives states only, never
//! reasons. Only `credentials::resolve` puts a registry secret into a response; the
//! other secrets an answer may carry once are a new API token and a generated webhook
//! signing key. Handlers hold no business rule and run no SQL.

mod admin;
mod auth;
mod credentials;
pub mod error;
mod federation;
mod identity;
mod maintenance;
mod ops;
mod roles;
mod sign_in;
mod sync_targets;
mod views;

use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

use crate::metrics::{RequestLabels, RouteLabels};
use crate::service::App;

pub use auth::AuthLimiter;

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState {
    pub app: Arc<App>,
    pub limiter: Arc<AuthLimiter>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "regkeeper", description = "Container-registry credentials broker: REST API."),
    paths(
        ops::healthz, ops::readyz,
        identity::me, identity::list_users, identity::create_user,
        identity::list_workspaces, identity::create_workspace,
        identity::list_members, identity::put_member, identity::remove_member,
        identity::list_tokens, identity::create_token, identity::revoke_token,
        identity::disable_user, identity::enable_user, identity::delete_user,
        identity::list_user_tokens, identity::revoke_user_token,
        credentials::list, credentials::create, credentials::show, credentials::update, credentials::delete,
        credentials::verify, credentials::resolve, credentials::resolve_default,
        roles::list, roles::create, roles::show, roles::update, roles::delete,
        roles::list_tokens, roles::create_token, roles::revoke_token, roles::simulate,
        roles::list_grants, roles::add_grant, roles::revoke_grant,
        federation::list_trusts, federation::add_trust, federation::remove_trust,
        federation::exchange, sign_in::start, sign_in::complete,
        admin::audit_list, admin::audit_verify, admin::key_status, admin::key_rotate, admin::key_migrate,
        sync_targets::list, sync_targets::create, sync_targets::delete, sync_targets::run,
        maintenance::version, maintenance::backup,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "api_token",
            Vec::<String>::new(),
        )]);
    }
}

/// Bounds on every request: a slow database or client cannot pile requests up
/// without limit.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const MAX_CONCURRENT_REQUESTS: usize = 1024;

async fn overloaded(error: tower::BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        error::error_response(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was abandoned; retry",
        )
    } else {
        tracing::error!(error = %error, "request.middleware_failed");
        error::error_response(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            crate::domain::error::INTERNAL_MESSAGE,
        )
    }
}

pub fn router(state: ApiState) -> Router {
    let max_body = state.app.config.max_body_bytes;
    let api = Router::new()
        .route("/me", get(identity::me))
        .route(
            "/users",
            get(identity::list_users).post(identity::create_user),
        )
        .route("/users/{name}", delete(identity::delete_user))
        .route("/users/{name}/disable", post(identity::disable_user))
        .route("/users/{name}/enable", post(identity::enable_user))
        .route("/users/{name}/tokens", get(identity::list_user_tokens))
        .route(
            "/users/{name}/tokens/{id}",
            delete(identity::revoke_user_token),
        )
        .route(
            "/workspaces",
            get(identity::list_workspaces).post(identity::create_workspace),
        )
        .route(
            "/workspaces/{workspace}/members",
            get(identity::list_members),
        )
        .route(
            "/workspaces/{workspace}/members/{user}",
            put(identity::put_member).delete(identity::remove_member),
        )
        .route(
            "/tokens",
            get(identity::list_tokens).post(identity::create_token),
        )
        .route("/tokens/{id}", delete(identity::revoke_token))
        .route(
            "/workspaces/{workspace}/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/workspaces/{workspace}/credentials/{name}",
            get(credentials::show)
                .patch(credentials::update)
                .delete(credentials::delete),
        )
        .route(
            "/workspaces/{workspace}/credentials/{name}/verify",
            post(credentials::verify),
        )
        .route(
            "/workspaces/{workspace}/resolve",
            post(credentials::resolve),
        )
        .route("/resolve", post(credentials::resolve_default))
        .route(
            "/workspaces/{workspace}/roles",
            get(roles::list).post(roles::create),
        )
        .route(
            "/workspaces/{workspace}/roles/{name}",
            get(roles::show).patch(roles::update).delete(roles::delete),
        )
        .route(
            "/workspaces/{workspace}/roles/{name}/tokens",
            get(roles::list_tokens).post(roles::create_token),
        )
        .route(
            "/workspaces/{workspace}/roles/{name}/tokens/{id}",
            delete(roles::revoke_token),
        )
        .route(
            "/workspaces/{workspace}/roles/{name}/simulate",
            post(roles::simulate),
        )
        .route(
            "/workspaces/{workspace}/role-grants",
            get(roles::list_grants).post(roles::add_grant),
        )
        .route(
            "/workspaces/{workspace}/role-grants/{role}",
            delete(roles::revoke_grant),
        )
        .route(
            "/workspaces/{workspace}/roles/{name}/trusts",
            get(federation::list_trusts).post(federation::add_trust),
        )
        .route(
            "/workspaces/{workspace}/roles/{name}/trusts/{id}",
            delete(federation::remove_trust),
        )
        .route("/oidc/exchange", post(federation::exchange))
        .route("/oidc/login/start", post(sign_in::start))
        .route("/oidc/login", post(sign_in::complete))
        .route(
            "/workspaces/{workspace}/credentials/{name}/sync-targets",
            get(sync_targets::list).post(sync_targets::create),
        )
        .route(
            "/workspaces/{workspace}/credentials/{name}/sync-targets/{id}",
            delete(sync_targets::delete),
        )
        .route(
            "/workspaces/{workspace}/credentials/{name}/sync-targets/{id}/sync",
            post(sync_targets::run),
        )
        .route("/audit", get(admin::audit_list))
        .route("/audit/verify", get(admin::audit_verify))
        .route("/admin/master-key", get(admin::key_status))
        .route("/admin/master-key/rotate", post(admin::key_rotate))
        .route("/admin/master-key/migrate", post(admin::key_migrate))
        .route("/admin/backup", post(maintenance::backup))
        .route("/version", get(maintenance::version))
        .route("/openapi.json", get(ops::openapi));
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::console::router())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(tower::timeout::TimeoutLayer::new(REQUEST_TIMEOUT))
                .layer(tower::limit::ConcurrencyLimitLayer::new(
                    MAX_CONCURRENT_REQUESTS,
                )),
        )
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("request.panicked");
                error::error_response(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    crate::domain::error::INTERNAL_MESSAGE,
                )
            },
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

/// Counts and times every request, inside its `http.request` span (the trace of an
/// incoming `traceparent`, when traces are on; see `telemetry`). The span names the
/// route template, never the path.
async fn record_metrics(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let started = crate::clock::Stopwatch::start();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    let metrics = &state.app.metrics;
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}
