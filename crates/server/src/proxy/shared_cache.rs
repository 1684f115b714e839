//! The proxy's blob cache on S3-compatible object storage (`REGKEEPER_PROXY_CACHE_S3_URL=
//! s3://BUCKET/PREFIX`), one for every replica: a layer pulled through any replica is
//! fetched from the upstream once and then served by all of them from S3.
//!
//! - **Layout.** Content-addressed objects `PREFIX/blobs/ALGORITHM/XX/HEX`. The database
//!   indexes them (`proxy_cache_blobs`: digest, size, last use), so whether a blob is
//!   cached, and its size for a `HEAD` or a `Range`, costs one indexed read and no S3
//!   call. Grants are shared through the database too (`grants`), so isolation holds
//!   across replicas exactly as within one.
//! - **Upload** (`upload`): only a body whose digest was verified becomes visible. Parts
//!   of [`upload::PART_BYTES`] go up while the body streams to the client; the multipart
//!   upload is completed only after verification, and aborted on any failure, so a
//!   failed upload leaves no object (a blob smaller than one part is put whole after
//!   verification). The row is written after the object, so every row names an object
//!   that was complete when written.
//! - **Serving** is streamed from S3 (`GetObject`, with the client's `Range` passed on);
//!   a whole read is hashed on the way and a copy that does not match its digest is cut
//!   off (the client's connection aborts, it never gets a clean end) and deleted, row
//!   and object, so the next pull fetches it again.
//! - **S3 down.** Any S3 failure other than a missing object marks the cache unavailable
//!   for [`RETRY_AFTER_MS`]: meanwhile the proxy passes pulls through to the upstream,
//!   uncached, and never fails a pull the upstream can serve. A read that fails after
//!   its response began cannot be resumed: the client's retry passes through.
//! - **Cap and eviction.** One replica at a time, holding the database lease
//!   [`EVICTION_JOB`], sweeps every [`SWEEP_INTERVAL`]: while the indexed total exceeds
//!   `REGKEEPER_PROXY_CACHE_MAX_BYTES` it deletes the least recently used (each row only
//!   if unused since it was chosen, then its object). Last use is written at most once a
//!   minute per blob per replica. Bounds: between sweeps the total can exceed the cap by
//!   what was stored since the last sweep, plus the uploads in flight (each at most the
//!   cap, and at most [`upload::PART_BYTES`] of memory); an object whose row was never
//!   written (a crash between the two) is not counted until that digest is cached again,
//!   and an object whose deletion failed after its row's is left behind (logged) — a
//!   bucket lifecycle rule on `PREFIX/` bounds both, and removes incomplete multipart
//!   uploads a crash left.

mod upload;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;

use crate::clock::Clock;
use crate::config::S3Location;
use crate::metrics::Metrics;
use crate::store::{CachedBlobRow, SharedStore};

use super::blobs::{blob_headers, count_bytes, part, whole, Requested};
use super::digest_check::{verified, BodyError, Completion};
use super::errors::ProxyError;
use super::grants::GRANT_KEPT_MS;
use super::path::Digest;
use super::ProxyState;

pub use upload::SharedUpload;

/// How long the cache is left alone after an S3 failure.
pub const RETRY_AFTER_MS: i64 = 10_000;
/// A blob's last use is written at most this often by one replica.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// How often the replica holding [`EVICTION_JOB`]'s lease sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The lease one replica holds to sweep; renewed every sweep, so a dead holder's runs
/// out within [`SWEEP_LEASE_MS`].
pub const EVICTION_JOB: &str = "proxy_cache_eviction";
const SWEEP_LEASE_MS: i64 = 30_000;
/// Rows read at once when choosing what to evict.
const EVICTION_BATCH: i64 = 100;

/// The shared cache. Cheap to share: wrap it in an `Arc`.
pub struct SharedCache {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Without a trailing slash; empty for the bucket's root.
    prefix: String,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    max_bytes: u64,
    /// Until when (Unix ms) the cache is not used after a failure.
    unavailable_until: AtomicI64,
    /// Digests this replica is uploading.
    uploading: moka::sync::Cache<String, ()>,
    /// Digests whose last use this replica wrote recently.
    touched: moka::sync::Cache<String, ()>,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SharedCache")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl SharedCache {
    /// A cache in `location`, through an S3 client with the AWS SDK's usual region and
    /// credentials; an `endpoint` (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`) is
    /// addressed path-style, as MinIO, Ceph and emulators expect.
    pub async fn connect(
        location: &S3Location,
        endpoint: Option<&str>,
        store: SharedStore,
        clock: Arc<dyn Clock>,
        max_bytes: u64,
    ) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // A slow S3 must not hold a pull up: fail fast and pass through instead.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .read_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .load()
            .await;
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            // Checksums only where S3 requires them: the proxy verifies every blob's
            // digest itself, and older S3-compatible stores refuse the newer trailers.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: location.bucket.clone(),
            prefix: location.prefix.clone(),
            store,
            clock,
            max_bytes,
            unavailable_until: AtomicI64::new(0),
            uploading: moka::sync::Cache::builder()
                .time_to_live(Duration::from_secs(3_600))
                .build(),
            touched: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(TOUCH_INTERVAL)
                .build(),
        }
    }

    /// The object key of a blob.
    fn key(&self, digest: &str) -> Option<String> {
        let (algorithm, hex) = digest.split_once(':')?;
        let shard = hex.get(..2)?;
        let path = format!("blobs/{algorithm}/{shard}/{hex}");
        Some(if self.prefix.is_empty() {
            path
        } else {
            format!("{}/{path}", self.prefix)
        })
    }

    /// Whether the cache is in use (no S3 failure within [`RETRY_AFTER_MS`]).
    pub fn available(&self) -> bool {
        self.clock.now() >= self.unavailable_until.load(Ordering::Relaxed)
    }

    /// Leaves the cache alone for a while after an S3 failure.
    fn failed<E: std::error::Error>(&self, operation: &'static str, error: &E) {
        self.unavailable(operation, &DisplayErrorContext(error));
    }

    fn unavailable(&self, operation: &'static str, error: &dyn std::fmt::Display) {
        let until = self.clock.now() + RETRY_AFTER_MS;
        self.unavailable_until.store(until, Ordering::Relaxed);
        tracing::warn!(
            s3.operation = operation,
            error = %error,
            retry_in_ms = RETRY_AFTER_MS,
            "proxy.shared_cache_unavailable"
        );
    }

    /// The blob's row if the cache holds it (and is available), its last use moved
    /// forward when this replica has not done so within a minute.
    pub async fn lookup(&self, digest: &Digest) -> Option<CachedBlobRow> {
        if !self.available() {
            return None;
        }
        let row = match self.store.cached_blob(digest.as_str()).await {
            Ok(row) => row?,
            Err(error) => {
                tracing::warn!(error.code = error.code(), "proxy.shared_cache_index_failed");
                return None;
            }
        };
        if !self.touched.contains_key(digest.as_str()) {
            self.touched.insert(digest.to_string(), ());
            let now = self.clock.now();
            if now - row.last_used_at >= TOUCH_INTERVAL.as_millis() as i64 {
                let store = Arc::clone(&self.store);
                let digest = digest.to_string();
                tokio::spawn(async move {
                    if let Err(error) = store.touch_cached_blob(&digest, now).await {
                        tracing::warn!(
                            error.code = error.code(),
                            "proxy.shared_cache_touch_failed"
                        );
                    }
                });
            }
        }
        Some(row)
    }

    /// The object's body (the whole, or the inclusive byte range); `None` if it is gone
    /// (its row, now stale, is deleted) or S3 failed (the cache is then unavailable).
    async fn open(
        &self,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> Option<aws_sdk_s3::primitives::ByteStream> {
        let key = self.key(digest.as_str())?;
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(|(start, end)| format!("bytes={start}-{end}")))
            .send()
            .await;
        match result {
            Ok(output) => Some(output.body),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_no_such_key()) =>
            {
                tracing::info!(blob.digest = %digest, "proxy.shared_cache_object_missing");
                if let Err(error) = self.store.delete_cached_blob(digest.as_str(), None).await {
                    tracing::warn!(error.code = error.code(), "proxy.shared_cache_index_failed");
                }
                None
            }
            Err(error) => {
                self.failed("GetObject", &error);
                None
            }
        }
    }

    /// Deletes a blob, row first, then object (a rotten copy, or an eviction).
    async fn delete_object(&self, digest: &str) {
        let Some(key) = self.key(digest) else {
            return;
        };
        let deleted = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        if let Err(error) = deleted {
            tracing::warn!(
                blob.digest = %digest,
                error = %DisplayErrorContext(&error),
                "proxy.shared_cache_delete_failed"
            );
        }
    }

    /// Forgets and deletes a blob whose copy turned out corrupted.
    pub async fn discard(&self, digest: &str) {
        if let Err(error) = self.store.delete_cached_blob(digest, None).await {
            tracing::warn!(error.code = error.code(), "proxy.shared_cache_index_failed");
        }
        self.delete_object(digest).await;
    }

    /// Starts storing the blob `digest` as it streams from the upstream; `None` when the
    /// cache is unavailable, this replica is already storing it, or `expected_size` is
    /// over the cap.
    pub fn begin(
        self: &Arc<Self>,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Option<SharedUpload> {
        if !self.available() || expected_size.is_some_and(|size| size > self.max_bytes) {
            return None;
        }
        let key = self.key(digest.as_str())?;
        let entry = self.uploading.entry(digest.to_string()).or_insert(());
        if !entry.is_fresh() {
            return None;
        }
        Some(SharedUpload::start(
            Arc::clone(self),
            digest.to_string(),
            key,
            expected_size,
        ))
    }

    /// One sweep, if this replica holds (or takes) the eviction lease: evicts least
    /// recently used blobs until the total is within the cap, and prunes old grants.
    /// How many blobs it evicted; `None` when another replica holds the lease.
    pub async fn sweep(&self, owner: &str) -> crate::domain::Result<Option<u64>> {
        let now = self.clock.now();
        if !self
            .store
            .claim_job_lease(EVICTION_JOB, owner, now, now + SWEEP_LEASE_MS)
            .await?
        {
            return Ok(None);
        }
        self.store.prune_proxy_grants(now - GRANT_KEPT_MS).await?;
        let (_, total) = self.store.cached_blob_totals().await?;
        let mut excess = i128::from(total) - i128::from(self.max_bytes);
        let mut evicted = 0;
        while excess > 0 {
            let oldest = self.store.least_recently_used_blobs(EVICTION_BATCH).await?;
            let mut progressed = false;
            for row in oldest {
                if excess <= 0 {
                    break;
                }
                // Only if unused since it was read: a blob served meanwhile stays.
                if self
                    .store
                    .delete_cached_blob(&row.digest, Some(row.last_used_at))
                    .await?
                {
                    self.delete_object(&row.digest).await;
                    excess -= i128::from(row.size);
                    evicted += 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        if evicted > 0 {
            tracing::info!(blobs = evicted, "proxy.shared_cache_evicted");
        }
        Ok(Some(evicted))
    }

    /// Indexes a blob just stored (called by the upload once the object is complete).
    async fn stored(&self, digest: &str, size: u64) -> crate::domain::Result<()> {
        self.store
            .put_cached_blob(digest, size, self.clock.now())
            .await
    }
}

/// Sweeps every [`SWEEP_INTERVAL`] for as long as the server runs, under a lease owner
/// name unique to this replica.
pub async fn run_sweeper(cache: Arc<SharedCache>) {
    let owner = format!("replica-{}", uuid::Uuid::new_v4());
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = cache.sweep(&owner).await {
            tracing::warn!(error.code = error.code(), "proxy.shared_cache_sweep_failed");
        }
    }
}

/// Serves a blob from the shared cache; `None` when it cannot (gone, or S3 failed
/// before the response began), and the caller fetches it from the upstream.
pub async fn serve(
    state: &ProxyState,
    cache: &Arc<SharedCache>,
    row: &CachedBlobRow,
    digest: &Digest,
    head: bool,
    range: Option<&HeaderValue>,
) -> Result<Option<Response>, ProxyError> {
    let size = row.size;
    let builder = blob_headers(Response::builder(), digest);
    match Requested::of(head, range, size)? {
        Requested::Head => return Ok(Some(whole(builder, size, Body::empty()))),
        Requested::Part { start, end } => {
            // A part cannot be checked against the whole's digest; the whole was when it
            // was stored.
            let Some(body) = cache.open(digest, Some((start, end))).await else {
                return Ok(None);
            };
            let body = Body::from_stream(chunks(body));
            return Ok(Some(part(builder, (start, end), size, body)));
        }
        Requested::Whole => {}
    }
    let Some(body) = cache.open(digest, None).await else {
        return Ok(None);
    };
    let completion = SharedRead {
        cache: Arc::clone(cache),
        digest: digest.to_string(),
        metrics: Arc::clone(&state.app.metrics),
    };
    let stream = verified(
        Box::pin(chunks(body)),
        digest.clone(),
        Some(size),
        None,
        Box::new(completion),
    );
    Ok(Some(whole(builder, size, Body::from_stream(stream))))
}

/// An S3 body as a stream of chunks, streamed as S3 sends them.
fn chunks(
    body: aws_sdk_s3::primitives::ByteStream,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(body, |mut body| async move {
        let item = body.next().await?;
        Some((item.map_err(std::io::Error::other), body))
    })
}

/// A blob read from the shared cache: one that fails its digest is deleted.
struct SharedRead {
    cache: Arc<SharedCache>,
    digest: String,
    metrics: Arc<Metrics>,
}

impl Completion for SharedRead {
    fn verified(self: Box<Self>, size: u64) {
        count_bytes(&self.metrics, "cache", size);
    }

    fn failed(self: Box<Self>, error: &BodyError) {
        if error.is_mismatch() {
            self.metrics.proxy_digest_mismatches.inc();
            tracing::error!(blob.digest = %self.digest, error = %error, "proxy.shared_cache_corrupted");
            tokio::spawn(async move { self.cache.discard(&self.digest).await });
        } else {
            // S3 (or the client) broke off; if it was S3, pass through for a while.
            self.cache.unavailable("GetObject body", error);
        }
    }
}

/// When a stored blob's upload is over: this replica may store it again.
fn upload_finished(cache: &SharedCache, digest: &str) {
    cache.uploading.invalidate(digest);
}
