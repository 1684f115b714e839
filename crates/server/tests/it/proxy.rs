//! The pull-through proxy end to end: the real `regkeeper serve --proxy-listen`, real
//! distribution registries (htpasswd, token auth, ECR logins minted by moto), and
//! skopeo holding nothing but a regkeeper API token. Also the read API's details
//! (HEAD, Range, digests, tags, errors), the upstream token cache and its one retry,
//! corruption, and the blob cache's isolation between workspaces.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

use super::peers::blob_store::BlobStore;
use super::peers::image::ImageDigests;
use super::peers::moto::{self, Moto};
use super::peers::registry::Registry;
use super::peers::token_issuer::{
    TokenIssuer, TokenIssuerOptions, TokenUser, PULLER, PULLER_PASSWORD, PUSHER, PUSHER_PASSWORD,
};
use super::registry_logins::moto_ecr_login;
use super::support::{add, ok, stderr, ServerOptions, TestServer, ADMIN_TOKEN};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

pub(super) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A server with the proxy on 127.0.0.1:0, trusting the registry's CA and loopback.
fn proxy_server(ca_file: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut environment = vec![
        ("REGKEEPER_PROXY_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "REGKEEPER_OUTBOUND_ALLOW_NETWORKS",
            "127.0.0.0/8".to_owned(),
        ),
        ("REGKEEPER_OUTBOUND_CA_FILE", ca_file.display().to_string()),
    ];
    environment.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    let server = TestServer::start_with(ServerOptions {
        environment: environment
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        ..ServerOptions::default()
    });
    assert!(server.proxy_url.is_some(), "{}", server.stdout);
    server
}

pub(super) fn proxy_host(server: &TestServer) -> String {
    let url = server.proxy_url.as_deref().expect("proxy URL");
    url.split_once("://").expect("scheme").1.to_owned()
}

/// Stores (and verifies) a docker login for `upstream` in the admin's workspace.
pub(super) fn store_login(
    server: &TestServer,
    name: &str,
    upstream: &str,
    username: &str,
    password: &str,
) {
    ok(&add(
        server,
        &[
            "--name",
            name,
            "--registry",
            upstream,
            "--username",
            username,
        ],
        password,
    ));
}

/// `skopeo copy` of `PROXY/IMAGE` into an OCI layout, logged in with `username` and an
/// API token as the password, and nothing else.
pub(super) fn skopeo_pull(
    proxy: &str,
    image: &str,
    username: &str,
    token: &str,
    tls: Option<&Path>,
) -> (Output, tempfile::TempDir) {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let policy = scratch.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let mut command = Command::new("skopeo");
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", scratch.path())
        .arg(format!("--policy={}", policy.display()))
        .args(["copy", "--retry-times=0"])
        .arg(format!("--src-creds={username}:{token}"));
    match tls {
        Some(cert_dir) => command.arg(format!("--src-cert-dir={}", cert_dir.display())),
        None => command.arg("--src-tls-verify=false"),
    };
    let output = command
        .arg(format!("docker://{proxy}/{image}"))
        .arg(format!(
            "oci:{}:pulled",
            scratch.path().join("layout").display()
        ))
        .output()
        .expect("skopeo runs");
    (output, scratch)
}

/// As [`skopeo_pull`], for a pull that must succeed: the layout it wrote.
fn pull_ok(
    server: &TestServer,
    image: &str,
    username: &str,
    tls: Option<&Path>,
) -> tempfile::TempDir {
    let (output, scratch) = skopeo_pull(&proxy_host(server), image, username, ADMIN_TOKEN, tls);
    assert!(
        output.status.success(),
        "skopeo: {}\nserver log:\n{}",
        stderr(&output),
        server.log()
    );
    scratch
}

pub(super) struct Reply {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    /// The body, or how reading it failed (and what arrived before).
    pub(super) body: Result<Vec<u8>, (String, usize)>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.body.as_ref().expect("a complete body")
    }

    pub(super) fn error_code(&self) -> String {
        let body: serde_json::Value =
            serde_json::from_slice(self.bytes()).expect("an OCI error body");
        body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// One request to the proxy, with Basic auth `username:token` when a token is given.
pub(super) fn call(
    method: &str,
    url: &str,
    login: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> Reply {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut request = agent.request(method, url);
    if let Some((username, token)) = login {
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{token}"));
        request = request.set("Authorization", &format!("Basic {encoded}"));
    }
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        // A body cut off early can fail the call itself (ureq reads small ones whole).
        Err(error) => {
            return Reply {
                status: 0,
                headers: Vec::new(),
                body: Err((error.to_string(), 0)),
            }
        }
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_owned();
            Some((name, value))
        })
        .collect();
    let mut body = Vec::new();
    let body = match response.into_reader().read_to_end(&mut body) {
        Ok(_) => Ok(body),
        Err(error) => Err((error.to_string(), body.len())),
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn blob_file(storage: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn find_registry_storage(registry: &Registry) -> PathBuf {
    let candidates = [
        registry.directory().join("storage"),
        registry.directory().to_owned(),
    ];
    candidates
        .into_iter()
        .find(|candidate| candidate.join("docker").is_dir())
        .expect("the registry's filesystem storage")
}

/// Flips every byte of a file, keeping its length.
fn corrupt(path: &Path) -> Vec<u8> {
    let original = std::fs::read(path).expect("file to corrupt");
    let flipped: Vec<u8> = original.iter().map(|byte| !byte).collect();
    std::fs::write(path, &flipped).expect("corrupt the file");
    original
}

pub(super) fn metric(server: &TestServer, name: &str) -> f64 {
    let text = ureq::get(&format!("{}/metrics", server.url))
        .call()
        .expect("metrics")
        .into_string()
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn skopeo_pulls_through_the_proxy_with_only_an_api_token_and_the_read_api_holds() {
    let Some(registry) = Registry::htpasswd(&[("robot", "robot-password")]) else {
        return;
    };
    let digests = registry.push_test_image("team/app", "1", "robot", "robot-password");
    let upstream = registry.host_port().to_owned();
    let alias = upstream.replace(':', "_");
    let server = proxy_server(registry.ca_file(), &[]);
    let proxy = proxy_host(&server);
    let base = format!("http://{proxy}/v2");
    let admin = Some(("any", ADMIN_TOKEN));

    // Logging in: a Basic challenge, and only a valid API token gets through.
    let ping = call("GET", &format!("{base}/"), None, &[]);
    assert_eq!(ping.status, 401);
    assert_eq!(
        ping.header("www-authenticate"),
        Some("Basic realm=\"regkeeper\"")
    );
    assert_eq!(ping.error_code(), "UNAUTHORIZED");
    let wrong = call(
        "GET",
        &format!("{base}/"),
        Some(("any", "rk_not_a_token")),
        &[],
    );
    assert_eq!(wrong.status, 401);
    let ping = call("GET", &format!("{base}/"), admin, &[]);
    assert_eq!(ping.status, 200);
    assert_eq!(
        ping.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    // No credential for the upstream yet: nothing to pull with, and no bytes.
    let manifest_url = format!("{base}/{alias}/team/app/manifests/1");
    let missing = call("GET", &manifest_url, admin, &[("Accept", ACCEPT_MANIFESTS)]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "NAME_UNKNOWN");
    let (refused, _) = skopeo_pull(
        &proxy,
        &format!("{alias}/team/app:1"),
        "any",
        ADMIN_TOKEN,
        None,
    );
    assert!(!refused.status.success());

    store_login(&server, "robot", &upstream, "robot", "robot-password");
    let scratch = pull_ok(&server, &format!("{alias}/team/app:1"), "any", None);
    let index = std::fs::read_to_string(scratch.path().join("layout/index.json")).unwrap();
    assert!(index.contains(&digests.manifest), "{index}");
    // By digest, with the upstream's port spelled with a colon as the contract has it.
    let by_digest = call(
        "GET",
        &format!("{base}/{upstream}/team/app/manifests/{}", digests.manifest),
        admin,
        &[("Accept", ACCEPT_MANIFESTS)],
    );
    assert_eq!(by_digest.status, 200);
    assert_eq!(sha256(by_digest.bytes()), digests.manifest);
    assert_eq!(
        by_digest.header("docker-content-digest"),
        Some(digests.manifest.as_str())
    );

    // HEAD of a manifest by tag: the headers clients need, no body.
    let head = call(
        "HEAD",
        &manifest_url,
        admin,
        &[("Accept", ACCEPT_MANIFESTS)],
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("docker-content-digest"),
        Some(digests.manifest.as_str())
    );
    assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        head.header("content-length"),
        Some(by_digest.bytes().len().to_string().as_str())
    );

    // Blobs: HEAD, a whole GET, and a Range.
    let blob_url = format!("{base}/{alias}/team/app/blobs/{}", digests.layer);
    let whole = call("GET", &blob_url, admin, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(sha256(whole.bytes()), digests.layer);
    let head = call("HEAD", &blob_url, admin, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(whole.bytes().len().to_string().as_str())
    );
    assert_eq!(
        head.header("docker-content-digest"),
        Some(digests.layer.as_str())
    );
    let part = call("GET", &blob_url, admin, &[("Range", "bytes=5-14")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes(), &whole.bytes()[5..15]);
    assert_eq!(
        part.header("content-range")
            .map(|range| range.starts_with("bytes 5-14/")),
        Some(true)
    );

    // Tags, named as the client named the repository.
    let tags = call(
        "GET",
        &format!("{base}/{alias}/team/app/tags/list"),
        admin,
        &[],
    );
    assert_eq!(tags.status, 200);
    let tags: serde_json::Value = serde_json::from_slice(tags.bytes()).unwrap();
    assert_eq!(tags["name"], format!("{alias}/team/app"));
    assert_eq!(tags["tags"], serde_json::json!(["1"]));

    // Errors in the OCI shape, with the right codes.
    let unknown_tag = call(
        "GET",
        &format!("{base}/{alias}/team/app/manifests/2"),
        admin,
        &[],
    );
    assert_eq!(
        (unknown_tag.status, unknown_tag.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let unknown_blob = call(
        "GET",
        &format!("{base}/{alias}/team/app/blobs/{}", sha256(b"nothing")),
        admin,
        &[],
    );
    assert_eq!(
        (unknown_blob.status, unknown_blob.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let bad_digest = call(
        "GET",
        &format!("{base}/{alias}/team/app/blobs/sha256:123"),
        admin,
        &[],
    );
    assert_eq!(
        (bad_digest.status, bad_digest.error_code().as_str()),
        (400, "DIGEST_INVALID")
    );
    let push = call("PUT", &manifest_url, admin, &[]);
    assert_eq!(
        (push.status, push.error_code().as_str()),
        (405, "UNSUPPORTED")
    );

    // A repeated identical request by the same token is recorded once a minute; a
    // different one is recorded at once.
    let pulls = || {
        ok(&server.cli(
            ADMIN_TOKEN,
            &["audit", "list", "--limit", "1000", "--output", "json"],
            None,
        ))
        .matches("proxy.pull")
        .count()
    };
    let config_url = format!("{base}/{alias}/team/app/blobs/{}", digests.config);
    let before = pulls();
    for _ in 0..3 {
        assert_eq!(call("HEAD", &config_url, admin, &[]).status, 200);
    }
    assert_eq!(
        call("HEAD", &config_url, Some(("~admin", ADMIN_TOKEN)), &[]).status,
        200
    );
    assert_eq!(pulls(), before + 2);

    // Corrupted upstream content is never served as valid: a blob is cut off before
    // its end, a manifest refused whole.
    let storage = find_registry_storage(&registry);
    let original = corrupt(&blob_file(&storage, &digests.layer));
    let cut = call("GET", &blob_url, admin, &[]);
    assert!(
        matches!(cut.status, 0 | 200),
        "the headers go out before the body is known bad"
    );
    match &cut.body {
        Ok(body) => panic!("a corrupted blob arrived whole ({} bytes)", body.len()),
        Err((_, received)) => assert!(*received < original.len()),
    }
    corrupt(&blob_file(&storage, &digests.manifest));
    let refused = call(
        "GET",
        &format!("{base}/{alias}/team/app/manifests/{}", digests.manifest),
        admin,
        &[("Accept", ACCEPT_MANIFESTS)],
    );
    // The manifest cache still holds the verified copy; a tag asks the upstream.
    assert_eq!(refused.status, 200);
    let by_tag = call("GET", &manifest_url, admin, &[("Accept", ACCEPT_MANIFESTS)]);
    assert!(
        by_tag.status == 502 || by_tag.status == 404,
        "{}",
        by_tag.status
    );
    assert!(metric(&server, "regkeeper_proxy_digest_mismatches") >= 1.0);
    let (pulled, _) = skopeo_pull(
        &proxy,
        &format!("{alias}/team/app:1"),
        "any",
        ADMIN_TOKEN,
        None,
    );
    assert!(!pulled.status.success(), "a corrupted image must not pull");

    // Every proxied request is audited, and the stored password shows up nowhere.
    let audit = ok(&server.cli(
        ADMIN_TOKEN,
        &["audit", "list", "--limit", "200", "--output", "json"],
        None,
    ));
    assert!(audit.contains("proxy.pull"), "{audit}");
    assert!(!audit.contains("robot-password"));
    assert!(!server.log().contains("robot-password"));
    assert!(
        !server.log().contains(ADMIN_TOKEN),
        "the API token used as a password"
    );
}

#[test]
fn token_auth_upstream_tokens_are_cached_and_a_refused_one_is_replaced_over_tls() {
    let issuer = TokenIssuer::start();
    let Some(registry) = Registry::token_auth(&issuer) else {
        return;
    };
    registry.push_test_image("team/app", "1", PUSHER, PUSHER_PASSWORD);
    registry.push_test_image("team/other", "1", PUSHER, PUSHER_PASSWORD);
    let upstream = registry.host_port().to_owned();
    let alias = upstream.replace(':', "_");
    let ca = registry.ca();
    let server = proxy_server(
        registry.ca_file(),
        &[
            (
                "REGKEEPER_PROXY_TLS_CERT_FILE",
                &ca.server_cert_file().display().to_string(),
            ),
            (
                "REGKEEPER_PROXY_TLS_KEY_FILE",
                &ca.server_key_file().display().to_string(),
            ),
        ],
    );
    assert!(server.proxy_url.as_deref().unwrap().starts_with("https://"));
    let proxy = proxy_host(&server);
    store_login(&server, "puller", &upstream, PULLER, PULLER_PASSWORD);

    let pull = |repository: &str| {
        let _scratch = pull_ok(
            &server,
            &format!("{alias}/{repository}:1"),
            "~admin",
            Some(ca.cert_dir()),
        );
    };
    let pull_scopes = || {
        issuer
            .requests()
            .iter()
            .filter(|request| {
                request.status == 200
                    && request
                        .scopes
                        .iter()
                        .any(|scope| scope.contains("team/app:pull"))
            })
            .count()
    };
    pull("team/app");
    let after_first = pull_scopes();
    assert!(after_first >= 1);
    pull("team/app");
    assert_eq!(
        pull_scopes(),
        after_first,
        "the upstream token is reused, not fetched per pull"
    );

    // A token the registry refuses although it has not reached its announced expiry
    // is replaced once, and the pull goes on.
    // The next token the registry will refuse, as if revoked: the proxy drops it, gets
    // another, and retries once; the pull goes on.
    issuer.issue_unusable(1);
    let retries = metric(&server, "regkeeper_proxy_upstream_retries");
    pull("team/other");
    assert_eq!(
        metric(&server, "regkeeper_proxy_upstream_retries"),
        retries + 1.0,
        "{}",
        server.log()
    );
    // A login the registry keeps refusing is a denial after that one retry, not a loop.
    issuer.issue_unusable(2);
    let (output, _scratch) = skopeo_pull(
        &proxy,
        &format!("{alias}/team/app-two:1"),
        "any",
        ADMIN_TOKEN,
        Some(ca.cert_dir()),
    );
    assert!(!output.status.success());
    let asked = issuer
        .requests()
        .iter()
        .filter(|request| {
            request
                .scopes
                .iter()
                .any(|scope| scope.contains("team/app-two:"))
        })
        .count();
    assert_eq!(asked, 2, "one token, and one more after the refusal");
}

#[test]
fn an_ecr_login_minted_through_moto_pulls_through_the_proxy() {
    let Some(moto) = Moto::start() else { return };
    let (user, token) = moto_ecr_login(&moto);
    let Some(registry) = Registry::htpasswd(&[(user.as_str(), token.as_str())]) else {
        return;
    };
    let digests = registry.push_test_image("team/app", "1", &user, &token);
    let upstream = registry.host_port().to_owned();
    let server = proxy_server(
        registry.ca_file(),
        &[("AWS_ENDPOINT_URL", moto.endpoint_url())],
    );
    ok(&moto::add_ecr_login(&server, "ecr", &upstream, &[]));

    let scratch = pull_ok(
        &server,
        &format!("{}/team/app:1", upstream.replace(':', "_")),
        "any",
        None,
    );
    let index = std::fs::read_to_string(scratch.path().join("layout/index.json")).unwrap();
    assert!(index.contains(&digests.manifest));
    assert!(
        !server.log().contains(&token),
        "the minted ECR token is never logged"
    );
}

/// A token-auth upstream holding `team/app:1`, with three logins: the pusher, a puller,
/// and an outsider who may pull nothing. The issuer comes back too: it must outlive the
/// registry.
pub(super) fn upstream_with_an_outsider() -> Option<(TokenIssuer, Registry, ImageDigests)> {
    let issuer = TokenIssuer::start_with(TokenIssuerOptions {
        users: vec![
            TokenUser::new(PUSHER, PUSHER_PASSWORD, &["pull", "push"]),
            TokenUser::new(PULLER, PULLER_PASSWORD, &["pull"]),
            // A valid login that may pull nothing.
            TokenUser::new("outsider", "outsider-password", &[]),
        ],
        ..TokenIssuerOptions::default()
    });
    let registry = Registry::token_auth(&issuer)?;
    let digests = registry.push_test_image("team/app", "1", PUSHER, PUSHER_PASSWORD);
    Some((issuer, registry, digests))
}

/// Bob, a member of another workspace, `acme/other`, whose credential for `upstream`
/// logs in as the upstream's `outsider` (see [`upstream_with_an_outsider`]) and so
/// may pull nothing: his API token.
pub(super) fn add_an_outsider(server: &TestServer, upstream: &str) -> String {
    let bob = ok(&server.cli(ADMIN_TOKEN, &["users", "create", "bob"], None))
        .trim()
        .to_owned();
    ok(&server.cli(ADMIN_TOKEN, &["workspaces", "create", "acme/other"], None));
    ok(&server.cli(
        ADMIN_TOKEN,
        &["members", "add", "acme/other", "bob", "--role", "launch"],
        None,
    ));
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--workspace",
            "acme/other",
            "--name",
            "outsider",
            "--registry",
            upstream,
            "--username",
            "outsider",
            "--password-stdin",
        ],
        Some("outsider-password"),
    ));
    bob
}

#[test]
fn cached_blobs_reach_only_callers_whose_own_credential_may_pull_them() {
    let Some((_issuer, registry, digests)) = upstream_with_an_outsider() else {
        return;
    };
    let upstream = registry.host_port().to_owned();
    let alias = upstream.replace(':', "_");
    let cache = tempfile::tempdir().unwrap();
    let server = proxy_server(
        registry.ca_file(),
        &[
            (
                "REGKEEPER_PROXY_CACHE_DIR",
                &cache.path().display().to_string(),
            ),
            ("REGKEEPER_PROXY_CACHE_MAX_BYTES", "64MiB"),
        ],
    );
    let proxy = proxy_host(&server);
    store_login(&server, "puller", &upstream, PULLER, PULLER_PASSWORD);
    let _layout = pull_ok(&server, &format!("{alias}/team/app:1"), "any", None);
    let hex = digests.layer.strip_prefix("sha256:").unwrap();
    let cached = cache.path().join("blobs/sha256").join(&hex[..2]).join(hex);
    assert!(cached.is_file(), "the verified layer is in the cache");

    // Bob works in another workspace whose credential logs in but may not pull.
    let bob = add_an_outsider(&server, &upstream);
    let base = format!("http://{proxy}/v2/{alias}/team/app");
    let blob = format!("{base}/blobs/{}", digests.layer);
    let denied = call("GET", &blob, Some(("acme/other", &bob)), &[]);
    assert_eq!(
        (denied.status, denied.error_code().as_str()),
        (403, "DENIED"),
        "{}",
        server.log()
    );
    assert!(!denied
        .bytes()
        .windows(8)
        .any(|window| window == &std::fs::read(&cached).unwrap()[..8]));
    let head = call("HEAD", &blob, Some(("acme/other", &bob)), &[]);
    assert_eq!(head.status, 403);
    // In his own workspace there is no credential for the upstream at all.
    let nothing = call("GET", &blob, Some(("any", &bob)), &[]);
    assert_eq!(
        (nothing.status, nothing.error_code().as_str()),
        (404, "NAME_UNKNOWN")
    );
    // A workspace he is not a member of is invisible.
    let invisible = call("GET", &blob, Some(("~admin", &bob)), &[]);
    assert!(
        matches!(invisible.status, 403 | 404),
        "{}",
        invisible.status
    );
    assert!(call("GET", &blob, None, &[]).status == 401);

    // Workload roles: one whose policy allows a credential that may pull gets the
    // cached copy (its credential differs, so the upstream confirms it first); one
    // whose policy denies it gets nothing.
    ok(&server.cli(ADMIN_TOKEN, &["workspaces", "create", "acme/ci"], None));
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--workspace",
            "acme/ci",
            "--name",
            "puller",
            "--registry",
            &upstream,
            "--username",
            PULLER,
            "--password-stdin",
        ],
        Some(PULLER_PASSWORD),
    ));
    let role_token = |name: &str, statements: serde_json::Value| {
        let policy = serde_json::json!({ "Version": "2026-11-01", "Statement": statements });
        ok(&server.cli(
            ADMIN_TOKEN,
            &[
                "roles",
                "create",
                name,
                "--workspace",
                "acme/ci",
                "--policy-file",
                "-",
            ],
            Some(&policy.to_string()),
        ));
        ok(&server.cli(
            ADMIN_TOKEN,
            &[
                "roles",
                "tokens",
                "create",
                name,
                "--workspace",
                "acme/ci",
                "--name",
                "ci",
            ],
            None,
        ))
        .trim()
        .to_owned()
    };
    let allow = |resource: &str| serde_json::json!({"Effect": "Allow", "Action": "credentials:Resolve", "Resource": resource});
    let builder = role_token(
        "builder",
        serde_json::json!([allow("rk:acme/ci:credential/puller")]),
    );
    let from_role = call("GET", &blob, Some(("any", &builder)), &[]);
    assert_eq!(from_role.status, 200, "{}", server.log());
    assert_eq!(sha256(from_role.bytes()), digests.layer);
    let blocked = role_token(
        "blocked",
        serde_json::json!([
            allow("rk:acme/ci:credential/*"),
            {"Effect": "Deny", "Action": "credentials:Resolve", "Resource": "rk:acme/ci:credential/puller"},
        ]),
    );
    let denied = call("GET", &blob, Some(("any", &blocked)), &[]);
    assert_eq!(
        (denied.status, denied.error_code().as_str()),
        (403, "DENIED")
    );

    // The admin's own callers get the cached copy, whole and verified.
    let served = call("GET", &blob, Some(("any", ADMIN_TOKEN)), &[]);
    assert_eq!(served.status, 200);
    assert_eq!(sha256(served.bytes()), digests.layer);
    assert!(
        metric(
            &server,
            "regkeeper_proxy_blob_bytes_total{source=\"cache\"}"
        ) > 0.0
    );
    let part = call(
        "GET",
        &blob,
        Some(("any", ADMIN_TOKEN)),
        &[("Range", "bytes=-4")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes(), &served.bytes()[served.bytes().len() - 4..]);

    // A cached copy that rots is cut off, dropped, and fetched again next time.
    corrupt(&cached);
    let rotten = call("GET", &blob, Some(("any", ADMIN_TOKEN)), &[]);
    assert!(
        rotten.body.is_err(),
        "a corrupted cached blob never arrives whole"
    );
    let again = call("GET", &blob, Some(("any", ADMIN_TOKEN)), &[]);
    assert_eq!(sha256(again.bytes()), digests.layer);
}

#[test]
fn blob_redirects_to_storage_are_followed_without_registry_credentials() {
    let Some(store) = BlobStore::start() else {
        return;
    };
    let Some(registry) =
        Registry::htpasswd_with_storage(&[("robot", "robot-password")], store.registry_storage())
    else {
        return;
    };
    let digests = registry.push_test_image("team/app", "1", "robot", "robot-password");
    let upstream = registry.host_port().to_owned();
    let blob_url = |proxy: &str| {
        format!(
            "http://{proxy}/v2/{upstream}/team/app/blobs/{}",
            digests.layer
        )
    };

    // Redirect targets pass the same outbound checks: this blob store speaks plain
    // http, which the operator has not allowed yet.
    let guarded = proxy_server(registry.ca_file(), &[]);
    store_login(&guarded, "robot", &upstream, "robot", "robot-password");
    let refused = call(
        "GET",
        &blob_url(&proxy_host(&guarded)),
        Some(("any", ADMIN_TOKEN)),
        &[],
    );
    assert_eq!(refused.status, 502);
    let message = String::from_utf8_lossy(refused.bytes()).into_owned();
    assert!(
        message.contains("REGKEEPER_OUTBOUND_HTTP_REGISTRIES"),
        "{message}"
    );

    let server = proxy_server(
        registry.ca_file(),
        &[("REGKEEPER_OUTBOUND_HTTP_REGISTRIES", store.host_port())],
    );
    store_login(&server, "robot", &upstream, "robot", "robot-password");
    store.clear_requests();
    let proxy = proxy_host(&server);
    let _scratch = pull_ok(
        &server,
        &format!("{}/team/app:1", upstream.replace(':', "_")),
        "any",
        None,
    );
    let layer = call("GET", &blob_url(&proxy), Some(("any", ADMIN_TOKEN)), &[]);
    assert_eq!(sha256(layer.bytes()), digests.layer);
    let fetched = store.presigned_gets();
    assert!(
        fetched
            .iter()
            .any(|request| request.path() == store.blob_path(&digests.layer)),
        "the proxy fetched the layer from blob storage: {fetched:?}"
    );
    assert!(
        fetched
            .iter()
            .all(|request| request.authorization.is_none()),
        "registry credentials reached blob storage: {fetched:?}"
    );
}
