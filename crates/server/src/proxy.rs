//! The pull-through auth proxy (SPEC §2.5): the OCI distribution read API for images
//! named `PROXY/UPSTREAM-HOST[:PORT]/REPOSITORY:TAG`. A client logs in with Basic auth
//! whose password is a regkeeper API token (the user name may name the workspace to
//! resolve in); every request resolves the upstream credential with that caller's own
//! permissions — roles and policies included — and is audited as `proxy.pull`, and
//! only then reaches the upstream through `outbound`. Bodies stream through, checked
//! against their digests; an optional cache serves verified blobs again, but only to
//! callers whose own credential the upstream has confirmed may pull them.
//!
//! Who asks comes first: a caller without a valid token learns nothing, not even
//! whether its path is well formed (failures count in an `AuthLimiter` of the proxy's
//! own). Only GET and HEAD are served (anything else is 405 `UNSUPPORTED`). The
//! credential is chosen by `service::resolve::authorize_pull` — the one a REST resolve
//! would pick, under the same permissions — without opening its secret; `upstream`
//! takes the login only when it has no upstream token cached. The same request by the
//! same token is audited once per `AUDIT_REPEAT_WINDOW`, its permissions checked
//! every time and every failure recorded.
//!
//! The cache is optional: on local disk (`blob_cache`, one process, its grants in
//! memory, so after a restart the first pull of a cached blob re-confirms with a
//! `HEAD`), or on S3 shared by every replica (`shared_cache`, its index and `grants`
//! in the database).
//!
//! Limits: the read API only (no push, catalog or referrers); a client that stops
//! reading keeps its upstream connection open, since hyper has no write time-out and
//! the concurrency limit counts a request only until its response starts.
//!
//! Architecture invariant: the proxy serves nothing (not even from its cache) before
//! the caller's credential for that upstream repository has been resolved.

pub mod blob_cache;
mod blobs;
mod digest_check;
mod errors;
pub mod grants;
pub mod listener;
mod manifests;
pub mod path;
pub mod shared_cache;
mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::domain::identity::{parse_workspace_name, Principal};
use crate::domain::Error;
use crate::http::AuthLimiter;
use crate::metrics::ProxyLabels;
use crate::registry_auth::repository_path;
use crate::service::resolve::authorize_pull;
use crate::service::{identity, App};

use blob_cache::BlobCache;
use errors::ProxyError;
use grants::Grants;
use listener::ClientAddress;
use path::{ProxyPath, Target};
use shared_cache::SharedCache;
use upstream::{Session, Upstream};

/// How long a request may take until its response starts (its body may then take as
/// long as it keeps moving).
const RESPONSE_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests in progress at once; more wait.
const MAX_CONCURRENT_REQUESTS: usize = 1024;
/// The audit action of every proxied request.
const AUDIT_ACTION: &str = "proxy.pull";
/// The same request by the same token is recorded once in this long (a node polling a
/// tag, a client retrying); its permissions are checked every time, and every failure
/// and denial is recorded.
const AUDIT_REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Everything the proxy's handlers share.
pub struct ProxyState {
    app: Arc<App>,
    upstream: Upstream,
    cache: Option<Arc<BlobCache>>,
    /// The blob cache on S3 every replica shares; when set, `cache` is not.
    shared: Option<Arc<SharedCache>>,
    grants: Grants,
    intact: blobs::IntactFiles,
    manifests: manifests::ManifestCache,
    limiter: AuthLimiter,
    /// Requests recorded in the audit log within [`AUDIT_REPEAT_WINDOW`].
    audited: moka::sync::Cache<String, ()>,
}

impl ProxyState {
    /// The proxy with a local-disk cache, a shared one on S3 (whose grants are then
    /// shared through the database), or neither.
    pub fn new(
        app: Arc<App>,
        cache: Option<Arc<BlobCache>>,
        shared: Option<Arc<SharedCache>>,
    ) -> Arc<Self> {
        let upstream = Upstream::new(
            app.outbound.clone(),
            app.config.outbound.clone(),
            Arc::clone(&app.clock),
        );
        let grants = Grants::new(shared.as_ref().map(|_| Arc::clone(&app.store)));
        Arc::new(Self {
            app,
            upstream,
            grants,
            cache,
            shared,
            intact: blobs::intact_files(),
            manifests: manifests::ManifestCache::new(),
            limiter: AuthLimiter::default(),
            audited: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(AUDIT_REPEAT_WINDOW)
                .build(),
        })
    }
}

pub fn router(state: Arc<ProxyState>) -> Router {
    Router::new()
        .route("/v2", any(ping))
        .route("/v2/", any(ping))
        .fallback(dispatch)
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                .timeout(RESPONSE_START_TIMEOUT)
                .concurrency_limit(MAX_CONCURRENT_REQUESTS),
        )
        .with_state(state)
}

async fn overloaded(_: tower::BoxError) -> Response {
    ProxyError::Service(Error::unavailable(
        "timeout",
        "the request took too long to start answering; retry",
    ))
    .into_response()
}

/// `/v2/`: tells clients to log in, and that a login works.
async fn ping(
    State(state): State<Arc<ProxyState>>,
    ConnectInfo(ClientAddress(address)): ConnectInfo<ClientAddress>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ProxyError::MethodNotAllowed.into_response();
    }
    match authenticate(&state, &headers, address.ip()).await {
        Ok(_) => {
            with_api_version((StatusCode::OK, axum::Json(serde_json::json!({}))).into_response())
        }
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    State(state): State<Arc<ProxyState>>,
    ConnectInfo(ClientAddress(address)): ConnectInfo<ClientAddress>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    use tracing::Instrument as _;
    let kind = kind_of(uri.path());
    // Until the response starts; its body streams after. No path: it names images.
    let span = tracing::info_span!(
        "proxy.request",
        otel.kind = "server",
        proxy.kind = kind,
        http.request.method = %method,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, &headers);
    let handled = handle(&state, address.ip(), &method, &uri, &headers)
        .instrument(span.clone())
        .await;
    let response = match handled {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(
                proxy.kind = kind,
                error.kind = error.kind(),
                "proxy.request_failed"
            );
            error.into_response()
        }
    };
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    state
        .app
        .metrics
        .proxy_requests
        .get_or_create(&ProxyLabels {
            kind: kind.to_owned(),
            method: method.as_str().to_owned(),
            status: response.status().as_u16(),
        })
        .inc();
    with_api_version(response)
}

fn kind_of(path: &str) -> &'static str {
    if path.ends_with("/tags/list") {
        "tags"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/") {
        "blob"
    } else {
        "other"
    }
}

async fn handle(
    state: &ProxyState,
    address: IpAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ProxyError> {
    // Who is asking comes first: a caller without a valid token learns nothing, not
    // even whether the path is well formed.
    let (principal, workspace) = authenticate(state, headers, address).await?;
    if method != Method::GET && method != Method::HEAD {
        return Err(ProxyError::MethodNotAllowed);
    }
    let rest = uri
        .path()
        .strip_prefix("/v2/")
        .ok_or(ProxyError::Path(path::PathError::UnknownRoute))?;
    let path = path::parse(rest)?;
    let image = format!("{}/{}", path.upstream, path.repository);
    let repeat_key = format!(
        "{}\n{}\n{method}\n{}",
        principal.token_id,
        workspace.as_deref().unwrap_or_default(),
        uri.path()
    );
    let first = !state.audited.contains_key(&repeat_key);
    let credential = authorize_pull(
        &state.app,
        &principal,
        workspace.as_deref(),
        &image,
        AUDIT_ACTION,
        first,
    )
    .await?;
    if first {
        state.audited.insert(repeat_key, ());
    }
    let mut session = Session {
        host: credential.registry_host.clone(),
        repository: repository_path(&credential.registry_host, &path.repository).into_owned(),
        credential,
        login: None,
    };
    let head = method == Method::HEAD;
    match &path.target {
        Target::Blob(digest) => blobs::serve(state, &mut session, digest, head, headers).await,
        Target::Manifest(reference) => {
            manifests::serve(state, &mut session, reference, head, headers).await
        }
        Target::TagsList => manifests::tags(state, &mut session, &path, uri.query()).await,
    }
}

/// The caller, from Basic auth whose password is an API token, and the workspace its
/// user name names (`ORG/NAME` or `~USER`), if it names one.
async fn authenticate(
    state: &ProxyState,
    headers: &HeaderMap,
    address: IpAddr,
) -> Result<(Principal, Option<String>), ProxyError> {
    let now = state.app.now();
    if state.limiter.blocked(address, now) {
        return Err(ProxyError::RateLimited);
    }
    let Some((username, token)) = basic_credentials(headers) else {
        return Err(ProxyError::Unauthenticated(
            "log in with any user name and a regkeeper API token as the password",
        ));
    };
    match identity::authenticate(&state.app, &token).await {
        Ok(principal) => {
            let workspace = parse_workspace_name(&username).is_ok().then_some(username);
            Ok((principal, workspace))
        }
        Err(error @ Error::Unauthenticated(_)) => {
            state.app.metrics.auth_failures.inc();
            state.limiter.record_failure(address, now);
            tracing::info!(client.address = %address, reason = %error, "proxy.auth_failed");
            Err(ProxyError::Service(error))
        }
        Err(error) => Err(ProxyError::Service(error)),
    }
}

/// User name and password of a Basic `Authorization` header. The password is an API
/// token and is used only to authenticate; it is never logged or quoted.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

fn with_api_version(mut response: Response) -> Response {
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

/// Where a proxied request's target lives upstream, for `Link` rewriting.
fn proxy_name(path: &ProxyPath) -> String {
    format!("{}/{}", path.upstream_segment, path.repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_only_from_basic() {
        let mut headers = HeaderMap::new();
        let encoded = BASE64.encode("acme/ci:rk_token:with:colons");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("acme/ci".to_owned(), "rk_token:with:colons".to_owned()))
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer rk_x"),
        );
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn request_kinds_for_metrics() {
        assert_eq!(kind_of("/v2/h.io/a/tags/list"), "tags");
        assert_eq!(kind_of("/v2/h.io/a/manifests/1"), "manifest");
        assert_eq!(kind_of("/v2/h.io/a/blobs/sha256:0"), "blob");
        assert_eq!(kind_of("/v2/"), "other");
    }
}
