//! Sync targets: where the server pushes a credential's current login after every
//! refresh (`/api/v1/workspaces/{ws}/credentials/{name}/sync-targets`).

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::Sensitive;

/// A new sync target. `type` picks which of the other fields apply:
/// `file` takes `path`; `kubernetes` takes `namespaces` and optionally `secretName`;
/// `webhook` takes `url` and optionally `signingKey`; `aws_secret` takes `awsSecret`,
/// `awsIdentity`, and optionally `awsRegion` and `adopt`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncTargetInput {
    /// `file`, `kubernetes`, `webhook` or `aws_secret`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A docker `config.json` path, relative to the workspace's directory under the
    /// server's sync root (`REGKEEPER_SYNC_FILE_ROOT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Kubernetes namespaces to keep a Secret in (the server's allow-list applies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The Secret's name; default `regkeeper-` and the credential name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The `https` URL that receives a signed POST after every refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The webhook's HMAC-SHA256 key, if you bring your own (at least 32 characters);
    /// otherwise the server makes one and returns it once. Write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub signing_key: Option<Sensitive>,
    /// An AWS Secrets Manager secret (name or ARN) that receives the login as
    /// `{"username","password"}`, the format ECS's `repositoryCredentials` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret: Option<String>,
    /// The secret's region; default: the ARN's, else the identity credential's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    /// The `ecr` credential of the same workspace whose AWS identity writes the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_identity: Option<String>,
    /// Take over (and tag) an existing secret regkeeper did not create.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// A sync target and how its pushes are going (never what it pushes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyncTarget {
    pub id: String,
    /// The credential's name.
    pub credential: String,
    pub workspace: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// One line: the path, `NAMESPACES/SECRET`, the URL, or the secret's name or ARN.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_identity: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// Whether a webhook signing key is stored (never the key).
    pub has_signing_key: bool,
    /// `pending` (not delivered yet, or the credential changed since), `ok` or
    /// `failing` (retried with backoff).
    pub status: String,
    /// Consecutive failed pushes.
    pub failures: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    /// When the next push is due; absent while the target is up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SyncTargetList {
    pub targets: Vec<SyncTarget>,
}

/// A new sync target, after its first push. A generated webhook signing key is shown
/// this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyncTargetCreated {
    #[serde(flatten)]
    pub target: SyncTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub signing_key: Option<Sensitive>,
}
