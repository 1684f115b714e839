//! Minted registry tokens across replicas: one token per shared cloud identity, sealed
//! in the database so every replica can serve it, refreshed ahead of expiry by
//! whichever replica holds its lease (the refresher, [`Refresher`], is a
//! `lease_worker`), and served from memory on the hot path.
//!
//! A resolve's login ([`login_for`]): a stored password is returned as is (no network,
//! nothing cached). Otherwise it goes through the login cache, keyed by the credential's
//! shared identity:
//! 1. memory, while the login is before its in-memory refresh point;
//! 2. the identity's `registry_tokens` row, if its token has more than
//!    `MINIMUM_REMAINING_MS` left, even past its refresh point. A token this replica
//!    cannot open (sealed under a key version it lacks, or damaged) is minted again
//!    like a missing one, leased with `claim_unreadable_token`;
//! 3. while a failed mint's backoff runs, 503 `token_mint_backing_off` at once, on
//!    every replica, with no provider call;
//! 4. otherwise `claim_token_for_mint` leases the row (creating it `pending`), and the
//!    lease holder mints and finishes the row (`finish_registry_token`). A replica that
//!    finds the lease taken polls the row every 100 ms for up to 10 s (then 503
//!    `token_mint_in_progress`).
//!
//! Whatever this returns is cached with a refresh point computed from that login's
//! own lifetime. A credential is linked to its row after its first lookup, and that is
//! how the refresher learns of it: nothing is minted or refreshed for a credential
//! before its first resolve.
//!
//! The refresher ([`refresh_cycle`], a pass of the lease worker every 5 s on each
//! replica, one owner id per process): `claim_due_tokens` leases up to [`CYCLE_BATCH`] due rows for `LEASE_MS`
//! in one serialised write transaction, so two replicas never both win a row. A row
//! over its provider's rate limit (`App.provider_rate_limit`: 10 calls per second,
//! bursts of 50, per replica and provider) is handed back, due again in 1 s. The rest
//! are refreshed [`CONCURRENCY`] at a time. A row with no linked credential left is
//! deleted. On success the new token is sealed `fresh` with `failures` 0 and its next
//! attempt at the jittered refresh point. It is written only as lease holder, and only
//! then put into this replica's memory. On failure the row turns `stale` while still
//! usable, else `expired` (a row never minted stays `pending`), with `failures + 1`,
//! the provider's message, and its next attempt after `backoff`. A result whose lease
//! was lost (the lease ran out and another replica took the row) is neither written
//! nor put into memory, though `regkeeper_token_refreshes_total` still counts the
//! call. A refresh that errors out (the master key unavailable: `token.refresh_error`)
//! leaves its lease to run out.
//!
//! A minted token is sealed like a secret (purpose `registry-token`, bound to its
//! identity and issue time) and opened only by `open_token`.
//!
//! Gaps in the lease: `login_after_refusal` re-mints after a registry refused a token
//! and writes the row with `put_registry_token`, without the lease; a batch of up to
//! 256 refreshed 8 at a time can outlive its 60 s lease and be repeated by another
//! replica; lease times come from each replica's own clock.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::crypto::Binding;
use crate::domain::credential::{Credential, Timestamp};
use crate::domain::registry_token::RegistryTokenStatus;
use crate::domain::{Error, Result};
use crate::login_cache::{backoff, jittered_refresh_at, MINIMUM_REMAINING_MS};
use crate::providers::{shared_identity, ProviderError, RegistryLogin};
use crate::store::StoredToken;

use super::credentials::open_secret;
use super::lease_worker::{self, Claim, LeaseWork};
use super::App;

const TOKEN_PURPOSE: &str = "registry-token";
/// A replica that dies mid-refresh blocks nobody for longer than this.
const LEASE_MS: i64 = 60_000;
/// Tokens leased per cycle and refreshed at once, bounding load on providers.
pub const CYCLE_BATCH: i64 = 256;
pub const CONCURRENCY: usize = 8;

fn binding(identity: &str, issued_at: Timestamp) -> Binding<'_> {
    Binding {
        purpose: TOKEN_PURPOSE,
        workspace_id: "",
        owner_id: identity,
        version: issued_at,
    }
}

/// A provider's failure to log in, in the terms the API reports (a store's failure
/// during a mint is never one: it is passed on as the store's own error).
fn provider_error(credential: &Credential, error: &ProviderError) -> Error {
    let message = format!("credential {} could not log in: {error}", credential.name);
    if matches!(error, ProviderError::AmbientAccountRefused { .. }) {
        // The operator's policy, not a provider failure: retrying will not help.
        return Error::unprocessable(error.code(), message);
    }
    if error.retryable() {
        Error::Unavailable {
            code: error.code(),
            message,
            // A failed mint's backoff knows how long the wait is; say so, at least 1 s.
            retry_after_seconds: match error {
                ProviderError::BackingOff {
                    retry_in_seconds, ..
                } => Some(u32::try_from((*retry_in_seconds).max(1)).unwrap_or(u32::MAX)),
                _ => None,
            },
            detail: None,
        }
    } else {
        Error::upstream(error.code(), message)
    }
}

fn open_token(app: &App, token: &StoredToken) -> Result<RegistryLogin> {
    let keys = app.keyring.keys()?;
    let secret = keys
        .open(&token.sealed, binding(&token.identity, token.issued_at))
        .map_err(|error| Error::internal(format!("stored token cannot be opened: {error}")))?;
    let secret =
        std::str::from_utf8(&secret).map_err(|_| Error::internal("stored token is not text"))?;
    Ok(RegistryLogin {
        username: token.username.clone(),
        secret: SecretString::from(secret.to_owned()),
        issued_at: token.issued_at,
        expires_at: token.expires_at,
    })
}

fn seal_token(
    app: &App,
    identity: &str,
    login: &RegistryLogin,
    now: Timestamp,
) -> Result<StoredToken> {
    let keys = app.keyring.keys()?;
    let sealed = keys.seal(
        login.secret.expose_secret().as_bytes(),
        binding(identity, login.issued_at),
    );
    let refresh_at = jittered_refresh_at(login);
    Ok(StoredToken {
        identity: identity.to_owned(),
        username: login.username.clone(),
        sealed,
        issued_at: login.issued_at,
        expires_at: login.expires_at,
        refresh_at,
        status: RegistryTokenStatus::Fresh,
        failures: 0,
        last_error: None,
        next_attempt_at: refresh_at,
        updated_at: now,
    })
}

fn usable(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|expires_at| now + MINIMUM_REMAINING_MS < expires_at)
}

/// What a login for `credential` starts from: its secret opened, and either the token
/// identity its minted tokens are shared under, or (a login that mints nothing to
/// share, such as a stored password) the login itself.
enum Opened {
    Shared {
        secret: crate::domain::credential::CredentialSecret,
        identity: String,
    },
    Direct(RegistryLogin),
}

async fn opened(app: &App, credential: &Credential) -> Result<Opened> {
    if credential.auth_method == crate::domain::credential::AuthMethod::AwsSecret {
        // Read from Secrets Manager (cached for at most 5 minutes), never minted.
        return super::aws_secrets::login(app, credential)
            .await
            .map(Opened::Direct);
    }
    let secret = open_secret(app, credential)?;
    match shared_identity(credential, &secret) {
        Some(identity) => Ok(Opened::Shared { secret, identity }),
        None => app
            .providers
            .login(credential, &secret, app.now())
            .await
            .map(Opened::Direct)
            .map_err(|error| provider_error(credential, &error)),
    }
}

/// A login for `credential`: the stored password, or its identity's minted token
/// (from memory, else the database, else minted now).
pub async fn login_for(app: &App, credential: &Credential) -> Result<RegistryLogin> {
    let (secret, identity) = match opened(app, credential).await? {
        Opened::Shared { secret, identity } => (secret, identity),
        Opened::Direct(login) => return Ok(login),
    };
    // The operator may have narrowed the accounts ambient credentials reach since this
    // token was minted: a stored token is not served past that either.
    app.providers
        .ecr
        .check_ambient(credential)
        .await
        .map_err(|error| provider_error(credential, &error))?;
    let lookup = || stored_or_minted(app, credential, &secret, &identity);
    let (login, _) = app.tokens.get_or_mint(&identity, lookup).await?;
    if credential.token.is_none() {
        app.store
            .link_token_identity(&credential.id, Some(&identity))
            .await?;
    }
    Ok(login)
}

/// How often, and how many times, a lookup looks again at a token another replica
/// holds the mint lease of: 10 s in all, within the request's 60 s and longer than a
/// healthy mint takes.
const MINT_WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(100);
const MINT_WAIT_POLLS: u32 = 100;

/// The identity's token as the database holds it, minting only when there is none to
/// serve. A valid token is served even past its refresh point: refreshing is the
/// refresher's job, which backs off while the provider fails, so an outage costs the
/// provider no extra calls however many resolves arrive. With no valid token, the mint
/// takes the row's lease exactly as the refresher does — one mint per identity across
/// replicas, the others wait for its row — and a failed mint's backoff is shared:
/// until it runs out, every replica answers with that failure at once. The store's
/// failures are answered as such, whatever the credential's provider.
async fn stored_or_minted(
    app: &App,
    credential: &Credential,
    secret: &crate::domain::credential::CredentialSecret,
    identity: &str,
) -> Result<RegistryLogin> {
    let owner = format!("resolve-{}", super::new_id());
    for _ in 0..MINT_WAIT_POLLS {
        let now = app.now();
        let stored = app.store.registry_token(identity).await?;
        let mut unreadable = None;
        if let Some(stored) = stored.as_ref().filter(|stored| serveable(stored, now)) {
            match open_token(app, stored) {
                Ok(login) => return Ok(login),
                // Sealed under a master key this replica lacks (its key file is a
                // rotation behind) or damaged: a new token, sealed under ours, serves
                // everyone. It is minted like a first one — under the row's lease, with
                // a failure's backoff shared — so an outage costs the provider no more
                // calls here than elsewhere.
                Err(error) => unreadable = Some((stored.issued_at, error.code())),
            }
        }
        if let Some(stored) = &stored {
            if let Some(backing_off) = backing_off(stored, now) {
                return Err(provider_error(credential, &backing_off));
            }
        }
        let claimed = match unreadable {
            Some((issued_at, code)) => {
                let claimed = app
                    .store
                    .claim_unreadable_token(identity, issued_at, now, &owner, now + LEASE_MS)
                    .await?;
                if claimed.is_some() {
                    tracing::warn!(error.code = code, "token.unreadable_reminted");
                }
                claimed
            }
            None => {
                app.store
                    .claim_token_for_mint(&pending(identity, now), now, &owner, now + LEASE_MS)
                    .await?
            }
        };
        match claimed {
            Some(leased) => {
                return mint_leased(app, credential, secret, leased, &owner)
                    .await
                    .map_err(|error| provider_error(credential, &error))
            }
            // Another replica (or the refresher) holds the lease: wait for its row.
            None => tokio::time::sleep(MINT_WAIT_POLL).await,
        }
    }
    Err(provider_error(credential, &ProviderError::MintInProgress))
}

/// The failure a mint on demand answers at once while a failed attempt's backoff runs.
fn backing_off(stored: &StoredToken, now: Timestamp) -> Option<ProviderError> {
    (stored.failures > 0 && now < stored.next_attempt_at).then(|| ProviderError::BackingOff {
        last_error: stored.last_error.clone().unwrap_or_default(),
        retry_in_seconds: (stored.next_attempt_at - now + 999) / 1000,
    })
}

/// Whether a stored row holds a token that may be handed out now.
fn serveable(stored: &StoredToken, now: Timestamp) -> bool {
    stored.status != RegistryTokenStatus::Pending && usable(stored.expires_at, now)
}

/// The row a first mint leases: no token yet, due now.
fn pending(identity: &str, now: Timestamp) -> StoredToken {
    StoredToken {
        identity: identity.to_owned(),
        username: String::new(),
        sealed: crate::domain::credential::SealedSecret {
            ciphertext: Vec::new(),
            wrapped_key: Vec::new(),
            key_version: 0,
        },
        issued_at: now,
        expires_at: Some(now),
        refresh_at: now,
        status: RegistryTokenStatus::Pending,
        failures: 0,
        last_error: None,
        next_attempt_at: now,
        updated_at: now,
    }
}

/// The row after a failed mint or refresh of `token`, the one rule both paths record:
/// a token never minted stays pending, one still usable turns stale (served while
/// retries back off), any other expired; the next attempt waits out the backoff.
fn failed_attempt(token: StoredToken, error: &ProviderError, now: Timestamp) -> StoredToken {
    let failures = token.failures + 1;
    let status = if token.status == RegistryTokenStatus::Pending {
        RegistryTokenStatus::Pending
    } else if usable(token.expires_at, now) {
        RegistryTokenStatus::Stale
    } else {
        RegistryTokenStatus::Expired
    };
    StoredToken {
        status,
        failures,
        last_error: Some(error.to_string()),
        next_attempt_at: now + backoff(failures),
        updated_at: now,
        ..token
    }
}

/// Mints the token whose lease this lookup holds and finishes the row as lease holder:
/// the new token, or the failure with its backoff (the refresher's rule), so the next
/// attempt — anyone's — waits for it. The credential is linked either way, so the
/// refresher retries a failed first mint on that schedule.
#[tracing::instrument(
    name = "token.mint",
    skip_all,
    fields(credential.id = %credential.id, provider = provider_of(&leased.identity))
)]
async fn mint_leased(
    app: &App,
    credential: &Credential,
    secret: &crate::domain::credential::CredentialSecret,
    leased: StoredToken,
    owner: &str,
) -> Result<RegistryLogin, ProviderError> {
    let now = app.now();
    let result = app.providers.login(credential, secret, now).await;
    app.metrics
        .token_refreshes
        .get_or_create(&outcome(if result.is_ok() { "success" } else { "failure" }))
        .inc();
    let finished = match &result {
        Ok(login) => seal_token(app, &leased.identity, login, now),
        Err(error) => Ok(failed_attempt(leased.clone(), error, now)),
    };
    let stored = async {
        let finished = finished?;
        if !app.store.finish_registry_token(&finished, owner).await? {
            tracing::info!(credential.id = %credential.id, "token.mint_lease_lost");
        }
        app.store
            .link_token_identity(&credential.id, Some(&leased.identity))
            .await
    };
    if let Err(error) = stored.await {
        tracing::warn!(
            error.code = error.code(),
            error.detail = error.detail().map(tracing::field::debug),
            "token.store_failed"
        );
    }
    if let Err(error) = &result {
        tracing::warn!(
            credential.id = %credential.id,
            error.code = error.code(),
            failures = leased.failures + 1,
            "token.mint_failed"
        );
    }
    result
}

/// Mints a token for `identity` now and stores it sealed, so every replica serves it
/// (after a registry refused the stored one, which no lease or backoff should delay).
#[tracing::instrument(
    name = "token.mint",
    skip_all,
    fields(credential.id = %credential.id, provider = provider_of(identity))
)]
async fn mint_and_store(
    app: &App,
    credential: &Credential,
    secret: &crate::domain::credential::CredentialSecret,
    identity: &str,
    now: Timestamp,
) -> Result<RegistryLogin, ProviderError> {
    match app.providers.login(credential, secret, now).await {
        Ok(login) => {
            if let Ok(token) = seal_token(app, identity, &login, now) {
                let stored = async {
                    app.store.put_registry_token(&token).await?;
                    app.store
                        .link_token_identity(&credential.id, Some(identity))
                        .await
                };
                if let Err(error) = stored.await {
                    tracing::warn!(
                        error.code = error.code(),
                        error.detail = error.detail().map(tracing::field::debug),
                        "token.store_failed"
                    );
                }
            }
            app.metrics
                .token_refreshes
                .get_or_create(&outcome("success"))
                .inc();
            Ok(login)
        }
        Err(error) => {
            app.metrics
                .token_refreshes
                .get_or_create(&outcome("failure"))
                .inc();
            Err(error)
        }
    }
}

/// A new login for `credential` after its registry refused the login issued at
/// `refused_issued_at` (a 401, or a 403
/// saying the token expired) although it looked valid: the token was revoked, or
/// expired early. A minted token is re-minted once, however many requests saw the
/// refusal at the same time; a newer token another replica stored is taken instead.
/// A stored password is simply the same login again.
pub async fn login_after_refusal(
    app: &App,
    credential: &Credential,
    refused_issued_at: Timestamp,
) -> Result<RegistryLogin> {
    if credential.auth_method == crate::domain::credential::AuthMethod::AwsSecret {
        // The secret may have changed since it was read: read it again.
        super::aws_secrets::forget(app, &credential.id).await;
    }
    let (secret, identity) = match opened(app, credential).await? {
        Opened::Shared { secret, identity } => (secret, identity),
        Opened::Direct(login) => return Ok(login),
    };
    tracing::info!(credential.name = %credential.name, "token.refused_by_registry");
    let mint = || async {
        let now = app.now();
        if let Ok(Some(stored)) = app.store.registry_token(&identity).await {
            if stored.issued_at > refused_issued_at && usable(stored.expires_at, now) {
                if let Ok(login) = open_token(app, &stored) {
                    return Ok(login);
                }
            }
        }
        mint_and_store(app, credential, &secret, &identity, now)
            .await
            .map_err(|error| provider_error(credential, &error))
    };
    app.tokens
        .replace_refused(&identity, refused_issued_at, mint)
        .await
}

/// The login a sync target should carry: what [`login_for`] gives, after adopting into
/// this replica's memory a newer, still fresh token that another replica's refresher
/// stored — so a push never re-delivers the token this replica happens to remember.
pub async fn current_login(app: &App, credential: &Credential) -> Result<RegistryLogin> {
    let secret = open_secret(app, credential)?;
    if let Some(identity) = shared_identity(credential, &secret) {
        let now = app.now();
        if let Some(stored) = app.store.registry_token(&identity).await? {
            if now < stored.refresh_at && usable(stored.expires_at, now) {
                if let Ok(login) = open_token(app, &stored) {
                    app.tokens.adopt(&identity, login, stored.refresh_at).await;
                }
            }
        }
    }
    login_for(app, credential).await
}

fn outcome(result: &str) -> crate::metrics::OutcomeLabels {
    crate::metrics::OutcomeLabels {
        outcome: result.to_owned(),
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CycleReport {
    pub leased: usize,
    pub refreshed: usize,
    pub failed: usize,
    pub dropped: usize,
    /// Put off to a later cycle by the provider's rate limit.
    pub deferred: usize,
}

/// How soon a token put off by the rate limit is tried again.
const RATE_LIMITED_RETRY_MS: i64 = 1_000;

/// The provider a token identity belongs to (its prefix, see `shared_identity`).
fn provider_of(identity: &str) -> &'static str {
    match identity.split_once(':').map(|(kind, _)| kind) {
        Some("ecr") => "ecr",
        Some("acr") => "acr",
        Some("gcr") => "gcr",
        _ => "other",
    }
}

/// One pass of the background refresher: lease the tokens that are due, refresh them
/// with bounded concurrency, and record each result (with backoff on failure).
pub async fn refresh_cycle(app: &Arc<App>, owner: &str) -> Result<CycleReport> {
    lease_worker::cycle::<Refresher>(app, owner).await
}

/// The refresher as a lease worker (`lease_worker::run` runs it).
pub struct Refresher;

impl LeaseWork for Refresher {
    type Row = StoredToken;
    type Outcome = Refreshed;
    type Report = CycleReport;
    const LEASE_MS: i64 = LEASE_MS;
    const BATCH: i64 = CYCLE_BATCH;
    const CONCURRENCY: usize = CONCURRENCY;

    async fn claim(app: &App, claim: Claim<'_>) -> Result<Vec<StoredToken>> {
        let Claim { now, owner, .. } = claim;
        app.store
            .claim_due_tokens(now, owner, claim.until, claim.batch)
            .await
    }

    async fn admit(
        app: &App,
        token: StoredToken,
        owner: &str,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Result<Option<StoredToken>> {
        let provider = provider_of(&token.identity);
        if app.provider_rate_limit.try_acquire(provider, now) {
            return Ok(Some(token));
        }
        // Over this provider's rate: give the lease back and try again shortly.
        let deferred = StoredToken {
            next_attempt_at: now + RATE_LIMITED_RETRY_MS,
            ..token
        };
        app.store.finish_registry_token(&deferred, owner).await?;
        report.deferred += 1;
        Ok(None)
    }

    async fn work(app: Arc<App>, token: StoredToken, owner: String) -> Result<Refreshed> {
        refresh_one(&app, token, &owner).await
    }

    fn leased(report: &mut CycleReport, count: usize) {
        report.leased = count;
    }

    fn tally(report: &mut CycleReport, outcome: Result<Refreshed>) {
        match outcome {
            Ok(Refreshed::Yes) => report.refreshed += 1,
            Ok(Refreshed::Failed) => report.failed += 1,
            Ok(Refreshed::Dropped) => report.dropped += 1,
            Err(error) => {
                tracing::warn!(
                    error.code = error.code(),
                    error.detail = error.detail().map(tracing::field::debug),
                    "token.refresh_error"
                );
                report.failed += 1;
            }
        }
    }

    fn log(pass: &Result<CycleReport>) {
        match pass {
            Ok(report) if report.leased > 0 => tracing::info!(
                leased = report.leased,
                refreshed = report.refreshed,
                failed = report.failed,
                dropped = report.dropped,
                "token.refresh_cycle"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(error.code = error.code(), "token.refresh_cycle_failed"),
        }
    }
}

pub enum Refreshed {
    Yes,
    Failed,
    Dropped,
}

#[tracing::instrument(
    name = "token.refresh",
    skip_all,
    fields(provider = provider_of(&token.identity), credential.id = tracing::field::Empty)
)]
async fn refresh_one(app: &App, token: StoredToken, owner: &str) -> Result<Refreshed> {
    let Some(credential) = app
        .store
        .credential_by_token_identity(&token.identity)
        .await?
    else {
        // No credential uses this identity any more (deleted, or its secret changed,
        // which unlinks it).
        app.store.delete_registry_token(&token.identity).await?;
        return Ok(Refreshed::Dropped);
    };
    tracing::Span::current().record("credential.id", credential.id.as_str());
    let secret = open_secret(app, &credential)?;
    let now = app.now();
    match app.providers.login(&credential, &secret, now).await {
        Ok(login) => {
            let fresh = seal_token(app, &token.identity, &login, now)?;
            app.metrics
                .token_refreshes
                .get_or_create(&outcome("success"))
                .inc();
            if !app.store.finish_registry_token(&fresh, owner).await? {
                // The lease ran out and another replica took the token over.
                tracing::info!(credential.id = %credential.id, "token.refresh_lease_lost");
                return Ok(Refreshed::Failed);
            }
            app.tokens
                .put(&token.identity, login, fresh.refresh_at)
                .await;
            tracing::debug!(credential.id = %credential.id, "token.refreshed");
            Ok(Refreshed::Yes)
        }
        Err(error) => {
            let failed = failed_attempt(token, &error, now);
            app.store.finish_registry_token(&failed, owner).await?;
            app.metrics
                .token_refreshes
                .get_or_create(&outcome("failure"))
                .inc();
            tracing::warn!(
                credential.id = %credential.id,
                error.code = error.code(),
                failures = failed.failures,
                "token.refresh_failed"
            );
            Ok(Refreshed::Failed)
        }
    }
}
