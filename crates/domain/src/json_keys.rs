//! Refusing JSON objects that name a key twice. `serde_json` keeps the last of two
//! equal keys, so `{"Effect":"Deny", …, "Effect":"Allow"}` would silently become an
//! Allow: a reviewer reads the first, the server obeys the second. Documents where that
//! ambiguity grants access (workload role policies) are read through
//! [`reject_duplicate_keys`] before they are parsed.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{Error, Result};
use crate::text::echo;

/// A duplicate key and where its object is (`policy.Statement[0]`; empty at the top).
type Found = RefCell<Option<(String, String)>>;

/// Fails with `duplicate_key`, naming the key and its object's path, when any object
/// at any depth of `text` holds a key twice (compared after unescaping, so
/// `"Eff\u0065ct"` is `Effect`). Text that is not JSON passes (unless a duplicate came
/// before its error): the parser that reads it next reports that with its own message.
pub fn reject_duplicate_keys(text: &[u8]) -> Result<()> {
    let found = Found::default();
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let walked = Walk {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut deserializer);
    match (walked, found.into_inner()) {
        (Err(_), Some((key, path))) => Err(Error::invalid(
            "duplicate_key",
            format!(
                "duplicate key `{}` {}: each key may appear only once in an object",
                echo(&key),
                if path.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in {}", echo(&path))
                }
            ),
        )),
        _ => Ok(()),
    }
}

/// Visits one value, recording the first duplicate key it meets below `path`.
struct Walk<'a> {
    path: String,
    found: &'a Found,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while sequence
            .next_element_seed(Walk {
                path: format!("{}[{index}]", self.path),
                found: self.found,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                *self.found.borrow_mut() = Some((key, self.path));
                return Err(de::Error::custom("duplicate key"));
            }
            let path = if self.path.is_empty() {
                key
            } else {
                format!("{}.{key}", self.path)
            };
            map.next_value_seed(Walk {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        reject_duplicate_keys(text.as_bytes())
            .unwrap_err()
            .to_string()
    }

    /// Issue 12 item 4: `"Effect":"Deny", …, "Effect":"Allow"` used to be read as Allow.
    #[test]
    fn duplicate_keys_are_refused_at_any_depth_with_the_key_named() {
        let text = message(
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Effect":"Allow"}]}"#,
        );
        assert!(
            text.contains("duplicate key `Effect` in Statement[0]"),
            "{text}"
        );
        let text = message(r#"{"policy":{"Statement":[]},"policy":{}}"#);
        assert!(text.contains("`policy` at the top level"), "{text}");
        let text = message(r#"{"a":{"b":[1,{"c":{"d":1,"d":2}}]}}"#);
        assert!(text.contains("`d` in a.b[1].c"), "{text}");
        // Escapes are undone before keys are compared.
        let text = message(r#"{"Effect":"Deny","Eff\u0065ct":"Allow"}"#);
        assert!(text.contains("`Effect`"), "{text}");
    }

    #[test]
    fn documents_without_duplicates_and_non_json_pass() {
        for text in [
            r#"{"Statement":[{"Effect":"Allow"},{"Effect":"Deny"}]}"#,
            r#"{"a":{"x":1},"b":{"x":1}}"#,
            "[1, 2, [3]]",
            "not json",
            r#"{"a":1,"b""#,
        ] {
            assert!(reject_duplicate_keys(text.as_bytes()).is_ok(), "{text}");
        }
    }

    proptest::proptest! {
        /// An object built from distinct keys passes; naming any one of them again, at
        /// whatever depth the object sits, is refused with that key named.
        #[test]
        fn a_repeated_key_is_always_found(
            keys in proptest::collection::btree_set("[A-Za-z]{1,8}", 1..6),
            depth in 0usize..5,
            pick in 0usize..6,
        ) {
            let keys: Vec<String> = keys.into_iter().collect();
            let members: Vec<String> = keys.iter().map(|key| format!("\"{key}\":1")).collect();
            let wrap = |inner: String| (0..depth).fold(inner, |inner, _| format!("{{\"x\":[{inner}]}}"));
            let unique = wrap(format!("{{{}}}", members.join(",")));
            proptest::prop_assert!(reject_duplicate_keys(unique.as_bytes()).is_ok());
            let repeated = &keys[pick % keys.len()];
            let duplicated = wrap(format!("{{{},\"{repeated}\":2}}", members.join(",")));
            let error = reject_duplicate_keys(duplicated.as_bytes()).unwrap_err().to_string();
            let expected = format!("`{repeated}`");
            proptest::prop_assert!(error.contains(&expected), "{}", error);
        }

        #[test]
        fn never_panics(text in "\\PC{0,80}") {
            let _ = reject_duplicate_keys(text.as_bytes());
        }
    }
}
