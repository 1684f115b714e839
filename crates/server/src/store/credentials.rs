//! Credentials: a named registry login per workspace, its sealed secret, its
//! type-specific settings (JSON text), and the minted token it uses, joined in on read.
//! A resolve finds the credential that serves a repository with
//! [`best_credential_for`], which reads only the index entries that could match.

use serde::{Deserialize, Serialize};

use super::audit_log::{change_one_audited, commit_audited};
use super::backend::{Backend, RowsAffected as _};
use super::errors::{conflict_or, OrDatabase};
use super::keys::{sealed_columns, SealedColumns};
use super::sql::{execute_alone, SqlStore};
use crate::audit::AuditRecord;
use crate::domain::credential::{
    AuthMethod, AwsSecretSource, Credential, CredentialKind, CredentialOrigin, CredentialSettings,
    TokenState, Verification, VerificationStatus,
};
use crate::domain::{Error, Result};

/// A credential's columns as [`CredentialRecord`] reads them, with its workspace's
/// name and its token's state, from [`CREDENTIAL_FROM`].
const CREDENTIAL_COLUMNS: &str = "c.id, c.workspace_id, w.name AS workspace_name, \
    c.name, c.kind, c.auth_method, c.registry_host, c.path_prefix, c.username, c.settings, \
    c.secret_ciphertext, c.secret_wrapped_key, c.secret_key_version, c.secret_version, \
    c.revision, c.created_at, c.updated_at, c.created_by, c.origin, c.verify_status, \
    c.verify_message, c.verified_at, t.status AS token_status, t.expires_at AS token_expires_at, \
    t.refresh_at AS token_refresh_at, t.last_error AS token_last_error";

/// The credential tables as the credential queries read them.
const CREDENTIAL_FROM: &str = "credentials c JOIN workspaces w ON w.id = c.workspace_id \
    LEFT JOIN registry_tokens t ON t.identity = c.token_identity";

/// The message of a credential name that is taken.
fn name_taken(credential: &Credential) -> String {
    format!(
        "a credential named {} already exists in {} (names are unique without regard to case)",
        credential.name, credential.workspace_name
    )
}

/// Type-specific settings as stored in the `settings` column (JSON text).
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StoredSettings {
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
    /// `aws_secret` credentials: where the login is read from (names, never values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws_secret: Option<StoredAwsSecret>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredAwsSecret {
    secret_id: String,
    identity_id: String,
    identity_name: String,
    username_key: String,
    password_key: String,
}

fn settings_to_text(settings: &CredentialSettings) -> String {
    serde_json::to_string(&StoredSettings {
        role_arn: settings.role_arn.clone(),
        external_id: settings.external_id.clone(),
        ambient: settings.ambient,
        aws_region: settings.aws_region.clone(),
        azure_tenant_id: settings.azure_tenant_id.clone(),
        aws_secret: settings.aws_secret.as_ref().map(|source| StoredAwsSecret {
            secret_id: source.secret_id.clone(),
            identity_id: source.identity_id.clone(),
            identity_name: source.identity_name.clone(),
            username_key: source.username_key.clone(),
            password_key: source.password_key.clone(),
        }),
    })
    .expect("settings serialize")
}

fn settings_from_text(text: &str) -> Result<CredentialSettings> {
    let stored: StoredSettings = serde_json::from_str(text)
        .map_err(|error| Error::internal(format!("stored credential settings: {error}")))?;
    Ok(CredentialSettings {
        role_arn: stored.role_arn,
        external_id: stored.external_id,
        ambient: stored.ambient,
        aws_region: stored.aws_region,
        azure_tenant_id: stored.azure_tenant_id,
        aws_secret: stored.aws_secret.map(|source| AwsSecretSource {
            secret_id: source.secret_id,
            identity_id: source.identity_id,
            identity_name: source.identity_name,
            username_key: source.username_key,
            password_key: source.password_key,
        }),
    })
}

#[derive(sqlx::FromRow)]
struct CredentialRecord {
    id: String,
    workspace_id: String,
    workspace_name: String,
    name: String,
    kind: String,
    auth_method: String,
    registry_host: String,
    path_prefix: String,
    username: Option<String>,
    settings: String,
    #[sqlx(flatten)]
    sealed: SealedColumns,
    secret_version: i64,
    revision: i64,
    created_at: i64,
    updated_at: i64,
    created_by: String,
    origin: String,
    verify_status: String,
    verify_message: Option<String>,
    verified_at: Option<i64>,
    token_status: Option<String>,
    token_expires_at: Option<i64>,
    token_refresh_at: Option<i64>,
    token_last_error: Option<String>,
}

impl TryFrom<CredentialRecord> for Credential {
    type Error = Error;

    fn try_from(record: CredentialRecord) -> Result<Self> {
        // Both columns are NOT NULL in `registry_tokens`: they are there together,
        // exactly when the credential's token row is.
        let token = match (record.token_status, record.token_refresh_at) {
            (Some(status), Some(refresh_at)) => Some(TokenState {
                status: status.parse()?,
                expires_at: record.token_expires_at,
                refresh_at,
                last_error: record.token_last_error,
            }),
            _ => None,
        };
        Ok(Credential {
            id: record.id,
            workspace_id: record.workspace_id,
            workspace_name: record.workspace_name,
            name: record.name,
            kind: CredentialKind::parse_stored(&record.kind)?,
            auth_method: AuthMethod::parse(&record.auth_method)?,
            registry_host: record.registry_host,
            path_prefix: record.path_prefix,
            username: record.username,
            settings: settings_from_text(&record.settings)?,
            sealed: record.sealed.into_sealed()?,
            secret_version: record.secret_version,
            revision: record.revision,
            created_at: record.created_at,
            updated_at: record.updated_at,
            created_by: record.created_by,
            origin: CredentialOrigin::parse_stored(&record.origin)?,
            verification: Verification {
                status: VerificationStatus::parse(&record.verify_status)?,
                checked_at: record.verified_at,
                message: record.verify_message,
            },
            token,
        })
    }
}

/// Credentials as read by a statement.
fn credentials_from(records: Vec<CredentialRecord>) -> Result<Vec<Credential>> {
    records.into_iter().map(Credential::try_from).collect()
}

/// Binds a credential's state, `name` to `revision` in column order: what both the
/// INSERT and the UPDATE of a credential set, whatever they bind around it.
fn bind_credential_state<'q, DB: Backend>(
    query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    credential: &'q Credential,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>> {
    let (ciphertext, wrapped_key, key_version) = sealed_columns(credential.sealed.as_ref());
    query
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
}

/// The path prefixes that cover `repository` on whole components, shortest first: `""`,
/// `a`, `a/b`, … up to the repository itself.
fn covering_prefixes(repository: &str) -> Vec<&str> {
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

pub(super) async fn insert_credential<DB: Backend>(
    store: &SqlStore<DB>,
    credential: &Credential,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    bind_credential_state(
        sqlx::query(
            "INSERT INTO credentials (id, workspace_id, name, kind, auth_method, registry_host, \
             path_prefix, username, settings, secret_ciphertext, secret_wrapped_key, \
             secret_key_version, secret_version, revision, created_at, updated_at, created_by, \
             verify_status, verify_message, verified_at, origin, name_folded) VALUES ($1, $2, $3, $4, \
             $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, lower($3))",
        )
        .bind(&credential.id)
        .bind(&credential.workspace_id),
        credential,
    )
    .bind(credential.created_at)
    .bind(credential.updated_at)
    .bind(&credential.created_by)
    .bind(credential.verification.status.as_str())
    .bind(&credential.verification.message)
    .bind(credential.verification.checked_at)
    .bind(credential.origin.as_str())
    .execute(&mut *transaction)
    .await
    .map_err(|error| conflict_or(error, "credential_exists", name_taken(credential)))?;
    commit_audited(transaction, audit).await
}

pub(super) async fn credential<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    name: &str,
) -> Result<Option<Credential>> {
    // Without regard to case; the exact spelling first, so each of two names that
    // differed only by case before migration 0008 stays reachable.
    let credential: Option<CredentialRecord> = sqlx::query_as(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.workspace_id = $1 \
         AND (c.name = $2 OR c.name_folded = lower($2)) \
         ORDER BY CASE WHEN c.name = $2 THEN 0 ELSE 1 END LIMIT 1"
    ))
    .bind(workspace_id)
    .bind(name)
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    credential.map(Credential::try_from).transpose()
}

pub(super) async fn credentials<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
) -> Result<Vec<Credential>> {
    credentials_from(
        sqlx::query_as(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.workspace_id = $1 ORDER BY c.name"
        ))
        .bind(workspace_id)
        .fetch_all(&store.pool)
        .await
        .or_db()?,
    )
}

pub(super) async fn best_credential_for<DB: Backend>(
    store: &SqlStore<DB>,
    workspace_id: &str,
    host: &str,
    repository: &str,
) -> Result<Option<Credential>> {
    // Only the prefixes that could cover the repository are looked up: '' and each run
    // of its leading whole components. With the index on (workspace, host, prefix) a
    // resolve reads a handful of index entries and one row, however many credentials
    // the host has.
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
    let mut query = sqlx::query_as(&statement).bind(workspace_id).bind(host);
    for candidate in &candidates {
        query = query.bind(*candidate);
    }
    let credential: Option<CredentialRecord> = query.fetch_optional(&store.pool).await.or_db()?;
    credential.map(Credential::try_from).transpose()
}

pub(super) async fn update_credential<DB: Backend>(
    store: &SqlStore<DB>,
    credential: &Credential,
    expected_revision: i64,
    audit: AuditRecord,
) -> Result<()> {
    let mut transaction = store.begin_write().await?;
    let updated = bind_credential_state(
        sqlx::query(
            "UPDATE credentials SET name = $1, kind = $2, auth_method = $3, registry_host = $4, \
             path_prefix = $5, username = $6, settings = $7, secret_ciphertext = $8, \
             secret_wrapped_key = $9, secret_key_version = $10, secret_version = $11, \
             revision = $12, updated_at = $13, verify_status = $14, verify_message = $15, \
             verified_at = $16, \
             name_folded = CASE WHEN name = $1 THEN name_folded ELSE lower($1) END \
             WHERE id = $17 AND revision = $18",
        ),
        credential,
    )
    .bind(credential.updated_at)
    .bind(credential.verification.status.as_str())
    .bind(&credential.verification.message)
    .bind(credential.verification.checked_at)
    .bind(&credential.id)
    .bind(expected_revision)
    .execute(&mut *transaction)
    .await
    .map_err(|error| conflict_or(error, "credential_exists", name_taken(credential)))?
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
    commit_audited(transaction, audit).await
}

pub(super) async fn delete_credential<DB: Backend>(
    store: &SqlStore<DB>,
    credential_id: &str,
    audit: AuditRecord,
) -> Result<bool> {
    change_one_audited(
        store,
        "DELETE FROM credentials WHERE id = $1",
        &[credential_id],
        audit,
    )
    .await
}

pub(super) async fn link_token_identity<DB: Backend>(
    store: &SqlStore<DB>,
    credential_id: &str,
    identity: Option<&str>,
) -> Result<()> {
    let link = sqlx::query("UPDATE credentials SET token_identity = $1 WHERE id = $2")
        .bind(identity)
        .bind(credential_id);
    execute_alone(store, link).await?;
    Ok(())
}

pub(super) async fn credential_by_token_identity<DB: Backend>(
    store: &SqlStore<DB>,
    identity: &str,
) -> Result<Option<Credential>> {
    let credential: Option<CredentialRecord> = sqlx::query_as(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.token_identity = $1 \
         ORDER BY c.created_at LIMIT 1"
    ))
    .bind(identity)
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    credential.map(Credential::try_from).transpose()
}

#[cfg(test)]
mod tests {
    use super::covering_prefixes;

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
