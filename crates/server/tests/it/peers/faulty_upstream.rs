//! A registry that misbehaves on purpose: a fault injector, not a stand-in for a real
//! registry (those are Debian's distribution, in `registry.rs`). Each [`Fault`] is one
//! way a registry, or whatever sits in front of it, goes wrong in production.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Accepts connections, reads the request, never answers.
    Silent,
    /// Answers every request with HTTP 500 and a distribution-style error body.
    ServerError,
    /// Answers every request with a load balancer's HTML error page (502).
    Html,
    /// `/v2/` challenges for a Bearer token whose realm sends an endless JSON body.
    EndlessToken,
    /// `/v2/` lets anyone in; manifests come as an endless body.
    EndlessManifest,
}

/// A fault-injecting registry on 127.0.0.1, stopped on drop.
pub struct FaultyUpstream {
    pub host_port: String,
    stop: Arc<AtomicBool>,
}

impl FaultyUpstream {
    pub fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let host_port = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let realm_host = host_port.clone();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stopped = Arc::clone(&stopped);
                        let realm_host = realm_host.clone();
                        std::thread::spawn(move || serve(stream, fault, &realm_host, &stopped));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { host_port, stop }
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A `host:port` on 127.0.0.1 where nothing listens: connections are refused.
pub fn refusing_host_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

fn serve(stream: TcpStream, fault: Fault, realm_host: &str, stopped: &AtomicBool) {
    stream.set_nonblocking(false).ok();
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let written = match fault {
            Fault::Silent => {
                while !stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Fault::ServerError => respond(
                &mut writer,
                "500 Internal Server Error",
                "application/json",
                &[],
                br#"{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":null}]}"#,
            ),
            Fault::Html => respond(
                &mut writer,
                "502 Bad Gateway",
                "text/html",
                &[],
                b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n",
            ),
            Fault::EndlessToken if path.starts_with("/token") => {
                endless(&mut writer, "application/json", stopped);
                return;
            }
            Fault::EndlessToken => {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://{realm_host}/token\",service=\"faulty\""
                );
                respond(
                    &mut writer,
                    "401 Unauthorized",
                    "application/json",
                    &[&challenge],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
                )
            }
            Fault::EndlessManifest if path.contains("/manifests/") => {
                endless(
                    &mut writer,
                    "application/vnd.oci.image.manifest.v1+json",
                    stopped,
                );
                return;
            }
            Fault::EndlessManifest => respond(
                &mut writer,
                "200 OK",
                "application/json",
                &["Docker-Distribution-API-Version: registry/2.0"],
                b"{}",
            ),
        };
        if written.is_err() {
            return;
        }
    }
}

fn respond(
    writer: &mut TcpStream,
    status: &str,
    content_type: &str,
    headers: &[&str],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}

/// A chunked body that never ends, until the client hangs up (or the test is over).
fn endless(writer: &mut TcpStream, content_type: &str, stopped: &AtomicBool) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    while !stopped.load(Ordering::SeqCst) {
        if writer.write_all(chunk.as_bytes()).is_err() {
            return;
        }
    }
}
