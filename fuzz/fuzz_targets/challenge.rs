//! Feeds arbitrary text to the `WWW-Authenticate` parser, which reads headers from any registry a user names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regkeeper::registry_auth::challenge;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        let once = challenge::parse(header);
        // What was read, written back in header syntax, must read the same.
        let shown = once
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(challenge::parse(&shown), once, "header {header:?}");
        let _ = challenge::preferred(&once);
    }
});
