//! A hand-written fake of Google's OAuth 2.0 token endpoint for service accounts
//! (the JWT-bearer grant), because the real one cannot run here. It checks the
//! assertion as Google does — RS256 signature against the account's registered public
//! key, `iss`, `aud`, `scope`, `iat`/`exp` within an hour — and answers with Google's
//! JSON and errors. The access token it issues for [`CLIENT_EMAIL`] is fixed
//! ([`ACCESS_TOKEN`]), so a distribution registry can be set up beforehand to accept
//! it as the password of `oauth2accesstoken`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;

use super::peers::http_server::HttpServer;
use super::support::unix_now;

/// The service account the fake knows.
pub const CLIENT_EMAIL: &str = "puller@regkeeper-test.iam.gserviceaccount.com";
pub const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
/// What the fake issues to [`CLIENT_EMAIL`], every time.
pub const ACCESS_TOKEN: &str = "ya29.fake-access-token-for-regkeeper-tests";
pub const EXPIRES_IN: u64 = 3599;
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An RSA key pair in PEM (PKCS#8 private, SPKI public), as Google's key files hold.
pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
}

fn generate() -> TestKey {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key");
    TestKey {
        private_pem: private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .to_string(),
        public_pem: rsa::RsaPublicKey::from(&private)
            .to_public_key_pem(LineEnding::LF)
            .expect("SPKI PEM"),
    }
}

/// The key registered for [`CLIENT_EMAIL`], made once per test process.
pub fn registered_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// A key Google has never seen: assertions it signs do not verify.
pub fn unregistered_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// A service-account JSON key file as the Google Cloud console downloads it. Its
/// `token_uri` points at a port nothing listens on: regkeeper must use its configured
/// endpoint instead, so a credential works only if that is what it did.
pub fn key_file(key: &TestKey, client_email: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "regkeeper-test",
        "private_key_id": KEY_ID,
        "private_key": key.private_pem,
        "client_email": client_email,
        "client_id": "109876543210987654321",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "http://127.0.0.1:9/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/puller%40regkeeper-test.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

/// One token request the fake answered.
#[derive(Clone, Debug)]
pub struct GoogleRequest {
    pub status: u16,
    /// Google's `error_description`, empty on success.
    pub error: String,
}

struct GoogleState {
    token_url: String,
    decoding_key: jsonwebtoken::DecodingKey,
    requests: Mutex<Vec<GoogleRequest>>,
}

/// `POST /token` on plain http at 127.0.0.1 (regkeeper accepts http for a loopback
/// `REGKEEPER_GOOGLE_TOKEN_URL`, for this fake's sake).
pub struct FakeGoogleOAuth {
    server: HttpServer,
    state: Arc<GoogleState>,
}

impl FakeGoogleOAuth {
    pub fn start() -> Self {
        let decoding_key =
            jsonwebtoken::DecodingKey::from_rsa_pem(registered_key().public_pem.as_bytes())
                .expect("public key");
        let mut shared = None;
        let server = HttpServer::start(None, |address| {
            let state = Arc::new(GoogleState {
                token_url: format!("http://{address}/token"),
                decoding_key,
                requests: Mutex::new(Vec::new()),
            });
            shared = Some(Arc::clone(&state));
            Router::new()
                .route("/token", axum::routing::post(token))
                .with_state(state)
        });
        Self {
            server,
            state: shared.expect("router built"),
        }
    }

    /// For `REGKEEPER_GOOGLE_TOKEN_URL`; also the `aud` assertions must name.
    pub fn token_url(&self) -> String {
        self.state.token_url.clone()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<GoogleRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    scope: String,
    iat: u64,
    exp: u64,
}

fn refuse(status: StatusCode, error: &str, description: &str) -> (StatusCode, String, Response) {
    let body = serde_json::json!({"error": error, "error_description": description});
    (
        status,
        description.to_owned(),
        (status, Json(body)).into_response(),
    )
}

/// The unverified claims, to find the account whose key must have signed them.
fn peek_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

fn check(state: &GoogleState, fields: &HashMap<String, String>) -> (StatusCode, String, Response) {
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    if field("grant_type") != GRANT_TYPE {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        );
    }
    let assertion = field("assertion");
    let Ok(header) = jsonwebtoken::decode_header(&assertion) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid JWT.");
    };
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Unsupported algorithm.",
        );
    }
    if peek_issuer(&assertion).as_deref() != Some(CLIENT_EMAIL) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid grant: account not found",
        );
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&state.token_url]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
    let claims = match jsonwebtoken::decode::<Claims>(&assertion, &state.decoding_key, &validation)
    {
        Ok(data) => data.claims,
        Err(error) => {
            use jsonwebtoken::errors::ErrorKind;
            let description = match error.kind() {
                ErrorKind::InvalidSignature => "Invalid JWT Signature.",
                ErrorKind::InvalidAudience => "Invalid JWT: Failed audience check.",
                ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
                _ => "Invalid JWT.",
            };
            return refuse(StatusCode::BAD_REQUEST, "invalid_grant", description);
        }
    };
    let now = unix_now();
    if claims.exp.saturating_sub(claims.iat) > 3600 || claims.iat > now + 60 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if !claims.scope.split(' ').any(|scope| scope == SCOPE) || claims.iss != CLIENT_EMAIL {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    let body = serde_json::json!({
        "access_token": ACCESS_TOKEN,
        "expires_in": EXPIRES_IN,
        "token_type": "Bearer",
    });
    (StatusCode::OK, String::new(), Json(body).into_response())
}

async fn token(State(state): State<Arc<GoogleState>>, body: String) -> Response {
    let fields: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let (status, error, response) = check(&state, &fields);
    state
        .requests
        .lock()
        .expect("requests lock")
        .push(GoogleRequest {
            status: status.as_u16(),
            error,
        });
    response
}

mod tests {
    use super::*;

    fn assertion(key: &TestKey, audience: &str, lifetime: u64) -> String {
        let now = unix_now();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(KEY_ID.to_owned());
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({
                "iss": CLIENT_EMAIL,
                "scope": SCOPE,
                "aud": audience,
                "iat": now,
                "exp": now + lifetime,
            }),
            &jsonwebtoken::EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).expect("key"),
        )
        .expect("sign")
    }

    #[test]
    fn fake_google_oauth_checks_signature_audience_and_lifetime() {
        let google = FakeGoogleOAuth::start();
        let audience = google.token_url();
        let exchange = |assertion: String| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    let response = reqwest::Client::new()
                        .post(google.token_url())
                        .form(&[("grant_type", GRANT_TYPE), ("assertion", &assertion)])
                        .send()
                        .await
                        .expect("POST");
                    let status = response.status().as_u16();
                    (
                        status,
                        response.json::<serde_json::Value>().await.expect("JSON"),
                    )
                })
        };
        let (status, body) = exchange(assertion(registered_key(), &audience, 3600));
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["access_token"], &body["expires_in"]),
            (&ACCESS_TOKEN.into(), &EXPIRES_IN.into())
        );
        for (assertion, description) in [
            (
                assertion(unregistered_key(), &audience, 3600),
                "Invalid JWT Signature.",
            ),
            (
                assertion(registered_key(), "https://oauth2.googleapis.com/token", 3600),
                "Invalid JWT: Failed audience check.",
            ),
            (
                assertion(registered_key(), &audience, 7200),
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            ),
        ] {
            let (status, body) = exchange(assertion);
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"], "invalid_grant");
            assert_eq!(body["error_description"], description);
        }
        assert_eq!(google.requests().len(), 4);
        assert!(google.url().starts_with("http://127.0.0.1:"));
    }
}
