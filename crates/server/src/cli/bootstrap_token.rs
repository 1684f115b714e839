//! Keeping `REGKEEPER_BOOTSTRAP_TOKEN` out of the running server's environment.
//!
//! A process's environment stays readable for its whole life in
//! `/proc/PID/environ` (by its user and by root), and `env::remove_var` does not change
//! that: it edits the C library's table of pointers, while `/proc` shows the block the
//! kernel put on the stack at `exec`. Overwriting that block would need `unsafe` code,
//! which this workspace forbids. So `serve`, when it finds the variable, starts itself
//! again in the same process (`exec`, same PID, same arguments, stdout and stderr)
//! with the variable removed and `--bootstrap-token-stdin` added, handing the token over
//! on a socket pair that becomes the new program's standard input. The new image's
//! environment never held the token; it reads it into a buffer that is wiped on drop.
//! This happens in `main`, before the runtime or any other thread starts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use secrecy::SecretString;
use zeroize::Zeroizing;

pub const VARIABLE: &str = "REGKEEPER_BOOTSTRAP_TOKEN";
pub const STDIN_FLAG: &str = "--bootstrap-token-stdin";

/// A token is a line of text; more than this on standard input is a mistake.
const LIMIT: u64 = 4096;

/// If the environment holds the bootstrap token, replaces this process with `serve`
/// again without it (this only returns on failure); otherwise returns.
/// `token_on_stdin` is whether `--bootstrap-token-stdin` was given.
pub fn move_out_of_environment(token_on_stdin: bool) -> anyhow::Result<()> {
    let Some(value) = std::env::var_os(VARIABLE) else {
        return Ok(());
    };
    if value.is_empty() {
        // An empty value is ignored as unset, and holds nothing to hide.
        return Ok(());
    }
    if token_on_stdin {
        bail!(
            "{VARIABLE} is set and {STDIN_FLAG} was given: give the bootstrap token one way only"
        );
    }
    let token = Zeroizing::new(
        value
            .into_string()
            .map_err(|_| anyhow::anyhow!("{VARIABLE}: the token is not valid UTF-8"))?,
    );
    let (mut sender, receiver) = UnixStream::pair()
        .context("creating the socket pair that hands the bootstrap token over")?;
    // Far below a socket buffer, so this cannot block with no reader yet.
    sender
        .write_all(token.as_bytes())
        .context("handing the bootstrap token over")?;
    drop(sender);
    drop(token);
    let program = std::env::current_exe().context("finding the regkeeper binary to restart")?;
    let error = Command::new(&program)
        .args(std::env::args_os().skip(1))
        .arg(STDIN_FLAG)
        .env_remove(VARIABLE)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(receiver)))
        .exec();
    Err(error).with_context(|| {
        format!(
            "restarting {} without {VARIABLE} in its environment (so /proc/PID/environ does not show it); give the token with {STDIN_FLAG} instead",
            program.display()
        )
    })
}

/// Reads the bootstrap token from `input` (standard input with `--bootstrap-token-stdin`)
/// into strings that are wiped on drop.
pub fn read(input: &mut dyn Read) -> anyhow::Result<SecretString> {
    let mut bytes = Zeroizing::new(Vec::new());
    input
        .take(LIMIT + 1)
        .read_to_end(&mut bytes)
        .context("reading the bootstrap token from standard input")?;
    if bytes.len() as u64 > LIMIT {
        bail!("{STDIN_FLAG}: standard input holds more than {LIMIT} bytes, which is no token");
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{STDIN_FLAG}: the token is not valid UTF-8"))?;
    Ok(SecretString::from(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// Issue 12 item 18: the token handed over is read into a string wiped on drop.
    #[test]
    fn the_token_is_read_into_a_string_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let token = read(&mut &b"rk_bootstrap_canary_0123456789\n"[..]).unwrap();
        wiped_on_drop(&token);
        assert_eq!(token.expose_secret(), "rk_bootstrap_canary_0123456789");
        assert!(!format!("{token:?}").contains("canary"));
        let too_long = vec![b'x'; 5000];
        let error = read(&mut too_long.as_slice()).unwrap_err().to_string();
        assert!(error.contains("more than"), "{error}");
    }
}
