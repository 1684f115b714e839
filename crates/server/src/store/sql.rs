//! The SQL both backends share. SQLite and PostgreSQL speak the same subset here
//! (`$N` parameters, `ON CONFLICT`, `RETURNING`-free statements), so the statements
//! are written once in a macro that each backend instantiates with its own pool type
//! and its own way of starting a serialised write transaction. sqlx's `Any` driver was
//! the alternative; it loses type information (bools, blobs) that both drivers keep.

use serde::{Deserialize, Serialize};

use crate::domain::credential::CredentialSettings;
use crate::domain::Error;

/// Type-specific settings as stored in the `settings` column (JSON text).
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ambient: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    azure_tenant_id: Option<String>,
}

pub(super) fn settings_to_text(settings: &CredentialSettings) -> String {
    serde_json::to_string(&StoredSettings {
        role_arn: settings.role_arn.clone(),
        external_id: settings.external_id.clone(),
        ambient: settings.ambient,
        aws_region: settings.aws_region.clone(),
        azure_tenant_id: settings.azure_tenant_id.clone(),
    })
    .expect("settings serialize")
}

pub(super) fn settings_from_text(text: &str) -> Result<CredentialSettings, Error> {
    let stored: StoredSettings = serde_json::from_str(text)
        .map_err(|error| Error::internal(format!("stored credential settings: {error}")))?;
    Ok(CredentialSettings {
        role_arn: stored.role_arn,
        external_id: stored.external_id,
        ambient: stored.ambient,
        aws_region: stored.aws_region,
        azure_tenant_id: stored.azure_tenant_id,
    })
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

/// Turns a database error into ours. The database being out of reach (refused or
/// dropped connections, a pool that waited in vain, a PostgreSQL shutting down or
/// starting up) and a full disk are conditions that pass without anyone changing
/// regkeeper, so they are `Unavailable` (503 with `Retry-After`), not internal errors;
/// their detail goes to the debug log, since the client message must not carry it.
pub(super) fn database_error(error: sqlx::Error) -> Error {
    match unavailability(&error) {
        Some((code, message)) => {
            tracing::debug!(error.detail = %error, error.code = code, "store.database_unavailable");
            Error::unavailable(code, message)
        }
        None => Error::internal(format!("database: {error}")),
    }
}

/// A failed audit insert: "try again later" when the database is unreachable or full
/// (so the action answers 503, not 500), else an internal error saying what failed.
pub(super) fn audit_write_error(error: sqlx::Error) -> Error {
    match database_error(error) {
        Error::Internal(detail) => Error::Internal(detail.context("audit log write failed")),
        other => other,
    }
}

/// The code and client message for errors that mean "try again later".
fn unavailability(error: &sqlx::Error) -> Option<(&'static str, &'static str)> {
    const UNREACHABLE: (&str, &str) = (
        super::STORE_UNAVAILABLE_CODES[0],
        "the database is unavailable; try again shortly",
    );
    const FULL: (&str, &str) = (
        super::STORE_UNAVAILABLE_CODES[1],
        "the database's disk is full; nothing was stored (an operator must free space)",
    );
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(UNREACHABLE),
        sqlx::Error::Database(database) => {
            let code = database.code()?;
            match code.as_ref() {
                // SQLite's SQLITE_FULL; PostgreSQL's disk_full.
                "13" | "53100" => Some(FULL),
                sqlstate if refusing(sqlstate, database.message()) => Some(UNREACHABLE),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether a PostgreSQL SQLSTATE says the database is there but will not serve us for
/// now — an operator or a fail-over will change that, not a different request:
/// connection exceptions (class 08), too many connections (53300), administrator or
/// crash shutdown and "cannot connect now" (57P01–57P03), a read-only transaction on a
/// standby or a database set read-only (25006), and a database that is not accepting
/// connections (`ALTER DATABASE … ALLOW_CONNECTIONS false`, 55000 with that message;
/// other 55000s are bugs of ours).
fn refusing(sqlstate: &str, message: &str) -> bool {
    match sqlstate {
        "53300" | "57P01" | "57P02" | "57P03" | "25006" => true,
        "55000" => message.contains("not currently accepting connections"),
        sqlstate => sqlstate.starts_with("08"),
    }
}

/// Every sealed value of one kind as the same columns (`id`, `workspace_id`,
/// `secret_version`, the sealed secret's three, and `label`), for the rotation's reads.
/// Placeholder token rows (`pending`) hold nothing sealed.
pub(super) fn sealed_select(kind: crate::store::SealedKind) -> &'static str {
    use crate::store::SealedKind;
    match kind {
        SealedKind::CredentialSecret => {
            "SELECT c.id AS id, c.workspace_id AS workspace_id, c.secret_version AS secret_version, \
             c.secret_ciphertext AS secret_ciphertext, c.secret_wrapped_key AS secret_wrapped_key, \
             c.secret_key_version AS secret_key_version, \
             'credential rk:' || w.name || ':credential/' || c.name AS label \
             FROM credentials c JOIN workspaces w ON w.id = c.workspace_id \
             WHERE c.secret_key_version IS NOT NULL"
        }
        SealedKind::SyncSigningKey => {
            "SELECT t.id AS id, c.workspace_id AS workspace_id, CAST(1 AS BIGINT) AS secret_version, \
             t.secret_ciphertext AS secret_ciphertext, t.secret_wrapped_key AS secret_wrapped_key, \
             t.secret_key_version AS secret_key_version, \
             'sync target ' || t.id || ' of rk:' || w.name || ':credential/' || c.name AS label \
             FROM sync_targets t JOIN credentials c ON c.id = t.credential_id \
             JOIN workspaces w ON w.id = c.workspace_id WHERE t.secret_key_version IS NOT NULL"
        }
        SealedKind::RegistryToken => {
            "SELECT identity AS id, CAST('' AS TEXT) AS workspace_id, issued_at AS secret_version, \
             token_ciphertext AS secret_ciphertext, token_wrapped_key AS secret_wrapped_key, \
             token_key_version AS secret_key_version, 'token ' || identity AS label \
             FROM registry_tokens WHERE status <> 'pending'"
        }
    }
}

pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

/// The path prefixes that cover `repository` on whole components, shortest first: `""`,
/// `a`, `a/b`, … up to the repository itself.
pub(super) fn covering_prefixes(repository: &str) -> Vec<&str> {
    let repository = repository.trim_matches('/');
    let mut prefixes = vec![""];
    if !repository.is_empty() {
        prefixes.extend(
            repository
                .match_indices('/')
                .map(|(index, _)| &repository[..index]),
        );
        prefixes.push(repository);
    }
    prefixes
}

pub(super) const CREDENTIAL_COLUMNS: &str = "c.id, c.workspace_id, w.name AS workspace_name, \
    c.name, c.kind, c.auth_method, c.registry_host, c.path_prefix, c.username, c.settings, \
    c.secret_ciphertext, c.secret_wrapped_key, c.secret_key_version, c.secret_version, \
    c.revision, c.created_at, c.updated_at, c.created_by, c.origin, c.verify_status, \
    c.verify_message, c.verified_at, t.status AS token_status, t.expires_at AS token_expires_at, \
    t.refresh_at AS token_refresh_at, t.last_error AS token_last_error";

/// The credential tables as the credential queries read them.
pub(super) const CREDENTIAL_FROM: &str =
    "credentials c JOIN workspaces w ON w.id = c.workspace_id \
    LEFT JOIN registry_tokens t ON t.identity = c.token_identity";

pub(super) const TOKEN_COLUMNS: &str = "identity, username, token_ciphertext, token_wrapped_key, \
    token_key_version, issued_at, expires_at, refresh_at, status, failures, last_error, \
    next_attempt_at, updated_at";

/// Implements [`super::Store`] for `$store`, whose `pool` field is a `$pool` and which
/// has `async fn begin_write(&self) -> Result<Transaction<'static, $database>>`.
macro_rules! impl_store {
    ($store:ty, $database:ty, $backend:literal) => {
        use async_trait::async_trait;
        use sqlx::Row as _;

        use crate::audit::{AuditRecord, AuditRow};
        use crate::domain::credential::{
            AuthMethod, Credential, CredentialKind, CredentialOrigin, SealedSecret, Timestamp, Verification,
            VerificationStatus,
        };
        use crate::domain::identity::{Role, WorkspaceKind};
        use crate::domain::{Error, Result};
        use crate::store::sql::{
            audit_write_error, covering_prefixes, database_error, is_unique_violation, sealed_select, settings_from_text,
            settings_to_text,
            CREDENTIAL_COLUMNS, CREDENTIAL_FROM, TOKEN_COLUMNS,
        };
        use crate::store::{
            ApiTokenRow, AuditQuery, KeyCheck, MemberRow, NewUser, RoleRow, SealedKind, SealedRef, Store,
            StoredToken, TokenOwner, TokenSubject, UserRow, WorkspaceRow,
        };
        use crate::domain::credential::TokenState;

        type Row = <$database as sqlx::Database>::Row;
        type Transaction = sqlx::Transaction<'static, $database>;

        fn user_from(row: &Row) -> Result<UserRow> {
            Ok(UserRow {
                id: row.try_get("id").map_err(database_error)?,
                name: row.try_get("name").map_err(database_error)?,
                admin: row.try_get("is_admin").map_err(database_error)?,
                created_at: row.try_get("created_at").map_err(database_error)?,
                disabled_at: row.try_get("disabled_at").map_err(database_error)?,
            })
        }

        fn workspace_from(row: &Row) -> Result<WorkspaceRow> {
            let kind: String = row.try_get("kind").map_err(database_error)?;
            Ok(WorkspaceRow {
                id: row.try_get("id").map_err(database_error)?,
                name: row.try_get("name").map_err(database_error)?,
                kind: WorkspaceKind::parse(&kind)?,
                created_at: row.try_get("created_at").map_err(database_error)?,
            })
        }

        fn role_from(row: &Row) -> Result<Role> {
            let role: String = row.try_get("role").map_err(database_error)?;
            role.parse()
                .map_err(|_| Error::internal(format!("stored role {role} is unknown")))
        }

        fn api_token_from(row: &Row) -> Result<ApiTokenRow> {
            let user_id: Option<String> = row.try_get("user_id").map_err(database_error)?;
            let role_id: Option<String> = row.try_get("role_id").map_err(database_error)?;
            let owner = match (user_id, role_id) {
                (Some(user_id), None) => TokenOwner::User(user_id),
                (None, Some(role_id)) => TokenOwner::Role(role_id),
                _ => return Err(Error::internal("an API token has no single owner")),
            };
            Ok(ApiTokenRow {
                id: row.try_get("id").map_err(database_error)?,
                owner,
                name: row.try_get("name").map_err(database_error)?,
                token_hash: row.try_get("token_hash").map_err(database_error)?,
                display_prefix: row.try_get("display_prefix").map_err(database_error)?,
                created_at: row.try_get("created_at").map_err(database_error)?,
                expires_at: row.try_get("expires_at").map_err(database_error)?,
                revoked_at: row.try_get("revoked_at").map_err(database_error)?,
                last_used_at: row.try_get("last_used_at").map_err(database_error)?,
                created_by: row.try_get("token_created_by").map_err(database_error)?,
            })
        }

        fn sealed_from(row: &Row) -> Result<Option<SealedSecret>> {
            let ciphertext: Option<Vec<u8>> =
                row.try_get("secret_ciphertext").map_err(database_error)?;
            let wrapped_key: Option<Vec<u8>> =
                row.try_get("secret_wrapped_key").map_err(database_error)?;
            let key_version: Option<i64> =
                row.try_get("secret_key_version").map_err(database_error)?;
            Ok(match (ciphertext, wrapped_key, key_version) {
                (Some(ciphertext), Some(wrapped_key), Some(key_version)) => Some(SealedSecret {
                    ciphertext,
                    wrapped_key,
                    key_version: u32::try_from(key_version)
                        .map_err(|_| Error::internal("stored key version out of range"))?,
                }),
                _ => None,
            })
        }

        /// A damaged row (ciphertext or wrapped key NULL, a key version NULL or out of
        /// range) comes back with the missing part empty and key version 0, which no
        /// master key opens: a rotation then names it as unreadable by its label
        /// instead of failing as a whole.
        fn sealed_ref_from(row: &Row) -> Result<SealedRef> {
            let ciphertext: Option<Vec<u8>> =
                row.try_get("secret_ciphertext").map_err(database_error)?;
            let wrapped_key: Option<Vec<u8>> =
                row.try_get("secret_wrapped_key").map_err(database_error)?;
            let key_version: Option<i64> =
                row.try_get("secret_key_version").map_err(database_error)?;
            Ok(SealedRef {
                owner_id: row.try_get("id").map_err(database_error)?,
                workspace_id: row.try_get("workspace_id").map_err(database_error)?,
                secret_version: row.try_get("secret_version").map_err(database_error)?,
                sealed: SealedSecret {
                    ciphertext: ciphertext.unwrap_or_default(),
                    wrapped_key: wrapped_key.unwrap_or_default(),
                    key_version: key_version
                        .and_then(|version| u32::try_from(version).ok())
                        .unwrap_or(0),
                },
                label: row.try_get("label").map_err(database_error)?,
            })
        }

        fn credential_from(row: &Row) -> Result<Credential> {
            let kind: String = row.try_get("kind").map_err(database_error)?;
            let auth_method: String = row.try_get("auth_method").map_err(database_error)?;
            let settings: String = row.try_get("settings").map_err(database_error)?;
            let verify_status: String = row.try_get("verify_status").map_err(database_error)?;
            let origin: String = row.try_get("origin").map_err(database_error)?;
            Ok(Credential {
                id: row.try_get("id").map_err(database_error)?,
                workspace_id: row.try_get("workspace_id").map_err(database_error)?,
                workspace_name: row.try_get("workspace_name").map_err(database_error)?,
                name: row.try_get("name").map_err(database_error)?,
                kind: CredentialKind::parse_stored(&kind)?,
                auth_method: AuthMethod::parse(&auth_method)?,
                registry_host: row.try_get("registry_host").map_err(database_error)?,
                path_prefix: row.try_get("path_prefix").map_err(database_error)?,
                username: row.try_get("username").map_err(database_error)?,
                settings: settings_from_text(&settings)?,
                sealed: sealed_from(row)?,
                secret_version: row.try_get("secret_version").map_err(database_error)?,
                revision: row.try_get("revision").map_err(database_error)?,
                created_at: row.try_get("created_at").map_err(database_error)?,
                updated_at: row.try_get("updated_at").map_err(database_error)?,
                created_by: row.try_get("created_by").map_err(database_error)?,
                origin: CredentialOrigin::parse_stored(&origin)?,
                verification: Verification {
                    status: VerificationStatus::parse(&verify_status)?,
                    checked_at: row.try_get("verified_at").map_err(database_error)?,
                    message: row.try_get("verify_message").map_err(database_error)?,
                },
                token: match row.try_get::<Option<String>, _>("token_status").map_err(database_error)? {
                    Some(status) => Some(TokenState {
                        status,
                        expires_at: row.try_get("token_expires_at").map_err(database_error)?,
                        refresh_at: row.try_get("token_refresh_at").map_err(database_error)?,
                        last_error: row.try_get("token_last_error").map_err(database_error)?,
                    }),
                    None => None,
                },
            })
        }

        fn token_from(row: &Row) -> Result<StoredToken> {
            let key_version: i64 = row.try_get("token_key_version").map_err(database_error)?;
            Ok(StoredToken {
                identity: row.try_get("identity").map_err(database_error)?,
                username: row.try_get("username").map_err(database_error)?,
                sealed: SealedSecret {
                    ciphertext: row.try_get("token_ciphertext").map_err(database_error)?,
                    wrapped_key: row.try_get("token_wrapped_key").map_err(database_error)?,
                    key_version: u32::try_from(key_version)
                        .map_err(|_| Error::internal("stored key version out of range"))?,
                },
                issued_at: row.try_get("issued_at").map_err(database_error)?,
                expires_at: row.try_get("expires_at").map_err(database_error)?,
                refresh_at: row.try_get("refresh_at").map_err(database_error)?,
                status: row.try_get("status").map_err(database_error)?,
                failures: row.try_get("failures").map_err(database_error)?,
                last_error: row.try_get("last_error").map_err(database_error)?,
                next_attempt_at: row.try_get("next_attempt_at").map_err(database_error)?,
                updated_at: row.try_get("updated_at").map_err(database_error)?,
            })
        }

        fn audit_from(row: &Row) -> Result<AuditRow> {
            Ok(AuditRow {
                seq: row.try_get("seq").map_err(database_error)?,
                at: row.try_get("at").map_err(database_error)?,
                actor: row.try_get("actor").map_err(database_error)?,
                action: row.try_get("action").map_err(database_error)?,
                workspace: row.try_get("workspace").map_err(database_error)?,
                workspace_id: row.try_get("workspace_id").map_err(database_error)?,
                target: row.try_get("target").map_err(database_error)?,
                outcome: row.try_get("outcome").map_err(database_error)?,
                detail: row.try_get("detail").map_err(database_error)?,
                prev_hash: row.try_get("prev_hash").map_err(database_error)?,
                hash: row.try_get("hash").map_err(database_error)?,
            })
        }

        /// Binds a token row's state, `username` to `next_attempt_at` in column order: what
        /// every statement that writes a token row sets, whatever it binds around it.
        fn bind_token_state<'q>(
            query: sqlx::query::Query<'q, $database, <$database as sqlx::Database>::Arguments<'q>>,
            token: &'q StoredToken,
        ) -> sqlx::query::Query<'q, $database, <$database as sqlx::Database>::Arguments<'q>> {
            query
                .bind(&token.username)
                .bind(&token.sealed.ciphertext)
                .bind(&token.sealed.wrapped_key)
                .bind(i64::from(token.sealed.key_version))
                .bind(token.issued_at)
                .bind(token.expires_at)
                .bind(token.refresh_at)
                .bind(&token.status)
                .bind(token.failures)
                .bind(&token.last_error)
                .bind(token.next_attempt_at)
        }

        /// One identity's registry token row, read from the pool or, where a lease was just
        /// taken, from inside that write transaction so the read sees it.
        async fn token_by_identity<'e, E>(executor: E, identity: &str) -> Result<Option<StoredToken>>
        where
            E: sqlx::Executor<'e, Database = $database>,
        {
            sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM registry_tokens WHERE identity = $1"))
                .bind(identity)
                .fetch_optional(executor)
                .await
                .map_err(database_error)?
                .as_ref()
                .map(token_from)
                .transpose()
        }

        /// Appends `record` to the chain inside `transaction`, which the backend has
        /// already serialised against other writers.
        async fn append_in(transaction: &mut Transaction, record: AuditRecord) -> Result<()> {
            let previous = last_audit(transaction).await?;
            insert_audit_rows(transaction, &[AuditRow::chained(record, previous)]).await
        }

        /// The newest entry's sequence number and hash, which the next one chains to.
        async fn last_audit(transaction: &mut Transaction) -> Result<Option<(i64, String)>> {
            sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut **transaction)
                .await
                .map_err(database_error)?
                .map(|row| -> Result<(i64, String)> {
                    Ok((
                        row.try_get("seq").map_err(database_error)?,
                        row.try_get("hash").map_err(database_error)?,
                    ))
                })
                .transpose()
        }

        /// Audit rows one INSERT carries at most (11 parameters each).
        const AUDIT_ROWS_PER_STATEMENT: usize = 128;

        /// The INSERT for `count` audit rows.
        fn audit_insert_statement(count: usize) -> String {
            let values = (0..count)
                .map(|index| {
                    let placeholders: Vec<String> =
                        (1..=11).map(|column| format!("${}", index * 11 + column)).collect();
                    format!("({})", placeholders.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "INSERT INTO audit_log (seq, at, actor, action, workspace, workspace_id, target, \
                 outcome, detail, prev_hash, hash) VALUES {values}"
            )
        }

        /// That INSERT with the rows bound.
        fn audit_insert<'q>(
            statement: &'q str,
            rows: &'q [AuditRow],
        ) -> sqlx::query::Query<'q, $database, <$database as sqlx::Database>::Arguments<'q>> {
            let mut query = sqlx::query(statement);
            for row in rows {
                query = query
                    .bind(row.seq)
                    .bind(row.at)
                    .bind(&row.actor)
                    .bind(&row.action)
                    .bind(&row.workspace)
                    .bind(&row.workspace_id)
                    .bind(&row.target)
                    .bind(&row.outcome)
                    .bind(&row.detail)
                    .bind(&row.prev_hash)
                    .bind(&row.hash);
            }
            query
        }

        /// Inserts audit rows, already chained, in one statement.
        async fn insert_audit_rows(transaction: &mut Transaction, rows: &[AuditRow]) -> Result<()> {
            let statement = audit_insert_statement(rows.len());
            audit_insert(&statement, rows)
                .execute(&mut **transaction)
                .await
                .map_err(audit_write_error)?;
            Ok(())
        }

        /// Chains records after `previous`: the rows, and what the next entry chains to.
        fn chain_after(
            records: Vec<AuditRecord>,
            mut previous: Option<(i64, String)>,
        ) -> (Vec<AuditRow>, Option<(i64, String)>) {
            let rows: Vec<AuditRow> = records
                .into_iter()
                .map(|record| {
                    let row = AuditRow::chained(record, previous.take());
                    previous = Some((row.seq, row.hash.clone()));
                    row
                })
                .collect();
            (rows, previous)
        }

        async fn commit(transaction: Transaction) -> Result<()> {
            transaction.commit().await.map_err(database_error)
        }

        /// Commits a change that may have matched nothing: with its audit entry when it
        /// changed something, so a no-op leaves no entry. Returns whether it changed.
        async fn commit_audited_if(
            mut transaction: Transaction,
            changed: bool,
            audit: AuditRecord,
        ) -> Result<bool> {
            if changed {
                append_in(&mut transaction, audit).await?;
            }
            commit(transaction).await?;
            Ok(changed)
        }

        fn conflict_or(error: sqlx::Error, code: &'static str, message: String) -> Error {
            if is_unique_violation(&error) {
                Error::conflict(code, message)
            } else {
                database_error(error)
            }
        }

        async fn insert_workspace_with_owner(
            transaction: &mut Transaction,
            workspace: &WorkspaceRow,
            owner_id: &str,
        ) -> Result<()> {
            sqlx::query("INSERT INTO workspaces (id, name, kind, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&workspace.id)
                .bind(&workspace.name)
                .bind(workspace.kind.as_str())
                .bind(workspace.created_at)
                .execute(&mut **transaction)
                .await
                .map_err(|error| {
                    conflict_or(
                        error,
                        "workspace_exists",
                        format!("workspace {} already exists", workspace.name),
                    )
                })?;
            sqlx::query(
                "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&workspace.id)
            .bind(owner_id)
            .bind(Role::Owner.as_str())
            .bind(workspace.created_at)
            .execute(&mut **transaction)
            .await
            .map_err(database_error)?;
            Ok(())
        }

        fn owner_columns(owner: &TokenOwner) -> (Option<&str>, Option<&str>) {
            match owner {
                TokenOwner::User(id) => (Some(id.as_str()), None),
                TokenOwner::Role(id) => (None, Some(id.as_str())),
            }
        }

        fn role_row_from(row: &Row) -> Result<RoleRow> {
            Ok(RoleRow {
                id: row.try_get("role_id").map_err(database_error)?,
                workspace_id: row.try_get("role_workspace_id").map_err(database_error)?,
                workspace_name: row.try_get("role_workspace_name").map_err(database_error)?,
                name: row.try_get("role_name").map_err(database_error)?,
                description: row.try_get("role_description").map_err(database_error)?,
                policy: row.try_get("role_policy").map_err(database_error)?,
                revision: row.try_get("role_revision").map_err(database_error)?,
                created_at: row.try_get("role_created_at").map_err(database_error)?,
                updated_at: row.try_get("role_updated_at").map_err(database_error)?,
                created_by: row.try_get("role_created_by").map_err(database_error)?,
            })
        }

        const ROLE_COLUMNS: &str = "r.id AS role_id, r.workspace_id AS role_workspace_id, \
            rw.name AS role_workspace_name, r.name AS role_name, r.description AS role_description, \
            r.policy AS role_policy, r.revision AS role_revision, r.created_at AS role_created_at, \
            r.updated_at AS role_updated_at, r.created_by AS role_created_by";

        /// Inserts `token` inside `transaction`; `trust_id` names the trust a token issued
        /// by an exchange was issued under (deleting the trust deletes the token).
        async fn insert_token_in(
            transaction: &mut Transaction,
            token: &ApiTokenRow,
            trust_id: Option<&str>,
        ) -> Result<()> {
            let (user_id, role_id) = owner_columns(&token.owner);
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, role_id, name, token_hash, display_prefix, \
                 created_at, expires_at, revoked_at, last_used_at, created_by, trust_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&token.id)
            .bind(user_id)
            .bind(role_id)
            .bind(&token.name)
            .bind(&token.token_hash)
            .bind(&token.display_prefix)
            .bind(token.created_at)
            .bind(token.expires_at)
            .bind(token.revoked_at)
            .bind(token.last_used_at)
            .bind(&token.created_by)
            .bind(trust_id)
            .execute(&mut **transaction)
            .await
            .map_err(|error| {
                conflict_or(error, "token_exists", "an identical API token already exists".to_owned())
            })?;
            Ok(())
        }

        fn sealed_columns(sealed: Option<&SealedSecret>) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>) {
            match sealed {
                Some(sealed) => (
                    Some(sealed.ciphertext.clone()),
                    Some(sealed.wrapped_key.clone()),
                    Some(i64::from(sealed.key_version)),
                ),
                None => (None, None, None),
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(database_error)
            }

            async fn key_checks(&self) -> Result<Vec<KeyCheck>> {
                let rows = sqlx::query(
                    "SELECT version, check_value, created_at FROM master_key_checks ORDER BY version",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?;
                rows.iter()
                    .map(|row| {
                        let version: i64 = row.try_get("version").map_err(database_error)?;
                        Ok(KeyCheck {
                            version: u32::try_from(version)
                                .map_err(|_| Error::internal("key check version out of range"))?,
                            check_value: row.try_get("check_value").map_err(database_error)?,
                            created_at: row.try_get("created_at").map_err(database_error)?,
                        })
                    })
                    .collect()
            }

            async fn ensure_key_check(&self, check: &KeyCheck) -> Result<KeyCheck> {
                let mut transaction = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO master_key_checks (version, check_value, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(i64::from(check.version))
                .bind(&check.check_value)
                .bind(check.created_at)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?;
                let row = sqlx::query(
                    "SELECT check_value, created_at FROM master_key_checks WHERE version = $1",
                )
                .bind(i64::from(check.version))
                .fetch_one(&mut *transaction)
                .await
                .map_err(database_error)?;
                commit(transaction).await?;
                Ok(KeyCheck {
                    version: check.version,
                    check_value: row.try_get("check_value").map_err(database_error)?,
                    created_at: row.try_get("created_at").map_err(database_error)?,
                })
            }

            async fn count_users(&self) -> Result<i64> {
                sqlx::query("SELECT COUNT(*) AS users FROM users")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(database_error)?
                    .try_get("users")
                    .map_err(database_error)
            }

            async fn create_user(&self, new: &NewUser, audit: AuditRecord) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                sqlx::query("INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&new.user.id)
                    .bind(&new.user.name)
                    .bind(new.user.admin)
                    .bind(new.user.created_at)
                    .execute(&mut *transaction)
                    .await
                    .map_err(|error| {
                        conflict_or(error, "user_exists", format!("user {} already exists", new.user.name))
                    })?;
                insert_workspace_with_owner(&mut transaction, &new.workspace, &new.user.id).await?;
                if let Some(token) = &new.token {
                    insert_token_in(&mut transaction, token, None).await?;
                }
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
                sqlx::query("SELECT id, name, is_admin, created_at, disabled_at FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?
                    .as_ref()
                    .map(user_from)
                    .transpose()
            }

            async fn list_users(&self) -> Result<Vec<UserRow>> {
                sqlx::query("SELECT id, name, is_admin, created_at, disabled_at FROM users ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?
                    .iter()
                    .map(user_from)
                    .collect()
            }

            async fn insert_api_token(&self, token: &ApiTokenRow, audit: AuditRecord) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                insert_token_in(&mut transaction, token, None).await?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn api_token_by_hash(
                &self,
                token_hash: &str,
            ) -> Result<Option<(ApiTokenRow, TokenSubject)>> {
                let Some(row) = sqlx::query(&format!(
                    "SELECT t.id, t.user_id, t.role_id, t.name, t.token_hash, t.display_prefix, \
                     t.created_at, t.expires_at, t.revoked_at, t.last_used_at, \
                     t.created_by AS token_created_by, u.name AS user_name, \
                     u.is_admin, u.created_at AS user_created_at, u.disabled_at AS user_disabled_at, \
                     {ROLE_COLUMNS} \
                     FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id \
                     LEFT JOIN workload_roles r ON r.id = t.role_id \
                     LEFT JOIN workspaces rw ON rw.id = r.workspace_id WHERE t.token_hash = $1",
                ))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?
                else {
                    return Ok(None);
                };
                let token = api_token_from(&row)?;
                let subject = match &token.owner {
                    TokenOwner::User(id) => TokenSubject::User(UserRow {
                        id: id.clone(),
                        name: row.try_get("user_name").map_err(database_error)?,
                        admin: row.try_get("is_admin").map_err(database_error)?,
                        created_at: row.try_get("user_created_at").map_err(database_error)?,
                        disabled_at: row.try_get("user_disabled_at").map_err(database_error)?,
                    }),
                    TokenOwner::Role(_) => TokenSubject::Role(role_row_from(&row)?),
                };
                Ok(Some((token, subject)))
            }

            async fn touch_api_token(&self, token_id: &str, at: Timestamp) -> Result<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                    .bind(at)
                    .bind(token_id)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(database_error)
            }

            async fn list_api_tokens(&self, owner: &TokenOwner) -> Result<Vec<ApiTokenRow>> {
                let (column, id) = match owner {
                    TokenOwner::User(id) => ("user_id", id),
                    TokenOwner::Role(id) => ("role_id", id),
                };
                sqlx::query(&format!(
                    "SELECT id, user_id, role_id, name, token_hash, display_prefix, created_at, \
                     expires_at, revoked_at, last_used_at, created_by AS token_created_by \
                     FROM api_tokens WHERE {column} = $1 \
                     ORDER BY created_at, id",
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(api_token_from)
                .collect()
            }

            async fn revoke_api_token(
                &self,
                owner: &TokenOwner,
                token_id: &str,
                at: Timestamp,
                audit: AuditRecord,
            ) -> Result<bool> {
                let (column, owner_id) = match owner {
                    TokenOwner::User(id) => ("user_id", id),
                    TokenOwner::Role(id) => ("role_id", id),
                };
                let mut transaction = self.begin_write().await?;
                let revoked = sqlx::query(&format!(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND {column} = $3 \
                     AND revoked_at IS NULL",
                ))
                .bind(at)
                .bind(token_id)
                .bind(owner_id)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected()
                    == 1;
                commit_audited_if(transaction, revoked, audit).await
            }

            async fn create_workspace(
                &self,
                workspace: &WorkspaceRow,
                owner_id: &str,
                audit: AuditRecord,
            ) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                insert_workspace_with_owner(&mut transaction, workspace, owner_id).await?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn workspace_by_name(&self, name: &str) -> Result<Option<WorkspaceRow>> {
                sqlx::query("SELECT id, name, kind, created_at FROM workspaces WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?
                    .as_ref()
                    .map(workspace_from)
                    .transpose()
            }

            async fn role_of(&self, workspace_id: &str, user_id: &str) -> Result<Option<Role>> {
                sqlx::query("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                    .bind(workspace_id)
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?
                    .as_ref()
                    .map(role_from)
                    .transpose()
            }

            async fn workspaces_of(&self, user_id: &str) -> Result<Vec<(WorkspaceRow, Role)>> {
                sqlx::query(
                    "SELECT w.id, w.name, w.kind, w.created_at, m.role FROM workspaces w \
                     JOIN memberships m ON m.workspace_id = w.id WHERE m.user_id = $1 ORDER BY w.name",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(|row| Ok((workspace_from(row)?, role_from(row)?)))
                .collect()
            }

            async fn put_member(
                &self,
                workspace_id: &str,
                user_id: &str,
                role: Role,
                at: Timestamp,
                audit: AuditRecord,
            ) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
                )
                .bind(workspace_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind(at)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn remove_member(
                &self,
                workspace_id: &str,
                user_id: &str,
                audit: AuditRecord,
            ) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let removed = sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                    .bind(workspace_id)
                    .bind(user_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?
                    .rows_affected()
                    == 1;
                commit_audited_if(transaction, removed, audit).await
            }

            async fn members(&self, workspace_id: &str) -> Result<Vec<MemberRow>> {
                sqlx::query(
                    "SELECT u.name, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
                     WHERE m.workspace_id = $1 ORDER BY u.name",
                )
                .bind(workspace_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(|row| {
                    Ok(MemberRow {
                        user_name: row.try_get("name").map_err(database_error)?,
                        role: role_from(row)?,
                        created_at: row.try_get("created_at").map_err(database_error)?,
                    })
                })
                .collect()
            }

            async fn insert_credential(&self, credential: &Credential, audit: AuditRecord) -> Result<()> {
                let (ciphertext, wrapped_key, key_version) = sealed_columns(credential.sealed.as_ref());
                let mut transaction = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO credentials (id, workspace_id, name, kind, auth_method, registry_host, \
                     path_prefix, username, settings, secret_ciphertext, secret_wrapped_key, \
                     secret_key_version, secret_version, revision, created_at, updated_at, created_by, \
                     verify_status, verify_message, verified_at, origin, name_folded) VALUES ($1, $2, $3, $4, \
                     $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, lower($3))",
                )
                .bind(&credential.id)
                .bind(&credential.workspace_id)
                .bind(&credential.name)
                .bind(credential.kind.as_str())
                .bind(credential.auth_method.as_str())
                .bind(&credential.registry_host)
                .bind(&credential.path_prefix)
                .bind(&credential.username)
                .bind(settings_to_text(&credential.settings))
                .bind(ciphertext)
                .bind(wrapped_key)
                .bind(key_version)
                .bind(credential.secret_version)
                .bind(credential.revision)
                .bind(credential.created_at)
                .bind(credential.updated_at)
                .bind(&credential.created_by)
                .bind(credential.verification.status.as_str())
                .bind(&credential.verification.message)
                .bind(credential.verification.checked_at)
                .bind(credential.origin.as_str())
                .execute(&mut *transaction)
                .await
                .map_err(|error| {
                    conflict_or(
                        error,
                        "credential_exists",
                        format!(
                            "a credential named {} already exists in {} (names are unique without regard to case)",
                            credential.name, credential.workspace_name
                        ),
                    )
                })?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn credential(&self, workspace_id: &str, name: &str) -> Result<Option<Credential>> {
                // Without regard to case; the exact spelling first, so each of two names
                // that differed only by case before migration 0008 stays reachable.
                sqlx::query(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.workspace_id = $1 \
                     AND (c.name = $2 OR c.name_folded = lower($2)) \
                     ORDER BY CASE WHEN c.name = $2 THEN 0 ELSE 1 END LIMIT 1"
                ))
                .bind(workspace_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?
                .as_ref()
                .map(credential_from)
                .transpose()
            }

            async fn credentials(&self, workspace_id: &str) -> Result<Vec<Credential>> {
                sqlx::query(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.workspace_id = $1 ORDER BY c.name"
                ))
                .bind(workspace_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(credential_from)
                .collect()
            }

            async fn best_credential_for(
                &self,
                workspace_id: &str,
                host: &str,
                repository: &str,
            ) -> Result<Option<Credential>> {
                // Only the prefixes that could cover the repository are looked up: ''
                // and each run of its leading whole components. With the index on
                // (workspace, host, prefix) a resolve reads a handful of index entries
                // and one row, however many credentials the host has.
                let candidates = covering_prefixes(repository);
                let placeholders = (0..candidates.len())
                    .map(|index| format!("${}", index + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                let statement = format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.workspace_id = $1 \
                     AND c.registry_host = $2 AND c.path_prefix IN ({placeholders}) \
                     ORDER BY length(c.path_prefix) DESC, c.name LIMIT 1"
                );
                let mut query = sqlx::query(&statement).bind(workspace_id).bind(host);
                for candidate in &candidates {
                    query = query.bind(*candidate);
                }
                query
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?
                .as_ref()
                .map(credential_from)
                .transpose()
            }

            async fn update_credential(
                &self,
                credential: &Credential,
                expected_revision: i64,
                audit: AuditRecord,
            ) -> Result<()> {
                let (ciphertext, wrapped_key, key_version) = sealed_columns(credential.sealed.as_ref());
                let mut transaction = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE credentials SET name = $1, kind = $2, auth_method = $3, registry_host = $4, \
                     path_prefix = $5, username = $6, settings = $7, secret_ciphertext = $8, \
                     secret_wrapped_key = $9, secret_key_version = $10, secret_version = $11, \
                     revision = $12, updated_at = $13, verify_status = $14, verify_message = $15, \
                     verified_at = $16, \
                     name_folded = CASE WHEN name = $1 THEN name_folded ELSE lower($1) END \
                     WHERE id = $17 AND revision = $18",
                )
                .bind(&credential.name)
                .bind(credential.kind.as_str())
                .bind(credential.auth_method.as_str())
                .bind(&credential.registry_host)
                .bind(&credential.path_prefix)
                .bind(&credential.username)
                .bind(settings_to_text(&credential.settings))
                .bind(ciphertext)
                .bind(wrapped_key)
                .bind(key_version)
                .bind(credential.secret_version)
                .bind(credential.revision)
                .bind(credential.updated_at)
                .bind(credential.verification.status.as_str())
                .bind(&credential.verification.message)
                .bind(credential.verification.checked_at)
                .bind(&credential.id)
                .bind(expected_revision)
                .execute(&mut *transaction)
                .await
                .map_err(|error| {
                    conflict_or(
                        error,
                        "credential_exists",
                        format!(
                            "a credential named {} already exists in {} (names are unique without regard to case)",
                            credential.name, credential.workspace_name
                        ),
                    )
                })?
                .rows_affected();
                if updated != 1 {
                    return Err(Error::conflict(
                        "concurrent_update",
                        format!(
                            "credential {} was changed or deleted by another request; read it again and retry",
                            credential.name
                        ),
                    ));
                }
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn create_role(&self, role: &RoleRow, audit: AuditRecord) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO workload_roles (id, workspace_id, name, description, policy, \
                     revision, created_at, updated_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&role.id)
                .bind(&role.workspace_id)
                .bind(&role.name)
                .bind(&role.description)
                .bind(&role.policy)
                .bind(role.revision)
                .bind(role.created_at)
                .bind(role.updated_at)
                .bind(&role.created_by)
                .execute(&mut *transaction)
                .await
                .map_err(|error| {
                    conflict_or(
                        error,
                        "role_exists",
                        format!("a role named {} already exists in {}", role.name, role.workspace_name),
                    )
                })?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn role(&self, workspace_id: &str, name: &str) -> Result<Option<RoleRow>> {
                sqlx::query(&format!(
                    "SELECT {ROLE_COLUMNS} FROM workload_roles r \
                     JOIN workspaces rw ON rw.id = r.workspace_id \
                     WHERE r.workspace_id = $1 AND r.name = $2",
                ))
                .bind(workspace_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?
                .as_ref()
                .map(role_row_from)
                .transpose()
            }

            async fn roles(&self, workspace_id: &str) -> Result<Vec<RoleRow>> {
                sqlx::query(&format!(
                    "SELECT {ROLE_COLUMNS} FROM workload_roles r \
                     JOIN workspaces rw ON rw.id = r.workspace_id \
                     WHERE r.workspace_id = $1 ORDER BY r.name",
                ))
                .bind(workspace_id)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(role_row_from)
                .collect()
            }

            async fn update_role(
                &self,
                role: &RoleRow,
                expected_revision: i64,
                audit: AuditRecord,
            ) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE workload_roles SET description = $1, policy = $2, revision = $3, \
                     updated_at = $4 WHERE id = $5 AND revision = $6",
                )
                .bind(&role.description)
                .bind(&role.policy)
                .bind(role.revision)
                .bind(role.updated_at)
                .bind(&role.id)
                .bind(expected_revision)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected();
                if updated != 1 {
                    return Err(Error::conflict(
                        "concurrent_update",
                        format!("role {} was changed or deleted meanwhile; read it again and retry", role.name),
                    ));
                }
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn delete_role(&self, role_id: &str, audit: AuditRecord) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                // Tokens go first and explicitly, so no backend's foreign-key setting
                // decides whether a deleted role's tokens still authenticate.
                sqlx::query("DELETE FROM api_tokens WHERE role_id = $1")
                    .bind(role_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?;
                let deleted = sqlx::query("DELETE FROM workload_roles WHERE id = $1")
                    .bind(role_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?
                    .rows_affected()
                    == 1;
                commit_audited_if(transaction, deleted, audit).await
            }

            async fn delete_credential(&self, credential_id: &str, audit: AuditRecord) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM credentials WHERE id = $1")
                    .bind(credential_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?
                    .rows_affected()
                    == 1;
                commit_audited_if(transaction, deleted, audit).await
            }

            async fn sealed_page(&self, kind: SealedKind, after: &str, limit: i64) -> Result<Vec<SealedRef>> {
                let statement = format!(
                    "SELECT * FROM ({}) sealed WHERE id > $1 ORDER BY id LIMIT $2",
                    sealed_select(kind)
                );
                sqlx::query(&statement)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?
                    .iter()
                    .map(sealed_ref_from)
                    .collect()
            }

            async fn replace_wrapped_key(
                &self,
                kind: SealedKind,
                owner_id: &str,
                old: &SealedSecret,
                new: &SealedSecret,
            ) -> Result<bool> {
                let statement = match kind {
                    SealedKind::CredentialSecret => {
                        "UPDATE credentials SET secret_wrapped_key = $1, secret_key_version = $2 \
                         WHERE id = $3 AND secret_wrapped_key = $4 AND secret_key_version = $5"
                    }
                    SealedKind::SyncSigningKey => {
                        "UPDATE sync_targets SET secret_wrapped_key = $1, secret_key_version = $2 \
                         WHERE id = $3 AND secret_wrapped_key = $4 AND secret_key_version = $5"
                    }
                    SealedKind::RegistryToken => {
                        "UPDATE registry_tokens SET token_wrapped_key = $1, token_key_version = $2 \
                         WHERE identity = $3 AND token_wrapped_key = $4 AND token_key_version = $5"
                    }
                };
                let mut transaction = self.begin_write().await?;
                let replaced = sqlx::query(statement)
                .bind(&new.wrapped_key)
                .bind(i64::from(new.key_version))
                .bind(owner_id)
                .bind(&old.wrapped_key)
                .bind(i64::from(old.key_version))
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected()
                    == 1;
                commit(transaction).await?;
                Ok(replaced)
            }

            async fn registry_token(&self, identity: &str) -> Result<Option<StoredToken>> {
                token_by_identity(&self.pool, identity).await
            }

            async fn put_registry_token(&self, token: &StoredToken) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                bind_token_state(
                    sqlx::query(
                        "INSERT INTO registry_tokens (identity, username, token_ciphertext, token_wrapped_key, \
                         token_key_version, issued_at, expires_at, refresh_at, status, failures, last_error, \
                         next_attempt_at, lease_owner, lease_until, updated_at) VALUES ($1, $2, $3, $4, $5, $6, \
                         $7, $8, $9, $10, $11, $12, NULL, NULL, $13) ON CONFLICT (identity) DO UPDATE SET \
                         username = excluded.username, token_ciphertext = excluded.token_ciphertext, \
                         token_wrapped_key = excluded.token_wrapped_key, token_key_version = excluded.token_key_version, \
                         issued_at = excluded.issued_at, expires_at = excluded.expires_at, \
                         refresh_at = excluded.refresh_at, status = excluded.status, failures = excluded.failures, \
                         last_error = excluded.last_error, next_attempt_at = excluded.next_attempt_at, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(&token.identity),
                    token,
                )
                .bind(token.updated_at)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?;
                commit(transaction).await
            }

            async fn claim_due_tokens(
                &self,
                now: Timestamp,
                owner: &str,
                lease_until: Timestamp,
                limit: i64,
            ) -> Result<Vec<StoredToken>> {
                // The write transaction is serialised (IMMEDIATE / advisory lock), so the
                // select-then-lease below cannot hand one token to two replicas.
                let mut transaction = self.begin_write().await?;
                let due: Vec<StoredToken> = sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM registry_tokens WHERE next_attempt_at <= $1 \
                     AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at LIMIT $2"
                ))
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await
                .map_err(database_error)?
                .iter()
                .map(token_from)
                .collect::<Result<_>>()?;
                for token in &due {
                    sqlx::query("UPDATE registry_tokens SET lease_owner = $1, lease_until = $2 WHERE identity = $3")
                        .bind(owner)
                        .bind(lease_until)
                        .bind(&token.identity)
                        .execute(&mut *transaction)
                        .await
                        .map_err(database_error)?;
                }
                commit(transaction).await?;
                Ok(due)
            }

            async fn claim_token_for_mint(
                &self,
                placeholder: &StoredToken,
                now: Timestamp,
                owner: &str,
                lease_until: Timestamp,
            ) -> Result<Option<StoredToken>> {
                // Serialised like `claim_due_tokens`, so two replicas cannot both lease
                // (or both create) one identity's row.
                let mut transaction = self.begin_write().await?;
                let leased = sqlx::query(
                    "UPDATE registry_tokens SET lease_owner = $1, lease_until = $2 WHERE identity = $3 \
                     AND next_attempt_at <= $4 AND (lease_until IS NULL OR lease_until < $4)",
                )
                .bind(owner)
                .bind(lease_until)
                .bind(&placeholder.identity)
                .bind(now)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected()
                    == 1;
                let row = token_by_identity(&mut *transaction, &placeholder.identity).await?;
                let claimed = match row {
                    Some(row) => leased.then_some(row),
                    None => {
                        bind_token_state(
                            sqlx::query(
                                "INSERT INTO registry_tokens (identity, username, token_ciphertext, token_wrapped_key, \
                                 token_key_version, issued_at, expires_at, refresh_at, status, failures, last_error, \
                                 next_attempt_at, lease_owner, lease_until, updated_at) VALUES ($1, $2, $3, $4, $5, $6, \
                                 $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                            )
                            .bind(&placeholder.identity),
                            placeholder,
                        )
                        .bind(owner)
                        .bind(lease_until)
                        .bind(placeholder.updated_at)
                        .execute(&mut *transaction)
                        .await
                        .map_err(database_error)?;
                        Some(placeholder.clone())
                    }
                };
                commit(transaction).await?;
                Ok(claimed)
            }

            async fn claim_unreadable_token(
                &self,
                identity: &str,
                issued_at: Timestamp,
                now: Timestamp,
                owner: &str,
                lease_until: Timestamp,
            ) -> Result<Option<StoredToken>> {
                let mut transaction = self.begin_write().await?;
                let leased = sqlx::query(
                    "UPDATE registry_tokens SET lease_owner = $1, lease_until = $2 WHERE identity = $3 \
                     AND issued_at = $4 AND (failures = 0 OR next_attempt_at <= $5) \
                     AND (lease_until IS NULL OR lease_until < $5)",
                )
                .bind(owner)
                .bind(lease_until)
                .bind(identity)
                .bind(issued_at)
                .bind(now)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected()
                    == 1;
                let claimed = if leased {
                    token_by_identity(&mut *transaction, identity).await?
                } else {
                    None
                };
                commit(transaction).await?;
                Ok(claimed)
            }

            async fn finish_registry_token(&self, token: &StoredToken, owner: &str) -> Result<bool> {
                let mut transaction = self.begin_write().await?;
                let updated = bind_token_state(
                    sqlx::query(
                        "UPDATE registry_tokens SET username = $1, token_ciphertext = $2, token_wrapped_key = $3, \
                         token_key_version = $4, issued_at = $5, expires_at = $6, refresh_at = $7, status = $8, \
                         failures = $9, last_error = $10, next_attempt_at = $11, updated_at = $12, \
                         lease_owner = NULL, lease_until = NULL WHERE identity = $13 AND lease_owner = $14",
                    ),
                    token,
                )
                .bind(token.updated_at)
                .bind(&token.identity)
                .bind(owner)
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?
                .rows_affected()
                    == 1;
                commit(transaction).await?;
                Ok(updated)
            }

            async fn token_status_counts(&self, now: Timestamp) -> Result<Vec<(String, i64)>> {
                sqlx::query(
                    "SELECT CASE WHEN status = 'pending' THEN 'pending' \
                     WHEN expires_at IS NOT NULL AND expires_at <= $1 THEN 'expired' \
                     ELSE status END AS state, COUNT(*) AS tokens FROM registry_tokens GROUP BY 1 ORDER BY 1",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get("state").map_err(database_error)?,
                        row.try_get("tokens").map_err(database_error)?,
                    ))
                })
                .collect()
            }

            async fn delete_registry_token(&self, identity: &str) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                sqlx::query("DELETE FROM registry_tokens WHERE identity = $1")
                    .bind(identity)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?;
                commit(transaction).await
            }

            async fn link_token_identity(&self, credential_id: &str, identity: Option<&str>) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                sqlx::query("UPDATE credentials SET token_identity = $1 WHERE id = $2")
                    .bind(identity)
                    .bind(credential_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error)?;
                commit(transaction).await
            }

            async fn credential_by_token_identity(&self, identity: &str) -> Result<Option<Credential>> {
                sqlx::query(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.token_identity = $1 \
                     ORDER BY c.created_at LIMIT 1"
                ))
                .bind(identity)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?
                .as_ref()
                .map(credential_from)
                .transpose()
            }

            async fn append_audit(&self, audit: AuditRecord) -> Result<()> {
                let mut transaction = self.begin_write().await?;
                append_in(&mut transaction, audit).await?;
                commit(transaction).await
            }

            async fn append_audits(
                &self,
                audits: Vec<AuditRecord>,
            ) -> Result<Option<(i64, String)>> {
                // One multi-row INSERT per chunk: each statement is a round trip to the
                // database (for SQLite, a hand-off to its worker thread), and this runs
                // once for every resolve waiting to be audited.
                let mut transaction = self.begin_write().await?;
                let mut previous = last_audit(&mut transaction).await?;
                let mut audits = audits.into_iter().peekable();
                while audits.peek().is_some() {
                    let chunk: Vec<AuditRecord> = audits.by_ref().take(AUDIT_ROWS_PER_STATEMENT).collect();
                    let (rows, newest) = chain_after(chunk, previous);
                    previous = newest;
                    insert_audit_rows(&mut transaction, &rows).await?;
                }
                commit(transaction).await?;
                Ok(previous)
            }

            async fn append_audits_after(
                &self,
                audits: &[AuditRecord],
                previous: (i64, String),
            ) -> Result<Option<(i64, String)>> {
                // Only where this process's writers take turns on one connection
                // (SQLite): a transactional writer elsewhere would otherwise lose its
                // sequence number to this statement between its read and its insert.
                if $backend != "sqlite" || audits.len() > AUDIT_ROWS_PER_STATEMENT {
                    return Ok(None);
                }
                let (rows, newest) = chain_after(audits.to_vec(), Some(previous));
                let statement = audit_insert_statement(rows.len());
                match audit_insert(&statement, &rows).execute(self.write_pool()).await {
                    Ok(_) => Ok(newest),
                    // Another entry took the next sequence number first: nothing was
                    // written, and the caller appends through the transactional path.
                    Err(error) if is_unique_violation(&error) => Ok(None),
                    Err(error) => Err(audit_write_error(error)),
                }
            }

            async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
                let order = if query.newest_first { "DESC" } else { "ASC" };
                let statement = format!(
                    "SELECT seq, at, actor, action, workspace, workspace_id, target, outcome, detail, \
                     prev_hash, hash FROM audit_log WHERE seq > $1 AND ($2 IS NULL OR workspace_id = $2) \
                     ORDER BY seq {order} LIMIT $3"
                );
                sqlx::query(&statement)
                    .bind(query.after_seq)
                    .bind(&query.workspace_id)
                    .bind(query.limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?
                    .iter()
                    .map(audit_from)
                    .collect()
            }

            // ---- Grants and user lifecycle: SQL in store/access_sql.rs -------------------
            async fn put_role_grant(
                &self,
                grant: &crate::store::RoleGrantRow,
                audit: AuditRecord,
            ) -> Result<()> {
                self.grant_put(grant, audit).await
            }

            async fn delete_role_grant(
                &self,
                workspace_id: &str,
                role_id: &str,
                audit: AuditRecord,
            ) -> Result<bool> {
                self.grant_delete(workspace_id, role_id, audit).await
            }

            async fn role_grants(&self, workspace_id: &str) -> Result<Vec<crate::store::RoleGrantRow>> {
                self.grant_list(workspace_id).await
            }

            async fn role_grant_in_force(&self, workspace_id: &str, role_id: &str) -> Result<bool> {
                self.grant_in_force(workspace_id, role_id).await
            }

            async fn all_roles(&self) -> Result<Vec<RoleRow>> {
                self.roles_everywhere().await
            }

            async fn api_token_by_id(&self, token_id: &str) -> Result<Option<ApiTokenRow>> {
                self.token_by_id(token_id).await
            }

            async fn role_tokens_created_by(&self, user_id: &str) -> Result<Vec<ApiTokenRow>> {
                self.tokens_created_by(user_id).await
            }

            async fn disable_user(&self, user_id: &str, at: Timestamp, audit: AuditRecord) -> Result<bool> {
                self.user_disable(user_id, at, audit).await
            }

            async fn enable_user(
                &self,
                user_id: &str,
                token: &ApiTokenRow,
                audit: AuditRecord,
            ) -> Result<bool> {
                self.user_enable(user_id, token, audit).await
            }

            async fn delete_user(
                &self,
                user_id: &str,
                personal_workspace_id: &str,
                at: Timestamp,
                audit: AuditRecord,
            ) -> Result<bool> {
                self.user_delete(user_id, personal_workspace_id, at, audit).await
            }
            // ---- end of grants and user lifecycle ----------------------------------------

            // ---- Sync targets: SQL in store/sync_sql.rs (`impl_sync_queries!`) ----------
            async fn insert_sync_target(
                &self,
                target: &crate::domain::sync_target::SyncTarget,
                lease: Option<(&str, Timestamp)>,
                audit: AuditRecord,
            ) -> Result<()> {
                self.sync_insert(target, lease, audit).await
            }

            async fn sync_targets(
                &self,
                credential_id: &str,
            ) -> Result<Vec<crate::domain::sync_target::SyncTarget>> {
                self.sync_list(credential_id).await
            }

            async fn delete_sync_target(
                &self,
                credential_id: &str,
                target_id: &str,
                audit: AuditRecord,
            ) -> Result<bool> {
                self.sync_delete(credential_id, target_id, audit).await
            }

            async fn claim_due_sync_targets(
                &self,
                now: Timestamp,
                owner: &str,
                lease_until: Timestamp,
                limit: i64,
            ) -> Result<Vec<crate::domain::sync_target::SyncTarget>> {
                self.sync_claim_due(now, owner, lease_until, limit).await
            }

            async fn claim_sync_target(
                &self,
                target_id: &str,
                now: Timestamp,
                owner: &str,
                lease_until: Timestamp,
            ) -> Result<Option<crate::domain::sync_target::SyncTarget>> {
                self.sync_claim_one(target_id, now, owner, lease_until).await
            }

            async fn finish_sync_target(
                &self,
                target: &crate::domain::sync_target::SyncTarget,
                owner: &str,
                audit: Option<AuditRecord>,
            ) -> Result<bool> {
                self.sync_finish(target, owner, audit).await
            }

            async fn sync_target_counts(&self) -> Result<Vec<(String, i64)>> {
                self.sync_counts().await
            }
            // ---- end of sync targets ------------------------------------------------------

            // ---- Role trusts: SQL in store/trust_sql.rs (`impl_trust_queries!`) ---------
            async fn insert_trust(&self, trust: &crate::store::TrustRow, audit: AuditRecord) -> Result<()> {
                self.trust_insert(trust, audit).await
            }

            async fn trusts(&self, role_id: &str) -> Result<Vec<crate::store::TrustRow>> {
                self.trust_list(role_id).await
            }

            async fn delete_trust(&self, role_id: &str, trust_id: &str, audit: AuditRecord) -> Result<bool> {
                self.trust_delete(role_id, trust_id, audit).await
            }

            async fn insert_exchanged_token(
                &self,
                token: &ApiTokenRow,
                trust_id: &str,
                audit: AuditRecord,
            ) -> Result<()> {
                self.trust_insert_token(token, trust_id, audit).await
            }

            async fn prune_exchanged_tokens(&self, now: Timestamp, limit: i64) -> Result<u64> {
                self.trust_prune_tokens(now, limit).await
            }
            // ---- end of role trusts ----------------------------------------------------
        }

        crate::store::sync_sql::impl_sync_queries!($store);
        crate::store::access_sql::impl_access_queries!($store);
        crate::store::trust_sql::impl_trust_queries!($store);
    };
}

pub(super) use impl_store;

#[cfg(test)]
mod tests {
    use super::{covering_prefixes, database_error};
    use crate::domain::Error;

    #[test]
    fn an_unreachable_database_is_unavailable_not_internal() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(refused),
        ] {
            let mapped = database_error(error);
            assert!(
                matches!(
                    mapped,
                    Error::Unavailable {
                        code: "database_unavailable",
                        ..
                    }
                ),
                "{mapped:?}"
            );
        }
        assert!(matches!(
            database_error(sqlx::Error::RowNotFound),
            Error::Internal(_)
        ));
    }

    /// Issue 12 item 10: every "database unreachable or refusing" SQLSTATE is a 503, not a 500.
    #[test]
    fn a_refusing_database_is_unavailable_whatever_it_answers() {
        use super::refusing;
        for (sqlstate, message) in [
            (
                "55000",
                "database \"x\" is not currently accepting connections",
            ),
            (
                "57P01",
                "terminating connection due to administrator command",
            ),
            ("57P03", "the database system is starting up"),
            ("53300", "sorry, too many clients already"),
            ("25006", "cannot execute INSERT in a read-only transaction"),
            ("08006", "connection failure"),
        ] {
            assert!(refusing(sqlstate, message), "{sqlstate}");
        }
        assert!(!refusing("55000", "currval of sequence is not yet defined"));
        assert!(!refusing("23505", "duplicate key"));
        assert!(!refusing("42P01", "relation does not exist"));
    }

    #[test]
    fn covering_prefixes_are_whole_components() {
        assert_eq!(covering_prefixes(""), [""]);
        assert_eq!(covering_prefixes("app"), ["", "app"]);
        assert_eq!(
            covering_prefixes("team/tools/app"),
            ["", "team", "team/tools", "team/tools/app"]
        );
        assert_eq!(covering_prefixes("/team/app/"), ["", "team", "team/app"]);
    }
}
