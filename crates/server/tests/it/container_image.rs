//! The container image (`scripts/image`, issue 16): containers cannot run here, so the
//! test unpacks the OCI archive's layers into a directory and starts the image's own
//! entry point from it with `chroot`, as the image's user, with the image's
//! environment — then checks `/healthz`, adds a credential for a real registry with
//! the image's CLI, and resolves it with each of the image's three programs.
//!
//! `scripts/test` builds the image first and names it in `REGKEEPER_TEST_IMAGE`;
//! without it (or without root, which `chroot` needs) the test skips, or fails with
//! `CI=true`.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::peers::process::{ci, PeerProcess};
use super::peers::registry::Registry;

/// The limit on the image's size, unpacked.
const MAX_IMAGE_BYTES: u64 = 60 * 1024 * 1024;
const IMAGE_USER: u32 = 65532;
const TOKEN: &str = "rk_container_image_admin_0123456789";
/// coreutils' chroot (Debian).
const CHROOT: &str = "/usr/sbin/chroot";

/// The archive `scripts/image` wrote, or `None` (skip) outside CI.
fn image_archive() -> Option<PathBuf> {
    let why = match std::env::var_os("REGKEEPER_TEST_IMAGE") {
        Some(path) if Path::new(&path).is_file() => {
            if std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0) {
                return Some(PathBuf::from(path));
            }
            "chroot needs root".to_owned()
        }
        Some(path) => format!("REGKEEPER_TEST_IMAGE={} is no file", Path::new(&path).display()),
        None => "REGKEEPER_TEST_IMAGE is not set (scripts/test builds the image with scripts/image and sets it)".to_owned(),
    };
    assert!(!ci(), "{why}; CI=true requires the image test");
    eprintln!("skipping: {why}; CI=true makes this a failure");
    None
}

/// An OCI image unpacked: its configuration and its root file system.
struct Unpacked {
    directory: tempfile::TempDir,
    config: Value,
    manifest: Value,
    rootfs: PathBuf,
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob(layout, digest)).unwrap()).unwrap()
}

fn unpack(archive: &Path) -> Unpacked {
    let directory = tempfile::tempdir().unwrap();
    let layout = directory.path().join("layout");
    tar::Archive::new(File::open(archive).unwrap())
        .unpack(&layout)
        .unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = json_blob(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let config = json_blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    let rootfs = directory.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let file = File::open(blob(&layout, layer["digest"].as_str().unwrap())).unwrap();
        let media_type = layer["mediaType"].as_str().unwrap();
        let reader: Box<dyn std::io::Read> = if media_type.ends_with("+gzip") {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            assert!(media_type.ends_with(".tar"), "layer type {media_type}");
            Box::new(file)
        };
        let mut layer = tar::Archive::new(reader);
        layer.set_preserve_permissions(true);
        layer.set_preserve_ownerships(true);
        layer.unpack(&rootfs).unwrap();
    }
    Unpacked {
        directory,
        config,
        manifest,
        rootfs,
    }
}

/// The bytes of every regular file under `directory`.
fn size_of(directory: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(directory).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        if metadata.is_dir() {
            total += size_of(&entry.path());
        } else if metadata.is_file() {
            total += metadata.len();
        }
    }
    total
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A command run inside the image as its user, with the image's environment.
fn in_image(image: &Unpacked, program: &str) -> Command {
    // By path: the command's environment is the image's, which names no host PATH.
    let mut command = Command::new(CHROOT);
    command
        .arg(format!("--userspec={IMAGE_USER}:{IMAGE_USER}"))
        .arg(&image.rootfs)
        .arg(program)
        .env_clear()
        .env("HOME", "/nonexistent");
    for variable in strings(&image.config["config"]["Env"]) {
        let (name, value) = variable.split_once('=').unwrap();
        command.env(name, value);
    }
    command
}

fn run(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[track_caller]
fn succeeded(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_image_holds_what_it_should_and_nothing_more() {
    let Some(archive) = image_archive() else {
        return;
    };
    let image = unpack(&archive);
    let config = &image.config["config"];

    let labels = &config["Labels"];
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    let commit = revision.trim_end_matches("-dirty");
    assert!(
        commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "revision label {revision:?}"
    );
    for label in ["title", "version", "created", "licenses", "description"] {
        let name = format!("org.opencontainers.image.{label}");
        assert!(
            labels[&name]
                .as_str()
                .is_some_and(|value| !value.is_empty()),
            "{name} missing: {labels}"
        );
    }
    assert_eq!(config["User"], "65532:65532");
    assert!(config["Volumes"]
        .as_object()
        .unwrap()
        .contains_key("/var/lib/regkeeper"));
    assert_eq!(strings(&config["Entrypoint"]), ["/usr/local/bin/regkeeper"]);
    assert_eq!(strings(&config["Cmd"]), ["serve"]);
    assert!(strings(&config["Env"]).contains(&"REGKEEPER_DATA_DIR=/var/lib/regkeeper".to_owned()));

    for program in [
        "regkeeper",
        "docker-credential-regkeeper",
        "regkeeper-kubelet-credential-provider",
    ] {
        let path = image.rootfs.join("usr/local/bin").join(program);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{}", path.display());
    }
    assert!(image
        .rootfs
        .join("etc/ssl/certs/ca-certificates.crt")
        .is_file());
    assert!(
        !image.rootfs.join("bin/sh").exists(),
        "the image has a shell"
    );
    let data = std::fs::metadata(image.rootfs.join("var/lib/regkeeper")).unwrap();
    assert_eq!(
        (data.uid(), data.gid(), data.mode() & 0o777),
        (IMAGE_USER, IMAGE_USER, 0o700)
    );

    let size = size_of(&image.rootfs);
    let layers: u64 = image.manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["size"].as_u64().unwrap())
        .sum();
    eprintln!(
        "image: {} MiB unpacked ({size} bytes), {} MiB of layers ({layers} bytes)",
        size / 1024 / 1024,
        layers / 1024 / 1024
    );
    assert!(
        size < MAX_IMAGE_BYTES,
        "the image is {size} bytes unpacked, over 60 MiB"
    );
}

#[test]
fn the_images_server_starts_from_its_own_root_file_system_and_serves_a_resolve() {
    let Some(archive) = image_archive() else {
        return;
    };
    let Some(registry) = Registry::htpasswd(&[("puller", "image-test-password")]) else {
        return;
    };
    let image = unpack(&archive);
    // The registry's test CA, where the server in the image can read it.
    std::fs::copy(registry.ca_file(), image.rootfs.join("tmp/registry-ca.pem")).unwrap();
    std::fs::set_permissions(
        image.rootfs.join("tmp/registry-ca.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let token_file = image.directory.path().join("bootstrap-token");
    std::fs::write(&token_file, TOKEN).unwrap();

    let entrypoint = strings(&image.config["config"]["Entrypoint"]);
    let mut command = in_image(&image, &entrypoint[0]);
    command
        .args(&entrypoint[1..])
        .args(strings(&image.config["config"]["Cmd"]))
        .args(["--listen", "127.0.0.1:0", "--bootstrap-token-stdin"])
        .env("REGKEEPER_OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8")
        .env("REGKEEPER_OUTBOUND_CA_FILE", "/tmp/registry-ca.pem")
        .stdin(File::open(&token_file).unwrap());
    let mut server = PeerProcess::spawn_with_stdin("regkeeper serve (in the image)", &mut command);
    let url = server.wait_for(|line| {
        line.strip_prefix("regkeeper listening on ")
            .map(|url| url.trim().to_owned())
    });

    let health = ureq::get(&format!("{url}/healthz")).call().unwrap();
    assert_eq!(health.status(), 200);

    let client = |program: &str| {
        let mut command = in_image(&image, program);
        command
            .env("REGKEEPER_URL", &url)
            .env("REGKEEPER_TOKEN", TOKEN);
        command
    };
    let mut add = client("/usr/local/bin/regkeeper");
    add.args([
        "credentials",
        "add",
        "--name",
        "registry",
        "--registry",
        registry.host_port(),
        "--username",
        "puller",
        "--password-stdin",
    ]);
    let added = run(add, "image-test-password");
    succeeded(
        &added,
        &format!("credentials add (registry log:\n{})", registry.log()),
    );

    let image_reference = registry.image("team/app:1");
    let mut resolve = client("/usr/local/bin/regkeeper");
    resolve.args(["resolve", &image_reference]);
    let resolved: Value = serde_json::from_str(&succeeded(&run(resolve, ""), "resolve")).unwrap();
    assert_eq!(resolved["username"], "puller");
    assert_eq!(resolved["secret"], "image-test-password");

    let mut helper = client("/usr/local/bin/docker-credential-regkeeper");
    helper.arg("get");
    let helped: Value =
        serde_json::from_str(&succeeded(&run(helper, registry.host_port()), "helper get")).unwrap();
    assert_eq!(helped["Username"], "puller");
    assert_eq!(helped["Secret"], "image-test-password");

    let provider = client("/usr/local/bin/regkeeper-kubelet-credential-provider");
    let request = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": image_reference,
    });
    let answer: Value = serde_json::from_str(&succeeded(
        &run(provider, &request.to_string()),
        "kubelet provider",
    ))
    .unwrap();
    let auth = &answer["auth"][registry.host_port()];
    assert_eq!(auth["username"], "puller", "{answer}");
    assert_eq!(auth["password"], "image-test-password", "{answer}");

    // The server kept its state in the image's volume, as the image's user.
    for file in ["regkeeper.db", "master.key"] {
        let metadata = std::fs::metadata(image.rootfs.join("var/lib/regkeeper").join(file))
            .unwrap_or_else(|error| panic!("{file}: {error}; server output:\n{}", server.output()));
        assert_eq!(metadata.uid(), IMAGE_USER, "{file}");
    }
}
