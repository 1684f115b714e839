//! Sync targets: places a credential's current login is pushed to after every refresh
//! (Rancher's ECR updater, generalised) — a docker `config.json`, Kubernetes
//! `kubernetes.io/dockerconfigjson` Secrets, a signed HTTPS webhook, an AWS Secrets
//! Manager secret in the format ECS's `repositoryCredentials` reads. What a target is
//! and which destinations are well-formed; whether this server allows them is
//! `service::sync_targets`'s business, how they are written is the server's `push`'s.

use super::credential::{validate_aws_region, validate_aws_secret_id, SealedSecret, Timestamp};
use super::{Error, Result};
use crate::text::echo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    File,
    Kubernetes,
    Webhook,
    AwsSecret,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Kubernetes => "kubernetes",
            Self::Webhook => "webhook",
            Self::AwsSecret => "aws_secret",
        }
    }

    /// What a person calls it (the console).
    pub fn label(self) -> &'static str {
        match self {
            Self::File => "docker config file",
            Self::Kubernetes => "Kubernetes Secret",
            Self::Webhook => "webhook",
            Self::AwsSecret => "AWS Secrets Manager secret",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "file" => Ok(Self::File),
            "kubernetes" => Ok(Self::Kubernetes),
            "webhook" => Ok(Self::Webhook),
            "aws_secret" => Ok(Self::AwsSecret),
            _ => Err(Error::invalid(
                "invalid_sync_target",
                format!(
                    "unknown sync target type `{}`: use file, kubernetes, webhook or aws_secret",
                    echo(value)
                ),
            )),
        }
    }
}

/// Where a target delivers. None of it is secret: it is shown in listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncDestination {
    /// A docker `config.json`, relative to the operator's sync root and the
    /// workspace's directory under it.
    File { path: String },
    /// One Secret of this name in each namespace.
    Kubernetes {
        namespaces: Vec<String>,
        secret_name: String,
    },
    /// An `https` URL that receives a signed POST.
    Webhook { url: String },
    /// An AWS Secrets Manager secret holding `{"username","password"}`, written with the
    /// AWS identity of an `ecr` credential of the same workspace.
    AwsSecret(AwsSecretDestination),
}

/// Where and as whom an `aws_secret` target writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSecretDestination {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// `--aws-region`, else the ARN's; `None`: the identity credential's region.
    pub region: Option<String>,
    /// The identity credential's id (what counts) and its name when the target was
    /// added (shown).
    pub identity_id: String,
    pub identity_name: String,
    /// `--adopt`: take over (and tag) a secret regkeeper did not create.
    pub adopt: bool,
}

impl SyncDestination {
    pub fn kind(&self) -> SyncKind {
        match self {
            Self::File { .. } => SyncKind::File,
            Self::Kubernetes { .. } => SyncKind::Kubernetes,
            Self::Webhook { .. } => SyncKind::Webhook,
            Self::AwsSecret(_) => SyncKind::AwsSecret,
        }
    }

    /// One line for tables and audit entries.
    pub fn summary(&self) -> String {
        match self {
            Self::File { path } => path.clone(),
            Self::Kubernetes {
                namespaces,
                secret_name,
            } => format!("{}/{secret_name}", namespaces.join(",")),
            Self::Webhook { url } => url.clone(),
            Self::AwsSecret(secret) => secret.secret_id.clone(),
        }
    }
}

/// The fields a caller gives, before validation.
#[derive(Debug, Clone, Default)]
pub struct DestinationParts {
    pub kind: String,
    pub path: Option<String>,
    pub namespaces: Vec<String>,
    pub secret_name: Option<String>,
    pub url: Option<String>,
    pub aws_secret: Option<String>,
    pub aws_region: Option<String>,
    /// The identity credential, found by the service: (id, name).
    pub aws_identity: Option<(String, String)>,
    pub adopt: bool,
}

impl DestinationParts {
    /// Validates the fields for the kind, refusing fields that belong to another kind.
    /// `credential_name` gives Kubernetes targets their default Secret name.
    pub fn build(self, credential_name: &str) -> Result<SyncDestination> {
        let kind = SyncKind::parse(&self.kind)?;
        let stray = |field: &str| {
            Err(Error::invalid(
                "invalid_sync_target",
                format!("`{field}` does not apply to a {} target", kind.as_str()),
            ))
        };
        let aws_given = self.aws_secret.is_some()
            || self.aws_region.is_some()
            || self.aws_identity.is_some()
            || self.adopt;
        if kind != SyncKind::AwsSecret && aws_given {
            return stray("awsSecret, awsRegion, awsIdentity and adopt");
        }
        match kind {
            SyncKind::File => {
                if !self.namespaces.is_empty() {
                    return stray("namespaces");
                }
                if self.secret_name.is_some() {
                    return stray("secretName");
                }
                if self.url.is_some() {
                    return stray("url");
                }
                let path = self.path.ok_or_else(|| missing("path"))?;
                Ok(SyncDestination::File {
                    path: validate_relative_path(&path)?,
                })
            }
            SyncKind::Kubernetes => {
                if self.path.is_some() {
                    return stray("path");
                }
                if self.url.is_some() {
                    return stray("url");
                }
                if self.namespaces.is_empty() {
                    return Err(missing("namespaces"));
                }
                if self.namespaces.len() > MAX_NAMESPACES {
                    return Err(Error::invalid(
                        "invalid_sync_target",
                        format!("at most {MAX_NAMESPACES} namespaces per target"),
                    ));
                }
                let mut namespaces = Vec::with_capacity(self.namespaces.len());
                for namespace in self.namespaces {
                    validate_namespace(&namespace)?;
                    if !namespaces.contains(&namespace) {
                        namespaces.push(namespace);
                    }
                }
                let secret_name = match self.secret_name {
                    Some(name) => {
                        validate_secret_name(&name)?;
                        name
                    }
                    None => default_secret_name(credential_name),
                };
                Ok(SyncDestination::Kubernetes {
                    namespaces,
                    secret_name,
                })
            }
            SyncKind::Webhook => {
                if self.path.is_some() {
                    return stray("path");
                }
                if !self.namespaces.is_empty() {
                    return stray("namespaces");
                }
                if self.secret_name.is_some() {
                    return stray("secretName");
                }
                let url = self.url.ok_or_else(|| missing("url"))?;
                Ok(SyncDestination::Webhook {
                    url: validate_webhook_url(&url)?,
                })
            }
            SyncKind::AwsSecret => {
                if self.path.is_some() {
                    return stray("path");
                }
                if !self.namespaces.is_empty() {
                    return stray("namespaces");
                }
                if self.secret_name.is_some() {
                    return stray("secretName");
                }
                if self.url.is_some() {
                    return stray("url");
                }
                let secret_id = self.aws_secret.ok_or_else(|| missing("awsSecret"))?;
                let arn_region = validate_aws_secret_id(&secret_id)?;
                let region = match self.aws_region {
                    Some(region) => {
                        validate_aws_region(&region)?;
                        Some(region)
                    }
                    None => arn_region,
                };
                let (identity_id, identity_name) =
                    self.aws_identity.ok_or_else(|| missing("awsIdentity"))?;
                Ok(SyncDestination::AwsSecret(AwsSecretDestination {
                    secret_id,
                    region,
                    identity_id,
                    identity_name,
                    adopt: self.adopt,
                }))
            }
        }
    }
}

const MAX_NAMESPACES: usize = 50;
const MAX_PATH_BYTES: usize = 1024;

fn missing(field: &str) -> Error {
    Error::invalid("missing_field", format!("`{field}` is required"))
}

/// A path below the sync root: relative, `/`-separated, with no empty, `.` or `..`
/// component, no control characters and no backslash (which another platform would
/// read as a separator). Symbolic links are judged when the file is written.
pub fn validate_relative_path(path: &str) -> Result<String> {
    let invalid = |why: &str| {
        Error::invalid(
            "invalid_sync_path",
            format!(
                "invalid path `{}`: {why}; give a path relative to the server's sync directory, e.g. ci/.docker/config.json",
                echo(path)
            ),
        )
    };
    if path.is_empty() {
        return Err(invalid("it is empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid("it is longer than 1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(invalid("absolute paths are not allowed"));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(invalid("control characters and `\\` are not allowed"));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(invalid("empty path components are not allowed")),
            "." | ".." => return Err(invalid("`.` and `..` are not allowed")),
            _ if component.len() > 255 => {
                return Err(invalid("a component is longer than 255 bytes"))
            }
            _ => {}
        }
    }
    Ok(path.to_owned())
}

/// A Kubernetes namespace name: an RFC 1123 label.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    if is_label(namespace) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_namespace",
            format!(
                "invalid namespace `{}`: use 1-63 lower-case letters, digits or `-`, starting and ending with a letter or digit",
                echo(namespace)
            ),
        ))
    }
}

fn is_label(value: &str) -> bool {
    (1..=63).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// A Secret name: an RFC 1123 subdomain.
pub fn validate_secret_name(name: &str) -> Result<()> {
    // Unlike a namespace, a subdomain's parts may be longer than 63 (the API server
    // checks only the pattern and the total length).
    let part = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(part) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_secret_name",
            format!(
                "invalid Secret name `{}`: use lower-case letters, digits, `-` and `.` (at most 253), starting and ending with a letter or digit",
                echo(name)
            ),
        ))
    }
}

/// `regkeeper-` and the credential name made a valid Secret name.
pub fn default_secret_name(credential_name: &str) -> String {
    let mut name: String = format!("regkeeper-{credential_name}")
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// An `https` URL with a host and no user info or fragment. Where it may point is the
/// outbound policy's decision, made again at every delivery.
pub fn validate_webhook_url(value: &str) -> Result<String> {
    let invalid =
        |why: &str| Error::invalid("invalid_webhook_url", format!("invalid webhook URL: {why}"));
    if value.len() > 2048 {
        return Err(invalid("longer than 2048 characters"));
    }
    let url = url::Url::parse(value).map_err(|_| invalid("not a URL"))?;
    if url.scheme() != "https" {
        return Err(invalid(
            "it must be https, since every delivery carries a registry secret",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "it must not hold user info; deliveries are authenticated by their signature",
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid("it must not have a fragment"));
    }
    Ok(url.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// Not delivered yet.
    Pending,
    /// The last push succeeded.
    Ok,
    /// The last push failed; it is retried with backoff.
    Failing,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Failing => "failing",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "pending" => Ok(Self::Pending),
            "ok" => Ok(Self::Ok),
            "failing" => Ok(Self::Failing),
            other => Err(Error::internal(format!(
                "stored sync status {other} is unknown"
            ))),
        }
    }
}

/// What a target last delivered, so a target whose credential changed (revision) or
/// whose token was re-minted (issue time) is known to be behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub revision: Option<i64>,
    pub token_issued_at: Option<Timestamp>,
    /// The `auths` key last written to a file, removed there when the key changes.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTarget {
    pub id: String,
    pub credential_id: String,
    /// Read with the target; not stored in its row.
    pub credential_name: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub destination: SyncDestination,
    /// A webhook's HMAC key, sealed (its `Debug` shows only the key version).
    pub signing_key: Option<SealedSecret>,
    pub status: SyncStatus,
    /// Consecutive failed pushes.
    pub failures: i64,
    pub last_error: Option<String>,
    /// When the next try is due; `None` once delivered, until something changes.
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_synced_at: Option<Timestamp>,
    pub delivered: Delivered,
    /// Computed on read: the credential or its token changed since the last delivery.
    pub behind: bool,
    pub created_at: Timestamp,
    pub created_by: String,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parts(kind: &str) -> DestinationParts {
        DestinationParts {
            kind: kind.into(),
            ..DestinationParts::default()
        }
    }

    #[test]
    fn paths_stay_relative_and_plain() {
        for good in ["config.json", "ci/.docker/config.json", "a b/c..d/x"] {
            assert_eq!(validate_relative_path(good).unwrap(), good);
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\0b",
            "a\nb",
        ] {
            let error = validate_relative_path(bad).unwrap_err();
            assert_eq!(error.code(), "invalid_sync_path", "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_paths_never_climb_out(path in "[a-z./\\\\]{0,12}") {
            if let Ok(valid) = validate_relative_path(&path) {
                prop_assert!(!valid.starts_with('/'));
                prop_assert!(valid.split('/').all(|part| !part.is_empty() && part != "." && part != ".."));
            }
        }
    }

    #[test]
    fn kubernetes_names_follow_rfc_1123() {
        assert!(validate_namespace("ci-1").is_ok());
        for bad in ["", "-ci", "ci-", "CI", "a.b", &"a".repeat(64)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
        assert!(validate_secret_name("regkeeper-ecr.pull").is_ok());
        for bad in ["", "a..b", ".a", "A", "a_b"] {
            assert!(validate_secret_name(bad).is_err(), "{bad}");
        }
        assert_eq!(default_secret_name("My_Ecr-"), "regkeeper-my-ecr");
        assert!(validate_secret_name(&default_secret_name(&"X_".repeat(50))).is_ok());
    }

    #[test]
    fn webhooks_are_https_without_user_info() {
        assert_eq!(
            validate_webhook_url("https://hooks.example.com/rk?team=a").unwrap(),
            "https://hooks.example.com/rk?team=a"
        );
        for bad in [
            "http://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#x",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                validate_webhook_url(bad).unwrap_err().code(),
                "invalid_webhook_url",
                "{bad}"
            );
        }
    }

    #[test]
    fn each_kind_takes_only_its_own_fields() {
        let file = DestinationParts {
            path: Some("x.json".into()),
            ..parts("file")
        };
        assert_eq!(
            file.build("c").unwrap(),
            SyncDestination::File {
                path: "x.json".into()
            }
        );
        let mixed = DestinationParts {
            path: Some("x.json".into()),
            url: Some("https://h/".into()),
            ..parts("file")
        };
        assert!(mixed.build("c").is_err());
        let kubernetes = DestinationParts {
            namespaces: vec!["a".into(), "b".into(), "a".into()],
            ..parts("kubernetes")
        };
        assert_eq!(
            kubernetes.build("Pull_Creds").unwrap(),
            SyncDestination::Kubernetes {
                namespaces: vec!["a".into(), "b".into()],
                secret_name: "regkeeper-pull-creds".into()
            }
        );
        assert_eq!(
            parts("kubernetes").build("c").unwrap_err().code(),
            "missing_field"
        );
        assert_eq!(
            parts("ftp").build("c").unwrap_err().code(),
            "invalid_sync_target"
        );
        let secret = DestinationParts {
            aws_secret: Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-Ab12".into()),
            aws_identity: Some(("id-1".into(), "aws".into())),
            ..parts("aws_secret")
        };
        let SyncDestination::AwsSecret(built) = secret.build("c").unwrap() else {
            panic!("not an aws_secret target");
        };
        assert_eq!(built.region.as_deref(), Some("eu-west-1"));
        assert!(!built.adopt);
        let without_identity = DestinationParts {
            aws_secret: Some("ecs/login".into()),
            ..parts("aws_secret")
        };
        assert_eq!(
            without_identity.build("c").unwrap_err().code(),
            "missing_field"
        );
        let stray = DestinationParts {
            path: Some("x.json".into()),
            adopt: true,
            ..parts("file")
        };
        assert_eq!(stray.build("c").unwrap_err().code(), "invalid_sync_target");
    }
}
