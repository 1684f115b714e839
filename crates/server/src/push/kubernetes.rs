//! Keeping a `kubernetes.io/dockerconfigjson` Secret per namespace, through the `kube`
//! client (rustls). Create when absent, replace when present — but only a Secret that
//! regkeeper made for the same workspace (label `app.kubernetes.io/managed-by:
//! regkeeper` and annotation `regkeeper.io/workspace-id`), so a target can never take
//! over someone else's Secret. The existing Secret is read as metadata only
//! (`PartialObjectMetadata`): its data never reaches regkeeper.
//!
//! Every namespace of a target is tried on each push; the first failure is the one
//! reported. A 409 is tried once more (see `put_secret`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use zeroize::Zeroizing;

use crate::config::KubernetesAccess;
use crate::domain::sync_target::SyncTarget;

use super::{Delivery, SyncError};

pub const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DATA_KEY: &str = ".dockerconfigjson";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "regkeeper";
pub const WORKSPACE_ANNOTATION: &str = "regkeeper.io/workspace-id";
pub const CREDENTIAL_ANNOTATION: &str = "regkeeper.io/credential";
pub const TARGET_ANNOTATION: &str = "regkeeper.io/sync-target";

/// A client for the operator's cluster, with time-outs so a push cannot hang.
pub(super) async fn client(access: &KubernetesAccess) -> anyhow::Result<kube::Client> {
    // kube builds its TLS configuration with rustls' process-wide crypto provider;
    // both ring and aws-lc-rs are compiled in (through other crates), so pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = match access {
        KubernetesAccess::InCluster => kube::Config::incluster()
            .context("REGKEEPER_SYNC_KUBECONFIG=in-cluster: not running in a pod")?,
        KubernetesAccess::Kubeconfig(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).with_context(|| {
                format!("REGKEEPER_SYNC_KUBECONFIG: reading {}", path.display())
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("REGKEEPER_SYNC_KUBECONFIG: {}", path.display()))?
        }
    };
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(20));
    config.write_timeout = Some(Duration::from_secs(20));
    config.reset_reader_on_write = true;
    kube::Client::try_from(config).context("REGKEEPER_SYNC_KUBECONFIG: building the client")
}

/// `.dockerconfigjson` as `kubectl create secret docker-registry` writes it.
pub(super) fn docker_config_json(delivery: &Delivery) -> Zeroizing<Vec<u8>> {
    use secrecy::ExposeSecret;
    let auth = delivery.basic_auth();
    let mut auths = serde_json::Map::new();
    auths.insert(
        delivery.server_address.clone(),
        serde_json::json!({
            "username": delivery.username,
            "password": delivery.secret.expose_secret(),
            "auth": auth.as_str(),
        }),
    );
    Zeroizing::new(
        serde_json::to_vec(&serde_json::json!({ "auths": auths })).expect("JSON serializes"),
    )
}

fn secret(
    namespace: &str,
    name: &str,
    target: &SyncTarget,
    delivery: &Delivery,
    config: &[u8],
    resource_version: Option<String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            resource_version,
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([
                (WORKSPACE_ANNOTATION.to_owned(), target.workspace_id.clone()),
                (CREDENTIAL_ANNOTATION.to_owned(), delivery.reference.clone()),
                (TARGET_ANNOTATION.to_owned(), target.id.clone()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_owned()),
        data: Some(BTreeMap::from([(
            DATA_KEY.to_owned(),
            ByteString(config.to_vec()),
        )])),
        ..Secret::default()
    }
}

/// Creates or replaces the Secret in one namespace. A create that loses a race (409)
/// or a replace whose resourceVersion went stale (409) is tried once more.
pub(super) async fn put_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    target: &SyncTarget,
    delivery: &Delivery,
    config: &[u8],
) -> Result<(), SyncError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let parameters = PostParams {
        field_manager: Some(MANAGED_BY.to_owned()),
        ..PostParams::default()
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let existing = api
            .get_metadata_opt(name)
            .await
            .map_err(|error| failure(namespace, &error, delivery))?;
        let result = match existing {
            None => {
                api.create(
                    &parameters,
                    &secret(namespace, name, target, delivery, config, None),
                )
                .await
            }
            Some(existing) => {
                let metadata = &existing.metadata;
                let managed = metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(MANAGED_BY_LABEL))
                    .is_some_and(|value| value == MANAGED_BY);
                let same_workspace = metadata
                    .annotations
                    .as_ref()
                    .and_then(|annotations| annotations.get(WORKSPACE_ANNOTATION))
                    .is_some_and(|value| *value == target.workspace_id);
                if !managed || !same_workspace {
                    return Err(SyncError::SecretNotManaged {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                    });
                }
                let replacement = secret(
                    namespace,
                    name,
                    target,
                    delivery,
                    config,
                    metadata.resource_version.clone(),
                );
                api.replace(name, &parameters, &replacement).await
            }
        };
        match result {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 2 => continue,
            Err(error) => return Err(failure(namespace, &error, delivery)),
        }
    }
}

fn failure(namespace: &str, error: &kube::Error, delivery: &Delivery) -> SyncError {
    let message = match error {
        kube::Error::Api(status) => format!(
            "HTTP {} {}: {}",
            status.code,
            status.reason,
            status.message.chars().take(300).collect::<String>()
        ),
        other => other.to_string(),
    };
    SyncError::Kubernetes {
        namespace: namespace.to_owned(),
        message: delivery.scrub(&message),
    }
}
