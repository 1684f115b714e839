//! AWS Secrets Manager as the source of a credential's login (`--aws-secret`): one
//! GetSecretValue with the AWS identity of an `ecr` credential, and the secret's JSON
//! read as ECS's `repositoryCredentials` reads it (`{"username","password"}`, or the
//! keys given with `--aws-secret-keys`). Endpoints follow the SDK's own settings
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`).
//!
//! What the secret holds leaves this module only inside a `RegistryLogin`: errors name
//! the secret and what is wrong with it (not JSON, a key missing), never a value.
//! Caching and the identity credential are `service::aws_secrets`' business.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::domain::credential::{AwsSecretSource, Credential, CredentialSecret, Timestamp};

use super::ecr::EcrProvider;
use super::{ProviderError, RegistryLogin};

/// A Secrets Manager client acting as `identity` (an `ecr` credential and its opened
/// secret) in `region`.
pub async fn client(
    ecr: &EcrProvider,
    identity: &Credential,
    secret: &CredentialSecret,
    region: &str,
) -> Result<aws_sdk_secretsmanager::Client, ProviderError> {
    let config = ecr.identity_config(identity, secret, region).await?;
    Ok(aws_sdk_secretsmanager::Client::new(&config))
}

/// Maps a Secrets Manager error about `secret_id`: a missing secret is named as such;
/// the rest as for every AWS call.
pub fn secrets_manager_error<E: ProvideErrorMetadata + std::error::Error + 'static, R>(
    secret_id: &str,
    error: SdkError<E, R>,
) -> ProviderError {
    let code = error.code().map(str::to_owned);
    match code.as_deref() {
        Some("ResourceNotFoundException") => ProviderError::AwsSecretNotFound {
            secret: secret_id.to_owned(),
        },
        // A secret marked for deletion, among others: AWS's message says which.
        Some("InvalidRequestException") => ProviderError::AwsSecretUnusable {
            secret: secret_id.to_owned(),
            reason: error
                .message()
                .unwrap_or("Secrets Manager refused the request")
                .to_owned(),
        },
        _ => super::ecr::aws_error(error),
    }
}

/// Reads the login in `source` now (GetSecretValue of its current version).
pub async fn read_login(
    client: &aws_sdk_secretsmanager::Client,
    source: &AwsSecretSource,
    now: Timestamp,
) -> Result<RegistryLogin, ProviderError> {
    let answer = client
        .get_secret_value()
        .secret_id(&source.secret_id)
        .send()
        .await
        .map_err(|error| secrets_manager_error(&source.secret_id, error))?;
    let unusable = |reason: &str| ProviderError::AwsSecretUnusable {
        secret: source.secret_id.clone(),
        reason: reason.to_owned(),
    };
    let text = Zeroizing::new(
        answer
            .secret_string()
            .ok_or_else(|| unusable("it holds binary data, not JSON text"))?
            .to_owned(),
    );
    let (username, password) = parse_login(&text, &source.username_key, &source.password_key)
        .map_err(|reason| unusable(&reason))?;
    Ok(RegistryLogin {
        username,
        secret: password,
        issued_at: now,
        expires_at: None,
    })
}

/// The user name and password under `username_key` and `password_key` of a JSON
/// object; the reason it is not one, naming keys but no value. The serde error is not
/// passed on: it could quote the text.
pub fn parse_login(
    text: &str,
    username_key: &str,
    password_key: &str,
) -> Result<(String, SecretString), String> {
    // The other values are dropped without zeroizing: serde_json's `Value` cannot.
    let mut object: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| {
            "it is not a JSON object such as {\"username\":\"…\",\"password\":\"…\"}".to_owned()
        })?;
    let mut take = |key: &str| match object.remove(key) {
        Some(serde_json::Value::String(value)) if !value.is_empty() => Ok(value),
        Some(serde_json::Value::String(_)) => Err(format!("its \"{key}\" is empty")),
        Some(_) => Err(format!("its \"{key}\" is not a string")),
        None => Err(format!(
            "it has no \"{key}\" (give other key names with --aws-secret-keys USER,PASS)"
        )),
    };
    let username = take(username_key)?;
    let password = take(password_key)?;
    Ok((username, SecretString::from(password)))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn ecs_logins_parse_and_errors_name_keys_not_values() {
        let (user, pass) = parse_login(
            r#"{"username":"robot","password":"canary-pw"}"#,
            "username",
            "password",
        )
        .unwrap();
        assert_eq!(
            (user.as_str(), pass.expose_secret()),
            ("robot", "canary-pw")
        );
        let (user, _) = parse_login(r#"{"u":"a","p":"b","x":1}"#, "u", "p").unwrap();
        assert_eq!(user, "a");
        for (text, expected) in [
            ("canary-not-json", "not a JSON object"),
            (r#"["canary"]"#, "not a JSON object"),
            (r#"{"username":"a"}"#, "no \"password\""),
            (r#"{"username":"a","password":""}"#, "\"password\" is empty"),
            (r#"{"username":"a","password":7}"#, "not a string"),
        ] {
            let reason = parse_login(text, "username", "password").unwrap_err();
            assert!(reason.contains(expected), "{text}: {reason}");
            assert!(!reason.contains("canary"), "{reason}");
        }
    }
}
