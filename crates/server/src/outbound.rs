//! The one HTTP client that may reach user-supplied hosts: registries, their token
//! realms and whatever they redirect to. Anyone who can store a credential chooses a
//! URL regkeeper will fetch, so every request is guarded against server-side request
//! forgery here, once, instead of in each provider:
//!
//! - the URL is checked before any packet is sent ([`OutboundClient::check_url`]): https
//!   only, plain http only for `host:port`s the operator listed, IP literals judged by
//!   [`forbidden_rule`] (the `url` crate has already turned `2130706433`, `0x7f000001`
//!   and `127.1` into `127.0.0.1`);
//! - host names are resolved by our own resolver, which drops forbidden answers, so the
//!   address checked is the address connected to (no DNS rebinding window);
//! - every redirect is checked again by the redirect policy, at most
//!   [`MAX_REDIRECTS`] of them;
//! - proxies from the environment are ignored, since a proxy would make the checked
//!   address the proxy's rather than the destination's;
//! - connect and whole-request time-outs, and [`OutboundClient::read_capped`] for
//!   bodies that are read into memory.
//!
//! Credentials on redirects: reqwest removes `Authorization`, `Cookie`,
//! `Proxy-Authorization` and `WWW-Authenticate` when a redirect changes host or port
//! (`reqwest::redirect::remove_sensitive_headers`), and its `Referer` (which could
//! carry a query string) is turned off here. The integration test
//! `outbound_redirect_to_another_host_drops_authorization` holds reqwest to that, so
//! credentials must travel in `Authorization`, never in a custom header or the URL.
//!
//! Errors never quote URLs, query strings or headers: only host names, addresses and
//! the lower layers' own descriptions, which carry none of them (`errors`).
//!
//! Here: the client and its time-outs; `policy`: which addresses and URLs may be
//! reached; `resolver`: the DNS answers filtered by that policy; `errors`: what a
//! failure is called and how it is described.
//!
//! Architecture invariant: nothing else in regkeeper opens connections to
//! user-supplied hosts.
//!
//! The other HTTP clients in the server reach only endpoints the operator chose,
//! never a host a tenant named: the AWS SDK (`providers::ecr`), the Azure AD and
//! Google token clients (`providers::acr`, `providers::gcr`, no redirects followed),
//! the `kube` client (the operator's cluster) and the database driver.
//! `.clippy.toml` bans building a `reqwest::Client` outside this module. TLS trusts the
//! Mozilla roots bundled with `webpki-roots` plus `REGKEEPER_OUTBOUND_CA_FILE`; the
//! operating system's trust store is not read.

mod errors;
mod policy;
mod resolver;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use url::Url;
use zeroize::Zeroizing;

pub(crate) use errors::describe;
pub use errors::OutboundError;
pub use policy::{forbidden_rule, rule};

use crate::config::OutboundConfig;
use errors::classify;
use policy::Policy;

/// The most redirects one request follows.
pub const MAX_REDIRECTS: usize = 5;
/// How long establishing a connection (DNS, TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, reading the response body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// For streamed bodies (the proxy's blobs), which may rightly take longer than
/// [`REQUEST_TIMEOUT`] in all: how long the response headers may take, and how long the
/// body may go without a byte. A client built with other time-outs uses its request
/// time-out here too.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The guarded client. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct OutboundClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    /// The same client, answering redirects instead of following them: for requests
    /// whose body carries a secret (sync webhooks), which a 307/308 would re-send.
    without_redirects: reqwest::Client,
    /// No redirects, and no whole-request time-out but an idle one: for the proxy's
    /// streamed bodies, whose redirects it follows itself without credentials.
    streaming: reqwest::Client,
    /// How long a streamed response's headers, and each of its reads, may take.
    stream_idle: Duration,
    policy: Arc<Policy>,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OutboundClient")
            .field("allow_networks", &self.inner.policy.allow_networks)
            .field("http_registries", &self.inner.policy.http_registries)
            .finish_non_exhaustive()
    }
}

impl OutboundClient {
    /// A client with the standard time-outs ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`],
    /// [`STREAM_IDLE_TIMEOUT`]), or with the operator's `config.timeout` in place of all
    /// three (the connect time-out never longer than the default), trusting the webpki
    /// roots plus the certificates of `config.ca_file`.
    pub fn new(config: &OutboundConfig) -> Result<Self, OutboundError> {
        match config.timeout {
            Some(timeout) => Self::with_timeouts(config, CONNECT_TIMEOUT.min(timeout), timeout),
            None => Self::build(
                config,
                CONNECT_TIMEOUT,
                REQUEST_TIMEOUT,
                STREAM_IDLE_TIMEOUT,
            ),
        }
    }

    /// As [`OutboundClient::new`], with other time-outs (tests use short ones); the
    /// request time-out also bounds streamed responses' waits.
    pub fn with_timeouts(
        config: &OutboundConfig,
        connect: Duration,
        request: Duration,
    ) -> Result<Self, OutboundError> {
        Self::build(config, connect, request, request)
    }

    fn build(
        config: &OutboundConfig,
        connect: Duration,
        request: Duration,
        stream_idle: Duration,
    ) -> Result<Self, OutboundError> {
        let policy = Arc::new(Policy {
            allow_networks: config.allow_networks.clone(),
            http_registries: config
                .http_registries
                .iter()
                .map(|registry| registry.to_ascii_lowercase())
                .collect(),
        });
        let redirect_policy = {
            let policy = Arc::clone(&policy);
            reqwest::redirect::Policy::custom(move |attempt| {
                // `previous` holds the original URL and every redirect followed so far.
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(OutboundError::TooManyRedirects);
                }
                match policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(error) => attempt.error(error),
                }
            })
        };
        let builder = |redirect: reqwest::redirect::Policy| {
            Self::guarded_builder(&policy, connect, redirect).timeout(request)
        };
        let mut roots = Vec::new();
        if let Some(path) = &config.ca_file {
            let unreadable = |message: String| {
                OutboundError::Other(format!(
                    "REGKEEPER_OUTBOUND_CA_FILE {}: {message}",
                    path.display()
                ))
            };
            let pem = std::fs::read(path).map_err(|error| unreadable(error.to_string()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|error| unreadable(describe(&error)))?;
            if certificates.is_empty() {
                return Err(unreadable("no PEM certificates found".to_owned()));
            }
            roots = certificates;
        }
        let build = |builder: reqwest::ClientBuilder| {
            roots
                .iter()
                .fold(builder, |builder, root| {
                    builder.add_root_certificate(root.clone())
                })
                .build()
                .map_err(|error| {
                    OutboundError::Other(format!(
                        "cannot build the outbound HTTP client: {}",
                        describe(&error)
                    ))
                })
        };
        let client = build(builder(redirect_policy))?;
        let without_redirects = build(builder(reqwest::redirect::Policy::none()))?;
        let streaming = build(
            Self::guarded_builder(&policy, connect, reqwest::redirect::Policy::none())
                .read_timeout(stream_idle),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                without_redirects,
                streaming,
                stream_idle,
                policy,
            }),
        })
    }

    /// The settings every client shares: our resolver, no environment proxies, no
    /// `Referer`, the connect time-out.
    // Where tenant-chosen hosts get their clients (`.clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    fn guarded_builder(
        policy: &Arc<Policy>,
        connect: Duration,
        redirect: reqwest::redirect::Policy,
    ) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            // Environment proxies would be connected to instead of the checked address.
            .no_proxy()
            .dns_resolver(Arc::new(resolver::FilteringResolver {
                policy: Arc::clone(policy),
            }))
            .redirect(redirect)
            // The previous URL may carry a token in its query; the next host gets nothing.
            .referer(false)
            .connect_timeout(connect)
            .user_agent(concat!("regkeeper/", env!("CARGO_PKG_VERSION")))
    }

    /// Checks a URL before any packet is sent: https (http only for a `host:port` in
    /// `http_registries`), and an IP-literal host against the address policy. Host
    /// names are checked when they are resolved, inside [`OutboundClient::send`].
    pub fn check_url(&self, url: &Url) -> Result<(), OutboundError> {
        self.inner.policy.check_url(url)
    }

    /// Starts a request; send it with [`OutboundClient::send`], not `RequestBuilder::send`,
    /// so that the URL is checked before anything is sent.
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.inner.client.request(method, url)
    }

    /// Builds a request and checks its URL, before anything is sent; also gives the
    /// host, for errors.
    fn checked(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::Request, String), OutboundError> {
        let (_, request) = request.build_split();
        let request = request.map_err(|error| {
            OutboundError::Other(format!("invalid request: {}", describe(&error)))
        })?;
        self.check_url(request.url())?;
        let host = request.url().host_str().unwrap_or_default().to_owned();
        Ok((request, host))
    }

    /// Checks the URL, then sends the request through the guarded client (whichever
    /// client the builder came from). Any HTTP status is a response, not an error.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OutboundError> {
        self.execute(&self.inner.client, request).await
    }

    /// As [`OutboundClient::send`], but a redirect is returned as the response rather
    /// than followed: for requests whose body must reach the checked host and no other.
    pub async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OutboundError> {
        self.execute(&self.inner.without_redirects, request).await
    }

    /// Checks the URL, then sends the request through `client`, one of ours.
    async fn execute(
        &self,
        client: &reqwest::Client,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OutboundError> {
        let (request, host) = self.checked(request)?;
        client
            .execute(request)
            .await
            .map_err(|error| classify(&error, &host))
    }

    /// As [`OutboundClient::send_once`], for a body that is streamed rather than read
    /// whole: the response headers must come within [`STREAM_IDLE_TIMEOUT`] (or the
    /// client's own request time-out), and the body may then take as long as it needs
    /// while bytes keep arriving (the same bound per read). Redirects are returned, for the caller to follow without
    /// credentials.
    pub async fn send_streaming(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OutboundError> {
        let (request, host) = self.checked(request)?;
        match tokio::time::timeout(
            self.inner.stream_idle,
            self.inner.streaming.execute(request),
        )
        .await
        {
            Ok(result) => result.map_err(|error| classify(&error, &host)),
            Err(_) => Err(OutboundError::Timeout { host }),
        }
    }

    /// The error a streamed body's read failed with, in our terms.
    pub fn body_error(error: &reqwest::Error, host: &str) -> OutboundError {
        classify(error, host)
    }

    /// Reads a whole body, refusing one larger than `limit` bytes as soon as that is
    /// known (from `Content-Length`, or once the bytes read pass it), so a hostile
    /// server cannot make regkeeper buffer without bound.
    pub async fn read_capped(
        response: reqwest::Response,
        limit: usize,
    ) -> Result<Bytes, OutboundError> {
        let body = read_within(
            response,
            limit,
            |_| BytesMut::new(),
            |body, chunk| {
                body.extend_from_slice(chunk);
            },
        )
        .await?;
        Ok(body.freeze())
    }

    /// As [`read_capped`](Self::read_capped), for an answer that is itself a secret (a
    /// token service's): gathered in a buffer that is wiped on drop, and moved to a
    /// larger wiped one when it must grow, so this code leaves no copy of the secret in
    /// freed memory. (The HTTP stack's own chunk buffers are outside its reach.)
    pub async fn read_capped_secret(
        response: reqwest::Response,
        limit: usize,
    ) -> Result<Zeroizing<Vec<u8>>, OutboundError> {
        read_within(
            response,
            limit,
            |expected| Zeroizing::new(Vec::with_capacity(expected)),
            append_wiped,
        )
        .await
    }
}

/// Reads a whole body into what `start` makes (given the announced length, at most
/// `limit`), adding each chunk with `append`, and refuses it as soon as it is known to
/// be larger than `limit` bytes.
async fn read_within<Body: AsRef<[u8]>>(
    mut response: reqwest::Response,
    limit: usize,
    start: impl FnOnce(usize) -> Body,
    mut append: impl FnMut(&mut Body, &[u8]),
) -> Result<Body, OutboundError> {
    let too_large = OutboundError::TooLarge { limit };
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large);
    }
    let host = response.url().host_str().unwrap_or_default().to_owned();
    let expected = announced.map_or(0, |length| usize::try_from(length).unwrap_or(limit));
    let mut body = start(expected.min(limit));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| classify(&error, &host))?
    {
        if body.as_ref().len() + chunk.len() > limit {
            return Err(too_large);
        }
        append(&mut body, &chunk);
    }
    Ok(body)
}

/// Appends `chunk` to `body` without letting `Vec` reallocate: a reallocation would
/// free the old buffer with the secret still in it.
fn append_wiped(body: &mut Zeroizing<Vec<u8>>, chunk: &[u8]) {
    let needed = body.len() + chunk.len();
    if needed > body.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(body.capacity() * 2)));
        grown.extend_from_slice(body);
        // The old buffer is wiped as it drops here.
        *body = grown;
    }
    body.extend_from_slice(chunk);
}

/// A client for an endpoint the operator configured (the Azure AD authority, Google's
/// token URL): TLS with the built-in roots, no redirects, no `Referer`, the given
/// time-outs. Unlike [`OutboundClient`] it applies no address policy, since no tenant
/// chose the host.
// The one place besides `OutboundClient` that builds a reqwest client (`.clippy.toml`).
#[allow(clippy::disallowed_methods)]
pub fn operator_endpoint_client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .user_agent(concat!("regkeeper/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(config: OutboundConfig) -> OutboundClient {
        OutboundClient::new(&config).unwrap()
    }

    /// Issue 12 item 18: a secret answer grows only into wiped buffers, never by a
    /// reallocation that would free a copy of it.
    #[test]
    fn secret_bodies_grow_without_reallocating() {
        let mut body = Zeroizing::new(Vec::with_capacity(4));
        let mut expected = Vec::new();
        for chunk in [&b"ab"[..], b"cdef", b"g", &[b'h'; 100]] {
            let before = body.as_ptr();
            let room = body.capacity() - body.len();
            append_wiped(&mut body, chunk);
            expected.extend_from_slice(chunk);
            if chunk.len() <= room {
                assert_eq!(body.as_ptr(), before, "appended in place");
            }
        }
        assert_eq!(body.as_slice(), expected.as_slice());
    }

    fn check(client: &OutboundClient, url: &str) -> Result<(), OutboundError> {
        client.check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn ip_literals_in_every_spelling_are_checked() {
        let client = client(OutboundConfig::default());
        for url in [
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://127.1/",
            "https://0177.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://169.254.169.254/",
            "http://169.254.169.254/latest/meta-data/",
            "https://[fd00:ec2::254]/",
            "https://168.63.129.16/",
            "https://metadata.google.internal/computeMetadata/v1/",
            "http://metadata/",
            "https://0.0.0.0/",
        ] {
            let error = check(&client, url).unwrap_err();
            assert_eq!(error.code(), "destination_forbidden", "{url}: {error}");
        }
        assert!(check(&client, "https://93.184.216.34/v2/").is_ok());
        assert!(check(&client, "https://registry.example.com/v2/").is_ok());
    }

    #[test]
    fn plain_http_needs_the_exact_host_and_port() {
        let client = client(OutboundConfig {
            allow_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            http_registries: vec!["localhost:5000".into(), "[::1]:5001".into()],
            ..OutboundConfig::default()
        });
        assert!(check(&client, "http://LOCALHOST:5000/v2/").is_ok());
        assert!(check(&client, "http://[::1]:5001/v2/").is_ok());
        for url in [
            "http://localhost:5001/",
            "http://localhost/",
            "http://127.0.0.1:5000/",
        ] {
            let error = check(&client, url).unwrap_err();
            assert_eq!(error.code(), "plain_http_forbidden", "{url}");
            assert!(error
                .to_string()
                .contains("REGKEEPER_OUTBOUND_HTTP_REGISTRIES"));
        }
        let error = check(&client, "ftp://localhost:5000/").unwrap_err();
        assert_eq!(error.code(), "outbound_failed");
        let error = check(&client, "file:///etc/passwd").unwrap_err();
        assert_eq!(error.code(), "outbound_failed");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_naming_the_setting() {
        let directory = tempfile::tempdir().unwrap();
        let empty = directory.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [directory.path().join("missing.pem"), empty] {
            let error = OutboundClient::new(&OutboundConfig {
                ca_file: Some(path),
                ..OutboundConfig::default()
            })
            .unwrap_err();
            assert!(
                error.to_string().contains("REGKEEPER_OUTBOUND_CA_FILE"),
                "{error}"
            );
        }
    }
}
