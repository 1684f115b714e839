//! `moto_server` from `.venv-test` as the AWS the tests talk to (ECR, STS, Secrets
//! Manager, and S3 as a registry's blob storage), since the real one is out of reach
//! and a hand-written fake would only agree with our own reading of the APIs.

use std::path::PathBuf;
use std::process::Command;

use super::process::{available, PeerProcess};

/// The account moto reports for any credentials.
pub const ACCOUNT_ID: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// Moto accepts any signature; these only have to look like keys.
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// `regkeeper credentials add` of an ECR login `name` for `host` in [`REGION`] with
/// moto's keys, the secret passed in the CLI's environment; `extra` flags follow.
pub fn add_ecr_login(
    server: &crate::support::TestServer,
    name: &str,
    host: &str,
    extra: &[&str],
) -> std::process::Output {
    let fixed = [
        "credentials",
        "add",
        "--name",
        name,
        "--type",
        "ecr",
        "--registry",
        host,
        "--aws-region",
        REGION,
        "--username",
        ACCESS_KEY_ID,
        "--password-env",
        "AWS_SECRET",
    ];
    crate::support::run_cli(
        &server.url,
        crate::support::ADMIN_TOKEN,
        &[&fixed, extra].concat(),
        None,
        &[("AWS_SECRET", SECRET_ACCESS_KEY)],
    )
}

/// A `moto_server` process on 127.0.0.1, killed on drop.
pub struct Moto {
    process: PeerProcess,
    endpoint_url: String,
}

/// `.venv-test/bin/moto_server` at the workspace root, where `scripts/test` puts it.
pub fn moto_server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-test/bin/moto_server")
}

impl Moto {
    /// `None` (skip) when `.venv-test` has no moto_server, outside CI.
    pub fn start() -> Option<Self> {
        let binary = moto_server_binary();
        if !available(&binary, "pip package moto[server] in .venv-test") {
            return None;
        }
        let home = std::env::temp_dir();
        let mut command = Command::new(&binary);
        command
            .args(["-H", "127.0.0.1", "-p", "0"])
            // No AWS_* settings of the caller should change what moto does.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("PYTHONUNBUFFERED", "1");
        let mut process = PeerProcess::spawn("moto_server", &mut command);
        // Werkzeug binds port 0 and prints the port it got before serving; the socket
        // is listening by then.
        let endpoint_url = process.wait_for(|line| {
            let rest = line.split("Running on ").nth(1)?;
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_end_matches('/')
                    .to_owned(),
            )
        });
        let moto = Self {
            process,
            endpoint_url,
        };
        let (status, _) = moto.get("/moto-api/");
        assert_eq!(
            status,
            200,
            "moto_server does not answer /moto-api/: {}",
            moto.process.output()
        );
        Some(moto)
    }

    /// `http://127.0.0.1:PORT`, for an AWS SDK's endpoint override.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    /// Forgets every resource moto holds (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let response = ureq::post(&format!("{}/moto-api/reset", self.endpoint_url))
            .send_bytes(b"")
            .expect("moto reset");
        assert_eq!(response.status(), 200, "moto reset");
    }

    /// A plain GET on moto, returning status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        crate::support::status_and_text(
            ureq::get(&format!("{}{path}", self.endpoint_url)).call(),
            "moto request",
        )
    }

    /// Calls an AWS JSON-1.1 API (`X-Amz-Target`) on moto.
    pub fn call_json_api(
        &self,
        service: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let result = ureq::post(&format!("{}/", self.endpoint_url))
            .set("Content-Type", "application/x-amz-json-1.1")
            .set("X-Amz-Target", target)
            .set("Authorization", &authorization(service))
            .send_string(&body.to_string());
        let (status, text) = crate::support::status_and_text(result, "moto request");
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value)
    }

    /// Calls an AWS query-protocol API (STS) on moto with a form POST; the body is
    /// returned as text (XML).
    pub fn call_query_api(&self, service: &str, parameters: &[(&str, &str)]) -> (u16, String) {
        let result = ureq::post(&format!("{}/", self.endpoint_url))
            .set("Authorization", &authorization(service))
            .send_form(parameters);
        crate::support::status_and_text(result, "moto request")
    }

    /// Creates an S3 bucket (`PUT /BUCKET`, path style; moto serves S3 on the same port
    /// as every other service).
    pub fn create_bucket(&self, bucket: &str) {
        let result = ureq::put(&format!("{}/{bucket}", self.endpoint_url))
            .set("Authorization", &authorization("s3"))
            .send_bytes(b"");
        match result {
            Ok(response) => assert_eq!(response.status(), 200, "create bucket {bucket}"),
            Err(ureq::Error::Status(status, response)) => panic!(
                "moto refused to create bucket {bucket} ({status}): {}",
                response.into_string().unwrap_or_default()
            ),
            Err(error) => panic!("moto request failed: {error}"),
        }
    }

    /// An S3 object's status and body (`GET /BUCKET/KEY`, path style).
    pub fn get_object(&self, bucket: &str, key: &str) -> (u16, Vec<u8>) {
        let result = ureq::get(&format!("{}/{bucket}/{key}", self.endpoint_url))
            .set("Authorization", &authorization("s3"))
            .call();
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("moto request failed: {error}"),
        };
        let status = response.status();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).expect("object body");
        (status, body)
    }

    /// Writes an S3 object (`PUT /BUCKET/KEY`), as another writer of the bucket would.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let result = ureq::put(&format!("{}/{bucket}/{key}", self.endpoint_url))
            .set("Authorization", &authorization("s3"))
            .send_bytes(body);
        match result {
            Ok(response) => assert_eq!(response.status(), 200, "put {bucket}/{key}"),
            Err(error) => panic!("moto refused to put {bucket}/{key}: {error}"),
        }
    }

    /// The keys under `prefix` in `bucket` (one ListObjectsV2 page).
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let result = ureq::get(&format!("{}/{bucket}", self.endpoint_url))
            .query("list-type", "2")
            .query("prefix", prefix)
            .set("Authorization", &authorization("s3"))
            .call();
        let (status, text) = crate::support::status_and_text(result, "moto list");
        assert_eq!(status, 200, "list {bucket}: {text}");
        text.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// What moto_server has printed so far, for failure messages.
    pub fn log(&self) -> String {
        self.process.output()
    }
}

/// An unsigned SigV4-shaped header: moto routes a request by the service and region it
/// names, and checks no signature.
fn authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}
