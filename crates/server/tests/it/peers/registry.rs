//! Debian's `docker-registry` (distribution 2.8) as a real registry for the tests, with
//! htpasswd or token auth, and skopeo as the real client that pushes and pulls.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use super::image::{write_oci_layout, ImageDigests};
use super::process::{available, PeerProcess};
use super::tls::TestCa;
use super::token_issuer::{self, TokenIssuer};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
pub const SKOPEO_BINARY: &str = "/usr/bin/skopeo";
pub const HTPASSWD_REALM: &str = "Registry Realm";

pub enum RegistryAuth {
    /// Anyone may pull and push.
    Anonymous,
    /// Basic auth against bcrypt entries for these (username, password) pairs.
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens from this realm, signed by the key whose certificate is in
    /// `root_cert_bundle`.
    Token {
        realm: String,
        root_cert_bundle: PathBuf,
    },
}

/// Where distribution keeps blobs and manifests.
pub enum RegistryStorage {
    /// A directory inside the registry's temporary directory; blobs are served by the
    /// registry itself.
    Filesystem,
    /// An S3 bucket. Blob GETs and HEADs are answered with `307 Temporary Redirect` to
    /// a presigned URL on `endpoint` (distribution's default when the driver can sign
    /// URLs), as registries backed by object storage do.
    S3(S3Storage),
}

/// The `storage.s3` parameters of distribution 2.8.
pub struct S3Storage {
    /// `http://HOST:PORT`; distribution then uses path-style URLs
    /// (`/BUCKET/KEY`), both for its own requests and in the URLs it presigns.
    pub endpoint: String,
    pub region: String,
    /// Must exist already: distribution does not create it.
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

pub struct RegistryOptions {
    pub auth: RegistryAuth,
    pub storage: RegistryStorage,
    /// HTTPS with the CA's server certificate; plain HTTP when false.
    pub tls: bool,
    /// The CA for HTTPS; a new one when absent.
    pub ca: Option<Arc<TestCa>>,
}

/// How skopeo authenticates to the registry.
pub enum SkopeoAuth<'a> {
    Anonymous,
    /// `--creds USER:PASSWORD`; skopeo uses Basic or does the token dance itself.
    Basic {
        username: &'a str,
        password: &'a str,
    },
    /// A `containers-auth.json` / Docker `config.json` file (`--authfile`).
    AuthFile(&'a Path),
    /// A ready bearer token (`--registry-token`), sent as is.
    BearerToken(&'a str),
}

impl SkopeoAuth<'_> {
    /// `prefix` is `src-`, `dest-`, or empty for commands with one image.
    fn arguments(&self, prefix: &str) -> Vec<String> {
        match self {
            Self::Anonymous => vec![format!("--{prefix}no-creds")],
            Self::Basic { username, password } => {
                vec![format!("--{prefix}creds={username}:{password}")]
            }
            Self::AuthFile(path) => vec![format!("--{prefix}authfile={}", path.display())],
            Self::BearerToken(token) => vec![format!("--{prefix}registry-token={token}")],
        }
    }
}

/// A `docker-registry` process on 127.0.0.1, killed on drop.
pub struct Registry {
    process: PeerProcess,
    host_port: String,
    tls: bool,
    ca: Arc<TestCa>,
    directory: tempfile::TempDir,
}

impl Registry {
    /// HTTPS, no auth. `None` (skip) when distribution is not installed, outside CI.
    pub fn anonymous() -> Option<Self> {
        Self::start(RegistryOptions {
            auth: RegistryAuth::Anonymous,
            storage: RegistryStorage::Filesystem,
            tls: true,
            ca: None,
        })
    }

    /// HTTPS with htpasswd auth for `users` (username, password).
    pub fn htpasswd(users: &[(&str, &str)]) -> Option<Self> {
        Self::htpasswd_with_storage(users, RegistryStorage::Filesystem)
    }

    /// HTTPS with htpasswd auth for `users`, keeping its data in `storage`.
    pub fn htpasswd_with_storage(users: &[(&str, &str)], storage: RegistryStorage) -> Option<Self> {
        Self::start(RegistryOptions {
            auth: RegistryAuth::Htpasswd(
                users
                    .iter()
                    .map(|(user, password)| ((*user).to_owned(), (*password).to_owned()))
                    .collect(),
            ),
            storage,
            tls: true,
            ca: None,
        })
    }

    /// HTTPS with token auth from `issuer`, sharing its CA so one `ca.pem` trusts both.
    pub fn token_auth(issuer: &TokenIssuer) -> Option<Self> {
        Self::start(RegistryOptions {
            auth: RegistryAuth::Token {
                realm: issuer.realm(),
                root_cert_bundle: issuer.signing_cert_file().to_owned(),
            },
            storage: RegistryStorage::Filesystem,
            tls: true,
            ca: Some(Arc::clone(issuer.ca())),
        })
    }

    /// Plain HTTP, no auth: the case where a registry is only allowed over http.
    pub fn plain_http() -> Option<Self> {
        Self::start(RegistryOptions {
            auth: RegistryAuth::Anonymous,
            storage: RegistryStorage::Filesystem,
            tls: false,
            ca: None,
        })
    }

    pub fn start(options: RegistryOptions) -> Option<Self> {
        // Every registry test drives it with skopeo, so both are required together.
        if !available(Path::new(REGISTRY_BINARY), "Debian package docker-registry")
            || !available(Path::new(SKOPEO_BINARY), "Debian package skopeo")
        {
            return None;
        }
        let ca = options.ca.unwrap_or_else(|| Arc::new(TestCa::generate()));
        let directory = tempfile::tempdir().expect("temporary directory");

        // JSON strings are valid YAML scalars, which spares quoting rules.
        let quote = |value: &str| serde_json::to_string(value).expect("JSON string");
        let path = |value: &Path| quote(&value.display().to_string());
        let driver = match &options.storage {
            RegistryStorage::Filesystem => {
                let storage = directory.path().join("storage");
                std::fs::create_dir(&storage).expect("storage directory");
                format!("  filesystem:\n    rootdirectory: {}\n", path(&storage))
            }
            // Distribution 2.8 has no `forcepathstyle`: a `regionendpoint` alone makes
            // it use path-style URLs, so presigned URLs name the endpoint's host:port.
            // `redirect.disable: false` is the default, spelled out because blob
            // redirects are what this storage is for.
            RegistryStorage::S3(s3) => format!(
                "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: {}\n\
                 \x20   regionendpoint: {}\n    bucket: {}\n    secure: false\n    v4auth: true\n\
                 \x20 redirect:\n    disable: false\n",
                quote(&s3.access_key),
                quote(&s3.secret_key),
                quote(&s3.region),
                quote(&s3.endpoint),
                quote(&s3.bucket),
            ),
        };
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n{driver}  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:0\n  secret: {secret}\n",
            secret = quote(&uuid::Uuid::new_v4().simple().to_string()),
        );
        if options.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                path(ca.server_cert_file()),
                path(ca.server_key_file()),
            ));
        }
        match &options.auth {
            RegistryAuth::Anonymous => {}
            RegistryAuth::Htpasswd(users) => {
                let htpasswd = directory.path().join("htpasswd");
                let mut entries = String::new();
                for (user, password) in users {
                    // Cost 5, the lowest Go's bcrypt accepts unchanged, keeps
                    // distribution's check of every request fast.
                    let hash = bcrypt::hash(password, 5).expect("bcrypt");
                    entries.push_str(&format!("{user}:{hash}\n"));
                }
                std::fs::write(&htpasswd, entries).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                    quote(HTPASSWD_REALM),
                    path(&htpasswd),
                ));
            }
            RegistryAuth::Token {
                realm,
                root_cert_bundle,
            } => config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                quote(realm),
                quote(token_issuer::SERVICE),
                quote(token_issuer::ISSUER),
                path(root_cert_bundle),
            )),
        }
        let config_file = directory.path().join("config.yml");
        std::fs::write(&config_file, &config).expect("write registry config");

        let mut command = Command::new(REGISTRY_BINARY);
        command
            .arg("serve")
            .arg(&config_file)
            // REGISTRY_* variables would override the file.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", directory.path());
        let mut process = PeerProcess::spawn("docker-registry", &mut command);
        // Distribution binds 127.0.0.1:0 and then logs the address it got
        // (`msg="listening on 127.0.0.1:PORT, tls"`), so no port is ever guessed.
        // The socket is listening when this is logged, so connections queue.
        let host_port = process.wait_for(|line| {
            let rest = line.split("msg=\"listening on ").nth(1)?;
            let end = rest.find([',', '"'])?;
            Some(rest[..end].to_owned())
        });
        Some(Self {
            process,
            host_port,
            tls: options.tls,
            ca,
            directory,
        })
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// `https://127.0.0.1:PORT` (or `http://` for `plain_http`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host_port)
    }

    /// The PEM CA certificate that verifies the registry's HTTPS certificate.
    pub fn ca_file(&self) -> &Path {
        self.ca.ca_file()
    }

    pub fn ca(&self) -> &Arc<TestCa> {
        &self.ca
    }

    /// What distribution has logged so far, for failure messages.
    pub fn log(&self) -> String {
        self.process.output()
    }

    /// `127.0.0.1:PORT/REFERENCE` unless `reference` already names this registry.
    pub fn image(&self, reference: &str) -> String {
        if reference.starts_with(&format!("{}/", self.host_port)) {
            reference.to_owned()
        } else {
            format!("{}/{reference}", self.host_port)
        }
    }

    /// `prefix` as for `SkopeoAuth::arguments`.
    fn tls_arguments(&self, prefix: &str) -> Vec<String> {
        if self.tls {
            vec![format!(
                "--{prefix}cert-dir={}",
                self.ca.cert_dir().display()
            )]
        } else {
            // containers/image only speaks plain http when told not to verify TLS.
            vec![format!("--{prefix}tls-verify=false")]
        }
    }

    /// Builds a small image and pushes it as `REPOSITORY:TAG` with skopeo, with
    /// `--dest-creds USERNAME:PASSWORD` (none when `username` is empty). Panics with
    /// skopeo's and distribution's output on failure.
    pub fn push_test_image(
        &self,
        repository: &str,
        tag: &str,
        username: &str,
        password: &str,
    ) -> ImageDigests {
        let auth = if username.is_empty() {
            SkopeoAuth::Anonymous
        } else {
            SkopeoAuth::Basic { username, password }
        };
        let (output, digests) = self.try_push_test_image(repository, tag, &auth);
        assert!(
            output.status.success(),
            "skopeo push of {repository}:{tag} failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        digests
    }

    /// Like `push_test_image`, for pushes expected to fail: skopeo's output, and the
    /// digests the image would have (the manifest digest as distribution reports it
    /// when the push succeeded).
    pub fn try_push_test_image(
        &self,
        repository: &str,
        tag: &str,
        auth: &SkopeoAuth<'_>,
    ) -> (Output, ImageDigests) {
        let scratch = tempfile::tempdir().expect("temporary directory");
        let layout = scratch.path().join("layout");
        let mut digests = write_oci_layout(
            &layout,
            tag,
            &format!("regkeeper test image {repository}:{tag}\n"),
        );
        let digest_file = scratch.path().join("digest");
        let output = skopeo(
            &[
                vec!["copy".to_owned()],
                self.tls_arguments("dest-"),
                auth.arguments("dest-"),
                vec![
                    format!("--digestfile={}", digest_file.display()),
                    format!("oci:{}:{tag}", layout.display()),
                    format!("docker://{}", self.image(&format!("{repository}:{tag}"))),
                ],
            ]
            .concat(),
            scratch.path(),
        );
        if let Ok(pushed) = std::fs::read_to_string(&digest_file) {
            // skopeo pushes the manifest unchanged, but the registry's word is final.
            digests.manifest = pushed.trim().to_owned();
        }
        (output, digests)
    }

    /// Copies `docker://REFERENCE` (a `REPOSITORY:TAG` or `REPOSITORY@DIGEST` on this
    /// registry, or a full reference) into a throwaway `oci:` directory.
    pub fn skopeo_pull(&self, reference: &str, auth: &SkopeoAuth<'_>) -> Output {
        let scratch = tempfile::tempdir().expect("temporary directory");
        skopeo(
            &[
                vec!["copy".to_owned()],
                self.tls_arguments("src-"),
                auth.arguments("src-"),
                vec![
                    format!("docker://{}", self.image(reference)),
                    format!("oci:{}:pulled", scratch.path().join("layout").display()),
                ],
            ]
            .concat(),
            scratch.path(),
        )
    }

    /// Pulls `reference` (as [`Registry::skopeo_pull`] takes it) with the login regkeeper
    /// resolved, failing the test with skopeo's errors if that does not work.
    #[track_caller]
    pub fn assert_pulls_with(&self, reference: &str, resolved: &regkeeper_wire::Resolved) {
        let pulled = self.skopeo_pull(
            reference,
            &SkopeoAuth::Basic {
                username: &resolved.username,
                password: resolved.secret.expose(),
            },
        );
        assert!(
            pulled.status.success(),
            "skopeo pull: {}",
            String::from_utf8_lossy(&pulled.stderr)
        );
    }

    /// `skopeo inspect --raw`: the manifest as the registry serves it.
    pub fn skopeo_inspect_raw(&self, reference: &str, auth: &SkopeoAuth<'_>) -> Output {
        let scratch = tempfile::tempdir().expect("temporary directory");
        skopeo(
            &[
                vec!["inspect".to_owned(), "--raw".to_owned()],
                self.tls_arguments(""),
                auth.arguments(""),
                vec![format!("docker://{}", self.image(reference))],
            ]
            .concat(),
            scratch.path(),
        )
    }

    /// Where distribution keeps its configuration and, with filesystem storage, its
    /// data (`storage/`), for tests that look at what it stored.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }
}

/// Runs skopeo with a private HOME and the permissive policy, so neither the user's
/// auth files nor `/etc/containers/policy.json` change what a test sees.
fn skopeo(arguments: &[String], home: &Path) -> Output {
    Command::new(SKOPEO_BINARY)
        .arg("--insecure-policy")
        .args(arguments)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .output()
        .expect("skopeo runs")
}
