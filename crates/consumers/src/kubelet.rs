//! The kubelet image credential provider (SPEC §2.3): a `CredentialProviderRequest`
//! (`credentialprovider.kubelet.k8s.io/v1`) on standard input, one resolve of its image
//! in the caller's default workspace, a `CredentialProviderResponse` on standard output.
//!
//! [`respond`] is the whole translation, a pure function of the request, what regkeeper
//! answered and the time, so it is tested against golden files
//! (`tests/golden/kubelet/`). The choices it makes:
//! - `auth` is keyed by the credential's registry host (with its port), plus
//!   `/PATH-PREFIX` when the credential is limited to one, so the kubelet applies the
//!   login to no image outside what the credential serves.
//! - `cacheKeyType` is always `Image`. A cache keyed by registry would hand one
//!   image's answer to the host's other repositories, and a host may have several
//!   credentials for different path prefixes (the longest prefix wins per image), so
//!   only a per-image cache is right for every workspace.
//! - `cacheDuration` never outlives the login: it runs to `safeUntil` (the token's
//!   refresh point) or `expiresAt`, whichever comes first, rounded down to the second
//!   and at least `0s` (do not cache). A stored password has neither, and is cached
//!   for [`PASSWORD_CACHE_SECONDS`] so that an updated password reaches the nodes soon.
//! - No credential for the image is not a failure: the answer has an empty `auth`, so
//!   the pull goes on anonymously (public images keep working), cached per image for
//!   [`NOT_FOUND_CACHE_SECONDS`] so a credential added later is used within a minute.
//!   Failures to reach regkeeper exit non-zero instead: the kubelet then caches
//!   nothing and asks again on the next pull.
//!
//! Per pod (KEP-4412): when the kubelet's `tokenAttributes` make it send the pod's
//! `serviceAccountToken` and `serviceAccountAnnotations`, the token is exchanged for
//! the role named by the annotation [`ROLE_ANNOTATION`] (`rk:WORKSPACE:role/NAME`)
//! and the image is resolved with the role's token, so a pod gets only what its
//! service account's role allows and the node needs no token. A token without the
//! annotation is refused, never answered with the node's own token, which would hand
//! every unannotated pod the node's rights. The response has no field naming the
//! service account: the kubelet keys its cache by the service account (namespace,
//! name, UID and the annotations it passed) when its `tokenAttributes.cacheType` is
//! `ServiceAccount`, and by the token with `Token`, so one account's answer never
//! reaches another; the kubelet reads responses strictly, so a field outside the v1
//! API would make it drop the answer. `cacheDuration` is also capped at the exchanged
//! token's expiry, so a removed trust stops new pulls once the session ends.
//! Without a service-account token the node's own settings are used: `REGKEEPER_TOKEN`
//! (or its file), or `REGKEEPER_ROLE` + `REGKEEPER_OIDC_TOKEN_FILE` (see `federation`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use regkeeper_client::{Client, ClientError};
use regkeeper_wire as wire;
use regkeeper_wire::kubelet::{
    AuthConfig, CacheKeyType, CredentialProviderRequest, CredentialProviderResponse, API_VERSION,
    REQUEST_KIND, RESPONSE_KIND,
};
use regkeeper_wire::text::echo;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::federation::{self, check_role_reference};
use crate::{describe, json_problem, one_line, Environment};

pub const PROGRAM: &str = "regkeeper-kubelet-credential-provider";

/// The service-account annotation naming the role a pod pulls as. List it under the
/// provider's `tokenAttributes.requiredServiceAccountAnnotationKeys`.
pub const ROLE_ANNOTATION: &str = "regkeeper.io/role";

/// How long the kubelet may keep a stored password, which does not expire but may be
/// changed in regkeeper.
pub const PASSWORD_CACHE_SECONDS: u64 = 5 * 60;
/// How long the kubelet may remember that regkeeper has nothing for an image.
pub const NOT_FOUND_CACHE_SECONDS: u64 = 60;

/// What `--help` prints; the man page (`regkeeper man`) has the same text.
pub const USAGE: &str = "\
Usage: regkeeper-kubelet-credential-provider [--version | --help]

A kubelet image credential provider: the kubelet runs it for each image whose name
matches the provider's matchImages in its CredentialProviderConfig, writes a
credentialprovider.kubelet.k8s.io/v1 CredentialProviderRequest on standard input and
reads the CredentialProviderResponse it prints. `regkeeper kubelet-credential-provider`
is the same program.

With a pod's service-account token in the request (KEP-4412 tokenAttributes), the token
is exchanged for the role its service account's annotation regkeeper.io/role names.
Otherwise the node's own settings are used.

Settings (environment, else ~/.config/regkeeper/config.toml with url, token, ca_file):
  REGKEEPER_URL               the regkeeper server (default http://127.0.0.1:7070)
  REGKEEPER_TOKEN             an API token (or REGKEEPER_TOKEN_FILE, a file holding one)
  REGKEEPER_ROLE              instead of a token: a role (rk:WORKSPACE:role/NAME) to
                              exchange the OIDC token in REGKEEPER_OIDC_TOKEN_FILE for
  REGKEEPER_CA_FILE           a PEM bundle to trust for the server's certificate

No credential for the image answers an empty auth (the pull goes on anonymously);
a failure is one line on standard error and exit status 1.
";

/// `--version` or `--help` as the first argument: the text to print instead of
/// answering a request.
pub fn information(argument: Option<&str>) -> Option<String> {
    match argument? {
        "--version" | "-V" | "version" => Some(format!(
            "{PROGRAM} (regkeeper) {}\n",
            regkeeper_client::VERSION
        )),
        "--help" | "-h" | "help" => Some(USAGE.to_owned()),
        _ => None,
    }
}

/// A request is a few hundred bytes (a service-account token adds a kilobyte or two).
const INPUT_LIMIT: u64 = 1 << 20;

/// What regkeeper said about the request's image.
pub enum Lookup {
    Found(wire::Resolved),
    /// `POST /api/v1/resolve` answered 404: no credential serves the image.
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    Request(String),
    #[error("{0}")]
    Regkeeper(String),
    #[error("cannot write the response to standard output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<ClientError> for ProviderError {
    fn from(error: ClientError) -> Self {
        Self::Regkeeper(describe(&error))
    }
}

/// The standalone binary: settings from the environment, then [`run`]. Returns the exit
/// status; failures are one line on `errors`, which the kubelet copies into its log.
pub fn main(
    environment: Environment<'_>,
    input: &mut dyn Read,
    output: &mut dyn Write,
    errors: &mut dyn Write,
    clock: &dyn Fn() -> SystemTime,
) -> u8 {
    match run(environment, input, output, clock) {
        Ok(()) => 0,
        Err(error) => {
            let _ = writeln!(errors, "{PROGRAM}: {}", one_line(&error.to_string()));
            1
        }
    }
}

/// Reads the request, resolves its image with the pod's role (a service-account token
/// in the request) or the node's settings, writes the response. Shared by the
/// standalone binary and `regkeeper kubelet-credential-provider`. `clock` is read
/// after regkeeper answered, so the time the request took is not cached.
pub fn run(
    environment: Environment<'_>,
    input: &mut dyn Read,
    output: &mut dyn Write,
    clock: &dyn Fn() -> SystemTime,
) -> Result<(), ProviderError> {
    let request = read_request(input)?;
    let image = checked_image(&request)?.to_owned();
    let (lookup, session_expires_at) = match &request.service_account_token {
        Some(service_account_token) => {
            let role = pod_role(&request)?;
            let anonymous = Client::anonymous_from_environment(environment)?;
            let exchanged = anonymous
                .exchange_oidc(role, service_account_token)
                .map_err(|error| match error {
                    ClientError::Api { code, message, .. } => ProviderError::Regkeeper(format!(
                        "regkeeper refused to exchange the pod's service-account token for {role} (annotation {ROLE_ANNOTATION}): {message} ({code})"
                    )),
                    other => other.into(),
                })?;
            let client = anonymous.with_token(exchanged.token);
            (look_up(&client, &image)?, Some(exchanged.expires_at))
        }
        None => (
            federation::with_client(environment, clock, &|client| look_up(client, &image))
                .map_err(|error| ProviderError::Regkeeper(node_problem(environment, &error)))?,
            None,
        ),
    };
    let response = respond_within(&request, &lookup, session_expires_at.as_deref(), clock())?;
    let text = Zeroizing::new(serde_json::to_string(&response).expect("response serialises"));
    writeln!(output, "{}", text.as_str())?;
    output.flush()?;
    Ok(())
}

fn look_up(client: &Client, image: &str) -> Result<Lookup, ClientError> {
    let resolve = wire::ResolveInput {
        image: Some(image.to_owned()),
        ..wire::ResolveInput::default()
    };
    match client.post("/api/v1/resolve", &resolve) {
        Ok(resolved) => Ok(Lookup::Found(resolved)),
        Err(ClientError::Api { status: 404, .. }) => Ok(Lookup::NotFound),
        Err(error) => Err(error),
    }
}

/// A node without any setting is told every way to give it one.
fn node_problem(environment: Environment<'_>, error: &ClientError) -> String {
    let described = describe(error);
    let unconfigured = environment(federation::ROLE_VARIABLE).is_none() && error.is_missing_token();
    if unconfigured {
        format!(
            "{described}; or set REGKEEPER_ROLE and REGKEEPER_OIDC_TOKEN_FILE to exchange an OIDC token, or give the provider tokenAttributes so the kubelet sends each pod's service-account token"
        )
    } else {
        described
    }
}

/// The role a request's service account names, checked for shape.
fn pod_role(request: &CredentialProviderRequest) -> Result<&str, ProviderError> {
    let role = request
        .service_account_annotations
        .get(ROLE_ANNOTATION)
        .map(|role| role.trim())
        .filter(|role| !role.is_empty())
        .ok_or_else(|| {
            ProviderError::Request(format!(
                "the kubelet sent a service-account token but no annotation {ROLE_ANNOTATION}: annotate the pod's service account with the role to pull as (rk:WORKSPACE:role/NAME) and list {ROLE_ANNOTATION} under tokenAttributes.requiredServiceAccountAnnotationKeys"
            ))
        })?;
    check_role_reference(role).map_err(|problem| {
        ProviderError::Request(format!(
            "the service account's annotation {ROLE_ANNOTATION} {problem}"
        ))
    })?;
    Ok(role)
}

/// Parses a request without quoting it in errors (it may hold a service-account token).
pub fn read_request(input: &mut dyn Read) -> Result<CredentialProviderRequest, ProviderError> {
    let mut bytes = Zeroizing::new(Vec::new());
    input
        .take(INPUT_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|error| ProviderError::Request(format!("cannot read standard input: {error}")))?;
    serde_json::from_slice(&bytes).map_err(|error| {
        ProviderError::Request(format!(
            "expected a {API_VERSION} {REQUEST_KIND} as JSON on standard input, but {}",
            json_problem(&error)
        ))
    })
}

/// The image of a request this provider understands.
fn checked_image(request: &CredentialProviderRequest) -> Result<&str, ProviderError> {
    if request.api_version != API_VERSION {
        return Err(ProviderError::Request(format!(
            "unsupported apiVersion `{}`: set `apiVersion: {API_VERSION}` for this provider in the kubelet's CredentialProviderConfig",
            echo(&request.api_version)
        )));
    }
    if request.kind != REQUEST_KIND {
        return Err(ProviderError::Request(format!(
            "unsupported kind `{}`: expected {REQUEST_KIND}",
            echo(&request.kind)
        )));
    }
    let image = request.image.trim();
    if image.is_empty() {
        return Err(ProviderError::Request(format!(
            "the {REQUEST_KIND} names no image"
        )));
    }
    Ok(image)
}

/// The response to `request`, given what regkeeper answered and the time now.
pub fn respond(
    request: &CredentialProviderRequest,
    lookup: &Lookup,
    now: SystemTime,
) -> Result<CredentialProviderResponse, ProviderError> {
    respond_within(request, lookup, None, now)
}

/// [`respond`] for an answer obtained with an exchanged token that expires at
/// `session_expires_at` (RFC 3339): the kubelet may not cache it for longer, so a pod
/// keeps no access its role's trust no longer grants.
pub fn respond_within(
    request: &CredentialProviderRequest,
    lookup: &Lookup,
    session_expires_at: Option<&str>,
    now: SystemTime,
) -> Result<CredentialProviderResponse, ProviderError> {
    checked_image(request)?;
    if request.service_account_token.is_some() {
        pod_role(request)?;
    }
    let (cache_key_type, seconds, auth) = match lookup {
        Lookup::NotFound => (
            CacheKeyType::Image,
            NOT_FOUND_CACHE_SECONDS,
            BTreeMap::new(),
        ),
        Lookup::Found(resolved) => {
            let prefix = resolved
                .path_prefix
                .as_deref()
                .map(|prefix| prefix.trim_matches('/'))
                .filter(|prefix| !prefix.is_empty());
            let key = match prefix {
                Some(prefix) => format!("{}/{prefix}", resolved.registry),
                None => resolved.registry.clone(),
            };
            let auth = BTreeMap::from([(
                key,
                AuthConfig {
                    username: resolved.username.clone(),
                    password: resolved.secret.clone(),
                },
            )]);
            (CacheKeyType::Image, cache_seconds(resolved, now), auth)
        }
    };
    let seconds = match session_expires_at {
        Some(limit) => seconds.min(seconds_until(limit, now)),
        None => seconds,
    };
    Ok(CredentialProviderResponse {
        api_version: API_VERSION.to_owned(),
        kind: RESPONSE_KIND.to_owned(),
        cache_key_type,
        cache_duration: Some(go_duration(seconds)),
        auth,
    })
}

/// Whole seconds the kubelet may cache `resolved` from `now`.
fn cache_seconds(resolved: &wire::Resolved, now: SystemTime) -> u64 {
    let limits: Vec<&str> = [&resolved.safe_until, &resolved.expires_at]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if limits.is_empty() {
        return PASSWORD_CACHE_SECONDS;
    }
    limits
        .into_iter()
        .map(|limit| seconds_until(limit, now))
        .min()
        .unwrap_or(0)
}

/// Whole seconds from `now` to the RFC 3339 time `limit`, rounded down (so the cache
/// never outlives the limit by a fraction), 0 if it has passed.
fn seconds_until(limit: &str, now: SystemTime) -> u64 {
    match OffsetDateTime::parse(limit, &Rfc3339) {
        Ok(at) => u64::try_from(
            (at.unix_timestamp_nanos() - nanoseconds_since_epoch(now)).div_euclid(1_000_000_000),
        )
        .unwrap_or(0),
        // A time that cannot be read gives no licence to cache.
        Err(_) => 0,
    }
}

fn nanoseconds_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// Whole seconds as Go's `time.Duration.String()` prints them (`0s`, `45s`, `5m0s`,
/// `7h59m30s`), the form of a `metav1.Duration` in JSON. Written out because no Rust
/// crate prints Go's form; the kubelet parses it with `time.ParseDuration`.
pub fn go_duration(seconds: u64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The tests' clock: a fixed instant (2027-01-15), never the system's.
    fn fixed_now() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)
    }

    /// Issue 12 item 15: with no token configured (and no service-account token in the
    /// request) the provider fails at once with a clear error naming every way to
    /// configure one, before reaching the server (this URL would otherwise give
    /// "cannot reach regkeeper").
    #[test]
    fn no_token_fails_before_reaching_the_server() {
        let environment =
            |name: &str| (name == "REGKEEPER_URL").then(|| "http://127.0.0.1:1".to_owned());
        let request = r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"ghcr.io/a/b"}"#;
        let mut output = Vec::new();
        let mut errors = Vec::new();
        let status = main(
            &environment,
            &mut request.as_bytes(),
            &mut output,
            &mut errors,
            &fixed_now,
        );
        let errors = String::from_utf8(errors).unwrap();
        assert_eq!(status, 1);
        assert!(output.is_empty());
        assert_eq!(errors.lines().count(), 1, "{errors}");
        assert!(errors.starts_with(PROGRAM), "{errors}");
        assert!(errors.contains("no API token"), "{errors}");
        assert!(errors.contains("REGKEEPER_TOKEN_FILE"), "{errors}");
        assert!(errors.contains("REGKEEPER_ROLE"), "{errors}");
        assert!(errors.contains("tokenAttributes"), "{errors}");
        assert!(!errors.contains("cannot reach"), "{errors}");
    }

    #[test]
    fn durations_print_as_go_does() {
        for (seconds, expected) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (300, "5m0s"),
            (3600, "1h0m0s"),
            (28_770, "7h59m30s"),
            (43_200, "12h0m0s"),
            (90_061, "25h1m1s"),
        ] {
            assert_eq!(go_duration(seconds), expected);
        }
    }

    fn resolved(safe_until: Option<&str>, expires_at: Option<&str>) -> wire::Resolved {
        wire::Resolved {
            username: "AWS".into(),
            secret: wire::Sensitive::new("token"),
            expires_at: expires_at.map(str::to_owned),
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
            path_prefix: None,
            reference: String::new(),
            safe_until: safe_until.map(str::to_owned),
        }
    }

    fn at(rfc3339: &str) -> SystemTime {
        let at = OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap();
        UNIX_EPOCH + Duration::from_nanos(at.unix_timestamp_nanos() as u64)
    }

    #[test]
    fn the_cache_never_outlives_the_login() {
        let now = at("2025-06-01T12:00:00.400Z");
        let cases = [
            // Rounded down: 7h59m59.6s left.
            (Some("2025-06-01T20:00:00Z"), None, 28_799),
            // The earlier of the two limits.
            (
                Some("2025-06-01T20:00:00Z"),
                Some("2025-06-01T13:00:00Z"),
                3_599,
            ),
            (None, Some("2025-06-01T12:10:00+00:00"), 599),
            (Some("2025-06-01T11:00:00Z"), None, 0),
            (Some("not a time"), None, 0),
            (None, None, PASSWORD_CACHE_SECONDS),
        ];
        for (safe_until, expires_at, expected) in cases {
            assert_eq!(
                cache_seconds(&resolved(safe_until, expires_at), now),
                expected,
                "{safe_until:?} {expires_at:?}"
            );
        }
    }

    /// Issue 13 §3 (KEP-4412): a service-account answer has only the v1 fields (the
    /// kubelet decodes strictly and keys its cache by service account itself), is
    /// cached no longer than the exchanged session, and never echoes the token.
    #[test]
    fn a_service_account_answer_is_strict_v1_capped_by_the_session_and_never_echoes() {
        let request: CredentialProviderRequest = serde_json::from_str(
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest",
                "image":"123456789012.dkr.ecr.us-east-1.amazonaws.com/app","serviceAccountToken":"sa-canary-4410",
                "serviceAccountAnnotations":{"regkeeper.io/role":"rk:acme:role/app"}}"#,
        )
        .unwrap();
        let response = respond_within(
            &request,
            &Lookup::Found(resolved(Some("2025-06-01T20:00:00Z"), None)),
            Some("2025-06-01T12:30:00Z"),
            at("2025-06-01T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(response.cache_duration.as_deref(), Some("30m0s"));
        let printed: serde_json::Value = serde_json::to_value(&response).unwrap();
        let fields: Vec<&String> = printed.as_object().unwrap().keys().collect();
        assert_eq!(
            fields,
            [
                "apiVersion",
                "auth",
                "cacheDuration",
                "cacheKeyType",
                "kind"
            ]
        );
        assert!(!printed.to_string().contains("sa-canary-4410"));
    }

    /// Issue 13 §3: a service-account token without the role annotation, or with a
    /// malformed one, is refused with the annotation named (never the node's token).
    #[test]
    fn a_service_account_token_needs_the_role_annotation() {
        for (annotations, expected) in [
            ("{}", "no annotation regkeeper.io/role"),
            (
                r#"{"regkeeper.io/role":"acme/app"}"#,
                "annotation regkeeper.io/role must be a role reference",
            ),
        ] {
            let request: CredentialProviderRequest = serde_json::from_str(&format!(
                r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest",
                    "image":"ghcr.io/a/b","serviceAccountToken":"sa-canary-5","serviceAccountAnnotations":{annotations}}}"#
            ))
            .unwrap();
            let error = respond(&request, &Lookup::NotFound, at("2025-06-01T12:00:00Z"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("sa-canary-5"), "{error}");
        }
    }

    #[test]
    fn unreadable_requests_are_refused_without_echoing_them() {
        let error =
            read_request(&mut r#"{"image": 5, "serviceAccountToken": "sa-canary-77""#.as_bytes())
                .unwrap_err()
                .to_string();
        assert!(error.contains("CredentialProviderRequest"), "{error}");
        assert!(!error.contains("sa-canary-77"), "{error}");
    }
}
