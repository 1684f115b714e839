//! A hand-written fake of Azure AD's v2.0 token endpoint and of the token side of an
//! Azure container registry (`/oauth2/exchange`, `/oauth2/token`, `/v2/`), because
//! neither can run here and distribution has no ACR exchange. They follow the
//! documented protocol closely enough that regkeeper's real code paths run against
//! them: the client-credentials grant with its AADSTS errors, the exchange of an Azure
//! AD token for an ACR refresh token, and the Bearer login with user
//! `00000000-0000-0000-0000-000000000000` and that refresh token as its password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;

use super::peers::http_server::HttpServer;
use super::peers::tls::TestCa;
use super::support::unix_now;

/// The one tenant the fake knows.
pub const TENANT: &str = "5f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e";
/// The one service principal (application) the tenant knows, and its secret.
pub const CLIENT_ID: &str = "0a1b2c3d-1111-4222-8333-944455566677";
pub const CLIENT_SECRET: &str = "fake~client~secret~Q8x";
/// The scope ACR's exchange needs the Azure AD token to be for.
pub const MANAGEMENT_SCOPE: &str = "https://management.azure.com/.default";
/// The user name ACR pairs with a refresh token.
pub const REFRESH_TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// Refresh tokens from the fake ACR expire after this many seconds — two hours, not
/// ACR's usual three, so a test can tell the `exp` claim was read.
pub const REFRESH_TOKEN_SECONDS: u64 = 2 * 3600;

/// A token that looks like a JWT (Azure's are), with `claims` readable and a signature
/// that is not one: nothing here checks it, and regkeeper must not either.
pub fn jwt_shaped(claims: &serde_json::Value) -> String {
    let encode = |value: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    format!(
        "{}.{}.{}",
        encode(&serde_json::json!({"typ": "JWT", "alg": "RS256"})),
        encode(claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
    )
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// One token request Azure AD answered (never its secret).
#[derive(Clone, Debug)]
pub struct AzureAdRequest {
    pub tenant: String,
    pub client_id: String,
    pub scope: String,
    pub status: u16,
}

#[derive(Default)]
struct AzureAdState {
    issued: Mutex<Vec<String>>,
    requests: Mutex<Vec<AzureAdRequest>>,
}

/// Azure AD's `{authority}/{tenant}/oauth2/v2.0/token`, over plain http on loopback
/// (regkeeper accepts http for a 127.0.0.1 authority, for this fake's sake).
pub struct FakeAzureAd {
    server: HttpServer,
    state: Arc<AzureAdState>,
}

impl FakeAzureAd {
    pub fn start() -> Self {
        let state = Arc::new(AzureAdState::default());
        let router_state = Arc::clone(&state);
        let server = HttpServer::start(None, move |_| {
            Router::new()
                .route(
                    "/{tenant}/oauth2/v2.0/token",
                    axum::routing::post(azure_ad_token),
                )
                .with_state(router_state)
        });
        Self { server, state }
    }

    /// The authority, for `REGKEEPER_AZURE_AUTHORITY_URL`.
    pub fn authority_url(&self) -> String {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<AzureAdRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }
}

fn azure_ad_error(status: StatusCode, error: &str, code: u64, message: &str) -> Response {
    let body = serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {message} Trace ID: {} Correlation ID: {} Timestamp: 2025-01-01 00:00:00Z",
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4()
        ),
        "error_codes": [code],
        "timestamp": "2025-01-01 00:00:00Z",
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    (status, Json(body)).into_response()
}

async fn azure_ad_token(
    State(state): State<Arc<AzureAdState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let fields = form(&body);
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let mut request = AzureAdRequest {
        tenant: tenant.clone(),
        client_id: field("client_id"),
        scope: field("scope"),
        status: 0,
    };
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let response = if tenant != TENANT {
        azure_ad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        )
    } else if !form_encoded || field("grant_type") != "client_credentials" {
        azure_ad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        )
    } else if field("client_id") != CLIENT_ID {
        azure_ad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application with identifier was not found in the directory.",
        )
    } else if field("client_secret") != CLIENT_SECRET {
        azure_ad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        )
    } else if field("scope") != MANAGEMENT_SCOPE {
        azure_ad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            "The provided request must include a 'scope' input parameter.",
        )
    } else {
        let now = unix_now();
        let token = jwt_shaped(&serde_json::json!({
            "aud": "https://management.azure.com",
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "tid": TENANT,
            "appid": CLIENT_ID,
            "iat": now,
            "nbf": now,
            "exp": now + 3599,
        }));
        state
            .issued
            .lock()
            .expect("issued lock")
            .push(token.clone());
        Json(serde_json::json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }))
        .into_response()
    };
    request.status = response.status().as_u16();
    state.requests.lock().expect("requests lock").push(request);
    response
}

/// One `/oauth2/exchange` the fake ACR answered.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub service: String,
    pub tenant: String,
    /// Whether the `access_token` was one the fake Azure AD issued.
    pub azure_ad_token_valid: bool,
    pub status: u16,
}

struct AcrState {
    azure_ad: Arc<AzureAdState>,
    host_port: String,
    refresh_tokens: Mutex<Vec<String>>,
    access_tokens: Mutex<Vec<String>>,
    exchanges: Mutex<Vec<Exchange>>,
}

impl AcrState {
    fn known_refresh_token(&self, token: &str) -> bool {
        self.refresh_tokens
            .lock()
            .expect("refresh tokens lock")
            .iter()
            .any(|known| known == token)
    }

    fn known_access_token(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        self.access_tokens
            .lock()
            .expect("access tokens lock")
            .iter()
            .any(|known| known == token)
    }

    fn challenge(&self) -> Response {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})),
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer realm=\"https://{host}/oauth2/token\",service=\"{host}\"",
                host = self.host_port
            )
            .parse()
            .expect("header value"),
        );
        response
    }

    fn issue_access_token(&self) -> Response {
        let token = format!("acr-access-{}", uuid::Uuid::new_v4().simple());
        self.access_tokens
            .lock()
            .expect("access tokens lock")
            .push(token.clone());
        Json(serde_json::json!({"access_token": token})).into_response()
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]})),
    )
        .into_response()
}

/// The token side of an Azure container registry, over TLS from a test CA: exchange,
/// token service, and a `/v2/` that wants its Bearer tokens. It serves no images.
pub struct FakeAcr {
    server: HttpServer,
    state: Arc<AcrState>,
    ca: TestCa,
}

impl FakeAcr {
    /// A registry that trusts tokens from `azure_ad`.
    pub fn start(azure_ad: &FakeAzureAd) -> Self {
        let ca = TestCa::generate();
        let azure_ad = Arc::clone(&azure_ad.state);
        let mut shared = None;
        let server = HttpServer::start(Some(&ca), |address| {
            let state = Arc::new(AcrState {
                azure_ad,
                host_port: address.to_string(),
                refresh_tokens: Mutex::new(Vec::new()),
                access_tokens: Mutex::new(Vec::new()),
                exchanges: Mutex::new(Vec::new()),
            });
            shared = Some(Arc::clone(&state));
            Router::new()
                .route("/oauth2/exchange", axum::routing::post(acr_exchange))
                .route(
                    "/oauth2/token",
                    axum::routing::post(acr_token_post).get(acr_token_get),
                )
                .route("/v2/", axum::routing::get(acr_ping))
                .route("/v2/{*path}", axum::routing::get(acr_api))
                .with_state(state)
        });
        Self {
            server,
            state: shared.expect("router built"),
            ca,
        }
    }

    /// `127.0.0.1:PORT`, the registry host of credentials and image references.
    pub fn host_port(&self) -> String {
        self.server.host_port()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.exchanges.lock().expect("exchanges lock").clone()
    }

    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state
            .refresh_tokens
            .lock()
            .expect("refresh tokens lock")
            .clone()
    }
}

async fn acr_exchange(State(state): State<Arc<AcrState>>, body: String) -> Response {
    let fields = form(&body);
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let token_valid = state
        .azure_ad
        .issued
        .lock()
        .expect("issued lock")
        .contains(&field("access_token"));
    let mut exchange = Exchange {
        service: field("service"),
        tenant: field("tenant"),
        azure_ad_token_valid: token_valid,
        status: 200,
    };
    let response = if field("grant_type") != "access_token" {
        exchange.status = 400;
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"errors": [{"code": "UNSUPPORTED", "message": "grant_type must be access_token"}]})),
        )
            .into_response()
    } else if !token_valid || exchange.tenant != TENANT || exchange.service != state.host_port {
        exchange.status = 401;
        unauthorized("the access token, tenant or service is not valid for this registry")
    } else {
        let now = unix_now();
        let refresh_token = jwt_shaped(&serde_json::json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": CLIENT_ID,
            "grant_type": "refresh_token",
            "iss": "Azure Container Registry",
            "aud": state.host_port,
            "tenant": TENANT,
            "iat": now,
            "nbf": now,
            "exp": now + REFRESH_TOKEN_SECONDS,
        }));
        state
            .refresh_tokens
            .lock()
            .expect("refresh tokens lock")
            .push(refresh_token.clone());
        Json(serde_json::json!({"refresh_token": refresh_token})).into_response()
    };
    state
        .exchanges
        .lock()
        .expect("exchanges lock")
        .push(exchange);
    response
}

/// ACR's OAuth2 token endpoint: the refresh-token grant, and the password grant with
/// the refresh token as password of user 00000000-… (what regkeeper sends).
async fn acr_token_post(State(state): State<Arc<AcrState>>, body: String) -> Response {
    let fields = form(&body);
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let allowed = field("service") == state.host_port
        && match field("grant_type").as_str() {
            "refresh_token" => state.known_refresh_token(&field("refresh_token")),
            "password" => {
                field("username") == REFRESH_TOKEN_USERNAME
                    && state.known_refresh_token(&field("password"))
            }
            _ => false,
        };
    if allowed {
        state.issue_access_token()
    } else {
        unauthorized("invalid refresh token")
    }
}

/// The classic Docker token GET with Basic auth, as docker and skopeo send it.
async fn acr_token_get(
    State(state): State<Arc<AcrState>>,
    RawQuery(_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match basic.as_deref().and_then(|text| text.split_once(':')) {
        Some((REFRESH_TOKEN_USERNAME, password)) if state.known_refresh_token(password) => {
            state.issue_access_token()
        }
        _ => unauthorized("invalid credentials"),
    }
}

async fn acr_ping(State(state): State<Arc<AcrState>>, headers: HeaderMap) -> Response {
    if state.known_access_token(&headers) {
        Json(serde_json::json!({})).into_response()
    } else {
        state.challenge()
    }
}

/// `GET /v2/<name>/tags/list`, answered for any repository with a valid token.
async fn acr_api(
    State(state): State<Arc<AcrState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.known_access_token(&headers) {
        return state.challenge();
    }
    match path.strip_suffix("/tags/list") {
        Some(name) => Json(serde_json::json!({"name": name, "tags": ["1"]})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(future)
    }

    async fn post(
        client: &reqwest::Client,
        url: &str,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let response = client.post(url).form(form).send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    #[test]
    fn fake_azure_ad_and_acr_speak_the_exchange_protocol() {
        let azure_ad = FakeAzureAd::start();
        let acr = FakeAcr::start(&azure_ad);
        let token_url = format!("{}/{TENANT}/oauth2/v2.0/token", azure_ad.authority_url());
        block_on(async {
            let plain = reqwest::Client::new();
            let grant = |secret: &'static str| {
                [
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", secret),
                    ("scope", MANAGEMENT_SCOPE),
                ]
            };
            let (status, body) = post(&plain, &token_url, &grant("wrong")).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"], "invalid_client");
            assert_eq!(body["error_codes"][0], 7000215);
            let unknown = format!(
                "{}/contoso.example/oauth2/v2.0/token",
                azure_ad.authority_url()
            );
            let (status, body) = post(&plain, &unknown, &grant(CLIENT_SECRET)).await;
            assert_eq!((status, &body["error_codes"][0]), (400, &90002.into()));
            let (status, body) = post(&plain, &token_url, &grant(CLIENT_SECRET)).await;
            assert_eq!(status, 200, "{body}");
            let aad_token = body["access_token"].as_str().expect("token").to_owned();
            assert_eq!(aad_token.split('.').count(), 3, "JWT-shaped");

            let tls = acr.ca().http_client();
            let exchange = format!("{}/oauth2/exchange", acr.url());
            let host = acr.host_port();
            let (status, _) = post(
                &tls,
                &exchange,
                &[
                    ("grant_type", "access_token"),
                    ("service", &host),
                    ("tenant", TENANT),
                    ("access_token", "forged"),
                ],
            )
            .await;
            assert_eq!(status, 401);
            let (status, body) = post(
                &tls,
                &exchange,
                &[
                    ("grant_type", "access_token"),
                    ("service", &host),
                    ("tenant", TENANT),
                    ("access_token", &aad_token),
                ],
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let refresh = body["refresh_token"].as_str().expect("refresh token");
            assert_eq!(
                acr.exchanges()
                    .iter()
                    .map(|exchange| exchange.azure_ad_token_valid)
                    .collect::<Vec<_>>(),
                vec![false, true]
            );

            let ping = tls
                .get(format!("{}/v2/", acr.url()))
                .send()
                .await
                .expect("GET /v2/");
            assert_eq!(ping.status(), 401);
            let challenge = ping.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert_eq!(
                challenge,
                format!("Bearer realm=\"https://{host}/oauth2/token\",service=\"{host}\"")
            );
            let (status, body) = post(
                &tls,
                &format!("{}/oauth2/token", acr.url()),
                &[
                    ("grant_type", "password"),
                    ("username", REFRESH_TOKEN_USERNAME),
                    ("password", refresh),
                    ("service", &host),
                ],
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let access = body["access_token"].as_str().expect("access token");
            let tags = tls
                .get(format!("{}/v2/team/app/tags/list", acr.url()))
                .bearer_auth(access)
                .send()
                .await
                .expect("GET tags");
            assert_eq!(tags.status(), 200);
        });
    }
}
