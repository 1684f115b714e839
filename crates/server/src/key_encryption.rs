//! A key-encryption key held outside regkeeper, which wraps the whole master keyring
//! (every master-key version) so that the keyring can be kept in the database and no
//! key material is written to disk. [`KeyEncryptionKey`] is the seam; [`AwsKms`] the
//! one implementation today (Google Cloud KMS, Azure Key Vault and Vault Transit each
//! have an encrypt/decrypt with associated data and can implement it the same way).
//!
//! AWS KMS wraps by envelope: `GenerateDataKey` (AES-256) gives a fresh data key and
//! its KMS ciphertext; the keyring is sealed locally with it (AES-256-GCM), and the
//! stored blob is format byte 1, the KMS ciphertext's length (u32, big-endian), the
//! KMS ciphertext, then the sealed keyring. Unwrapping is one `Decrypt`. Not `Encrypt`
//! of the keyring itself: that caps the plaintext at 4 KiB, which a keyring outgrows
//! after some fifty rotations, for the same one call per wrap. Both calls carry the
//! [`WrapContext`] as KMS encryption context (so a key policy can require it, and a
//! blob moved to another deployment fails to decrypt) and as the local associated
//! data. `Decrypt` names the key, so a blob wrapped under another key is refused.
//!
//! Credentials are the server's own (the SDK's default chain); the endpoint is
//! `AWS_ENDPOINT_URL_KMS`, else `AWS_ENDPOINT_URL`, else AWS's. The region is the key
//! ARN's, else the SDK's (`AWS_REGION`, profile, instance metadata). Errors say which
//! of unreachable, denied, context mismatch or unusable key it was, naming the key and
//! the URL, never a key. The SDK logs request bodies (a data key) at debug: its
//! targets are held at info by `serve::init_logging`.

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::crypto::{open_with_key, seal_with_key, Key};

/// The encryption context naming what a wrapped blob belongs to: for the keyring,
/// `{"regkeeper:keyring": DEPLOYMENT-ID}` (the id the database holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapContext(BTreeMap<String, String>);

impl WrapContext {
    pub fn keyring(deployment_id: &str) -> Self {
        Self(BTreeMap::from([(
            "regkeeper:keyring".to_owned(),
            deployment_id.to_owned(),
        )]))
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    fn associated_data(&self) -> Vec<u8> {
        let mut data = b"regkeeper/v1\0wrapped-keyring".to_vec();
        for (name, value) in &self.0 {
            data.push(0);
            data.extend_from_slice(name.as_bytes());
            data.push(b'=');
            data.extend_from_slice(value.as_bytes());
        }
        data
    }
}

impl std::fmt::Display for WrapContext {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self
            .0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        write!(formatter, "{{{}}}", pairs.join(", "))
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KekError {
    #[error("{key} is unreachable at {endpoint} ({detail}); the server retries until it answers")]
    Unreachable {
        key: String,
        endpoint: String,
        detail: String,
    },
    #[error("access to {key} is denied ({code}: {message}); the server's AWS identity needs kms:Decrypt, kms:Encrypt and kms:GenerateDataKey on it, for the encryption context regkeeper:keyring")]
    Denied {
        key: String,
        code: String,
        message: String,
    },
    #[error("{key} refused to decrypt the keyring with encryption context {context} ({code}): the wrapped keyring in this database was made for another deployment or under another key, or it is damaged; restore this deployment's database row `master_keyring`")]
    ContextMismatch {
        key: String,
        context: String,
        code: String,
    },
    #[error("{key} cannot be used ({code}: {message})")]
    Unusable {
        key: String,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Setup(String),
    #[error("the wrapped keyring is malformed ({0})")]
    Malformed(String),
}

impl KekError {
    /// Whether waiting may help: a KMS that does not answer, or refuses now (a key policy
    /// or grant can be fixed, a disabled key enabled), as opposed to a malformed blob.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Malformed(_))
    }
}

/// Wraps and unwraps bytes (a serialised keyring) under a key that never leaves its
/// service, bound to a [`WrapContext`].
#[async_trait::async_trait]
pub trait KeyEncryptionKey: Send + Sync {
    /// The key, for messages: `AWS KMS key alias/regkeeper`.
    fn name(&self) -> String;
    async fn wrap(&self, plaintext: &[u8], context: &WrapContext) -> Result<Vec<u8>, KekError>;
    async fn unwrap(
        &self,
        wrapped: &[u8],
        context: &WrapContext,
    ) -> Result<Zeroizing<Vec<u8>>, KekError>;
}

const ENVELOPE_V1: u8 = 1;

/// The envelope's two parts: the data key as KMS encrypted it, and the local seal.
pub fn split_envelope(wrapped: &[u8]) -> Result<(&[u8], &[u8]), KekError> {
    let malformed = |reason: &str| KekError::Malformed(reason.to_owned());
    let (format, rest) = wrapped.split_first().ok_or_else(|| malformed("empty"))?;
    if *format != ENVELOPE_V1 || rest.len() < 4 {
        return Err(malformed("unknown format"));
    }
    let (length, rest) = rest.split_at(4);
    let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
    if rest.len() <= length {
        return Err(malformed("truncated"));
    }
    Ok(rest.split_at(length))
}

/// Opens an envelope's local seal with the plaintext data key KMS gave back.
pub fn open_envelope(
    data_key: &Key,
    sealed: &[u8],
    context: &WrapContext,
) -> Result<Zeroizing<Vec<u8>>, KekError> {
    open_with_key(data_key, sealed, &context.associated_data())
        .map_err(|_| KekError::Malformed("the sealed keyring fails its integrity check".into()))
}

/// The AWS KMS key `key_id` (id, ARN, alias name or alias ARN).
pub struct AwsKms {
    key_id: String,
    endpoint_url: Option<String>,
    client: tokio::sync::OnceCell<(aws_sdk_kms::Client, String)>,
}

impl AwsKms {
    /// `endpoint_url`: `AWS_ENDPOINT_URL_KMS` or `AWS_ENDPOINT_URL`, if set.
    pub fn new(key_id: &str, endpoint_url: Option<String>) -> Self {
        Self {
            key_id: key_id.to_owned(),
            endpoint_url,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The client, and the endpoint it calls (for messages), made on first use.
    async fn client(&self) -> Result<&(aws_sdk_kms::Client, String), KekError> {
        self.client
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(
                        aws_config::retry::RetryConfig::standard().with_max_attempts(2),
                    )
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(std::time::Duration::from_secs(3))
                            .operation_timeout(std::time::Duration::from_secs(15))
                            .build(),
                    );
                // A key ARN names its region: use it whatever the environment says.
                if let Some(region) = arn_region(&self.key_id) {
                    loader = loader.region(aws_config::Region::new(region.to_owned()));
                }
                if let Some(endpoint) = &self.endpoint_url {
                    loader = loader.endpoint_url(endpoint);
                }
                let config = loader.load().await;
                let Some(region) = config.region().map(ToString::to_string) else {
                    return Err(KekError::Setup(format!(
                        "no AWS region for KMS key {}: set AWS_REGION, or give the key's ARN in REGKEEPER_MASTER_KEY_KMS_KEY_ID",
                        self.key_id
                    )));
                };
                let endpoint = self
                    .endpoint_url
                    .clone()
                    .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com"));
                Ok((aws_sdk_kms::Client::new(&config), endpoint))
            })
            .await
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static, R>(
        &self,
        endpoint: &str,
        context: &WrapContext,
        error: SdkError<E, R>,
    ) -> KekError {
        let key = self.name();
        match &error {
            SdkError::DispatchFailure(failure) => {
                return KekError::Unreachable {
                    key,
                    endpoint: endpoint.to_owned(),
                    detail: failure
                        .as_connector_error()
                        .map_or_else(|| "connection failed".to_owned(), ToString::to_string),
                }
            }
            SdkError::TimeoutError(_) => {
                return KekError::Unreachable {
                    key,
                    endpoint: endpoint.to_owned(),
                    detail: "no answer in time".into(),
                }
            }
            SdkError::ResponseError(_) => {
                return KekError::Unreachable {
                    key,
                    endpoint: endpoint.to_owned(),
                    detail: "the answer was not KMS's".into(),
                }
            }
            _ => {}
        }
        let code = error.code().unwrap_or("Unknown").to_owned();
        let message = error.message().unwrap_or_default().to_owned();
        match code.as_str() {
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "IncompleteSignature" => KekError::Denied { key, code, message },
            "InvalidCiphertextException" | "IncorrectKeyException" => KekError::ContextMismatch {
                key,
                context: context.to_string(),
                code,
            },
            _ => KekError::Unusable { key, code, message },
        }
    }
}

/// The region of a key or alias ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`).
fn arn_region(key_id: &str) -> Option<&str> {
    let mut parts = key_id.strip_prefix("arn:")?.split(':');
    parts.nth(2).filter(|region| !region.is_empty())
}

fn context_map(context: &WrapContext) -> std::collections::HashMap<String, String> {
    context
        .pairs()
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[async_trait::async_trait]
impl KeyEncryptionKey for AwsKms {
    fn name(&self) -> String {
        format!("AWS KMS key {}", self.key_id)
    }

    async fn wrap(&self, plaintext: &[u8], context: &WrapContext) -> Result<Vec<u8>, KekError> {
        let (client, endpoint) = self.client().await?;
        let mut answer = client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|error| self.error(endpoint, context, error))?;
        let data_key = answer
            .plaintext
            .take()
            .map(|blob| Zeroizing::new(blob.into_inner()))
            .ok_or_else(|| KekError::Malformed("GenerateDataKey returned no key".into()))?;
        let data_key = Key::from_bytes(&data_key)
            .ok_or_else(|| KekError::Malformed("GenerateDataKey's key is not 32 bytes".into()))?;
        let encrypted_key = answer
            .ciphertext_blob
            .take()
            .map(Blob::into_inner)
            .ok_or_else(|| KekError::Malformed("GenerateDataKey returned no ciphertext".into()))?;
        let sealed = seal_with_key(&data_key, plaintext, &context.associated_data());
        let length = u32::try_from(encrypted_key.len())
            .map_err(|_| KekError::Malformed("KMS ciphertext too long".into()))?;
        let mut wrapped = Vec::with_capacity(5 + encrypted_key.len() + sealed.len());
        wrapped.push(ENVELOPE_V1);
        wrapped.extend_from_slice(&length.to_be_bytes());
        wrapped.extend_from_slice(&encrypted_key);
        wrapped.extend_from_slice(&sealed);
        Ok(wrapped)
    }

    async fn unwrap(
        &self,
        wrapped: &[u8],
        context: &WrapContext,
    ) -> Result<Zeroizing<Vec<u8>>, KekError> {
        let (encrypted_key, sealed) = split_envelope(wrapped)?;
        let (client, endpoint) = self.client().await?;
        let mut answer = client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(encrypted_key))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|error| self.error(endpoint, context, error))?;
        let data_key = answer
            .plaintext
            .take()
            .map(|blob| Zeroizing::new(blob.into_inner()))
            .ok_or_else(|| KekError::Malformed("Decrypt returned no key".into()))?;
        let data_key = Key::from_bytes(&data_key)
            .ok_or_else(|| KekError::Malformed("the data key is not 32 bytes".into()))?;
        open_envelope(&data_key, sealed, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_a_key_or_alias_arn() {
        assert_eq!(
            arn_region("arn:aws:kms:eu-west-1:123456789012:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-cn:kms:cn-north-1:123456789012:alias/rk"),
            Some("cn-north-1")
        );
        assert_eq!(arn_region("alias/regkeeper"), None);
        assert_eq!(arn_region("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
    }

    #[test]
    fn a_malformed_envelope_is_refused_before_kms_is_asked() {
        assert!(matches!(split_envelope(b""), Err(KekError::Malformed(_))));
        assert!(matches!(
            split_envelope(&[1, 0, 0, 0, 9, 1, 2]),
            Err(KekError::Malformed(_))
        ));
        let (key, sealed) = split_envelope(&[1, 0, 0, 0, 2, 7, 7, 9]).unwrap();
        assert_eq!((key, sealed), (&[7u8, 7][..], &[9u8][..]));
    }

    /// The local seal is bound to the context: another deployment's id does not open it.
    #[test]
    fn the_local_seal_is_bound_to_the_context() {
        let key = Key::generate();
        let ours = WrapContext::keyring("deployment-a");
        let sealed = seal_with_key(&key, b"keyring", &ours.associated_data());
        assert_eq!(
            open_envelope(&key, &sealed, &ours).unwrap().as_slice(),
            b"keyring"
        );
        assert!(open_envelope(&key, &sealed, &WrapContext::keyring("deployment-b")).is_err());
        assert_eq!(ours.to_string(), "{regkeeper:keyring=deployment-a}");
    }
}
