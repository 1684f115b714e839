//! Persistence behind one narrow trait, [`Store`], implemented once in SQL for both
//! SQLite and PostgreSQL: `sql::SqlStore`, generic over a `backend::Backend`, hands
//! each method to the module of its aggregate (`identity`, `credentials`, `roles`,
//! `registry_tokens`, `sync_targets`, `audit_log`, `keys`, `keyring`), where the statements are and
//! where rows are read through private `sqlx::FromRow` records, never into domain types
//! directly. Every mutation that must be audited takes its [`AuditRecord`] and writes it
//! in the same transaction, so an action and its audit entry succeed or fail together.
//!
//! The store holds no authorisation or business rule, and never sees a plaintext
//! secret: only sealed bytes and token hashes. No other module runs SQL. Migrations
//! live per backend in `crates/server/migrations/{sqlite,postgres}` and run at start.
//! `audit_log` has triggers that refuse UPDATE and DELETE (and TRUNCATE on
//! PostgreSQL). On PostgreSQL, triggers on the cached tables (migrations 0006, 0008's
//! `role_grants`, 0012's `role_trusts`) call `pg_notify` inside the writing
//! transaction. A notification is therefore delivered only on commit, whatever wrote
//! the row, and `watch_changes` passes it on to the service's caches.

mod audit_log;
mod backend;
mod credentials;
mod errors;
mod identity;
mod keyring;
mod keys;
pub mod postgres;
mod registry_tokens;
mod roles;
mod shared_state;
mod sql;
pub mod sqlite;
mod sync_targets;

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditRecord, AuditRow};
use crate::domain::credential::{Credential, SealedSecret, Timestamp};
use crate::domain::identity::{Role, WorkspaceKind};
use crate::domain::registry_token::RegistryTokenStatus;
use crate::domain::Result;

pub use keyring::{KeyHome, KeyMigration, KeyringRecord, MigrationStage};

/// The `Unavailable` codes of a store that cannot be used at all for now: the database
/// is out of reach, or its disk is full.
pub const STORE_UNAVAILABLE_CODES: [&str; 2] = ["database_unavailable", "storage_full"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub created_at: Timestamp,
    /// When a site administrator disabled the user; `None` while enabled.
    pub disabled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRow {
    pub id: String,
    pub name: String,
    pub kind: WorkspaceKind,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub user_name: String,
    pub role: Role,
    pub created_at: Timestamp,
}

/// Whom an API token belongs to: a user, or a workload role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    User(String),
    Role(String),
}

/// An API token as stored: only the SHA-256 of the token, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: String,
    pub owner: TokenOwner,
    pub name: String,
    pub token_hash: String,
    pub display_prefix: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    /// The user who created a workload role's token, so disabling or deleting them
    /// revokes it. `None` for a user's own token, one a role created, and role tokens
    /// from before this was recorded (migration 0009).
    pub created_by: Option<String>,
}

/// A workload role as stored. `policy` is the validated policy as JSON text, with the
/// ids its exact Allow resources were bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub id: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub name: String,
    pub description: String,
    pub policy: String,
    pub revision: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: String,
}

/// A workload role's permission to reach into a workspace other than its own,
/// recorded in that workspace. It is in force only while the user who granted it
/// still administers the workspace and is not disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrantRow {
    pub id: String,
    /// The workspace the role may reach into.
    pub workspace_id: String,
    pub role_id: String,
    pub role_workspace_name: String,
    pub role_name: String,
    pub granted_by_user_id: String,
    pub granted_by: String,
    pub granted_at: Timestamp,
    /// Computed on read: whether the granting user still holds admin or owner there.
    pub in_force: bool,
}

/// A trust of a workload role (issue 13 §1) as stored; `claims` is the JSON object of
/// claim conditions. Never secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRow {
    pub id: String,
    pub role_id: String,
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    pub claims: String,
    pub max_session_seconds: i64,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// Who presents a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSubject {
    User(UserRow),
    Role(RoleRow),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub version: u32,
    pub check_value: Vec<u8>,
    pub created_at: Timestamp,
}

/// Which kind of sealed secret a master-key rotation re-wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedKind {
    /// A credential's secret, bound to the credential and its secret version.
    CredentialSecret,
    /// A webhook sync target's signing key, bound to the target (version 1).
    SyncSigningKey,
    /// A minted registry token, bound to its identity and issue time (no workspace).
    RegistryToken,
}

impl SealedKind {
    pub const ALL: [SealedKind; 3] = [
        SealedKind::CredentialSecret,
        SealedKind::SyncSigningKey,
        SealedKind::RegistryToken,
    ];

    /// The purpose its associated data names.
    pub const fn purpose(self) -> &'static str {
        match self {
            SealedKind::CredentialSecret => "credential-secret",
            SealedKind::SyncSigningKey => "sync-signing-key",
            SealedKind::RegistryToken => "registry-token",
        }
    }
}

/// What a master-key rotation needs of a sealed secret to re-wrap it.
#[derive(Debug, Clone)]
pub struct SealedRef {
    /// The credential, or the sync target, that the secret belongs to.
    pub owner_id: String,
    pub workspace_id: String,
    pub secret_version: i64,
    pub sealed: SealedSecret,
    /// What an operator knows it by, for reports: `credential rk:WS:credential/NAME`,
    /// `sync target ID of rk:WS:credential/NAME` or `token IDENTITY`. Never secret.
    pub label: String,
}

/// A minted registry token as stored: sealed like a secret, shared by every
/// credential with the same cloud identity, and by every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub identity: String,
    pub username: String,
    pub sealed: SealedSecret,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub refresh_at: Timestamp,
    /// Where the token stands; [`RegistryTokenStatus::Pending`] for a row that holds no
    /// token yet (its first mint is leased or failed).
    pub status: RegistryTokenStatus,
    pub failures: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One credential's minted token as the freshness metrics show it (issue 16): the
/// row of its shared identity, named by the credential. Never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFreshness {
    pub workspace: String,
    pub credential: String,
    pub status: RegistryTokenStatus,
    /// When the token now stored was minted: the last successful mint or refresh.
    /// `None` while none has succeeded (`pending`).
    pub last_success_at: Option<Timestamp>,
    /// `None` while pending, or for a token that does not expire.
    pub expires_at: Option<Timestamp>,
    /// Failed mints and refreshes since the row was created (migration 0016).
    pub refresh_failures_total: i64,
}

/// One sync target's last delivery, for the freshness metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTargetFreshness {
    pub workspace: String,
    pub credential: String,
    /// The target's id (a UUID: never a name or a destination).
    pub target: String,
    /// `file`, `kubernetes` or `webhook`.
    pub kind: String,
    pub status: String,
    /// `None` until the first successful push.
    pub last_success_at: Option<Timestamp>,
}

/// Up to a limit of rows, the ones that most need attention first, and how many there
/// are in all (so the metrics can say how many they left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited<T> {
    pub rows: Vec<T>,
    pub total: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries of this workspace; `None` for every entry.
    pub workspace_id: Option<String>,
    /// Entries with `seq` greater than this.
    pub after_seq: i64,
    pub limit: i64,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

/// A blob in the proxy's shared cache (`proxy::shared_cache`), as the database indexes
/// it: its size, and when a replica last served it (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBlobRow {
    pub digest: String,
    pub size: u64,
    pub last_used_at: Timestamp,
}

/// A new user with their personal workspace (of which they are owner) and, optionally,
/// their first API token.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: UserRow,
    pub workspace: WorkspaceRow,
    pub token: Option<ApiTokenRow>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> Result<()>;
    /// Writes a consistent snapshot of the whole database to `path`, a new or empty
    /// file, while the store goes on serving (SQLite's `VACUUM INTO`; sealed bytes and
    /// hashes only, like the database). PostgreSQL refuses with `Unprocessable`
    /// `backup_needs_pg_dump`: it is backed up with `pg_dump` ([`PG_DUMP_RECIPE`]).
    async fn snapshot_into(&self, path: &std::path::Path) -> Result<()>;

    async fn key_checks(&self) -> Result<Vec<KeyCheck>>;
    /// Inserts the check for a version unless one exists; returns the stored one.
    async fn ensure_key_check(&self, check: &KeyCheck) -> Result<KeyCheck>;
    /// Where the keyring lives, if the database records it (see `store::keyring`).
    async fn keyring_record(&self) -> Result<Option<KeyringRecord>>;
    /// Inserts the record unless one exists; the stored one.
    async fn insert_keyring_record(&self, record: &KeyringRecord) -> Result<KeyringRecord>;
    /// Replaces the record if its generation is still `expected_generation`, with the
    /// new current version's check in the same transaction (409 if another key holds
    /// that version).
    async fn replace_keyring(
        &self,
        expected_generation: i64,
        record: &KeyringRecord,
        new_check: Option<&KeyCheck>,
    ) -> Result<bool>;
    async fn key_migration(&self) -> Result<Option<KeyMigration>>;
    /// Records a staged migration with its new version's check; the stored check.
    async fn start_key_migration(
        &self,
        migration: &KeyMigration,
        check: &KeyCheck,
    ) -> Result<KeyCheck>;
    /// Replaces the record (compared with the generation) and marks the migration
    /// switched, at once.
    async fn switch_key_home(
        &self,
        expected_generation: i64,
        record: &KeyringRecord,
    ) -> Result<bool>;
    async fn finish_key_migration(&self) -> Result<()>;

    async fn count_users(&self) -> Result<i64>;
    /// Fails with `Conflict` if the user or workspace name is taken.
    async fn create_user(&self, new: &NewUser, audit: AuditRecord) -> Result<()>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>>;
    async fn list_users(&self) -> Result<Vec<UserRow>>;

    async fn insert_api_token(&self, token: &ApiTokenRow, audit: AuditRecord) -> Result<()>;
    /// The token and its user or role for a token hash, whatever its state (the caller
    /// checks expiry and revocation, so it can say which).
    async fn api_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ApiTokenRow, TokenSubject)>>;
    async fn touch_api_token(&self, token_id: &str, at: Timestamp) -> Result<()>;
    async fn list_api_tokens(&self, owner: &TokenOwner) -> Result<Vec<ApiTokenRow>>;
    /// Returns false if the owner has no such unrevoked token.
    async fn revoke_api_token(
        &self,
        owner: &TokenOwner,
        token_id: &str,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool>;

    /// Creates the workspace with `owner_id` as owner; `Conflict` if the name is taken.
    async fn create_workspace(
        &self,
        workspace: &WorkspaceRow,
        owner_id: &str,
        audit: AuditRecord,
    ) -> Result<()>;
    async fn workspace_by_name(&self, name: &str) -> Result<Option<WorkspaceRow>>;
    async fn role_of(&self, workspace_id: &str, user_id: &str) -> Result<Option<Role>>;
    async fn workspaces_of(&self, user_id: &str) -> Result<Vec<(WorkspaceRow, Role)>>;
    async fn put_member(
        &self,
        workspace_id: &str,
        user_id: &str,
        role: Role,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<()>;
    async fn remove_member(
        &self,
        workspace_id: &str,
        user_id: &str,
        audit: AuditRecord,
    ) -> Result<bool>;
    async fn members(&self, workspace_id: &str) -> Result<Vec<MemberRow>>;

    /// `Conflict` if the workspace already has a role of that name.
    async fn create_role(&self, role: &RoleRow, audit: AuditRecord) -> Result<()>;
    async fn role(&self, workspace_id: &str, name: &str) -> Result<Option<RoleRow>>;
    async fn roles(&self, workspace_id: &str) -> Result<Vec<RoleRow>>;
    /// Replaces the role with the same id if its revision is still `expected_revision`;
    /// `Conflict` otherwise.
    async fn update_role(
        &self,
        role: &RoleRow,
        expected_revision: i64,
        audit: AuditRecord,
    ) -> Result<()>;
    /// Deletes the role and, with it, every token issued to it.
    async fn delete_role(&self, role_id: &str, audit: AuditRecord) -> Result<bool>;

    /// `Conflict` if the workspace already has a credential of that name.
    async fn insert_credential(&self, credential: &Credential, audit: AuditRecord) -> Result<()>;
    async fn credential(&self, workspace_id: &str, name: &str) -> Result<Option<Credential>>;
    async fn credentials(&self, workspace_id: &str) -> Result<Vec<Credential>>;
    /// The credential that serves `repository` at `host` in the workspace: same host,
    /// the longest path prefix that covers the repository on whole components.
    async fn best_credential_for(
        &self,
        workspace_id: &str,
        host: &str,
        repository: &str,
    ) -> Result<Option<Credential>>;
    /// Replaces the stored credential with the same id if its revision is still
    /// `expected_revision`; `Conflict` otherwise (a concurrent update won).
    async fn update_credential(
        &self,
        credential: &Credential,
        expected_revision: i64,
        audit: AuditRecord,
    ) -> Result<()>;
    async fn delete_credential(&self, credential_id: &str, audit: AuditRecord) -> Result<bool>;

    /// Every sealed value of one kind whose owner id sorts after `after`, at most
    /// `limit`, in owner id order, whatever master key version wraps it (a rotation
    /// checks them all before it changes anything, then re-wraps them page by page).
    async fn sealed_page(
        &self,
        kind: SealedKind,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedRef>>;
    /// Swaps in a re-wrapped data key if the row still holds `old`; false otherwise.
    async fn replace_wrapped_key(
        &self,
        kind: SealedKind,
        owner_id: &str,
        old: &SealedSecret,
        new: &SealedSecret,
    ) -> Result<bool>;

    async fn registry_token(&self, identity: &str) -> Result<Option<StoredToken>>;
    /// Inserts or replaces a token. A lease on it stays: its holder's result, written
    /// later, is the newer one.
    async fn put_registry_token(&self, token: &StoredToken) -> Result<()>;
    /// Leases up to `limit` tokens due for an attempt (`next_attempt_at <= now`) that no
    /// live lease holds, to `owner` until `lease_until`: at most one replica refreshes
    /// a token at a time, and a dead replica's lease simply runs out.
    async fn claim_due_tokens(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<StoredToken>>;
    /// Leases the token of `placeholder.identity` to `owner` until `lease_until` for a
    /// mint on demand (a resolve that found no usable token), under the same rule as
    /// [`Store::claim_due_tokens`]: only if it is due (`next_attempt_at <= now`) and no
    /// live lease holds it, so across replicas one mint runs per identity and a failed
    /// one's backoff holds for everyone. A missing row is inserted as `placeholder` (a
    /// `pending` row: no token yet), leased. Returns the row as leased, or `None` when
    /// it is not the caller's to mint (another lease holds it, or it is not due).
    async fn claim_token_for_mint(
        &self,
        placeholder: &StoredToken,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Option<StoredToken>>;
    /// Leases the token of `identity` to `owner` for a mint on demand by a replica that
    /// cannot open the stored token (sealed under a master key version it lacks, or
    /// damaged): only while the row still holds the token issued at `issued_at` (a newer
    /// one may be readable), no live lease holds it, and no failed attempt's backoff is
    /// running (`failures = 0` or `next_attempt_at <= now`; a healthy token's refresh
    /// point is no reason to wait, as it cannot be served). Returns the row as leased.
    async fn claim_unreadable_token(
        &self,
        identity: &str,
        issued_at: Timestamp,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Option<StoredToken>>;
    /// Writes a refresh result if `owner` still holds the lease; false otherwise.
    async fn finish_registry_token(&self, token: &StoredToken, owner: &str) -> Result<bool>;
    async fn delete_registry_token(&self, identity: &str) -> Result<()>;
    /// How many tokens are in each state at `now` (an expired one counts as `expired`
    /// whatever its stored status), for the metrics.
    async fn token_status_counts(&self, now: Timestamp) -> Result<Vec<(RegistryTokenStatus, i64)>>;
    /// Credentials that use a minted token, with that token's freshness: up to `limit`,
    /// those whose token is failing first, then the soonest to expire, then by
    /// workspace and name.
    async fn credential_freshness(&self, limit: i64) -> Result<Limited<CredentialFreshness>>;
    /// Records which token a credential uses (`None` after its secret changed).
    async fn link_token_identity(&self, credential_id: &str, identity: Option<&str>) -> Result<()>;
    /// Any credential that uses the token (to mint it again).
    async fn credential_by_token_identity(&self, identity: &str) -> Result<Option<Credential>>;

    /// Appends an entry on its own (for outcomes with no other write).
    async fn append_audit(&self, audit: AuditRecord) -> Result<()>;
    /// Appends entries in order in one transaction, all or none, and returns the newest
    /// entry's sequence number and hash (`None` for no entries).
    async fn append_audits(&self, audits: Vec<AuditRecord>) -> Result<Option<(i64, String)>>;
    /// Appends entries chained after `previous` in one statement, without reading the
    /// chain first, when `previous` is still the newest entry and the backend allows
    /// it; `Ok(None)` when it wrote nothing (another entry came first, or the backend
    /// needs [`Store::append_audits`]). The sequence number's uniqueness is what keeps
    /// the chain linear.
    async fn append_audits_after(
        &self,
        audits: &[AuditRecord],
        previous: (i64, String),
    ) -> Result<Option<(i64, String)>>;
    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditRow>>;

    // ---- Cross-workspace grants (`store/roles.rs`) and user lifecycle (`store/identity.rs`)

    /// Records (or renews, with a new granter) a role's grant in a workspace.
    async fn put_role_grant(&self, grant: &RoleGrantRow, audit: AuditRecord) -> Result<()>;
    /// Deletes the role's grant in the workspace; false if there was none.
    async fn delete_role_grant(
        &self,
        workspace_id: &str,
        role_id: &str,
        audit: AuditRecord,
    ) -> Result<bool>;
    /// The grants recorded in a workspace, with whether each is in force.
    async fn role_grants(&self, workspace_id: &str) -> Result<Vec<RoleGrantRow>>;
    /// Whether the role holds a grant in force in the workspace: recorded there, by a
    /// user who still administers it and is not disabled.
    async fn role_grant_in_force(&self, workspace_id: &str, role_id: &str) -> Result<bool>;
    /// Every workload role of every workspace, to find those whose policy reaches a
    /// workspace (an administrative listing, never on a request's hot path).
    async fn all_roles(&self) -> Result<Vec<RoleRow>>;
    /// An API token by id, whoever owns it.
    async fn api_token_by_id(&self, token_id: &str) -> Result<Option<ApiTokenRow>>;
    /// The workload-role tokens `user_id` created, in any workspace, whatever their state.
    async fn role_tokens_created_by(&self, user_id: &str) -> Result<Vec<ApiTokenRow>>;
    /// Disables the user at `at`, revoking every unrevoked token of theirs, and every
    /// unrevoked role token they created, in the same transaction; false if no such
    /// enabled user.
    async fn disable_user(&self, user_id: &str, at: Timestamp, audit: AuditRecord) -> Result<bool>;
    /// Enables a disabled user and stores `token`, their new API token; false if no
    /// such disabled user.
    async fn enable_user(
        &self,
        user_id: &str,
        token: &ApiTokenRow,
        audit: AuditRecord,
    ) -> Result<bool>;
    /// Deletes the user, every token of theirs, their memberships, and their personal
    /// workspace with everything in it (credentials, roles and their tokens, sync
    /// targets, grants), and revokes at `at` the role tokens they created in other
    /// workspaces (kept, revoked, with no creator); false if no such user.
    async fn delete_user(
        &self,
        user_id: &str,
        personal_workspace_id: &str,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool>;
    // ---- end of grants and user lifecycle -----------------------------------------

    // ---- Sync targets (push delivery; SQL in `store/sync_targets.rs`) -------------
    // Reads join the credential (and its token), so every target comes with
    // `behind`: its credential's revision or token changed since the last delivery.

    /// Inserts a target with its audit entry; `lease` (owner, until) hands it to its
    /// creator's first push.
    async fn insert_sync_target(
        &self,
        target: &crate::domain::sync_target::SyncTarget,
        lease: Option<(&str, Timestamp)>,
        audit: AuditRecord,
    ) -> Result<()>;
    /// The credential's targets, oldest first.
    async fn sync_targets(
        &self,
        credential_id: &str,
    ) -> Result<Vec<crate::domain::sync_target::SyncTarget>>;
    /// Deletes one of the credential's targets with its audit entry; false if none.
    async fn delete_sync_target(
        &self,
        credential_id: &str,
        target_id: &str,
        audit: AuditRecord,
    ) -> Result<bool>;
    /// Leases up to `limit` targets that no live lease holds and that are due: a retry
    /// whose time has come (`next_attempt_at <= now`), or, with nothing scheduled, a
    /// target that is behind. Serialised like `claim_due_tokens`.
    async fn claim_due_sync_targets(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<crate::domain::sync_target::SyncTarget>>;
    /// Leases one target whatever its schedule (a push on request); `None` if it does
    /// not exist or another live lease holds it.
    async fn claim_sync_target(
        &self,
        target_id: &str,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Option<crate::domain::sync_target::SyncTarget>>;
    /// Writes a push result (status, failures, schedule, what was delivered) if `owner`
    /// still holds the lease, clearing it, with `audit` in the same transaction;
    /// false if the lease was lost (nothing written).
    async fn finish_sync_target(
        &self,
        target: &crate::domain::sync_target::SyncTarget,
        owner: &str,
        audit: Option<AuditRecord>,
    ) -> Result<bool>;
    /// How many targets are in each stored status, for the metrics.
    async fn sync_target_counts(&self) -> Result<Vec<(String, i64)>>;
    /// Sync targets with their last successful push: up to `limit`, failing ones
    /// first, then by workspace, credential and id.
    async fn sync_target_freshness(&self, limit: i64) -> Result<Limited<SyncTargetFreshness>>;
    // ---- end of sync targets --------------------------------------------------------

    // ---- Role trusts and exchanged tokens (SQL in `store/roles.rs`) -------------------
    /// Inserts a trust with its audit entry.
    async fn insert_trust(&self, trust: &TrustRow, audit: AuditRecord) -> Result<()>;
    /// The role's trusts, oldest first.
    async fn trusts(&self, role_id: &str) -> Result<Vec<TrustRow>>;
    /// Deletes one of the role's trusts, and every token exchanged under it, with its
    /// audit entry; false if the role has no such trust (nothing written).
    async fn delete_trust(&self, role_id: &str, trust_id: &str, audit: AuditRecord)
        -> Result<bool>;
    /// Inserts a role's token issued by an exchange under `trust_id`, with its audit
    /// entry. A token with the same hash conflicts (`token_exists`).
    async fn insert_exchanged_token(
        &self,
        token: &ApiTokenRow,
        trust_id: &str,
        audit: AuditRecord,
    ) -> Result<()>;
    /// Deletes up to `limit` exchanged tokens that expired before `now`; how many.
    async fn prune_exchanged_tokens(&self, now: Timestamp, limit: i64) -> Result<u64>;
    // ---- end of role trusts ----------------------------------------------------------

    // ---- What replicas share of the proxy and console (`store/shared_state.rs`) ------
    /// Records that the upstream confirmed the grant `grant_key` at `at` (a later
    /// confirmation already recorded stays).
    async fn record_proxy_grant(&self, grant_key: &str, at: Timestamp) -> Result<()>;
    /// When the upstream last confirmed the grant `grant_key`, if it ever did.
    async fn proxy_grant(&self, grant_key: &str) -> Result<Option<Timestamp>>;
    /// Deletes grants confirmed before `before`; how many.
    async fn prune_proxy_grants(&self, before: Timestamp) -> Result<u64>;
    /// The shared cache's row for `digest`, if it holds the blob.
    async fn cached_blob(&self, digest: &str) -> Result<Option<CachedBlobRow>>;
    /// Indexes a blob just stored in the shared cache, as used at `at`.
    async fn put_cached_blob(&self, digest: &str, size: u64, at: Timestamp) -> Result<()>;
    /// Moves a cached blob's last use forward to `at`.
    async fn touch_cached_blob(&self, digest: &str, at: Timestamp) -> Result<()>;
    /// Deletes a cached blob's row — only if its last use is still `last_used_at`, when
    /// given (an eviction must not remove a blob used since it chose it); whether it did.
    async fn delete_cached_blob(
        &self,
        digest: &str,
        last_used_at: Option<Timestamp>,
    ) -> Result<bool>;
    /// How many blobs the shared cache indexes, and their total size in bytes.
    async fn cached_blob_totals(&self) -> Result<(i64, i64)>;
    /// Up to `limit` cached blobs, least recently used first.
    async fn least_recently_used_blobs(&self, limit: i64) -> Result<Vec<CachedBlobRow>>;
    /// Takes (or renews) the lease of the job `name` for `owner` until `until`, unless
    /// another owner's lease is still live at `now`; whether `owner` holds it now.
    async fn claim_job_lease(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;
    /// Records a console sign-out (the session id, hex) until the session's expiry, and
    /// prunes those expired at `now`. On PostgreSQL a trigger announces it.
    async fn record_sign_out(
        &self,
        session_id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()>;
    /// The sign-outs of sessions that have not expired at `now`, with their expiry.
    async fn sign_outs(&self, now: Timestamp) -> Result<Vec<(String, Timestamp)>>;
    // ---- end of shared proxy and console state -----------------------------------
}

pub type SharedStore = Arc<dyn Store>;

/// How a PostgreSQL-backed regkeeper is backed up and restored: the database's own
/// tools, in their custom format. Shown by `regkeeper backup` and the README.
pub const PG_DUMP_RECIPE: &str = "\
pg_dump --format=custom --file=regkeeper.pgdump \"$REGKEEPER_DATABASE_URL\"
# restore, into a new empty database, with every replica stopped:
pg_restore --no-owner --exit-on-error --dbname=\"$NEW_DATABASE_URL\" regkeeper.pgdump";

pub fn backup_needs_pg_dump() -> crate::domain::Error {
    crate::domain::Error::unprocessable(
        "backup_needs_pg_dump",
        "this server's database is PostgreSQL: back it up with pg_dump --format=custom \
         (regkeeper backup prints the commands; README, \"Backup and restore\"); \
         regkeeper backup copies SQLite databases only",
    )
}

/// A committed change, announced by the database, to what the service caches; see
/// [`watch_changes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Users, API tokens, workload roles, workspaces or memberships.
    Identities,
    /// Credentials.
    Credentials,
    /// A console session was signed out (its 16-byte id); nothing cached to forget.
    SignOut([u8; 16]),
    /// Announcements may have been missed (the listener connected, reconnected or lost
    /// its connection): forget everything.
    Everything,
}

/// Called with each [`Change`]; must not block.
pub type ChangeSink = Arc<dyn Fn(Change) + Send + Sync>;

/// Tells `on_change` about every change any process commits to the database at `url`
/// (this one's included), for as long as the returned task runs: PostgreSQL
/// LISTEN/NOTIFY, fed by triggers. `None` for SQLite, which one process owns, so every
/// change is already this process's own.
pub async fn watch_changes(
    url: &secrecy::SecretString,
    on_change: ChangeSink,
) -> Option<tokio::task::JoinHandle<()>> {
    use secrecy::ExposeSecret;
    let scheme = url
        .expose_secret()
        .split_once("://")
        .map(|(scheme, _)| scheme);
    if matches!(scheme, Some("postgres" | "postgresql")) {
        Some(postgres::watch_changes(url.clone(), on_change).await)
    } else {
        None
    }
}

/// A failed migration at start, with the way out when the database is newer than
/// this binary: sqlx refuses a database with an applied migration it does not know
/// (the usual cause is an older binary started after an upgrade), and changes nothing.
fn migration_error(error: sqlx::migrate::MigrateError) -> anyhow::Error {
    match error {
        sqlx::migrate::MigrateError::VersionMissing(version) => anyhow::anyhow!(
            "the database has migration {version}, which this regkeeper ({}) does not know: \
             it was upgraded by a newer release. Run that release, or roll back by restoring \
             the backup taken before the upgrade (README, \"Upgrades\")",
            regkeeper_client::VERSION
        ),
        other => anyhow::Error::new(other).context("migrating the database"),
    }
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://…`, and migrates it.
pub async fn connect(url: &str) -> anyhow::Result<SharedStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(
            sqlite::SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    } else {
        anyhow::bail!("unsupported database URL scheme: use sqlite://PATH or postgres://HOST/DB")
    }
}
