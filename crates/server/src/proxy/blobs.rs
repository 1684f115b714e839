//! Blobs through the proxy: from the cache when the caller's credential is known to
//! reach them upstream, else streamed from the upstream (and into the cache), every
//! whole body checked against its digest on the way out.
//!
//! Cache isolation: a cached blob is content, not permission. A caller is served one
//! only with a grant (`grants`) — the upstream confirmed, within [`GRANT_FRESH_MS`],
//! that the very credential this caller resolved (at its current secret version) may
//! read that digest in that repository. Without a fresh grant the proxy asks the
//! upstream with a `HEAD` first. So one workspace's cached content never reaches a
//! caller who cannot pull it, from the local-disk cache (`blob_cache`) or the shared
//! one on S3 (`shared_cache`) alike.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::clock::Clock;
use crate::metrics::{Metrics, SourceLabels};
use crate::outbound::OutboundClient;

use super::blob_cache::{BlobCache, CachedBlob};
use super::digest_check::{verified, BodyError, CacheCopy, Completion};
use super::errors::ProxyError;
use super::grants::{GrantKey, Grants, GRANT_FRESH_MS};
use super::path::Digest;
use super::upstream::{Session, UpstreamError, UpstreamRequest};
use super::ProxyState;

/// How much of a cached file is read at once.
const READ_CHUNK: usize = 256 * 1024;

/// A cached file as it was when its whole content last matched its digest: if it is
/// still the same file, unchanged, it is served without hashing it again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    inode: u64,
    size: u64,
    modified_nanos: i128,
}

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            inode: metadata.ino(),
            size: metadata.size(),
            modified_nanos: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }
}

/// Cached files this process has seen whole and intact, by digest. A file is hashed
/// when it enters the cache; after a restart, or once anything (the cache's own
/// recency touch included, at most once a minute) has changed it since, the next whole
/// read hashes it again, and a copy that no longer matches is cut off and dropped.
pub type IntactFiles = moka::sync::Cache<String, FileIdentity>;

pub fn intact_files() -> IntactFiles {
    moka::sync::Cache::builder().max_capacity(1_000_000).build()
}

pub async fn serve(
    state: &ProxyState,
    session: &mut Session,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, ProxyError> {
    let range = headers.get(header::RANGE).cloned();
    if let Some(shared) = &state.shared {
        if let Some(row) = shared.lookup(digest).await {
            if may_serve_cached(state, session, digest).await? {
                if let Some(response) =
                    super::shared_cache::serve(state, shared, &row, digest, head, range.as_ref())
                        .await?
                {
                    return Ok(response);
                }
            }
        }
    } else if let Some(cache) = &state.cache {
        if let Some(blob) = cache.get(digest.as_str()) {
            if may_serve_cached(state, session, digest).await? {
                if let Some(response) =
                    serve_cached(state, cache, &blob, digest, head, range.as_ref()).await?
                {
                    return Ok(response);
                }
            }
        }
    }
    fetch(state, session, digest, head, range).await
}

/// Whether the cached copy may go to this caller: a fresh grant, or the upstream says
/// yes to a `HEAD` now. If the upstream cannot be reached, an older grant for the same
/// credential stands: the caller's regkeeper permissions were checked just now, and
/// the upstream did let this credential read this very content.
async fn may_serve_cached(
    state: &ProxyState,
    session: &mut Session,
    digest: &Digest,
) -> Result<bool, ProxyError> {
    let now = state.app.now();
    let last = state.grants.last(digest.as_str(), session, now).await;
    if last.is_some_and(|confirmed| now - confirmed < GRANT_FRESH_MS) {
        return Ok(true);
    }
    let route = format!("blobs/{digest}");
    let request = UpstreamRequest {
        method: Method::HEAD,
        route: &route,
        query: None,
        accept: None,
        range: None,
    };
    match state.upstream.send(&state.app, session, &request).await {
        Ok(response) if response.status().is_success() => {
            state
                .grants
                .record(digest.as_str(), session, state.app.now());
            Ok(true)
        }
        Ok(response) if response.status() == StatusCode::NOT_FOUND => {
            Err(blob_unknown(session, digest))
        }
        Ok(response) if last.is_some() && response.status().is_server_error() => {
            tracing::warn!(
                status = response.status().as_u16(),
                "proxy.upstream_failing_serving_cache"
            );
            Ok(true)
        }
        Ok(response) => Err(ProxyError::UpstreamStatus {
            host: session.host.clone(),
            status: response.status().as_u16(),
        }),
        Err(UpstreamError::Outbound(error)) if last.is_some() => {
            tracing::warn!(
                error.code = error.code(),
                "proxy.upstream_unreachable_serving_cache"
            );
            Ok(true)
        }
        Err(error) => Err(error.into()),
    }
}

pub(super) fn blob_unknown(session: &Session, digest: &Digest) -> ProxyError {
    ProxyError::NotFound {
        code: "BLOB_UNKNOWN",
        host: session.host.clone(),
        what: format!("blob {digest} in {}", session.repository),
    }
}

pub(super) fn blob_headers(
    builder: axum::http::response::Builder,
    digest: &Digest,
) -> axum::http::response::Builder {
    builder
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("docker-content-digest", digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
}

/// Serves a cached blob; `None` if its file went away (evicted) in the meantime.
async fn serve_cached(
    state: &ProxyState,
    cache: &Arc<BlobCache>,
    blob: &CachedBlob,
    digest: &Digest,
    head: bool,
    range: Option<&HeaderValue>,
) -> Result<Option<Response>, ProxyError> {
    let mut file = match tokio::fs::File::open(&blob.path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ProxyError::Cache(error)),
    };
    let size = blob.size;
    let builder = blob_headers(Response::builder(), digest);
    match Requested::of(head, range, size)? {
        Requested::Head => return Ok(Some(whole(builder, size, Body::empty()))),
        Requested::Part { start, end } => {
            // A part cannot be checked against the whole's digest; the file was when it
            // entered the cache.
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(ProxyError::Cache)?;
            let stream = ReaderStream::with_capacity(file.take(end - start + 1), READ_CHUNK);
            return Ok(Some(part(
                builder,
                (start, end),
                size,
                Body::from_stream(stream),
            )));
        }
        Requested::Whole => {}
    }
    let identity = file
        .metadata()
        .await
        .map(|metadata| FileIdentity::of(&metadata))
        .map_err(ProxyError::Cache)?;
    if state.intact.get(digest.as_str()) == Some(identity) && identity.size == size {
        count_bytes(&state.app.metrics, "cache", size);
        return Ok(Some(whole(
            builder,
            size,
            Body::from_stream(ReaderStream::with_capacity(file, READ_CHUNK)),
        )));
    }
    let completion = CacheRead {
        cache: Arc::clone(cache),
        digest: digest.to_string(),
        metrics: Arc::clone(&state.app.metrics),
        intact: state.intact.clone(),
        identity,
    };
    let stream = verified(
        ReaderStream::with_capacity(file, READ_CHUNK),
        digest.clone(),
        Some(size),
        None,
        Box::new(completion),
    );
    Ok(Some(whole(builder, size, Body::from_stream(stream))))
}

/// Streams the blob from the upstream: a whole body verified (and copied into the
/// cache when there is one), a range passed through as the upstream sent it.
async fn fetch(
    state: &ProxyState,
    session: &mut Session,
    digest: &Digest,
    head: bool,
    range: Option<HeaderValue>,
) -> Result<Response, ProxyError> {
    let route = format!("blobs/{digest}");
    let request = UpstreamRequest {
        method: if head { Method::HEAD } else { Method::GET },
        route: &route,
        query: None,
        accept: None,
        range: if head { None } else { range },
    };
    let response = state.upstream.send(&state.app, session, &request).await?;
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let builder = blob_headers(Response::builder(), digest);
    match response.status() {
        StatusCode::OK if head => {
            state
                .grants
                .record(digest.as_str(), session, state.app.now());
            let builder = match length {
                Some(length) => builder.header(header::CONTENT_LENGTH, length),
                None => builder,
            };
            Ok(finish(builder.status(StatusCode::OK), Body::empty()))
        }
        StatusCode::OK => {
            let copy = match (&state.shared, &state.cache) {
                (Some(shared), _) => shared.begin(digest, length).map(CacheCopy::Shared),
                (None, Some(cache)) => cache
                    .begin(digest.as_str(), length)
                    .map(|writer| CacheCopy::Disk(Box::new(writer))),
                (None, None) => None,
            };
            let completion = Fetched {
                intact: state.intact.clone(),
                grants: state.grants.clone(),
                key: GrantKey::new(digest.as_str(), session),
                clock: Arc::clone(&state.app.clock),
                metrics: Arc::clone(&state.app.metrics),
                host: session.host.clone(),
            };
            let host = session.host.clone();
            let chunks = Box::pin(response.bytes_stream().map(move |chunk| {
                chunk.map_err(|error| OutboundClient::body_error(&error, &host))
            }));
            let stream = verified(chunks, digest.clone(), length, copy, Box::new(completion));
            let builder = match length {
                Some(length) => builder.header(header::CONTENT_LENGTH, length),
                None => builder,
            };
            Ok(finish(
                builder.status(StatusCode::OK),
                Body::from_stream(stream),
            ))
        }
        StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE => {
            let mut builder = builder.status(response.status());
            for name in [header::CONTENT_LENGTH, header::CONTENT_RANGE] {
                if let Some(value) = response.headers().get(&name) {
                    builder = builder.header(name, value.clone());
                }
            }
            let host = session.host.clone();
            let chunks = response.bytes_stream().map(move |chunk| {
                chunk.map_err(|error| {
                    std::io::Error::other(OutboundClient::body_error(&error, &host))
                })
            });
            Ok(finish(builder, Body::from_stream(chunks)))
        }
        StatusCode::NOT_FOUND => Err(blob_unknown(session, digest)),
        status => Err(ProxyError::UpstreamStatus {
            host: session.host.clone(),
            status: status.as_u16(),
        }),
    }
}

pub(super) fn finish(builder: axum::http::response::Builder, body: Body) -> Response {
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A blob fetched from the upstream: once verified, the credential holds a grant for
/// it (so the cached copy can serve this credential's callers).
struct Fetched {
    intact: IntactFiles,
    grants: Grants,
    key: GrantKey,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    host: String,
}

impl Completion for Fetched {
    fn committed(&mut self, blob: &CachedBlob) {
        // Hashed on its way in: the file as written is intact.
        if let Ok(metadata) = std::fs::metadata(&blob.path) {
            self.intact
                .insert(self.key.digest().to_owned(), FileIdentity::of(&metadata));
        }
    }

    fn verified(self: Box<Self>, size: u64) {
        self.grants.record_key(self.key, self.clock.now());
        count_bytes(&self.metrics, "upstream", size);
    }

    fn failed(self: Box<Self>, error: &BodyError) {
        if error.is_mismatch() {
            self.metrics.proxy_digest_mismatches.inc();
            tracing::warn!(registry.host = %self.host, error = %error, "proxy.upstream_body_corrupted");
        } else {
            tracing::info!(registry.host = %self.host, error = %error, "proxy.upstream_body_failed");
        }
    }
}

/// A blob read from the cache: a copy that matches is known intact until it changes;
/// one that fails its digest is dropped.
struct CacheRead {
    cache: Arc<BlobCache>,
    digest: String,
    metrics: Arc<Metrics>,
    intact: IntactFiles,
    identity: FileIdentity,
}

impl Completion for CacheRead {
    fn verified(self: Box<Self>, size: u64) {
        self.intact.insert(self.digest.clone(), self.identity);
        count_bytes(&self.metrics, "cache", size);
    }

    fn failed(self: Box<Self>, error: &BodyError) {
        if error.is_mismatch() {
            self.metrics.proxy_digest_mismatches.inc();
            tracing::error!(blob.digest = %self.digest, error = %error, "proxy.cache_corrupted");
            self.intact.invalidate(&self.digest);
            self.cache.remove(&self.digest);
        }
    }
}

/// What a request for a cached blob of a known size asks for.
pub(super) enum Requested {
    /// `HEAD`: the headers only.
    Head,
    /// One byte range, inclusive.
    Part { start: u64, end: u64 },
    /// The whole blob, checked against its digest on the way out.
    Whole,
}

impl Requested {
    pub(super) fn of(
        head: bool,
        range: Option<&HeaderValue>,
        size: u64,
    ) -> Result<Self, ProxyError> {
        if head {
            return Ok(Self::Head);
        }
        Ok(
            match range
                .map(|range| parse_range(range, size))
                .transpose()?
                .flatten()
            {
                Some((start, end)) => Self::Part { start, end },
                None => Self::Whole,
            },
        )
    }
}

/// A 200 answer for a whole blob of `size` bytes (an empty body for `HEAD`).
pub(super) fn whole(builder: axum::http::response::Builder, size: u64, body: Body) -> Response {
    finish(
        builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size),
        body,
    )
}

/// A 206 answer for bytes `start..=end` of a blob of `size` bytes.
pub(super) fn part(
    builder: axum::http::response::Builder,
    (start, end): (u64, u64),
    size: u64,
    body: Body,
) -> Response {
    finish(
        builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, end - start + 1)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")),
        body,
    )
}

/// Counts `size` bytes served from `source` (`upstream` or `cache`).
pub(super) fn count_bytes(metrics: &Metrics, source: &str, size: u64) {
    metrics
        .proxy_bytes
        .get_or_create(&SourceLabels {
            source: source.into(),
        })
        .inc_by(size);
}

/// The one byte range of a `Range` header, inclusive, within `size`. `Ok(None)` means
/// serve the whole blob (no range, several ranges, or a header that does not parse,
/// which RFC 9110 lets a server ignore); an unsatisfiable range is an error.
pub(super) fn parse_range(
    value: &HeaderValue,
    size: u64,
) -> Result<Option<(u64, u64)>, ProxyError> {
    let Some(spec) = value
        .to_str()
        .ok()
        .and_then(|text| text.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = ProxyError::RangeNotSatisfiable { size };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 || size == 0 {
            return Err(unsatisfiable);
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Ok(None);
        };
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(unsatisfiable);
        }
        (start, end)
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> Result<Option<(u64, u64)>, u64> {
        parse_range(&HeaderValue::from_str(text).unwrap(), size).map_err(|error| match error {
            ProxyError::RangeNotSatisfiable { size } => size,
            other => panic!("{other}"),
        })
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-500", 100), Ok(Some((0, 99))));
        assert_eq!(range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(100));
        assert_eq!(range("bytes=-0", 100), Err(100));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=9-1", 100), Ok(None));
        assert_eq!(range("bytes=x-1", 100), Ok(None));
    }
}
