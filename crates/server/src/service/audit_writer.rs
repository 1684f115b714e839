//! Group commit for audit entries that are written on their own (a resolve's entry, a
//! failed attempt's). Each caller still waits until its entry is committed — a secret
//! leaves only after its entry is in the log — but concurrent callers share one
//! transaction: one writer task takes every entry waiting, appends them in order and
//! commits once. On SQLite, where writers take turns, that turns N commits into one;
//! and while no other writer has come between, a batch is one INSERT chained to the
//! entry this task wrote last, without a transaction of its own (a single statement
//! is atomic, and the unique sequence number refuses it if another entry came first).

use tokio::sync::{mpsc, oneshot};

use crate::audit::AuditRecord;
use crate::domain::{Error, Result};
use crate::store::SharedStore;

/// Entries one transaction takes at most.
const MAX_BATCH: usize = 512;
const QUEUE: usize = 8192;

type Pending = (AuditRecord, oneshot::Sender<Result<()>>);

pub struct AuditWriter {
    sender: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(store: SharedStore) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, receiver));
        Self { sender }
    }

    /// Appends one entry and returns once it is committed (or failed).
    pub async fn append(&self, record: AuditRecord) -> Result<()> {
        let (done, committed) = oneshot::channel();
        self.sender
            .send((record, done))
            .await
            .map_err(|_| Error::internal("the audit writer has stopped"))?;
        committed
            .await
            .map_err(|_| Error::internal("the audit writer stopped before committing"))?
    }
}

async fn write_batches(store: SharedStore, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    // The newest entry this task wrote: the next batch tries to chain to it in one
    // statement, and reads the chain afresh only when another writer came first.
    let mut newest: Option<(i64, String)> = None;
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, waiters): (Vec<AuditRecord>, Vec<_>) = batch.drain(..).unzip();
        let fast = match newest.take() {
            Some(previous) => store.append_audits_after(&records, previous).await,
            None => Ok(None),
        };
        let result = match fast {
            Ok(Some(written)) => Ok(Some(written)),
            Ok(None) => store.append_audits(records).await,
            Err(error) => Err(error),
        };
        if let Ok(written) = &result {
            newest.clone_from(written);
        }
        for done in waiters {
            // A caller that gave up waiting no longer needs the answer.
            let _ = done.send(match &result {
                Ok(_) => Ok(()),
                // An unreachable or full store stays a 503 that tells clients to retry.
                Err(Error::Unavailable {
                    code,
                    message,
                    retry_after_seconds,
                    detail,
                }) => Err(Error::Unavailable {
                    code,
                    message: format!("audit log write failed: {message}"),
                    retry_after_seconds: *retry_after_seconds,
                    detail: detail.clone(),
                }),
                Err(error) => Err(error.to_internal("audit log write failed")),
            });
        }
    }
}
