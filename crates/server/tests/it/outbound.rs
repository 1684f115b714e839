//! The guarded outbound client against real sockets on loopback: every spelling of a
//! forbidden destination is refused before a connection is made, redirects are checked
//! again and lose `Authorization` when they change host, bodies are capped, and TLS
//! failures point at `REGKEEPER_OUTBOUND_CA_FILE`.
//!
//! The servers here are hand-written (`fake_*`) because what they must do — redirect to
//! the metadata service, send an oversized body, present an untrusted certificate — is
//! hostile behaviour no real registry offers.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use regkeeper::config::OutboundConfig;
use regkeeper::outbound::{OutboundClient, OutboundError};
use reqwest::Method;
use url::Url;

/// Appears in URLs and headers of the requests; must never appear in an error message.
const CANARY: &str = "outbound-canary-7f3a";

fn client(allow: &[&str], http: &[String]) -> OutboundClient {
    client_with(OutboundConfig {
        allow_networks: allow
            .iter()
            .map(|network| network.parse().unwrap())
            .collect(),
        ca_file: None,
        http_registries: http.to_vec(),
        timeout: None,
        token_realms: Vec::new(),
    })
}

fn client_with(config: OutboundConfig) -> OutboundClient {
    OutboundClient::with_timeouts(&config, Duration::from_secs(2), Duration::from_secs(5))
        .expect("outbound client")
}

async fn get(client: &OutboundClient, url: &str) -> Result<reqwest::Response, OutboundError> {
    let request = client
        .request(Method::GET, Url::parse(url).unwrap())
        .header("authorization", format!("Bearer {CANARY}"));
    client.send(request).await
}

fn assert_clean(error: &OutboundError) {
    let text = error.to_string();
    assert!(!text.contains(CANARY), "error leaks the canary: {text}");
}

/// A loopback port (IPv4, and IPv6 where the machine has it) that counts the
/// connections made to it and never answers. Connections wait in the accept queue,
/// so counting after the fact misses none.
struct Tripwire {
    port: u16,
    listeners: Vec<TcpListener>,
}

impl Tripwire {
    fn new() -> Self {
        let ipv4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = ipv4.local_addr().unwrap().port();
        let mut listeners = vec![ipv4];
        if let Ok(ipv6) = TcpListener::bind(("::1", port)) {
            listeners.push(ipv6);
        }
        Self { port, listeners }
    }

    fn connections(&self) -> usize {
        let mut count = 0;
        for listener in &self.listeners {
            listener.set_nonblocking(true).unwrap();
            loop {
                match listener.accept() {
                    Ok(_) => count += 1,
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) => panic!("accept: {error}"),
                }
            }
        }
        count
    }
}

#[tokio::test]
async fn outbound_forbidden_destinations_are_refused_before_connecting() {
    let tripwire = Tripwire::new();
    let port = tripwire.port;
    let client = client(&[], &[]);
    let mut urls = vec![
        format!("https://127.0.0.1:{port}/v2/?token={CANARY}"),
        format!("https://localhost:{port}/"),
        format!("https://2130706433:{port}/"),
        format!("https://0x7f000001:{port}/"),
        format!("https://127.1:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://[::1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("https://0.0.0.0:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    // Only where the resolver knows these names (glibc's hosts lookup does not take
    // `localhost.` with its trailing dot); otherwise they are DNS errors.
    for name in ["localhost.", "ip6-localhost"] {
        if (name, 0).to_socket_addrs().is_ok() {
            urls.push(format!("https://{name}:{port}/"));
        }
    }
    for url in &urls {
        let error = get(&client, url).await.unwrap_err();
        assert!(
            matches!(
                error,
                OutboundError::DestinationForbidden { .. }
                    | OutboundError::PlainHttpForbidden { .. }
            ),
            "{url}: {error:?}"
        );
        assert_clean(&error);
    }
    let error = get(&client, &format!("https://localhost:{port}/"))
        .await
        .unwrap_err();
    let OutboundError::DestinationForbidden {
        host,
        address,
        rule,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(host, "localhost");
    assert!(address.is_some_and(|address| address.is_loopback()));
    assert_eq!(*rule, regkeeper::outbound::rule::LOOPBACK);
    assert!(
        error
            .to_string()
            .contains("REGKEEPER_OUTBOUND_ALLOW_NETWORKS"),
        "{error}"
    );
    assert_eq!(
        tripwire.connections(),
        0,
        "a forbidden destination was connected to"
    );
    // The tripwire does see a connection when one is made.
    let _connection = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(tripwire.connections(), 1);
}

#[tokio::test]
async fn outbound_plain_http_needs_the_registry_listed() {
    let tripwire = Tripwire::new();
    let client = client(&["127.0.0.0/8"], &["127.0.0.1:1".to_owned()]);
    let error = get(&client, &format!("http://127.0.0.1:{}/v2/", tripwire.port))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "plain_http_forbidden", "{error}");
    assert!(error
        .to_string()
        .contains("REGKEEPER_OUTBOUND_HTTP_REGISTRIES"));
    assert_eq!(tripwire.connections(), 0);
}

/// What a fake server answers: the status line and headers, and the body.
type Responder = Box<dyn Fn(&str) -> (String, Vec<u8>) + Send>;

/// An HTTP/1.1 server on `ip:0` answering every request with `respond(request head)`,
/// and sending each request head (lower-cased) to the returned channel.
fn fake_http_server(ip: &str, respond: Responder) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(head) = read_head(&mut stream) else {
                continue;
            };
            let (status_and_headers, body) = respond(&head);
            let _ = sender.send(head.to_ascii_lowercase());
            let _ = stream.write_all(status_and_headers.as_bytes());
            let _ = stream.write_all(b"Connection: close\r\n\r\n");
            let _ = stream.write_all(&body);
        }
    });
    (address, receiver)
}

fn read_head(stream: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

fn redirect_to(location: String) -> Responder {
    Box::new(move |_| {
        (
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"),
            Vec::new(),
        )
    })
}

fn ok_body(body: &'static str) -> Responder {
    Box::new(move |_| {
        (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len()),
            body.as_bytes().to_vec(),
        )
    })
}

#[tokio::test]
async fn outbound_redirect_to_another_host_drops_authorization() {
    let (target, target_requests) = fake_http_server("127.0.0.2", ok_body("landed"));
    let (origin, origin_requests) =
        fake_http_server("127.0.0.1", redirect_to(format!("http://{target}/landing")));
    let client = client(&["127.0.0.0/8"], &[origin.to_string(), target.to_string()]);
    let response = get(&client, &format!("http://{origin}/v2/?scope={CANARY}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = OutboundClient::read_capped(response, 1024).await.unwrap();
    assert_eq!(&body[..], b"landed");
    let first = origin_requests.recv().unwrap();
    assert!(
        first.contains(&format!("authorization: bearer {CANARY}")),
        "{first}"
    );
    let second = target_requests.recv().unwrap();
    assert!(second.starts_with("get /landing "), "{second}");
    assert!(
        !second.contains("authorization"),
        "credentials followed the redirect: {second}"
    );
    assert!(
        !second.contains(CANARY),
        "the first URL leaked (Referer?): {second}"
    );
}

#[tokio::test]
async fn outbound_redirects_to_forbidden_destinations_are_refused() {
    let tripwire = Tripwire::new();
    let targets = [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::1]:{}/", tripwire.port),
        format!("https://[::ffff:a9fe:a9fe]:{}/", tripwire.port),
    ];
    for target in targets {
        let (origin, _) = fake_http_server("127.0.0.1", redirect_to(target.clone()));
        // 127.0.0.1 only: the redirect targets stay forbidden.
        let client = client(&["127.0.0.1/32"], &[origin.to_string()]);
        let error = get(&client, &format!("http://{origin}/v2/"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, OutboundError::DestinationForbidden { .. }),
            "{target}: {error:?}"
        );
        assert_clean(&error);
    }
    assert_eq!(tripwire.connections(), 0);
}

#[tokio::test]
async fn outbound_redirect_to_unlisted_plain_http_is_refused() {
    let (origin, _) = fake_http_server("127.0.0.1", redirect_to("http://127.0.0.3:1/".into()));
    let client = client(&["127.0.0.0/8"], &[origin.to_string()]);
    let error = get(&client, &format!("http://{origin}/"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "plain_http_forbidden", "{error}");
}

#[tokio::test]
async fn outbound_redirect_loops_stop_after_five() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let (origin, _) = fake_http_server(
        "127.0.0.1",
        Box::new(move |_| {
            let hop = counter.fetch_add(1, Ordering::SeqCst);
            (
                format!("HTTP/1.1 302 Found\r\nLocation: /hop/{hop}\r\nContent-Length: 0\r\n"),
                Vec::new(),
            )
        }),
    );
    let client = client(&["127.0.0.0/8"], &[origin.to_string()]);
    let error = get(&client, &format!("http://{origin}/"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "too_many_redirects", "{error:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        6,
        "the request and five redirects"
    );
}

#[tokio::test]
async fn outbound_bodies_past_the_limit_are_cut() {
    // Announced with Content-Length, and streamed without one.
    let (announced, _) = fake_http_server(
        "127.0.0.1",
        Box::new(|_| {
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n".to_owned(),
                vec![b'x'; 100_000],
            )
        }),
    );
    let (streamed, _) = fake_http_server(
        "127.0.0.1",
        Box::new(|_| ("HTTP/1.1 200 OK\r\n".to_owned(), vec![b'y'; 100_000])),
    );
    let client = client(
        &["127.0.0.0/8"],
        &[announced.to_string(), streamed.to_string()],
    );
    for origin in [announced, streamed] {
        let response = get(&client, &format!("http://{origin}/token"))
            .await
            .unwrap();
        let error = OutboundClient::read_capped(response, 4096)
            .await
            .unwrap_err();
        assert!(
            matches!(error, OutboundError::TooLarge { limit: 4096 }),
            "{error:?}"
        );
    }
    let response = get(&client, &format!("http://{announced}/token"))
        .await
        .unwrap();
    let body = OutboundClient::read_capped(response, 100_000)
        .await
        .unwrap();
    assert_eq!(body.len(), 100_000);
}

#[tokio::test]
async fn outbound_connection_refused_and_silent_servers_are_retryable() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let silent = Tripwire::new();
    let client = OutboundClient::with_timeouts(
        &OutboundConfig {
            allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..OutboundConfig::default()
        },
        Duration::from_millis(500),
        Duration::from_millis(500),
    )
    .unwrap();
    let error = get(
        &client,
        &format!("https://127.0.0.1:{closed_port}/?q={CANARY}"),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), "connect_failed", "{error:?}");
    assert!(error.retryable());
    assert_clean(&error);
    let error = get(
        &client,
        &format!("https://127.0.0.1:{}/?q={CANARY}", silent.port),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), "timeout", "{error:?}");
    assert!(error.retryable());
    assert_clean(&error);
}

/// A TLS server on 127.0.0.1:0 presenting a self-signed certificate for `localhost`,
/// answering `200 ok`. Returns the port and the certificate's PEM.
fn fake_tls_server() -> (u16, String) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let connection = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            if read_head(&mut tls).is_none() {
                continue;
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, certified.cert.pem())
}

#[tokio::test]
async fn outbound_untrusted_certificates_point_at_the_ca_file_setting() {
    let (port, pem) = fake_tls_server();
    let untrusting = client(&["127.0.0.0/8"], &[]);
    let error = get(
        &untrusting,
        &format!("https://localhost:{port}/v2/?q={CANARY}"),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), "tls_failed", "{error:?}");
    assert!(!error.retryable());
    assert!(
        error.to_string().contains("REGKEEPER_OUTBOUND_CA_FILE"),
        "{error}"
    );
    assert_clean(&error);

    let directory = tempfile::tempdir().unwrap();
    let ca_file = directory.path().join("ca.pem");
    std::fs::write(&ca_file, pem).unwrap();
    let trusting = client_with(OutboundConfig {
        allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ca_file: Some(ca_file),
        ..OutboundConfig::default()
    });
    for host in ["localhost", "127.0.0.1"] {
        let response = get(&trusting, &format!("https://{host}:{port}/v2/"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = OutboundClient::read_capped(response, 16).await.unwrap();
        assert_eq!(&body[..], b"ok");
    }
}

#[test]
fn outbound_ip_address_type_is_what_errors_carry() {
    // The error names the address it refused, so an operator knows what to allow.
    let client = client(&[], &[]);
    let error = client
        .check_url(&Url::parse("https://0x7f000001/").unwrap())
        .unwrap_err();
    let OutboundError::DestinationForbidden { address, .. } = error else {
        panic!("{error:?}");
    };
    assert_eq!(address, Some(IpAddr::from([127, 0, 0, 1])));
}
