//! `regkeeper serve` as a systemd service (`deploy/systemd/regkeeper.service`, issue
//! 16): `READY=1` and `STOPPING=1` on `NOTIFY_SOCKET` (a Unix datagram socket the test
//! reads, as systemd's would), and the `LoadCredential=` files in
//! `$CREDENTIALS_DIRECTORY` — the bootstrap token, and the master key that seeds the
//! key file in the state directory without ever standing in for it, so rotation works.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::support::{binary, ok, run_cli, stderr, ServerOptions, TestServer};

/// The next datagram on `socket`, as text; fails after 30 s.
fn next_notification(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    let length = socket
        .recv(&mut buffer)
        .expect("a notification on NOTIFY_SOCKET within 30 s");
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

#[test]
fn serve_notifies_systemd_when_it_listens_and_when_it_stops() {
    let directory = tempfile::tempdir().unwrap();
    let socket_path = directory.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let server = TestServer::start_with(ServerOptions {
        environment: vec![(
            "NOTIFY_SOCKET".to_owned(),
            socket_path.display().to_string(),
        )],
        ..ServerOptions::default()
    });

    let ready = next_notification(&socket);
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready:?}");
    assert!(
        lines.contains(&format!("STATUS=listening on {}", server.url).as_str()),
        "{ready:?}"
    );
    // Ready means serving: the health check answers now.
    let health = ureq::get(&format!("{}/healthz", server.url))
        .call()
        .unwrap();
    assert_eq!(health.status(), 200);

    let url = server.url.clone();
    let _data = server.stop();
    let stopping = next_notification(&socket);
    assert_eq!(stopping.trim(), "STOPPING=1", "after SIGTERM to {url}");
}

/// A `LoadCredential=` directory with a bootstrap token and, if given, a key file.
fn credentials(directory: &Path, token: &str, master_key: Option<&Path>) -> std::path::PathBuf {
    let credentials = directory.join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(
        credentials.join("regkeeper.bootstrap-token"),
        format!("{token}\n"),
    )
    .unwrap();
    if let Some(master_key) = master_key {
        std::fs::copy(master_key, credentials.join("regkeeper.master-key")).unwrap();
    }
    credentials
}

#[test]
fn credentials_give_the_bootstrap_token_and_seed_a_key_file_that_rotation_can_replace() {
    const TOKEN: &str = "rk_systemd_credential_admin_0123456789";
    let directory = tempfile::tempdir().unwrap();

    // A key file made by an earlier installation, handed over as a credential.
    let earlier = TestServer::start();
    let earlier_data = earlier.stop();
    let key_file = earlier_data.path.join("master.key");
    let credentials = credentials(directory.path(), TOKEN, Some(&key_file));

    let data_dir = directory.path().join("state");
    std::fs::create_dir(&data_dir).unwrap();
    let options = ServerOptions {
        data_dir: Some(data_dir.clone()),
        environment: vec![
            // TestServer's own bootstrap token, switched off: the credential gives it.
            ("REGKEEPER_BOOTSTRAP_TOKEN".to_owned(), String::new()),
            (
                "CREDENTIALS_DIRECTORY".to_owned(),
                credentials.display().to_string(),
            ),
        ],
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(options.clone());
    assert_eq!(
        std::fs::read(data_dir.join("master.key")).unwrap(),
        std::fs::read(&key_file).unwrap(),
        "the credential's key file is copied into the state directory"
    );
    // The credential's token is the first admin's (key status is for site admins).
    let status = ok(&run_cli(&server.url, TOKEN, &["key", "status"], None, &[]));
    assert!(status.contains("current version 1."), "{status}");

    // Rotation writes the state directory's file, never the read-only credential.
    let rotated = ok(&run_cli(&server.url, TOKEN, &["key", "rotate"], None, &[]));
    assert!(rotated.contains("from version 1 to 2"), "{rotated}");
    let credential_bytes = std::fs::read(credentials.join("regkeeper.master-key")).unwrap();
    assert_eq!(credential_bytes, std::fs::read(&key_file).unwrap());
    assert_ne!(
        std::fs::read(data_dir.join("master.key")).unwrap(),
        credential_bytes
    );
    let stopped = server.stop();

    // Restarted with the same, now older, credential: the rotated file wins, and the
    // log says to update the credential.
    let server = TestServer::start_with(ServerOptions {
        data_dir: Some(stopped.path.clone()),
        ..options
    });
    let status = ok(&run_cli(&server.url, TOKEN, &["key", "status"], None, &[]));
    assert!(status.contains("current version 2."), "{status}");
    assert!(
        server.log().contains("master_key.credential_outdated"),
        "{}",
        server.log()
    );
}

#[test]
fn a_bootstrap_token_given_two_ways_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let credentials = credentials(
        directory.path(),
        "rk_systemd_credential_one_0123456789",
        None,
    );
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("REGKEEPER_DATA_DIR", directory.path().join("data"))
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .env(
            "REGKEEPER_BOOTSTRAP_TOKEN",
            "rk_systemd_environment_two_0123456789",
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("regkeeper.bootstrap-token") && error.contains("one way only"),
        "{error}"
    );
    assert!(!error.contains("rk_systemd"), "{error}");
    assert!(
        !directory.path().join("data").exists(),
        "nothing was started"
    );
}
