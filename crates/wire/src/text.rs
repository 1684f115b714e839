//! Untrusted text on its way to a person. What a terminal or a browser would act on or
//! hide instead of showing — control characters (a newline that starts a fake table
//! row, ANSI colour escapes), bidi overrides, NUL and other non-printing characters —
//! is written as an escape (`\n`, `\u{202e}`), and what could be a secret pasted into
//! an address — user info (`user:password@`), a query string or a fragment — is left
//! out. JSON answers keep values exact; tables, pages, error messages and the audit
//! log's targets go through here.
//!
//! [`echo`] is the one way any part of regkeeper quotes input back in a message: the
//! server's parsers (image references, registry addresses, proxy paths, names, sync
//! targets) and the node-side programs (the kubelet provider, the docker credential
//! helper) alike. It lives in this crate, not the server, because this is the one
//! crate both sides depend on: the thin clients must not depend on the server (their
//! dependency tree is checked by `crates/consumers/tests/dependencies.rs`), and the
//! module adds only `unicode-properties`, which has no dependencies of its own. The
//! server re-exports it as `crate::text`.

use std::borrow::Cow;
use std::fmt::Write;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// What replaces the user info of an address.
pub const USERINFO_REDACTED: &str = "[userinfo redacted]";
/// What replaces a query string or fragment (after its `?` or `#`).
pub const QUERY_REDACTED: &str = "[redacted]";

/// Whether a terminal or browser shows `character` as a visible glyph or plain space,
/// rather than acting on it or hiding it: false for the Unicode general categories
/// Cc (controls, incl. NUL, ESC, newline, tab), Cf (formats: bidi embeddings,
/// overrides and isolates, U+200E/F, U+061C, zero-width characters), Zl and Zp (line
/// and paragraph separators), Co (private use, drawn differently by every font) and
/// Cn (unassigned, whose meaning a later Unicode version may give).
pub fn is_printable(character: char) -> bool {
    !matches!(
        character.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
    )
}

/// `text` with every non-printing character escaped the way Rust writes it: `\n`,
/// `\r`, `\t`, `\0`, otherwise `\u{HEX}`. Printable text comes back borrowed.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_printable) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        push_printable(&mut shown, character);
    }
    Cow::Owned(shown)
}

/// Appends `character` to `shown`, escaped as [`printable`] would escape it.
pub fn push_printable(shown: &mut String, character: char) {
    match character {
        '\n' => shown.push_str("\\n"),
        '\r' => shown.push_str("\\r"),
        '\t' => shown.push_str("\\t"),
        '\0' => shown.push_str("\\0"),
        printable if is_printable(printable) => shown.push(printable),
        other => {
            let _ = write!(shown, "\\u{{{:x}}}", u32::from(other));
        }
    }
}

/// A delimiter that ends user info (`@`) or starts a query (`?`) or fragment (`#`),
/// written plainly or percent-encoded (`%40`, `%3F`, `%23`).
struct Delimiter {
    start: usize,
    end: usize,
    kind: char,
}

fn delimiters(text: &str) -> impl Iterator<Item = Delimiter> + '_ {
    text.char_indices()
        .filter_map(|(start, character)| {
            let kind = match character {
                '@' | '?' | '#' => return Some((start, start + 1, character)),
                '%' => match text
                    .get(start + 1..start + 3)?
                    .to_ascii_uppercase()
                    .as_str()
                {
                    "40" => '@',
                    "3F" => '?',
                    "23" => '#',
                    _ => return None,
                },
                _ => return None,
            };
            Some((start, start + 3, kind))
        })
        .map(|(start, end, kind)| Delimiter { start, end, kind })
}

/// An image digest starts here (`name@sha256:…`), so the `@` before it is no user info.
fn digest_follows(text: &str) -> bool {
    ["sha256:", "sha384:", "sha512:", "blake3:"]
        .iter()
        .any(|algorithm| text.starts_with(algorithm))
}

/// `input` without what could be a secret pasted into an address or image reference:
/// user info becomes `[userinfo redacted]` (everything before the last `@` that does
/// not start a digest, after any `scheme://`, since a password may itself hold `/`,
/// `?` or `@`), and a query string or fragment after it becomes `?[redacted]` or
/// `#[redacted]`. Percent-encoded delimiters count too. Anything else is kept, so an
/// audit entry still says which host and repository were asked for.
pub fn without_secrets(input: &str) -> Cow<'_, str> {
    let userinfo_end = delimiters(input)
        .filter(|delimiter| delimiter.kind == '@' && !digest_follows(&input[delimiter.end..]))
        .last();
    let rest_start = userinfo_end.as_ref().map_or(0, |delimiter| delimiter.start);
    let query = delimiters(&input[rest_start..])
        .find(|delimiter| delimiter.kind != '@')
        .map(|delimiter| (rest_start + delimiter.start, delimiter.kind));
    if userinfo_end.is_none() && query.is_none() {
        return Cow::Borrowed(input);
    }
    let mut kept = String::with_capacity(input.len());
    let body_end = query.map_or(input.len(), |(start, _)| start);
    match userinfo_end {
        Some(delimiter) => {
            let scheme_end = scheme_length(input).filter(|length| *length <= delimiter.start);
            kept.push_str(&input[..scheme_end.unwrap_or(0)]);
            kept.push_str(USERINFO_REDACTED);
            kept.push_str(&input[delimiter.start..body_end]);
        }
        None => kept.push_str(&input[..body_end]),
    }
    if let Some((_, kind)) = query {
        kept.push(kind);
        kept.push_str(QUERY_REDACTED);
    }
    Cow::Owned(kept)
}

/// The length of a leading `scheme://`, if there is one.
fn scheme_length(input: &str) -> Option<usize> {
    let (scheme, _) = input.split_once("://")?;
    let mut characters = scheme.chars();
    let well_formed = characters.next()?.is_ascii_alphabetic()
        && characters
            .all(|character| character.is_ascii_alphanumeric() || "+.-".contains(character));
    well_formed.then_some(scheme.len() + 3)
}

/// How many characters of user input a message quotes: enough to recognise a name,
/// host or reference, too few to carry a pasted blob into a log line.
pub const ECHO_LIMIT: usize = 100;

/// User input as an error message may quote it: without secrets, at most
/// [`ECHO_LIMIT`] characters (then `…`), and printable.
pub fn echo(input: &str) -> String {
    echo_within(input, ECHO_LIMIT)
}

/// [`echo`] cut at `limit` characters instead: for labels kept for good (an audit
/// actor, a token name) whose length was fixed before [`ECHO_LIMIT`] was.
pub fn echo_within(input: &str, limit: usize) -> String {
    let kept = without_secrets(input);
    let mut characters = kept.chars();
    let cut: String = characters.by_ref().take(limit).collect();
    let mut shown = printable(&cut).into_owned();
    if characters.next().is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn controls_bidi_and_invisible_characters_are_escaped() {
        assert_eq!(printable("ghcr-mirror"), "ghcr-mirror");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("x\n2  admin\u{1b}[32m\u{202e}\0"),
            "x\\n2  admin\\u{1b}[32m\\u{202e}\\0"
        );
        assert_eq!(printable("a\tb\rc"), "a\\tb\\rc");
        for (character, escaped) in [
            ('\u{202a}', "\\u{202a}"),
            ('\u{202d}', "\\u{202d}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{200e}', "\\u{200e}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{061c}', "\\u{61c}"),
            ('\u{200b}', "\\u{200b}"),
            ('\u{feff}', "\\u{feff}"),
            ('\u{2028}', "\\u{2028}"),
            ('\u{2029}', "\\u{2029}"),
            ('\u{7f}', "\\u{7f}"),
            ('\u{85}', "\\u{85}"),
            ('\u{9b}', "\\u{9b}"),
            ('\u{e000}', "\\u{e000}"),
            ('\u{10fffd}', "\\u{10fffd}"),
            ('\u{e0001}', "\\u{e0001}"),
            ('\u{ffff}', "\\u{ffff}"),
        ] {
            assert_eq!(printable(&character.to_string()), escaped, "{character:?}");
        }
        // Letters, marks, symbols and spaces of every script stay as they are.
        for text in ["Grüße", "東京", "e\u{301}", "—…·", "a b", "🙂", "ñ\u{a0}x"] {
            assert_eq!(printable(text), text);
        }
    }

    #[test]
    fn user_info_queries_and_fragments_are_left_out() {
        for (input, kept) in [
            ("ghcr.io/org/app:1", "ghcr.io/org/app:1"),
            (
                "u:PASSWORD@registry.example.com/app",
                "[userinfo redacted]@registry.example.com/app",
            ),
            (
                "https://u:PASSWORD@registry.example.com/app",
                "https://[userinfo redacted]@registry.example.com/app",
            ),
            (
                "u:pa/ss@wo?rd@host/app?t=SECRET#x",
                "[userinfo redacted]@host/app?[redacted]",
            ),
            ("host/app:1?t=SECRET", "host/app:1?[redacted]"),
            ("host/app#SECRET", "host/app#[redacted]"),
            ("u%3APASSWORD%40host/app", "[userinfo redacted]%40host/app"),
            ("host/app:1%3Ft%3DSECRET", "host/app:1?[redacted]"),
            ("TOKEN@host", "[userinfo redacted]@host"),
        ] {
            assert_eq!(without_secrets(input), kept, "{input}");
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = format!("ghcr.io/org/app:1@{digest}");
        assert_eq!(without_secrets(&pinned), pinned);
        assert_eq!(
            without_secrets(&format!("u:SECRET@ghcr.io/org/app@{digest}")),
            format!("[userinfo redacted]@ghcr.io/org/app@{digest}")
        );
    }

    #[test]
    fn echoes_are_short_printable_and_secret_free() {
        assert_eq!(echo("bad\nname"), "bad\\nname");
        assert_eq!(echo(&"a".repeat(120)), format!("{}…", "a".repeat(100)));
        assert_eq!(echo_within("x\u{202e}y", 2), "x\\u{202e}…");
        assert_eq!(echo("app:1?t=SECRET"), "app:1?[redacted]");
    }

    proptest! {
        #[test]
        fn escaped_text_is_all_printable_and_one_line(text in any::<String>()) {
            let shown = printable(&text);
            prop_assert!(shown.chars().all(is_printable));
            let raw_controls = ['\n', '\r', '\u{1b}', '\0'];
            prop_assert!(!shown.contains(raw_controls), "{:?}", shown);
            // Text without anything to escape is untouched.
            if text.chars().all(is_printable) {
                prop_assert_eq!(shown.as_ref(), text.as_str());
            }
        }

        #[test]
        fn a_secret_after_user_info_or_a_query_never_survives(
            before in "[a-z0-9./:-]{0,20}",
            secret in "[A-Za-z0-9]{12}",
            after in "[a-z0-9./:-]{0,20}",
            delimiter in prop::sample::select(vec!["@", "?", "#", "%40", "%3F", "%23"]),
        ) {
            // The secret as user info (before an `@`), or as a query or fragment.
            let input = if delimiter.contains('@') || delimiter.contains("40") {
                format!("{before}{secret}{delimiter}{after}")
            } else {
                format!("{before}{delimiter}{secret}{after}")
            };
            prop_assert!(!without_secrets(&input).contains(&secret), "{}", input);
            prop_assert!(!echo(&input).contains(&secret), "{}", input);
        }
    }
}
