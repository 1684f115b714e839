//! The kubelet's image credential provider messages, `credentialprovider.kubelet.k8s.io/v1`
//! (`k8s.io/kubelet/pkg/apis/credentialprovider/v1`), with the field names of that API.
//!
//! The request tolerates fields it does not know, since newer kubelets add some (the
//! service-account fields came in 1.33); the provider checks `apiVersion` and `kind`
//! itself so that it can say what is wrong.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Sensitive;

pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
pub const REQUEST_KIND: &str = "CredentialProviderRequest";
pub const RESPONSE_KIND: &str = "CredentialProviderResponse";

/// What the kubelet writes to the provider's standard input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderRequest {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    /// The image being pulled, as the kubelet names it (no tag or digest as a rule).
    #[serde(default)]
    pub image: String,
    /// A token of the pod's service account, sent only when the kubelet's
    /// `tokenAttributes` ask for one (KEP-4412): the provider exchanges it for the
    /// role its service account names. Held as a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<Sensitive>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_account_annotations: BTreeMap<String, String>,
}

/// How the kubelet caches a response: per image (repository), per registry host, or
/// for every image the provider matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheKeyType {
    Image,
    Registry,
    Global,
}

/// What the provider prints on its standard output. The kubelet decodes it strictly:
/// a field outside these (the service-account cache type belongs to the kubelet's
/// `tokenAttributes`, not here) makes it discard the whole answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderResponse {
    pub api_version: String,
    pub kind: String,
    pub cache_key_type: CacheKeyType,
    /// A Go duration (`7h59m30s`); `0s` means "do not cache", absent means the
    /// `defaultCacheDuration` of the kubelet's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
    /// Logins keyed by the image pattern they serve (`host[:port][/path]`). Empty when
    /// the provider has nothing for the image.
    #[serde(default)]
    pub auth: BTreeMap<String, AuthConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthConfig {
    pub username: String,
    pub password: Sensitive,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_newer_kubelets_parse_and_keep_the_token_secret() {
        let request: CredentialProviderRequest = serde_json::from_str(
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest",
                "image":"ghcr.io/acme/app","serviceAccountToken":"sa-canary-91",
                "serviceAccountAnnotations":{"a":"b"},"someFutureField":true}"#,
        )
        .unwrap();
        assert_eq!(request.image, "ghcr.io/acme/app");
        assert!(!format!("{request:?}").contains("sa-canary-91"));
    }

    #[test]
    fn responses_use_the_v1_field_names_and_hide_passwords_in_debug() {
        let response = CredentialProviderResponse {
            api_version: API_VERSION.into(),
            kind: RESPONSE_KIND.into(),
            cache_key_type: CacheKeyType::Registry,
            cache_duration: Some("5m0s".into()),
            auth: BTreeMap::from([(
                "ghcr.io".to_owned(),
                AuthConfig {
                    username: "robot".into(),
                    password: Sensitive::new("pw-canary-12"),
                },
            )]),
        };
        assert!(!format!("{response:?}").contains("pw-canary-12"));
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            serde_json::json!({
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "kind": "CredentialProviderResponse",
                "cacheKeyType": "Registry",
                "cacheDuration": "5m0s",
                "auth": {"ghcr.io": {"username": "robot", "password": "pw-canary-12"}}
            })
        );
    }
}
