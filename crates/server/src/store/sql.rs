//! The one implementation of [`Store`]: [`SqlStore`], generic over the database
//! ([`Backend`]: SQLite or PostgreSQL), whose methods hand each call to the module of
//! its aggregate, where the statements are. `sqlite.rs` and `postgres.rs` open the
//! pools and say how a write transaction is serialised.

use async_trait::async_trait;
use sqlx::{Database, Pool};

use super::backend::{Backend, RowsAffected as _};
use super::errors::OrDatabase;
use super::{
    audit_log, credentials, identity, keyring, keys, registry_tokens, roles, shared_state,
    sync_targets, ApiTokenRow, AuditQuery, CachedBlobRow, CredentialFreshness, KeyCheck,
    KeyMigration, KeyringRecord, Limited, MemberRow, NewUser, RoleGrantRow, RoleRow, SealedKind,
    SealedRef, Store, StoredToken, SyncTargetFreshness, TokenOwner, TokenSubject, TrustRow,
    UserRow, WorkspaceRow,
};
use crate::audit::{AuditRecord, AuditRow};
use crate::domain::credential::{Credential, SealedSecret, Timestamp};
use crate::domain::identity::Role;
use crate::domain::registry_token::RegistryTokenStatus;
use crate::domain::sync_target::SyncTarget;
use crate::domain::Result;

/// A write transaction, serialised against every other writer by [`Backend::begin_write`].
pub(super) type Transaction<DB> = sqlx::Transaction<'static, DB>;

/// The store over one database: reads, and the few writes that need no transaction, go
/// to `pool`; write transactions begin on `writer`. For SQLite `writer` is a pool of
/// its own with one connection, so this process's writers queue for it in order; for
/// PostgreSQL it is `pool` again.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    pub(super) writer: Pool<DB>,
}

impl<DB: Backend> SqlStore<DB> {
    pub(super) fn new(pool: Pool<DB>, writer: Pool<DB>) -> Self {
        Self { pool, writer }
    }

    pub(super) async fn begin_write(&self) -> Result<Transaction<DB>> {
        DB::begin_write(&self.writer).await
    }
}

pub(super) async fn commit<DB: Backend>(transaction: Transaction<DB>) -> Result<()> {
    transaction.commit().await.or_db()
}

/// Runs `query` in a write transaction of its own; how many rows it changed.
pub(super) async fn execute_alone<'q, DB: Backend>(
    store: &SqlStore<DB>,
    query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
) -> Result<u64> {
    let mut transaction = store.begin_write().await?;
    let changed = query
        .execute(&mut *transaction)
        .await
        .or_db()?
        .rows_affected();
    commit(transaction).await?;
    Ok(changed)
}

/// Runs `statement` inside `transaction` with `keys` bound to `$1`, `$2`, … in order;
/// how many rows it changed.
pub(super) async fn execute_in<DB: Backend>(
    transaction: &mut Transaction<DB>,
    statement: &str,
    keys: &[&str],
) -> Result<u64> {
    let mut query = sqlx::query(statement);
    for key in keys {
        query = query.bind(*key);
    }
    Ok(query
        .execute(&mut **transaction)
        .await
        .or_db()?
        .rows_affected())
}

/// Whether a connection coming back to its pool may be handed out again. One that is
/// still inside a transaction is closed instead (which rolls the transaction back):
/// sqlx 0.8 starts a transaction and only then builds the object that would roll it
/// back, so a request cancelled between the two (its client hung up) returns a
/// connection holding the write lock, and every later write would wait on it or fail
/// with "begin at non-zero transaction depth".
pub(super) fn reusable<C: sqlx::Connection>(connection: &C) -> bool {
    let reusable = !connection.is_in_transaction();
    if !reusable {
        tracing::info!("store.connection_closed_in_transaction");
    }
    reusable
}

#[async_trait]
impl<DB: Backend> Store for SqlStore<DB> {
    fn backend(&self) -> &'static str {
        DB::LABEL
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.or_db()?;
        Ok(())
    }

    async fn snapshot_into(&self, path: &std::path::Path) -> Result<()> {
        DB::snapshot_into(&self.pool, path).await
    }

    async fn key_checks(&self) -> Result<Vec<KeyCheck>> {
        keys::key_checks(self).await
    }

    async fn ensure_key_check(&self, check: &KeyCheck) -> Result<KeyCheck> {
        keys::ensure_key_check(self, check).await
    }

    async fn keyring_record(&self) -> Result<Option<KeyringRecord>> {
        keyring::keyring_record(self).await
    }

    async fn insert_keyring_record(&self, record: &KeyringRecord) -> Result<KeyringRecord> {
        keyring::insert_keyring_record(self, record).await
    }

    async fn replace_keyring(
        &self,
        expected_generation: i64,
        record: &KeyringRecord,
        new_check: Option<&KeyCheck>,
    ) -> Result<bool> {
        keyring::replace_keyring(self, expected_generation, record, new_check).await
    }

    async fn key_migration(&self) -> Result<Option<KeyMigration>> {
        keyring::key_migration(self).await
    }

    async fn start_key_migration(
        &self,
        migration: &KeyMigration,
        check: &KeyCheck,
    ) -> Result<KeyCheck> {
        keyring::start_key_migration(self, migration, check).await
    }

    async fn switch_key_home(
        &self,
        expected_generation: i64,
        record: &KeyringRecord,
    ) -> Result<bool> {
        keyring::switch_key_home(self, expected_generation, record).await
    }

    async fn finish_key_migration(&self) -> Result<()> {
        keyring::finish_key_migration(self).await
    }

    async fn count_users(&self) -> Result<i64> {
        identity::count_users(self).await
    }

    async fn create_user(&self, new: &NewUser, audit: AuditRecord) -> Result<()> {
        identity::create_user(self, new, audit).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        identity::user_by_name(self, name).await
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        identity::list_users(self).await
    }

    async fn insert_api_token(&self, token: &ApiTokenRow, audit: AuditRecord) -> Result<()> {
        identity::insert_api_token(self, token, audit).await
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ApiTokenRow, TokenSubject)>> {
        identity::api_token_by_hash(self, token_hash).await
    }

    async fn touch_api_token(&self, token_id: &str, at: Timestamp) -> Result<()> {
        identity::touch_api_token(self, token_id, at).await
    }

    async fn list_api_tokens(&self, owner: &TokenOwner) -> Result<Vec<ApiTokenRow>> {
        identity::list_api_tokens(self, owner).await
    }

    async fn revoke_api_token(
        &self,
        owner: &TokenOwner,
        token_id: &str,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool> {
        identity::revoke_api_token(self, owner, token_id, at, audit).await
    }

    async fn create_workspace(
        &self,
        workspace: &WorkspaceRow,
        owner_id: &str,
        audit: AuditRecord,
    ) -> Result<()> {
        identity::create_workspace(self, workspace, owner_id, audit).await
    }

    async fn workspace_by_name(&self, name: &str) -> Result<Option<WorkspaceRow>> {
        identity::workspace_by_name(self, name).await
    }

    async fn role_of(&self, workspace_id: &str, user_id: &str) -> Result<Option<Role>> {
        identity::role_of(self, workspace_id, user_id).await
    }

    async fn workspaces_of(&self, user_id: &str) -> Result<Vec<(WorkspaceRow, Role)>> {
        identity::workspaces_of(self, user_id).await
    }

    async fn put_member(
        &self,
        workspace_id: &str,
        user_id: &str,
        role: Role,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<()> {
        identity::put_member(self, workspace_id, user_id, role, at, audit).await
    }

    async fn remove_member(
        &self,
        workspace_id: &str,
        user_id: &str,
        audit: AuditRecord,
    ) -> Result<bool> {
        identity::remove_member(self, workspace_id, user_id, audit).await
    }

    async fn members(&self, workspace_id: &str) -> Result<Vec<MemberRow>> {
        identity::members(self, workspace_id).await
    }

    async fn create_role(&self, role: &RoleRow, audit: AuditRecord) -> Result<()> {
        roles::create_role(self, role, audit).await
    }

    async fn role(&self, workspace_id: &str, name: &str) -> Result<Option<RoleRow>> {
        roles::role(self, workspace_id, name).await
    }

    async fn roles(&self, workspace_id: &str) -> Result<Vec<RoleRow>> {
        roles::roles(self, workspace_id).await
    }

    async fn update_role(
        &self,
        role: &RoleRow,
        expected_revision: i64,
        audit: AuditRecord,
    ) -> Result<()> {
        roles::update_role(self, role, expected_revision, audit).await
    }

    async fn delete_role(&self, role_id: &str, audit: AuditRecord) -> Result<bool> {
        roles::delete_role(self, role_id, audit).await
    }

    async fn insert_credential(&self, credential: &Credential, audit: AuditRecord) -> Result<()> {
        credentials::insert_credential(self, credential, audit).await
    }

    async fn credential(&self, workspace_id: &str, name: &str) -> Result<Option<Credential>> {
        credentials::credential(self, workspace_id, name).await
    }

    async fn credentials(&self, workspace_id: &str) -> Result<Vec<Credential>> {
        credentials::credentials(self, workspace_id).await
    }

    async fn best_credential_for(
        &self,
        workspace_id: &str,
        host: &str,
        repository: &str,
    ) -> Result<Option<Credential>> {
        credentials::best_credential_for(self, workspace_id, host, repository).await
    }

    async fn update_credential(
        &self,
        credential: &Credential,
        expected_revision: i64,
        audit: AuditRecord,
    ) -> Result<()> {
        credentials::update_credential(self, credential, expected_revision, audit).await
    }

    async fn delete_credential(&self, credential_id: &str, audit: AuditRecord) -> Result<bool> {
        credentials::delete_credential(self, credential_id, audit).await
    }

    async fn sealed_page(
        &self,
        kind: SealedKind,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedRef>> {
        keys::sealed_page(self, kind, after, limit).await
    }

    async fn replace_wrapped_key(
        &self,
        kind: SealedKind,
        owner_id: &str,
        old: &SealedSecret,
        new: &SealedSecret,
    ) -> Result<bool> {
        keys::replace_wrapped_key(self, kind, owner_id, old, new).await
    }

    async fn registry_token(&self, identity: &str) -> Result<Option<StoredToken>> {
        registry_tokens::registry_token(self, identity).await
    }

    async fn put_registry_token(&self, token: &StoredToken) -> Result<()> {
        registry_tokens::put_registry_token(self, token).await
    }

    async fn claim_due_tokens(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<StoredToken>> {
        registry_tokens::claim_due_tokens(self, now, owner, lease_until, limit).await
    }

    async fn claim_token_for_mint(
        &self,
        placeholder: &StoredToken,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Option<StoredToken>> {
        registry_tokens::claim_token_for_mint(self, placeholder, now, owner, lease_until).await
    }

    async fn claim_unreadable_token(
        &self,
        identity: &str,
        issued_at: Timestamp,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Option<StoredToken>> {
        registry_tokens::claim_unreadable_token(self, identity, issued_at, now, owner, lease_until)
            .await
    }

    async fn finish_registry_token(&self, token: &StoredToken, owner: &str) -> Result<bool> {
        registry_tokens::finish_registry_token(self, token, owner).await
    }

    async fn delete_registry_token(&self, identity: &str) -> Result<()> {
        registry_tokens::delete_registry_token(self, identity).await
    }

    async fn token_status_counts(&self, now: Timestamp) -> Result<Vec<(RegistryTokenStatus, i64)>> {
        registry_tokens::token_status_counts(self, now).await
    }

    async fn credential_freshness(&self, limit: i64) -> Result<Limited<CredentialFreshness>> {
        registry_tokens::credential_freshness(self, limit).await
    }

    async fn link_token_identity(&self, credential_id: &str, identity: Option<&str>) -> Result<()> {
        credentials::link_token_identity(self, credential_id, identity).await
    }

    async fn credential_by_token_identity(&self, identity: &str) -> Result<Option<Credential>> {
        credentials::credential_by_token_identity(self, identity).await
    }

    async fn append_audit(&self, audit: AuditRecord) -> Result<()> {
        audit_log::append_audit(self, audit).await
    }

    async fn append_audits(&self, audits: Vec<AuditRecord>) -> Result<Option<(i64, String)>> {
        audit_log::append_audits(self, audits).await
    }

    async fn append_audits_after(
        &self,
        audits: &[AuditRecord],
        previous: (i64, String),
    ) -> Result<Option<(i64, String)>> {
        audit_log::append_audits_after(self, audits, previous).await
    }

    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        audit_log::audit_entries(self, query).await
    }

    async fn put_role_grant(&self, grant: &RoleGrantRow, audit: AuditRecord) -> Result<()> {
        roles::put_role_grant(self, grant, audit).await
    }

    async fn delete_role_grant(
        &self,
        workspace_id: &str,
        role_id: &str,
        audit: AuditRecord,
    ) -> Result<bool> {
        roles::delete_role_grant(self, workspace_id, role_id, audit).await
    }

    async fn role_grants(&self, workspace_id: &str) -> Result<Vec<RoleGrantRow>> {
        roles::role_grants(self, workspace_id).await
    }

    async fn role_grant_in_force(&self, workspace_id: &str, role_id: &str) -> Result<bool> {
        roles::role_grant_in_force(self, workspace_id, role_id).await
    }

    async fn all_roles(&self) -> Result<Vec<RoleRow>> {
        roles::all_roles(self).await
    }

    async fn api_token_by_id(&self, token_id: &str) -> Result<Option<ApiTokenRow>> {
        identity::api_token_by_id(self, token_id).await
    }

    async fn role_tokens_created_by(&self, user_id: &str) -> Result<Vec<ApiTokenRow>> {
        identity::role_tokens_created_by(self, user_id).await
    }

    async fn disable_user(&self, user_id: &str, at: Timestamp, audit: AuditRecord) -> Result<bool> {
        identity::disable_user(self, user_id, at, audit).await
    }

    async fn enable_user(
        &self,
        user_id: &str,
        token: &ApiTokenRow,
        audit: AuditRecord,
    ) -> Result<bool> {
        identity::enable_user(self, user_id, token, audit).await
    }

    async fn delete_user(
        &self,
        user_id: &str,
        personal_workspace_id: &str,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool> {
        identity::delete_user(self, user_id, personal_workspace_id, at, audit).await
    }

    async fn insert_sync_target(
        &self,
        target: &SyncTarget,
        lease: Option<(&str, Timestamp)>,
        audit: AuditRecord,
    ) -> Result<()> {
        sync_targets::insert_sync_target(self, target, lease, audit).await
    }

    async fn sync_targets(&self, credential_id: &str) -> Result<Vec<SyncTarget>> {
        sync_targets::sync_targets(self, credential_id).await
    }

    async fn delete_sync_target(
        &self,
        credential_id: &str,
        target_id: &str,
        audit: AuditRecord,
    ) -> Result<bool> {
        sync_targets::delete_sync_target(self, credential_id, target_id, audit).await
    }

    async fn claim_due_sync_targets(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<SyncTarget>> {
        sync_targets::claim_due_sync_targets(self, now, owner, lease_until, limit).await
    }

    async fn claim_sync_target(
        &self,
        target_id: &str,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Option<SyncTarget>> {
        sync_targets::claim_sync_target(self, target_id, now, owner, lease_until).await
    }

    async fn finish_sync_target(
        &self,
        target: &SyncTarget,
        owner: &str,
        audit: Option<AuditRecord>,
    ) -> Result<bool> {
        sync_targets::finish_sync_target(self, target, owner, audit).await
    }

    async fn sync_target_counts(&self) -> Result<Vec<(String, i64)>> {
        sync_targets::sync_target_counts(self).await
    }

    async fn sync_target_freshness(&self, limit: i64) -> Result<Limited<SyncTargetFreshness>> {
        sync_targets::sync_target_freshness(self, limit).await
    }

    async fn insert_trust(&self, trust: &TrustRow, audit: AuditRecord) -> Result<()> {
        roles::insert_trust(self, trust, audit).await
    }

    async fn trusts(&self, role_id: &str) -> Result<Vec<TrustRow>> {
        roles::trusts(self, role_id).await
    }

    async fn delete_trust(
        &self,
        role_id: &str,
        trust_id: &str,
        audit: AuditRecord,
    ) -> Result<bool> {
        roles::delete_trust(self, role_id, trust_id, audit).await
    }

    async fn insert_exchanged_token(
        &self,
        token: &ApiTokenRow,
        trust_id: &str,
        audit: AuditRecord,
    ) -> Result<()> {
        roles::insert_exchanged_token(self, token, trust_id, audit).await
    }

    async fn prune_exchanged_tokens(&self, now: Timestamp, limit: i64) -> Result<u64> {
        roles::prune_exchanged_tokens(self, now, limit).await
    }

    async fn record_proxy_grant(&self, grant_key: &str, at: Timestamp) -> Result<()> {
        shared_state::record_proxy_grant(self, grant_key, at).await
    }

    async fn proxy_grant(&self, grant_key: &str) -> Result<Option<Timestamp>> {
        shared_state::proxy_grant(self, grant_key).await
    }

    async fn prune_proxy_grants(&self, before: Timestamp) -> Result<u64> {
        shared_state::prune_proxy_grants(self, before).await
    }

    async fn cached_blob(&self, digest: &str) -> Result<Option<CachedBlobRow>> {
        shared_state::cached_blob(self, digest).await
    }

    async fn put_cached_blob(&self, digest: &str, size: u64, at: Timestamp) -> Result<()> {
        shared_state::put_cached_blob(self, digest, size, at).await
    }

    async fn touch_cached_blob(&self, digest: &str, at: Timestamp) -> Result<()> {
        shared_state::touch_cached_blob(self, digest, at).await
    }

    async fn delete_cached_blob(
        &self,
        digest: &str,
        last_used_at: Option<Timestamp>,
    ) -> Result<bool> {
        shared_state::delete_cached_blob(self, digest, last_used_at).await
    }

    async fn cached_blob_totals(&self) -> Result<(i64, i64)> {
        shared_state::cached_blob_totals(self).await
    }

    async fn least_recently_used_blobs(&self, limit: i64) -> Result<Vec<CachedBlobRow>> {
        shared_state::least_recently_used_blobs(self, limit).await
    }

    async fn claim_job_lease(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        shared_state::claim_job_lease(self, name, owner, now, until).await
    }

    async fn record_sign_out(
        &self,
        session_id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        shared_state::record_sign_out(self, session_id, expires_at, now).await
    }

    async fn sign_outs(&self, now: Timestamp) -> Result<Vec<(String, Timestamp)>> {
        shared_state::sign_outs(self, now).await
    }
}
