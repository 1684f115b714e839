//! The cloud identity services regkeeper signs in to for a credential: whether ECR
//! credentials may use the server's own (ambient) AWS identity, and for which accounts
//! (`REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS`, `REGKEEPER_AMBIENT_AWS_ACCOUNTS`), and
//! where Azure AD and Google's OAuth server are (`REGKEEPER_AZURE_AUTHORITY_URL`,
//! `REGKEEPER_GOOGLE_TOKEN_URL`, which tests point at their `fake_*` servers). Kept
//! apart from `config.rs` so each setting's parsing and validation sit beside its type.

use url::{Host, Url};

use super::ConfigError;

pub const DEFAULT_AZURE_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The cloud settings, validated; `Config` keeps them as its own fields.
pub(super) struct CloudSettings {
    pub(super) allow_ambient_aws_credentials: bool,
    pub(super) ambient_aws_accounts: Option<Vec<String>>,
    pub(super) azure_authority_url: Url,
    pub(super) google_token_url: Url,
}

/// Reads the four settings (environment first, then the file's values), each validated
/// with an error naming its key.
pub(super) fn load(
    env: &dyn Fn(&str) -> Option<String>,
    allow_ambient_aws_credentials: Option<bool>,
    ambient_aws_accounts: Option<Vec<String>>,
    azure_authority_url: Option<String>,
    google_token_url: Option<String>,
) -> Result<CloudSettings, ConfigError> {
    let allow_ambient_aws_credentials = match env("REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS") {
        Some(value) => super::parse_bool("REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS", &value)?,
        None => allow_ambient_aws_credentials.unwrap_or(false),
    };
    let ambient_aws_accounts = super::list(env("REGKEEPER_AMBIENT_AWS_ACCOUNTS"))
        .or(ambient_aws_accounts)
        .map(|accounts| {
            accounts
                .into_iter()
                .map(|account| validate_aws_account(account.trim().to_owned()))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let azure_authority_url = parse_endpoint(
        "REGKEEPER_AZURE_AUTHORITY_URL",
        env("REGKEEPER_AZURE_AUTHORITY_URL")
            .or(azure_authority_url)
            .as_deref()
            .unwrap_or(DEFAULT_AZURE_AUTHORITY_URL),
    )?;
    let google_token_url = parse_endpoint(
        "REGKEEPER_GOOGLE_TOKEN_URL",
        env("REGKEEPER_GOOGLE_TOKEN_URL")
            .or(google_token_url)
            .as_deref()
            .unwrap_or(DEFAULT_GOOGLE_TOKEN_URL),
    )?;
    Ok(CloudSettings {
        allow_ambient_aws_credentials,
        ambient_aws_accounts,
        azure_authority_url,
        google_token_url,
    })
}

/// An AWS account id: exactly 12 digits.
fn validate_aws_account(account: String) -> Result<String, ConfigError> {
    if account.len() == 12 && account.bytes().all(|byte| byte.is_ascii_digit()) {
        Ok(account)
    } else {
        Err(ConfigError::Invalid {
            key: "REGKEEPER_AMBIENT_AWS_ACCOUNTS",
            message: format!(
                "`{}` is not an AWS account id (12 digits, e.g. 123456789012)",
                crate::text::echo(&account)
            ),
        })
    }
}

/// A cloud identity endpoint: https, with no user info, query or fragment. Plain http
/// is accepted only for 127.0.0.1, localhost and ::1, so that the hand-written
/// `fake_*` Azure AD and Google OAuth servers of the tests can stand in without a TLS
/// set-up; nothing on a network is ever reached in clear text.
fn parse_endpoint(key: &'static str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        key,
        message: format!("`{value}` {message}"),
    };
    let url = Url::parse(value).map_err(|_| invalid("is not a URL"))?;
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(address)) => address == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(address)) => address == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(invalid(
                "must be an https URL (http only for 127.0.0.1 or localhost)",
            ))
        }
    }
    if url.host().is_none() {
        return Err(invalid("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not hold user info"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::super::{Config, Overrides};

    #[test]
    fn cloud_endpoints_default_to_the_real_services_and_must_be_https() {
        let config = load(&[]).unwrap();
        assert_eq!(
            config.azure_authority_url.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(
            config.google_token_url.as_str(),
            "https://oauth2.googleapis.com/token"
        );
        let config = load(&[
            ("REGKEEPER_AZURE_AUTHORITY_URL", "http://127.0.0.1:8443"),
            ("REGKEEPER_GOOGLE_TOKEN_URL", "http://localhost:9/token"),
        ])
        .unwrap();
        assert_eq!(config.azure_authority_url.port(), Some(8443));
        assert_eq!(config.google_token_url.path(), "/token");
        for (key, value) in [
            ("REGKEEPER_AZURE_AUTHORITY_URL", "http://login.example.com"),
            ("REGKEEPER_AZURE_AUTHORITY_URL", "http://127.0.0.2"),
            ("REGKEEPER_AZURE_AUTHORITY_URL", "not a url"),
            ("REGKEEPER_GOOGLE_TOKEN_URL", "ftp://localhost/token"),
            (
                "REGKEEPER_GOOGLE_TOKEN_URL",
                "https://user:pw@oauth2.example/token",
            ),
            (
                "REGKEEPER_GOOGLE_TOKEN_URL",
                "https://oauth2.example/token?x=1",
            ),
        ] {
            let error = load(&[(key, value)]).unwrap_err();
            assert!(error.to_string().starts_with(key), "{value}: {error}");
        }
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("regkeeper.toml");
        std::fs::write(
            &path,
            "azure_authority_url = \"https://login.microsoftonline.us\"\n\
             google_token_url = \"https://oauth2.example/token\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap();
        assert_eq!(
            config.azure_authority_url.host_str(),
            Some("login.microsoftonline.us")
        );
        assert_eq!(
            config.google_token_url.as_str(),
            "https://oauth2.example/token"
        );
    }
}
