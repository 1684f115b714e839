//! A hand-written stand-in for the Kubernetes API server's core/v1 Secrets, since no
//! real cluster can run here. It holds Secrets in memory and checks what the real API
//! server checks for the calls regkeeper makes: the Bearer token, method and path,
//! `Content-Type`, the body's kind, apiVersion, name and namespace, that a
//! `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` is base64 of JSON
//! (validation), unknown namespaces (404), create of an existing name (409
//! AlreadyExists), and a replace whose `resourceVersion` is stale (409 Conflict). A
//! GET asking for `PartialObjectMetadata` gets metadata only, like the real one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;

use super::peers::http_server::HttpServer;
use super::peers::tls::TestCa;

pub const TOKEN: &str = "fake-kubernetes-service-account-token";

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Debug)]
pub struct StoredSecret {
    /// The object as stored (with `metadata.resourceVersion`).
    pub object: serde_json::Value,
    pub resource_version: u64,
}

impl StoredSecret {
    /// `.dockerconfigjson`, decoded.
    pub fn docker_config(&self) -> serde_json::Value {
        let encoded = self.object["data"][".dockerconfigjson"]
            .as_str()
            .expect(".dockerconfigjson present");
        serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64"),
        )
        .expect("JSON")
    }
}

#[derive(Default)]
struct Cluster {
    namespaces: BTreeSet<String>,
    secrets: BTreeMap<(String, String), StoredSecret>,
    next_version: u64,
    calls: Vec<Call>,
}

type Shared = Arc<Mutex<Cluster>>;

pub struct FakeKubernetesApi {
    /// Serves until dropped.
    _server: HttpServer,
    cluster: Shared,
    kubeconfig: tempfile::NamedTempFile,
}

impl FakeKubernetesApi {
    /// An API server over TLS (certificate from `ca`) with these namespaces.
    pub fn start(ca: &TestCa, namespaces: &[&str]) -> Self {
        let cluster: Shared = Arc::new(Mutex::new(Cluster {
            namespaces: namespaces.iter().map(|name| (*name).to_owned()).collect(),
            next_version: 100,
            ..Cluster::default()
        }));
        let state = Arc::clone(&cluster);
        let server = HttpServer::start(Some(ca), move |_| {
            Router::new()
                .route("/api/v1/namespaces/{namespace}/secrets", post(create))
                .route(
                    "/api/v1/namespaces/{namespace}/secrets/{name}",
                    get(read).put(replace),
                )
                .fallback(unknown)
                .with_state(state)
        });
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            kubeconfig.path(),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: regkeeper\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: regkeeper\n    namespace: default\ncurrent-context: fake\n",
                server.url(),
                base64::engine::general_purpose::STANDARD.encode(&ca.ca_pem)
            ),
        )
        .unwrap();
        Self {
            _server: server,
            cluster,
            kubeconfig,
        }
    }

    pub fn kubeconfig(&self) -> &std::path::Path {
        self.kubeconfig.path()
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<StoredSecret> {
        self.cluster
            .lock()
            .unwrap()
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Stores a Secret someone else made (no regkeeper label).
    pub fn put_foreign_secret(&self, namespace: &str, name: &str) {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.next_version += 1;
        let version = cluster.next_version;
        cluster.secrets.insert(
            (namespace.to_owned(), name.to_owned()),
            StoredSecret {
                object: serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": namespace, "resourceVersion": version.to_string()},
                    "data": {"token": "c29tZW9uZSBlbHNl"},
                }),
                resource_version: version,
            },
        );
    }

    pub fn calls(&self) -> Vec<Call> {
        self.cluster.lock().unwrap().calls.clone()
    }
}

/// A `Status` failure the API server answers with.
struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.code,
            axum::Json(serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": self.message, "reason": self.reason,
                "code": self.code.as_u16(),
            })),
        )
            .into_response()
    }
}

fn status(code: StatusCode, reason: &'static str, message: String) -> Refusal {
    Refusal {
        code,
        reason,
        message,
    }
}

fn record(cluster: &Shared, method: &Method, uri: &Uri, response: Response) -> Response {
    cluster.lock().unwrap().calls.push(Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        status: response.status().as_u16(),
    });
    response
}

fn authorized(headers: &HeaderMap) -> Result<(), Refusal> {
    let expected = format!("Bearer {TOKEN}");
    if headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(expected.as_str())
    {
        Ok(())
    } else {
        Err(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        ))
    }
}

/// What the API server's validation of a Secret body checks, for a body of `namespace`
/// and (on replace) `name`.
fn validate(
    headers: &HeaderMap,
    body: &[u8],
    namespace: &str,
    name: Option<&str>,
) -> Result<serde_json::Value, Refusal> {
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json (got {content_type})"),
        ));
    }
    let invalid = |message: String| status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
    let bad = |message: &str| status(StatusCode::BAD_REQUEST, "BadRequest", message.to_owned());
    let object: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("the body is not JSON"))?;
    if object["apiVersion"] != "v1" || object["kind"] != "Secret" {
        return Err(bad("the object is not a v1 Secret"));
    }
    let object_name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| invalid("Secret is invalid: metadata.name: Required value".into()))?;
    if let Some(name) = name {
        if object_name != name {
            return Err(bad(
                "the name of the object does not match the name on the URL",
            ));
        }
    }
    if let Some(object_namespace) = object["metadata"]["namespace"].as_str() {
        if object_namespace != namespace {
            return Err(bad(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if object["type"] == "kubernetes.io/dockerconfigjson" {
        let valid = object["data"][".dockerconfigjson"]
            .as_str()
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .is_some_and(|config| config["auths"].is_object());
        if !valid {
            return Err(invalid(format!(
                "Secret \"{object_name}\" is invalid: data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\""
            )));
        }
    }
    Ok(object)
}

fn stored(cluster: &mut Cluster, mut object: serde_json::Value, namespace: &str) -> StoredSecret {
    cluster.next_version += 1;
    let version = cluster.next_version;
    object["metadata"]["namespace"] = namespace.into();
    object["metadata"]["resourceVersion"] = version.to_string().into();
    StoredSecret {
        object,
        resource_version: version,
    }
}

async fn create(
    State(cluster): State<Shared>,
    method: Method,
    uri: Uri,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = (|| {
        authorized(&headers)?;
        let object = validate(&headers, &body, &namespace, None)?;
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut guard = cluster.lock().unwrap();
        if !guard.namespaces.contains(&namespace) {
            return Err(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("namespaces \"{namespace}\" not found"),
            ));
        }
        let key = (namespace.clone(), name.clone());
        if guard.secrets.contains_key(&key) {
            return Err(status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("secrets \"{name}\" already exists"),
            ));
        }
        let secret = stored(&mut guard, object, &namespace);
        let answer = secret.object.clone();
        guard.secrets.insert(key, secret);
        Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response);
    record(&cluster, &method, &uri, response)
}

async fn read(
    State(cluster): State<Shared>,
    method: Method,
    uri: Uri,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let response = (|| -> Result<Response, Refusal> {
        authorized(&headers)?;
        let guard = cluster.lock().unwrap();
        let secret = guard
            .secrets
            .get(&(namespace.clone(), name.clone()))
            .ok_or_else(|| {
                status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("secrets \"{name}\" not found"),
                )
            })?;
        let accept = headers
            .get("accept")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if accept.contains("as=PartialObjectMetadata") && accept.contains("g=meta.k8s.io") {
            return Ok(axum::Json(serde_json::json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": secret.object["metadata"],
            }))
            .into_response());
        }
        Ok(axum::Json(secret.object.clone()).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response);
    record(&cluster, &method, &uri, response)
}

async fn replace(
    State(cluster): State<Shared>,
    method: Method,
    uri: Uri,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = (|| {
        authorized(&headers)?;
        let object = validate(&headers, &body, &namespace, Some(&name))?;
        let mut guard = cluster.lock().unwrap();
        let key = (namespace.clone(), name.clone());
        let Some(current) = guard.secrets.get(&key) else {
            return Err(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("secrets \"{name}\" not found"),
            ));
        };
        if let Some(given) = object["metadata"]["resourceVersion"].as_str() {
            if given != current.resource_version.to_string() {
                return Err(status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                ));
            }
        }
        let secret = stored(&mut guard, object, &namespace);
        let answer = secret.object.clone();
        guard.secrets.insert(key, secret);
        Ok(axum::Json(answer).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response);
    record(&cluster, &method, &uri, response)
}

async fn unknown(State(cluster): State<Shared>, method: Method, uri: Uri) -> Response {
    let response = status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource".into(),
    )
    .into_response();
    record(&cluster, &method, &uri, response)
}
