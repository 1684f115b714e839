//! A real OIDC identity provider: `oauth2-mock-server` (npm, crates/server/tests/oidc)
//! over HTTPS with the test CA, serving discovery, JWKS and signed tokens. It signs
//! with an ES256 key this module makes, so tests can also forge what no provider
//! issues (expired, `none`, HS256 with the public key, a rotated key).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::KeyPair;
use serde_json::Value;

use super::process::{available, PeerProcess};
use super::tls::TestCa;

const NODE: &str = "/usr/bin/node";

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// A signing key the provider publishes under `kid`.
pub struct SigningKey {
    pub kid: String,
    pub pair: KeyPair,
}

impl SigningKey {
    pub fn generate(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: KeyPair::generate().expect("ES256 key"),
        }
    }

    /// Signs `claims` as the provider would (ES256, this key's `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.pair.serialize_der());
        jsonwebtoken::encode(&header, claims, &key).expect("sign JWT")
    }

    fn write(&self, directory: &Path) -> PathBuf {
        let path = directory.join(format!("signing-{}.pem", self.kid));
        std::fs::write(&path, self.pair.serialize_pem()).expect("write signing key");
        path
    }
}

pub struct IdentityProvider {
    process: PeerProcess,
    /// `https://127.0.0.1:PORT`: the discovery document's `issuer` and tokens' `iss`.
    pub issuer: String,
    pub key: SigningKey,
    directory: PathBuf,
    http: reqwest::Client,
}

impl IdentityProvider {
    /// `None` (the test skips, outside CI) when node or the npm project is missing.
    pub fn start(ca: &TestCa, kid: &str) -> Option<Self> {
        if !available(Path::new(NODE), "Debian package nodejs")
            || !available(
                &project().join("node_modules/oauth2-mock-server/package.json"),
                "npm ci in crates/server/tests/oidc",
            )
        {
            return None;
        }
        let key = SigningKey::generate(kid);
        let signing_file = key.write(ca.directory());
        let mut process = PeerProcess::spawn_with_stdin(
            "oauth2-mock-server",
            Command::new(NODE)
                .current_dir(project())
                .arg("issuer.mjs")
                .arg(ca.server_cert_file())
                .arg(ca.server_key_file())
                .arg(&signing_file)
                .arg(kid)
                .stdin(Stdio::piped()),
        );
        let issuer = process.wait_for(|line| line.strip_prefix("listening ").map(str::to_owned));
        Some(Self {
            process,
            issuer,
            key,
            directory: ca.directory().to_owned(),
            http: ca.http_client(),
        })
    }

    /// A token the provider itself issues for `audience`, with `claims` merged in.
    pub async fn token(&self, audience: &str, claims: &Value) -> String {
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("aud", audience),
                ("claims", &claims.to_string()),
            ])
            .send()
            .await
            .expect("token request");
        assert!(
            response.status().is_success(),
            "token request: {}",
            response.status()
        );
        let body: Value = response.json().await.expect("token response");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Sends `line` on the provider's stdin and waits for its answer `done`.
    fn command(&mut self, line: &str, done: &str) {
        self.process
            .stdin()
            .expect("stdin piped")
            .write_all(format!("{line}\n").as_bytes())
            .expect("command the provider");
        self.process
            .wait_for(|answer| (answer == done).then_some(()));
    }

    /// Makes the token endpoint demand this client's secret (HTTP Basic).
    pub fn require_client(&mut self, id: &str, secret: &str) {
        self.command(&format!("client {id} {secret}"), "client set");
    }

    /// The claims of the person a real browser signs in as (no `claims` parameter).
    pub fn set_login(&mut self, claims: &Value) {
        self.command(&format!("login {claims}"), "login set");
    }

    /// Publishes another key (a rotation) and waits until the provider serves it.
    pub fn add_key(&mut self, key: &SigningKey) {
        let path = key.write(&self.directory);
        let command = format!("add {} {}\n", key.kid, path.display());
        self.process
            .stdin()
            .expect("stdin piped")
            .write_all(command.as_bytes())
            .expect("command the provider");
        let done = format!("added {}", key.kid);
        self.process.wait_for(|line| (line == done).then_some(()));
    }
}
