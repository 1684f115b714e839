//! What `regkeeper serve` shows and keeps at start-up (issue 12): the banner's
//! `REGKEEPER_URL` line, and no bootstrap token left in the process's environment.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::support::{binary, ok, run_cli, stderr, TestServer, ADMIN_TOKEN};

/// A started server, killed and waited for on drop.
struct Served {
    child: Child,
    _directory: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `regkeeper serve` with only `environment`, and its stdout up to the line that says
/// it listens.
fn serve(args: &[&str], environment: &[(&str, &str)]) -> (Served, String) {
    let directory = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REGKEEPER_DATA_DIR", directory.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in environment {
        command.env(name, value);
    }
    let mut served = Served {
        child: command.spawn().expect("regkeeper serve starts"),
        _directory: directory,
    };
    let stdout = served.child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = String::new();
    loop {
        let line = receiver
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("regkeeper listening on ") {
            // Keep reading, so the server never writes to a closed pipe.
            std::thread::spawn(move || while receiver.recv().is_ok() {});
            return (served, printed);
        }
    }
}

fn listening_url(printed: &str) -> String {
    printed
        .lines()
        .find_map(|line| line.strip_prefix("regkeeper listening on "))
        .expect("the listening line")
        .trim()
        .to_owned()
}

/// Issue 12 item 15: the banner prints the `export REGKEEPER_URL=…` that matches the
/// actual listen address next to a generated token, and the URL line on every start,
/// so the two pasted lines work with a non-default `--listen`.
#[test]
fn the_banner_says_which_url_goes_with_the_token() {
    let (served, printed) = serve(&["--listen", "127.0.0.1:0"], &[]);
    let url = listening_url(&printed);
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":7070"),
        "{url}"
    );
    let export_url = format!("    export REGKEEPER_URL={url}");
    let lines: Vec<&str> = printed.lines().collect();
    let at = lines
        .iter()
        .position(|line| *line == export_url)
        .unwrap_or_else(|| panic!("no `{export_url}` in:\n{printed}"));
    let token = lines[at + 1]
        .strip_prefix("    export REGKEEPER_TOKEN=")
        .unwrap_or_else(|| panic!("the token does not follow the URL:\n{printed}"));
    assert!(printed.contains(&format!(
        "Clients reach this server with: export REGKEEPER_URL={url}"
    )));
    // The two lines work as printed.
    let output = run_cli(&url, token, &["credentials", "list"], None, &[]);
    ok(&output);
    drop(served);

    // An unspecified address is reached on loopback; the URL line is there every time.
    let (served, printed) = serve(
        &["--listen", "0.0.0.0:0"],
        &[("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN)],
    );
    let port = listening_url(&printed)
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        printed.contains(&format!(
            "Clients reach this server with: export REGKEEPER_URL=http://127.0.0.1:{port}\n"
        )),
        "{printed}"
    );
    assert!(!printed.contains(ADMIN_TOKEN), "{printed}");
    drop(served);
}

/// Issue 12 item 18: the bootstrap token given in REGKEEPER_BOOTSTRAP_TOKEN is gone from
/// the running server's environment as the kernel shows it (`/proc/PID/environ`, which
/// `env::remove_var` alone would not change), and it still made the first admin.
#[test]
fn the_bootstrap_token_leaves_the_servers_environment() {
    let server = TestServer::start();
    let pid = server.pid();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc/PID/environ");
    assert!(
        !super::support::contains(&environ, ADMIN_TOKEN),
        "the bootstrap token is still in /proc/{pid}/environ"
    );
    assert!(
        !super::support::contains(&environ, "REGKEEPER_BOOTSTRAP_TOKEN"),
        "the variable is still in /proc/{pid}/environ"
    );
    // The rest of the environment is kept.
    assert!(super::support::contains(&environ, "REGKEEPER_DATA_DIR="));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!super::support::contains(&cmdline, ADMIN_TOKEN));
    ok(&server.cli(ADMIN_TOKEN, &["credentials", "list"], None));

    // Given on standard input instead, and both ways at once is refused.
    let output = Command::new(binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--bootstrap-token-stdin",
        ])
        .env_clear()
        .env("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("one way only"),
        "{}",
        stderr(&output)
    );
}
