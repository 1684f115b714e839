//! The programs that hand regkeeper's credentials to whatever pulls images on a node or
//! a laptop, without a person in between: the docker credential helper
//! (`docker-credential-regkeeper`, for Docker, Podman, skopeo, crane and distribution's
//! pull-through `proxy.exec`) and the kubelet image credential provider
//! (`regkeeper-kubelet-credential-provider`, also `regkeeper kubelet-credential-provider`).
//!
//! Both are thin: one `POST /api/v1/resolve` through `regkeeper-client`, and a
//! translation of its answer into the puller's protocol. They run once per pull, so this
//! crate stays off the server's dependencies (see `tests/dependencies.rs`).

pub mod docker_helper;
pub mod federation;
pub mod kubelet;

use regkeeper_client::ClientError;

/// Looks an environment variable up; the binaries pass `std::env::var`, tests a map.
pub type Environment<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A failure talking to regkeeper as one actionable line for a puller's log. Server
/// messages never carry secrets; a response that does not parse is not quoted, since
/// it could be a resolve answer.
pub fn describe(error: &ClientError) -> String {
    let message = match error {
        ClientError::Config(message) => message.clone(),
        ClientError::Transport { url, reason } => {
            format!("cannot reach regkeeper at {url} ({reason}): check REGKEEPER_URL")
        }
        ClientError::Api {
            status: 401,
            code,
            message,
        } => format!(
            "regkeeper refused the API token: {message} ({code}); check REGKEEPER_TOKEN or REGKEEPER_TOKEN_FILE"
        ),
        ClientError::Api { code, message, .. } => format!("regkeeper: {message} ({code})"),
        ClientError::Protocol(_) => {
            "unexpected response from regkeeper: is REGKEEPER_URL a regkeeper server of a matching version?"
                .to_owned()
        }
    };
    one_line(&message)
}

/// Puller logs are read line by line.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .filter(|part| !part.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a JSON body on standard input was refused, without quoting it: serde's messages
/// can repeat a value, and the value could be a password or a service-account token.
fn json_problem(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Io => "it could not be read",
        serde_json::error::Category::Syntax => "it is not valid JSON",
        serde_json::error::Category::Data => "a field is missing or has the wrong type",
        serde_json::error::Category::Eof => "it ends early",
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_become_one_actionable_line() {
        let unauthorized = ClientError::Api {
            status: 401,
            code: "unauthenticated".into(),
            message: "the API token is unknown\nor revoked".into(),
        };
        let line = describe(&unauthorized);
        assert!(!line.contains('\n'));
        assert!(line.contains("REGKEEPER_TOKEN"), "{line}");
        let unreachable = ClientError::Transport {
            url: "http://127.0.0.1:1".into(),
            reason: "Connection refused".into(),
        };
        assert!(describe(&unreachable).contains("REGKEEPER_URL"));
        let garbled = ClientError::Protocol("invalid type: string \"hunter2\"".into());
        assert!(!describe(&garbled).contains("hunter2"));
    }

    /// Issue 14: what the helper and the provider quote back (an unknown action, a
    /// request's apiVersion, a malformed role) goes through `text::echo`; they used to
    /// cut it short with its control characters kept (or turned into `?`).
    #[test]
    fn quoted_input_has_control_characters_escaped() {
        let hostile = "x\n\u{1b}[31m";
        let mut errors = Vec::new();
        let status = docker_helper::main(
            Some(&format!("get{hostile}")),
            &|_| None,
            &mut "".as_bytes(),
            &mut Vec::new(),
            &mut errors,
            &|| std::time::SystemTime::UNIX_EPOCH,
        );
        assert_eq!(status, 1);
        let request = kubelet::read_request(
            &mut r#"{"apiVersion":"v1x\n\u001b[31m","kind":"CredentialProviderRequest","image":"ghcr.io/a/b"}"#
                .as_bytes(),
        )
        .unwrap();
        let not_found = kubelet::Lookup::NotFound;
        for shown in [
            String::from_utf8(errors).unwrap(),
            kubelet::respond(&request, &not_found, std::time::SystemTime::UNIX_EPOCH)
                .unwrap_err()
                .to_string(),
            federation::check_role_reference(&format!("rk:acme:role/ci{hostile}")).unwrap_err(),
        ] {
            assert!(shown.contains("x\\n\\u{1b}[31m"), "{shown}");
            assert!(!shown.trim_end().contains(['\n', '\u{1b}']), "{shown:?}");
        }
    }

    #[test]
    fn json_problems_do_not_quote_the_input() {
        let error = serde_json::from_str::<regkeeper_wire::docker_helper::HelperCredentials>(
            r#""s3cret-canary""#,
        )
        .unwrap_err();
        let problem = json_problem(&error);
        assert!(!problem.contains("s3cret-canary"), "{problem}");
        assert!(problem.contains("line 1"), "{problem}");
    }
}
