//! `regkeeper install-kubelet-provider`: puts the kubelet credential provider, its
//! `CredentialProviderConfig` and the node's token file onto a node, for the
//! Kubernetes DaemonSet in `deploy/kubernetes/node` (whose image has no shell or `cp`).
//!
//! Every file is written to a temporary file in the destination's directory, fsynced,
//! given its mode and renamed over the destination, so a kubelet starting the provider
//! or reading the configuration at that moment sees the old file or the new one, never
//! a half-written one (and replacing a running binary never fails with "text file
//! busy"). A file whose bytes and mode are already right is left alone. With
//! `--interval-seconds` it checks again at that interval, forever, so an edited
//! ConfigMap, a rotated token Secret or a new image reaches the node; `--check` only
//! compares and fails naming what differs (the DaemonSet's liveness probe). The token
//! is copied only if its source exists (the Secret is optional: nodes using the pod's
//! service-account token have none) and its contents are never printed.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

/// The provider's file name: what `CredentialProviderConfig`'s `name` refers to.
pub const PROVIDER: &str = "regkeeper-kubelet-credential-provider";

#[derive(Args)]
pub struct InstallArgs {
    /// The kubelet's --image-credential-provider-bin-dir (as mounted here).
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// The provider binary to install (default: the one next to this program).
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
    /// The CredentialProviderConfig to install (e.g. from a ConfigMap).
    #[arg(long, value_name = "FILE", requires = "config")]
    config_source: Option<PathBuf>,
    /// Where the kubelet reads it (its --image-credential-provider-config).
    #[arg(long, value_name = "FILE", requires = "config_source")]
    config: Option<PathBuf>,
    /// The node's API token file (e.g. from a Secret); skipped when it does not exist.
    #[arg(long, value_name = "FILE", requires = "token")]
    token_source: Option<PathBuf>,
    /// Where the provider's REGKEEPER_TOKEN_FILE points (written with mode 0600).
    #[arg(long, value_name = "FILE", requires = "token_source")]
    token: Option<PathBuf>,
    /// Check again at this interval and re-install what changed, until stopped.
    #[arg(long, value_name = "SECONDS", conflicts_with = "check", value_parser = clap::value_parser!(u64).range(1..))]
    interval_seconds: Option<u64>,
    /// Change nothing: fail, naming the file, if anything is not installed as it should be.
    #[arg(long)]
    check: bool,
}

/// One file to put in place.
struct Placement {
    source: PathBuf,
    destination: PathBuf,
    mode: u32,
    /// Whether a missing source means "nothing to install" rather than an error.
    optional: bool,
    /// Whether its contents may be named in output (never for the token).
    label: &'static str,
}

pub fn run(args: InstallArgs) -> anyhow::Result<()> {
    let placements = placements(&args)?;
    if args.check {
        let stale: Vec<String> = placements
            .iter()
            .filter_map(|placement| match is_current(placement) {
                Ok(true) => None,
                Ok(false) => Some(format!(
                    "{} ({})",
                    placement.destination.display(),
                    placement.label
                )),
                Err(error) => Some(format!("{error:#}")),
            })
            .collect();
        if !stale.is_empty() {
            bail!("not installed as it should be: {}", stale.join(", "));
        }
        return Ok(());
    }
    loop {
        for placement in &placements {
            if install(placement)? {
                println!(
                    "installed {} ({})",
                    placement.destination.display(),
                    placement.label
                );
            }
        }
        std::io::stdout().flush().ok();
        match args.interval_seconds {
            Some(seconds) => std::thread::sleep(std::time::Duration::from_secs(seconds)),
            None => return Ok(()),
        }
    }
}

fn placements(args: &InstallArgs) -> anyhow::Result<Vec<Placement>> {
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()
            .context("finding this program, to find the provider next to it (or give --binary)")?
            .with_file_name(PROVIDER),
    };
    let mut placements = vec![Placement {
        source: binary,
        destination: args.bin_dir.join(PROVIDER),
        mode: 0o755,
        optional: false,
        label: "kubelet credential provider",
    }];
    if let (Some(source), Some(destination)) = (&args.config_source, &args.config) {
        placements.push(Placement {
            source: source.clone(),
            destination: destination.clone(),
            mode: 0o644,
            optional: false,
            label: "CredentialProviderConfig",
        });
    }
    if let (Some(source), Some(destination)) = (&args.token_source, &args.token) {
        placements.push(Placement {
            source: source.clone(),
            destination: destination.clone(),
            mode: 0o600,
            optional: true,
            label: "node token",
        });
    }
    Ok(placements)
}

/// The source's bytes, or `None` for an optional source that does not exist.
fn read_source(placement: &Placement) -> anyhow::Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
    match std::fs::read(&placement.source) {
        Ok(bytes) => Ok(Some(zeroize::Zeroizing::new(bytes))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && placement.optional => {
            Ok(None)
        }
        Err(error) => Err(error).with_context(|| {
            format!(
                "reading {} ({})",
                placement.source.display(),
                placement.label
            )
        }),
    }
}

/// Whether the destination already holds the source's bytes with the right mode (or
/// an optional source is absent).
fn is_current(placement: &Placement) -> anyhow::Result<bool> {
    let Some(wanted) = read_source(placement)? else {
        return Ok(true);
    };
    let installed = match std::fs::read(&placement.destination) {
        Ok(bytes) => zeroize::Zeroizing::new(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("reading {}", placement.destination.display()))
        }
    };
    let mode = std::fs::metadata(&placement.destination)
        .with_context(|| format!("reading {}", placement.destination.display()))?
        .permissions()
        .mode()
        & 0o7777;
    Ok(*installed == *wanted && mode == placement.mode)
}

/// Puts the source in place if it is not already; says whether it wrote.
fn install(placement: &Placement) -> anyhow::Result<bool> {
    if is_current(placement)? {
        return Ok(false);
    }
    let Some(bytes) = read_source(placement)? else {
        return Ok(false);
    };
    write_atomically(&placement.destination, &bytes, placement.mode).with_context(|| {
        format!(
            "installing {} ({})",
            placement.destination.display(),
            placement.label
        )
    })?;
    Ok(true)
}

fn write_atomically(destination: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let directory = destination.parent().unwrap_or(Path::new("."));
    let name = destination
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{name}.regkeeper-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        // The mode after writing, so a token is never readable by others meanwhile.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temporary, destination)?;
        std::fs::File::open(directory)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(directory: &Path) -> InstallArgs {
        InstallArgs {
            bin_dir: directory.join("bin"),
            binary: Some(directory.join("source/provider")),
            config_source: Some(directory.join("source/config.yaml")),
            config: Some(directory.join("etc/credential-providers.yaml")),
            token_source: Some(directory.join("source/token")),
            token: Some(directory.join("etc/node-token")),
            interval_seconds: None,
            check: false,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Installs each file with its mode, re-installs only what changed, skips an absent
    /// token, and `--check` names what differs.
    #[test]
    fn installs_replaces_and_checks() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        for sub in ["source", "bin", "etc"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("source/provider"), b"\x7fELF provider v1").unwrap();
        std::fs::write(
            root.join("source/config.yaml"),
            b"kind: CredentialProviderConfig\n",
        )
        .unwrap();

        // No token source: the provider and the configuration only.
        run(args(root)).unwrap();
        assert_eq!(
            std::fs::read(root.join("bin").join(PROVIDER)).unwrap(),
            b"\x7fELF provider v1"
        );
        assert_eq!(mode(&root.join("bin").join(PROVIDER)), 0o755);
        assert_eq!(mode(&root.join("etc/credential-providers.yaml")), 0o644);
        assert!(!root.join("etc/node-token").exists());
        run(InstallArgs {
            check: true,
            ..args(root)
        })
        .unwrap();

        // A token appears and the binary changes: both are (re)installed.
        std::fs::write(root.join("source/token"), b"rk_node_token_canary").unwrap();
        std::fs::write(root.join("source/provider"), b"\x7fELF provider v2").unwrap();
        let error = run(InstallArgs {
            check: true,
            ..args(root)
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(PROVIDER) && error.contains("node token"),
            "{error}"
        );
        assert!(!error.contains("canary"), "{error}");
        run(args(root)).unwrap();
        assert_eq!(
            std::fs::read(root.join("etc/node-token")).unwrap(),
            b"rk_node_token_canary"
        );
        assert_eq!(mode(&root.join("etc/node-token")), 0o600);
        assert_eq!(
            std::fs::read(root.join("bin").join(PROVIDER)).unwrap(),
            b"\x7fELF provider v2"
        );

        // Someone loosened the token's mode: it differs, and is put right.
        std::fs::set_permissions(
            root.join("etc/node-token"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(run(InstallArgs {
            check: true,
            ..args(root)
        })
        .is_err());
        run(args(root)).unwrap();
        assert_eq!(mode(&root.join("etc/node-token")), 0o600);

        // No temporary file is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(root.join("etc"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A missing provider binary is an error naming it.
        std::fs::remove_file(root.join("source/provider")).unwrap();
        let error = format!("{:#}", run(args(root)).unwrap_err());
        assert!(error.contains("kubelet credential provider"), "{error}");
    }
}
