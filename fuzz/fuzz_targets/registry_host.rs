//! Feeds arbitrary text to registry-server normalisation and classification, which decide whose credentials a host gets.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regkeeper::domain::registry;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        let kind = registry::classify(input);
        // A port or a path means some other server that merely borrows a provider's
        // name: it gets only the plain flow.
        if input.contains([':', '/']) {
            assert_eq!(kind, registry::RegistryKind::Docker, "input {input:?}");
        }
        if let registry::RegistryKind::Ecr(ecr) = &kind {
            if let Some(account) = &ecr.account {
                assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
            }
        }
        // Normalising the stored form must change nothing, or lookups would miss.
        if let Ok(address) = registry::normalize(input) {
            let stored = format!("{}/{}", address.host, address.path_prefix);
            assert_eq!(
                registry::normalize(&stored).as_ref(),
                Ok(&address),
                "input {input:?}"
            );
            let _ = registry::classify(&address.host);
        }
    }
});
