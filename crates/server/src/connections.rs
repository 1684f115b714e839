//! Serving client connections on the API and proxy listeners, with bounds that
//! `axum::serve` does not offer: thousands of sockets that each send half a request
//! once held every file descriptor and made `/healthz` unreachable.
//!
//! - A header-read time-out (`REGKEEPER_HEADER_READ_TIMEOUT_SECONDS`, hyper's own timer):
//!   a client that has not sent a whole request head in time gets `408 Request Timeout`
//!   and is closed; a kept-alive connection idle that long between requests is closed
//!   without a word. TLS handshakes get the same time.
//! - At most `REGKEEPER_MAX_CONNECTIONS` open connections per listener. At the limit a new
//!   connection takes the place of the oldest one that has not yet sent a request (the
//!   kind an attack opens), so a health check still gets in; when every connection is
//!   busy with a request the new one is refused with 503.
//! - At most `REGKEEPER_MAX_CONNECTIONS_PER_ADDRESS` per client address (per /64 for
//!   IPv6, where one client holds a whole prefix); more are refused with 429.
//!
//! Refusals are written without reading the request (plain HTTP) or by closing (TLS,
//! before any handshake work). HTTP/1.1 is served on plain connections (no h2c), HTTP/2
//! or HTTP/1.1 over TLS by ALPN; an HTTP/2 connection that sends no request within the
//! header-read time-out is closed, and dead ones are found by pings.
//!
//! Shutdown stops accepting, shuts every connection down gracefully and waits for
//! them. This module knows no routes: it serves whatever `Router` it is given, adding
//! `ConnectInfo` from the peer address.

// `std::sync::Mutex` here (`.clippy.toml`): the open-connection table is locked only to
// add, count or remove a slot; no guard is held across an `.await` (clippy's
// `await_holding_lock` would refuse one).
#![allow(clippy::disallowed_types)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::ConnectionLimits;
use crate::metrics::{ConnectionLabels, Metrics};

/// How long writing a 408 or a refusal may take before the socket is simply closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings, to find peers that went away without closing.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);

/// One listener's connections and its bounds.
pub struct Connections {
    limits: ConnectionLimits,
    /// `api` or `proxy`, for the log and the metrics.
    listener: &'static str,
    state: Mutex<Open>,
    metrics: Option<Arc<Metrics>>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// By id, so the oldest come first.
    slots: BTreeMap<u64, Arc<Slot>>,
    per_address: HashMap<IpAddr, usize>,
}

struct Slot {
    address: IpAddr,
    /// Set once a request head has been read: the connection is in use.
    requested: AtomicBool,
    /// Told when the connection must make room for a newer one.
    evicted: Notify,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerAddress(usize),
    Full(usize),
}

/// A connection's place; gives it back when dropped.
pub struct Admitted {
    connections: Arc<Connections>,
    id: u64,
    slot: Arc<Slot>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.connections.lock();
        if open.slots.remove(&self.id).is_some() {
            release(&mut open, self.slot.address);
        }
    }
}

fn release(open: &mut Open, address: IpAddr) {
    if let Some(count) = open.per_address.get_mut(&address) {
        *count -= 1;
        if *count == 0 {
            open.per_address.remove(&address);
        }
    }
}

/// The address a client's connections are counted under: IPv4 (also when mapped into
/// IPv6) as is, IPv6 by its /64.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl Connections {
    pub fn new(
        limits: ConnectionLimits,
        listener: &'static str,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            limits,
            listener,
            state: Mutex::new(Open::default()),
            metrics,
        })
    }

    /// Counts a connection a bound ended, in `regkeeper_connections_ended_total`.
    fn ended(&self, reason: &str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .connections_ended
                .get_or_create(&ConnectionLabels {
                    listener: self.listener.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A panic while holding this lock leaves counts that are still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().slots.len()
    }

    /// Takes a connection from `peer`, or says why not. At the limit, the oldest
    /// connection that has sent no request yet is told to close and its place given to
    /// this one.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admitted, Refusal> {
        let address = address_key(peer.ip());
        let mut open = self.lock();
        if let Some(limit) = self.limits.max_connections_per_address {
            if open.per_address.get(&address).copied().unwrap_or(0) >= limit {
                return Err(Refusal::PerAddress(limit));
            }
        }
        if open.slots.len() >= self.limits.max_connections {
            let oldest_waiting = open
                .slots
                .iter()
                .find(|(_, slot)| !slot.requested.load(Ordering::Acquire))
                .map(|(id, _)| *id);
            let Some(id) = oldest_waiting else {
                return Err(Refusal::Full(self.limits.max_connections));
            };
            if let Some(slot) = open.slots.remove(&id) {
                release(&mut open, slot.address);
                // A stored permit: the connection sees it even if it is not waiting yet.
                slot.evicted.notify_one();
                self.ended("evicted");
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let slot = Arc::new(Slot {
            address,
            requested: AtomicBool::new(false),
            evicted: Notify::new(),
        });
        open.slots.insert(id, Arc::clone(&slot));
        *open.per_address.entry(address).or_insert(0) += 1;
        Ok(Admitted {
            connections: Arc::clone(self),
            id,
            slot,
        })
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` turns
/// true, then stops accepting, lets every connection finish its requests, and returns.
/// `connect_info` makes the `ConnectInfo` each request carries from the peer address.
pub async fn serve<C>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    connections: Arc<Connections>,
    connect_info: fn(SocketAddr) -> C,
    mut shutdown: watch::Receiver<bool>,
) where
    C: Clone + Send + Sync + Unpin + 'static,
{
    // Each connection task holds a sender; all are gone when all have ended.
    let (alive, mut ended) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(listener = connections.listener, error = %error, "connections.accept_failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match connections.admit(peer) {
            Ok(admitted) => {
                let connection = Connection {
                    router: router.clone(),
                    info: connect_info(peer),
                    limits: connections.limits,
                    admitted,
                    shutdown: shutdown.clone(),
                    _alive: alive.clone(),
                };
                let tls = tls.clone();
                tokio::spawn(connection.run(stream, tls));
            }
            Err(refusal) => {
                tracing::debug!(listener = connections.listener, client.address = %peer, refusal = ?refusal, "connections.refused");
                connections.ended(match refusal {
                    Refusal::PerAddress(_) => "refused_per_address",
                    Refusal::Full(_) => "refused_full",
                });
                if tls.is_none() {
                    tokio::spawn(refuse(stream, refusal));
                }
            }
        }
    }
    drop(alive);
    let _ = ended.recv().await;
}

/// Answers a refused plain-HTTP connection without reading its request, then closes it.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let (status, code, message) = match refusal {
        Refusal::PerAddress(limit) => (
            "429 Too Many Requests",
            "too_many_connections",
            format!(
                "too many open connections from this address (at most {limit}); close idle \
                 ones or wait"
            ),
        ),
        Refusal::Full(limit) => (
            "503 Service Unavailable",
            "server_busy",
            format!("the server has {limit} connections busy with requests; try again shortly"),
        ),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    write_and_close(&mut stream, answer.as_bytes()).await;
}

async fn write_and_close<IO: AsyncWrite + Unpin>(stream: &mut IO, bytes: &[u8]) {
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(bytes).await?;
        stream.shutdown().await
    })
    .await;
}

/// The 408 a client gets when its request head did not arrive in time.
fn request_timeout_answer(timeout: Duration) -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "request_header_timeout",
        "message": format!(
            "the request headers did not arrive within {} s",
            timeout.as_secs()
        ),
    }})
    .to_string();
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

type BoxedResponse =
    Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

struct Connection<C> {
    router: Router,
    info: C,
    limits: ConnectionLimits,
    admitted: Admitted,
    shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl<C> Connection<C>
where
    C: Clone + Send + Sync + Unpin + 'static,
{
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            self.serve_http1(stream).await;
            return;
        };
        let slot = Arc::clone(&self.admitted.slot);
        let handshake =
            tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            handshake = handshake => match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(error = %error, "connections.tls_handshake_failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("connections.tls_handshake_timed_out");
                    return;
                }
            },
            () = slot.evicted.notified() => return,
        };
        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if http2 {
            self.serve_http2(stream).await;
        } else {
            self.serve_http1(stream).await;
        }
    }

    /// The router as a hyper service that marks the connection in use and hands each
    /// request its `ConnectInfo`.
    fn service(
        &self,
    ) -> impl hyper::service::Service<
        hyper::Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future = BoxedResponse,
    > + Clone
           + Unpin {
        let router = self.router.clone();
        let info = self.info.clone();
        let slot = Arc::clone(&self.admitted.slot);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            slot.requested.store(true, Ordering::Release);
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(info.clone()));
            let response: BoxedResponse = Box::pin(router.clone().oneshot(request));
            response
        })
    }

    async fn serve_http1<IO>(mut self, stream: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        let mut connection = builder.serve_connection(TokioIo::new(stream), self.service());
        let slot = Arc::clone(&self.admitted.slot);
        let mut shutting_down = false;
        let result = loop {
            tokio::select! {
                result = std::future::poll_fn(|context| connection.poll_without_shutdown(context)) => break result,
                () = slot.evicted.notified() => {
                    tracing::debug!("connections.evicted");
                    return;
                }
                _ = self.shutdown.wait_for(|stop| *stop), if !shutting_down => {
                    shutting_down = true;
                    Pin::new(&mut connection).graceful_shutdown();
                }
            }
        };
        let timed_out = matches!(&result, Err(error) if error.is_timeout());
        let parts = connection.into_parts();
        let mut stream = parts.io.into_inner();
        if timed_out {
            // Half a request, or a connection that never sent one: say why it ends.
            // An idle kept-alive connection is closed silently, as clients expect.
            if !parts.read_buf.is_empty() || !slot.requested.load(Ordering::Acquire) {
                tracing::debug!("connections.header_read_timeout");
                self.admitted.connections.ended("header_timeout");
                write_and_close(
                    &mut stream,
                    &request_timeout_answer(self.limits.header_read_timeout),
                )
                .await;
                return;
            }
        } else if let Err(error) = &result {
            tracing::debug!(error = %error, "connections.http1_error");
        }
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, stream.shutdown()).await;
    }

    async fn serve_http2<IO>(mut self, stream: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_PING_INTERVAL)
            .keep_alive_timeout(HTTP2_PING_INTERVAL);
        let connection = builder.serve_connection(TokioIo::new(stream), self.service());
        let mut connection = std::pin::pin!(connection);
        let slot = Arc::clone(&self.admitted.slot);
        let first_request = tokio::time::sleep(self.limits.header_read_timeout);
        let mut first_request = std::pin::pin!(first_request);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(error = %error, "connections.http2_error");
                    }
                    return;
                }
                () = slot.evicted.notified() => return,
                () = first_request.as_mut(), if !slot.requested.load(Ordering::Acquire) => {
                    tracing::debug!("connections.http2_no_request");
                    return;
                }
                _ = self.shutdown.wait_for(|stop| *stop), if !shutting_down => {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, per_address: Option<usize>) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections,
            max_connections_per_address: per_address,
        }
    }

    fn peer(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().unwrap(), 40_000)
    }

    /// Issue 12 item 6: per-address and overall bounds, and a full listener making
    /// room by closing the oldest connection that has sent no request.
    #[test]
    fn admission_bounds_addresses_and_evicts_the_oldest_waiting_connection() {
        let connections = Connections::new(limits(3, Some(2)), "test", None);
        let first = connections.admit(peer("10.0.0.1")).unwrap();
        let _second = connections.admit(peer("10.0.0.1")).unwrap();
        assert_eq!(
            connections.admit(peer("10.0.0.1")).err(),
            Some(Refusal::PerAddress(2))
        );
        // The mapped form and another port are the same client.
        assert!(connections.admit(peer("::ffff:10.0.0.1")).is_err());
        let third = connections.admit(peer("10.0.0.2")).unwrap();
        assert_eq!(connections.open(), 3);
        // Full: the oldest waiting connection (the first) makes room.
        first.slot.requested.store(false, Ordering::Release);
        let fourth = connections.admit(peer("10.0.0.3")).unwrap();
        assert_eq!(connections.open(), 3);
        // Its eviction is a stored permit, seen even by a late waiter.
        let evicted = first.slot.evicted.notified();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(1), evicted)
                    .await
                    .expect("the oldest waiting connection is told to close");
            });
        drop(first);
        assert_eq!(
            connections.open(),
            3,
            "an evicted slot is not released twice"
        );
        // When every connection is in use, a new one is refused.
        for admitted in [&_second, &third, &fourth] {
            admitted.slot.requested.store(true, Ordering::Release);
        }
        assert_eq!(
            connections.admit(peer("10.0.0.4")).err(),
            Some(Refusal::Full(3))
        );
        drop(third);
        assert!(connections.admit(peer("10.0.0.4")).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let connections = Connections::new(limits(10, Some(1)), "test", None);
        let _held = connections.admit(peer("2001:db8:1:2::1")).unwrap();
        assert!(connections.admit(peer("2001:db8:1:2::ffff")).is_err());
        assert!(connections.admit(peer("2001:db8:1:3::1")).is_ok());
    }
}
