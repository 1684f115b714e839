//! What the console's forms carry: URL-encoded fields (zeroized, since one of them is a
//! password), the credential form as typed (everything but the password, so it can be
//! shown again after a failure), its translation into the REST API's
//! `CredentialInput`, and registry type detection for the add form.

use regkeeper_wire::{CredentialInput, Sensitive};
use zeroize::Zeroize;

use crate::domain::credential::{Credential, CredentialKind};
use crate::domain::registry::{self, RegistryKind};

/// The Provider choices: the value the service understands and what people read.
pub const PROVIDERS: [(&str, &str); 5] = [
    ("auto", "Detect from the registry server"),
    ("docker", "Docker registry"),
    ("ecr", "Amazon ECR"),
    ("acr", "Azure Container Registry"),
    ("gcr", "Google Artifact Registry / GCR"),
];

/// A URL-encoded form body. Values are zeroized on drop and never printed: one of them
/// may be a password or an API token.
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The first value named `name`, as sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value named `name` without surrounding white space, or "".
    pub fn text(&self, name: &str) -> String {
        self.get(name).map(str::trim).unwrap_or_default().to_owned()
    }
}

impl Drop for FormFields {
    fn drop(&mut self) {
        for (_, value) in &mut self.0 {
            value.zeroize();
        }
    }
}

/// The credential form as typed, without the password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialForm {
    pub name: String,
    pub kind: String,
    pub registry: String,
    pub username: String,
    pub path_prefix: String,
    pub role_arn: String,
    pub external_id: String,
    pub aws_region: String,
    pub ambient: bool,
}

impl CredentialForm {
    pub fn empty() -> Self {
        Self {
            kind: "auto".to_owned(),
            ..Self::default()
        }
    }

    pub fn from_fields(fields: &FormFields) -> Self {
        let kind = fields.text("type");
        Self {
            name: fields.text("name"),
            kind: if kind.is_empty() {
                "auto".to_owned()
            } else {
                kind
            },
            registry: fields.text("registry"),
            username: fields.text("username"),
            path_prefix: fields.text("path_prefix"),
            role_arn: fields.text("role_arn"),
            external_id: fields.text("external_id"),
            aws_region: fields.text("aws_region"),
            ambient: fields
                .get("ambient")
                .is_some_and(|value| matches!(value, "true" | "on" | "1")),
        }
    }

    /// A stored credential as its update form shows it. The AWS region is shown only
    /// when the host does not name it, so changing an ECR host to another region does
    /// not collide with the old one.
    pub fn from_credential(credential: &Credential) -> Self {
        let settings = &credential.settings;
        let region_from_host = matches!(
            registry::classify(&credential.registry_host),
            RegistryKind::Ecr(_)
        );
        Self {
            name: credential.name.clone(),
            kind: credential.kind.as_str().to_owned(),
            registry: credential.registry_host.clone(),
            username: credential.username.clone().unwrap_or_default(),
            path_prefix: credential.path_prefix.clone(),
            role_arn: settings.role_arn.clone().unwrap_or_default(),
            external_id: settings.external_id.clone().unwrap_or_default(),
            aws_region: if region_from_host {
                String::new()
            } else {
                settings.aws_region.clone().unwrap_or_default()
            },
            ambient: settings.ambient,
        }
    }

    /// What is missing before the service need be asked, in the form's own words.
    pub fn missing(&self) -> Option<String> {
        let missing: Vec<&str> = [("Name", &self.name), ("Registry server", &self.registry)]
            .into_iter()
            .filter(|(_, value)| value.is_empty())
            .map(|(label, _)| label)
            .collect();
        match missing.as_slice() {
            [] => None,
            [one] => Some(format!("Enter the {one}.")),
            _ => Some(format!("Enter the {}.", missing.join(" and the "))),
        }
    }

    /// The REST API's input: empty fields are absent (on an update: unchanged), and an
    /// empty password keeps the stored one.
    pub fn input(&self, password: Option<&str>) -> CredentialInput {
        let optional = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        CredentialInput {
            name: optional(&self.name),
            registry: optional(&self.registry),
            kind: Some(self.kind.clone()),
            username: optional(&self.username),
            password: password
                .filter(|password| !password.is_empty())
                .map(Sensitive::new),
            session_token: None,
            path_prefix: optional(&self.path_prefix),
            role_arn: optional(&self.role_arn),
            external_id: optional(&self.external_id),
            ambient: Some(self.ambient),
            aws_region: optional(&self.aws_region),
            azure_tenant_id: None,
            aws_secret: None,
            aws_identity: None,
            aws_secret_keys: None,
            verify: None,
            origin: None,
        }
    }
}

/// What the add form says about a registry server as it is typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub kind: Option<&'static str>,
    pub label: Option<String>,
    pub error: Option<String>,
}

impl Detection {
    /// The text of the form's `<output>`.
    pub fn text(&self) -> String {
        match (&self.label, &self.error) {
            (Some(label), _) => format!("Detected: {label}"),
            (None, Some(error)) => format!("Check the registry server: {error}."),
            (None, None) => String::new(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.kind,
            "label": self.label,
            "error": self.error,
            "text": self.text(),
        })
    }
}

/// The type a registry server gets when Provider is "Detect" (the same rule the
/// service applies: `registry::normalize`, then `registry::classify`).
pub fn detect(registry: &str) -> Detection {
    if registry.trim().is_empty() {
        return Detection {
            kind: None,
            label: None,
            error: None,
        };
    }
    match registry::normalize(registry) {
        Err(error) => Detection {
            kind: None,
            label: None,
            error: Some(error.to_string()),
        },
        Ok(address) => {
            let classified = registry::classify(&address.host);
            let kind = CredentialKind::guess(&classified).as_str();
            let label = match &classified {
                RegistryKind::Ecr(host) if host.public => {
                    format!("Amazon ECR Public ({})", host.region)
                }
                RegistryKind::Ecr(host) => format!("Amazon ECR ({})", host.region),
                _ => provider_label(kind).to_owned(),
            };
            Detection {
                kind: Some(kind),
                label: Some(label),
                error: None,
            }
        }
    }
}

fn provider_label(kind: &str) -> &'static str {
    PROVIDERS
        .iter()
        .find(|(value, _)| *value == kind)
        .map_or("Docker registry", |(_, label)| label)
}

/// The service speaks to the command line (`--role-arn`, `--password-stdin`); on a
/// page the same message names the form's fields instead.
pub fn console_wording(message: &str) -> String {
    const REPLACEMENTS: [(&str, &str); 12] = [
        (
            "give it with --password-stdin, --password-env or --password-file",
            "enter it in the Password field",
        ),
        (
            "(--password-stdin, --password-env or --password-file)",
            "(enter it in the Password field)",
        ),
        (
            "pass the downloaded key file with --password-file",
            "paste the whole downloaded key file into the Password field",
        ),
        ("with `regkeeper credentials update`", "with Update"),
        ("(--username)", "(User name)"),
        ("--role-arn", "Role ARN"),
        ("--external-id", "External ID"),
        ("--ambient", "the ambient option"),
        ("--aws-region", "AWS region"),
        ("--azure-tenant-id", "an Azure tenant id"),
        ("--registry", "Registry server"),
        ("--name", "Name"),
    ];
    REPLACEMENTS
        .iter()
        .fold(message.to_owned(), |text, (from, to)| {
            text.replace(from, to)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_follows_the_service_rules() {
        let ecr = detect("123456789012.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(ecr.kind, Some("ecr"));
        assert_eq!(ecr.text(), "Detected: Amazon ECR (us-east-1)");
        assert_eq!(
            ecr.json(),
            serde_json::json!({"type": "ecr", "label": "Amazon ECR (us-east-1)", "error": null,
                "text": "Detected: Amazon ECR (us-east-1)"})
        );
        assert_eq!(
            detect("https://ghcr.io/acme").text(),
            "Detected: Docker registry"
        );
        assert_eq!(detect("myregistry.azurecr.io").kind, Some("acr"));
        assert_eq!(
            detect("europe-docker.pkg.dev").label.as_deref(),
            Some("Google Artifact Registry / GCR")
        );
        assert_eq!(
            detect("public.ecr.aws").label.as_deref(),
            Some("Amazon ECR Public (us-east-1)")
        );
        // Only looks like ACR.
        assert_eq!(detect("x.azurecr.io.evil.com").kind, Some("docker"));
        assert_eq!(detect("  ").text(), "");
        let refused = detect("user:hunter2@ghcr.io");
        assert_eq!(refused.kind, None);
        assert!(!refused.text().contains("hunter2"), "{}", refused.text());
        assert!(refused.text().starts_with("Check the registry server"));
    }

    #[test]
    fn fields_parse_and_the_form_keeps_no_password() {
        let fields = FormFields::parse(
            b"csrf=abc&name=+ghcr+&type=&registry=ghcr.io&username=me&password=p%26ss%20word&ambient=true",
        );
        assert_eq!(fields.get("password"), Some("p&ss word"));
        let form = CredentialForm::from_fields(&fields);
        assert_eq!(form.name, "ghcr");
        assert_eq!(form.kind, "auto");
        assert!(form.ambient);
        assert!(!format!("{form:?}").contains("p&ss"));
        let input = form.input(fields.get("password"));
        assert_eq!(
            input.password.as_ref().map(Sensitive::expose),
            Some("p&ss word")
        );
        assert_eq!(input.path_prefix, None);
        assert_eq!(input.kind.as_deref(), Some("auto"));
        assert!(form.input(Some("")).password.is_none());
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(
            CredentialForm::empty().missing().as_deref(),
            Some("Enter the Name and the Registry server.")
        );
        let named = CredentialForm {
            name: "ghcr".into(),
            ..CredentialForm::empty()
        };
        assert_eq!(
            named.missing().as_deref(),
            Some("Enter the Registry server.")
        );
    }

    #[test]
    fn command_line_wording_becomes_field_names() {
        assert_eq!(
            console_wording("a password is required: give it with --password-stdin, --password-env or --password-file"),
            "a password is required: enter it in the Password field"
        );
        assert_eq!(
            console_wording("--role-arn, --external-id, --ambient and --aws-region apply to ecr credentials, not docker"),
            "Role ARN, External ID, the ambient option and AWS region apply to ecr credentials, not docker"
        );
        assert_eq!(
            console_wording("a docker credential needs a user name (--username)"),
            "a docker credential needs a user name (User name)"
        );
    }
}
