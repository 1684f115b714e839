//! The pull-through proxy's optional on-disk blob cache, so a layer pulled once is served
//! from local disk instead of from the upstream registry again. Blobs are
//! content-addressed (the OCI digest is the file name), the total is capped, and the
//! least recently used blobs are evicted first.
//!
//! Layout under the cache directory: `blobs/<algorithm>/<first two hex>/<hex>` for
//! blobs, `tmp/` for blobs being written (same filesystem, so storing is a rename).
//! The cap bounds stored blobs; blobs being written are not counted until committed, so
//! the disk may briefly hold the cap plus the in-flight writes (each at most the cap).
//! One process per cache directory: opening it deletes any unfinished writes found.

// `std::sync::Mutex` here (`.clippy.toml`): the index is locked only for in-memory
// bookkeeping; file I/O and streaming happen after the guard is dropped; no guard is
// held across an `.await` (clippy's `await_holding_lock` would refuse one).
#![allow(clippy::disallowed_types)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::clock::{Clock, SystemClock};
use crate::domain::credential::Timestamp;

/// Writes are gathered into buffers this large, so a blob of hundreds of megabytes costs
/// a few thousand write calls rather than one per network chunk.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// A blob file's modification time is rewritten at most this often: it only has to be
/// close enough to order evictions after a restart.
const TOUCH_INTERVAL_MS: Timestamp = 60_000;

/// A stored blob: its file and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBlob {
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: u64,
}

/// Why the cache refused a blob. It travels inside the `io::Error` returned by
/// [`BlobWriter::write`] and [`BlobWriter::commit`], so the proxy can tell a refusal from
/// a disk failure with `error.get_ref()` and a downcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobRefusal {
    #[error("blob is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("blob content has digest {computed}, not {expected}")]
    DigestMismatch { expected: String, computed: String },
    #[error("blob is {actual} bytes, not the announced {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("an earlier write to this blob failed or was interrupted")]
    Broken,
}

impl From<BlobRefusal> for io::Error {
    fn from(refusal: BlobRefusal) -> Self {
        let kind = match refusal {
            BlobRefusal::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            BlobRefusal::Broken => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, refusal)
    }
}

/// The cache. Cheap to share: wrap it in an `Arc`.
pub struct BlobCache {
    inner: Arc<Inner>,
}

/// What the cache and its writers share.
struct Inner {
    directory: PathBuf,
    max_bytes: u64,
    clock: Arc<dyn Clock>,
    /// Held only for in-memory bookkeeping, never across an await or a file operation.
    index: Mutex<Index>,
    /// Makes temporary file names unique even when an interrupted writer's file for the
    /// same digest has not been removed yet.
    temporary_sequence: AtomicU64,
}

struct Entry {
    size: u64,
    /// Position in [`Index::recency`].
    tick: u64,
    /// When the file's modification time was last set to the time of a use.
    touched_at: Timestamp,
}

#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    /// Digests by last use; the smallest tick is the least recently used.
    recency: BTreeMap<u64, String>,
    next_tick: u64,
    bytes: u64,
    /// Digests whose file someone is creating (a writer) or deleting (an eviction):
    /// nobody else may create that file meanwhile. Never also in `entries`.
    claimed: HashSet<String>,
}

impl Index {
    fn take_tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Adds an entry as the most recently used.
    fn insert(&mut self, digest: String, size: u64, touched_at: Timestamp) {
        self.remove(&digest);
        let tick = self.take_tick();
        self.recency.insert(tick, digest.clone());
        self.bytes += size;
        let entry = Entry {
            size,
            tick,
            touched_at,
        };
        self.entries.insert(digest, entry);
    }

    /// Marks an entry as the most recently used.
    fn touch(&mut self, digest: &str) -> Option<&mut Entry> {
        let tick = self.take_tick();
        let entry = self.entries.get_mut(digest)?;
        if let Some(name) = self.recency.remove(&entry.tick) {
            self.recency.insert(tick, name);
        }
        entry.tick = tick;
        Some(entry)
    }

    fn remove(&mut self, digest: &str) -> Option<Entry> {
        let entry = self.entries.remove(digest)?;
        self.recency.remove(&entry.tick);
        self.bytes -= entry.size;
        Some(entry)
    }

    /// Drops least recently used entries, sparing `keep`, until the total fits, and
    /// claims them so that no writer recreates a file before its deletion.
    fn evict(&mut self, max_bytes: u64, keep: Option<&str>) -> Vec<String> {
        let mut evicted = Vec::new();
        while self.bytes > max_bytes {
            let Some((_, oldest)) = self.recency.first_key_value() else {
                break;
            };
            if keep == Some(oldest.as_str()) {
                break;
            }
            let oldest = oldest.clone();
            self.remove(&oldest);
            self.claimed.insert(oldest.clone());
            evicted.push(oldest);
        }
        evicted
    }
}

/// A digest that can be nothing but a file name: only these ever reach the filesystem,
/// so a digest cannot walk out of the cache directory.
struct Digest<'a> {
    algorithm: &'static str,
    hex: &'a str,
}

fn parse_digest(digest: &str) -> Option<Digest<'_>> {
    let (algorithm, hex) = digest.split_once(':')?;
    let (algorithm, length) = match algorithm {
        "sha256" => ("sha256", 64),
        "sha512" => ("sha512", 128),
        _ => return None,
    };
    let lowercase_hex = hex.len() == length
        && hex
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    lowercase_hex.then_some(Digest { algorithm, hex })
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Index> {
        // Nothing panics while the lock is held, so a poisoned index is still whole.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn blob_path(&self, digest: &Digest<'_>) -> PathBuf {
        self.directory
            .join("blobs")
            .join(digest.algorithm)
            .join(&digest.hex[..2])
            .join(digest.hex)
    }

    /// Deletes the files of claimed digests, then releases the claims. Deleting a file
    /// that another request is still reading is fine on Linux: the open file stays
    /// readable until closed, and only the name goes away.
    fn delete_claimed(&self, digests: Vec<String>) {
        for digest in &digests {
            let Some(parsed) = parse_digest(digest) else {
                continue;
            };
            match std::fs::remove_file(self.blob_path(&parsed)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(blob.digest = %digest, error.message = %error, "blob_cache.delete_failed");
                }
                _ => {}
            }
        }
        let mut index = self.lock();
        for digest in &digests {
            index.claimed.remove(digest);
        }
    }
}

impl BlobCache {
    /// Opens (creating if needed) a cache in `directory` holding at most `max_bytes`.
    pub fn open(directory: &Path, max_bytes: u64) -> io::Result<Self> {
        Self::open_with_clock(directory, max_bytes, Arc::new(SystemClock))
    }

    /// [`BlobCache::open`] with the clock that stamps last-use times on blob files.
    pub fn open_with_clock(
        directory: &Path,
        max_bytes: u64,
        clock: Arc<dyn Clock>,
    ) -> io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        let blobs = directory.join("blobs");
        let temporary = directory.join("tmp");
        for path in [directory, &blobs, &temporary] {
            builder.create(path)?;
        }
        // Left by writers interrupted by a crash or a restart; nobody can finish them.
        for entry in std::fs::read_dir(&temporary)? {
            remove_unless_directory(&entry?)?;
        }
        let mut found = scan_blobs(&blobs)?;
        // Modification time is the last use recorded before the restart.
        found.sort_by(|left, right| (left.2, &left.0).cmp(&(right.2, &right.0)));
        let mut index = Index::default();
        for (digest, size, modified) in found {
            index.insert(digest, size, modified);
        }
        let evicted = index.evict(max_bytes, None);
        let inner = Arc::new(Inner {
            directory: directory.to_path_buf(),
            max_bytes,
            clock,
            index: Mutex::new(index),
            temporary_sequence: AtomicU64::new(0),
        });
        inner.delete_claimed(evicted);
        Ok(Self { inner })
    }

    /// The stored blob for `digest`, now the most recently used.
    pub fn get(&self, digest: &str) -> Option<CachedBlob> {
        let parsed = parse_digest(digest)?;
        let now = self.inner.clock.now();
        let (size, touch) = {
            let mut index = self.inner.lock();
            let entry = index.touch(digest)?;
            let touch = now.saturating_sub(entry.touched_at) >= TOUCH_INTERVAL_MS;
            if touch {
                entry.touched_at = now;
            }
            (entry.size, touch)
        };
        let path = self.inner.blob_path(&parsed);
        if touch {
            record_use_on_disk(path.clone(), now);
        }
        Some(CachedBlob { path, size })
    }

    /// Forgets a blob and deletes its file, as when the file turned out corrupted.
    pub fn remove(&self, digest: &str) {
        if parse_digest(digest).is_none() {
            return;
        }
        let removed = {
            let mut index = self.inner.lock();
            let removed = index.remove(digest).is_some();
            if removed {
                index.claimed.insert(digest.to_owned());
            }
            removed
        };
        // One unlink, on a rare path: not worth a trip to the blocking pool.
        if removed {
            self.inner.delete_claimed(vec![digest.to_owned()]);
        }
    }

    /// Starts storing the blob `digest`; `None` when the digest is not a valid
    /// `sha256:`/`sha512:` digest, the blob is already stored, another writer is storing
    /// it, or `expected_size` is over the cache's cap.
    pub fn begin(&self, digest: &str, expected_size: Option<u64>) -> Option<BlobWriter> {
        let parsed = parse_digest(digest)?;
        if expected_size.is_some_and(|size| size > self.inner.max_bytes) {
            return None;
        }
        {
            let mut index = self.inner.lock();
            if index.entries.contains_key(digest) || !index.claimed.insert(digest.to_owned()) {
                return None;
            }
        }
        let sequence = self
            .inner
            .temporary_sequence
            .fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{}-{sequence}", parsed.algorithm, parsed.hex);
        Some(BlobWriter {
            inner: Arc::clone(&self.inner),
            digest: digest.to_owned(),
            expected_size,
            temporary_path: self.inner.directory.join("tmp").join(name),
            final_path: self.inner.blob_path(&parsed),
            file: None,
            written: 0,
            broken: false,
            committed: false,
        })
    }

    pub fn stats(&self) -> CacheStats {
        let index = self.inner.lock();
        CacheStats {
            entries: index.entries.len(),
            bytes: index.bytes,
        }
    }
}

impl fmt::Debug for BlobCache {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BlobCache")
            .field("directory", &self.inner.directory)
            .field("max_bytes", &self.inner.max_bytes)
            .finish_non_exhaustive()
    }
}

/// Rewrites a blob file's modification time so that LRU order survives a restart. The
/// syscall can stall on a busy disk and `get` is on the hot path, so inside a Tokio
/// runtime it runs on the blocking pool and `get` returns at once; outside one (start-up
/// code, plain tests) it runs inline. Failures are ignored: a lost touch only makes
/// eviction order after a restart a little less exact.
fn record_use_on_disk(path: PathBuf, at: Timestamp) {
    let Ok(milliseconds) = u64::try_from(at) else {
        return;
    };
    let modified = UNIX_EPOCH + Duration::from_millis(milliseconds);
    let touch = move || {
        if let Ok(file) = std::fs::File::open(&path) {
            let _ = file.set_modified(modified);
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(touch)),
        Err(_) => touch(),
    }
}

/// Foreign directories are left alone: the cache never creates them, and deleting a
/// directory tree on a guess is worse than leaving a few bytes uncounted.
fn remove_unless_directory(entry: &std::fs::DirEntry) -> io::Result<()> {
    if entry.file_type()?.is_dir() {
        return Ok(());
    }
    match std::fs::remove_file(entry.path()) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Every valid blob file under `blobs` as (digest, size, modification time); deletes
/// files whose name or place is not that of a digest, and symbolic links, which the
/// cache never creates and must not follow.
fn scan_blobs(blobs: &Path) -> io::Result<Vec<(String, u64, Timestamp)>> {
    let mut found = Vec::new();
    for algorithm_entry in std::fs::read_dir(blobs)? {
        let algorithm_entry = algorithm_entry?;
        let algorithm = algorithm_entry.file_name().to_string_lossy().into_owned();
        let known = matches!(algorithm.as_str(), "sha256" | "sha512");
        if !known || !algorithm_entry.file_type()?.is_dir() {
            remove_unless_directory(&algorithm_entry)?;
            continue;
        }
        for prefix_entry in std::fs::read_dir(algorithm_entry.path())? {
            let prefix_entry = prefix_entry?;
            if !prefix_entry.file_type()?.is_dir() {
                remove_unless_directory(&prefix_entry)?;
                continue;
            }
            let prefix = prefix_entry.file_name();
            for blob_entry in std::fs::read_dir(prefix_entry.path())? {
                let blob_entry = blob_entry?;
                let digest = format!("{algorithm}:{}", blob_entry.file_name().to_string_lossy());
                let in_place = parse_digest(&digest)
                    .is_some_and(|parsed| prefix.to_str() == Some(&parsed.hex[..2]));
                if !in_place || !blob_entry.file_type()?.is_file() {
                    remove_unless_directory(&blob_entry)?;
                    continue;
                }
                let metadata = blob_entry.metadata()?;
                let modified = metadata
                    .modified()
                    .ok()
                    .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |since| {
                        Timestamp::try_from(since.as_millis()).unwrap_or(Timestamp::MAX)
                    });
                found.push((digest, metadata.len(), modified));
            }
        }
    }
    Ok(found)
}

/// Stores one blob. Dropping it without [`BlobWriter::commit`] throws the bytes away.
pub struct BlobWriter {
    inner: Arc<Inner>,
    digest: String,
    expected_size: Option<u64>,
    temporary_path: PathBuf,
    final_path: PathBuf,
    /// Created by the first write, so `begin` needs no file operation.
    file: Option<BufWriter<tokio::fs::File>>,
    written: u64,
    /// Set while a write is under way and left set if it fails or its future is dropped:
    /// the file may then hold bytes the caller never hashed, so it must not be committed.
    broken: bool,
    committed: bool,
}

impl BlobWriter {
    /// Appends `chunk`; refused once the blob would exceed its announced size or the
    /// cache's cap.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(BlobRefusal::Broken.into());
        }
        let limit = self
            .expected_size
            .map_or(self.inner.max_bytes, |size| size.min(self.inner.max_bytes));
        let total = u64::try_from(chunk.len())
            .ok()
            .and_then(|length| self.written.checked_add(length))
            .filter(|total| *total <= limit);
        self.broken = true;
        let Some(total) = total else {
            return Err(BlobRefusal::TooLarge { limit }.into());
        };
        let file = match &mut self.file {
            Some(file) => file,
            None => self
                .file
                .insert(create_temporary(&self.temporary_path).await?),
        };
        file.write_all(chunk).await?;
        self.written = total;
        self.broken = false;
        Ok(())
    }

    /// Stores the blob, provided `computed_digest` (the digest of the bytes written, as
    /// the caller hashed them on the way through) is the one begun with and the size is
    /// the announced one; then evicts least recently used blobs, never this one, until
    /// the total is within the cap. On refusal or failure nothing is stored.
    pub async fn commit(mut self, computed_digest: &str) -> io::Result<CachedBlob> {
        if self.broken {
            return Err(BlobRefusal::Broken.into());
        }
        if computed_digest != self.digest {
            let expected = self.digest.clone();
            let computed = computed_digest.to_owned();
            return Err(BlobRefusal::DigestMismatch { expected, computed }.into());
        }
        if let Some(expected) = self.expected_size.filter(|size| *size != self.written) {
            let actual = self.written;
            return Err(BlobRefusal::SizeMismatch { expected, actual }.into());
        }
        let mut file = match self.file.take() {
            Some(file) => file,
            None => create_temporary(&self.temporary_path).await?,
        };
        file.flush().await?;
        // Without it a crash could leave a renamed but empty file that a restart would
        // index as a valid blob.
        file.get_ref().sync_data().await?;
        drop(file);
        if let Some(parent) = self.final_path.parent() {
            tokio::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .await?;
        }
        tokio::fs::rename(&self.temporary_path, &self.final_path).await?;
        let now = self.inner.clock.now();
        let evicted = {
            let mut index = self.inner.lock();
            index.claimed.remove(&self.digest);
            index.insert(self.digest.clone(), self.written, now);
            index.evict(self.inner.max_bytes, Some(&self.digest))
        };
        self.committed = true;
        if !evicted.is_empty() {
            let inner = Arc::clone(&self.inner);
            // A blocking task runs to the end even if this future is dropped, so the
            // claims on evicted digests are always released.
            let deletion = tokio::task::spawn_blocking(move || inner.delete_claimed(evicted));
            if let Err(error) = deletion.await {
                tracing::warn!(error.message = %error, "blob_cache.eviction_failed");
            }
        }
        Ok(CachedBlob {
            path: self.final_path.clone(),
            size: self.written,
        })
    }
}

async fn create_temporary(path: &Path) -> io::Result<BufWriter<tokio::fs::File>> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await?;
    Ok(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file))
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Synchronous, since Drop cannot await; it is a single unlink.
        if let Err(error) = std::fs::remove_file(&self.temporary_path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(blob.digest = %self.digest, error.message = %error, "blob_cache.temporary_delete_failed");
            }
        }
        self.inner.lock().claimed.remove(&self.digest);
    }
}

#[cfg(test)]
mod tests;
