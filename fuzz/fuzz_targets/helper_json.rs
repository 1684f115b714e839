//! Feeds arbitrary standard input to the docker credential helper's `get`, `erase` and
//! `store`: the server URL line and the `{"ServerURL","Username","Secret"}` JSON a
//! docker client writes. `REGKEEPER_URL` is set to something that is not a URL, so
//! every action stops at its configuration and nothing reaches a network.
//!
//! Input: one byte choosing the action, then standard input. `$S` stands for a secret
//! canary (a password, or a token in a URL's user info or query), which no output or
//! error may repeat.

#![no_main]

#[path = "common.rs"]
mod common;

use common::replace;
use libfuzzer_sys::fuzz_target;
use regkeeper_consumers::docker_helper::{self, HelperError};

const CANARY: &str = "helper-canary-c41f09";

fuzz_target!(|data: &[u8]| {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let action = ["get", "store", "erase"][usize::from(*selector) % 3];
    let input = replace(rest, b"$S", CANARY.as_bytes());
    let environment = |name: &str| match name {
        "REGKEEPER_URL" => Some("no-network".to_owned()),
        _ => None,
    };
    let mut output = Vec::new();
    let result = docker_helper::run(
        Some(action),
        &environment,
        &mut input.as_slice(),
        &mut output,
        // The fuzzer's clock: fixed, like the tests'.
        &|| std::time::SystemTime::UNIX_EPOCH,
    );
    assert!(output.is_empty(), "{action}: printed without a server");
    let error = result.expect_err("no action succeeds without a server");
    // Only a lookup that reached regkeeper may say "not found".
    assert!(!matches!(error, HelperError::NotFound), "{action}");
    let message = error.to_string();
    assert!(!message.contains(CANARY), "{action}: {message}");
    assert!(
        message.len() < 400,
        "{action}: an error echoes its input: {message}"
    );
});
