//! Sync targets end to end: a token refresh rewrites a docker `config.json` (and
//! replaces Kubernetes Secrets and calls the webhook) on a paused clock against moto;
//! real server processes confine files to the workspace's directory, keep Secrets in
//! two namespaces of a `fake_kubernetes_api`, and sign webhooks whose failures back off
//! and recover — all without a secret in listings, logs, audit or metrics.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{eventually, in_process_app, InProcessApp};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use regkeeper::clock::{Clock, ManualClock};
use regkeeper::service::{credentials, registry_tokens, sync_targets};
use regkeeper_wire as wire;
use sha2::Sha256;

use super::fake_kubernetes_api::FakeKubernetesApi;
use super::peers::http_server::HttpServer;
use super::peers::moto::{self, Moto};
use super::peers::tls::TestCa;
use super::support::{self, ok, raw, stderr, ServerOptions, TestServer, ADMIN_TOKEN};

const HOUR: i64 = 3_600_000;
const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// One POST the webhook receiver got.
#[derive(Clone, Debug)]
struct Received {
    signature: String,
    delivery: String,
    event: String,
    content_type: String,
    body: Vec<u8>,
}

/// An https receiver at `/hook` that records deliveries and answers with `status`;
/// `/moved` answers 307 to `/hook`.
struct WebhookReceiver {
    server: HttpServer,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl WebhookReceiver {
    fn start(ca: &TestCa) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (log, answer) = (Arc::clone(&received), Arc::clone(&status));
        let server = HttpServer::start(Some(ca), move |_| {
            axum::Router::new()
                .route(
                    "/hook",
                    post(move |headers: HeaderMap, body: Bytes| {
                        let (log, answer) = (Arc::clone(&log), Arc::clone(&answer));
                        async move {
                            let header = |name: &str| {
                                headers
                                    .get(name)
                                    .and_then(|value| value.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            log.lock().unwrap().push(Received {
                                signature: header("regkeeper-signature"),
                                delivery: header("regkeeper-delivery"),
                                event: header("regkeeper-event"),
                                content_type: header("content-type"),
                                body: body.to_vec(),
                            });
                            StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap()
                        }
                    }),
                )
                .route(
                    "/moved",
                    post(|| async { (StatusCode::TEMPORARY_REDIRECT, [("location", "/hook")]) }),
                )
        });
        Self {
            server,
            received,
            status,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Checks a delivery's signature the way a receiver would, with its own HMAC, and
/// returns the signed timestamp and the body.
fn verified(received: &Received, key: &str) -> (i64, serde_json::Value) {
    let (timestamp, signature) = received
        .signature
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("Regkeeper-Signature: {}", received.signature));
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&received.body);
    mac.verify_slice(&hex::decode(signature).unwrap())
        .expect("the signature verifies with the key shown at creation");
    let body: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(received.content_type, "application/json");
    assert_eq!(received.event, "credential.synced");
    assert_eq!(body["id"], received.delivery.as_str());
    (timestamp.parse().unwrap(), body)
}

fn basic(username: &str, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{secret}"))
}

fn docker_config(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn input(kind: &str) -> wire::SyncTargetInput {
    wire::SyncTargetInput {
        kind: kind.into(),
        ..wire::SyncTargetInput::default()
    }
}

/// How often a test looks again for what the worker delivered (some looks run the CLI).
const POLL: Duration = Duration::from_millis(200);

#[test]
fn sync_refresh_rewrites_a_config_json_and_every_other_target() {
    let Some(moto) = Moto::start() else { return };
    let ca = TestCa::generate();
    let cluster = FakeKubernetesApi::start(&ca, &["ci", "build"]);
    let receiver = WebhookReceiver::start(&ca);
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path().join("sync");
    std::fs::create_dir(&root).unwrap();
    let variables: HashMap<&str, String> = HashMap::from([
        (
            "REGKEEPER_DATA_DIR",
            directory.path().join("data").display().to_string(),
        ),
        ("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN.to_owned()),
        ("AWS_ENDPOINT_URL", moto.endpoint_url().to_owned()),
        ("REGKEEPER_SYNC_FILE_ROOT", root.display().to_string()),
        (
            "REGKEEPER_SYNC_KUBECONFIG",
            cluster.kubeconfig().display().to_string(),
        ),
        ("REGKEEPER_SYNC_KUBERNETES_NAMESPACES", "ci,build".into()),
        ("REGKEEPER_OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8".into()),
        (
            "REGKEEPER_OUTBOUND_CA_FILE",
            ca.ca_file().display().to_string(),
        ),
    ]);
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let InProcessApp {
        runtime,
        app,
        admin,
    } = in_process_app(&variables, clock.clone());
    runtime.block_on(async {
        credentials::create(
            &app,
            &admin,
            None,
            wire::CredentialInput {
                name: Some("ecr".into()),
                registry: Some(ECR_HOST.into()),
                username: Some(moto::ACCESS_KEY_ID.into()),
                password: Some(wire::Sensitive::new(moto::SECRET_ACCESS_KEY)),
                verify: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        // Each target is pushed once when it is added: the first resolve of this
        // credential, which links it to its token and so to the refresher.
        let file = sync_targets::create(
            &app,
            &admin,
            None,
            "ecr",
            wire::SyncTargetInput {
                path: Some("ci/config.json".into()),
                ..input("file")
            },
        )
        .await
        .unwrap();
        let kubernetes = sync_targets::create(
            &app,
            &admin,
            None,
            "ecr",
            wire::SyncTargetInput {
                namespaces: vec!["ci".into(), "build".into()],
                ..input("kubernetes")
            },
        )
        .await
        .unwrap();
        let hook = sync_targets::create(
            &app,
            &admin,
            None,
            "ecr",
            wire::SyncTargetInput {
                url: Some(receiver.url("/hook")),
                ..input("webhook")
            },
        )
        .await
        .unwrap();
        for created in [&file, &kubernetes, &hook] {
            assert_eq!(
                created.target.status.as_str(),
                "ok",
                "{:?}",
                created.target.last_error
            );
        }
        let key = hook.signing_key.as_ref().expect("a generated signing key");
        let key = secrecy::ExposeSecret::expose_secret(key).to_owned();
        let path = root.join("~admin/ci/config.json");
        let auth = basic("AWS", "123456789012-auth-token");
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            docker_config(&path)["auths"][ECR_HOST]["auth"],
            auth.as_str()
        );
        let first_inode = metadata.ino();
        let first_issued = file.target.delivered.token_issued_at.unwrap();
        for namespace in ["ci", "build"] {
            let secret = cluster.secret(namespace, "regkeeper-ecr").unwrap();
            assert_eq!(
                secret.docker_config()["auths"][ECR_HOST]["auth"],
                auth.as_str()
            );
        }
        let (_, body) = verified(&receiver.received()[0], &key);
        assert_eq!(body["secret"], "123456789012-auth-token");

        // Nothing changed, nothing is pushed: a file edited by hand stays as it is.
        std::fs::write(&path, r#"{"auths":{"x":{"auth":"stale"}}}"#).unwrap();
        let report = sync_targets::sync_cycle(&app, "replica-under-test")
            .await
            .unwrap();
        assert_eq!(report.leased, 0);
        assert_eq!(docker_config(&path)["auths"]["x"]["auth"], "stale");

        // Nine hours on, the refresher re-mints the token; the worker's next pass
        // pushes it to every target.
        clock.advance(9 * HOUR);
        let refreshed = registry_tokens::refresh_cycle(&app, "replica-under-test")
            .await
            .unwrap();
        assert_eq!(refreshed.refreshed, 1);
        let report = sync_targets::sync_cycle(&app, "replica-under-test")
            .await
            .unwrap();
        assert_eq!((report.leased, report.pushed), (3, 3), "{report:?}");
        let rewritten = docker_config(&path);
        assert_eq!(rewritten["auths"][ECR_HOST]["auth"], auth.as_str());
        assert_eq!(
            rewritten["auths"]["x"]["auth"], "stale",
            "other entries kept"
        );
        assert_ne!(
            std::fs::metadata(&path).unwrap().ino(),
            first_inode,
            "replaced by a rename, not written in place"
        );
        let targets = sync_targets::list(&app, &admin, None, "ecr").await.unwrap();
        assert_eq!(targets.len(), 3);
        for target in &targets {
            let issued = target.delivered.token_issued_at.unwrap();
            assert!(issued >= first_issued + 9 * HOUR, "{target:?}");
            assert_eq!(target.last_synced_at, Some(clock.now()));
            assert!(!target.behind);
        }
        let calls = cluster.calls();
        for namespace in ["ci", "build"] {
            let path = format!("/api/v1/namespaces/{namespace}/secrets");
            let sequence: Vec<(String, u16)> = calls
                .iter()
                .filter(|call| call.path.starts_with(&path))
                .map(|call| (call.method.clone(), call.status))
                .collect();
            assert_eq!(
                sequence,
                [("GET", 404), ("POST", 201), ("GET", 200), ("PUT", 200)]
                    .map(|(method, status)| (method.to_owned(), status)),
                "{namespace}: created, then replaced"
            );
        }
        let deliveries = receiver.received();
        assert_eq!(deliveries.len(), 2);
        let (first_at, first) = verified(&deliveries[0], &key);
        let (second_at, second) = verified(&deliveries[1], &key);
        assert_eq!(
            second_at - first_at,
            9 * 3600,
            "signed with the delivery time"
        );
        assert!(second["expiresAt"].as_str() > first["expiresAt"].as_str());
        assert_eq!(
            second["credential"]["reference"],
            "rk:~admin:credential/ecr"
        );
        assert_ne!(first["id"], second["id"]);

        // Atomic: while pushes rewrite the file again and again, a reader only ever
        // sees a whole docker config.
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, path) = (Arc::clone(&stop), path.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::SeqCst) {
                    let bytes = std::fs::read(&path).expect("the file is always there");
                    let config: serde_json::Value = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|error| panic!("partial file seen ({error}): {bytes:?}"));
                    assert!(config["auths"][ECR_HOST]["auth"].is_string());
                    reads += 1;
                }
                reads
            })
        };
        for _ in 0..40 {
            let target = sync_targets::run(&app, &admin, None, "ecr", &file.target.id)
                .await
                .unwrap();
            assert_eq!(target.status.as_str(), "ok");
        }
        stop.store(true, Ordering::SeqCst);
        let reads = reader.join().expect("the reader saw only whole files");
        assert!(reads > 0);
    });
}

/// `regkeeper sync add dock` as the admin, with the destination's flags.
fn sync_add(server: &TestServer, destination: &[&str]) -> std::process::Output {
    server.cli(
        ADMIN_TOKEN,
        &[&["sync", "add", "dock"], destination].concat(),
        None,
    )
}

fn add_docker_credential(server: &TestServer, password: &str) {
    ok(&support::add(
        server,
        &[
            "--name",
            "dock",
            "--registry",
            "registry.example.com:5000",
            "--username",
            "robot",
            "--no-verify",
        ],
        password,
    ));
}

fn update_password(server: &TestServer, password: &str) {
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "update",
            "dock",
            "--password-stdin",
            "--no-verify",
        ],
        Some(password),
    ));
}

fn list_targets(server: &TestServer) -> Vec<wire::SyncTarget> {
    let list: wire::SyncTargetList = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &["sync", "list", "dock", "--output", "json"],
        None,
    )))
    .unwrap();
    list.targets
}

#[test]
fn sync_file_targets_stay_inside_the_workspace_directory() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(ServerOptions {
        environment: vec![(
            "REGKEEPER_SYNC_FILE_ROOT".into(),
            root.path().display().to_string(),
        )],
        ..ServerOptions::default()
    });
    let first = "canary-sync-file-7f3a91";
    add_docker_credential(&server, first);
    let refused = |path: &str, expected: &str| {
        let output = sync_add(&server, &["--file", path]);
        assert!(!output.status.success(), "{path} was accepted");
        assert!(
            stderr(&output).contains(expected),
            "{path}: {}",
            stderr(&output)
        );
    };
    refused("../escape.json", "`..` are not allowed");
    refused("/etc/docker/config.json", "absolute paths are not allowed");
    refused("a//config.json", "empty path components");

    // A symbolic link that leads out is refused when the file is written: the target
    // exists, failing, and nothing appears outside.
    let workspace = root.path().join("~admin");
    std::fs::create_dir_all(&workspace).unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.join("out")).unwrap();
    let output = sync_add(&server, &["--file", "out/config.json"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("leads outside this workspace's sync directory"),
        "{}",
        stderr(&output)
    );
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());

    let created: wire::SyncTargetCreated = serde_json::from_str(&ok(&sync_add(
        &server,
        &["--file", "ci/config.json", "--output", "json"],
    )))
    .unwrap();
    assert_eq!(created.target.status, "ok");
    assert!(created.signing_key.is_none());
    let path = workspace.join("ci/config.json");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        docker_config(&path)["auths"]["registry.example.com:5000"]["auth"],
        basic("robot", first).as_str()
    );

    // A new password reaches the file through the worker, without anyone asking.
    let second = "canary-sync-file-b81c44";
    update_password(&server, second);
    eventually(
        Duration::from_secs(20),
        POLL,
        "the updated password in the file",
        || {
            docker_config(&path)["auths"]["registry.example.com:5000"]["auth"]
                == basic("robot", second).as_str()
        },
    );

    let targets = list_targets(&server);
    assert_eq!(targets.len(), 2);
    let escaped = targets
        .iter()
        .find(|t| t.destination == "out/config.json")
        .unwrap();
    assert_eq!(escaped.status, "failing");
    assert!(escaped.next_attempt_at.is_some() && escaped.failures >= 1);
    let table = ok(&server.cli(ADMIN_TOKEN, &["sync", "list", "dock"], None));
    assert!(
        table.contains("ci/config.json") && table.contains("failing"),
        "{table}"
    );
    let audit = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--output", "json"], None));
    assert!(audit.contains("sync_target.create") && audit.contains("sync_target.push"));
    let (_, metrics) = raw(&server, "GET", "/metrics", None, None, None);
    for secret in [first, second] {
        for (what, text) in [
            ("list", &table),
            ("audit", &audit),
            ("metrics", &metrics),
            ("log", &server.log()),
        ] {
            assert!(!text.contains(secret), "{what} shows the secret");
        }
    }
}

#[test]
fn sync_kubernetes_secrets_in_two_namespaces_follow_the_credential() {
    let ca = TestCa::generate();
    let cluster = FakeKubernetesApi::start(&ca, &["ci", "build", "other"]);
    cluster.put_foreign_secret("other", "regkeeper-dock");
    let server = TestServer::start_with(ServerOptions {
        environment: vec![
            (
                "REGKEEPER_SYNC_KUBECONFIG".into(),
                cluster.kubeconfig().display().to_string(),
            ),
            (
                "REGKEEPER_SYNC_KUBERNETES_NAMESPACES".into(),
                "ci,build,other".into(),
            ),
        ],
        ..ServerOptions::default()
    });
    add_docker_credential(&server, "canary-sync-kube-1");
    let created: wire::SyncTargetCreated = serde_json::from_str(&ok(&sync_add(
        &server,
        &[
            "--kubernetes-namespace",
            "ci",
            "--kubernetes-namespace",
            "build",
            "--output",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(
        created.target.status, "ok",
        "{:?}",
        created.target.last_error
    );
    assert_eq!(
        created.target.secret_name.as_deref(),
        Some("regkeeper-dock")
    );
    for namespace in ["ci", "build"] {
        let secret = cluster
            .secret(namespace, "regkeeper-dock")
            .expect("created");
        assert_eq!(secret.object["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(
            secret.object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "regkeeper"
        );
        assert_eq!(
            secret.object["metadata"]["annotations"]["regkeeper.io/credential"],
            "rk:~admin:credential/dock"
        );
        let entry = &secret.docker_config()["auths"]["registry.example.com:5000"];
        assert_eq!(entry["username"], "robot");
        assert_eq!(entry["password"], "canary-sync-kube-1");
        assert_eq!(entry["auth"], basic("robot", "canary-sync-kube-1").as_str());
    }

    update_password(&server, "canary-sync-kube-2");
    eventually(
        Duration::from_secs(20),
        POLL,
        "both Secrets replaced",
        || {
            ["ci", "build"].iter().all(|namespace| {
                cluster
                    .secret(namespace, "regkeeper-dock")
                    .is_some_and(|secret| {
                        secret.docker_config()["auths"]["registry.example.com:5000"]["password"]
                            == "canary-sync-kube-2"
                    })
            })
        },
    );
    let methods: Vec<String> = cluster
        .calls()
        .iter()
        .filter(|call| call.path.starts_with("/api/v1/namespaces/ci/"))
        .map(|call| format!("{} {}", call.method, call.status))
        .collect();
    assert_eq!(methods, ["GET 404", "POST 201", "GET 200", "PUT 200"]);

    // Namespaces outside the operator's list are refused; a Secret regkeeper did not
    // make is never replaced.
    let output = sync_add(&server, &["--kubernetes-namespace", "kube-system"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("REGKEEPER_SYNC_KUBERNETES_NAMESPACES"));
    let output = sync_add(&server, &["--kubernetes-namespace", "other"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("was not made by regkeeper"),
        "{}",
        stderr(&output)
    );
    let foreign = cluster.secret("other", "regkeeper-dock").unwrap();
    assert_eq!(foreign.object["type"], "Opaque", "left alone");
    let targets = list_targets(&server);
    assert_eq!(
        targets
            .iter()
            .map(|t| t.status.as_str())
            .collect::<Vec<_>>(),
        ["ok", "failing"]
    );
    let log = server.log();
    assert!(!log.contains("canary-sync-kube"), "the log shows a secret");
}

#[test]
fn sync_webhook_failures_back_off_then_recover() {
    let ca = TestCa::generate();
    let receiver = WebhookReceiver::start(&ca);
    receiver.status.store(503, Ordering::SeqCst);
    let server = TestServer::start_with(ServerOptions {
        environment: vec![
            (
                "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".into(),
                "127.0.0.0/8".into(),
            ),
            (
                "REGKEEPER_OUTBOUND_CA_FILE".into(),
                ca.ca_file().display().to_string(),
            ),
        ],
        ..ServerOptions::default()
    });
    let password = "canary-sync-hook-5d20e7";
    add_docker_credential(&server, password);

    // This server has no sync root: file targets are refused, saying what to set.
    let output = sync_add(&server, &["--file", "c.json"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("REGKEEPER_SYNC_FILE_ROOT"),
        "{}",
        stderr(&output)
    );
    let output = sync_add(&server, &["--webhook", "http://127.0.0.1:9/hook"]);
    assert!(
        stderr(&output).contains("must be https"),
        "{}",
        stderr(&output)
    );

    // The receiver is down: the target is added, failing, with its next attempt.
    let output = sync_add(
        &server,
        &["--webhook", &receiver.url("/hook"), "--output", "json"],
    );
    assert!(!output.status.success(), "the first push failed");
    let created: wire::SyncTargetCreated = serde_json::from_str(&support::stdout(&output)).unwrap();
    let key = created
        .signing_key
        .expect("generated, shown once")
        .expose()
        .to_owned();
    assert!(key.starts_with("rkwh_"));
    assert_eq!(created.target.status, "failing");
    assert_eq!(created.target.failures, 1);
    assert!(created.target.next_attempt_at.is_some());
    assert!(
        created
            .target
            .last_error
            .as_deref()
            .unwrap()
            .contains("HTTP 503"),
        "{:?}",
        created.target.last_error
    );
    let (_, metrics) = raw(&server, "GET", "/metrics", None, None, None);
    assert!(
        metrics.contains("regkeeper_sync_targets{status=\"failing\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("regkeeper_sync_pushes_total{kind=\"webhook\",outcome=\"failure\"} 1"));

    // A redirect is not followed: the body carries the secret.
    let moved = sync_add(&server, &["--webhook", &receiver.url("/moved")]);
    assert!(stderr(&moved).contains("HTTP 307"), "{}", stderr(&moved));

    // The receiver comes back: the worker's retry (5 s after the failure) delivers.
    receiver.status.store(200, Ordering::SeqCst);
    eventually(
        Duration::from_secs(25),
        POLL,
        "the webhook target to recover",
        || {
            list_targets(&server)
                .iter()
                .any(|target| target.id == created.target.id && target.status == "ok")
        },
    );
    let deliveries = receiver.received();
    assert!(deliveries.len() >= 2, "failed once, then delivered");
    let (timestamp, body) = verified(deliveries.last().unwrap(), &key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - timestamp).abs() < 300, "a fresh timestamp");
    assert_eq!(body["secret"], password);
    assert_eq!(body["username"], "robot");
    assert_eq!(body["registry"], "registry.example.com:5000");
    assert_eq!(body["credential"]["reference"], "rk:~admin:credential/dock");
    assert!(
        body.get("expiresAt").is_none(),
        "a password does not expire"
    );

    let recovered = list_targets(&server)
        .into_iter()
        .find(|target| target.id == created.target.id)
        .unwrap();
    assert_eq!(recovered.failures, 0);
    assert!(recovered.last_error.is_none() && recovered.next_attempt_at.is_none());
    assert!(recovered.has_signing_key);
    let (_, metrics) = raw(&server, "GET", "/metrics", None, None, None);
    assert!(metrics.contains("regkeeper_sync_pushes_total{kind=\"webhook\",outcome=\"success\"}"));
    assert!(
        metrics.contains("regkeeper_sync_targets{status=\"failing\"} 1"),
        "only the redirecting target still fails: {metrics}"
    );
    let table = ok(&server.cli(ADMIN_TOKEN, &["sync", "list", "dock"], None));
    let audit = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--output", "json"], None));
    for (what, text) in [
        ("list", table.as_str()),
        ("audit", audit.as_str()),
        ("metrics", metrics.as_str()),
        ("log", server.log().as_str()),
    ] {
        assert!(!text.contains(password), "{what} shows the secret");
        assert!(!text.contains(&key), "{what} shows the signing key");
    }

    // Removing the target stops the pushes.
    ok(&server.cli(
        ADMIN_TOKEN,
        &["sync", "remove", "dock", &created.target.id],
        None,
    ));
    assert!(list_targets(&server)
        .iter()
        .all(|target| target.id != created.target.id));
}
