//! The AWS Secrets Manager delivery: the login as `{"username":"…","password":"…"}`,
//! the format ECS reads through a task definition's
//! `repositoryCredentials.credentialsParameter` (the secret's ARN).
//!
//! A missing secret is created (only from a name: an ARN cannot be created), tagged
//! [`MANAGED_BY_TAG`]` = regkeeper` and [`REFERENCE_TAG`]` = rk:WS:credential/NAME`; an
//! existing one gets a new version with PutSecretValue. A secret without those tags
//! (regkeeper did not make it for this credential) is refused, `secret_not_managed`,
//! unless the target was added with `--adopt`, which tags it first.
//!
//! Every write carries a `ClientRequestToken` derived from the login
//! ([`super::Delivery::idempotency_key`]: an HMAC under a key derived from the master
//! key, so it reveals nothing of the password), so a retried write of the same login
//! adds no second version, and a new login always makes one. Throttling and transient
//! errors are retried inside the push by the SDK (`ecr::IDENTITY_MAX_ATTEMPTS`), then
//! by the target's own backoff.

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::Tag;
use secrecy::ExposeSecret;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::providers::secrets_manager::secrets_manager_error;
use crate::providers::ProviderError;

use super::{Delivery, SyncError};

pub const MANAGED_BY_TAG: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "regkeeper";
pub const REFERENCE_TAG: &str = "regkeeper-credential";

#[derive(Serialize)]
struct EcsLogin<'a> {
    username: &'a str,
    password: &'a str,
}

/// The reference as a tag value: AWS allows letters, digits, spaces and `_.:/=+-@`,
/// so a personal workspace's `~` is written `_`.
pub fn reference_tag_value(reference: &str) -> String {
    reference
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn failed(secret_id: &str, error: ProviderError) -> SyncError {
    match error {
        ProviderError::AwsSecretNotFound { .. } => SyncError::AwsSecret {
            secret: secret_id.to_owned(),
            code: "aws_secret_not_found",
            message:
                "it does not exist, and regkeeper creates secrets only from a name, not an ARN"
                    .into(),
        },
        other => SyncError::AwsSecret {
            secret: secret_id.to_owned(),
            code: other.code(),
            message: other.to_string(),
        },
    }
}

/// Refuses a secret that exists and is not regkeeper's for this credential (a target
/// without `--adopt` is checked before it is stored); a missing one is fine.
pub async fn check_managed(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    reference: &str,
) -> Result<(), SyncError> {
    match client.describe_secret().secret_id(secret_id).send().await {
        Ok(described) => ownership(&described, &reference_tag_value(reference)),
        Err(error) if error.code() == Some("ResourceNotFoundException") => Ok(()),
        Err(error) => Err(failed(secret_id, secrets_manager_error(secret_id, error))),
    }
}

/// `Ok` for a secret tagged as regkeeper's for `reference` (a tag value).
fn ownership(
    described: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
    reference: &str,
) -> Result<(), SyncError> {
    let tag = |key: &str| {
        described
            .tags()
            .iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(Tag::value)
    };
    let managed = tag(MANAGED_BY_TAG) == Some(MANAGED_BY_VALUE);
    if managed && tag(REFERENCE_TAG) == Some(reference) {
        return Ok(());
    }
    Err(SyncError::AwsSecretNotManaged {
        secret: described.name().unwrap_or_default().to_owned(),
        owner: tag(REFERENCE_TAG).filter(|_| managed).map(str::to_owned),
    })
}

pub(super) async fn put(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    adopt: bool,
    delivery: &Delivery,
) -> Result<(), SyncError> {
    let body = Zeroizing::new(
        serde_json::to_string(&EcsLogin {
            username: &delivery.username,
            password: delivery.secret.expose_secret(),
        })
        .expect("the login serializes"),
    );
    let reference = reference_tag_value(&delivery.reference);
    let described = client.describe_secret().secret_id(secret_id).send().await;
    let described = match described {
        Ok(described) => described,
        Err(error) if error.code() == Some("ResourceNotFoundException") => {
            if secret_id.starts_with("arn:") {
                return Err(failed(
                    secret_id,
                    ProviderError::AwsSecretNotFound {
                        secret: secret_id.to_owned(),
                    },
                ));
            }
            client
                .create_secret()
                .name(secret_id)
                .description(format!(
                    "Registry login for {} ({}), kept by regkeeper",
                    delivery.reference, delivery.server_address
                ))
                .secret_string(body.as_str())
                .client_request_token(&delivery.idempotency_key)
                .tags(
                    Tag::builder()
                        .key(MANAGED_BY_TAG)
                        .value(MANAGED_BY_VALUE)
                        .build(),
                )
                .tags(Tag::builder().key(REFERENCE_TAG).value(&reference).build())
                .send()
                .await
                .map_err(|error| failed(secret_id, secrets_manager_error(secret_id, error)))?;
            return Ok(());
        }
        Err(error) => return Err(failed(secret_id, secrets_manager_error(secret_id, error))),
    };
    if let Err(refused) = ownership(&described, &reference) {
        if !adopt {
            return Err(refused);
        }
        client
            .tag_resource()
            .secret_id(secret_id)
            .tags(
                Tag::builder()
                    .key(MANAGED_BY_TAG)
                    .value(MANAGED_BY_VALUE)
                    .build(),
            )
            .tags(Tag::builder().key(REFERENCE_TAG).value(&reference).build())
            .send()
            .await
            .map_err(|error| failed(secret_id, secrets_manager_error(secret_id, error)))?;
        tracing::info!(
            sync_target.id = %delivery.target_id,
            aws.secret = %secret_id,
            "sync_target.aws_secret_adopted"
        );
    }
    client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(body.as_str())
        .client_request_token(&delivery.idempotency_key)
        .send()
        .await
        .map_err(|error| failed(secret_id, secrets_manager_error(secret_id, error)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_valid_tag_values() {
        assert_eq!(
            reference_tag_value("rk:acme/ci:credential/ecr-prod"),
            "rk:acme/ci:credential/ecr-prod"
        );
        assert_eq!(
            reference_tag_value("rk:~admin:credential/dock"),
            "rk:_admin:credential/dock"
        );
    }
}
