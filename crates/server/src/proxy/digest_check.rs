//! Bodies that are served only as valid as their digest. A blob streams through to the
//! client as it arrives, hashed on the way; the last chunk is held back until the
//! whole body has been hashed, and a body whose digest (or length) is wrong ends in an
//! error instead of that chunk, so the client's connection is cut short and no client
//! ever holds a complete copy of corrupted content that it could take for valid.

use std::io;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use sha2::{Digest as _, Sha256, Sha512};

use super::blob_cache::{BlobWriter, CachedBlob};
use super::path::{Algorithm, Digest};
use super::shared_cache::SharedUpload;

/// Where a body is copied as it passes: the local-disk cache or the shared one.
pub enum CacheCopy {
    /// Boxed: a file writer is several times the size of an upload's channel.
    Disk(Box<BlobWriter>),
    Shared(SharedUpload),
}

impl CacheCopy {
    async fn write(&mut self, chunk: &Bytes) -> io::Result<()> {
        match self {
            Self::Disk(writer) => writer.write(chunk).await,
            Self::Shared(upload) => upload.write(chunk.clone()).await,
        }
    }

    /// Stores the copy of a body verified as `computed`; the local file when there is
    /// one.
    async fn commit(self, computed: &str) -> io::Result<Option<CachedBlob>> {
        match self {
            Self::Disk(writer) => (*writer).commit(computed).await.map(Some),
            Self::Shared(upload) => upload.commit(computed).await.map(|()| None),
        }
    }
}

/// A running hash in a digest's algorithm.
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(hasher) => hasher.update(bytes),
            Self::Sha512(hasher) => hasher.update(bytes),
        }
    }

    /// The digest as `algorithm:hex`.
    pub fn finish(self) -> String {
        match self {
            Self::Sha256(hasher) => format!("sha256:{}", hex::encode(hasher.finalize())),
            Self::Sha512(hasher) => format!("sha512:{}", hex::encode(hasher.finalize())),
        }
    }
}

/// The digest of a whole body held in memory (a manifest).
pub fn digest_of(algorithm: Algorithm, bytes: &[u8]) -> String {
    let mut hasher = Hasher::new(algorithm);
    hasher.update(bytes);
    hasher.finish()
}

/// Why a verified body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the upstream body does not match digest {expected} (got {computed}); it was cut off")]
    DigestMismatch { expected: String, computed: String },
    #[error(
        "the upstream body is {actual} bytes, not the {expected} it announced; it was cut off"
    )]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("reading the body failed: {0}")]
    Read(String),
}

impl BodyError {
    /// Whether the body was not what was announced (its digest or its length), rather
    /// than cut off by a failed read.
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            Self::DigestMismatch { .. } | Self::LengthMismatch { .. }
        )
    }
}

impl From<BodyError> for io::Error {
    fn from(error: BodyError) -> Self {
        io::Error::other(error)
    }
}

/// What happens when a verified body ends, for the caller's bookkeeping (metrics, the
/// cache's grants).
pub trait Completion: Send + 'static {
    /// The copy in the local-disk cache was committed (before `verified`).
    fn committed(&mut self, _blob: &CachedBlob) {}
    fn verified(self: Box<Self>, size: u64);
    fn failed(self: Box<Self>, error: &BodyError);
}

struct State<S> {
    chunks: S,
    hasher: Option<Hasher>,
    expected: Digest,
    expected_length: Option<u64>,
    seen: u64,
    held: Option<Bytes>,
    /// Where the bytes are also written (a blob cache), until a write fails.
    copy: Option<CacheCopy>,
    completion: Option<Box<dyn Completion>>,
    finished: bool,
}

/// Wraps a body's chunks so that they are hashed as they pass and the body ends in an
/// error unless the whole matches `expected` (and `expected_length`, when known). With
/// `copy`, every chunk is also written to the blob cache, committed only once verified.
pub fn verified<S, E>(
    chunks: S,
    expected: Digest,
    expected_length: Option<u64>,
    copy: Option<CacheCopy>,
    completion: Box<dyn Completion>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let state = State {
        chunks,
        hasher: Some(Hasher::new(expected.algorithm())),
        expected,
        expected_length,
        seen: 0,
        held: None,
        copy,
        completion: Some(completion),
        finished: false,
    };
    stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        loop {
            match state.chunks.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    state.seen += chunk.len() as u64;
                    if let Some(limit) = state.expected_length.filter(|limit| state.seen > *limit) {
                        let error = BodyError::LengthMismatch {
                            expected: limit,
                            actual: state.seen,
                        };
                        return Some((Err(state.fail(error)), state));
                    }
                    if let Some(hasher) = state.hasher.as_mut() {
                        hasher.update(&chunk);
                    }
                    if let Some(copy) = state.copy.as_mut() {
                        if copy.write(&chunk).await.is_err() {
                            // The cache is an optimisation: the client still gets its bytes.
                            tracing::warn!("proxy.cache_write_failed");
                            state.copy = None;
                        }
                    }
                    match state.held.replace(chunk) {
                        Some(previous) => return Some((Ok(previous), state)),
                        None => continue,
                    }
                }
                Some(Err(error)) => {
                    let error = BodyError::Read(error.to_string());
                    return Some((Err(state.fail(error)), state));
                }
                None => {
                    let outcome = state.finish().await;
                    state.finished = true;
                    return match outcome {
                        Ok(Some(last)) => Some((Ok(last), state)),
                        Ok(None) => None,
                        Err(error) => Some((Err(error), state)),
                    };
                }
            }
        }
    })
}

impl<S> State<S> {
    fn fail(&mut self, error: BodyError) -> io::Error {
        self.finished = true;
        self.held = None;
        self.copy = None;
        if let Some(completion) = self.completion.take() {
            completion.failed(&error);
        }
        error.into()
    }

    /// At the end of the body: checks length and digest, commits the cache copy, and
    /// gives back the held chunk only if all is well.
    async fn finish(&mut self) -> Result<Option<Bytes>, io::Error> {
        if let Some(expected) = self
            .expected_length
            .filter(|expected| *expected != self.seen)
        {
            return Err(self.fail(BodyError::LengthMismatch {
                expected,
                actual: self.seen,
            }));
        }
        let computed = self.hasher.take().map(Hasher::finish).unwrap_or_default();
        if computed != self.expected.as_str() {
            return Err(self.fail(BodyError::DigestMismatch {
                expected: self.expected.to_string(),
                computed,
            }));
        }
        if let Some(copy) = self.copy.take() {
            match copy.commit(&computed).await {
                Ok(Some(blob)) => {
                    if let Some(completion) = self.completion.as_mut() {
                        completion.committed(&blob);
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(error = %error, "proxy.cache_commit_failed"),
            }
        }
        if let Some(completion) = self.completion.take() {
            completion.verified(self.seen);
        }
        Ok(self.held.take())
    }
}

#[cfg(test)]
mod tests {
    // A recorder locked only to push a line, from synchronous callbacks.
    #![allow(clippy::disallowed_types)]

    use std::sync::{Arc, Mutex};

    use super::*;

    /// Nothing to do when the body ends.
    struct Quiet;

    impl Completion for Quiet {
        fn verified(self: Box<Self>, _size: u64) {}
        fn failed(self: Box<Self>, _error: &BodyError) {}
    }

    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Completion for Recorder {
        fn verified(self: Box<Self>, size: u64) {
            self.0.lock().unwrap().push(format!("verified {size}"));
        }
        fn failed(self: Box<Self>, error: &BodyError) {
            self.0.lock().unwrap().push(format!("failed {error}"));
        }
    }

    fn digest(bytes: &[u8]) -> Digest {
        Digest::parse(&digest_of(Algorithm::Sha256, bytes)).unwrap()
    }

    async fn collect(
        chunks: Vec<&'static [u8]>,
        expected: Digest,
        length: Option<u64>,
    ) -> (Vec<u8>, Option<String>, Vec<String>) {
        let recorder = Recorder::default();
        let source = stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<_, io::Error>(Bytes::from_static(chunk))),
        );
        let mut body = Box::pin(verified(
            source,
            expected,
            length,
            None,
            Box::new(recorder.clone()),
        ));
        let mut received = Vec::new();
        let mut error = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => received.extend_from_slice(&chunk),
                Err(failure) => {
                    error = Some(failure.to_string());
                    break;
                }
            }
        }
        let events = recorder.0.lock().unwrap().clone();
        (received, error, events)
    }

    #[tokio::test]
    async fn a_matching_body_passes_whole() {
        let (received, error, events) = collect(
            vec![b"hello ", b"", b"world"],
            digest(b"hello world"),
            Some(11),
        )
        .await;
        assert_eq!(received, b"hello world");
        assert_eq!(error, None);
        assert_eq!(events, vec!["verified 11"]);
    }

    #[tokio::test]
    async fn a_corrupted_body_never_arrives_whole() {
        let (received, error, events) =
            collect(vec![b"hello ", b"w0rld"], digest(b"hello world"), None).await;
        assert_eq!(received, b"hello ", "the last chunk is withheld");
        assert!(error.unwrap().contains("does not match digest"));
        assert!(events[0].starts_with("failed"));
        // A one-chunk body gives nothing at all.
        let (received, error, _) = collect(vec![b"evil"], digest(b"good"), None).await;
        assert!(received.is_empty());
        assert!(error.is_some());
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_length_is_cut_off() {
        let (received, error, _) =
            collect(vec![b"hello ", b"world"], digest(b"hello world"), Some(6)).await;
        assert!(received.len() <= 6);
        assert!(error.unwrap().contains("not the 6"));
        let (_, error, _) = collect(vec![b"hello"], digest(b"hello"), Some(9)).await;
        assert!(error.unwrap().contains("5 bytes, not the 9"));
    }

    #[tokio::test]
    async fn a_read_error_ends_the_body() {
        let source = stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Err(io::Error::other("connection reset")),
        ]);
        let mut body = Box::pin(verified(source, digest(b"ab"), None, None, Box::new(Quiet)));
        let mut failures = 0;
        while let Some(item) = body.next().await {
            failures += usize::from(item.is_err());
        }
        assert_eq!(failures, 1);
    }

    #[test]
    fn sha512_is_supported() {
        let text = digest_of(Algorithm::Sha512, b"");
        assert!(Digest::parse(&text).is_ok());
        assert_eq!(text.len(), "sha512:".len() + 128);
    }
}
