//! Sync targets: who may add, list, remove and push them, and the background worker
//! that delivers each credential's current login to its targets whenever it changes —
//! a re-minted token, an updated credential, a new target — with backoff on failure.
//!
//! A target is due when nothing is scheduled and it is behind (never delivered, its
//! credential's revision changed, or its token was re-minted since; the store computes
//! this on read), or when its retry time has come. The pusher ([`Pusher`]) is a
//! `lease_worker`, as the refresher is: one replica pushes a target at a time, a result
//! is written only by the lease holder, and a dead replica's lease runs out.
//!
//! The push cycle runs every 5 s on each replica. It leases up to [`CYCLE_BATCH`] due
//! targets for `LEASE_MS` (120 s) and pushes [`CONCURRENCY`] at a time, each push
//! bounded by `PUSH_TIMEOUT` (45 s). A push reads the credential, takes
//! `registry_tokens::current_login`, opens the webhook signing key, pushes, and
//! finishes as lease holder: `ok` (failures 0, nothing scheduled, what was delivered)
//! or `failing` (failures + 1, the scrubbed error, next attempt after `backoff`).
//!
//! A push is recorded (`sync_target.push`, actor `system` for the worker) in the same
//! transaction as its result, after the delivery. A resolve's entry comes first; a
//! push's cannot, because a delivery cannot be taken back, and its destination was
//! authorised and audited when the target was added. A failed push is audited only
//! when someone asked for it (create, `run`). The worker's retries show in the status,
//! in `regkeeper_sync_pushes_total{kind,outcome}` and in the log. A static (docker)
//! credential's targets are pushed only when added, when the credential changes, or
//! on `run`.
//!
//! An `aws_secret` target writes as its identity credential (`--aws-identity`, an
//! `ecr` credential of the same workspace, found by id at every push:
//! `service::aws_secrets`), with a `ClientRequestToken` derived from the login under a
//! key derived from the master key ([`IDEMPOTENCY_LABEL`]), so a repeated push of the
//! same login adds no version.
//!
//! Gap: no test runs leases between two replicas for sync targets.

use std::sync::Arc;
use std::time::Duration;

use regkeeper_wire::SyncTargetInput;
use secrecy::{ExposeSecret, SecretString};

use crate::audit::{AuditRecord, Outcome};
use crate::crypto::Binding;
use crate::domain::credential::Credential;
use crate::domain::identity::{Principal, Role};
use crate::domain::sync_target::{
    AwsSecretDestination, Delivered, DestinationParts, SyncDestination, SyncKind, SyncStatus,
    SyncTarget,
};
use crate::domain::{Error, Result};
use crate::login_cache::backoff;
use crate::metrics::SyncPushLabels;
use crate::push::{server_address, Delivery, SyncError};

use super::access::require;
use super::lease_worker::{self, Claim, LeaseWork};
use super::App;

const SIGNING_KEY_PURPOSE: &str = crate::store::SealedKind::SyncSigningKey.purpose();
/// The derived key (`MasterKeys::derived_key`) of deliveries' idempotency keys.
pub const IDEMPOTENCY_LABEL: &str = "sync-target-idempotency";
/// Longer than a push may take ([`PUSH_TIMEOUT`]), short enough that a dead replica
/// delays a target by little.
const LEASE_MS: i64 = 120_000;
const PUSH_TIMEOUT: Duration = Duration::from_secs(45);
/// Targets leased per cycle and pushed at once.
pub const CYCLE_BATCH: i64 = 64;
pub const CONCURRENCY: usize = 8;

fn binding(target: &SyncTarget) -> Binding<'_> {
    Binding {
        purpose: SIGNING_KEY_PURPOSE,
        workspace_id: &target.workspace_id,
        owner_id: &target.id,
        version: 1,
    }
}

fn reference(credential: &Credential) -> String {
    format!(
        "rk:{}:credential/{}",
        credential.workspace_name, credential.name
    )
}

/// A new target, after its first push, with the signing key the server generated
/// (shown this once).
pub struct Created {
    pub target: SyncTarget,
    pub signing_key: Option<SecretString>,
}

/// The operator's settings refuse this destination: a 422 that says which setting.
fn refused(error: SyncError) -> Error {
    Error::unprocessable(error.code(), error.to_string())
}

fn signing_key(input: &SyncTargetInput, kind: SyncKind) -> Result<Option<(SecretString, bool)>> {
    match (&input.signing_key, kind) {
        (Some(_), SyncKind::File | SyncKind::Kubernetes | SyncKind::AwsSecret) => {
            Err(Error::invalid(
                "invalid_sync_target",
                "`signingKey` applies only to webhook targets",
            ))
        }
        (Some(given), SyncKind::Webhook) => {
            let key = given.expose();
            if !(32..=512).contains(&key.len())
                || key.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::invalid(
                    "invalid_signing_key",
                    "a webhook signing key needs 32 to 512 characters without spaces; or omit it and the server makes one",
                ));
            }
            Ok(Some((SecretString::from(key.to_owned()), false)))
        }
        (None, SyncKind::Webhook) => Ok(Some((crate::push::webhook::generate_key(), true))),
        (None, _) => Ok(None),
    }
}

async fn credential(
    app: &App,
    workspace_id: &str,
    workspace: &str,
    name: &str,
) -> Result<Credential> {
    app.store
        .credential(workspace_id, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("credential {name} in {workspace}")))
}

/// Adds a target to a credential and pushes to it once (`maintain`).
pub async fn create(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    credential_name: &str,
    input: SyncTargetInput,
) -> Result<Created> {
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "sync_target.create")
        .workspace(None, &workspace_name)
        .target(credential_name);
    let owner = format!("request-{}", super::new_id());
    let (target, generated) = app
        .audited(record.clone(), async {
            let access = require(app, principal, Some(&workspace_name), Role::Maintain, "managing sync targets").await?;
            let credential = credential(app, &access.workspace.id, &access.workspace.name, credential_name).await?;
            let aws_identity = match &input.aws_identity {
                Some(name) => {
                    let identity = super::aws_secrets::identity_by_name(app, &access.workspace.id, name).await?;
                    Some((identity.id, identity.name))
                }
                None => None,
            };
            let destination = DestinationParts {
                kind: input.kind.clone(),
                path: input.path.clone(),
                namespaces: input.namespaces.clone(),
                secret_name: input.secret_name.clone(),
                url: input.url.clone(),
                aws_secret: input.aws_secret.clone(),
                aws_region: input.aws_region.clone(),
                aws_identity,
                adopt: input.adopt,
            }
            .build(&credential.name)?;
            app.sync.check(&destination).map_err(refused)?;
            if let SyncDestination::AwsSecret(secret) = &destination {
                if !secret.adopt {
                    // Refused before it is stored: a secret regkeeper did not make.
                    let target_ref = reference(&credential);
                    check_aws_secret(app, &credential, secret, &target_ref).await?;
                }
            }
            let key = signing_key(&input, destination.kind())?;
            let now = app.now();
            let mut target = SyncTarget {
                id: super::new_id(),
                credential_id: credential.id.clone(),
                credential_name: credential.name.clone(),
                workspace_id: credential.workspace_id.clone(),
                workspace_name: credential.workspace_name.clone(),
                destination,
                signing_key: None,
                status: SyncStatus::Pending,
                failures: 0,
                last_error: None,
                next_attempt_at: Some(now),
                last_attempt_at: None,
                last_synced_at: None,
                delivered: Delivered::default(),
                behind: true,
                created_at: now,
                created_by: principal.user_name.clone(),
            };
            if let Some((key, _)) = &key {
                let keys = app.keyring.keys()?;
                target.signing_key = Some(keys.seal(key.expose_secret().as_bytes(), binding(&target)));
            }
            let record = record
                .clone()
                .workspace(Some(&target.workspace_id), &target.workspace_name)
                .detail(serde_json::json!({
                    "id": target.id,
                    "credentialId": target.credential_id,
                    "type": target.destination.kind().as_str(),
                    "destination": target.destination.summary(),
                    "signingKey": key.as_ref().map(|(_, generated)| if *generated { "generated" } else { "supplied" }),
                }));
            // Leased to this request, so its first push cannot race the worker's.
            app.store
                .insert_sync_target(&target, Some((&owner, now + LEASE_MS)), record)
                .await?;
            tracing::info!(
                sync_target.id = %target.id,
                sync_target.kind = target.destination.kind().as_str(),
                credential.id = %target.credential_id,
                workspace.name = %target.workspace_name,
                "sync_target.created"
            );
            Ok((target, key.and_then(|(key, generated)| generated.then_some(key))))
        })
        .await?;
    let target = push(app, target, &owner, Some(principal)).await?;
    Ok(Created {
        target,
        signing_key: generated,
    })
}

/// A credential's targets and how their pushes are going (`view`).
pub async fn list(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    credential_name: &str,
) -> Result<Vec<SyncTarget>> {
    let access = require(
        app,
        principal,
        workspace,
        Role::View,
        "listing sync targets",
    )
    .await?;
    let credential = credential(
        app,
        &access.workspace.id,
        &access.workspace.name,
        credential_name,
    )
    .await?;
    app.store.sync_targets(&credential.id).await
}

/// Removes a target (`maintain`). What it delivered stays where it is: a file entry or
/// Secret in use is not pulled from under a running workload.
pub async fn delete(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    credential_name: &str,
    target_id: &str,
) -> Result<()> {
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "sync_target.delete")
        .workspace(None, &workspace_name)
        .target(credential_name);
    app.audited(record.clone(), async {
        let access = require(app, principal, Some(&workspace_name), Role::Maintain, "managing sync targets").await?;
        let credential = credential(app, &access.workspace.id, &access.workspace.name, credential_name).await?;
        let record = record
            .clone()
            .workspace(Some(&credential.workspace_id), &credential.workspace_name)
            .detail(serde_json::json!({ "id": target_id, "credentialId": credential.id }));
        if !app.store.delete_sync_target(&credential.id, target_id, record).await? {
            return Err(Error::NotFound(format!(
                "sync target {target_id} of credential {credential_name}"
            )));
        }
        tracing::info!(sync_target.id = %target_id, credential.id = %credential.id, "sync_target.deleted");
        Ok(())
    })
    .await
}

/// Pushes to one target now, whatever its schedule (`maintain`). A failed push is an
/// answer, not an error: the target comes back `failing` with its error and backoff.
pub async fn run(
    app: &App,
    principal: &Principal,
    workspace: Option<&str>,
    credential_name: &str,
    target_id: &str,
) -> Result<SyncTarget> {
    let workspace_name = workspace.map_or_else(|| principal.personal_workspace(), str::to_owned);
    let record = app
        .record(Some(principal), "sync_target.push")
        .workspace(None, &workspace_name)
        .target(credential_name);
    let owner = format!("request-{}", super::new_id());
    let target = app
        .audited(record, async {
            let access = require(app, principal, Some(&workspace_name), Role::Maintain, "pushing to sync targets").await?;
            let credential = credential(app, &access.workspace.id, &access.workspace.name, credential_name).await?;
            let known = app.store.sync_targets(&credential.id).await?;
            if !known.iter().any(|target| target.id == target_id) {
                return Err(Error::NotFound(format!(
                    "sync target {target_id} of credential {credential_name}"
                )));
            }
            let now = app.now();
            app.store
                .claim_sync_target(target_id, now, &owner, now + LEASE_MS)
                .await?
                .ok_or_else(|| {
                    Error::conflict(
                        "sync_in_progress",
                        format!("sync target {target_id} is being pushed right now; look again in a minute"),
                    )
                })
        })
        .await?;
    push(app, target, &owner, Some(principal)).await
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CycleReport {
    pub leased: usize,
    pub pushed: usize,
    pub failed: usize,
}

/// One pass of the worker: lease the due targets and push them, a few at a time.
pub async fn sync_cycle(app: &Arc<App>, owner: &str) -> Result<CycleReport> {
    lease_worker::cycle::<Pusher>(app, owner).await
}

/// The pusher as a lease worker (`lease_worker::run` runs it).
pub struct Pusher;

impl LeaseWork for Pusher {
    type Row = SyncTarget;
    type Outcome = SyncTarget;
    type Report = CycleReport;
    const LEASE_MS: i64 = LEASE_MS;
    const BATCH: i64 = CYCLE_BATCH;
    const CONCURRENCY: usize = CONCURRENCY;

    async fn claim(app: &App, claim: Claim<'_>) -> Result<Vec<SyncTarget>> {
        let Claim { now, owner, .. } = claim;
        app.store
            .claim_due_sync_targets(now, owner, claim.until, claim.batch)
            .await
    }

    async fn work(app: Arc<App>, target: SyncTarget, owner: String) -> Result<SyncTarget> {
        push(&app, target, &owner, None).await
    }

    fn leased(report: &mut CycleReport, count: usize) {
        report.leased = count;
    }

    fn tally(report: &mut CycleReport, outcome: Result<SyncTarget>) {
        match outcome {
            Ok(target) if target.status == SyncStatus::Ok => report.pushed += 1,
            Ok(_) => report.failed += 1,
            Err(error) => {
                tracing::warn!(
                    error.code = error.code(),
                    error.detail = error.detail().map(tracing::field::debug),
                    "sync.push_error"
                );
                report.failed += 1;
            }
        }
    }

    fn log(pass: &Result<CycleReport>) {
        match pass {
            Ok(report) if report.leased > 0 => tracing::info!(
                leased = report.leased,
                pushed = report.pushed,
                failed = report.failed,
                "sync.cycle"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(error.code = error.code(), "sync.cycle_failed"),
        }
    }
}

/// What one attempt delivered, or why it failed (a code and a message safe to show).
type Attempt<T = Delivered> = std::result::Result<T, (&'static str, String)>;

/// Pushes a leased target and records the result as the lease holder. Errors are only
/// those of recording it; a failed delivery is a `failing` target.
#[tracing::instrument(
    name = "sync.push",
    skip_all,
    fields(sync.kind = target.destination.kind().as_str(), sync_target.id = %target.id)
)]
async fn push(
    app: &App,
    mut target: SyncTarget,
    owner: &str,
    actor: Option<&Principal>,
) -> Result<SyncTarget> {
    let now = app.now();
    let kind = target.destination.kind().as_str();
    let attempt = deliver(app, &target, now).await;
    target.last_attempt_at = Some(now);
    let outcome = match attempt {
        Ok(delivered) => {
            target.status = SyncStatus::Ok;
            target.failures = 0;
            target.last_error = None;
            target.next_attempt_at = None;
            target.last_synced_at = Some(now);
            target.delivered = delivered;
            target.behind = false;
            Ok(())
        }
        Err((code, message)) => {
            target.status = SyncStatus::Failing;
            target.failures += 1;
            target.last_error = Some(message);
            target.next_attempt_at = Some(now + backoff(target.failures));
            Err(code)
        }
    };
    // Every delivery is on the record, like a resolve; a failed one only when someone
    // asked for it (the worker's retries are in the status, the metrics and the log).
    let audit = match (&outcome, actor) {
        (Ok(()), _) => Some(push_record(app, &target, actor, Outcome::Success, None)),
        (Err(code), Some(_)) => Some(push_record(
            app,
            &target,
            actor,
            Outcome::Failed,
            Some(code),
        )),
        (Err(_), None) => None,
    };
    let written = app.store.finish_sync_target(&target, owner, audit).await?;
    app.metrics
        .sync_pushes
        .get_or_create(&SyncPushLabels {
            kind: kind.to_owned(),
            outcome: if outcome.is_ok() {
                "success"
            } else {
                "failure"
            }
            .to_owned(),
        })
        .inc();
    if !written {
        tracing::info!(sync_target.id = %target.id, "sync_target.lease_lost");
    }
    match outcome {
        Ok(()) => tracing::debug!(
            sync_target.id = %target.id,
            sync_target.kind = kind,
            credential.id = %target.credential_id,
            "sync_target.pushed"
        ),
        Err(code) => tracing::warn!(
            sync_target.id = %target.id,
            sync_target.kind = kind,
            credential.id = %target.credential_id,
            error.code = code,
            failures = target.failures,
            "sync_target.push_failed"
        ),
    }
    Ok(target)
}

/// The same for the same target and login, and nothing anyone without the master key
/// can test a password guess against: HMAC-SHA256 under a derived key.
fn idempotency_key(
    app: &App,
    target: &SyncTarget,
    login: &crate::providers::RegistryLogin,
) -> Result<String> {
    use hmac::{Hmac, Mac};
    let keys = app.keyring.keys()?;
    let derived = keys
        .derived_key(keys.current_version(), IDEMPOTENCY_LABEL)
        .ok_or_else(|| Error::internal("the current master key is missing"))?;
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(derived.expose_bytes())
        .map_err(Error::internal)?;
    for part in [
        target.id.as_str(),
        login.username.as_str(),
        login.secret.expose_secret(),
    ] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    Ok(hex::encode(mac.finalize().into_bytes()))
}

async fn check_aws_secret(
    app: &App,
    credential: &Credential,
    secret: &AwsSecretDestination,
    reference: &str,
) -> Result<()> {
    let identity = super::aws_secrets::identity(
        app,
        &credential.workspace_id,
        &secret.identity_id,
        &secret.identity_name,
    )
    .await?;
    let client = super::aws_secrets::client(app, &identity, secret.region.as_deref())
        .await?
        .map_err(|error| Error::upstream(error.code(), error.to_string()))?;
    crate::push::aws_secret::check_managed(&client, &secret.secret_id, reference)
        .await
        .map_err(|error| match error {
            SyncError::AwsSecretNotManaged { .. } => refused(error),
            other => Error::upstream(other.code(), other.to_string()),
        })
}

/// A Secrets Manager client acting as the target's identity credential.
async fn aws_client(
    app: &App,
    target: &SyncTarget,
    secret: &AwsSecretDestination,
) -> Attempt<aws_sdk_secretsmanager::Client> {
    let identity = super::aws_secrets::identity(
        app,
        &target.workspace_id,
        &secret.identity_id,
        &secret.identity_name,
    )
    .await
    .map_err(|error| shown(&error))?;
    super::aws_secrets::client(app, &identity, secret.region.as_deref())
        .await
        .map_err(|error| shown(&error))?
        .map_err(|error| (error.code(), error.to_string()))
}

fn push_record(
    app: &App,
    target: &SyncTarget,
    actor: Option<&Principal>,
    outcome: Outcome,
    error: Option<&str>,
) -> AuditRecord {
    let mut detail = serde_json::json!({
        "id": target.id,
        "credentialId": target.credential_id,
        "type": target.destination.kind().as_str(),
        "destination": target.destination.summary(),
    });
    if let Some(error) = error {
        detail["error"] = serde_json::Value::String(error.to_owned());
    }
    if let Some(issued_at) = target.delivered.token_issued_at.filter(|_| error.is_none()) {
        detail["tokenIssuedAt"] = serde_json::Value::from(issued_at);
    }
    app.record(actor, "sync_target.push")
        .workspace(Some(&target.workspace_id), &target.workspace_name)
        .target(target.credential_name.clone())
        .outcome(outcome)
        .detail(detail)
}

/// A message about a domain error that may be stored and shown: its client message;
/// an internal error's detail goes to the log, here.
fn shown(error: &Error) -> (&'static str, String) {
    if let Error::Internal(detail) = error {
        tracing::error!(error.detail = ?detail, "sync.internal_error");
    }
    (error.code(), error.to_string())
}

async fn deliver(app: &App, target: &SyncTarget, now: i64) -> Attempt {
    let credential = app
        .store
        .credential(&target.workspace_id, &target.credential_name)
        .await
        .map_err(|error| shown(&error))?
        .filter(|credential| credential.id == target.credential_id)
        .ok_or((
            "credential_missing",
            "the credential was renamed or deleted during the push".to_owned(),
        ))?;
    let login = crate::service::registry_tokens::current_login(app, &credential)
        .await
        .map_err(|error| shown(&error))?;
    let signing_key = match &target.signing_key {
        Some(sealed) => {
            let keys = app.keyring.keys().map_err(|error| shown(&error))?;
            let bytes = keys.open(sealed, binding(target)).map_err(|error| {
                tracing::error!(sync_target.id = %target.id, error = %error, "sync_target.open_failed");
                ("signing_key_unreadable", format!("the signing key cannot be decrypted ({error}); remove the target and add it again"))
            })?;
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                (
                    "signing_key_unreadable",
                    "the signing key is not text".to_owned(),
                )
            })?;
            Some(SecretString::from(text))
        }
        None => None,
    };
    let aws = match &target.destination {
        SyncDestination::AwsSecret(secret) => Some(aws_client(app, target, secret).await?),
        _ => None,
    };
    let delivery = Delivery {
        event_id: super::new_id(),
        target_id: target.id.clone(),
        credential_id: credential.id.clone(),
        credential_name: credential.name.clone(),
        workspace_id: credential.workspace_id.clone(),
        workspace_name: credential.workspace_name.clone(),
        reference: reference(&credential),
        registry: credential.registry_host.clone(),
        path_prefix: credential.path_prefix.clone(),
        server_address: server_address(&credential.registry_host, &credential.path_prefix),
        username: login.username.clone(),
        secret: login.secret.clone(),
        expires_at: login.expires_at,
        at: now,
        idempotency_key: idempotency_key(app, target, &login).map_err(|error| shown(&error))?,
    };
    let pushed = tokio::time::timeout(
        PUSH_TIMEOUT,
        app.sync
            .push(target, &delivery, signing_key.as_ref(), aws.as_ref()),
    )
    .await
    .unwrap_or(Err(SyncError::Timeout(PUSH_TIMEOUT.as_secs())));
    match pushed {
        Ok(key) => Ok(Delivered {
            revision: Some(credential.revision),
            token_issued_at: Some(login.issued_at),
            key,
        }),
        Err(error) => Err((error.code(), delivery.scrub(&error.to_string()))),
    }
}
