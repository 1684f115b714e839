//! Object storage for a distribution registry, so blob GETs end in a redirect to
//! another host as they do on registries backed by S3: moto_server's real S3, reached
//! through a recording forwarder that lets tests see which headers (credentials above
//! all) a client sent to blob storage after following the registry's redirect.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use super::http_server::HttpServer;
use super::moto::{self, Moto};
use super::registry::{RegistryStorage, S3Storage};

/// The bucket distribution stores into.
pub const BUCKET: &str = "registry-blobs";

/// Bodies larger than this are refused; test images are a few kilobytes.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One request the forwarder passed on, as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedRequest {
    pub method: String,
    /// Path and query, e.g. `/BUCKET/KEY?X-Amz-Signature=...`.
    pub path_and_query: String,
    /// Lower-case names of the headers received, each once, in the order received.
    pub header_names: Vec<String>,
    /// The `Authorization` header, if one arrived.
    pub authorization: Option<String>,
    /// What the upstream answered; 502 when it could not be reached.
    pub status: u16,
}

impl ForwardedRequest {
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header_names
            .iter()
            .any(|received| received.eq_ignore_ascii_case(name))
    }

    /// Whether the request carries a SigV4 query signature, as the URLs distribution
    /// redirects clients to do (its own requests are signed in `Authorization`).
    pub fn is_presigned(&self) -> bool {
        self.path_and_query
            .split_once('?')
            .is_some_and(|(_, query)| {
                query
                    .split('&')
                    .any(|pair| pair.starts_with("X-Amz-Signature="))
            })
    }
}

struct ForwarderState {
    upstream: String,
    client: reqwest::Client,
    requests: Mutex<Vec<ForwardedRequest>>,
}

/// A plain-HTTP forwarder on 127.0.0.1 that passes every request on to `upstream`
/// unchanged (less hop-by-hop headers and `Host`) and records it. Stopped on drop.
pub struct RecordingForwarder {
    url: String,
    host_port: String,
    state: Arc<ForwarderState>,
    /// Serves until the forwarder is dropped.
    _server: HttpServer,
}

impl RecordingForwarder {
    /// Forwards to `upstream`, an `http://HOST:PORT` base URL.
    pub fn start(upstream: &str) -> Self {
        let state = Arc::new(ForwarderState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                // Redirects and proxies are the client's business, not the forwarder's.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("HTTP client"),
            requests: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&state));
        let server = HttpServer::start(None, |_| router);
        Self {
            url: server.url(),
            host_port: server.host_port(),
            state,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// Every request forwarded so far, oldest first.
    pub fn requests(&self) -> Vec<ForwardedRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.state.requests.lock().expect("requests lock").clear();
    }
}

/// Headers that belong to one connection, not to the request or response passed on
/// (RFC 9110 section 7.6.1), plus those the HTTP libraries set themselves.
fn passed_on(name: &HeaderName) -> bool {
    ![
        header::CONNECTION,
        header::HOST,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        && name.as_str() != "keep-alive"
}

async fn forward(State(state): State<Arc<ForwarderState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str())
        .to_owned();
    let mut record = ForwardedRequest {
        method: parts.method.to_string(),
        path_and_query,
        header_names: parts
            .headers
            .keys()
            .map(|name| name.as_str().to_owned())
            .collect(),
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
        status: StatusCode::BAD_GATEWAY.as_u16(),
    };
    let response = match pass_on(&state, parts, body, &record.path_and_query).await {
        Ok(response) => response,
        Err(message) => (StatusCode::BAD_GATEWAY, message).into_response(),
    };
    record.status = response.status().as_u16();
    state.requests.lock().expect("requests lock").push(record);
    response
}

async fn pass_on(
    state: &ForwarderState,
    parts: axum::http::request::Parts,
    body: Body,
    path_and_query: &str,
) -> Result<Response, String> {
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| format!("reading the request body: {error}"))?;
    let mut upstream = state
        .client
        .request(parts.method, format!("{}{path_and_query}", state.upstream));
    for (name, value) in &parts.headers {
        // reqwest sets Content-Length from the body it sends.
        if passed_on(name) && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    if !body.is_empty() || parts.headers.contains_key(header::CONTENT_LENGTH) {
        upstream = upstream.body(body);
    }
    let answer = upstream
        .send()
        .await
        .map_err(|error| format!("forwarding to {}: {error}", state.upstream))?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes: Bytes = answer
        .bytes()
        .await
        .map_err(|error| format!("reading the upstream body: {error}"))?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        // Content-Length stays: the body is passed on whole, and a HEAD answer's
        // length is the object's.
        if passed_on(name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(response)
}

/// moto's S3 with one bucket, [`BUCKET`], behind a [`RecordingForwarder`]: give
/// [`BlobStore::registry_storage`] to a registry and it keeps its data there and
/// redirects blob GETs to presigned URLs on the forwarder's port.
pub struct BlobStore {
    // Declared first so it stops before moto does.
    forwarder: RecordingForwarder,
    moto: Moto,
}

impl BlobStore {
    /// `None` (skip) when `.venv-test` has no moto_server, outside CI.
    pub fn start() -> Option<Self> {
        let moto = Moto::start()?;
        moto.create_bucket(BUCKET);
        let forwarder = RecordingForwarder::start(moto.endpoint_url());
        Some(Self { forwarder, moto })
    }

    /// The forwarder's `http://127.0.0.1:PORT`, where distribution sends its S3
    /// requests and where the URLs it presigns point.
    pub fn endpoint_url(&self) -> &str {
        self.forwarder.url()
    }

    /// The forwarder's `127.0.0.1:PORT`, the host of redirect `Location`s.
    pub fn host_port(&self) -> &str {
        self.forwarder.host_port()
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The moto behind the forwarder, for direct calls that should not be recorded.
    pub fn moto(&self) -> &Moto {
        &self.moto
    }

    pub fn forwarder(&self) -> &RecordingForwarder {
        &self.forwarder
    }

    /// Storage settings for `Registry::htpasswd_with_storage` or `RegistryOptions`.
    pub fn registry_storage(&self) -> RegistryStorage {
        RegistryStorage::S3(S3Storage {
            endpoint: self.endpoint_url().to_owned(),
            region: moto::REGION.to_owned(),
            bucket: BUCKET.to_owned(),
            access_key: moto::ACCESS_KEY_ID.to_owned(),
            secret_key: moto::SECRET_ACCESS_KEY.to_owned(),
        })
    }

    /// The path of a blob's object as distribution lays out its storage,
    /// `/BUCKET/docker/registry/v2/blobs/sha256/AB/HEX/data`.
    pub fn blob_path(&self, digest: &str) -> String {
        let (algorithm, hex) = digest.split_once(':').expect("ALGORITHM:HEX digest");
        format!(
            "/{BUCKET}/docker/registry/v2/blobs/{algorithm}/{}/{hex}/data",
            &hex[..2]
        )
    }

    /// Every request that reached blob storage so far: distribution's own, signed in
    /// `Authorization`, and clients' after a redirect.
    pub fn requests(&self) -> Vec<ForwardedRequest> {
        self.forwarder.requests()
    }

    /// The GETs clients made by following a registry's redirect (presigned URLs).
    pub fn presigned_gets(&self) -> Vec<ForwardedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == "GET" && request.is_presigned())
            .collect()
    }

    /// Forgets the requests recorded so far, e.g. those of a push.
    pub fn clear_requests(&self) {
        self.forwarder.clear();
    }

    /// What moto_server has printed so far, for failure messages.
    pub fn log(&self) -> String {
        self.moto.log()
    }
}
