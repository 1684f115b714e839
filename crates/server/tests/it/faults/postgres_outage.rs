//! PostgreSQL stopped and started under load, on a private cluster of the test's own:
//! requests answer 503 with `Retry-After` within seconds, `/readyz` says so, and service
//! resumes without restarting regkeeper.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    api, audit_verifies, log_tail, password_of, resolve_secret, server_holding_steady, CREDENTIALS,
    RESOLVE,
};
use crate::support::eventually;

/// A PostgreSQL cluster of this test's own, on its own port, so that stopping it
/// disturbs no other test. Stopped (immediately) on drop.
struct PrivateCluster {
    bin: PathBuf,
    directory: tempfile::TempDir,
    port: u16,
}

fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

impl PrivateCluster {
    /// `None` (with a message) where no PostgreSQL server binaries are installed,
    /// outside CI.
    fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            let message = "skipping: no PostgreSQL server binaries under /usr/lib/postgresql";
            assert!(!crate::support::ci(), "{message}");
            eprintln!("{message}");
            return None;
        };
        let directory = tempfile::tempdir().expect("temporary directory");
        if running_as_root() {
            // initdb refuses root: the cluster belongs to the postgres user.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(directory.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the cluster directory");
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let cluster = Self {
            bin,
            directory,
            port,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        cluster.start_server();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.directory.path().join("pgdata").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir("/")
            .output()
            .expect("PostgreSQL tool runs");
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.directory.path().display()
        );
        let log = self
            .directory
            .path()
            .join("postgres.log")
            .display()
            .to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    fn stop_server(&self, mode: &str) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .current_dir("/")
            .output();
    }
}

#[test]
fn postgres_stopped_under_load_answers_503_then_recovers_without_a_restart() {
    let Some(cluster) = PrivateCluster::start() else {
        return;
    };
    let server = server_holding_steady(cluster.url());

    // Load: resolves from three threads for the whole test, each answer recorded.
    let running = Arc::new(AtomicBool::new(true));
    let answers = Arc::new(Mutex::new(Vec::<(u16, Duration)>::new()));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url.clone();
            let running = Arc::clone(&running);
            let answers = Arc::clone(&answers);
            std::thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    let answer = resolve_secret(&url, "steady");
                    answers
                        .lock()
                        .unwrap()
                        .push((answer.status, answer.elapsed));
                }
            })
        })
        .collect();
    let wait_for = |status: u16| {
        eventually(
            Duration::from_secs(30),
            Duration::from_millis(20),
            &format!("a {status} answer under load"),
            || {
                answers
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(got, _)| *got == status)
            },
        );
    };
    wait_for(200);

    cluster.stop_server("fast");
    answers.lock().unwrap().clear();
    wait_for(503);
    for path in [RESOLVE, CREDENTIALS] {
        let body = (path == RESOLVE).then(|| serde_json::json!({ "reference": "steady" }));
        let method = if body.is_some() { "POST" } else { "GET" };
        let answer = api(&server.url, method, path, body);
        assert_eq!(answer.status, 503, "{path}: {}", answer.body);
        assert_eq!(answer.retry_after.as_deref(), Some("5"), "{path}");
        assert!(
            answer.elapsed < Duration::from_secs(8),
            "{path} took {:?}",
            answer.elapsed
        );
        let (code, message) = answer.error();
        assert_eq!(code, "database_unavailable", "{message}");
        assert!(message.contains("database"), "{message}");
    }
    let ready = api(&server.url, "GET", "/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["database"], "unavailable");
    {
        let answers = answers.lock().unwrap();
        let unexpected: Vec<_> = answers
            .iter()
            .filter(|(status, _)| *status != 503 && *status != 200)
            .collect();
        assert!(
            unexpected.is_empty(),
            "while down: {unexpected:?}\nserver log:\n{}",
            log_tail(&server)
        );
        assert!(
            answers
                .iter()
                .all(|(_, elapsed)| *elapsed < Duration::from_secs(8)),
            "a request hung while the database was down: {answers:?}"
        );
    }

    cluster.start_server();
    answers.lock().unwrap().clear();
    wait_for(200);
    running.store(false, Ordering::SeqCst);
    for thread in load {
        thread.join().expect("load thread");
    }
    let answer = resolve_secret(&server.url, "steady");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["secret"], password_of("steady").as_str());
    assert_eq!(api(&server.url, "GET", "/readyz", None).status, 200);
    assert!(
        !server.log().contains("panicked"),
        "the server panicked:\n{}",
        server.log()
    );
    audit_verifies(&server);
}
