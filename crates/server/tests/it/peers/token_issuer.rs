//! A Docker token service (the "realm" of a `Bearer` challenge) the tests run in
//! process, because distribution ships none: it checks users, signs JWTs that
//! distribution verifies against its `rootcertbundle`, and counts what it issued so
//! tests can see whether regkeeper caches tokens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair, KeyUsagePurpose};

use super::http_server::HttpServer;
use super::tls::TestCa;
use crate::support::unix_now;

/// The `iss` claim, and the `issuer` distribution is configured to expect.
pub const ISSUER: &str = "regkeeper-test-issuer";
/// The `service` distribution announces in its challenge, and so the token's `aud`.
pub const SERVICE: &str = "test-registry";

/// Users of the default issuer: `pusher` may pull and push, `puller` only pull.
pub const PUSHER: &str = "pusher";
pub const PUSHER_PASSWORD: &str = "pusher-password";
pub const PULLER: &str = "puller";
pub const PULLER_PASSWORD: &str = "puller-password";

/// A user of the token service and the repository actions it is granted on every
/// repository; requested actions outside these are left out of the token, as Docker
/// token services do, rather than refused. `"*"` grants whatever is asked.
#[derive(Clone, Debug)]
pub struct TokenUser {
    pub username: String,
    pub password: String,
    pub actions: Vec<String>,
}

impl TokenUser {
    pub fn new(username: &str, password: &str, actions: &[&str]) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            actions: actions.iter().map(|action| (*action).to_owned()).collect(),
        }
    }
}

pub struct TokenIssuerOptions {
    pub users: Vec<TokenUser>,
    /// `expires_in` of issued tokens, in seconds; also the JWT's lifetime.
    pub expires_in: u64,
    /// Serve HTTPS with the CA's server certificate; plain HTTP when false.
    pub tls: bool,
    /// The CA whose server certificate HTTPS presents; a new one when absent.
    pub ca: Option<Arc<TestCa>>,
}

impl Default for TokenIssuerOptions {
    fn default() -> Self {
        Self {
            users: vec![
                TokenUser::new(PUSHER, PUSHER_PASSWORD, &["pull", "push"]),
                TokenUser::new(PULLER, PULLER_PASSWORD, &["pull"]),
            ],
            expires_in: 300,
            tls: true,
            ca: None,
        }
    }
}

/// One request the service answered, for assertions on what a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` (Docker token protocol) or `POST` (OAuth2 form).
    pub method: String,
    /// `password`, `refresh_token`, or empty for a GET.
    pub grant_type: String,
    /// The authenticated user; empty for anonymous or refused requests.
    pub username: String,
    pub service: String,
    pub scopes: Vec<String>,
    pub status: u16,
}

struct IssuerState {
    users: Vec<TokenUser>,
    expires_in: AtomicU64,
    /// How many of the next tokens name another audience, so the registry refuses them.
    unusable: AtomicUsize,
    unavailable: AtomicBool,
    issued: AtomicUsize,
    refresh_tokens: Mutex<HashMap<String, String>>,
    requests: Mutex<Vec<TokenRequest>>,
    signing_key: jsonwebtoken::EncodingKey,
    x5c: String,
}

/// The token service on 127.0.0.1, stopped on drop.
pub struct TokenIssuer {
    url: String,
    ca: Arc<TestCa>,
    state: Arc<IssuerState>,
    signing_cert_pem: String,
    signing_cert_file: PathBuf,
    /// Serves until the issuer is dropped.
    _server: HttpServer,
    _directory: tempfile::TempDir,
}

impl TokenIssuer {
    /// HTTPS, users `pusher` (pull, push) and `puller` (pull), tokens for 300 s.
    pub fn start() -> Self {
        Self::start_with(TokenIssuerOptions::default())
    }

    pub fn start_with(options: TokenIssuerOptions) -> Self {
        let ca = options.ca.unwrap_or_else(|| Arc::new(TestCa::generate()));

        // A self-signed signing certificate: distribution accepts an `x5c` chain whose
        // first certificate is itself in `rootcertbundle`, and it insists on the
        // digitalSignature key usage.
        let signing_key = KeyPair::generate().expect("signing key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("signing params");
        params
            .distinguished_name
            .push(DnType::CommonName, "regkeeper test token signer");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let signing_cert = params
            .self_signed(&signing_key)
            .expect("signing certificate");
        let directory = tempfile::tempdir().expect("temporary directory");
        let signing_cert_pem = signing_cert.pem();
        let signing_cert_file = directory.path().join("token-signing.pem");
        std::fs::write(&signing_cert_file, &signing_cert_pem).expect("write signing cert");

        let state = Arc::new(IssuerState {
            users: options.users,
            expires_in: AtomicU64::new(options.expires_in),
            unusable: AtomicUsize::new(0),
            unavailable: AtomicBool::new(false),
            issued: AtomicUsize::new(0),
            refresh_tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            signing_key: jsonwebtoken::EncodingKey::from_ec_der(&signing_key.serialize_der()),
            x5c: base64::engine::general_purpose::STANDARD.encode(signing_cert.der()),
        });

        let router = axum::Router::new()
            .route("/token", axum::routing::get(get_token).post(post_token))
            .with_state(Arc::clone(&state));
        let server = HttpServer::start(options.tls.then_some(&*ca), |_| router);
        let url = server.url();

        Self {
            url,
            ca,
            state,
            signing_cert_pem,
            signing_cert_file,
            _server: server,
            _directory: directory,
        }
    }

    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The realm distribution sends clients to: `URL/token`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The CA that issued the HTTPS certificate; registries started with
    /// `Registry::token_auth` share it, so one `ca.pem` trusts both.
    pub fn ca(&self) -> &Arc<TestCa> {
        &self.ca
    }

    /// The token-signing certificate, for distribution's `rootcertbundle`.
    pub fn signing_cert_file(&self) -> &Path {
        &self.signing_cert_file
    }

    pub fn signing_cert_pem(&self) -> &str {
        &self.signing_cert_pem
    }

    /// Access tokens issued so far (refused requests do not count).
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// The next `count` tokens are issued for another audience: the registry refuses
    /// them although `expires_in` promises the usual lifetime, as it would a revoked
    /// token. (Distribution allows a minute of leeway past `exp`, so an early expiry
    /// would not do.)
    pub fn issue_unusable(&self, count: usize) {
        self.state.unusable.store(count, Ordering::SeqCst);
    }

    /// While set, every request gets `503 Service Unavailable`, to test how clients
    /// ride out an outage of the token service.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The claims of a JWT this service issued, read without checking the signature
    /// (distribution is what checks it for real).
    pub fn claims(token: &str) -> serde_json::Value {
        let payload = token.split('.').nth(1).expect("a JWT has three parts");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url payload");
        serde_json::from_slice(&bytes).expect("JSON claims")
    }

    /// The JOSE header of a JWT, likewise unverified.
    pub fn header(token: &str) -> serde_json::Value {
        let header = token.split('.').next().expect("a JWT header");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("base64url header");
        serde_json::from_slice(&bytes).expect("JSON header")
    }
}

#[derive(serde::Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{"code": code, "message": message}],
        "error": code.to_lowercase(),
        "error_description": message,
    });
    (status, Json(body)).into_response()
}

/// Grants, per requested `type:name:actions` scope, the requested actions the user
/// holds. Only `repository` scopes are granted anything.
fn grant(user: Option<&TokenUser>, scopes: &[String]) -> Vec<Access> {
    let mut granted: Vec<Access> = Vec::new();
    for scope in scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let allowed: Vec<String> = match user {
            Some(user) if kind == "repository" => actions
                .split(',')
                .filter(|action| {
                    user.actions
                        .iter()
                        .any(|held| held == "*" || held == action)
                })
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        match granted
            .iter_mut()
            .find(|access| access.kind == kind && access.name == name)
        {
            Some(existing) => {
                for action in allowed {
                    if !existing.actions.contains(&action) {
                        existing.actions.push(action);
                    }
                }
            }
            None => granted.push(Access {
                kind: kind.to_owned(),
                name: name.to_owned(),
                actions: allowed,
            }),
        }
    }
    granted
}

struct Issued {
    token: String,
    expires_in: u64,
    issued_at: String,
    scope: String,
}

fn issue(
    state: &IssuerState,
    user: Option<&TokenUser>,
    service: &str,
    scopes: &[String],
) -> Issued {
    let now = unix_now();
    let expires_in = state.expires_in.load(Ordering::SeqCst);
    let access = grant(user, scopes);
    let scope = access
        .iter()
        .filter(|access| !access.actions.is_empty())
        .map(|access| {
            format!(
                "{}:{}:{}",
                access.kind,
                access.name,
                access.actions.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let claims = Claims {
        iss: ISSUER,
        sub: user.map_or("", |user| user.username.as_str()),
        aud: if state
            .unusable
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            "another-service"
        } else {
            service
        },
        exp: now + expires_in,
        nbf: now,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        access,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(vec![state.x5c.clone()]);
    let token = jsonwebtoken::encode(&header, &claims, &state.signing_key).expect("sign JWT");
    state.issued.fetch_add(1, Ordering::SeqCst);
    let issued_at = time::OffsetDateTime::from_unix_timestamp(now as i64)
        .expect("timestamp")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    Issued {
        token,
        expires_in,
        issued_at,
        scope,
    }
}

fn find_user<'a>(state: &'a IssuerState, username: &str, password: &str) -> Option<&'a TokenUser> {
    state
        .users
        .iter()
        .find(|user| user.username == username && user.password == password)
}

fn new_refresh_token(state: &IssuerState, username: &str) -> String {
    let token = format!("refresh-{}", uuid::Uuid::new_v4().simple());
    state
        .refresh_tokens
        .lock()
        .expect("refresh tokens lock")
        .insert(token.clone(), username.to_owned());
    token
}

fn record(state: &IssuerState, request: TokenRequest) {
    state.requests.lock().expect("requests lock").push(request);
}

/// Records `request` as refused with `status`, and answers with distribution's error body.
/// The record of a request as received, or the 503 (recorded) every request gets
/// while the service is switched off.
fn received(
    state: &IssuerState,
    method: &str,
    grant_type: &str,
    service: &str,
    scopes: &[String],
) -> Result<TokenRequest, Box<Response>> {
    let request = TokenRequest {
        method: method.to_owned(),
        grant_type: grant_type.to_owned(),
        username: String::new(),
        service: service.to_owned(),
        scopes: scopes.to_vec(),
        status: 200,
    };
    if state.unavailable.load(Ordering::SeqCst) {
        return Err(Box::new(refuse(
            state,
            request,
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "token service is down",
        )));
    }
    Ok(request)
}

fn refuse(
    state: &IssuerState,
    mut request: TokenRequest,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    request.status = status.as_u16();
    record(state, request);
    error(status, code, message)
}

fn basic_credentials(headers: &HeaderMap) -> Option<Option<(String, String)>> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?;
    let parsed = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.split_once(':')
                .map(|(user, password)| (user.to_owned(), password.to_owned()))
        });
    Some(parsed)
}

/// The Docker token protocol: `GET /token?service=…&scope=…` with optional Basic auth.
async fn get_token(
    State(state): State<Arc<IssuerState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut service = String::new();
    let mut scopes = Vec::new();
    let mut offline = false;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "service" => service = value.into_owned(),
            // Repeated `scope` parameters, each possibly space-separated.
            "scope" => scopes.extend(
                value
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            "offline_token" => offline = value == "true",
            _ => {}
        }
    }
    let mut request = match received(&state, "GET", "", &service, &scopes) {
        Ok(request) => request,
        Err(unavailable) => return *unavailable,
    };
    let user = match basic_credentials(&headers) {
        None => None,
        Some(Some((username, password))) => match find_user(&state, &username, &password) {
            Some(user) => Some(user),
            None => {
                return refuse(
                    &state,
                    request,
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "invalid username or password",
                );
            }
        },
        Some(None) => {
            return refuse(
                &state,
                request,
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "malformed Basic credentials",
            );
        }
    };
    let audience = if service.is_empty() {
        SERVICE
    } else {
        &service
    };
    let issued = issue(&state, user, audience, &scopes);
    let mut body = serde_json::json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
    });
    if let (true, Some(user)) = (offline, user) {
        body["refresh_token"] = new_refresh_token(&state, &user.username).into();
    }
    request.username = user.map(|user| user.username.clone()).unwrap_or_default();
    record(&state, request);
    Json(body).into_response()
}

/// The OAuth2 flavour: `POST /token` with a form, `grant_type` `password` or
/// `refresh_token`.
async fn post_token(State(state): State<Arc<IssuerState>>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let grant_type = field("grant_type");
    let service = field("service");
    let scopes: Vec<String> = field("scope")
        .split(' ')
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect();
    let mut request = match received(&state, "POST", &grant_type, &service, &scopes) {
        Ok(request) => request,
        Err(unavailable) => return *unavailable,
    };
    let user = match grant_type.as_str() {
        "password" => find_user(&state, &field("username"), &field("password")),
        "refresh_token" => {
            let owner = state
                .refresh_tokens
                .lock()
                .expect("refresh tokens lock")
                .get(&field("refresh_token"))
                .cloned();
            owner.and_then(|owner| state.users.iter().find(|user| user.username == owner))
        }
        _ => {
            return refuse(
                &state,
                request,
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED_GRANT_TYPE",
                "grant_type must be password or refresh_token",
            );
        }
    };
    let Some(user) = user else {
        return refuse(
            &state,
            request,
            StatusCode::UNAUTHORIZED,
            "INVALID_GRANT",
            "invalid credentials or refresh token",
        );
    };
    let audience = if service.is_empty() {
        SERVICE
    } else {
        &service
    };
    let issued = issue(&state, Some(user), audience, &scopes);
    let mut body = serde_json::json!({
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
        "scope": issued.scope,
    });
    if field("access_type") == "offline" {
        let refresh_token = match grant_type.as_str() {
            "refresh_token" => field("refresh_token"),
            _ => new_refresh_token(&state, &user.username),
        };
        body["refresh_token"] = refresh_token.into();
    }
    request.username = user.username.clone();
    record(&state, request);
    Json(body).into_response()
}
