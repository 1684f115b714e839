//! An axum router served on 127.0.0.1:0 from a thread and runtime of its own, over TLS
//! from the test CA when asked, and stopped on drop: what the in-process peers (the
//! token issuer, the blob store's recording forwarder) and the `fake_*` servers all
//! run on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use super::tls::TestCa;

/// An axum router served on 127.0.0.1 from its own thread and runtime (so sync and
/// async tests alike can use it), stopped on drop.
pub struct HttpServer {
    address: SocketAddr,
    tls: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds first, so `router` can be built knowing the address, and connections
    /// queue until the thread accepts them: no readiness wait is needed.
    pub fn start(ca: Option<&TestCa>, router: impl FnOnce(SocketAddr) -> Router) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let router = router(address);
        let acceptor =
            ca.map(|ca| tokio_rustls::TlsAcceptor::from(Arc::new(ca.rustls_server_config())));
        let tls = acceptor.is_some();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let serve = async move {
                    let result = match acceptor {
                        Some(acceptor) => {
                            axum::serve(TlsListener::new(listener, acceptor), router).await
                        }
                        None => axum::serve(listener, router).await,
                    };
                    result.expect("fake server serves");
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            address,
            tls,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        self.address.to_string()
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `axum::serve` over TLS; each handshake runs in its own task, so a client that never
/// finishes one holds up no other.
struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local_address: SocketAddr,
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let local_address = listener.local_addr().expect("local address");
        let (sender, accepted) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        let _ = sender.send((stream, peer)).await;
                    }
                });
            }
        });
        Self {
            accepted,
            local_address,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_address)
    }
}
