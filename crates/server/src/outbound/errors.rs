//! What can go wrong reaching a user-supplied host, in regkeeper's terms:
//! [`OutboundError`] with its codes and retryability, [`classify`], which finds what a
//! reqwest error was caused by (our own refusal from the resolver or the redirect
//! policy, TLS, a time-out, I/O), and [`describe`], the one way a reqwest error
//! becomes text. Messages never quote URLs, query strings or headers: only host
//! names, addresses and the lower layers' own descriptions, which carry none of them.

use std::error::Error as StdError;
use std::net::IpAddr;

use url::Url;

use super::{policy, MAX_REDIRECTS};

#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    #[error("{}", forbidden_message(host, address, rule))]
    DestinationForbidden {
        host: String,
        address: Option<IpAddr>,
        rule: &'static str,
    },
    #[error(
        "plain http to {host_port} is not allowed: use https, or an operator can allow this \
         registry with REGKEEPER_OUTBOUND_HTTP_REGISTRIES"
    )]
    PlainHttpForbidden { host_port: String },
    #[error("cannot resolve {host}: {message}")]
    Dns { host: String, message: String },
    #[error("TLS with {host} failed: {message}")]
    Tls { host: String, message: String },
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("request to {host} timed out")]
    Timeout { host: String },
    #[error("too many redirects (more than {MAX_REDIRECTS})")]
    TooManyRedirects,
    #[error("response body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Other(String),
}

fn forbidden_message(host: &str, address: &Option<IpAddr>, rule: &str) -> String {
    let destination = match address {
        Some(address) if address.to_string() == host.trim_matches(['[', ']']) => {
            address.to_string()
        }
        Some(address) => format!("{address} (host {host})"),
        None => host.to_owned(),
    };
    if rule == policy::rule::METADATA {
        return format!(
            "destination {destination} is forbidden: it is a {rule} address, which no \
             registry uses; only an exact entry for it (a /32 or /128) in \
             REGKEEPER_OUTBOUND_ALLOW_NETWORKS opens it"
        );
    }
    let mut message = format!(
        "destination {destination} is forbidden: {rule} addresses are not allowed; an \
         operator can allow the network with REGKEEPER_OUTBOUND_ALLOW_NETWORKS"
    );
    // A registry on the operator's own network usually needs a second setting too; say
    // so now, or the next attempt fails on it and costs another restart.
    if let (Some(address), true) = (address, on_own_network(rule)) {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        message.push_str(&format!(
            " (e.g. {address}/{prefix}) and, in the same restart, list a registry there \
             that speaks plain http in REGKEEPER_OUTBOUND_HTTP_REGISTRIES (host:port), or \
             give the private CA of its TLS certificate in REGKEEPER_OUTBOUND_CA_FILE"
        ));
    }
    message
}

/// Rules that refuse addresses where an operator's own registry may well run.
fn on_own_network(rule: &str) -> bool {
    [
        policy::rule::LOOPBACK,
        policy::rule::PRIVATE,
        policy::rule::SHARED,
    ]
    .contains(&rule)
}

impl OutboundError {
    /// A stable snake_case code for API error bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DestinationForbidden { .. } => "destination_forbidden",
            Self::PlainHttpForbidden { .. } => "plain_http_forbidden",
            Self::Dns { .. } => "dns_failed",
            Self::Tls { .. } => "tls_failed",
            Self::Connect { .. } => "connect_failed",
            Self::Timeout { .. } => "timeout",
            Self::TooManyRedirects => "too_many_redirects",
            Self::TooLarge { .. } => "response_too_large",
            Self::Other(_) => "outbound_failed",
        }
    }

    /// Whether trying again later may succeed without anyone changing configuration.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Dns { .. } | Self::Connect { .. } | Self::Timeout { .. }
        )
    }
}

/// Turns a reqwest error into ours by looking for what caused it: our own refusal (from
/// the resolver or the redirect policy), a TLS error, a time-out, an I/O error.
pub(super) fn classify(error: &reqwest::Error, fallback_host: &str) -> OutboundError {
    let host = error
        .url()
        .and_then(Url::host_str)
        .unwrap_or(fallback_host)
        .to_owned();
    let mut io_message = None;
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(found) = recognise(current, &host) {
            return found;
        }
        // An I/O error's `source()` skips the error it wraps, and the connector wraps
        // TLS errors in I/O errors, twice (tokio-rustls, then reqwest): look inside.
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            let mut wrapped = io.get_ref();
            while let Some(inner) = wrapped {
                let inner: &(dyn StdError + 'static) = inner;
                if let Some(found) = recognise(inner, &host) {
                    return found;
                }
                wrapped = inner
                    .downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::get_ref);
            }
            io_message.get_or_insert_with(|| io.to_string());
        }
        source = current.source();
    }
    if error.is_timeout() {
        return OutboundError::Timeout { host };
    }
    if let Some(message) = io_message {
        return OutboundError::Connect { host, message };
    }
    if error.is_connect() {
        return OutboundError::Connect {
            host,
            message: describe(error),
        };
    }
    OutboundError::Other(format!("request to {host} failed: {}", describe(error)))
}

fn recognise(error: &(dyn StdError + 'static), host: &str) -> Option<OutboundError> {
    if let Some(own) = error.downcast_ref::<OutboundError>() {
        return Some(own.clone());
    }
    let tls = error.downcast_ref::<rustls::Error>()?;
    let message = match tls {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            format!(
                "{tls}; if the registry's certificate comes from a private CA, an operator \
                 can trust that CA with REGKEEPER_OUTBOUND_CA_FILE"
            )
        }
        other => other.to_string(),
    };
    Some(OutboundError::Tls {
        host: host.to_owned(),
        message,
    })
}

/// A reqwest error as one line for a message: its causes, each once (the HTTP stack
/// often repeats one), without reqwest's own top line, which quotes the whole URL
/// (query string included); an error without causes gives that top line's fixed text
/// without the URL. The cloud providers' clients describe their failures with it too.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(current) = source {
        let text = current.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = current.source();
    }
    if parts.is_empty() {
        // Safe to show once the URL is gone: the rest is reqwest's fixed kind text.
        let mut error_text = error.to_string();
        if let Some(position) = error_text.find(" for url (") {
            error_text.truncate(position);
        }
        parts.push(error_text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::super::OutboundClient;
    use super::*;
    use crate::config::OutboundConfig;
    use policy::rule;

    #[test]
    fn forbidden_message_names_the_rule_and_the_setting() {
        let error = OutboundError::DestinationForbidden {
            host: "localhost".into(),
            address: Some("127.0.0.1".parse().unwrap()),
            rule: rule::LOOPBACK,
        };
        assert_eq!(
            error.to_string(),
            "destination 127.0.0.1 (host localhost) is forbidden: loopback addresses are not \
             allowed; an operator can allow the network with REGKEEPER_OUTBOUND_ALLOW_NETWORKS \
             (e.g. 127.0.0.1/32) and, in the same restart, list a registry there that speaks \
             plain http in REGKEEPER_OUTBOUND_HTTP_REGISTRIES (host:port), or give the \
             private CA of its TLS certificate in REGKEEPER_OUTBOUND_CA_FILE"
        );
        // Issue 12 item 15: an address on the operator's own network names every setting
        // the first request will need, so one restart suffices; others only the first.
        for (address, rule, names_both) in [
            ("10.1.2.3", rule::PRIVATE, true),
            ("fd00::5", rule::PRIVATE, true),
            ("100.64.0.9", rule::SHARED, true),
            ("169.254.169.254", rule::LINK_LOCAL, false),
            ("224.0.0.1", rule::MULTICAST, false),
        ] {
            let message = OutboundError::DestinationForbidden {
                host: address.into(),
                address: Some(address.parse().unwrap()),
                rule,
            }
            .to_string();
            assert!(
                message.contains("REGKEEPER_OUTBOUND_ALLOW_NETWORKS"),
                "{message}"
            );
            for setting in [
                "REGKEEPER_OUTBOUND_HTTP_REGISTRIES",
                "REGKEEPER_OUTBOUND_CA_FILE",
            ] {
                assert_eq!(message.contains(setting), names_both, "{message}");
            }
        }
        let literal = OutboundClient::new(&OutboundConfig::default())
            .unwrap()
            .check_url(&Url::parse("https://[::1]:8/").unwrap())
            .unwrap_err();
        assert!(
            literal
                .to_string()
                .starts_with("destination ::1 is forbidden"),
            "{literal}"
        );
    }

    #[test]
    fn codes_and_retryability() {
        let host = || "registry.example".to_owned();
        let cases = [
            (
                OutboundError::PlainHttpForbidden {
                    host_port: "a:1".into(),
                },
                "plain_http_forbidden",
                false,
            ),
            (
                OutboundError::Dns {
                    host: host(),
                    message: String::new(),
                },
                "dns_failed",
                true,
            ),
            (
                OutboundError::Tls {
                    host: host(),
                    message: String::new(),
                },
                "tls_failed",
                false,
            ),
            (
                OutboundError::Connect {
                    host: host(),
                    message: String::new(),
                },
                "connect_failed",
                true,
            ),
            (OutboundError::Timeout { host: host() }, "timeout", true),
            (OutboundError::TooManyRedirects, "too_many_redirects", false),
            (
                OutboundError::TooLarge { limit: 1 },
                "response_too_large",
                false,
            ),
            (
                OutboundError::Other(String::new()),
                "outbound_failed",
                false,
            ),
        ];
        for (error, code, retryable) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.retryable(), retryable, "{code}");
        }
    }

    /// Issue 14: one `describe` for every reqwest error (the providers had their own,
    /// which repeated causes and said only "the request failed" for an error without
    /// any): never the URL or its query, each cause once, and never empty.
    #[tokio::test]
    // A bare client makes the connection-refused error to describe (`.clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    async fn described_errors_keep_the_causes_once_and_drop_the_url() {
        use reqwest::ResponseBuilderExt as _;
        let secret = "s3cret-canary";
        let url = Url::parse(&format!("http://127.0.0.1:1/v2/?token={secret}")).unwrap();
        let refused = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(url.clone())
            .send()
            .await
            .unwrap_err();
        let shown = describe(&refused);
        assert!(
            !shown.contains(secret) && !shown.contains("127.0.0.1"),
            "{shown}"
        );
        let causes: Vec<&str> = shown.split(": ").collect();
        assert!(causes.windows(2).all(|pair| pair[0] != pair[1]), "{shown}");
        // An error with no cause (a status turned into an error) keeps reqwest's text.
        let response = axum::http::Response::builder()
            .status(404)
            .url(url)
            .body("")
            .unwrap();
        let status = reqwest::Response::from(response)
            .error_for_status()
            .unwrap_err();
        let shown = describe(&status);
        assert_eq!(shown, "HTTP status client error (404 Not Found)");
    }
}
