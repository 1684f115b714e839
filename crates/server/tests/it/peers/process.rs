//! A child process the tests own: its output kept for failure messages, readiness read
//! from what it prints, and the process killed when the owner is dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a peer may take to say it is ready; generous for a loaded 2-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Whether `program` exists. Outside CI a missing one makes the caller skip (and say
/// so); with `CI=true` it fails the test, as `PostgresDatabase::create` does.
pub fn available(program: &Path, how_to_get_it: &str) -> bool {
    if program.is_file() {
        return true;
    }
    let message = format!(
        "{} is missing ({how_to_get_it}; `scripts/test --setup-only` installs every test prerequisite)",
        program.display()
    );
    assert!(!ci(), "{message}; CI=true requires it");
    eprintln!("skipping: {message}; CI=true makes this a failure");
    false
}

pub struct PeerProcess {
    name: String,
    child: Child,
    output: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl PeerProcess {
    /// Starts `command` with stdout and stderr captured line by line.
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        Self::spawn_with_stdin(name, command.stdin(Stdio::null()))
    }

    /// As [`PeerProcess::spawn`], keeping whatever stdin `command` was given (a pipe
    /// for a peer that takes commands; see [`PeerProcess::stdin`]).
    pub fn spawn_with_stdin(name: &str, command: &mut Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("{name} does not start: {error}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        drain(stdout, sender.clone(), Arc::clone(&output));
        drain(stderr, sender, Arc::clone(&output));
        Self {
            name: name.to_owned(),
            child,
            output,
            lines,
        }
    }

    /// Waits until a printed line makes `ready` return something, and returns it. Fails
    /// with everything the process printed if it exits or stays silent too long.
    pub fn wait_for<T>(&mut self, mut ready: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = ready(&line) {
                        return found;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "{} exited ({status:?}) before it was ready; output:\n{}",
                        self.name,
                        self.output()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} was not ready within {READY_TIMEOUT:?}; output:\n{}",
                    self.name,
                    self.output()
                ),
            }
        }
    }

    /// The process's stdin, if it was spawned with a pipe there.
    pub fn stdin(&mut self) -> Option<&mut std::process::ChildStdin> {
        self.child.stdin.as_mut()
    }

    /// Everything the process printed so far, stdout and stderr interleaved.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }
}

/// Keeps reading after readiness too, so a chatty peer never blocks on a full pipe.
fn drain(
    stream: impl Read + Send + 'static,
    sender: mpsc::Sender<String>,
    output: Arc<Mutex<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            {
                let mut output = output.lock().expect("output lock");
                output.push_str(&line);
                output.push('\n');
            }
            // The receiver is gone once the owner stops listening; keep draining.
            let _ = sender.send(line);
        }
    });
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
