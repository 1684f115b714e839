//! The kubelet provider's translation, request + regkeeper's answer → response, against
//! the golden files in `tests/golden/kubelet/` (see the README there).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regkeeper_consumers::kubelet::{read_request, respond_within, Lookup};

/// 2025-06-01T12:00:00Z, the "now" of every case.
const NOW_UNIX_SECONDS: u64 = 1_748_779_200;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kubelet");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("golden directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    cases
}

fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn every_golden_case_answers_as_recorded() {
    let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECONDS);
    let cases = cases();
    assert!(cases.len() >= 13, "golden cases missing: {cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let request_text = std::fs::read(case.join("request.json")).expect("request.json");
        let request = read_request(&mut request_text.as_slice())
            .unwrap_or_else(|error| panic!("{name}: request does not parse: {error}"));
        let resolved_path = case.join("resolved.json");
        let lookup = if resolved_path.exists() {
            Lookup::Found(
                serde_json::from_value(read_json(&resolved_path))
                    .unwrap_or_else(|error| panic!("{name}: resolved.json: {error}")),
            )
        } else {
            Lookup::NotFound
        };
        // Present when the provider exchanged the request's service-account token.
        let exchanged_path = case.join("exchanged.json");
        let session_expires_at = exchanged_path.exists().then(|| {
            read_json(&exchanged_path)["expiresAt"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: exchanged.json has no expiresAt"))
                .to_owned()
        });
        let result = respond_within(&request, &lookup, session_expires_at.as_deref(), now);
        let error_path = case.join("error.txt");
        if error_path.exists() {
            let expected = std::fs::read_to_string(&error_path).unwrap();
            let error = result
                .err()
                .unwrap_or_else(|| panic!("{name}: expected an error"));
            assert_eq!(error.to_string(), expected.trim(), "{name}");
        } else {
            let response = result.unwrap_or_else(|error| panic!("{name}: {error}"));
            let printed = serde_json::to_string(&response).unwrap();
            let actual: serde_json::Value = serde_json::from_str(&printed).unwrap();
            assert_eq!(
                actual,
                read_json(&case.join("response.json")),
                "{name}: printed {printed}"
            );
        }
    }
}

#[test]
fn the_golden_clock_is_the_documented_one() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECONDS);
    let parsed = time::OffsetDateTime::parse(
        "2025-06-01T12:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64,
        parsed.unix_timestamp()
    );
}
