//! Faults, with real processes: the server killed with SIGKILL in the middle of writes
//! (SQLite and PostgreSQL), a private PostgreSQL cluster stopped and started under
//! load, registries that refuse, hang, fail, answer HTML or never stop sending (for
//! verification and for the pull-through proxy), and a full disk under SQLite.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::peers::faulty_upstream::{refusing_host_port, Fault, FaultyUpstream};
use super::support::{eventually, ok, PostgresDatabase, ServerOptions, TestServer, ADMIN_TOKEN};

mod aws_throttling;
mod database_refusing;
mod postgres_outage;

const CREDENTIALS: &str = "/api/v1/workspaces/%7Eadmin/credentials";
const RESOLVE: &str = "/api/v1/workspaces/%7Eadmin/resolve";

/// One answer, with what the fault tests look at.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
    /// How reading the body failed, if it did (a stream cut off on purpose).
    body_error: Option<String>,
    elapsed: Duration,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }

    /// The REST API's error code and message.
    fn error(&self) -> (String, String) {
        let json = self.json();
        (
            json["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

/// A request with a 20-second bound; `Err` when no HTTP answer came at all.
fn request(
    method: &str,
    url: &str,
    authorization: &str,
    body: Option<&serde_json::Value>,
) -> Result<Answer, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build();
    let call = agent
        .request(method, url)
        .set("Authorization", authorization);
    let started = Instant::now();
    let result = match body {
        Some(body) => call.send_json(body.clone()),
        None => call.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => return Err(error.to_string()),
    };
    let status = response.status();
    let retry_after = response.header("Retry-After").map(str::to_owned);
    let (body, body_error) = match response.into_string() {
        Ok(body) => (body, None),
        Err(error) => (String::new(), Some(error.to_string())),
    };
    Ok(Answer {
        status,
        retry_after,
        body,
        body_error,
        elapsed: started.elapsed(),
    })
}

fn api(server_url: &str, method: &str, path: &str, body: Option<serde_json::Value>) -> Answer {
    request(
        method,
        &format!("{server_url}{path}"),
        &format!("Bearer {ADMIN_TOKEN}"),
        body.as_ref(),
    )
    .unwrap_or_else(|error| panic!("{method} {path}: no answer: {error}"))
}

fn docker_credential(
    name: &str,
    registry: &str,
    password: &str,
    verify: bool,
) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "registry": registry,
        "type": "docker",
        "username": "fault-user",
        "password": password,
        "verify": verify,
    })
}

/// A server on the PostgreSQL database at `database_url` holding one Docker
/// credential, `steady`, that needs no registry: where the database fault tests start.
fn server_holding_steady(database_url: String) -> TestServer {
    let server = TestServer::start_with(ServerOptions {
        database_url: Some(database_url),
        ..ServerOptions::default()
    });
    let added = api(
        &server.url,
        "POST",
        CREDENTIALS,
        Some(docker_credential(
            "steady",
            "steady.registry.example",
            &password_of("steady"),
            false,
        )),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    server
}

fn password_of(name: &str) -> String {
    format!("pw-{name}-0123456789")
}

fn resolve_secret(server_url: &str, name: &str) -> Answer {
    api(
        server_url,
        "POST",
        RESOLVE,
        Some(serde_json::json!({ "reference": name })),
    )
}

fn listed_names(server_url: &str) -> Vec<String> {
    let answer = api(server_url, "GET", CREDENTIALS, None);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["credentials"]
        .as_array()
        .expect("credentials array")
        .iter()
        .map(|credential| credential["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The end of the server's log, for failure messages.
fn log_tail(server: &TestServer) -> String {
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn audit_verifies(server: &TestServer) {
    ok(&server.cli(ADMIN_TOKEN, &["audit", "verify"], None));
}

// --- kill -9 during writes ---------------------------------------------------------

/// Adds credentials from four threads, kills the server with SIGKILL once some are
/// acknowledged, restarts it on the same data, and checks that every acknowledged add
/// is there and opens, every stored record opens, and the audit chain holds.
fn killed_during_writes(database_url: Option<String>) {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let options = ServerOptions {
        database_url,
        data_dir: Some(scratch.path().join("data")),
        environment: Vec::new(),
    };
    let server = TestServer::start_with(options.clone());
    let url = server.url.clone();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let url = url.clone();
            let acknowledged = Arc::clone(&acknowledged);
            std::thread::spawn(move || {
                for index in 0..500 {
                    let name = format!("w{writer}-{index}");
                    let body = docker_credential(
                        &name,
                        &format!("w{writer}-{index}.registry.example"),
                        &password_of(&name),
                        false,
                    );
                    match request(
                        "POST",
                        &format!("{url}{CREDENTIALS}"),
                        &format!("Bearer {ADMIN_TOKEN}"),
                        Some(&body),
                    ) {
                        Ok(answer) if answer.status == 201 => {
                            acknowledged.lock().unwrap().push(name)
                        }
                        Ok(answer) => panic!("add {name}: {} {}", answer.status, answer.body),
                        // The server is gone: this add may or may not have landed.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(5),
        "60 acknowledged writes",
        || acknowledged.lock().unwrap().len() >= 60,
    );
    // `TestServer`'s drop is `Child::kill`: SIGKILL, no shutdown of any kind.
    drop(server);
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 60);

    let server = TestServer::start_with(options);
    let listed = listed_names(&server.url);
    eprintln!(
        "{} adds acknowledged before SIGKILL, {} stored",
        acknowledged.len(),
        listed.len()
    );
    assert!(
        listed.len() >= acknowledged.len(),
        "{} listed, {} acknowledged",
        listed.len(),
        acknowledged.len()
    );
    for name in &acknowledged {
        assert!(listed.contains(name), "acknowledged {name} is missing");
    }
    // Every stored record opens, acknowledged or not: nothing half-written.
    for name in &listed {
        let answer = resolve_secret(&server.url, name);
        assert_eq!(answer.status, 200, "resolve {name}: {}", answer.body);
        assert_eq!(answer.json()["secret"], password_of(name).as_str());
    }
    audit_verifies(&server);
}

#[test]
fn sqlite_survives_sigkill_during_concurrent_writes() {
    killed_during_writes(None);
}

#[test]
fn postgres_survives_sigkill_during_concurrent_writes() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    killed_during_writes(Some(database.url.clone()));
}

// --- misbehaving registries ----------------------------------------------------------

/// One registry fault: where it is, and what verification and the proxy must answer.
struct Case {
    name: &'static str,
    host_port: String,
    /// The status `credentials add` with verification answers.
    verify_status: u16,
    /// The status a proxied manifest request answers.
    proxy_status: u16,
    /// The status a proxied blob request answers.
    blob_status: u16,
    _upstream: Option<FaultyUpstream>,
}

fn case(
    name: &'static str,
    fault: Option<Fault>,
    verify_status: u16,
    proxy_status: u16,
    blob_status: u16,
) -> Case {
    let upstream = fault.map(FaultyUpstream::start);
    let host_port = upstream
        .as_ref()
        .map_or_else(refusing_host_port, |upstream| upstream.host_port.clone());
    Case {
        name,
        host_port,
        verify_status,
        proxy_status,
        blob_status,
        _upstream: upstream,
    }
}

#[test]
fn misbehaving_registries_get_clear_bounded_errors_from_verify_and_the_proxy() {
    let cases = [
        case("refused", None, 502, 502, 502),
        case("silent", Some(Fault::Silent), 502, 504, 504),
        case("server-error", Some(Fault::ServerError), 502, 502, 502),
        case("html", Some(Fault::Html), 502, 502, 502),
        case("endless-token", Some(Fault::EndlessToken), 502, 502, 502),
        // `/v2/` answers fine, so only the proxy meets the endless manifest. Its blob is
        // a two-byte `{}` whose digest does not match: streamed under a 200, the body is
        // cut off before its end instead of completing (0 below).
        case(
            "endless-manifest",
            Some(Fault::EndlessManifest),
            201,
            502,
            0,
        ),
    ];
    let registries: Vec<&str> = cases.iter().map(|case| case.host_port.as_str()).collect();
    let server = TestServer::start_with(ServerOptions {
        environment: vec![
            ("REGKEEPER_PROXY_LISTEN".into(), "127.0.0.1:0".into()),
            (
                "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".into(),
                "127.0.0.0/8".into(),
            ),
            (
                "REGKEEPER_OUTBOUND_HTTP_REGISTRIES".into(),
                registries.join(","),
            ),
            ("REGKEEPER_OUTBOUND_TIMEOUT_SECONDS".into(), "2".into()),
        ],
        ..ServerOptions::default()
    });
    let proxy = server.proxy_url.clone().expect("proxy URL");
    let started = Instant::now();
    for case in &cases {
        let name = case.name;
        let verified = api(
            &server.url,
            "POST",
            CREDENTIALS,
            Some(docker_credential(
                &format!("{name}-verified"),
                &case.host_port,
                "pw",
                true,
            )),
        );
        assert_eq!(
            verified.status, case.verify_status,
            "{name}: {}",
            verified.body
        );
        assert!(
            verified.elapsed < Duration::from_secs(8),
            "{name}: verification took {:?}",
            verified.elapsed
        );
        if verified.status != 201 {
            let (code, message) = verified.error();
            assert!(
                message.contains("127.0.0.1"),
                "{name}: the message names no host: {code}: {message}"
            );
            eprintln!("{name}: verify → {} {code}: {message}", verified.status);
        }
        // The proxy needs a stored credential for the host; store it unverified.
        if verified.status != 201 {
            let stored = api(
                &server.url,
                "POST",
                CREDENTIALS,
                Some(docker_credential(
                    &format!("{name}-stored"),
                    &case.host_port,
                    "pw",
                    false,
                )),
            );
            assert_eq!(stored.status, 201, "{name}: {}", stored.body);
        }
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("any:{ADMIN_TOKEN}")
            )
        );
        // A manifest (read whole, capped) and a blob (streamed).
        let blob = format!("blobs/sha256:{}", "0".repeat(64));
        for (object, expected) in [
            ("manifests/1", case.proxy_status),
            (blob.as_str(), case.blob_status),
        ] {
            let pulled = match request(
                "GET",
                &format!("{proxy}/v2/{}/team/app/{object}", case.host_port),
                &basic,
                None,
            ) {
                Ok(pulled) => pulled,
                // A blob cut off early can fail the whole call (the client reads a small
                // body at once): that is the cut-off this case expects.
                Err(error) if expected == 0 => {
                    eprintln!("{name}: proxy {object} → cut off: {error}");
                    continue;
                }
                Err(error) => panic!("{name}: the proxy gave no answer: {error}"),
            };
            if expected == 0 {
                assert_eq!(pulled.status, 200, "{name} {object}: {}", pulled.body);
                assert!(
                    pulled.body_error.is_some(),
                    "{name}: a blob whose digest does not match was delivered whole: {:?}",
                    pulled.body
                );
                eprintln!(
                    "{name}: proxy {object} → 200, cut off: {:?}",
                    pulled.body_error
                );
                continue;
            }
            assert_eq!(pulled.status, expected, "{name} {object}: {}", pulled.body);
            assert!(
                pulled.elapsed < Duration::from_secs(8),
                "{name}: the proxy took {:?} for {object}",
                pulled.elapsed
            );
            let message = pulled.json()["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if expected >= 500 {
                assert!(
                    message.contains("127.0.0.1"),
                    "{name} {object}: the proxy's message names no host: {message}"
                );
            }
            eprintln!("{name}: proxy {object} → {} {message}", pulled.status);
        }
    }
    eprintln!("all registry faults answered in {:?}", started.elapsed());
    let healthy = api(&server.url, "GET", "/healthz", None);
    assert_eq!(healthy.status, 200);
    assert!(
        !server.log().contains("panicked"),
        "the server panicked:\n{}",
        server.log()
    );
}

// --- a full disk under SQLite ----------------------------------------------------------

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with a message) where mounting is not permitted.
    fn mount(size: &str) -> Option<Self> {
        let parent = tempfile::tempdir().expect("temporary directory");
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Self {
                path,
                _parent: parent,
            }),
            Ok(output) => {
                eprintln!(
                    "skipping: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("skipping: cannot run mount: {error}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system holding `directory` to the last byte, then frees `keep`
/// bytes of it, so the test reaches "full" in a few writes.
fn fill(directory: &Path, keep: u64) -> PathBuf {
    use std::io::Write;
    let filler = directory.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.flush();
    let written = file.metadata().unwrap().len();
    file.set_len(written.saturating_sub(keep)).unwrap();
    filler
}

#[test]
fn a_full_disk_fails_writes_cleanly_keeps_reads_and_recovers() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let options = ServerOptions {
        data_dir: Some(disk.path.clone()),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(options);
    let added = api(
        &server.url,
        "POST",
        CREDENTIALS,
        Some(docker_credential(
            "before",
            "before.registry.example",
            &password_of("before"),
            false,
        )),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let filler = fill(&disk.path, 128 * 1024);

    let mut stored = vec!["before".to_owned()];
    let mut refused = None;
    for index in 0..2000 {
        let name = format!("fill-{index}");
        let answer = api(
            &server.url,
            "POST",
            CREDENTIALS,
            Some(docker_credential(
                &name,
                &format!("fill-{index}.registry.example"),
                &password_of(&name),
                false,
            )),
        );
        match answer.status {
            201 => stored.push(name),
            _ => {
                refused = Some(answer);
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.retry_after.as_deref(), Some("5"));
    let (code, message) = refused.error();
    assert_eq!(code, "storage_full", "{message}");
    assert!(message.contains("disk is full"), "{message}");
    eprintln!(
        "{} adds before the disk filled; then: {message}",
        stored.len()
    );

    // Reads keep working while the disk is full.
    let listed = listed_names(&server.url);
    assert_eq!(listed.len(), stored.len(), "{listed:?}");
    let shown = api(&server.url, "GET", &format!("{CREDENTIALS}/before"), None);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(api(&server.url, "GET", "/healthz", None).status, 200);

    // Space comes back: writes work again, and nothing was damaged.
    std::fs::remove_file(&filler).unwrap();
    let after = api(
        &server.url,
        "POST",
        CREDENTIALS,
        Some(docker_credential(
            "after",
            "after.registry.example",
            &password_of("after"),
            false,
        )),
    );
    assert_eq!(after.status, 201, "{}", after.body);
    stored.push("after".to_owned());
    for name in &stored {
        let answer = resolve_secret(&server.url, name);
        assert_eq!(answer.status, 200, "resolve {name}: {}", answer.body);
        assert_eq!(answer.json()["secret"], password_of(name).as_str());
    }
    audit_verifies(&server);
    assert!(
        !server.log().contains("panicked"),
        "the server panicked:\n{}",
        server.log()
    );
    let data = server.stop();
    let integrity = integrity_check(&data.path.join("regkeeper.db"));
    assert_eq!(integrity, "ok");
}

fn integrity_check(database: &Path) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(database);
        let mut connection = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open the SQLite database");
        let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&mut connection)
            .await
            .expect("integrity_check");
        result
    })
}
