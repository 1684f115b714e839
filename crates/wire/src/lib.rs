//! The JSON bodies that cross process boundaries: the REST API, shared by the server and
//! the thin clients. Serde only (plus optional OpenAPI schemas), so the node-side binaries
//! stay small. One more thing both sides share: [`text`], how untrusted text is shown to
//! a person (escaped, bounded, without secrets).
//!
//! Timestamps are RFC 3339 strings in UTC. Request bodies reject unknown fields, so a
//! misspelt field is an error rather than a silently ignored setting. Every REST body
//! is camelCase; `docker_helper` and `kubelet` are other programs' protocols and keep
//! their field names.
//!
//! [`Resolved::secret`] is the one response field that carries a registry secret;
//! `Credential.token` describes a minted token without the token, and is absent until
//! the credential's first resolve links it to one. This crate depends on nothing
//! server-side and holds no logic beyond (de)serialisation.

mod administration;
pub mod docker_helper;
mod federation;
pub mod kubelet;
mod operations;
mod sensitive;
mod sync_targets;
pub mod text;

pub use administration::{RoleGrant, RoleGrantInput, RoleGrantList, UserDeleted, UserDisabled};
pub use federation::{
    ExchangeInput, Exchanged, SignInInput, SignInStart, SignInStarted, SignedIn, Trust, TrustInput,
    TrustList,
};
pub use operations::{MeToken, ServerVersion};
pub use sensitive::Sensitive;
pub use sync_targets::{SyncTarget, SyncTargetCreated, SyncTargetInput, SyncTargetList};

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The error body of every non-2xx response: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `credential_exists`.
    pub code: String,
    /// A human-readable, actionable message. Never contains a secret.
    pub message: String,
}

/// Fields of a credential that may be given on create and update.
///
/// On create, `name`, `registry` and (unless `ambient`) `username` and `password` are
/// required. On update, every field is optional and only the given ones change;
/// `password` replaces the stored secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Registry server: a host with an optional port and path, e.g. `ghcr.io/acme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// `auto` (the default), `docker`, `ecr`, `acr` or `gcr`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The secret: a password or token, an AWS secret access key, an Azure client
    /// secret, or a Google service-account JSON key. Write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub password: Option<Sensitive>,
    /// An AWS session token to go with temporary access keys. Write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub session_token: Option<Sensitive>,
    /// Repository path prefix this credential serves, e.g. `team/app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Use the server's own AWS identity (only when the server allows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambient: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    /// Azure AD tenant of a service principal (ACR); absent for repository-scoped tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_tenant_id: Option<String>,
    /// Read the login from this AWS Secrets Manager secret (name or ARN) at resolve
    /// time instead of storing it: a `docker` credential with auth method `aws_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret: Option<String>,
    /// The `ecr` credential of the same workspace whose AWS identity reads `awsSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_identity: Option<String>,
    /// `USER,PASS`: the secret's JSON keys of the user name and password, when they are
    /// not ECS's `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_keys: Option<String>,
    /// Log in to the registry before storing (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// Who creates the credential: `user` (the default) or `helper`, which the docker
    /// credential helper's `store` sends so that its `store` and `erase` later touch
    /// only what it created. Fixed at creation; on an update it is a condition instead:
    /// the update is refused (409 `origin_mismatch`) unless the credential has this
    /// origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// A credential as the API shows it: metadata only, never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// Immutable id; a credential re-created under the same name gets a new one.
    pub id: String,
    pub name: String,
    pub workspace: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// How the secret is used, e.g. `password`, `aws_keys`, `aws_role`, `aws_ambient`,
    /// `acr_token`, `azure_service_principal`, `gcp_json_key`, `gcp_access_token`,
    /// `aws_secret` (read from AWS Secrets Manager).
    pub auth_method: String,
    pub registry: String,
    pub path_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_tenant_id: Option<String>,
    /// `aws_secret` credentials: the Secrets Manager secret the login is read from, the
    /// `ecr` credential whose identity reads it, and the JSON keys (`USER,PASS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_keys: Option<String>,
    /// Whether a secret is stored (never the secret itself).
    pub has_secret: bool,
    /// Increments whenever the secret is replaced.
    pub secret_version: i64,
    pub verification: Verification,
    /// The minted token in use, for types that mint one (never the token itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenStatus>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
    /// `user` (added with the CLI, the API or the console) or `helper` (created by a
    /// `docker login` through `docker-credential-regkeeper store`). Absent from servers
    /// older than origins, which reads as neither.
    #[serde(default)]
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// `fresh`, `stale` (a refresh failed; still valid), `expired`, or `pending` (no
    /// mint has succeeded yet; `lastError` says why).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub refresh_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// `unverified`, `skipped`, `ok`, `unverifiable` (the registry asks for no
    /// credentials, so the login could not be checked; `message` says so) or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CredentialList {
    pub credentials: Vec<Credential>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    pub name: String,
    /// Site administrators may create users and read the whole audit log.
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub admin: bool,
    pub personal_workspace: String,
    pub created_at: String,
    /// Disabled users cannot sign in; their tokens were revoked.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserList {
    pub users: Vec<User>,
}

/// A new user together with their first API token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserCreated {
    pub user: User,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub token: Sensitive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkspaceInput {
    /// `ORG/NAME`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub name: String,
    /// `personal` or `organization`.
    pub kind: String,
    /// The caller's role in it.
    pub role: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WorkspaceList {
    pub workspaces: Vec<Workspace>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    /// `owner`, `admin`, `maintain`, `launch` or `view`.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user: String,
    pub role: String,
    pub added_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MemberList {
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiTokenInput {
    pub name: String,
    /// Lifetime in seconds; absent for a token that does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// The first characters of the token, enough to recognise it, e.g. `rk_Ab12Cd`.
    pub prefix: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiTokenList {
    pub tokens: Vec<ApiToken>,
}

/// A new API token, whose secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiTokenCreated {
    #[serde(flatten)]
    pub token: ApiToken,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub secret: Sensitive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The user's name, or a workload role's reference `rk:WS:role/NAME`.
    pub user: String,
    pub admin: bool,
    /// The workspace commands use without `--workspace`: the user's personal one, or
    /// the workload role's own.
    pub personal_workspace: String,
    /// Set when the token belongs to a workload role: its reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The token this request was made with; absent from servers before `whoami`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<MeToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `success`, `denied` (refused), `not_found` (allowed to look, nothing matched) or
    /// `failed`.
    pub outcome: String,
    /// Non-secret details (JSON object); a refused or failed attempt's are `error` (the
    /// error code) and `reason`.
    pub detail: serde_json::Value,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    pub ok: bool,
    pub entries_checked: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    pub previous_version: u32,
    pub current_version: u32,
    /// Data keys re-wrapped under the new master key version.
    pub rewrapped: u64,
    /// Sealed values that could not be opened, left as they were (only with
    /// `skipUnreadable`), e.g. `credential rk:acme/ci:credential/app`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Options of a master-key rotation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyRotateInput {
    /// Rotate even if some sealed values cannot be opened, leaving those as they are;
    /// without it such values refuse the rotation (422), naming each, nothing changed.
    #[serde(default)]
    pub skip_unreadable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// `available` or `unavailable`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `matches`, or `differs` when the key file no longer holds the keys the server
    /// loaded (replaced, removed or unreadable; checked every 10 s). Absent while the
    /// keys are unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// How the key file differs, never a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file_problem: Option<String>,
    /// Where the keyring lives, as this server loaded it: `key file PATH` or
    /// `AWS KMS key KEY-ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// How the server's settings differ from where the database says the keyring lives
    /// (the server follows the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_mismatch: Option<String>,
    /// A move of the keyring between homes under way, and how to finish it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
}

/// Where to move the keyring: exactly one of `toKms` and `toFile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyMigrateInput {
    /// An AWS KMS key id, ARN or alias that will wrap the keyring in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_kms: Option<String>,
    /// A key file path on the server (created; never over another file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_file: Option<String>,
    /// As for a rotation: leave values that cannot be opened as they are.
    #[serde(default)]
    pub skip_unreadable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyMigration {
    /// Where the keyring lived when this request began.
    pub from: String,
    pub to: String,
    pub previous_version: u32,
    /// The master key version generated in the new home; data keys are wrapped by it.
    pub current_version: u32,
    /// Data keys this request re-wrapped (a resumed migration counts only its own).
    pub rewrapped: u64,
    /// Whether this request finished a migration an interrupted one had begun.
    pub resumed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Ask for working registry credentials for an image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResolveInput {
    /// An image reference such as `ghcr.io/acme/app:1` or `alpine`: the credential for
    /// its registry host with the longest path prefix covering its repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A registry server (`host[:port]`, scheme and path ignored) for consumers that
    /// know only the registry, such as a docker credential helper: the host's
    /// credential without a path prefix, else its one credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// A credential to use instead of the best match: a bare name in the workspace,
    /// or a full reference `rk:WS:credential/NAME` where a policy grants it. With
    /// `image` or `registry` too, the credential must serve that registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Explain instead of resolving: the answer is a [`ResolveExplanation`] (which
    /// credentials were candidates, which one a resolve picks and why), and no
    /// secret is opened or token minted. Same permissions as a resolve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explain: bool,
}

/// The answer of a resolve call: the credentials, or with `"explain": true` why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(untagged)]
pub enum ResolveAnswer {
    Resolved(Resolved),
    Explained(ResolveExplanation),
}

/// Why a resolve picks the credential it picks (`regkeeper resolve --explain`). Holds
/// names, prefixes and policy statements, never a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResolveExplanation {
    /// The workspace searched.
    pub workspace: String,
    /// The registry host asked for (from the image or the server), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The repository asked for, if any (empty for a registry alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// `resolved` (a resolve would hand `chosen` out), `denied` (the caller's policy
    /// refuses `chosen`), `no_match` (no credential serves it) or `mismatch` (the
    /// named credential serves another registry).
    pub outcome: String,
    /// The credential a resolve picks, `rk:WS:credential/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<String>,
    /// Why, in a sentence.
    pub reason: String,
    /// The credentials considered: those of the registry host (or the one named),
    /// the chosen one first. A workload role sees only those its policy allows, and
    /// the chosen one.
    pub candidates: Vec<ResolveCandidate>,
}

/// One credential a resolve considered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResolveCandidate {
    /// `rk:WS:credential/NAME`.
    pub reference: String,
    /// `docker`, `ecr`, `acr` or `gcr`.
    #[serde(rename = "type")]
    pub kind: String,
    pub registry: String,
    /// Its repository path prefix, empty for the whole registry.
    pub path_prefix: String,
    /// Whether its host matches and its prefix covers the repository asked for.
    pub matches: bool,
    pub chosen: bool,
    /// Why it was or was not chosen.
    pub reason: String,
    /// Its minted token's status (`fresh`, `stale`, …), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_status: Option<String>,
    /// For a workload role: what its policy says about resolving this credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyVerdict>,
}

/// A workload role's policy decision on one credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyVerdict {
    /// `allow`, `deny` (an explicit Deny statement) or `implicit_deny` (no statement
    /// allows it).
    pub decision: String,
    /// The deciding statement's position in the policy, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<usize>,
    /// That statement's `Sid`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Working registry credentials, as `regkeeper resolve` prints them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    pub username: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub secret: Sensitive,
    /// When the secret stops working; absent for one that does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The registry host the credentials are for.
    pub registry: String,
    /// The repository path prefix the credential is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The credential's full reference, `rk:WS:credential/NAME`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    /// Until when a consumer may cache these credentials: the token's refresh point
    /// (or a minute ahead when it is past it); absent for a stored password, which a
    /// consumer should re-read every few minutes to notice an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_until: Option<String>,
}

/// Verify a stored credential against its registry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifyInput {
    /// Also check pull access to this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Also learn whether the credential may push to `repository` by opening a blob
    /// upload there and cancelling it at once; push granted is reported as a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_push: Option<bool>,
}

/// Create or change a workload role. On create `name` and `policy` are required; on
/// update only the given fields change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An IAM-like policy document: `{"Version":"2026-11-01","Statement":[{"Sid",
    /// "Effect":"Allow"|"Deny","Action":["credentials:Resolve"],"Resource":
    /// ["rk:WS:credential/NAME"]}]}`; `*` wildcards in actions and resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub policy: Option<serde_json::Value>,
}

/// A workload role: a non-human principal whose API tokens carry its policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub name: String,
    pub workspace: String,
    /// `rk:WS:role/NAME`, also the actor of its audit entries.
    pub reference: String,
    pub description: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub policy: serde_json::Value,
    /// The credential each exact Allow resource was bound to when the policy was saved.
    pub bindings: Vec<PolicyBinding>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyBinding {
    pub resource: String,
    pub credential_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RoleList {
    pub roles: Vec<Role>,
}

/// Ask how a role's policy decides one action on one credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimulationInput {
    /// `credentials:Resolve` or `credentials:Describe`.
    pub action: String,
    /// A credential name in the role's workspace, or `rk:WS:credential/NAME`.
    pub reference: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    /// `allow`, `explicit_deny` or `implicit_deny`.
    pub decision: String,
    /// The full reference evaluated.
    pub reference: String,
    /// Whether the credential exists now (an exact Allow matches only the one it was
    /// bound to).
    pub exists: bool,
    /// The index of the deciding statement, and its Sid if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// For a credential in another workspace that the caller can see: whether that
    /// workspace holds a grant in force for the role, without which an Allow does
    /// nothing there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_in_force: Option<bool>,
}
