//! Feeds arbitrary text to the proxy's path parser, which reads every request a pull
//! client sends to `--proxy-listen` before anything is resolved or fetched.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regkeeper::proxy::path::{self, Target};

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        if let Ok(parsed) = path::parse(input) {
            // What is accepted can only name a repository under one upstream host,
            // never climb out of it or smuggle URL syntax into the upstream request.
            assert!(!parsed.repository.is_empty(), "input {input:?}");
            for forbidden in ["..", "//", "?", "#", "%", "@", "\\"] {
                assert!(!parsed.repository.contains(forbidden), "input {input:?}");
                assert!(!parsed.upstream.contains(forbidden), "input {input:?}");
            }
            assert!(!parsed.upstream.contains('/'), "input {input:?}");
            if let Target::Blob(digest) = &parsed.target {
                assert!(path::Digest::parse(digest.as_str()).is_ok());
            }
        }
    }
});
