//! Names the commit the binaries are built from, for `--version`, the User-Agent and
//! `GET /api/v1/version`: `REGKEEPER_COMMIT` when set (image builds, which have no
//! `.git`), else `git rev-parse --short=12 HEAD`, else `unknown`. Reruns when the
//! variable changes or HEAD moves (a checkout or a commit).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=REGKEEPER_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var("REGKEEPER_COMMIT")
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .or_else(|| git_commit(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_owned());
    // Only what a version string may hold: a variable could carry anything.
    let commit: String = commit
        .chars()
        .filter(|character| character.is_ascii_alphanumeric() || "._-+".contains(*character))
        .take(64)
        .collect();
    let commit = if commit.is_empty() {
        "unknown".to_owned()
    } else {
        commit
    };
    println!("cargo:rustc-env=REGKEEPER_COMMIT={commit}");
}

fn git(directory: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(directory)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn git_commit(directory: &Path) -> Option<String> {
    let commit = git(directory, &["rev-parse", "--short=12", "HEAD"])?;
    // HEAD changes on a checkout; the branch it names, or packed-refs, on a commit.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(directory, &["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(directory, &["rev-parse", "--git-path", &name]) {
            let path = directory.join(path);
            // A path that does not exist would make cargo rerun this on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}
