//! What a proxy request names: `/v2/UPSTREAM-HOST[:PORT]/REPOSITORY/(manifests/REF |
//! blobs/DIGEST | tags/list)`, parsed and checked against the OCI distribution grammar
//! before anything is resolved or fetched, so nothing a client wrote reaches an
//! upstream URL unchecked.
//!
//! Image references cannot carry a `:` in a repository path (`skopeo`, `docker` and
//! containerd refuse `proxy/127.0.0.1:5000/team/app`), so the upstream's port may also
//! be written `HOST_PORT`: a host name never holds `_`, so the alias is unambiguous.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::domain::registry;
use crate::text::echo;

/// A repository name may be at most this long (distribution's limit, host included).
const MAX_NAME_LENGTH: usize = 255;

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$").expect("tag pattern"));
static PORT_ALIAS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.+)_([0-9]{1,5})$").expect("port alias pattern"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    fn hex_length(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

/// A content digest regkeeper can verify: `sha256:` or `sha512:` and lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole digest, `algorithm:hex`.
    text: String,
}

impl Digest {
    pub fn parse(input: &str) -> Result<Self, PathError> {
        let invalid = || PathError::DigestInvalid(echo(input));
        let (algorithm, hex) = input.split_once(':').ok_or_else(invalid)?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(PathError::DigestUnsupported(echo(algorithm))),
        };
        let well_formed = hex.len() == algorithm.hex_length()
            && hex
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(invalid());
        }
        Ok(Self {
            algorithm,
            text: input.to_owned(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tag(tag) => tag,
            Self::Digest(digest) => digest.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Manifest(Reference),
    Blob(Digest),
    TagsList,
}

/// A parsed proxy request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath {
    /// The upstream registry as credentials are stored under it: `host[:port]`,
    /// lower case, 443 implied.
    pub upstream: String,
    /// The first path segment as the client wrote it, for rewriting `Link` headers.
    pub upstream_segment: String,
    pub repository: String,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not a route of the read API at all.
    #[error("not a registry API path; pull as PROXY/UPSTREAM-HOST[:PORT]/REPOSITORY:TAG")]
    UnknownRoute,
    #[error("`{0}` is not a registry host; pull as PROXY/UPSTREAM-HOST[:PORT]/REPOSITORY:TAG (or HOST_PORT for a port)")]
    HostInvalid(String),
    /// Not quoted: what precedes the `@` may be a password.
    #[error("the upstream host must not carry credentials (user:password@): log in to the proxy with a regkeeper API token instead; it supplies the upstream's credentials")]
    HostWithUserInfo,
    #[error("invalid repository name `{0}`: path components are lower-case letters and digits separated by `.`, `_`, `__` or `-`")]
    NameInvalid(String),
    #[error("repository name longer than {MAX_NAME_LENGTH} characters")]
    NameTooLong,
    #[error("invalid tag `{0}`")]
    TagInvalid(String),
    #[error("invalid digest `{0}`: expected sha256:<64 hex> or sha512:<128 hex>")]
    DigestInvalid(String),
    #[error(
        "digest algorithm `{0}` is not supported: regkeeper verifies sha256 and sha512 content"
    )]
    DigestUnsupported(String),
}

impl PathError {
    /// The OCI error code for the answer.
    pub fn oci_code(&self) -> &'static str {
        match self {
            Self::UnknownRoute => "NAME_UNKNOWN",
            Self::HostInvalid(_)
            | Self::HostWithUserInfo
            | Self::NameInvalid(_)
            | Self::NameTooLong => "NAME_INVALID",
            Self::TagInvalid(_) => "TAG_INVALID",
            Self::DigestInvalid(_) | Self::DigestUnsupported(_) => "DIGEST_INVALID",
        }
    }
}

/// Parses the part of a request path after `/v2/`.
pub fn parse(path: &str) -> Result<ProxyPath, PathError> {
    let segments: Vec<&str> = path.split('/').collect();
    let count = segments.len();
    // host, at least one repository component, and the route's two segments.
    if count < 4 {
        return Err(PathError::UnknownRoute);
    }
    let (name, target) = match (segments[count - 2], segments[count - 1]) {
        ("tags", "list") => (&segments[..count - 2], Target::TagsList),
        ("manifests", reference) => (
            &segments[..count - 2],
            Target::Manifest(parse_reference(reference)?),
        ),
        ("blobs", digest) => (&segments[..count - 2], Target::Blob(Digest::parse(digest)?)),
        _ => return Err(PathError::UnknownRoute),
    };
    let (host_segment, repository) = name.split_first().ok_or(PathError::UnknownRoute)?;
    let upstream = upstream_host(host_segment)?;
    let repository = repository.join("/");
    let normalized = registry::normalize_path_prefix(&repository)
        .map_err(|_| PathError::NameInvalid(echo(&repository)))?;
    if normalized.is_empty() || normalized != repository {
        return Err(PathError::NameInvalid(echo(&repository)));
    }
    if upstream.len() + 1 + repository.len() > MAX_NAME_LENGTH {
        return Err(PathError::NameTooLong);
    }
    Ok(ProxyPath {
        upstream,
        upstream_segment: (*host_segment).to_owned(),
        repository,
        target,
    })
}

fn parse_reference(reference: &str) -> Result<Reference, PathError> {
    if reference.contains(':') {
        return Digest::parse(reference).map(Reference::Digest);
    }
    if TAG.is_match(reference) {
        Ok(Reference::Tag(reference.to_owned()))
    } else {
        Err(PathError::TagInvalid(echo(reference)))
    }
}

/// `host`, `host:port` or `host_port`, normalised as stored credentials are.
fn upstream_host(segment: &str) -> Result<String, PathError> {
    let invalid = || PathError::HostInvalid(echo(segment));
    let lower = segment.to_ascii_lowercase();
    if segment.contains('@') || lower.contains("%40") {
        return Err(PathError::HostWithUserInfo);
    }
    let spelled = match PORT_ALIAS.captures(segment) {
        Some(captures) if !segment.contains(':') => {
            format!("{}:{}", &captures[1], &captures[2])
        }
        _ => segment.to_owned(),
    };
    // Hosts carry a dot, a port or are `localhost`, as in image references; anything
    // else would be a repository name, meaning the client forgot the upstream.
    let (host_part, _) = spelled.rsplit_once(':').unwrap_or((&spelled, ""));
    if !(spelled.contains(['.', ':']) || host_part == "localhost") {
        return Err(invalid());
    }
    if spelled.contains(['/', '\\', '@', '?', '#', '%']) || spelled.starts_with("http") {
        return Err(invalid());
    }
    let address = registry::normalize(&spelled).map_err(|_| invalid())?;
    if !address.path_prefix.is_empty() {
        return Err(invalid());
    }
    Ok(address.host)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn routes_of_the_read_api() {
        let manifest = parse("registry.example.com/team/app/manifests/1.0").unwrap();
        assert_eq!(manifest.upstream, "registry.example.com");
        assert_eq!(manifest.repository, "team/app");
        assert_eq!(
            manifest.target,
            Target::Manifest(Reference::Tag("1.0".into()))
        );
        let by_digest = parse(&format!("127.0.0.1:5000/app/manifests/{DIGEST}")).unwrap();
        assert_eq!(by_digest.upstream, "127.0.0.1:5000");
        assert!(matches!(
            by_digest.target,
            Target::Manifest(Reference::Digest(_))
        ));
        let blob = parse(&format!("127.0.0.1_5000/team/app/blobs/{DIGEST}")).unwrap();
        assert_eq!(blob.upstream, "127.0.0.1:5000");
        assert_eq!(blob.upstream_segment, "127.0.0.1_5000");
        assert_eq!(blob.target, Target::Blob(Digest::parse(DIGEST).unwrap()));
        let tags = parse("localhost:5000/a/b/c/tags/list").unwrap();
        assert_eq!(tags.repository, "a/b/c");
        assert_eq!(tags.target, Target::TagsList);
        // Route words inside a repository name are just components.
        let nested = parse("ghcr.io/blobs/manifests/manifests/latest").unwrap();
        assert_eq!(nested.repository, "blobs/manifests");
        // 443 is implied, as in stored credentials.
        let ecr =
            parse("123456789012.dkr.ecr.us-east-1.amazonaws.com:443/team/app/tags/list").unwrap();
        assert_eq!(ecr.upstream, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    }

    /// Issue 12 item 19: a path holding user info, or a query smuggled in
    /// percent-encoded, is refused without quoting the secret.
    /// Issue 14: a quoted path segment goes through `text::echo`, so a newline or an
    /// ANSI escape in it arrives escaped.
    #[test]
    fn quoted_segments_have_control_characters_escaped() {
        assert_eq!(
            parse("registry.example.com/app/manifests/v1\n\u{1b}[31m"),
            Err(PathError::TagInvalid("v1\\n\\u{1b}[31m".into()))
        );
    }

    #[test]
    fn secrets_in_a_path_are_never_quoted() {
        let secret = "hunter2-s3cret";
        for path in [
            format!("user:{secret}@registry.example.com/app/manifests/1"),
            format!("user:{secret}%40registry.example.com/app/manifests/1"),
            format!("{secret}@registry.example.com/app/manifests/1"),
            format!("registry.example.com/app/manifests/1%3Ft%3D{secret}"),
            format!("registry.example.com/user:{secret}@app/manifests/1"),
            format!("registry.example.com/app/blobs/sha256:abc%3Ft%3D{secret}"),
        ] {
            let error = parse(&path).unwrap_err();
            assert!(!error.to_string().contains(secret), "{path}: {error}");
        }
        assert_eq!(
            parse(&format!("u:{secret}@registry.example.com/app/manifests/1")).unwrap_err(),
            PathError::HostWithUserInfo
        );
    }

    #[test]
    fn bad_paths_are_refused_with_the_oci_code() {
        for (path, code) in [
            ("registry.example.com/manifests/1", "NAME_UNKNOWN"),
            ("registry.example.com/app/uploads/1", "NAME_UNKNOWN"),
            ("app/team/manifests/1", "NAME_INVALID"),
            ("registry.example.com/Team/manifests/1", "NAME_INVALID"),
            ("registry.example.com/team//app/manifests/1", "NAME_INVALID"),
            ("registry.example.com/../app/manifests/1", "NAME_INVALID"),
            ("user@registry.example.com/app/manifests/1", "NAME_INVALID"),
            ("registry.example.com/app/manifests/-bad", "TAG_INVALID"),
            (
                "registry.example.com/app/manifests/sha256:abc",
                "DIGEST_INVALID",
            ),
            ("registry.example.com/app/blobs/latest", "DIGEST_INVALID"),
            ("registry.example.com/app/blobs/md5:0123", "DIGEST_INVALID"),
        ] {
            let error = parse(path).unwrap_err();
            assert_eq!(error.oci_code(), code, "{path}: {error}");
        }
        let long = format!("registry.example.com/{}/manifests/1", "a".repeat(300));
        assert_eq!(parse(&long).unwrap_err(), PathError::NameTooLong);
        let upper = DIGEST.to_uppercase().replace("SHA256", "sha256");
        assert!(Digest::parse(&upper).is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepted_names_are_well_formed(path in "[a-zA-Z0-9:._/@-]{0,80}") {
            if let Ok(parsed) = parse(&path) {
                prop_assert!(!parsed.repository.is_empty());
                prop_assert!(!parsed.repository.contains(".."));
                prop_assert!(!parsed.upstream.contains('/'));
            }
        }

        #[test]
        fn a_port_reads_the_same_in_either_spelling(port in 1u16..=65535, tag in "[a-z0-9]{1,10}") {
            let colon = parse(&format!("10.0.0.1:{port}/team/manifests/{tag}")).unwrap();
            let alias = parse(&format!("10.0.0.1_{port}/team/manifests/{tag}")).unwrap();
            prop_assert_eq!(colon.upstream, alias.upstream);
        }
    }
}
