//! A registry says how it wants to be authenticated only through `WWW-Authenticate` challenges (RFC 7235), so the token exchange starts by reading the scheme and the realm, service and scope they name.
//!
//! The parser is lenient and total: registries and the proxies in front of them send
//! headers that stray from the grammar, and a header is untrusted input, so anything
//! that cannot be read is skipped up to the next comma rather than failing the whole
//! header. It works in one forward pass, so its cost is linear in the header's length:
//! the cursor counts every byte it reads (a byte read again counts again), and the
//! tests bound that count by a small multiple of the header's length.

use std::fmt;

/// One challenge from a `WWW-Authenticate` header: a scheme and its parameters.
///
/// A token68 (`Negotiate YIIG…`) is recognised and dropped: no registry scheme uses one,
/// and keeping it out of `params` leaves nothing to mistake for a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    /// In header order; names lower-cased, values unquoted with `\`-escapes resolved.
    pub params: Vec<(String, String)>,
}

/// An authentication scheme; schemes are case-insensitive, so `Other` holds its name lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Bearer,
    Other(String),
}

impl Scheme {
    fn from_token(token: &str) -> Scheme {
        if token.eq_ignore_ascii_case("basic") {
            Scheme::Basic
        } else if token.eq_ignore_ascii_case("bearer") {
            Scheme::Bearer
        } else {
            Scheme::Other(token.to_ascii_lowercase())
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Basic => "Basic",
            Scheme::Bearer => "Bearer",
            Scheme::Other(name) => name,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Challenge {
    /// The first parameter of that name, compared case-insensitively as RFC 7235 asks.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(param_name, _)| param_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Where to send credentials: the token endpoint for Bearer, a label for Basic.
    #[must_use]
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    #[must_use]
    pub fn service(&self) -> Option<&str> {
        self.param("service")
    }

    /// Space-separated in the distribution token specification; kept as sent.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }
}

/// Writes the challenge back in header syntax, every value quoted.
impl fmt::Display for Challenge {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.scheme.as_str())?;
        for (index, (name, value)) in self.params.iter().enumerate() {
            let separator = if index == 0 { " " } else { "," };
            write!(formatter, "{separator}{name}=\"")?;
            for character in value.chars() {
                if matches!(character, '"' | '\\') {
                    formatter.write_str("\\")?;
                }
                write!(formatter, "{character}")?;
            }
            formatter.write_str("\"")?;
        }
        Ok(())
    }
}

/// Reads every challenge in one `WWW-Authenticate` header value.
///
/// Never fails: unreadable parts are skipped, and parameters before any scheme are
/// dropped. A header sent on several lines is parsed one line at a time by the caller.
#[must_use]
pub fn parse(header: &str) -> Vec<Challenge> {
    parse_counting_reads(header).0
}

/// [`parse`], and how many bytes it read on the way: the measure of its cost.
fn parse_counting_reads(header: &str) -> (Vec<Challenge>, usize) {
    let mut cursor = Cursor {
        text: header,
        position: 0,
        reads: 0,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        cursor.skip_while(|byte| is_whitespace(byte) || byte == b',');
        let Some(next) = cursor.peek() else {
            return (challenges, cursor.reads);
        };
        if !is_token_byte(next) {
            cursor.skip_element();
            continue;
        }
        let token = cursor.take_while(is_token_byte);
        let after_token = cursor.position;
        cursor.skip_while(is_whitespace);
        // A token followed by `=` is a parameter of the current challenge; any other
        // token starts a new challenge. This is how the grammar tells `, Bearer realm=…`
        // (a second challenge) from `, service=…` (one more parameter).
        if cursor.peek() == Some(b'=') {
            cursor.position += 1;
            let value = cursor.value();
            if let Some(current) = challenges.last_mut() {
                current.params.push((token.to_ascii_lowercase(), value));
            }
        } else {
            cursor.position = after_token;
            challenges.push(Challenge {
                scheme: Scheme::from_token(token),
                params: Vec::new(),
            });
            cursor.skip_token68();
        }
        cursor.skip_trailing_garbage();
    }
}

/// The challenge to answer: Bearer over Basic over any other scheme.
#[must_use]
pub fn preferred(challenges: &[Challenge]) -> Option<&Challenge> {
    let with_scheme = |scheme: Scheme| {
        challenges
            .iter()
            .find(|challenge| challenge.scheme == scheme)
    };
    with_scheme(Scheme::Bearer)
        .or_else(|| with_scheme(Scheme::Basic))
        .or_else(|| challenges.first())
}

// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

// RFC 7235 `token68`, without its trailing `=` padding.
fn is_token68_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte)
}

// Folded or pasted headers may carry CR and LF as well as the grammar's SP and HTAB.
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// A position in the header that only ever moves forward past whole characters.
///
/// Every stop is at an ASCII byte or at the end, so slicing at `position` never splits a
/// UTF-8 character.
struct Cursor<'text> {
    text: &'text str,
    position: usize,
    /// Bytes read so far, each time it is read: what the parse costs.
    reads: usize,
}

impl<'text> Cursor<'text> {
    fn peek(&mut self) -> Option<u8> {
        self.reads += 1;
        self.text.as_bytes().get(self.position).copied()
    }

    fn rest(&self) -> &'text str {
        &self.text[self.position..]
    }

    fn at_element_end(&mut self) -> bool {
        matches!(self.peek(), None | Some(b','))
    }

    /// Callers pass predicates that are false for every non-ASCII byte or true for all of them.
    fn take_while(&mut self, predicate: impl Fn(u8) -> bool) -> &'text str {
        let start = self.position;
        let length = self
            .rest()
            .bytes()
            .take_while(|&byte| predicate(byte))
            .count();
        // The bytes taken and the one that stopped the scan.
        self.reads += length + 1;
        self.position += length;
        &self.text[start..self.position]
    }

    fn skip_while(&mut self, predicate: impl Fn(u8) -> bool) {
        self.take_while(predicate);
    }

    /// After `=`: a quoted string, or else everything up to whitespace or a comma.
    ///
    /// Unquoted values may hold characters a token may not (`realm=https://…`), which
    /// some servers send; accepting them costs nothing.
    fn value(&mut self) -> String {
        self.skip_while(is_whitespace);
        if self.peek() == Some(b'"') {
            self.position += 1;
            self.quoted_string()
        } else {
            self.take_while(|byte| !is_whitespace(byte) && byte != b',')
                .to_owned()
        }
    }

    /// The rest of a quoted string whose opening quote has been read; an unterminated one runs to the end.
    fn quoted_string(&mut self) -> String {
        let mut value = String::new();
        loop {
            let rest = self.rest();
            let Some(offset) = rest.find(['"', '\\']) else {
                self.reads += rest.len();
                value.push_str(rest);
                self.position = self.text.len();
                return value;
            };
            self.reads += offset + 1;
            value.push_str(&rest[..offset]);
            self.position += offset + 1;
            if rest.as_bytes()[offset] == b'"' {
                return value;
            }
            if let Some(escaped) = self.rest().chars().next() {
                self.reads += escaped.len_utf8();
                value.push(escaped);
                self.position += escaped.len_utf8();
            }
        }
    }

    /// After a scheme: `1*SP token68` standing alone before a comma or the end.
    fn skip_token68(&mut self) {
        let start = self.position;
        self.skip_while(is_whitespace);
        let token68_start = self.position;
        if token68_start == start {
            return;
        }
        self.skip_while(is_token68_byte);
        if self.position == token68_start {
            self.position = start;
            return;
        }
        self.skip_while(|byte| byte == b'=');
        self.skip_while(is_whitespace);
        if !self.at_element_end() {
            // Not a token68 after all, but the first parameter (`realm="…"`).
            self.position = start;
        }
    }

    /// A scheme or a value must be followed by whitespace, a comma or the end; anything glued on is dropped.
    fn skip_trailing_garbage(&mut self) {
        if !matches!(self.peek(), None | Some(b',')) && !self.peek().is_some_and(is_whitespace) {
            self.skip_element();
        }
    }

    /// Skips to the next comma outside a quoted string, or to the end.
    fn skip_element(&mut self) {
        loop {
            let rest = self.rest();
            let Some(offset) = rest.find([',', '"']) else {
                self.reads += rest.len();
                self.position = self.text.len();
                return;
            };
            self.reads += offset + 1;
            self.position += offset;
            if rest.as_bytes()[offset] == b',' {
                return;
            }
            self.position += 1;
            self.quoted_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn challenge(scheme: Scheme, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme,
            params: params
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    fn other(name: &str) -> Scheme {
        Scheme::Other(name.to_owned())
    }

    /// Realm, service and, when given, scope: the parameters registries send, in their usual order.
    fn registry_challenge(scheme: Scheme, realm: &str, service: &str, scope: &str) -> Challenge {
        let mut params = vec![("realm", realm), ("service", service)];
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        challenge(scheme, &params)
    }

    #[test]
    fn reads_real_registry_headers() {
        use Scheme::{Basic, Bearer};
        for (header, expected) in [
            // Docker Hub
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                registry_challenge(Bearer, "https://auth.docker.io/token", "registry.docker.io", "repository:library/alpine:pull"),
            ),
            // GHCR
            (
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:octo-org/app:pull""#,
                registry_challenge(Bearer, "https://ghcr.io/token", "ghcr.io", "repository:octo-org/app:pull"),
            ),
            // ECR
            (
                r#"Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#,
                registry_challenge(Basic, "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/", "ecr.amazonaws.com", ""),
            ),
            // ACR
            (
                r#"Bearer realm="https://x.azurecr.io/oauth2/token",service="x.azurecr.io""#,
                registry_challenge(Bearer, "https://x.azurecr.io/oauth2/token", "x.azurecr.io", ""),
            ),
            // Artifact Registry
            (
                r#"Bearer realm="https://europe-west1-docker.pkg.dev/v2/token",service="europe-west1-docker.pkg.dev",scope="repository:project/repo/app:pull""#,
                registry_challenge(Bearer, "https://europe-west1-docker.pkg.dev/v2/token", "europe-west1-docker.pkg.dev", "repository:project/repo/app:pull"),
            ),
            // Quay
            (
                r#"Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:org/app:pull""#,
                registry_challenge(Bearer, "https://quay.io/v2/auth", "quay.io", "repository:org/app:pull"),
            ),
            // Harbor
            (
                r#"Bearer realm="https://harbor.example.com/service/token",service="harbor-registry",scope="repository:library/nginx:pull""#,
                registry_challenge(Bearer, "https://harbor.example.com/service/token", "harbor-registry", "repository:library/nginx:pull"),
            ),
            // GitLab
            (
                r#"Bearer realm="https://gitlab.com/jwt/auth",service="container_registry",scope="repository:group/project:pull""#,
                registry_challenge(Bearer, "https://gitlab.com/jwt/auth", "container_registry", "repository:group/project:pull"),
            ),
            // distribution with htpasswd
            (r#"Basic realm="Registry Realm""#, challenge(Basic, &[("realm", "Registry Realm")])),
            // Docker Hub refusing a push, with an extra parameter
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:team/app:pull,push",error="insufficient_scope""#,
                challenge(Bearer, &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:team/app:pull,push"),
                    ("error", "insufficient_scope"),
                ]),
            ),
            // reordered, spaced, mixed case, one value unquoted
            (
                " bEaReR  Scope = \"repository:a/b:pull\" ,\tSERVICE=registry.example.com,  Realm=\"https://auth.example.com/token\"  ",
                challenge(Bearer, &[
                    ("scope", "repository:a/b:pull"),
                    ("service", "registry.example.com"),
                    ("realm", "https://auth.example.com/token"),
                ]),
            ),
            // ACR, reordered
            (
                r#"Bearer service="x.azurecr.io", realm="https://x.azurecr.io/oauth2/token""#,
                challenge(Bearer, &[("service", "x.azurecr.io"), ("realm", "https://x.azurecr.io/oauth2/token")]),
            ),
        ] {
            assert_eq!(parse(header), [expected], "{header}");
        }
    }

    #[test]
    fn accessors_find_parameters_in_any_order() {
        let parsed = parse(
            r#"Bearer service="ghcr.io",scope="repository:a/b:pull",realm="https://ghcr.io/token""#,
        );
        let bearer = &parsed[0];
        assert_eq!(bearer.realm(), Some("https://ghcr.io/token"));
        assert_eq!(bearer.service(), Some("ghcr.io"));
        assert_eq!(bearer.scope(), Some("repository:a/b:pull"));
        assert_eq!(bearer.param("SERVICE"), Some("ghcr.io"));
        assert_eq!(bearer.param("error"), None);
    }

    #[test]
    fn reads_several_challenges_in_one_header() {
        assert_eq!(
            parse(r#"Basic realm="x", Bearer realm="y",service="z""#),
            [
                challenge(Scheme::Basic, &[("realm", "x")]),
                challenge(Scheme::Bearer, &[("realm", "y"), ("service", "z")]),
            ]
        );
        // RFC 7235 section 4.1's example.
        assert_eq!(
            parse(
                r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#
            ),
            [
                challenge(
                    other("newauth"),
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", r#"Login to "apps""#)
                    ]
                ),
                challenge(Scheme::Basic, &[("realm", "simple")]),
            ]
        );
        assert_eq!(
            parse("Negotiate, NTLM, Basic realm=corp"),
            [
                challenge(other("negotiate"), &[]),
                challenge(other("ntlm"), &[]),
                challenge(Scheme::Basic, &[("realm", "corp")]),
            ]
        );
    }

    #[test]
    fn keeps_commas_escapes_and_equals_inside_quoted_values() {
        assert_eq!(
            parse(
                r#"Bearer scope="repository:a/b:pull,push repository:c:pull",realm="a\\b\"c=d, e""#
            ),
            [challenge(
                Scheme::Bearer,
                &[
                    ("scope", "repository:a/b:pull,push repository:c:pull"),
                    ("realm", r#"a\b"c=d, e"#),
                ]
            )]
        );
    }

    #[test]
    fn recognises_and_drops_token68() {
        assert_eq!(
            parse("Negotiate abc==, Basic realm=x"),
            [
                challenge(other("negotiate"), &[]),
                challenge(Scheme::Basic, &[("realm", "x")]),
            ]
        );
        assert_eq!(
            parse("Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEFoQMCAQ6i/+8="),
            [challenge(other("negotiate"), &[])]
        );
    }

    #[test]
    fn survives_empty_and_malformed_headers() {
        for (header, expected) in [
            ("", vec![]),
            ("  , ,\t", vec![]),
            (
                r#"realm="orphan", Basic realm=x"#,
                vec![challenge(Scheme::Basic, &[("realm", "x")])],
            ),
            (
                r#"Bearer realm="unterminated"#,
                vec![challenge(Scheme::Bearer, &[("realm", "unterminated")])],
            ),
            (
                r#"Bearer realm=""#,
                vec![challenge(Scheme::Bearer, &[("realm", "")])],
            ),
            // `realm=` alone is a token68 in the grammar: a parameter's token is never empty.
            (
                "Bearer realm=, service=",
                vec![challenge(Scheme::Bearer, &[("service", "")])],
            ),
            (
                r#"Bearer realm="x"junk, service="y""#,
                vec![challenge(
                    Scheme::Bearer,
                    &[("realm", "x"), ("service", "y")],
                )],
            ),
            (
                r#"Bearer realm="x" service="y""#,
                vec![challenge(
                    Scheme::Bearer,
                    &[("realm", "x"), ("service", "y")],
                )],
            ),
            (
                r#"Bearer realm=https://auth.example.com/token?a=b,service=reg"#,
                vec![challenge(
                    Scheme::Bearer,
                    &[
                        ("realm", "https://auth.example.com/token?a=b"),
                        ("service", "reg"),
                    ],
                )],
            ),
            (
                "\u{e9}t\u{e9} \"a,b\", Basic",
                vec![challenge(Scheme::Basic, &[])],
            ),
            ("=\"\\", vec![]),
            (
                "Basic realm=\"\\",
                vec![challenge(Scheme::Basic, &[("realm", "")])],
            ),
            (
                "Basic realm=\"\\\u{e9}\"",
                vec![challenge(Scheme::Basic, &[("realm", "\u{e9}")])],
            ),
        ] {
            assert_eq!(parse(header), expected, "{header:?}");
        }
    }

    #[test]
    fn prefers_bearer_then_basic_then_anything() {
        let challenges = parse(r#"Negotiate, Basic realm="b", Bearer realm="t""#);
        assert_eq!(
            preferred(&challenges).map(|c| &c.scheme),
            Some(&Scheme::Bearer)
        );
        let challenges = parse(r#"Negotiate, Basic realm="b""#);
        assert_eq!(
            preferred(&challenges).map(|c| &c.scheme),
            Some(&Scheme::Basic)
        );
        let challenges = parse("Negotiate");
        assert_eq!(
            preferred(&challenges).map(|c| &c.scheme),
            Some(&other("negotiate"))
        );
        assert_eq!(preferred(&[]), None);
    }

    #[test]
    fn displays_in_header_syntax() {
        let bearer = challenge(Scheme::Bearer, &[("realm", r#"a"b\c"#), ("service", "s")]);
        assert_eq!(bearer.to_string(), r#"Bearer realm="a\"b\\c",service="s""#);
        assert_eq!(challenge(other("negotiate"), &[]).to_string(), "negotiate");
    }

    #[test]
    fn takes_linear_time_on_long_hostile_input() {
        const REPEATS: usize = 200_000;
        // Each `a==` is the next challenge's parameter, but the last is a token68.
        let mut negotiates = vec![challenge(other("negotiate"), &[("a", "=")]); REPEATS - 1];
        negotiates.push(challenge(other("negotiate"), &[]));
        for (unit, expected) in [
            ("\"", vec![]),
            ("\\", vec![]),
            ("a=", vec![]),
            // The last `a` stands alone after a scheme: that scheme's token68.
            ("a ", vec![challenge(other("a"), &[]); REPEATS - 1]),
            (",", vec![]),
            ("Basic ", vec![challenge(Scheme::Basic, &[]); REPEATS - 1]),
            ("a=\"\\", vec![]),
            ("Negotiate a== ", negotiates),
        ] {
            let header = unit.repeat(REPEATS);
            let (challenges, reads) = parse_counting_reads(&header);
            assert!(
                challenges == expected,
                "{unit:?}: {} challenges",
                challenges.len()
            );
            // A few reads a byte (9 for `a `, whose every `a` is read as a scheme, as a
            // possible token68 and again as the next scheme); a parser that went back
            // to the start of the header would need about `header.len()` per challenge.
            assert!(
                reads <= 16 * header.len(),
                "{unit:?}: {reads} reads for {} bytes",
                header.len()
            );
        }
    }

    fn scheme_strategy() -> impl Strategy<Value = Scheme> {
        prop_oneof![
            Just(Scheme::Basic),
            Just(Scheme::Bearer),
            "[a-z0-9!#$%&'*+.^_`|~-]{1,12}"
                .prop_filter("named schemes are not Other", |name| {
                    name != "basic" && name != "bearer"
                })
                .prop_map(Scheme::Other),
        ]
    }

    fn challenge_strategy() -> impl Strategy<Value = Challenge> {
        let name = "[a-z0-9!#$%&'*+.^_`|~-]{1,12}";
        let value = prop_oneof!["[a-zA-Z0-9 \"\\\\,=:/.-]{0,24}", any::<String>(),];
        (
            scheme_strategy(),
            prop::collection::vec((name, value), 0..5),
        )
            .prop_map(|(scheme, params)| Challenge { scheme, params })
    }

    proptest! {
        #[test]
        fn never_panics(header in any::<String>()) {
            let _ = parse(&header);
        }

        #[test]
        fn reparsing_what_was_read_reads_the_same(header in "[a-zA-Z =,\"\\\\\t/+~.\u{e9}]{0,64}") {
            let once = parse(&header);
            let shown = once.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            prop_assert_eq!(parse(&shown), once);
        }

        #[test]
        fn parses_what_it_displays(challenges in prop::collection::vec(challenge_strategy(), 0..4)) {
            let header = challenges
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            prop_assert_eq!(parse(&header), challenges);
        }
    }
}
