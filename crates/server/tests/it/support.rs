//! Starting real servers and databases for the tests.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regkeeper_client::Client;
use regkeeper_wire::Sensitive;

pub const ADMIN_TOKEN: &str = "rk_test_bootstrap_admin_token_0123456789";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_regkeeper")
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct PostgresDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

/// Seconds since the Unix epoch, for the `exp` and `iat` of tokens the fakes issue.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Calls `check` every `every` until it finds something, and returns that with how long
/// it took; `None` once `limit` has passed. For waits whose timeout is not a failure
/// (see [`eventually`] for those that are).
pub fn poll_until<T>(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<(T, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return Some((found, started.elapsed()));
        }
        if started.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Checks `done` every `every` until it holds, and returns how long that took; fails
/// the test, naming `what`, once `limit` has passed.
#[track_caller]
pub fn eventually(
    limit: Duration,
    every: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Duration {
    match poll_until(limit, every, || done().then_some(())) {
        Some(((), took)) => took,
        None => panic!("{what}: still not seen after {limit:?}"),
    }
}

pub use super::peers::process::ci;

/// A server that may reach `registry` (on loopback, with its own CA), with `extra`
/// environment besides.
pub fn server_for(
    registry: &super::peers::registry::Registry,
    extra: &[(&str, &str)],
) -> TestServer {
    let mut environment = vec![
        (
            "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".to_owned(),
            "127.0.0.0/8".to_owned(),
        ),
        (
            "REGKEEPER_OUTBOUND_CA_FILE".to_owned(),
            registry.ca_file().display().to_string(),
        ),
    ];
    environment.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    TestServer::start_with(ServerOptions {
        environment,
        ..ServerOptions::default()
    })
}

/// The HTTP status a client call ended with (200 for success); a transport error fails
/// the test.
pub fn status<T>(result: Result<T, regkeeper_client::ClientError>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(error) => error
            .status()
            .unwrap_or_else(|| panic!("transport error: {error}")),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl PostgresDatabase {
    /// A fresh database, or `None` when PostgreSQL is unreachable outside CI. With
    /// `CI=true` an unreachable server fails the test instead of skipping it.
    pub fn create() -> Option<Self> {
        let admin_url = std::env::var("REGKEEPER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("regkeeper_test_{}", uuid::Uuid::new_v4().simple());
        let result = runtime().block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut connection)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
        match result {
            Ok(()) => {
                let (base, _) = admin_url
                    .rsplit_once('/')
                    .expect("REGKEEPER_TEST_POSTGRES_URL ends with /DATABASE");
                let url = format!("{base}/{name}");
                Some(Self {
                    admin_url,
                    name,
                    url,
                })
            }
            Err(error) if !ci() => {
                eprintln!("skipping: PostgreSQL at REGKEEPER_TEST_POSTGRES_URL is unreachable ({error}); CI=true makes this a failure");
                None
            }
            Err(error) => panic!("PostgreSQL is required in CI but unreachable: {error}"),
        }
    }

    /// Runs statements on the server as the administrator (connected to the admin
    /// database, not this one), e.g. to make this database refuse connections.
    pub fn as_admin(&self, statements: &[&str]) {
        let admin_url = self.admin_url.clone();
        runtime().block_on(async move {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("admin connection");
            for statement in statements {
                sqlx::query(statement)
                    .execute(&mut connection)
                    .await
                    .unwrap_or_else(|error| panic!("{statement}: {error}"));
            }
        });
    }

    /// `pg_dump` of the whole database as plain SQL.
    pub fn dump(&self) -> Vec<u8> {
        let output = Command::new("pg_dump")
            .arg("--dbname")
            .arg(&self.url)
            .output()
            .expect("pg_dump runs (package postgresql-client)");
        assert!(
            output.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // A thread of its own, since the test may be dropping this inside a runtime.
        let dropper = std::thread::spawn(move || {
            runtime().block_on(async move {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut connection)
                    .await
            })
        });
        let _ = dropper.join();
    }
}

/// A server's data directory, kept (with its temporary parent) while this lives.
pub struct DataDir {
    pub path: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

#[derive(Clone, Default)]
pub struct ServerOptions {
    /// A PostgreSQL URL; the embedded SQLite database when absent.
    pub database_url: Option<String>,
    /// Reuse this data directory (to restart a server on the same data).
    pub data_dir: Option<PathBuf>,
    pub environment: Vec<(String, String)>,
}

/// A `regkeeper serve` process on 127.0.0.1:0, killed on drop.
pub struct TestServer {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub stdout: String,
    /// The pull-through proxy's URL, when `--proxy-listen` was given.
    pub proxy_url: Option<String>,
    _temporary: Option<tempfile::TempDir>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    pub fn start_with(options: ServerOptions) -> Self {
        let (temporary, data_dir) = match &options.data_dir {
            Some(directory) => (None, directory.clone()),
            None => {
                let temporary = tempfile::tempdir().expect("temporary directory");
                let directory = temporary.path().join("data");
                (Some(temporary), directory)
            }
        };
        std::fs::create_dir_all(&data_dir).expect("data directory");
        let log_path = data_dir.with_extension(format!("log-{}", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REGKEEPER_DATA_DIR", &data_dir)
            .env("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env("REGKEEPER_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(url) = &options.database_url {
            command.args(["--database-url", url]);
        }
        for (name, value) in &options.environment {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("regkeeper serve starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut printed = String::new();
        let mut proxy_url = None;
        let url = loop {
            match receiver.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    printed.push_str(&line);
                    printed.push('\n');
                    if let Some(url) = line.strip_prefix("regkeeper proxy listening on ") {
                        proxy_url = Some(url.trim().to_owned());
                    }
                    if let Some(url) = line.strip_prefix("regkeeper listening on ") {
                        break url.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "server did not start; stdout: {printed}\nlog: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        };
        Self {
            child,
            url,
            data_dir,
            log_path,
            stdout: printed,
            proxy_url,
            _temporary: temporary,
        }
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(Sensitive::new(token)))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin(&self) -> Client {
        self.client(ADMIN_TOKEN)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs the CLI against this server with `token`, feeding `stdin`.
    pub fn cli(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&self.url, token, args, stdin, &[])
    }

    /// Stops the server with SIGTERM and waits for it, as an operator would, handing
    /// back its data directory.
    pub fn stop(mut self) -> DataDir {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("server exits");
        assert!(status.success(), "server exited with {status} on SIGTERM");
        DataDir {
            path: self.data_dir.clone(),
            _temporary: self._temporary.take(),
        }
    }
}

impl TestServer {
    /// Kills the server with SIGKILL (no shutdown of any kind, as a crash or an OOM
    /// kill would), handing back its data directory.
    pub fn kill(mut self) -> DataDir {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        DataDir {
            path: self.data_dir.clone(),
            _temporary: self._temporary.take(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run_cli(
    url: &str,
    token: &str,
    args: &[&str],
    stdin: Option<&str>,
    environment: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("REGKEEPER_URL", url)
        .env("REGKEEPER_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in environment {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("regkeeper CLI runs");
    let mut input = child.stdin.take().expect("stdin piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("CLI finishes")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed ({}): stdout: {} stderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Every file under `directory`, recursively, as (path, bytes).
pub fn files_under(directory: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path, bytes));
            }
        }
    }
    found
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// A raw HTTP call, for what the typed client cannot send (bad bodies, odd headers).
pub fn raw(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, String) {
    let agent = ureq::AgentBuilder::new().build();
    let mut request = agent.request(method, &format!("{}{}", server.url, path));
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        request = request.set("Content-Type", content_type);
    }
    let result = match body {
        Some(body) => request.send_bytes(body),
        None => request.call(),
    };
    status_and_text(result, "request")
}

/// [`raw`] as the admin with a JSON `body`.
pub fn send_admin_json(
    server: &TestServer,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    raw(
        server,
        method,
        path,
        Some(ADMIN_TOKEN),
        Some("application/json"),
        Some(body),
    )
}

/// The status and body of an HTTP answer, error statuses included; panics, naming
/// `what`, when there was no answer.
pub fn status_and_text(result: Result<ureq::Response, ureq::Error>, what: &str) -> (u16, String) {
    match result {
        Ok(response) => (
            response.status(),
            response.into_string().unwrap_or_default(),
        ),
        Err(ureq::Error::Status(status, response)) => {
            (status, response.into_string().unwrap_or_default())
        }
        Err(error) => panic!("{what} failed: {error}"),
    }
}

/// `credentials add` as the admin, password on stdin, answer as JSON.
pub fn add(server: &TestServer, args: &[&str], password: &str) -> Output {
    let mut full = vec!["credentials", "add", "--password-stdin", "--output", "json"];
    full.extend_from_slice(args);
    server.cli(ADMIN_TOKEN, &full, Some(password))
}

/// [`add`] of a login, `[name, registry, username]`, with `password` on stdin.
pub fn add_login(server: &TestServer, login: [&str; 3], password: &str) -> Output {
    add(server, &login_flags(login), password)
}

/// The flags of `credentials add` that name a login: `[name, registry, username]`.
pub fn login_flags([name, registry, username]: [&str; 3]) -> [&str; 6] {
    [
        "--name",
        name,
        "--registry",
        registry,
        "--username",
        username,
    ]
}

/// What kind of credential this is, how it logs in, and how its verification went.
pub fn kind_method_and_status(credential: &regkeeper_wire::Credential) -> (&str, &str, &str) {
    (
        &credential.kind,
        &credential.auth_method,
        &credential.verification.status,
    )
}

/// `regkeeper resolve IMAGE` as the admin, parsed.
pub fn resolve(server: &TestServer, image: &str) -> regkeeper_wire::Resolved {
    serde_json::from_str(&ok(&server.cli(ADMIN_TOKEN, &["resolve", image], None))).unwrap()
}

/// The configuration `serve` would load from these environment variables alone, for
/// tests that build the app in-process.
pub fn config_from(
    variables: &std::collections::HashMap<&str, String>,
) -> regkeeper::config::Config {
    regkeeper::config::Config::load(
        None,
        &|name| variables.get(name).cloned(),
        &regkeeper::config::Overrides::default(),
    )
    .expect("the test configuration loads")
}

/// The application in this process, without HTTP, for tests that drive the service
/// layer and a manual clock themselves: its runtime, the app, and the bootstrap admin
/// (the variables must give `REGKEEPER_BOOTSTRAP_TOKEN` = [`ADMIN_TOKEN`]).
pub struct InProcessApp {
    pub runtime: tokio::runtime::Runtime,
    pub app: std::sync::Arc<regkeeper::service::App>,
    pub admin: regkeeper::domain::identity::Principal,
}

pub fn in_process_app(
    variables: &std::collections::HashMap<&str, String>,
    clock: std::sync::Arc<regkeeper::clock::ManualClock>,
) -> InProcessApp {
    use regkeeper::service::identity;
    let config = config_from(variables);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (app, admin) = runtime.block_on(async {
        let app = regkeeper::serve::build_app(config, clock)
            .await
            .expect("the app builds");
        identity::bootstrap(&app).await.expect("bootstrap");
        let admin = identity::authenticate(&app, ADMIN_TOKEN)
            .await
            .expect("the bootstrap admin signs in");
        (app, admin)
    });
    InProcessApp {
        runtime,
        app,
        admin,
    }
}
