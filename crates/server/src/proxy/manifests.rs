//! Manifests and tag lists through the proxy. Manifests are small, so each is read
//! whole (up to [`MANIFEST_LIMIT`]), hashed, and served only if it matches the digest
//! it was asked by, or the digest the upstream announced for a tag. Verified manifests
//! stay in a small in-memory cache keyed by digest, served under the same grants as
//! cached blobs. A manifest asked for by tag always goes to the upstream, since a tag
//! may move; only one asked for by digest is served from the cache. Tag lists have
//! their `name` and `Link` rewritten to the proxy's own names.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use reqwest::Method;

use crate::outbound::{OutboundClient, OutboundError};

use super::digest_check::digest_of;
use super::errors::ProxyError;
use super::path::{Algorithm, Digest, ProxyPath, Reference};
use super::upstream::{Session, UpstreamError, UpstreamRequest};
use super::{proxy_name, ProxyState};

/// Distribution refuses manifests larger than this; so does the proxy.
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;
/// The largest tag list read from an upstream.
const TAG_LIST_LIMIT: usize = 4 * 1024 * 1024;
/// Memory the manifest cache may use.
const MANIFEST_CACHE_BYTES: u64 = 8 * 1024 * 1024;

pub struct Manifest {
    media_type: Option<HeaderValue>,
    body: Bytes,
}

pub struct ManifestCache {
    entries: moka::sync::Cache<String, Arc<Manifest>>,
}

impl ManifestCache {
    pub fn new() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .weigher(|_, manifest: &Arc<Manifest>| {
                    u32::try_from(manifest.body.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(MANIFEST_CACHE_BYTES)
                .build(),
        }
    }
}

pub async fn serve(
    state: &ProxyState,
    session: &mut Session,
    reference: &Reference,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, ProxyError> {
    if let Reference::Digest(digest) = reference {
        if let Some(cached) = state.manifests.entries.get(digest.as_str()) {
            if state
                .grants
                .fresh(digest.as_str(), session, state.app.now())
                .await
            {
                return Ok(respond(&cached, digest.as_str(), head));
            }
        }
    }
    let route = format!("manifests/{}", reference.as_str());
    let request = UpstreamRequest {
        method: if head { Method::HEAD } else { Method::GET },
        route: &route,
        query: None,
        accept: headers.get(header::ACCEPT).cloned(),
        range: None,
    };
    let response = state.upstream.send(&state.app, session, &request).await?;
    expect_ok(&response, session, "MANIFEST_UNKNOWN", || {
        format!("manifest {} of {}", reference.as_str(), session.repository)
    })?;
    let announced = response
        .headers()
        .get("docker-content-digest")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Digest::parse(value).ok());
    let media_type = response.headers().get(header::CONTENT_TYPE).cloned();
    if head {
        let digest = match (reference, announced) {
            (Reference::Digest(asked), Some(announced)) if *asked != announced => {
                return Err(mismatch(state, session, asked.as_str(), announced.as_str()));
            }
            (Reference::Digest(asked), _) => asked.clone(),
            (Reference::Tag(_), Some(announced)) => announced,
            // Without the upstream's word for a tag's digest, the proxy learns it the
            // only trustworthy way: by hashing the manifest.
            (Reference::Tag(_), None) => {
                return Box::pin(serve(state, session, reference, false, headers))
                    .await
                    .map(without_body)
            }
        };
        let length = response.headers().get(header::CONTENT_LENGTH).cloned();
        let mut builder = Response::builder()
            .status(StatusCode::OK)
            .header("docker-content-digest", digest.as_str());
        if let Some(media_type) = media_type {
            builder = builder.header(header::CONTENT_TYPE, media_type);
        }
        if let Some(length) = length {
            builder = builder.header(header::CONTENT_LENGTH, length);
        }
        return Ok(finish(builder, Body::empty()));
    }
    let body = read_body(session, response, MANIFEST_LIMIT).await?;
    let expected = match reference {
        Reference::Digest(asked) => Some(asked.clone()),
        Reference::Tag(_) => announced,
    };
    let algorithm = expected
        .as_ref()
        .map_or(Algorithm::Sha256, Digest::algorithm);
    let computed = digest_of(algorithm, &body);
    if let Some(expected) = &expected {
        if computed != expected.as_str() {
            return Err(mismatch(state, session, expected.as_str(), &computed));
        }
    }
    let manifest = Arc::new(Manifest { media_type, body });
    state.grants.record(&computed, session, state.app.now());
    state
        .manifests
        .entries
        .insert(computed.clone(), Arc::clone(&manifest));
    Ok(respond(&manifest, &computed, false))
}

/// A 200, or the error its status means: 404 with `code`, anything else a bad status.
fn expect_ok(
    response: &reqwest::Response,
    session: &Session,
    code: &'static str,
    what: impl FnOnce() -> String,
) -> Result<(), ProxyError> {
    match response.status() {
        StatusCode::OK => Ok(()),
        StatusCode::NOT_FOUND => Err(ProxyError::NotFound {
            code,
            host: session.host.clone(),
            what: what(),
        }),
        status => Err(ProxyError::UpstreamStatus {
            host: session.host.clone(),
            status: status.as_u16(),
        }),
    }
}

fn mismatch(state: &ProxyState, session: &Session, expected: &str, computed: &str) -> ProxyError {
    state.app.metrics.proxy_digest_mismatches.inc();
    tracing::warn!(registry.host = %session.host, "proxy.upstream_manifest_corrupted");
    ProxyError::DigestMismatch {
        host: session.host.clone(),
        expected: expected.to_owned(),
        computed: computed.to_owned(),
    }
}

fn respond(manifest: &Manifest, digest: &str, head: bool) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("docker-content-digest", digest)
        .header(header::CONTENT_LENGTH, manifest.body.len());
    if let Some(media_type) = &manifest.media_type {
        builder = builder.header(header::CONTENT_TYPE, media_type.clone());
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.body.clone())
    };
    finish(builder, body)
}

fn without_body(response: Response) -> Response {
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Body::empty())
}

fn finish(builder: axum::http::response::Builder, body: Body) -> Response {
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[derive(serde::Deserialize, serde::Serialize)]
struct TagList {
    name: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The tags list, named as the client named the repository, with its pagination
/// link pointing back through the proxy.
pub async fn tags(
    state: &ProxyState,
    session: &mut Session,
    path: &ProxyPath,
    query: Option<&str>,
) -> Result<Response, ProxyError> {
    // Only the pagination parameters go upstream.
    let query = query.map(|query| {
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if name == "n" || name == "last" {
                kept.append_pair(&name, &value);
            }
        }
        kept.finish()
    });
    let request = UpstreamRequest {
        method: Method::GET,
        route: "tags/list",
        query: query.as_deref().filter(|query| !query.is_empty()),
        accept: None,
        range: None,
    };
    let response = state.upstream.send(&state.app, session, &request).await?;
    expect_ok(&response, session, "NAME_UNKNOWN", || {
        format!("repository {}", session.repository)
    })?;
    let name = proxy_name(path);
    let link = response
        .headers()
        .get(header::LINK)
        .and_then(|value| value.to_str().ok())
        .and_then(|link| {
            let upstream_prefix = format!("</v2/{}/", session.repository);
            link.strip_prefix(&upstream_prefix)
                .map(|rest| format!("</v2/{name}/{rest}"))
        });
    let body = read_body(session, response, TAG_LIST_LIMIT).await?;
    let mut list: TagList = serde_json::from_slice(&body).map_err(|_| ProxyError::BadTagList {
        host: session.host.clone(),
    })?;
    list.name = name;
    let body = serde_json::to_vec(&list).map_err(|_| ProxyError::BadTagList {
        host: session.host.clone(),
    })?;
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(link) = link {
        builder = builder.header(header::LINK, link);
    }
    Ok(finish(builder, Body::from(body)))
}

/// The upstream body of `response`, at most `limit` bytes: a larger one is refused as
/// too large, naming the upstream host.
async fn read_body(
    session: &Session,
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ProxyError> {
    OutboundClient::read_capped(response, limit)
        .await
        .map_err(|error| match error {
            OutboundError::TooLarge { limit } => ProxyError::TooLarge {
                host: session.host.clone(),
                limit,
            },
            other => ProxyError::Upstream(UpstreamError::Outbound(other)),
        })
}
