//! The floor of `docker-credential-regkeeper get`: a new process that sends one
//! `POST /api/v1/resolve` on a new connection and prints the answer, with nothing else
//! (no settings file, no TLS stack, no HTTP or JSON library). What the helper costs
//! beyond this program is its own start-up and its libraries; what this program costs
//! beyond `/bin/true` is the process, the connection and the server's audited resolve.
//!
//!     rustc -O -o target/bench-tools/bare-client bench/consumers/bare-client.rs
//!     REGKEEPER_URL=http://127.0.0.1:PORT REGKEEPER_TOKEN=rk_… \
//!         target/bench-tools/bare-client < server-url.txt
//!
//! Plain http only (the benchmarks' servers listen on 127.0.0.1). Reads the registry
//! server URL on standard input as the helper does; prints the response body.

use std::io::{Read, Write};
use std::net::TcpStream;

fn main() {
    let url = std::env::var("REGKEEPER_URL").expect("REGKEEPER_URL");
    let token = std::env::var("REGKEEPER_TOKEN").expect("REGKEEPER_TOKEN");
    let address = url
        .strip_prefix("http://")
        .expect("REGKEEPER_URL must be http://HOST:PORT")
        .trim_end_matches('/');
    let mut server_url = String::new();
    std::io::stdin()
        .read_to_string(&mut server_url)
        .expect("read standard input");
    // The benchmark's server URLs hold no character JSON would need escaped.
    let body = format!("{{\"registry\":\"{}\"}}", server_url.trim());
    let request = format!(
        "POST /api/v1/resolve HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("receive");
    let text = String::from_utf8_lossy(&response);
    let (head, answer) = text.split_once("\r\n\r\n").expect("an HTTP response");
    if !head.starts_with("HTTP/1.1 200") {
        eprintln!("{}", head.lines().next().unwrap_or_default());
        std::process::exit(1);
    }
    println!("{answer}");
}
