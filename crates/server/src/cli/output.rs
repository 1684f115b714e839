//! Printing results: aligned plain-text tables for people, JSON for scripts.
//!
//! Every cell and value a person reads goes through [`crate::text::printable`]: a
//! name, target or message holding a newline, ANSI escapes, a bidi override or NUL
//! (stored as typed, since rejected input is audited too) would otherwise start a
//! fake row, recolour the terminal or reorder what is shown. It is shown escaped
//! (`\n`, `\u{1b}`, `\u{202e}`) instead. JSON output stays exact.

use std::borrow::Cow;
use std::fmt::Write;

use serde::Serialize;

use super::OutputFormat;
use crate::text::{is_printable, printable};

/// Prints rows under a header with columns padded to their widest cell, each cell
/// escaped so that it stays on its line and in its column.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(header, rows));
}

fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let mut rendered = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        rendered.push_str(padded.join("  ").trim_end());
        rendered.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(AsRef::as_ref).collect());
    }
    rendered
}

/// Two columns of field and value, for one object; values escaped as in [`table`].
pub fn fields(pairs: &[(&str, String)]) {
    print!("{}", render_fields(pairs));
}

fn render_fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(name, value)| format!("{name:<width$}  {}\n", printable(value)))
        .collect()
}

/// One line of prose that quotes names or server messages, escaped.
pub fn line(text: &str) {
    println!("{}", printable(text));
}

/// A list the server answered: all of it as JSON for `--output json`, else a [`table`]
/// under `header` with the row `row` makes of each item.
pub fn list<Item>(
    format: OutputFormat,
    whole: &impl Serialize,
    items: &[Item],
    header: &[&str],
    row: impl Fn(&Item) -> Vec<String>,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(whole);
    }
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    table(header, &rows);
    Ok(())
}

/// A new secret, shown this once: all of `whole` as JSON for `--output json`, else
/// `what` (escaped) on stderr and the secret alone on stdout, so that `$(…)` captures
/// the secret and nothing else.
pub fn secret_once(
    format: OutputFormat,
    whole: &impl Serialize,
    what: &str,
    secret: &str,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return json(whole);
    }
    eprintln!("{}", printable(what));
    println!("{secret}");
    Ok(())
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// JSON for a person to read inside table output (a role's policy): the same document,
/// but with non-printing characters that JSON allows raw (bidi overrides, zero-width
/// and other format characters) written as `\uXXXX`, so it still parses to exactly
/// the same value.
pub fn json_for_people<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    if text.chars().all(is_printable_or_layout) {
        return Ok(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        if is_printable_or_layout(character) {
            shown.push(character);
        } else {
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                let _ = write!(shown, "\\u{unit:04x}");
            }
        }
    }
    Ok(shown)
}

/// The newlines and indentation of pretty JSON itself; serde escapes every other
/// control character inside strings already.
fn is_printable_or_layout(character: char) -> bool {
    character == '\n' || is_printable(character)
}

pub fn or_dash(value: Option<&str>) -> String {
    value
        .filter(|value| !value.is_empty())
        .unwrap_or("-")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 item 14: a cell holding a newline, ANSI colour, a bidi override and
    /// NUL stays one escaped cell on its own line; clean tables are unchanged.
    #[test]
    fn a_cell_cannot_start_a_row_or_colour_the_terminal() {
        let forged = "x\n999  2026-01-01T00:00:00.000Z  admin  \u{1b}[32mcredential.delete\u{1b}[0m\u{202e}\0";
        let rendered = render_table(
            &["SEQ", "TARGET", "OUTCOME"],
            &[
                vec!["1".into(), forged.into(), "denied".into()],
                vec!["2".into(), "mirror".into(), "success".into()],
            ],
        );
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines.len(), 3, "{rendered}");
        assert!(lines[1].starts_with("1    x\\n999  "), "{rendered}");
        assert!(lines[1].contains("\\u{1b}[32mcredential.delete\\u{1b}[0m\\u{202e}\\0  denied"));
        assert!(!rendered.contains(['\u{1b}', '\u{202e}', '\0']));
        // Columns stay aligned on the escaped width.
        let outcome = lines[1].find("denied").unwrap();
        assert_eq!(lines[2].find("success"), Some(outcome));
        assert_eq!(
            render_table(&["NAME", "TYPE"], &[vec!["ghcr".into(), "docker".into()]]),
            "NAME  TYPE\nghcr  docker\n"
        );
    }

    #[test]
    fn field_values_are_escaped() {
        assert_eq!(
            render_fields(&[("Name", "a\nb".into()), ("Type", "docker".into())]),
            "Name  a\\nb\nType  docker\n"
        );
    }

    #[test]
    fn json_for_people_parses_to_the_same_value() {
        let value =
            serde_json::json!({"Sid": "allow\u{202e}all", "Emoji": "🙂\u{e0001}", "Line": "a\nb"});
        let shown = json_for_people(&value).unwrap();
        assert!(!shown.contains('\u{202e}'), "{shown}");
        assert!(shown.contains("allow\\u202eall"), "{shown}");
        assert!(shown.contains("🙂\\udb40\\udc01"), "{shown}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
            value
        );
    }
}
