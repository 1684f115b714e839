//! The master key: a wrong or missing key leaves the server up but refusing secret
//! operations with 503 and changing nothing; rotation re-wraps while serving.

use std::sync::Arc;

use regkeeper::clock::SystemClock;
use regkeeper::config::{Config, Overrides};
use regkeeper::service::credentials::open_secret;
use regkeeper::store::AuditQuery;
use regkeeper_wire as wire;
use secrecy::ExposeSecret;

use super::support::{ok, raw, DataDir, ServerOptions, TestServer, ADMIN_TOKEN};

mod kms;
mod kms_migration;
mod rotation_faults;

fn input(name: &str, password: &str) -> wire::CredentialInput {
    wire::CredentialInput {
        name: Some(name.into()),
        registry: Some("quay.io".into()),
        username: Some("robot".into()),
        password: Some(wire::Sensitive::new(password)),
        verify: Some(false),
        ..Default::default()
    }
}

const CREDENTIALS: &str = "/api/v1/workspaces/%7Eadmin/credentials";

/// Opens every stored secret in-process, with the key file in `data_dir`.
fn open_all(data_dir: &std::path::Path) -> Vec<(String, String, u32)> {
    let directory = data_dir.to_string_lossy().into_owned();
    let config = Config::load(
        None,
        &|name| (name == "REGKEEPER_DATA_DIR").then(|| directory.clone()),
        &Overrides::default(),
    )
    .unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let app = regkeeper::serve::build_app(config, Arc::new(SystemClock))
            .await
            .unwrap();
        let workspace = app
            .store
            .workspace_by_name("~admin")
            .await
            .unwrap()
            .unwrap();
        let mut opened = Vec::new();
        for credential in app.store.credentials(&workspace.id).await.unwrap() {
            let secret = open_secret(&app, &credential).unwrap();
            let password = secret.password.unwrap().expose_secret().to_owned();
            opened.push((
                credential.name.clone(),
                password,
                credential.sealed.unwrap().key_version,
            ));
        }
        let audit = app
            .store
            .audit_entries(&AuditQuery {
                limit: 10_000,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert!(regkeeper::audit::verify_chain(&audit, None).is_ok());
        opened
    })
}

/// The data directory of a stopped server that stored credential `kept`
/// (`kept-secret`).
fn stopped_with_kept_credential() -> DataDir {
    let server = TestServer::start();
    let _: wire::Credential = server
        .admin()
        .post(CREDENTIALS, &input("kept", "kept-secret"))
        .unwrap();
    server.stop()
}

#[test]
fn a_wrong_key_refuses_secrets_and_overwrites_nothing() {
    let kept = stopped_with_kept_credential();
    let data_dir = kept.path.clone();
    let key_path = data_dir.join("master.key");
    let right_key = std::fs::read(&key_path).unwrap();
    let stranger = TestServer::start();
    let wrong_key = std::fs::read(stranger.data_dir.join("master.key")).unwrap();
    let _stranger_dir = stranger.stop();
    std::fs::write(&key_path, &wrong_key).unwrap();
    let database_before = std::fs::read(data_dir.join("regkeeper.db")).unwrap().len();

    let server = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir.clone()),
        ..ServerOptions::default()
    });
    assert_eq!(raw(&server, "GET", "/healthz", None, None, None).0, 200);
    let (status, body) = raw(&server, "GET", "/readyz", None, None, None);
    assert_eq!(status, 503);
    assert!(
        !body.contains(&*data_dir.to_string_lossy()),
        "no paths to anonymous callers: {body}"
    );
    let (_, status) = raw(
        &server,
        "GET",
        "/api/v1/admin/master-key",
        Some(ADMIN_TOKEN),
        None,
        None,
    );
    assert!(status.contains("does not match this database"), "{status}");
    let listed: wire::CredentialList = server.admin().get(CREDENTIALS).unwrap();
    assert_eq!(listed.credentials.len(), 1, "metadata is still served");
    let error = server
        .admin()
        .post::<_, wire::Credential>(CREDENTIALS, &input("new", "new-secret"))
        .unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(503), Some("master_key_unavailable"))
    );
    let patch = wire::CredentialInput {
        password: Some(wire::Sensitive::new("x")),
        verify: Some(false),
        ..Default::default()
    };
    let error = server
        .admin()
        .patch::<_, wire::Credential>(&format!("{CREDENTIALS}/kept"), &patch)
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    let rotation = server.cli(ADMIN_TOKEN, &["key", "rotate"], None);
    assert!(!rotation.status.success());
    assert!(server.log().contains("master_key.unavailable"));
    let _ = server.stop();
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        wrong_key,
        "the key file was not touched"
    );
    assert!(std::fs::read(data_dir.join("regkeeper.db")).unwrap().len() >= database_before);

    // With the right key back, the secret is intact.
    std::fs::write(&key_path, &right_key).unwrap();
    let opened = open_all(&data_dir);
    assert_eq!(
        opened,
        vec![("kept".to_owned(), "kept-secret".to_owned(), 1)]
    );
}

#[test]
fn a_missing_key_is_not_regenerated_over_existing_data() {
    let kept = stopped_with_kept_credential();
    let data_dir = kept.path.clone();
    let key_path = data_dir.join("master.key");
    let saved = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let server = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir.clone()),
        ..ServerOptions::default()
    });
    assert_eq!(raw(&server, "GET", "/readyz", None, None, None).0, 503);
    let status = ok(&server.cli(ADMIN_TOKEN, &["key", "status"], None));
    assert!(status.contains("is missing"), "{status}");
    let error = server
        .admin()
        .post::<_, wire::Credential>(CREDENTIALS, &input("new", "x"))
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    let _ = server.stop();
    assert!(!key_path.exists(), "no new key was generated");
    std::fs::write(&key_path, saved).unwrap();
    assert_eq!(open_all(&data_dir)[0].1, "kept-secret");
}

#[test]
fn rotation_rewraps_everything_while_the_server_serves() {
    let server = TestServer::start();
    for index in 0..40 {
        let _: wire::Credential = server
            .admin()
            .post(
                CREDENTIALS,
                &input(&format!("before-{index}"), &format!("secret-{index}")),
            )
            .unwrap();
    }
    let url = server.url.clone();
    let writer = std::thread::spawn(move || {
        let client = regkeeper_client::Client::new(&url, Some(wire::Sensitive::new(ADMIN_TOKEN)));
        for index in 0..40 {
            let _: wire::Credential = client
                .post(
                    CREDENTIALS,
                    &input(
                        &format!("during-{index}"),
                        &format!("during-secret-{index}"),
                    ),
                )
                .unwrap();
            let patch = wire::CredentialInput {
                password: Some(wire::Sensitive::new(format!("changed-{index}"))),
                verify: Some(false),
                ..Default::default()
            };
            let _: wire::Credential = client
                .patch(&format!("{CREDENTIALS}/before-{index}"), &patch)
                .unwrap();
        }
    });
    let first = ok(&server.cli(ADMIN_TOKEN, &["key", "rotate", "--output", "json"], None));
    let second = ok(&server.cli(ADMIN_TOKEN, &["key", "rotate", "--output", "json"], None));
    writer.join().unwrap();
    let first: wire::KeyRotation = serde_json::from_str(&first).unwrap();
    let second: wire::KeyRotation = serde_json::from_str(&second).unwrap();
    assert_eq!((first.previous_version, first.current_version), (1, 2));
    assert_eq!((second.previous_version, second.current_version), (2, 3));
    let kept = server.stop();
    let opened = open_all(&kept.path);
    assert_eq!(opened.len(), 80);
    for (name, password, version) in opened {
        assert_eq!(version, 3, "{name} is wrapped by the current key");
        let expected = if let Some(index) = name.strip_prefix("before-") {
            format!("changed-{index}")
        } else {
            format!("during-secret-{}", name.strip_prefix("during-").unwrap())
        };
        assert_eq!(password, expected, "{name}");
    }
}
