//! Feeds arbitrary text to the image-reference parser, which reads what users and kubelets ask to pull.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regkeeper::domain::reference;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        // The canonical form of anything accepted must parse back to the same reference.
        if let Ok(parsed) = reference::parse(input) {
            let canonical = parsed.to_string_canonical();
            assert_eq!(reference::parse(&canonical), Ok(parsed), "input {input:?}");
        }
    }
});
