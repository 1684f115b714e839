//! `regkeeper login --role` (issue 13 §3): exchange an OIDC token (a file, a variable,
//! or the GitHub Actions job's own) for a short-lived API token of a workload role, and
//! optionally save it in the settings file.

use std::io::Write;
use std::path::PathBuf;

use regkeeper_wire::{ExchangeInput, Exchanged, Sensitive};
use secrecy::zeroize::Zeroizing;

use super::{settings_path, Client, ClientError, FileSettings, SettingSources};

impl Client {
    /// `POST /api/v1/oidc/exchange`, sent without this client's own API token: the
    /// OIDC token is the only credential, and a stored token has no business there.
    pub fn exchange_oidc(&self, role: &str, token: &Sensitive) -> Result<Exchanged, ClientError> {
        self.anonymous().post(
            "/api/v1/oidc/exchange",
            &ExchangeInput {
                role: role.to_owned(),
                token: token.clone(),
            },
        )
    }

    /// This client's server and TLS settings with `token` as its API token: how the
    /// node-side programs call with the token an exchange gave them.
    pub fn with_token(&self, token: Sensitive) -> Client {
        Client {
            base_url: self.base_url.clone(),
            token: Some(token),
            agent: self.agent.clone(),
            sources: SettingSources {
                token: Some("an exchanged role token".to_owned()),
                ..self.sources.clone()
            },
        }
    }

    /// A copy (same agent and TLS) that sends no API token, for the calls that are how
    /// one is had: the OIDC exchange and the browser sign-in.
    pub(crate) fn anonymous(&self) -> Client {
        Client {
            base_url: self.base_url.clone(),
            token: None,
            agent: self.agent.clone(),
            sources: SettingSources {
                token: None,
                ..self.sources.clone()
            },
        }
    }
}

/// The job's OIDC token from GitHub Actions: `ACTIONS_ID_TOKEN_REQUEST_URL` with
/// `audience` added, authorised by `ACTIONS_ID_TOKEN_REQUEST_TOKEN` (both set only in
/// jobs with `permissions: id-token: write`).
pub fn github_actions_token(
    environment: &dyn Fn(&str) -> Option<String>,
    audience: &str,
) -> Result<Sensitive, ClientError> {
    let missing = |name: &str| {
        ClientError::Config(format!(
            "{name} is not set: --github-actions works inside a GitHub Actions job with `permissions: id-token: write`"
        ))
    };
    let url = environment("ACTIONS_ID_TOKEN_REQUEST_URL")
        .filter(|value| !value.is_empty())
        .ok_or_else(|| missing("ACTIONS_ID_TOKEN_REQUEST_URL"))?;
    let bearer = Zeroizing::new(
        environment("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            .filter(|value| !value.is_empty())
            .ok_or_else(|| missing("ACTIONS_ID_TOKEN_REQUEST_TOKEN"))?,
    );
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{url}{separator}audience={}",
        percent_encoding::utf8_percent_encode(audience, percent_encoding::NON_ALPHANUMERIC)
    );
    // The request URL is GitHub's own, not regkeeper's: ureq's default TLS roots.
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(30))
        .build();
    let failed = |reason: String| ClientError::Transport {
        url: "ACTIONS_ID_TOKEN_REQUEST_URL".to_owned(),
        reason,
    };
    let response = agent
        .get(&url)
        .set("Authorization", &format!("Bearer {}", bearer.as_str()))
        .set("Accept", "application/json")
        .call()
        .map_err(|error| match error {
            ureq::Error::Status(status, _) => failed(format!(
                "GitHub Actions answered HTTP {status} for the job's OIDC token"
            )),
            ureq::Error::Transport(transport) => failed(transport.kind().to_string()),
        })?;
    #[derive(serde::Deserialize)]
    struct Answer {
        value: Sensitive,
    }
    let answer: Answer = response.into_json().map_err(|_| {
        ClientError::Protocol("GitHub Actions' token answer has no `value`".to_owned())
    })?;
    Ok(answer.value)
}

/// Writes `url` and `token` to the settings file (created 0600, replaced atomically),
/// keeping its `ca_file`. Returns the file's path.
pub fn save_settings(
    environment: &dyn Fn(&str) -> Option<String>,
    url: &str,
    token: &Sensitive,
) -> Result<PathBuf, ClientError> {
    let path = settings_path(environment).ok_or_else(|| {
        ClientError::Config(
            "cannot tell where to save: neither XDG_CONFIG_HOME nor HOME is set".to_owned(),
        )
    })?;
    let failed = |error: std::io::Error| {
        ClientError::Config(format!("cannot write {}: {error}", path.display()))
    };
    let existing: FileSettings = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| toml::from_str(&text).ok())
        .unwrap_or_default();
    // JSON's string quoting is valid TOML for these values (printable ASCII).
    let quote = |value: &str| serde_json::to_string(value).expect("a string serialises");
    let mut text = Zeroizing::new(format!(
        "url = {}\ntoken = {}\n",
        quote(url),
        quote(token.expose())
    ));
    if let Some(ca_file) = existing.ca_file {
        text.push_str(&format!(
            "ca_file = {}\n",
            quote(&ca_file.display().to_string())
        ));
    }
    let directory = path.parent().expect("the settings path has a directory");
    std::fs::create_dir_all(directory).map_err(failed)?;
    let temporary = directory.join(".config.toml.new");
    // `mode` applies only to a file it creates.
    let _ = std::fs::remove_file(&temporary);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    std::fs::rename(&temporary, &path).map_err(failed)?;
    Ok(path)
}
