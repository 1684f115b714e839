//! Credentials are stored under a registry server and looked up by it, so every spelling of one server must collapse to one canonical address, and the cloud a server belongs to decides how a credential for it is obtained.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

use crate::text::echo;

/// Docker Hub's canonical name; its other host names are stored as this.
pub const DOCKER_HUB: &str = "docker.io";

const DOCKER_HUB_ALIASES: [&str; 4] = [
    DOCKER_HUB,
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// A registry server as stored: normalised host (with a port only when not the default), plus an optional repository path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAddress {
    pub host: String,
    pub path_prefix: String,
}

/// Why a registry server or path prefix was refused.
///
/// No message repeats text that could be a secret: credentials, query strings,
/// fragments and non-numeric ports are reported without echoing them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("registry server is empty")]
    Empty,
    #[error("registry server must not contain credentials (user:password@)")]
    Credentials,
    #[error("unsupported scheme `{0}`: use https://, http:// or no scheme")]
    UnsupportedScheme(String),
    #[error(
        "registry server has a malformed scheme before `://`: use https://, http:// or no scheme"
    )]
    MalformedScheme,
    #[error("registry server must not contain a query string (`?`) or a fragment (`#`)")]
    QueryOrFragment,
    #[error("registry server has no host name")]
    MissingHost,
    #[error("registry server `{host}` has an invalid host name: it {reason}")]
    InvalidHost { host: String, reason: &'static str },
    #[error("registry server has more than one `:` outside brackets: write an IPv6 address in brackets, as in `[::1]:5000`")]
    MultipleColons,
    #[error("registry server has an empty port after `:`")]
    EmptyPort,
    #[error("registry server has a port that is not a number: expected 1-65535")]
    PortNotNumeric,
    #[error("port {0} is out of range: expected 1-65535")]
    PortOutOfRange(String),
    #[error("repository path `{0}` has an empty component: look for `//`")]
    EmptyPathComponent(String),
    #[error(
        "repository path component `{component}` must be lower-case: did you mean `{suggestion}`?"
    )]
    UppercasePathComponent {
        component: String,
        suggestion: String,
    },
    #[error("repository path component `{0}` is invalid: use lower-case letters and digits, joined by `.`, `_`, `__` or dashes")]
    InvalidPathComponent(String),
}

/// How credentials for a registry are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryKind {
    Docker,
    Ecr(EcrHost),
    Acr,
    Gcr,
}

impl RegistryKind {
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            RegistryKind::Docker => "docker",
            RegistryKind::Ecr(_) => "ecr",
            RegistryKind::Acr => "acr",
            RegistryKind::Gcr => "gcr",
        }
    }
}

/// What an ECR host name says about the endpoint behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    /// `None` for ECR Public, which is not tied to an account.
    pub account: Option<String>,
    pub region: String,
    pub fips: bool,
    pub dual_stack: bool,
    pub partition: AwsPartition,
    pub public: bool,
}

/// The AWS partition an ECR endpoint lives in; credentials and API endpoints never cross partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsPartition {
    Aws,
    China,
    /// GovCloud shares `amazonaws.com` with the commercial partition and is told apart only by its `us-gov-` regions.
    UsGov,
    /// `c2s.ic.gov`
    UsIsoEast,
    /// `sc2s.sgov.gov`
    UsIsobEast,
}

impl AwsPartition {
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            AwsPartition::Aws => "aws",
            AwsPartition::China => "aws-cn",
            AwsPartition::UsGov => "aws-us-gov",
            AwsPartition::UsIsoEast => "aws-iso",
            AwsPartition::UsIsobEast => "aws-iso-b",
        }
    }
}

fn pattern(source: &str) -> Regex {
    Regex::new(source).expect("built-in patterns are valid")
}

// `[0-9]` rather than `\d`: the regex crate's `\d` also matches non-ASCII digits.
static ECR_PRIVATE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"^([0-9]{12})\.dkr[.-]ecr(-fips)?\.([a-z0-9-]+)\.(amazonaws\.com|amazonaws\.com\.cn|c2s\.ic\.gov|sc2s\.sgov\.gov)$",
    )
});
static ECR_DUAL_STACK: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"^([0-9]{12})\.dkr-ecr(-fips)?\.([a-z0-9-]+)\.(on\.aws|on\.amazonwebservices\.com\.cn)$",
    )
});
static ACR: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+\.data)?\.azurecr\.(io|cn|us|de)$")
});
static GCR: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^(gcr\.io|[a-z]+\.gcr\.io|[a-z0-9-]+-docker\.pkg\.dev)$"));
// The OCI distribution specification's repository path component.
static PATH_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$"));

/// Turns what a user typed as a registry server into the address credentials are stored under.
pub fn normalize(input: &str) -> Result<RegistryAddress, RegistryError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(RegistryError::Empty);
    }
    // `@` is never valid in a host or a repository path, and a password may itself
    // contain `/`, so looking for userinfo only before the first `/` could let part
    // of a password through into a path error.
    if trimmed.contains('@') {
        return Err(RegistryError::Credentials);
    }
    // URLs carry tokens in query strings, so this is not echoed.
    if trimmed.contains(['?', '#']) {
        return Err(RegistryError::QueryOrFragment);
    }
    let (plain_http, rest) = strip_scheme(trimmed)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_host_port(authority)?;

    // The stored address has no scheme and is read as https, so 443 is always implied
    // and dropped, even after `http://`: otherwise `http://host:443` would become
    // `host:443`, which normalises again to `host`.
    let port = port.filter(|port| *port != 443 && !(plain_http && *port == 80));
    let host = match port {
        Some(port) => format!("{host}:{port}"),
        None if DOCKER_HUB_ALIASES.contains(&host.as_str()) => DOCKER_HUB.to_owned(),
        None => host,
    };

    // The registry API is rooted directly under the host, so only a path that is
    // nothing but the version is an API suffix. Stripping `v2` from a deeper path
    // would silently widen a credential from `team/v2` to `team`, and would make
    // normalising twice differ from normalising once for `team/v2/v2`.
    // Trimmed exactly as `normalize_path_prefix` trims, or `host/ v2` would keep `v2`
    // as a prefix that the next normalisation drops.
    let path = path.trim_matches(|character: char| character == '/' || character.is_whitespace());
    let api_root = path.eq_ignore_ascii_case("v1") || path.eq_ignore_ascii_case("v2");
    let path_prefix = normalize_path_prefix(if api_root { "" } else { path })?;
    Ok(RegistryAddress { host, path_prefix })
}

/// The `host:port` a server URL asks to reach over plain `http://` (port 80 when it
/// names none), or `None` for `https://` and for no scheme, which are read as TLS.
///
/// [`normalize`] drops the scheme, since credentials are stored for TLS hosts; whoever
/// asks for a credential with an `http://` server URL must check this against the
/// operator's plain-http list, or a secret meant for TLS would go out over plain http.
pub fn plain_http_endpoint(input: &str) -> Result<Option<String>, RegistryError> {
    let trimmed = input.trim();
    if trimmed.contains('@') {
        return Err(RegistryError::Credentials);
    }
    let (plain_http, rest) = strip_scheme(trimmed)?;
    if !plain_http {
        return Ok(None);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = split_host_port(authority)?;
    Ok(Some(format!("{host}:{}", port.unwrap_or(80))))
}

/// Checks a repository path prefix against the OCI naming rules and strips its surrounding slashes; an empty prefix covers the whole registry.
pub fn normalize_path_prefix(input: &str) -> Result<String, RegistryError> {
    let path = input.trim().trim_matches('/');
    for component in path.split('/').filter(|_| !path.is_empty()) {
        if component.is_empty() {
            return Err(RegistryError::EmptyPathComponent(echo(path)));
        }
        if PATH_COMPONENT.is_match(component) {
            continue;
        }
        let suggestion = component.to_ascii_lowercase();
        return Err(if PATH_COMPONENT.is_match(&suggestion) {
            RegistryError::UppercasePathComponent {
                component: echo(component),
                suggestion: echo(&suggestion),
            }
        } else {
            RegistryError::InvalidPathComponent(echo(component))
        });
    }
    Ok(path.to_owned())
}

/// Tells which cloud, if any, serves a host as returned by [`normalize`].
///
/// A host that carries a port is always [`RegistryKind::Docker`]: ECR, ACR and GCR
/// serve only on 443, which `normalize` drops, so a port means some other server
/// that merely borrows the name. Only the exact endpoints a provider serves get the
/// provider's credential flow; the plain flow, which hands over only what was stored
/// for that exact address, is the safe fallback.
#[must_use]
pub fn classify(host: &str) -> RegistryKind {
    if let Some(ecr) = classify_ecr(host) {
        RegistryKind::Ecr(ecr)
    } else if ACR.is_match(host) {
        RegistryKind::Acr
    } else if GCR.is_match(host) {
        RegistryKind::Gcr
    } else {
        RegistryKind::Docker
    }
}

fn classify_ecr(host: &str) -> Option<EcrHost> {
    // ECR Public is served only from us-east-1.
    let public = |dual_stack| EcrHost {
        account: None,
        region: "us-east-1".to_owned(),
        fips: false,
        dual_stack,
        partition: AwsPartition::Aws,
        public: true,
    };
    match host {
        "public.ecr.aws" => return Some(public(false)),
        "ecr-public.aws.com" => return Some(public(true)),
        _ => {}
    }
    let (captures, dual_stack) = match ECR_PRIVATE.captures(host) {
        Some(captures) => (captures, false),
        None => (ECR_DUAL_STACK.captures(host)?, true),
    };
    let region = &captures[3];
    let partition = match &captures[4] {
        "amazonaws.com.cn" | "on.amazonwebservices.com.cn" => AwsPartition::China,
        "c2s.ic.gov" => AwsPartition::UsIsoEast,
        "sc2s.sgov.gov" => AwsPartition::UsIsobEast,
        _ if region.starts_with("us-gov-") => AwsPartition::UsGov,
        _ => AwsPartition::Aws,
    };
    Some(EcrHost {
        account: Some(captures[1].to_owned()),
        region: region.to_owned(),
        fips: captures.get(2).is_some(),
        dual_stack,
        partition,
        public: false,
    })
}

/// Returns whether the input was plain `http://`, and the input without its scheme.
fn strip_scheme(input: &str) -> Result<(bool, &str), RegistryError> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Ok((false, input));
    };
    // A `://` after the first `/` is inside the path, not a scheme.
    if scheme.contains('/') {
        return Ok((false, input));
    }
    if scheme.eq_ignore_ascii_case("https") {
        return Ok((false, rest));
    }
    if scheme.eq_ignore_ascii_case("http") {
        return Ok((true, rest));
    }
    // Only text shaped like a scheme is echoed, and only if short: anything else
    // before `://` may be a pasted secret.
    let looks_like_scheme = scheme.len() <= 32
        && scheme.starts_with(|first: char| first.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "+-.".contains(character));
    Err(if looks_like_scheme {
        RegistryError::UnsupportedScheme(echo(&scheme.to_ascii_lowercase()))
    } else {
        RegistryError::MalformedScheme
    })
}

/// Splits `host[:port]` or `[ipv6][:port]` and returns the host in canonical form.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), RegistryError> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(invalid_host(authority, "has `[` without a closing `]`"));
        };
        let port = match after.strip_prefix(':') {
            _ if after.is_empty() => None,
            Some(port) => Some(parse_port(port)?),
            None => return Err(invalid_host(authority, "has text after `]` besides a port")),
        };
        // Ipv6Addr's display is the compressed lower-case form, so every spelling of one
        // address is stored alike.
        let address: Ipv6Addr = address
            .parse()
            .map_err(|_| invalid_host(authority, "is not a valid IPv6 address"))?;
        return Ok((format!("[{address}]"), port));
    }
    // The port is checked before the name so that `user:password` typed without `@`
    // is reported as a bad port, without echoing either half.
    let (name, port) = match authority.split_once(':') {
        None => (authority, None),
        Some((_, port)) if port.contains(':') => return Err(RegistryError::MultipleColons),
        Some((name, port)) => (name, Some(parse_port(port)?)),
    };
    if name.is_empty() {
        return Err(RegistryError::MissingHost);
    }
    let lower = name.to_ascii_lowercase();
    match host_name_problem(&lower) {
        Some(reason) => Err(invalid_host(name, reason)),
        None => Ok((lower, port)),
    }
}

fn host_name_problem(name: &str) -> Option<&'static str> {
    if !name.is_ascii() {
        return Some("must be ASCII: write an internationalised name in its `xn--` form");
    }
    if name.len() > 253 {
        return Some("is longer than 253 characters");
    }
    if let Some(reason) = name.split('.').find_map(label_problem) {
        return Some(reason);
    }
    // As in URL parsing, a name whose last label is a number is an IPv4 address.
    let last_label = name.rsplit('.').next().unwrap_or_default();
    if last_label.bytes().all(|byte| byte.is_ascii_digit()) && name.parse::<Ipv4Addr>().is_err() {
        return Some("ends in a number but is not a valid IPv4 address");
    }
    None
}

fn label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() {
        Some("has an empty label: look for `..` or a leading or trailing `.`")
    } else if label.len() > 63 {
        Some("has a label longer than 63 characters")
    } else if label
        .bytes()
        .any(|byte| !matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    {
        Some("may contain only letters, digits, `-` and `.`")
    } else if label.starts_with('-') || label.ends_with('-') {
        Some("has a label that starts or ends with `-`")
    } else {
        None
    }
}

fn parse_port(text: &str) -> Result<u16, RegistryError> {
    if text.is_empty() {
        return Err(RegistryError::EmptyPort);
    }
    // Checked by hand because `u16::from_str` also accepts a leading `+`.
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(RegistryError::PortNotNumeric);
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(RegistryError::PortOutOfRange(echo(text))),
    }
}

fn invalid_host(host: &str, reason: &'static str) -> RegistryError {
    RegistryError::InvalidHost {
        host: echo(host),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn normalizes_accepted_servers() {
        for (input, host, path_prefix) in [
            ("HTTPS://Index.Docker.io/v1/", DOCKER_HUB, ""),
            ("registry-1.docker.io", DOCKER_HUB, ""),
            ("registry.hub.docker.com:443", DOCKER_HUB, ""),
            ("http://docker.io:80/library", DOCKER_HUB, "library"),
            ("index.docker.io:5000", "index.docker.io:5000", ""),
            ("registry.example.com:443", "registry.example.com", ""),
            ("https://Example.COM:8443/V2/", "example.com:8443", ""),
            ("http://localhost:80", "localhost", ""),
            ("http://localhost:443", "localhost", ""),
            ("localhost:80", "localhost:80", ""),
            ("https://localhost:80", "localhost:80", ""),
            ("localhost:5000", "localhost:5000", ""),
            ("localhost:05000", "localhost:5000", ""),
            ("127.0.0.1:5000", "127.0.0.1:5000", ""),
            ("[::1]:5000", "[::1]:5000", ""),
            ("[0:0:0:0:0:0:0:1]:443", "[::1]", ""),
            ("http://[::1]:80/", "[::1]", ""),
            ("  ghcr.io/myorg/team/  ", "ghcr.io", "myorg/team"),
            ("ghcr.io//my-org/a.b/c__d///", "ghcr.io", "my-org/a.b/c__d"),
            ("example.com/team/v2", "example.com", "team/v2"),
            ("example.com/v2/team", "example.com", "v2/team"),
        ] {
            let actual = normalize(input).map(|address| (address.host, address.path_prefix));
            let expected = Ok((host.into(), path_prefix.into()));
            assert_eq!(actual, expected, "input {input:?}");
        }
    }

    #[test]
    fn an_api_root_after_whitespace_is_dropped_as_the_stored_form_drops_it() {
        // Found by the `registry_host` fuzz target: `e/\rv2` kept `v2` as a prefix,
        // which normalising the stored `e/v2` then dropped.
        for input in ["e/\rv2", "e/ v2", "e/ /V1/ ", "e/\t/v2"] {
            let once = normalize(input).unwrap();
            assert_eq!(once.path_prefix, "", "input {input:?}");
            let again = normalize(&format!("{}/{}", once.host, once.path_prefix));
            assert_eq!(again, Ok(once), "input {input:?}");
        }
        assert_eq!(normalize("e/ team ").unwrap().path_prefix, "team");
    }

    #[test]
    fn rejects_malformed_servers_without_echoing_secrets() {
        const CREDENTIALS: &str = "registry server must not contain credentials (user:password@)";
        const INVALID_HOST: &str = "has an invalid host name: it ";
        let cases = [
            ("", "registry server is empty"),
            ("   ", "registry server is empty"),
            ("ftp://host", "unsupported scheme `ftp`"),
            ("ghp_s3cret://host", "malformed scheme"),
            ("user:s3cret@host", CREDENTIALS),
            ("https://user:s3cret@host/x", CREDENTIALS),
            ("https://user:12/s3cret@host", CREDENTIALS),
            ("host/x?token=s3cret", "must not contain a query string"),
            ("host#s3cret", "or a fragment (`#`)"),
            ("https:///path", "has no host name"),
            (":5000", "has no host name"),
            ("host:", "has an empty port"),
            ("admin:s3cret", "port that is not a number"),
            ("host:+5000", "port that is not a number"),
            ("host:0", "port 0 is out of range"),
            ("host:99999", "port 99999 is out of range"),
            ("fe80::1", "more than one `:` outside brackets"),
            ("admin:s3c:ret", "more than one `:` outside brackets"),
            (
                "ex ample.com",
                "registry server `ex ample.com` has an invalid host name",
            ),
            (
                "bad\u{1b}[31mhost",
                "`bad\\u{1b}[31mhost` has an invalid host name",
            ),
            ("ghcr.io/a//b", "path `a//b` has an empty component"),
            ("ghcr.io/a-/b", "component `a-` is invalid"),
            (
                "ghcr.io/MyOrg",
                "`MyOrg` must be lower-case: did you mean `myorg`?",
            ),
        ];
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = vec!["a".repeat(60); 5].join(".");
        let blob = "x_".repeat(500);
        let invalid_hosts = "-bad.com bad-.com a..b .example.com under_score.com sécure.example \
                             1.2.3.999 [zz::1] [::1 [::1]5000";
        let invalid_hosts = invalid_hosts
            .split(' ')
            .chain([&*long_label, &*long_name, &*blob]);
        for (input, expected) in cases
            .into_iter()
            .chain(invalid_hosts.map(|host| (host, INVALID_HOST)))
        {
            let message = normalize(input).expect_err(input).to_string();
            let safe =
                !message.contains("s3c") && !message.contains('\u{1b}') && message.len() < 250;
            assert!(
                message.contains(expected) && safe,
                "{input:?} gave {message:?}"
            );
        }
        assert_eq!(
            normalize("user:s3cret@host"),
            Err(RegistryError::Credentials)
        );
    }

    /// Issue 12 item 5: an `http://` server URL is told apart from TLS, with the
    /// port it means, whatever [`normalize`] makes of it.
    #[test]
    fn plain_http_server_urls_name_their_endpoint() {
        for (input, endpoint) in [
            (
                "http://registry.example.com",
                Some("registry.example.com:80"),
            ),
            (
                "http://registry.example.com:80",
                Some("registry.example.com:80"),
            ),
            (
                "HTTP://Registry.Example.com:80/v2/",
                Some("registry.example.com:80"),
            ),
            (
                "http://registry.example.com:443",
                Some("registry.example.com:443"),
            ),
            ("http://127.0.0.1:5000/team", Some("127.0.0.1:5000")),
            ("http://[0:0::1]:5001", Some("[::1]:5001")),
            ("https://registry.example.com", None),
            ("registry.example.com:80", None),
            ("127.0.0.1:5000", None),
        ] {
            assert_eq!(
                plain_http_endpoint(input).unwrap().as_deref(),
                endpoint,
                "{input}"
            );
        }
        // The stored address is the same for both: only the scheme tells them apart.
        assert_eq!(
            normalize("http://registry.example.com:80").unwrap().host,
            normalize("https://registry.example.com").unwrap().host
        );
        assert_eq!(
            plain_http_endpoint("http://user:pw@host"),
            Err(RegistryError::Credentials)
        );
    }

    #[test]
    fn normalizes_path_prefixes() {
        let valid = [
            ("", ""),
            ("/", ""),
            ("/a/b/", "a/b"),
            ("a.b_c__d---e", "a.b_c__d---e"),
        ];
        for (input, expected) in valid {
            assert_eq!(normalize_path_prefix(input), Ok(expected.to_owned()));
        }
        for invalid in ["a___b", "a..b", "_a", "a.", "a:b", "é"] {
            let expected = RegistryError::InvalidPathComponent(invalid.to_owned());
            assert_eq!(normalize_path_prefix(invalid), Err(expected));
        }
    }

    fn describe(kind: &RegistryKind) -> String {
        let RegistryKind::Ecr(ecr) = kind else {
            return kind.type_name().to_owned();
        };
        let account = match (&ecr.account, ecr.public) {
            (Some(account), false) => account.as_str(),
            (None, true) => "public",
            _ => "account and public disagree",
        };
        let fips = if ecr.fips { " fips" } else { "" };
        let dual_stack = if ecr.dual_stack { " dual-stack" } else { "" };
        let partition = ecr.partition.as_str();
        format!("ecr {account} {} {partition}{fips}{dual_stack}", ecr.region)
    }

    #[test]
    fn classifies_hosts_and_rejects_look_alikes() {
        // `describe` spells out every field, so this table also pins `type_name` and `as_str`.
        let table = "
            123456789012.dkr.ecr.us-east-1.amazonaws.com        ecr 123456789012 us-east-1 aws
            123456789012.dkr-ecr.eu-west-1.amazonaws.com        ecr 123456789012 eu-west-1 aws
            123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com  ecr 123456789012 us-gov-west-1 aws-us-gov fips
            123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn    ecr 123456789012 cn-north-1 aws-cn
            123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov       ecr 123456789012 us-iso-east-1 aws-iso
            123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov   ecr 123456789012 us-isob-east-1 aws-iso-b
            123456789012.dkr-ecr.us-west-2.on.aws               ecr 123456789012 us-west-2 aws dual-stack
            123456789012.dkr-ecr-fips.us-east-1.on.aws          ecr 123456789012 us-east-1 aws fips dual-stack
            123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn  ecr 123456789012 cn-northwest-1 aws-cn dual-stack
            public.ecr.aws                                      ecr public us-east-1 aws
            ecr-public.aws.com                                  ecr public us-east-1 aws dual-stack
            myregistry.azurecr.io                               acr
            my-registry.azurecr.cn                              acr
            myregistry.azurecr.us                               acr
            myregistry.eastus.data.azurecr.io                   acr
            gcr.io                                              gcr
            eu.gcr.io                                           gcr
            europe-west1-docker.pkg.dev                         gcr
            docker.io                                           docker
            ghcr.io                                             docker
            localhost:5000                                      docker
            x.azurecr.io.evil.com                               docker
            x.azurecr.io:8443                                   docker
            -x.azurecr.io                                       docker
            azurecr.io                                          docker
            123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.com  docker
            123456789012.dkr.ecr.us-east-1.amazonaws.com:5000   docker
            evil.123456789012.dkr.ecr.us-east-1.amazonaws.com   docker
            12345678901.dkr.ecr.us-east-1.amazonaws.com         docker
            ١٢٣٤٥٦٧٨٩٠١٢.dkr.ecr.us-east-1.amazonaws.com        docker
            123456789012.dkr.ecr.us-east-1.on.aws               docker
            public.ecr.aws.evil.com                             docker
            public.ecr.aws:443                                  docker
            evilgcr.io                                          docker
            gcr.io.evil                                         docker
            us.gcr.io.evil.com                                  docker
            eu1.gcr.io                                          docker
            europe-west1-docker.pkg.dev.evil.com                docker
            GCR.IO                                              docker
        ";
        for line in table.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let (host, expected) = line.split_once(' ').expect("host, then description");
            assert_eq!(describe(&classify(host)), expected.trim(), "host {host:?}");
        }
        assert_eq!(classify(""), RegistryKind::Docker);
    }

    fn server_strategy() -> impl Strategy<Value = String> {
        let scheme = prop_oneof![Just(""), Just("https://"), Just("http://"), Just("HTTP://")];
        let host = prop_oneof![
            "[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?(\\.[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?){0,3}",
            Just("Index.Docker.io".to_owned()),
            Just("[0:0::1]".to_owned()),
            Just("10.0.0.1".to_owned()),
        ];
        let port = prop::option::of(prop_oneof![Just(80_u32), Just(443), 1_u32..=65535]);
        let component = prop_oneof![
            "[a-z0-9]{1,4}((\\.|_|__|-+)[a-z0-9]{1,4})?",
            Just("v1".to_owned()),
            Just("v2".to_owned())
        ];
        let path = prop::collection::vec(component, 0..4);
        let parts = (scheme, host, port, path, any::<bool>());
        parts.prop_map(|(scheme, host, port, path, trailing_slash)| {
            let port = port.map(|port| format!(":{port}")).unwrap_or_default();
            let slash = if trailing_slash { "/" } else { "" };
            format!("{scheme}{host}{port}/{}{slash}", path.join("/"))
        })
    }

    fn cloud_host_strategy() -> impl Strategy<Value = String> {
        let region = "[a-z]{2}-[a-z]{4,7}-[0-9]";
        let ecr = "(amazonaws\\.com(\\.cn)?|c2s\\.ic\\.gov|sc2s\\.sgov\\.gov)";
        let dual_stack = "(on\\.aws|on\\.amazonwebservices\\.com\\.cn)";
        let patterns = vec![
            format!("[0-9]{{12}}\\.dkr[.-]ecr(-fips)?\\.{region}\\.{ecr}"),
            format!("[0-9]{{12}}\\.dkr-ecr(-fips)?\\.{region}\\.{dual_stack}"),
            "(public\\.ecr\\.aws|ecr-public\\.aws\\.com)".to_owned(),
            "[a-z0-9]{5,20}(\\.[a-z]{4,10}\\.data)?\\.azurecr\\.(io|cn|us|de)".to_owned(),
            "(gcr\\.io|[a-z]{1,10}\\.gcr\\.io|[a-z][a-z0-9-]{0,10}-docker\\.pkg\\.dev)".to_owned(),
        ];
        prop::sample::select(patterns).prop_flat_map(|pattern| {
            proptest::string::string_regex(&pattern).expect("patterns are valid")
        })
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(input in server_strategy()) {
            let once = normalize(&input).expect("generated servers are valid");
            let again = normalize(&format!("{}/{}", once.host, once.path_prefix));
            prop_assert_eq!(again, Ok(once));
        }

        #[test]
        fn normalize_is_idempotent_on_arbitrary_input(input in "[a-zA-Z0-9:/.\\[\\]_ -]{0,30}") {
            if let Ok(once) = normalize(&input) {
                let again = normalize(&format!("{}/{}", once.host, once.path_prefix));
                prop_assert_eq!(again, Ok(once));
            }
        }

        #[test]
        fn classify_never_panics(input in any::<String>()) {
            let _ = classify(&input);
        }

        #[test]
        fn cloud_hosts_with_a_suffix_are_docker(host in cloud_host_strategy()) {
            let kind = classify(&host);
            prop_assert_ne!(&kind, &RegistryKind::Docker, "host {}", host);
            let normalized = normalize(&host).expect("cloud hosts are valid");
            prop_assert_eq!(classify(&normalized.host), kind);
            prop_assert_eq!(classify(&format!("{host}.evil.com")), RegistryKind::Docker);
        }
    }
}
