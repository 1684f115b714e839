//! Tests of the blob cache: storage, refusals, LRU eviction, reopening, and a
//! property test against a model LRU.
use std::os::unix::fs::PermissionsExt;

use proptest::prelude::*;
use sha2::{Digest as _, Sha256, Sha512};
use tempfile::TempDir;

use super::*;
use crate::clock::ManualClock;

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn fresh(max_bytes: u64) -> (TempDir, BlobCache) {
    let directory = tempfile::tempdir().expect("tempdir");
    let cache = BlobCache::open(directory.path(), max_bytes).expect("open");
    (directory, cache)
}

async fn store(cache: &BlobCache, bytes: &[u8]) -> CachedBlob {
    let digest = digest_of(bytes);
    let size = Some(bytes.len() as u64);
    let mut writer = cache.begin(&digest, size).expect("begin");
    writer.write(bytes).await.expect("write");
    writer.commit(&digest).await.expect("commit")
}

fn refusal(error: &io::Error) -> Option<&BlobRefusal> {
    error.get_ref()?.downcast_ref::<BlobRefusal>()
}

fn totals(cache: &BlobCache) -> (usize, u64) {
    let stats = cache.stats();
    (stats.entries, stats.bytes)
}

fn temporary_files(directory: &Path) -> usize {
    std::fs::read_dir(directory.join("tmp"))
        .expect("tmp")
        .count()
}

/// Every file under `blobs`, as (path, size), sorted.
fn blob_files(directory: &Path) -> Vec<(PathBuf, u64)> {
    let mut pending = vec![directory.join("blobs")];
    let mut files = Vec::new();
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            let entry = entry.expect("entry");
            let metadata = entry.metadata().expect("metadata");
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                files.push((entry.path(), metadata.len()));
            }
        }
    }
    files.sort();
    files
}

fn mode(path: &Path) -> u32 {
    let metadata = std::fs::metadata(path).expect("metadata");
    metadata.permissions().mode() & 0o777
}

#[test]
fn cache_is_shareable_and_writers_can_cross_tasks() {
    fn shareable<T: Send + Sync>() {}
    fn sendable<T: Send>() {}
    shareable::<BlobCache>();
    sendable::<BlobWriter>();
}

#[tokio::test]
async fn stores_and_gets_back() {
    let directory = tempfile::tempdir().expect("tempdir");
    // Created by `open`, so its mode is the cache's own.
    let root = directory.path().join("cache");
    let cache = BlobCache::open(&root, 1 << 20).expect("open");
    let bytes = b"layer bytes".repeat(1000);
    let digest = digest_of(&bytes);
    assert_eq!(cache.get(&digest), None);
    let mut writer = cache.begin(&digest, None).expect("begin");
    writer.write(&bytes[..5000]).await.expect("write");
    writer.write(&bytes[5000..]).await.expect("write");
    let stored = writer.commit(&digest).await.expect("commit");
    let hex = &digest["sha256:".len()..];
    let path = root.join("blobs/sha256").join(&hex[..2]).join(hex);
    let size = bytes.len() as u64;
    assert_eq!(
        stored,
        CachedBlob {
            path: path.clone(),
            size
        }
    );
    assert_eq!(cache.get(&digest), Some(stored));
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    assert_eq!(totals(&cache), (1, size));
    assert_eq!(mode(&path), 0o600);
    for directory in ["", "blobs", "tmp", "blobs/sha256"] {
        assert_eq!(mode(&root.join(directory)), 0o700, "{directory}");
    }
    assert_eq!(temporary_files(&root), 0);

    assert_eq!(store(&cache, b"").await.size, 0);
    let long = format!("sha512:{}", hex::encode(Sha512::digest(b"sha512 blob")));
    let mut writer = cache.begin(&long, Some(11)).expect("begin sha512");
    writer.write(b"sha512 blob").await.expect("write");
    let stored = writer.commit(&long).await.expect("commit");
    assert!(stored.path.starts_with(root.join("blobs/sha512")));
    assert_eq!(totals(&cache), (3, size + 11));
}

#[tokio::test]
async fn wrong_computed_digest_is_refused_and_nothing_is_stored() {
    let (directory, cache) = fresh(1 << 20);
    let digest = digest_of(b"announced");
    let mut writer = cache.begin(&digest, None).expect("begin");
    writer.write(b"tampered").await.expect("write");
    let computed = digest_of(b"tampered");
    let error = writer.commit(&computed).await.expect_err("mismatch");
    let expected = BlobRefusal::DigestMismatch {
        expected: digest.clone(),
        computed,
    };
    assert_eq!(refusal(&error), Some(&expected));
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert_eq!(cache.get(&digest), None);
    assert_eq!(totals(&cache), (0, 0));
    assert_eq!(temporary_files(directory.path()), 0);
    assert!(blob_files(directory.path()).is_empty());
    assert!(cache.begin(&digest, None).is_some(), "claim released");
}

#[tokio::test]
async fn size_other_than_announced_is_refused() {
    let (directory, cache) = fresh(1 << 20);
    let digest = digest_of(b"short");
    let mut writer = cache.begin(&digest, Some(10)).expect("begin");
    writer.write(b"short").await.expect("write");
    let error = writer.commit(&digest).await.expect_err("too short");
    let expected = BlobRefusal::SizeMismatch {
        expected: 10,
        actual: 5,
    };
    assert_eq!(refusal(&error), Some(&expected));

    let mut writer = cache.begin(&digest, Some(4)).expect("begin");
    let error = writer.write(b"short").await.expect_err("too long");
    assert_eq!(refusal(&error), Some(&BlobRefusal::TooLarge { limit: 4 }));
    let error = writer.write(b"s").await.expect_err("broken by a refusal");
    assert_eq!(refusal(&error), Some(&BlobRefusal::Broken));
    assert!(writer.commit(&digest).await.is_err());
    assert_eq!(totals(&cache), (0, 0));
    assert_eq!(temporary_files(directory.path()), 0);
}

#[tokio::test]
async fn invalid_digests_are_refused_everywhere() {
    let directory = tempfile::tempdir().expect("tempdir");
    let root = directory.path().join("cache");
    let cache = BlobCache::open(&root, 1 << 20).expect("open");
    // Where `sha256:../../victim` would lead if it were ever joined to a path.
    let victim = root.join("victim");
    std::fs::write(&victim, b"keep me").expect("victim");
    let valid = digest_of(b"x");
    let hex = &valid["sha256:".len()..];
    let invalid = [
        "sha256:../../victim".to_owned(),
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha256:{}", &hex[..63]),
        format!("sha256:{hex}0"),
        format!("sha512:{hex}"),
        format!("md5:{}", &hex[..32]),
        format!("SHA256:{hex}"),
        format!("sha256:{}/{}", &hex[..31], &hex[32..]),
        hex.to_owned(),
        String::new(),
    ];
    for digest in &invalid {
        assert!(cache.begin(digest, None).is_none(), "{digest}");
        assert!(cache.get(digest).is_none(), "{digest}");
        cache.remove(digest);
    }
    assert!(victim.exists());
    assert_eq!(temporary_files(&root), 0);
}

#[tokio::test]
async fn one_writer_per_digest_until_dropped_and_none_once_stored() {
    let (_directory, cache) = fresh(1 << 20);
    let digest = digest_of(b"shared");
    let first = cache.begin(&digest, None).expect("first");
    assert!(cache.begin(&digest, None).is_none());
    let other = cache.begin(&digest_of(b"other"), None);
    assert!(other.is_some(), "other digests are free");
    drop(first);
    let mut second = cache.begin(&digest, None).expect("after drop");
    second.write(b"shared").await.expect("write");
    second.commit(&digest).await.expect("commit");
    assert!(cache.begin(&digest, None).is_none(), "already stored");
}

#[tokio::test]
async fn dropping_a_writer_removes_its_temporary_file() {
    let (directory, cache) = fresh(1 << 20);
    let mut writer = cache.begin(&digest_of(b"gone"), None).expect("begin");
    writer.write(b"go").await.expect("write");
    assert_eq!(temporary_files(directory.path()), 1);
    drop(writer);
    assert_eq!(temporary_files(directory.path()), 0);
    assert_eq!(totals(&cache), (0, 0));
}

#[tokio::test]
async fn evicts_least_recently_used_first() {
    let (directory, cache) = fresh(30);
    let [a, b, c, d] = [[b'a'; 10], [b'b'; 10], [b'c'; 10], [b'd'; 10]];
    let stored_a = store(&cache, &a).await;
    let stored_b = store(&cache, &b).await;
    store(&cache, &c).await;
    assert!(cache.get(&digest_of(&a)).is_some());
    store(&cache, &d).await;
    assert!(cache.get(&digest_of(&b)).is_none());
    assert!(!stored_b.path.exists());
    assert!(stored_a.path.exists());
    assert_eq!(totals(&cache), (3, 30));

    // A blob as large as the cap evicts everything else, never itself.
    let whole = [b'w'; 30];
    let stored_whole = store(&cache, &whole).await;
    assert_eq!(blob_files(directory.path()), vec![(stored_whole.path, 30)]);
    assert_eq!(totals(&cache), (1, 30));

    cache.remove(&digest_of(&whole));
    assert!(blob_files(directory.path()).is_empty());
    assert_eq!(totals(&cache), (0, 0));
}

#[tokio::test]
async fn blob_larger_than_the_cap_is_refused() {
    let (directory, cache) = fresh(16);
    let bytes = [b'x'; 17];
    let digest = digest_of(&bytes);
    assert!(cache.begin(&digest, Some(17)).is_none());
    let mut writer = cache.begin(&digest, None).expect("size unknown");
    writer.write(&bytes[..16]).await.expect("within the cap");
    let error = writer.write(&bytes[16..]).await.expect_err("over the cap");
    assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
    assert!(writer.commit(&digest).await.is_err());
    assert_eq!(totals(&cache), (0, 0));
    assert_eq!(temporary_files(directory.path()), 0);
}

#[tokio::test]
async fn reopening_reindexes_cleans_up_and_evicts_by_modification_time() {
    let (directory, cache) = fresh(1 << 20);
    let root = directory.path();
    let blobs = [[b'1'; 10], [b'2'; 10], [b'3'; 10]];
    let mut paths = Vec::new();
    for bytes in &blobs {
        paths.push(store(&cache, bytes).await.path);
    }
    let mut unfinished = cache.begin(&digest_of(b"cut"), None).expect("begin");
    unfinished.write(b"c").await.expect("write");
    std::mem::forget(unfinished); // as if the process had died
    drop(cache);

    // Last uses: blob 1 newest, blob 2 oldest.
    for (path, seconds) in paths.iter().zip([3_000, 1_000, 2_000]) {
        let file = std::fs::File::open(path).expect("open blob");
        let modified = UNIX_EPOCH + Duration::from_secs(seconds);
        file.set_modified(modified).expect("set_modified");
    }
    let hex = hex::encode(Sha256::digest(b"misplaced"));
    let wrong_prefix = if hex.starts_with("00") { "01" } else { "00" };
    let junk = [
        root.join("blobs/sha256/ab/not-a-digest"),
        root.join("blobs/stray"),
        root.join("blobs/md5"),
        root.join("blobs/sha256").join(wrong_prefix).join(&hex),
        root.join("blobs/sha256")
            .join(&hex[..2])
            .join(hex.to_uppercase()),
    ];
    for path in &junk {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, b"junk").expect("junk");
    }
    std::fs::write(root.join("tmp/leftover"), b"junk").expect("leftover");
    assert_eq!(temporary_files(root), 2);

    let cache = BlobCache::open(root, 20).expect("reopen");
    assert_eq!(temporary_files(root), 0);
    assert!(junk.iter().all(|path| !path.exists()));
    assert_eq!(totals(&cache), (2, 20));
    assert!(cache.get(&digest_of(&blobs[1])).is_none(), "oldest evicted");
    let mut kept = vec![(paths[0].clone(), 10), (paths[2].clone(), 10)];
    kept.sort();
    assert_eq!(blob_files(root), kept);

    drop(cache);
    let cache = BlobCache::open(root, 10).expect("reopen smaller");
    assert!(cache.get(&digest_of(&blobs[0])).is_some(), "newest kept");
    assert!(cache.get(&digest_of(&blobs[2])).is_none());
}

#[test]
fn use_is_written_to_the_file_at_most_once_a_minute() {
    let directory = tempfile::tempdir().expect("tempdir");
    let start = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let cache = BlobCache::open_with_clock(directory.path(), 1 << 20, clock.clone());
    let cache = cache.expect("open");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let path = runtime.block_on(store(&cache, b"touched")).path;
    // Outside a runtime the touch is written inline, so the test need not wait for it.
    drop(runtime);
    let at = |milliseconds: i64| UNIX_EPOCH + Duration::from_millis(milliseconds as u64);
    let modified = || {
        std::fs::metadata(&path)
            .and_then(|data| data.modified())
            .ok()
    };
    let file = std::fs::File::open(&path).expect("open blob");
    file.set_modified(at(1)).expect("set_modified");

    let digest = digest_of(b"touched");
    clock.advance(TOUCH_INTERVAL_MS - 1);
    cache.get(&digest).expect("get");
    assert_eq!(modified(), Some(at(1)), "within a minute of the commit");
    clock.advance(1);
    cache.get(&digest).expect("get");
    assert_eq!(modified(), Some(at(start + TOUCH_INTERVAL_MS)));
    clock.advance(TOUCH_INTERVAL_MS / 2);
    cache.get(&digest).expect("get");
    assert_eq!(modified(), Some(at(start + TOUCH_INTERVAL_MS)));
}

#[derive(Debug, Clone)]
enum Operation {
    Insert(u8, usize),
    Get(u8, usize),
}

fn operation() -> impl Strategy<Value = Operation> {
    let blob = (0u8..6, 0usize..45);
    prop_oneof![
        blob.clone()
            .prop_map(|(tag, size)| Operation::Insert(tag, size)),
        blob.prop_map(|(tag, size)| Operation::Get(tag, size)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Against a model: a list of (digest, size), least recently used first.
    #[test]
    fn stays_within_the_cap_keeps_the_most_recent_and_matches_the_disk(
        operations in prop::collection::vec(operation(), 1..40)
    ) {
        const CAP: u64 = 100;
        let (directory, cache) = fresh(CAP);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let runtime = runtime.expect("runtime");
        let mut model: Vec<(String, u64)> = Vec::new();
        for operation in operations {
            let (Operation::Insert(tag, size) | Operation::Get(tag, size)) = operation;
            let bytes = vec![tag; size];
            let digest = digest_of(&bytes);
            let used = model.iter().position(|(known, _)| *known == digest);
            let found = cache.get(&digest);
            prop_assert_eq!(found.map(|blob| blob.size), used.map(|at| model[at].1));
            if let Some(at) = used {
                let entry = model.remove(at);
                model.push(entry);
            } else if matches!(operation, Operation::Insert(..)) {
                runtime.block_on(store(&cache, &bytes));
                model.push((digest, size as u64));
                while model.iter().map(|(_, size)| size).sum::<u64>() > CAP {
                    model.remove(0);
                }
            }
            let stats = cache.stats();
            let files = blob_files(directory.path());
            prop_assert!(stats.bytes <= CAP);
            prop_assert_eq!(stats.entries, model.len());
            prop_assert_eq!(stats.entries, files.len());
            prop_assert_eq!(stats.bytes, files.iter().map(|(_, size)| size).sum::<u64>());
        }
        drop(cache);
        let reopened = BlobCache::open(directory.path(), CAP).expect("reopen");
        prop_assert_eq!(reopened.stats().entries, model.len());
    }
}
