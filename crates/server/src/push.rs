//! Pushing a login to sync targets: a docker `config.json` below the operator's sync
//! root, Kubernetes `kubernetes.io/dockerconfigjson` Secrets, a signed HTTPS webhook,
//! an AWS Secrets Manager secret in ECS's format (`aws_secret`, with a client the
//! service builds from the target's identity credential).
//! Knows how to write each destination and nothing about credentials, leases or
//! schedules (`service::sync_targets` decides what to push, when, and records the result).
//!
//! Every destination is confined by operator settings, never by what a tenant asked
//! for: files stay below `REGKEEPER_SYNC_FILE_ROOT/WORKSPACE/` (`file`), Secrets go
//! only to `REGKEEPER_SYNC_KUBERNETES_NAMESPACES` and only over Secrets regkeeper made
//! for the same workspace (`kubernetes`), webhooks go through the guarded
//! `outbound` client without following redirects (`webhook`), and Secrets Manager
//! secrets are written only over secrets regkeeper tagged for the same credential,
//! unless the target adopts them (`aws_secret`).
//!
//! [`Pushers`] (in `App`, built at start from the operator's sync settings) first
//! `check`s that a destination is enabled at all — a file root, a cluster, an allowed
//! namespace, a webhook URL `outbound` accepts — then `push`es. A [`Delivery`] prints
//! its secret redacted, and `scrub` removes the secret (and its Basic form) from a
//! destination's error before it is stored or shown; [`SyncError`] messages name only
//! relative paths, namespaces and hosts. This module opens no connection to a
//! tenant-chosen host except through `outbound`.

pub mod aws_secret;
mod file;
mod kubernetes;
pub mod webhook;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::config::SyncConfig;
use crate::domain::credential::Timestamp;
use crate::domain::registry::DOCKER_HUB;
use crate::domain::sync_target::{SyncDestination, SyncTarget};
use crate::outbound::{OutboundClient, OutboundError};

/// The `auths` key docker, podman and the kubelet look Docker Hub up under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The key a login is filed under in a docker config: the registry's `host[:port]`,
/// or `host[:port]/prefix` for a credential limited to a path prefix (podman, skopeo,
/// crane and the kubelet match such keys by longest prefix; the docker CLI itself
/// reads host keys only).
pub fn server_address(registry_host: &str, path_prefix: &str) -> String {
    match (registry_host, path_prefix) {
        (DOCKER_HUB, "") => DOCKER_HUB_KEY.to_owned(),
        (host, "") => host.to_owned(),
        (host, prefix) => format!("{host}/{prefix}"),
    }
}

/// What one push delivers: a credential's current login and where it comes from.
pub struct Delivery {
    /// A fresh id for this delivery attempt (the webhook's event id).
    pub event_id: String,
    pub target_id: String,
    pub credential_id: String,
    pub credential_name: String,
    pub workspace_id: String,
    pub workspace_name: String,
    /// `rk:WS:credential/NAME`.
    pub reference: String,
    pub registry: String,
    pub path_prefix: String,
    /// The docker config key ([`server_address`]).
    pub server_address: String,
    pub username: String,
    pub secret: SecretString,
    pub expires_at: Option<Timestamp>,
    /// When the push was made (the webhook's timestamp).
    pub at: Timestamp,
    /// The same for every push of the same login to the same target, and unrelated to
    /// the secret for anyone without the master key (64 hex digits): Secrets Manager's
    /// `ClientRequestToken`.
    pub idempotency_key: String,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Delivery")
            .field("target_id", &self.target_id)
            .field("reference", &self.reference)
            .field("server_address", &self.server_address)
            .field("username", &self.username)
            .field("secret", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// `base64(username:secret)`, the `auth` of a docker config entry.
    fn basic_auth(&self) -> Zeroizing<String> {
        let pair = Zeroizing::new(format!("{}:{}", self.username, self.secret.expose_secret()));
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()))
    }

    /// Removes anything secret-shaped from a message about this delivery (an error a
    /// destination answered with), so it can be stored and shown.
    pub fn scrub(&self, message: &str) -> String {
        let secret = self.secret.expose_secret();
        let auth = self.basic_auth();
        let mut clean = message.to_owned();
        for value in [secret, auth.as_str()] {
            if value.len() >= 4 {
                clean = clean.replace(value, "[REDACTED]");
            }
        }
        clean.chars().take(500).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "file sync targets are disabled on this server: an operator must set REGKEEPER_SYNC_FILE_ROOT"
    )]
    FileDisabled,
    #[error(
        "Kubernetes sync targets are disabled on this server: an operator must set REGKEEPER_SYNC_KUBECONFIG"
    )]
    KubernetesDisabled,
    #[error("namespace {0} is not allowed on this server (REGKEEPER_SYNC_KUBERNETES_NAMESPACES)")]
    NamespaceNotAllowed(String),
    #[error(
        "{path} leads outside this workspace's sync directory (through `..` or a symbolic link)"
    )]
    PathEscapes { path: String },
    #[error(
        "{path} is a symbolic link or not a regular file; regkeeper replaces only regular files"
    )]
    NotRegularFile { path: String },
    #[error(
        "{path} is not a docker config (a JSON object whose `auths` is an object); fix or remove it"
    )]
    ExistingFileInvalid { path: String },
    #[error("cannot write {path}: {message}")]
    File { path: String, message: String },
    #[error(
        "Secret {namespace}/{name} exists and was not made by regkeeper for this workspace; \
         delete it or choose another Secret name"
    )]
    SecretNotManaged { namespace: String, name: String },
    #[error("Kubernetes API, namespace {namespace}: {message}")]
    Kubernetes { namespace: String, message: String },
    #[error("{first} (and {more} more namespaces failed)")]
    Several { first: Box<SyncError>, more: usize },
    #[error("the target has no signing key")]
    NoSigningKey,
    #[error("webhook: {0}")]
    Webhook(OutboundError),
    #[error(
        "the webhook answered HTTP {0}; it must answer 2xx (redirects are not followed, since \
         the body carries a secret)"
    )]
    WebhookStatus(u16),
    #[error("the push did not finish within {0} seconds")]
    Timeout(u64),
    #[error(
        "Secrets Manager secret {secret} exists and was not made by regkeeper for this credential{}; \
         add the target with --adopt to take it over, or choose another secret",
        .owner.as_ref().map(|owner| format!(" (it is tagged for {owner})")).unwrap_or_default()
    )]
    AwsSecretNotManaged {
        secret: String,
        owner: Option<String>,
    },
    #[error("Secrets Manager secret {secret}: {message}")]
    AwsSecret {
        secret: String,
        code: &'static str,
        message: String,
    },
    #[error("the target has no Secrets Manager client")]
    AwsClientMissing,
}

impl SyncError {
    /// A stable snake_case code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::FileDisabled => "sync_file_disabled",
            Self::KubernetesDisabled => "sync_kubernetes_disabled",
            Self::NamespaceNotAllowed(_) => "namespace_not_allowed",
            Self::PathEscapes { .. } => "path_escapes_root",
            Self::NotRegularFile { .. } => "not_a_regular_file",
            Self::ExistingFileInvalid { .. } => "existing_file_invalid",
            Self::File { .. } => "file_write_failed",
            Self::SecretNotManaged { .. } => "secret_not_managed",
            Self::Kubernetes { .. } => "kubernetes_failed",
            Self::Several { first, .. } => first.code(),
            Self::NoSigningKey => "signing_key_missing",
            Self::Webhook(error) => error.code(),
            Self::WebhookStatus(_) => "webhook_refused",
            Self::Timeout(_) => "sync_timeout",
            Self::AwsSecretNotManaged { .. } => "secret_not_managed",
            Self::AwsSecret { code, .. } => code,
            Self::AwsClientMissing => "aws_identity_missing",
        }
    }
}

/// The destinations this server can write, from its configuration.
pub struct Pushers {
    config: SyncConfig,
    /// Serialises file writes in this process, so two targets sharing one file never
    /// lose each other's entry between read and rename.
    file_lock: tokio::sync::Mutex<()>,
    kubernetes: Option<kube::Client>,
    outbound: OutboundClient,
}

impl Pushers {
    /// Connects nothing yet; a Kubernetes client is built (kubeconfig or in-cluster
    /// settings read and checked) when the operator configured one.
    pub async fn new(config: SyncConfig, outbound: OutboundClient) -> anyhow::Result<Self> {
        let kubernetes = match &config.kubernetes {
            Some(access) => Some(kubernetes::client(access).await?),
            None => None,
        };
        Ok(Self {
            config,
            file_lock: tokio::sync::Mutex::new(()),
            kubernetes,
            outbound,
        })
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Checks that this server can deliver to `destination` at all (a root is set, a
    /// cluster configured, the namespaces allowed), before a target is stored.
    pub fn check(&self, destination: &SyncDestination) -> Result<(), SyncError> {
        match destination {
            SyncDestination::File { .. } if self.config.file_root.is_none() => {
                Err(SyncError::FileDisabled)
            }
            SyncDestination::Kubernetes { namespaces, .. } => {
                if self.kubernetes.is_none() {
                    return Err(SyncError::KubernetesDisabled);
                }
                match namespaces
                    .iter()
                    .find(|namespace| !self.config.namespace_allowed(namespace))
                {
                    Some(namespace) => Err(SyncError::NamespaceNotAllowed(namespace.clone())),
                    None => Ok(()),
                }
            }
            SyncDestination::Webhook { url } => {
                let url = url::Url::parse(url)
                    .map_err(|_| SyncError::Webhook(OutboundError::Other("not a URL".into())))?;
                self.outbound.check_url(&url).map_err(SyncError::Webhook)
            }
            SyncDestination::File { .. } | SyncDestination::AwsSecret(_) => Ok(()),
        }
    }

    /// Delivers to the target; returns the docker config key written to a file (to be
    /// removed there if it ever changes). An `aws_secret` target needs `aws`, a client
    /// acting as its identity credential.
    pub async fn push(
        &self,
        target: &SyncTarget,
        delivery: &Delivery,
        signing_key: Option<&SecretString>,
        aws: Option<&aws_sdk_secretsmanager::Client>,
    ) -> Result<Option<String>, SyncError> {
        self.check(&target.destination)?;
        match &target.destination {
            SyncDestination::File { path } => {
                let root: PathBuf = self
                    .config
                    .file_root
                    .clone()
                    .ok_or(SyncError::FileDisabled)?;
                let _writing = self.file_lock.lock().await;
                let write = file::ConfigWrite {
                    root,
                    workspace: target.workspace_name.clone(),
                    path: path.clone(),
                    key: delivery.server_address.clone(),
                    old_key: target.delivered.key.clone(),
                    auth: delivery.basic_auth(),
                };
                tokio::task::spawn_blocking(move || write.run())
                    .await
                    .map_err(|error| SyncError::File {
                        path: path.clone(),
                        message: error.to_string(),
                    })??;
                Ok(Some(delivery.server_address.clone()))
            }
            SyncDestination::Kubernetes {
                namespaces,
                secret_name,
            } => {
                let client = self
                    .kubernetes
                    .as_ref()
                    .ok_or(SyncError::KubernetesDisabled)?;
                let config = Arc::new(kubernetes::docker_config_json(delivery));
                let mut errors = Vec::new();
                for namespace in namespaces {
                    if let Err(error) = kubernetes::put_secret(
                        client,
                        namespace,
                        secret_name,
                        target,
                        delivery,
                        &config,
                    )
                    .await
                    {
                        errors.push(error);
                    }
                }
                let mut errors = errors.into_iter();
                match errors.next() {
                    None => Ok(None),
                    Some(first) => match errors.len() {
                        0 => Err(first),
                        more => Err(SyncError::Several {
                            first: Box::new(first),
                            more,
                        }),
                    },
                }
            }
            SyncDestination::Webhook { url } => {
                let key = signing_key.ok_or(SyncError::NoSigningKey)?;
                webhook::post(&self.outbound, url, key, delivery).await?;
                Ok(None)
            }
            SyncDestination::AwsSecret(secret) => {
                let client = aws.ok_or(SyncError::AwsClientMissing)?;
                aws_secret::put(client, &secret.secret_id, secret.adopt, delivery).await?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn delivery() -> Delivery {
        Delivery {
            event_id: "event-1".into(),
            target_id: "target-1".into(),
            credential_id: "credential-1".into(),
            credential_name: "ecr".into(),
            workspace_id: "workspace-1".into(),
            workspace_name: "acme/ci".into(),
            reference: "rk:acme/ci:credential/ecr".into(),
            registry: "ghcr.io".into(),
            path_prefix: String::new(),
            server_address: "ghcr.io".into(),
            username: "user".into(),
            secret: SecretString::from("canary-sync-secret"),
            expires_at: Some(1_800_000_000_000),
            at: 1_700_000_000_000,
            idempotency_key: "0".repeat(64),
        }
    }

    #[test]
    fn deliveries_never_print_their_secret() {
        let delivery = delivery();
        let printed = format!("{delivery:?}");
        assert!(!printed.contains("canary-sync-secret"), "{printed}");
        assert!(printed.contains("[REDACTED]"));
        let auth = delivery.basic_auth();
        let message = format!(
            "server said: bad value {} / canary-sync-secret",
            auth.as_str()
        );
        assert_eq!(
            delivery.scrub(&message),
            "server said: bad value [REDACTED] / [REDACTED]"
        );
    }

    #[test]
    fn server_addresses_are_what_clients_look_up() {
        assert_eq!(
            server_address("docker.io", ""),
            "https://index.docker.io/v1/"
        );
        assert_eq!(server_address("docker.io", "acme"), "docker.io/acme");
        assert_eq!(server_address("localhost:5000", ""), "localhost:5000");
        assert_eq!(
            server_address("123456789012.dkr.ecr.us-east-1.amazonaws.com", "team/app"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"
        );
    }
}
