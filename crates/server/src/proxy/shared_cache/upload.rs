//! Storing one blob in the shared cache while it streams to the client. The chunks go
//! to a task of their own through a bounded channel, so the client is never slowed by
//! more than [`STALL_LIMIT`] at a time: an S3 that stops taking parts loses the copy,
//! not the pull. The task sends parts of [`PART_BYTES`] as a multipart upload and
//! completes it only when the body's digest was verified ([`SharedUpload::commit`]);
//! a copy dropped uncommitted, a refused digest or size, or any S3 failure aborts the
//! multipart upload, so nothing becomes visible. A blob smaller than one part is put
//! whole, after verification. Memory: at most one part and the channel per upload.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use super::{upload_finished, SharedCache};

/// The size of every part but the last (S3 requires at least 5 MiB).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Chunks waiting for the uploader.
const QUEUE_CHUNKS: usize = 64;
/// How long a chunk may wait for room in the queue before the copy is given up.
const STALL_LIMIT: Duration = Duration::from_secs(10);
/// How long the body's last chunk waits for the upload to complete, so that the next
/// pull, on any replica, finds the blob; after that the upload finishes on its own.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

enum Piece {
    Chunk(Bytes),
    /// The body was verified: complete the upload, then say whether it was stored.
    Commit(oneshot::Sender<bool>),
}

/// A blob being stored. Dropping it without [`SharedUpload::commit`] aborts the upload.
pub struct SharedUpload {
    sender: mpsc::Sender<Piece>,
    digest: String,
    expected_size: Option<u64>,
    max_bytes: u64,
    written: u64,
}

impl SharedUpload {
    pub(super) fn start(
        cache: Arc<SharedCache>,
        digest: String,
        key: String,
        expected_size: Option<u64>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CHUNKS);
        let max_bytes = cache.max_bytes;
        let uploader = Uploader {
            cache,
            digest: digest.clone(),
            key,
            buffer: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            size: 0,
        };
        tokio::spawn(uploader.run(receiver));
        Self {
            sender,
            digest,
            expected_size,
            max_bytes,
            written: 0,
        }
    }

    /// Passes a chunk on; an error (the copy is then given up) when the blob outgrows
    /// its announced size or the cap, or the uploader stalled or stopped.
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.written += chunk.len() as u64;
        let limit = self
            .expected_size
            .map_or(self.max_bytes, |size| size.min(self.max_bytes));
        if self.written > limit {
            return Err(std::io::Error::other(
                "the blob is over its size or the cap",
            ));
        }
        self.sender
            .send_timeout(Piece::Chunk(chunk), STALL_LIMIT)
            .await
            .map_err(|_| std::io::Error::other("the shared cache's upload stalled or failed"))
    }

    /// Completes the upload of a body whose digest was verified as `computed_digest`,
    /// waiting up to [`COMMIT_WAIT`] for S3.
    pub async fn commit(self, computed_digest: &str) -> std::io::Result<()> {
        if computed_digest != self.digest
            || self.expected_size.is_some_and(|size| size != self.written)
        {
            return Err(std::io::Error::other("refused: digest or size differs"));
        }
        let (done, stored) = oneshot::channel();
        if self.sender.send(Piece::Commit(done)).await.is_err() {
            return Err(std::io::Error::other("the shared cache's upload failed"));
        }
        match tokio::time::timeout(COMMIT_WAIT, stored).await {
            Ok(Ok(true)) => Ok(()),
            Ok(_) => Err(std::io::Error::other("the shared cache's upload failed")),
            Err(_) => {
                tracing::info!(blob.digest = %self.digest, "proxy.shared_cache_upload_slow");
                Ok(())
            }
        }
    }
}

struct Uploader {
    cache: Arc<SharedCache>,
    digest: String,
    key: String,
    buffer: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    size: u64,
}

impl Uploader {
    async fn run(mut self, mut receiver: mpsc::Receiver<Piece>) {
        let outcome = loop {
            match receiver.recv().await {
                Some(Piece::Chunk(chunk)) => {
                    self.size += chunk.len() as u64;
                    self.buffer.extend_from_slice(&chunk);
                    if self.buffer.len() >= PART_BYTES {
                        if let Err(operation) = self.send_part().await {
                            break Err(operation);
                        }
                    }
                }
                Some(Piece::Commit(done)) => {
                    let stored = self.complete().await;
                    let _ = done.send(stored.is_ok());
                    break stored;
                }
                // Dropped uncommitted: the body failed, or the client went away.
                None => break Err(()),
            }
        };
        // Nothing more is read: a stalled writer fails at once instead of waiting.
        drop(receiver);
        if outcome.is_err() {
            self.abort().await;
        }
        upload_finished(&self.cache, &self.digest);
    }

    /// Uploads the buffer as the next part (starting the multipart upload first).
    async fn send_part(&mut self) -> Result<(), ()> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .cache
                    .client
                    .create_multipart_upload()
                    .bucket(&self.cache.bucket)
                    .key(&self.key)
                    .content_type("application/octet-stream")
                    .send()
                    .await;
                let id = match created.map(|output| output.upload_id) {
                    Ok(Some(id)) => id,
                    Ok(None) => {
                        self.cache
                            .unavailable("CreateMultipartUpload", &"the answer had no upload id");
                        return Err(());
                    }
                    Err(error) => {
                        self.cache.failed("CreateMultipartUpload", &error);
                        return Err(());
                    }
                };
                self.upload_id = Some(id.clone());
                id
            }
        };
        // Parts of 8 MiB: S3's 10,000-part limit is 80 GiB, far over any sane cap.
        let part_number = i32::try_from(self.parts.len() + 1).map_err(|_| ())?;
        let body = self.buffer.split().freeze();
        let sent = self
            .cache
            .client
            .upload_part()
            .bucket(&self.cache.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(output) => {
                self.parts.push(
                    CompletedPart::builder()
                        .set_e_tag(output.e_tag)
                        .part_number(part_number)
                        .build(),
                );
                Ok(())
            }
            Err(error) => {
                self.cache.failed("UploadPart", &error);
                Err(())
            }
        }
    }

    /// Makes the verified blob visible, then indexes it.
    async fn complete(&mut self) -> Result<(), ()> {
        if self.upload_id.is_none() {
            let body = self.buffer.split().freeze();
            let put = self
                .cache
                .client
                .put_object()
                .bucket(&self.cache.bucket)
                .key(&self.key)
                .content_type("application/octet-stream")
                .content_length(body.len() as i64)
                .body(ByteStream::from(body))
                .send()
                .await;
            if let Err(error) = put {
                self.cache.failed("PutObject", &error);
                return Err(());
            }
        } else {
            if !self.buffer.is_empty() {
                self.send_part().await?;
            }
            let completed = self
                .cache
                .client
                .complete_multipart_upload()
                .bucket(&self.cache.bucket)
                .key(&self.key)
                .set_upload_id(self.upload_id.clone())
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(std::mem::take(&mut self.parts)))
                        .build(),
                )
                .send()
                .await;
            if let Err(error) = completed {
                self.cache.failed("CompleteMultipartUpload", &error);
                return Err(());
            }
            // Completed: nothing left to abort.
            self.upload_id = None;
        }
        if let Err(error) = self.cache.stored(&self.digest, self.size).await {
            // The object is there but uncounted until this digest is stored again.
            tracing::warn!(error.code = error.code(), "proxy.shared_cache_index_failed");
            return Err(());
        }
        tracing::debug!(blob.digest = %self.digest, blob.size = self.size, "proxy.shared_cache_stored");
        Ok(())
    }

    async fn abort(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let aborted = self
            .cache
            .client
            .abort_multipart_upload()
            .bucket(&self.cache.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(error) = aborted {
            tracing::warn!(
                blob.digest = %self.digest,
                error = %aws_sdk_s3::error::DisplayErrorContext(&error),
                "proxy.shared_cache_abort_failed"
            );
        }
    }
}
