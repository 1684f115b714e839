//! Keeps the contract whole: every method of the `Store` trait (read from
//! `src/store.rs`) must be called, as `.NAME(`, by the contract's code outside comments,
//! so a new method comes with a case that runs on both backends.

use std::path::Path;

/// The names of the methods the `Store` trait declares in `source`, in order.
fn store_methods(source: &str) -> Vec<String> {
    let start = source
        .match_indices("pub trait Store")
        .map(|(start, _)| start)
        .find(|start| {
            let after = source[start + "pub trait Store".len()..].chars().next();
            !after.is_some_and(|next| next.is_alphanumeric() || next == '_')
        })
        .expect("src/store.rs declares `pub trait Store`");
    let declaration = &source[start..];
    let end = declaration
        .find("\n}")
        .expect("the `Store` trait ends with `}` at the start of a line");
    declaration[..end]
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let signature = line
                .strip_prefix("async fn ")
                .or_else(|| line.strip_prefix("fn "))?;
            Some(
                signature
                    .chars()
                    .take_while(|next| next.is_alphanumeric() || *next == '_')
                    .collect(),
            )
        })
        .collect()
}

/// The contract's code: `store_contract.rs` and the files of `store_contract/` but
/// this one, without comment lines.
fn contract_code(tests: &Path) -> String {
    let mut files = vec![tests.join("store_contract.rs")];
    for entry in std::fs::read_dir(tests.join("store_contract")).unwrap() {
        let path = entry.unwrap().path();
        let rust = path.extension().is_some_and(|extension| extension == "rs");
        if rust && !path.ends_with("coverage.rs") {
            files.push(path);
        }
    }
    files
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .map(|line| format!("{line}\n"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_store_method_is_called_by_a_contract_case() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let methods = store_methods(&std::fs::read_to_string(manifest.join("src/store.rs")).unwrap());
    assert!(
        methods.len() > 50,
        "read only {methods:?} from the `Store` trait in src/store.rs: has it moved?"
    );
    let code = contract_code(&manifest.join("tests/it"));
    let missing: Vec<&str> = methods
        .iter()
        .filter(|method| !code.contains(&format!(".{method}(")))
        .map(String::as_str)
        .collect();
    assert!(
        missing.is_empty(),
        "no store contract case calls these `Store` methods: {missing:?}; add a case in \
         tests/it/store_contract/ that asserts each one's documented semantics, and list \
         it in `contract!` so it runs on SQLite and PostgreSQL"
    );
}
