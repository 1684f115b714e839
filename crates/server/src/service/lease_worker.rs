//! The lease worker: how a background job shares a table of due rows across replicas.
//! Each pass claims up to a batch of due rows under a lease in this replica's name,
//! works them a few at a time, and each row's work records its result only if the
//! lease is still this replica's; a replica that dies mid-pass blocks its rows only
//! until the lease runs out. The registry-token refresher (`service::registry_tokens`) and the
//! sync-target pusher (`service::sync_targets`) are the two [`LeaseWork`]s; [`run`] gives each
//! a pass every [`PASS_INTERVAL`] for as long as the server runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::credential::Timestamp;
use crate::domain::{Error, Result};

use super::App;

/// How often each worker looks for due rows.
pub const PASS_INTERVAL: Duration = Duration::from_secs(5);

/// What one pass claims: up to `batch` rows due at `now`, for `owner`, leased until
/// `until`.
pub struct Claim<'a> {
    pub now: Timestamp,
    pub owner: &'a str,
    pub until: Timestamp,
    pub batch: i64,
}

/// A job worked under leases: what it claims, how it works one row, and what a pass
/// reports.
pub trait LeaseWork: Send + Sync + 'static {
    /// A row claimed under a lease.
    type Row: Send + 'static;
    /// What working one row came to.
    type Outcome: Send + 'static;
    /// What one pass did, counted as its rows come in.
    type Report: Default + Send;

    /// How long a claim lasts: longer than working a row may take, short enough that a
    /// dead replica's rows wait little.
    const LEASE_MS: i64;
    /// The most rows one pass claims.
    const BATCH: i64;
    /// The most rows worked at once.
    const CONCURRENCY: usize;

    /// Claims the rows `claim` describes.
    fn claim(app: &App, claim: Claim<'_>) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;

    /// Whether to work `row` in this pass. A row put off is given back here (its lease
    /// finished, with the time to try again) and counted in `report`. Every row, unless
    /// a worker says otherwise.
    fn admit(
        _app: &App,
        row: Self::Row,
        _owner: &str,
        _now: Timestamp,
        _report: &mut Self::Report,
    ) -> impl Future<Output = Result<Option<Self::Row>>> + Send {
        async move { Ok(Some(row)) }
    }

    /// Works one leased row and records its result as the lease holder. An error is
    /// one of recording it; a failed attempt is an outcome.
    fn work(
        app: Arc<App>,
        row: Self::Row,
        owner: String,
    ) -> impl Future<Output = Result<Self::Outcome>> + Send;

    /// Counts the rows a pass claimed.
    fn leased(report: &mut Self::Report, count: usize);

    /// Counts one row's outcome (and logs an error recording it).
    fn tally(report: &mut Self::Report, outcome: Result<Self::Outcome>);

    /// Logs what a pass did, or why it failed.
    fn log(pass: &Result<Self::Report>);
}

/// One pass: claim the due rows, work the admitted ones with at most
/// [`LeaseWork::CONCURRENCY`] at a time, and count each outcome as it comes in.
pub async fn cycle<W: LeaseWork>(app: &Arc<App>, owner: &str) -> Result<W::Report> {
    let now = app.now();
    let claim = Claim {
        now,
        owner,
        until: now + W::LEASE_MS,
        batch: W::BATCH,
    };
    let due = W::claim(app, claim).await?;
    let mut report = W::Report::default();
    W::leased(&mut report, due.len());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(W::CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for row in due {
        let Some(row) = W::admit(app, row, owner, now, &mut report).await? else {
            continue;
        };
        let app = Arc::clone(app);
        let owner = owner.to_owned();
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .expect("semaphore open");
        tasks.spawn(async move {
            let result = W::work(app, row, owner).await;
            drop(permit);
            result
        });
    }
    while let Some(result) = tasks.join_next().await {
        W::tally(&mut report, result.map_err(Error::internal)?);
    }
    Ok(report)
}

/// The background loop: a pass every [`PASS_INTERVAL`] (a late pass delays the next
/// rather than bunching them), under a lease owner name unique to this replica.
pub async fn run<W: LeaseWork>(app: Arc<App>) {
    let owner = format!("replica-{}", uuid::Uuid::new_v4());
    let mut interval = tokio::time::interval(PASS_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        W::log(&cycle::<W>(&app, &owner).await);
    }
}
