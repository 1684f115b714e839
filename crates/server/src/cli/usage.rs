//! Command-line usage errors as one line. clap prints a usage error over several lines
//! (the error, a tip, the usage, a pointer to `--help`), but scripts and logs read
//! regkeeper's errors line by line (README, "Errors"), so `main` prints this one line
//! instead, with the command's `--help` to see the rest, and exits with status 2.

use clap::error::ErrorKind;
use clap::CommandFactory;

use super::Cli;

/// Exit status of a usage error, as clap and most command-line programs use.
pub const USAGE_EXIT_STATUS: u8 = 2;

/// Whether `error` is a request for help or the version rather than a mistake: those
/// go to stdout as clap prints them, with exit status 0.
pub fn is_information(error: &clap::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    )
}

/// The usage error as one line (without the `error: ` that `main` puts before it).
pub fn one_line(error: &clap::Error) -> String {
    let rendered = strip_escapes(&error.render().to_string());
    let command = command_path(&rendered);
    let help = format!("see `{} --help`", command.join(" "));
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let choices = subcommands(&command[1..]);
        return if choices.is_empty() {
            format!("`{}` needs more arguments; {help}", command.join(" "))
        } else {
            format!(
                "`{}` needs a command: {}; {help}",
                command.join(" "),
                choices.join(", ")
            )
        };
    }
    // Everything clap says before the usage, the tips included, joined into one line.
    let message = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message}; {help}")
}

/// The command the error is about, from clap's `Usage: regkeeper credentials add …`
/// line; `regkeeper` when there is none.
fn command_path(rendered: &str) -> Vec<String> {
    let mut words: Vec<String> = rendered
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage: "))
        .map(|usage| {
            usage
                .split_whitespace()
                .take_while(|word| {
                    word.chars()
                        .all(|character| character.is_ascii_alphanumeric() || character == '-')
                        && !word.starts_with('-')
                })
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if words.is_empty() {
        words.push("regkeeper".to_owned());
    }
    words
}

/// The names of the subcommands under `path` (below `regkeeper`), `help` left out.
fn subcommands(path: &[String]) -> Vec<String> {
    let mut command = Cli::command();
    for name in path {
        match command.find_subcommand(name) {
            Some(found) => command = found.clone(),
            None => return Vec::new(),
        }
    }
    command
        .get_subcommands()
        .map(|subcommand| subcommand.get_name().to_owned())
        .filter(|name| name != "help")
        .collect()
}

/// clap colours its errors on a terminal; a log line should not hold escape codes.
fn strip_escapes(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character == '\u{1b}' {
            // CSI sequences end with a letter.
            for following in characters.by_ref() {
                if following.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(character);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn usage_error(arguments: &[&str]) -> (ErrorKind, String) {
        let error = Cli::try_parse_from(arguments).err().expect("a usage error");
        (error.kind(), one_line(&error))
    }

    /// Issue 12 item 15: every usage error is one line naming the problem and the
    /// `--help` to read (clap printed five or more lines).
    #[test]
    fn usage_errors_are_one_line_with_the_help_to_read() {
        for (arguments, expected) in [
            (
                &["regkeeper", "credentials", "add", "--bogus"][..],
                "unexpected argument '--bogus' found",
            ),
            (
                &["regkeeper", "credentials", "add", "--registry", "ghcr.io"],
                "the following required arguments were not provided: --name <NAME>",
            ),
            (
                &["regkeeper", "frobnicate"],
                "unrecognized subcommand 'frobnicate'",
            ),
            (
                &["regkeeper", "credentials", "list", "--output", "yaml"],
                "invalid value 'yaml' for '--output <OUTPUT>'",
            ),
        ] {
            let (kind, line) = usage_error(arguments);
            assert!(!is_information(
                &Cli::try_parse_from(arguments).err().unwrap()
            ));
            assert!(!line.contains('\n'), "{kind:?}: {line}");
            assert!(line.contains(expected), "{kind:?}: {line}");
            assert!(!line.starts_with("error:"), "{line}");
            assert!(line.ends_with("--help`"), "{line}");
        }
        let (_, line) = usage_error(&["regkeeper", "credentials", "add", "--bogus"]);
        assert!(
            line.ends_with("see `regkeeper credentials add --help`"),
            "{line}"
        );
    }

    #[test]
    fn a_missing_command_lists_the_commands() {
        let (kind, line) = usage_error(&["regkeeper", "credentials"]);
        assert_eq!(kind, ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with(
                "`regkeeper credentials` needs a command: add, list, show, update, delete, verify"
            ),
            "{line}"
        );
        assert!(
            line.ends_with("see `regkeeper credentials --help`"),
            "{line}"
        );
        let (_, line) = usage_error(&["regkeeper"]);
        assert!(
            line.starts_with("`regkeeper` needs a command: serve, credentials"),
            "{line}"
        );
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for arguments in [&["regkeeper", "--help"][..], &["regkeeper", "--version"]] {
            assert!(is_information(
                &Cli::try_parse_from(arguments).err().unwrap()
            ));
        }
        assert_eq!(strip_escapes("\u{1b}[1;31merror:\u{1b}[0m x"), "error: x");
    }
}
