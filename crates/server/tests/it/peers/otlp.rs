//! An OTLP/HTTP trace receiver (`otlp_receiver.py`, on the OpenTelemetry project's
//! protobuf definitions from PyPI `opentelemetry-proto` in `.venv-test`): what the
//! server exports, decoded, one span per line; and the request bodies as sent.

use std::path::PathBuf;
use std::process::Command;

use super::process::{available, ci, PeerProcess};

pub struct OtlpReceiver {
    _process: PeerProcess,
    pub port: u16,
    out: PathBuf,
    _directory: tempfile::TempDir,
}

impl OtlpReceiver {
    /// `None` (skip) when `.venv-test` has no Python with `opentelemetry-proto`,
    /// outside CI.
    pub fn start() -> Option<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join(".venv-test/bin/python");
        if !available(&python, "python3-venv and .venv-test") {
            return None;
        }
        let has_proto = Command::new(&python)
            .args(["-c", "import opentelemetry.proto.collector.trace.v1"])
            .status()
            .is_ok_and(|status| status.success());
        if !has_proto {
            let message = "pip package opentelemetry-proto is missing from .venv-test (`scripts/test --setup-only` installs it)";
            assert!(!ci(), "{message}; CI=true requires it");
            eprintln!("skipping: {message}; CI=true makes this a failure");
            return None;
        }
        let directory = tempfile::tempdir().unwrap();
        let out = directory.path().join("spans.jsonl");
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/peers/otlp_receiver.py");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg(&out)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PYTHONUNBUFFERED", "1");
        let mut process = PeerProcess::spawn("otlp receiver", &mut command);
        let port = process.wait_for(|line| {
            line.strip_prefix("otlp receiver listening on ")?
                .trim()
                .parse()
                .ok()
        });
        Some(Self {
            _process: process,
            port,
            out,
            _directory: directory,
        })
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, decoded (and any error line).
    pub fn spans(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The export requests' bodies as the server sent them.
    pub fn raw(&self) -> Vec<u8> {
        std::fs::read(self.out.with_extension("jsonl.raw")).unwrap_or_default()
    }
}
