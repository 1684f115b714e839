//! A pull names an image, not a registry, so an image reference must be split into the registry whose credentials apply and the repository they are scoped to, by the rules Docker itself uses (distribution/reference).

use std::sync::LazyLock;

use regex::Regex;

use crate::registry::{self, DOCKER_HUB};
use crate::text::echo;

/// distribution/reference's limit, applied to the canonical `registry/repository` so
/// that a name Docker Hub shortens cannot pass when written short and fail when written
/// out in full.
pub const NAME_LENGTH_LIMIT: usize = 255;

/// An image reference in canonical form: every spelling of one image parses to equal values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Host as [`registry::normalize`] stores it (lower-case, `:443` dropped, Docker Hub's
    /// aliases folded into `docker.io`), except that a host with neither a dot nor a port
    /// left would read as a Docker Hub namespace, so it keeps `:443`.
    pub registry: String,
    /// Path within the registry; Docker Hub's official images get their `library/`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageReference {
    #[must_use]
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The fully spelled-out reference (`docker.io/library/alpine:3.19`), which parses back to `self`.
    #[must_use]
    pub fn to_string_canonical(&self) -> String {
        let mut text = format!("{}/{}", self.registry, self.repository);
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest);
        }
        text
    }
}

/// Why an image reference was refused. Messages echo at most 100 characters of input,
/// escaped, and never text that could be a password or token: user info
/// (`user:password@`), a query string or a fragment are refused without quoting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference must not contain credentials (user:password@ before the registry), and the text after `@` is not a digest (sha256:… or sha512:…): regkeeper supplies the credentials")]
    Credentials,
    #[error("image reference must not contain a query string or fragment (`?…` or `#…`)")]
    QueryOrFragment,
    /// The full message, naming the problem with the registry part.
    #[error("{0}")]
    InvalidRegistry(String),
    /// Holds the offending path component, possibly empty.
    #[error("{}", invalid_repository_message(.0))]
    InvalidRepository(String),
    /// Holds the repository path in lower case, as a suggestion.
    #[error("repository name must be lower-case: did you mean `{0}`?")]
    UppercaseRepository(String),
    #[error("{}", invalid_tag_message(.0))]
    InvalidTag(String),
    #[error("{}", invalid_digest_message(.0))]
    InvalidDigest(String),
    /// Holds the length of the canonical `registry/repository`.
    #[error("image name is {0} characters long as `registry/repository`; the limit is 255")]
    NameTooLong(usize),
}

fn invalid_repository_message(component: &str) -> String {
    if component.is_empty() {
        "repository name is missing or has an empty path component: look for `//` or a leading or trailing `/`".to_owned()
    } else {
        format!("repository path component `{component}` is invalid: use lower-case letters and digits, joined by `.`, `_`, `__` or dashes")
    }
}

fn invalid_tag_message(tag: &str) -> String {
    if tag.is_empty() {
        "tag after `:` is empty: remove the `:` or name a tag".to_owned()
    } else {
        format!("tag `{tag}` is invalid: use at most 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`")
    }
}

fn invalid_digest_message(digest: &str) -> String {
    if digest.is_empty() {
        "digest after `@` is empty: remove the `@` or give a digest".to_owned()
    } else {
        format!("digest `{digest}` is invalid: expected `sha256:` and 64 lower-case hex digits, or `sha512:` and 128")
    }
}

fn pattern(source: &str) -> Regex {
    Regex::new(source).expect("built-in patterns are valid")
}

// distribution/reference's path component; its `[-]*` separator is `-+` here, which
// accepts the same names.
static PATH_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"));
// Spelled out because the regex crate's `\w` also matches non-ASCII letters.
static TAG: LazyLock<Regex> = LazyLock::new(|| pattern(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"));
// The algorithms the OCI image specification registers, in go-digest's canonical lower-case hex.
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"));

/// Parses `[registry/]repository[:tag][@digest]` as `docker pull` reads it.
///
/// Surrounding whitespace is ignored. The first path component names a registry only if
/// it contains `.` or `:` or is `localhost`; otherwise the image is on Docker Hub.
pub fn parse(input: &str) -> Result<ImageReference, ReferenceError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ReferenceError::Empty);
    }
    // URLs carry tokens in query strings; none of it is echoed.
    if text.contains(['?', '#']) {
        return Err(ReferenceError::QueryOrFragment);
    }
    // Split off the digest before anything else is parsed, so that in
    // `user:password@host…` no part of the password can reach a registry, repository
    // or tag error: an `@` followed by anything but a digest is refused unquoted.
    let (name_and_tag, digest) = match text.split_once('@') {
        Some((_, after)) if !after.is_empty() && !looks_like_digest(after) => {
            return Err(ReferenceError::Credentials)
        }
        Some((before, after)) => (before, Some(after)),
        None => (text, None),
    };
    if let Some((scheme, _)) = name_and_tag.split_once("://") {
        if !scheme.contains('/') {
            return Err(ReferenceError::InvalidRegistry(
                "image reference must not start with a scheme: remove the `…://`".to_owned(),
            ));
        }
    }

    // A tag's `:` is the first one after the last `/`; earlier ones belong to the port.
    let last_component_start = name_and_tag.rfind('/').map_or(0, |slash| slash + 1);
    let (name, tag) = match name_and_tag[last_component_start..].find(':') {
        Some(offset) => {
            let colon = last_component_start + offset;
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        None => (name_and_tag, None),
    };

    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if names_registry(first) => (canonical_registry(first)?, rest),
        _ => (DOCKER_HUB.to_owned(), name),
    };
    check_repository(path)?;
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    };
    let name_length = registry.len() + 1 + repository.len();
    if name_length > NAME_LENGTH_LIMIT {
        return Err(ReferenceError::NameTooLong(name_length));
    }

    if let Some(digest) = digest {
        if !DIGEST.is_match(digest) {
            return Err(ReferenceError::InvalidDigest(echo(digest)));
        }
    }
    if let Some(tag) = tag {
        if !TAG.is_match(tag) {
            return Err(ReferenceError::InvalidTag(echo(tag)));
        }
    }
    Ok(ImageReference {
        registry,
        repository,
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

/// Whether the text after an `@` is meant as a digest, well formed or not: a
/// registered algorithm, or the OCI digest shape `ALGORITHM:HEX` with a hex part far
/// longer than a port (`user:password@host:5000` is not a digest).
fn looks_like_digest(text: &str) -> bool {
    static DIGEST_SHAPED: LazyLock<Regex> =
        LazyLock::new(|| pattern(r"^[a-z0-9]+(?:[+_-][a-z0-9]+)*:[A-Fa-f0-9]{16,}$"));
    ["sha256:", "sha384:", "sha512:", "blake3:"]
        .iter()
        .any(|algorithm| text.starts_with(algorithm))
        || DIGEST_SHAPED.is_match(text)
}

// `[::1]:5000` contains `:`, so bracketed IPv6 hosts need no rule of their own.
fn names_registry(component: &str) -> bool {
    component.contains(['.', ':']) || component.eq_ignore_ascii_case("localhost")
}

fn canonical_registry(component: &str) -> Result<String, ReferenceError> {
    let host = registry::normalize(component)
        .map_err(|error| ReferenceError::InvalidRegistry(error.to_string()))?
        .host;
    // Only a dropped `:443` can leave a name that no longer reads as a registry
    // (`intranet:443` → `intranet`), and `intranet/app` would then mean Docker Hub.
    Ok(if names_registry(&host) {
        host
    } else {
        format!("{host}:443")
    })
}

fn check_repository(path: &str) -> Result<(), ReferenceError> {
    let mut uppercase = false;
    for component in path.split('/') {
        if PATH_COMPONENT.is_match(component) {
            continue;
        }
        if PATH_COMPONENT.is_match(&component.to_ascii_lowercase()) {
            uppercase = true;
        } else {
            return Err(ReferenceError::InvalidRepository(echo(component)));
        }
    }
    if uppercase {
        return Err(ReferenceError::UppercaseRepository(echo(
            &path.to_ascii_lowercase(),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    const SHA256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn reference(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> ImageReference {
        ImageReference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        }
    }

    #[test]
    fn parses_accepted_references() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let ecr = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app@{SHA256}");
        let tagged_digest = format!("ghcr.io/org/app:v1@{SHA256}");
        let hub_digest = format!("alpine@{sha512}");
        let cases = [
            (
                "alpine",
                reference("docker.io", "library/alpine", None, None),
            ),
            (
                "alpine:3.19",
                reference("docker.io", "library/alpine", Some("3.19"), None),
            ),
            (
                "  alpine:latest\n",
                reference("docker.io", "library/alpine", Some("latest"), None),
            ),
            (
                "docker.io/alpine",
                reference("docker.io", "library/alpine", None, None),
            ),
            (
                "index.docker.io/library/alpine",
                reference("docker.io", "library/alpine", None, None),
            ),
            (
                "registry-1.docker.io/bitnami/redis:7",
                reference("docker.io", "bitnami/redis", Some("7"), None),
            ),
            (
                "Registry.Hub.Docker.com:443/nginx",
                reference("docker.io", "library/nginx", None, None),
            ),
            (
                "docker.io:5000/alpine",
                reference("docker.io:5000", "alpine", None, None),
            ),
            (
                "bitnami/redis",
                reference("docker.io", "bitnami/redis", None, None),
            ),
            (
                "ghcr.io/org/app:v1",
                reference("ghcr.io", "org/app", Some("v1"), None),
            ),
            (
                "GHCR.IO:443/org/app",
                reference("ghcr.io", "org/app", None, None),
            ),
            ("localhost/app", reference("localhost", "app", None, None)),
            (
                "localhost:5000/app",
                reference("localhost:5000", "app", None, None),
            ),
            (
                "127.0.0.1:5000/a/b:c",
                reference("127.0.0.1:5000", "a/b", Some("c"), None),
            ),
            (
                "[::1]:5000/app:dev",
                reference("[::1]:5000", "app", Some("dev"), None),
            ),
            ("[0:0::1]/app", reference("[::1]", "app", None, None)),
            (
                "intranet:443/app",
                reference("intranet:443", "app", None, None),
            ),
            (
                "intranet:5000/app",
                reference("intranet:5000", "app", None, None),
            ),
            (
                ecr.as_str(),
                reference(
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                    "team/app",
                    None,
                    Some(SHA256),
                ),
            ),
            (
                tagged_digest.as_str(),
                reference("ghcr.io", "org/app", Some("v1"), Some(SHA256)),
            ),
            (
                hub_digest.as_str(),
                reference("docker.io", "library/alpine", None, Some(&sha512)),
            ),
            (
                "europe-west1-docker.pkg.dev/project/repo/app:1.0.0-rc.1_b",
                reference(
                    "europe-west1-docker.pkg.dev",
                    "project/repo/app",
                    Some("1.0.0-rc.1_b"),
                    None,
                ),
            ),
            (
                "quay.io/a__b/c--d/e.f_g",
                reference("quay.io", "a__b/c--d/e.f_g", None, None),
            ),
            (
                "localhost:localhost",
                reference("docker.io", "library/localhost", Some("localhost"), None),
            ),
            (
                "localhost:5000",
                reference("docker.io", "library/localhost", Some("5000"), None),
            ),
            ("a/b/c/d/e", reference("docker.io", "a/b/c/d/e", None, None)),
            ("x.io/app:_", reference("x.io", "app", Some("_"), None)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_with_specific_errors() {
        use ReferenceError::*;
        let invalid_registry = |input: &str| matches!(parse(input), Err(InvalidRegistry(_)));
        for input in [
            "https://ghcr.io/app",
            "ghcr..io/app",
            "-x.io/app",
            "localhost:99999/app",
            "localhost:/app",
            "a:b:c/app",
            "[::1/app",
            "[zz]:5000/app",
            "r\u{e9}gistry.io/app",
            "300.1.1.1/app",
        ] {
            assert!(invalid_registry(input), "{input}: {:?}", parse(input));
        }
        for input in [
            "user:password@ghcr.io/app",
            "user:p@ss@localhost",
            "user:password@localhost:5000",
            "user:pa/ss@ghcr.io",
            "token@ghcr.io/app:1",
        ] {
            assert_eq!(parse(input), Err(Credentials), "{input}");
        }
        for input in [
            "x.io?token=1/app",
            "ghcr.io/app:1?t=secret",
            "ghcr.io/app?t=secret",
            "ghcr.io/app#fragment",
            &format!("ghcr.io/app@{SHA256}?t=secret"),
        ] {
            assert_eq!(parse(input), Err(QueryOrFragment), "{input}");
        }
        let too_long_hub = "a".repeat(NAME_LENGTH_LIMIT - "docker.io/library/".len() + 1);
        let longest_hub = "a".repeat(NAME_LENGTH_LIMIT - "docker.io/library/".len());
        assert!(parse(&longest_hub).is_ok());
        let long_tag = format!("x:{}", "t".repeat(129));
        for (input, expected) in [
            ("", Empty),
            (" \t ", Empty),
            ("Alpine", UppercaseRepository("alpine".to_owned())),
            (
                "ghcr.io/MyOrg/App:v1",
                UppercaseRepository("myorg/app".to_owned()),
            ),
            ("MyOrg/-bad", InvalidRepository("-bad".to_owned())),
            ("ghcr.io/", InvalidRepository(String::new())),
            ("ghcr.io//app", InvalidRepository(String::new())),
            ("app/", InvalidRepository(String::new())),
            ("/app", InvalidRepository(String::new())),
            ("@sha256:00", InvalidRepository(String::new())),
            (":tag", InvalidRepository(String::new())),
            ("a_-b", InvalidRepository("a_-b".to_owned())),
            ("a___b", InvalidRepository("a___b".to_owned())),
            ("a..b", InvalidRepository("a..b".to_owned())),
            ("app.", InvalidRepository("app.".to_owned())),
            ("[::1]:5000", InvalidRepository("[".to_owned())),
            ("alpine:", InvalidTag(String::new())),
            ("alpine:.x", InvalidTag(".x".to_owned())),
            ("alpine:-x", InvalidTag("-x".to_owned())),
            ("alpine:a:b", InvalidTag("a:b".to_owned())),
            ("alpine:t\u{e9}", InvalidTag("t\u{e9}".to_owned())),
            (long_tag.as_str(), InvalidTag("t".repeat(100) + "…")),
            ("alpine@", InvalidDigest(String::new())),
            ("alpine@sha256:abc", InvalidDigest("sha256:abc".to_owned())),
            (
                "alpine@md5:0123456789abcdef0123456789abcdef",
                InvalidDigest("md5:0123456789abcdef0123456789abcdef".to_owned()),
            ),
            (&*too_long_hub, NameTooLong(NAME_LENGTH_LIMIT + 1)),
        ] {
            assert_eq!(parse(input), Err(expected), "{input:?}");
        }
        let uppercase_hex = SHA256.to_ascii_uppercase().replacen("SHA256", "sha256", 1);
        assert!(matches!(
            parse(&format!("alpine@{uppercase_hex}")),
            Err(InvalidDigest(_))
        ));
    }

    /// Issue 12 item 19: no part of a password (user info) or of a query string is
    /// ever quoted back, however the reference is spelled.
    #[test]
    fn error_messages_are_actionable_and_bounded() {
        assert_eq!(
            parse("ghcr.io/Org/app").unwrap_err().to_string(),
            "repository name must be lower-case: did you mean `org/app`?"
        );
        assert_eq!(
            parse("alpine:").unwrap_err().to_string(),
            "tag after `:` is empty: remove the `:` or name a tag"
        );
        let huge = format!("app:{}", "!".repeat(10_000));
        let message = parse(&huge).unwrap_err().to_string();
        assert!(message.len() < 400, "{message}");
        let secret = "hunter2-s3cret";
        for input in [
            format!("user:{secret}@ghcr.io/app"),
            format!("user:{secret}@ghcr.io"),
            format!("user:{secret}!@ghcr.io"),
            format!("user:{secret}@localhost:5000"),
            format!("user:a@{secret}@ghcr.io"),
            format!("user:{secret}/x@ghcr.io"),
            format!("user:pa/{secret}@ghcr.io"),
            format!("ghcr.io/app:1?t={secret}"),
            format!("ghcr.io/app:1%3Ft%3D{secret}"),
            format!("ghcr.io/app#{secret}"),
        ] {
            let message = parse(&input).unwrap_err().to_string();
            assert!(!message.contains(secret), "{input}: {message}");
        }
    }

    #[test]
    fn canonical_form_spells_everything_out() {
        let parsed = parse(&format!("alpine:3@{SHA256}")).unwrap();
        assert!(parsed.is_docker_hub());
        assert_eq!(
            parsed.to_string_canonical(),
            format!("docker.io/library/alpine:3@{SHA256}")
        );
        let parsed = parse("Localhost:5000/a/b").unwrap();
        assert!(!parsed.is_docker_hub());
        assert_eq!(parsed.to_string_canonical(), "localhost:5000/a/b");
    }

    fn assert_canonical_round_trip(input: &str) -> Result<(), TestCaseError> {
        if let Ok(parsed) = parse(input) {
            let canonical = parsed.to_string_canonical();
            prop_assert_eq!(parse(&canonical), Ok(parsed), "{} → {}", input, canonical);
        }
        Ok(())
    }

    fn registry_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "docker.io/",
                "Index.Docker.io/",
                "registry-1.docker.io:443/",
                "docker.io:5000/",
                "localhost/",
                "LOCALHOST:5000/",
                "127.0.0.1:5000/",
                "[::1]:5000/",
                "[0:0::1]/",
                "[::1]:443/",
                "ghcr.io/",
                "intranet:443/",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z0-9][a-z0-9-]{0,8}[a-z0-9](\\.[a-zA-Z0-9-]{1,10})?(:[0-9]{1,5})?/",
        ]
    }

    fn reference_strategy() -> impl Strategy<Value = String> {
        let component = "[a-z0-9]{1,8}((\\.|_|__|-+)[a-z0-9]{1,8})?";
        (
            registry_strategy(),
            prop::collection::vec(component, 1..4),
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}"),
            prop::option::of(prop_oneof![
                4 => "sha256:[a-f0-9]{64}",
                2 => "sha512:[a-f0-9]{128}",
                1 => "sha256:[a-fA-F0-9]{60,66}",
            ]),
        )
            .prop_map(|(registry, components, tag, digest)| {
                let mut text = registry + &components.join("/");
                if let Some(tag) = tag {
                    text = text + ":" + &tag;
                }
                if let Some(digest) = digest {
                    text = text + "@" + &digest;
                }
                text
            })
    }

    proptest! {
        #[test]
        fn never_panics(input in any::<String>()) {
            let _ = parse(&input);
        }

        #[test]
        fn canonical_form_parses_to_the_same_reference(input in reference_strategy()) {
            assert_canonical_round_trip(&input)?;
        }

        #[test]
        fn canonical_form_round_trips_on_reference_like_text(input in "[a-z0-9A-Z._:/@\\[\\]-]{0,40}") {
            assert_canonical_round_trip(&input)?;
        }

        #[test]
        fn lower_case_references_parse(
            registry in prop::sample::select(vec!["", "ghcr.io/", "localhost:5000/", "[::1]:5000/"]),
            path in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}(-[a-z0-9]{1,4})?){0,3}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        ) {
            let input = format!("{registry}{path}:{tag}");
            let parsed = parse(&input);
            prop_assert!(parsed.is_ok(), "{}: {:?}", input, parsed);
        }
    }
}
