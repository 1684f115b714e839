//! The helper and the provider run on every node for every pull: their dependency tree
//! must stay free of the server's heavy crates (database drivers, the async runtime and
//! web framework, the cloud SDKs), which would slow their start and widen what every
//! node runs.

use std::process::Command;

const FORBIDDEN: [&str; 10] = [
    "sqlx", "axum", "tokio", "reqwest", "hyper", "aws-", "azure", "google-", "tower", "rusqlite",
];

#[test]
fn the_consumers_build_without_server_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "regkeeper-consumers",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("UTF-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"regkeeper-client") && crates.contains(&"ureq"),
        "unexpected cargo tree output: {tree}"
    );
    let offending: Vec<&&str> = crates
        .iter()
        .filter(|name| {
            FORBIDDEN
                .iter()
                .any(|forbidden| name.starts_with(forbidden))
        })
        .collect();
    assert!(
        offending.is_empty(),
        "regkeeper-consumers depends on {offending:?}:\n{tree}"
    );
}
