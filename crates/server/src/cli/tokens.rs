//! `regkeeper tokens …`: the caller's API tokens (and, for a site administrator,
//! another user's), and how a new token and a token list are shown, which
//! `regkeeper roles tokens …` shares.

use regkeeper_client::{segment, Client};
use regkeeper_wire as wire;

use super::output::{self, or_dash};
use super::{OutputFormat, TokensCommand};

/// Parses `3600`, `3600s`, `90m`, `12h` or `30d` into seconds.
pub(super) fn parse_duration(value: &str) -> Result<u64, String> {
    let (number, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => value.split_at(index),
        None => (value, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{value}` is not a duration such as 12h or 30d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{value}`: use a unit of s, m, h or d")),
    };
    number
        .checked_mul(scale)
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| format!("`{value}` is out of range"))
}

/// A new token: its secret on stdout (this once), what it is on stderr; or all as JSON.
pub(super) fn print_created_token(
    created: &wire::ApiTokenCreated,
    format: OutputFormat,
    whose: &str,
) -> anyhow::Result<()> {
    output::secret_once(
        format,
        created,
        &format!(
            "Created API token {} ({}){whose}. It is shown only now:",
            created.token.name, created.token.id
        ),
        created.secret.expose(),
    )
}

pub(super) fn print_tokens(tokens: &[wire::ApiToken]) {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|token| {
            vec![
                token.id.clone(),
                token.name.clone(),
                format!("{}…", token.prefix),
                token.created_at.clone(),
                or_dash(token.expires_at.as_deref()),
                or_dash(token.last_used_at.as_deref()),
                if token.revoked_at.is_some() {
                    "revoked".into()
                } else {
                    "active".into()
                },
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "PREFIX",
            "CREATED",
            "EXPIRES",
            "LAST USED",
            "STATE",
        ],
        &rows,
    );
}

pub(super) fn run(client: &Client, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create {
            name,
            expires_in,
            output,
        } => {
            let created: wire::ApiTokenCreated = client.post(
                "/api/v1/tokens",
                &wire::ApiTokenInput {
                    name,
                    expires_in_seconds: expires_in,
                },
            )?;
            print_created_token(&created, output.output, "")
        }
        TokensCommand::List { user, output } => {
            let path = match &user {
                Some(user) => format!("/api/v1/users/{}/tokens", segment(user)),
                None => "/api/v1/tokens".to_owned(),
            };
            let list: wire::ApiTokenList = client.get(&path)?;
            if output.output == OutputFormat::Json {
                return output::json(&list);
            }
            print_tokens(&list.tokens);
            Ok(())
        }
        TokensCommand::Revoke { id, user } => {
            match &user {
                Some(user) => {
                    client.delete(&format!(
                        "/api/v1/users/{}/tokens/{}",
                        segment(user),
                        segment(&id)
                    ))?;
                    output::line(&format!("Revoked API token {id} of {user}."));
                }
                None => {
                    client.delete(&format!("/api/v1/tokens/{}", segment(&id)))?;
                    output::line(&format!("Revoked API token {id}."));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
