//! `regkeeper login` without `--role` (issue 13 §4): a person signs in through the
//! server's identity provider in a browser, with a loopback redirect (RFC 8252 §7.3).
//!
//! The CLI listens on `127.0.0.1` on a port the OS picks, makes `state`, `nonce` and a
//! PKCE verifier, and asks the server (`POST /api/v1/oidc/login/start`) for the
//! provider's URL. The browser comes back to the loopback listener with a code; the
//! CLI checks `state` and hands the code, its verifier and the nonce to the server
//! (`POST /api/v1/oidc/login`), which alone holds the client secret, redeems the code
//! and answers with a short-lived API token. The CLI is thus a public client of
//! regkeeper, never of the provider.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use regkeeper_wire::{Sensitive, SignInInput, SignInStart, SignInStarted, SignedIn};
use sha2::{Digest, Sha256};

use super::{Client, ClientError};

const CALLBACK_PATH: &str = "/callback";
/// A browser request line and headers are far smaller.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How often the listener looks for the browser while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn random_value() -> Result<String, ClientError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|error| ClientError::Config(format!("no randomness from the OS: {error}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Compares two values in constant time.
fn same(left: &str, right: &str) -> bool {
    left.len() == right.len()
        && left
            .bytes()
            .zip(right.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

fn decode_component(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// What the browser brought to the loopback listener.
enum Arrival {
    Code {
        code: Sensitive,
        state: String,
    },
    Error(String),
    /// Another path (a favicon), or a request without our parameters.
    Other,
}

fn read_arrival(stream: &TcpStream) -> std::io::Result<Arrival> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.take(MAX_REQUEST_BYTES as u64));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != CALLBACK_PATH {
        return Ok(Arrival::Other);
    }
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "code" => code = Some(Sensitive::new(decode_component(value))),
            "state" => state = Some(decode_component(value)),
            "error" => error = Some(decode_component(value)),
            "error_description" => description = Some(decode_component(value)),
            _ => {}
        }
    }
    Ok(match (error, code, state) {
        (Some(error), _, _) => Arrival::Error(match description {
            Some(description) => format!("{error} ({description})"),
            None => error,
        }),
        (None, Some(code), Some(state)) => Arrival::Code { code, state },
        _ => Arrival::Other,
    })
}

fn answer(mut stream: &TcpStream, status: &str, message: &str) {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>regkeeper</title></head><body><p>{message}</p></body></html>"
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

impl Client {
    /// Signs a person in through the server's identity provider. `open` is given the
    /// URL to visit (to print it, and perhaps start a browser); the browser has
    /// `timeout` to come back.
    pub fn sign_in_with_browser(
        &self,
        open: &mut dyn FnMut(&str),
        timeout: Duration,
    ) -> Result<SignedIn, ClientError> {
        let local = |error: std::io::Error| {
            ClientError::Config(format!(
                "the loopback listener for the browser failed: {error}"
            ))
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(local)?;
        let port = listener.local_addr().map_err(local)?.port();
        let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        let state = random_value()?;
        let nonce = random_value()?;
        let verifier = Sensitive::new(random_value()?);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()));
        // Neither request may carry a stored API token: the sign-in is how one is had.
        let anonymous = self.anonymous();
        let started: SignInStarted = anonymous.post(
            "/api/v1/oidc/login/start",
            &SignInStart {
                redirect_uri: redirect_uri.clone(),
                state: state.clone(),
                nonce: nonce.clone(),
                code_challenge: challenge,
            },
        )?;
        open(&started.authorization_url);

        listener.set_nonblocking(true).map_err(local)?;
        // Time spent waiting, counted in polls: the wait is all sleeping, so this is the
        // elapsed time to within a poll, and needs no clock.
        let mut waited = Duration::ZERO;
        loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    if waited >= timeout {
                        return Err(ClientError::Config(format!(
                            "no sign-in came back from the browser within {} seconds",
                            timeout.as_secs()
                        )));
                    }
                    std::thread::sleep(POLL_INTERVAL);
                    waited += POLL_INTERVAL;
                    continue;
                }
                Err(error) => return Err(local(error)),
            };
            stream.set_nonblocking(false).map_err(local)?;
            match read_arrival(&stream) {
                Ok(Arrival::Code {
                    code,
                    state: returned,
                }) if same(&returned, &state) => {
                    let result = anonymous.post::<_, SignedIn>(
                        "/api/v1/oidc/login",
                        &SignInInput {
                            code,
                            code_verifier: verifier.clone(),
                            redirect_uri: redirect_uri.clone(),
                            nonce: nonce.clone(),
                        },
                    );
                    match &result {
                        Ok(_) => answer(
                            &stream,
                            "200 OK",
                            "Signed in to regkeeper. You can close this tab and return to the terminal.",
                        ),
                        Err(_) => answer(
                            &stream,
                            "401 Unauthorized",
                            "regkeeper did not sign you in; the terminal says why.",
                        ),
                    }
                    return result;
                }
                // Not the sign-in this command started (a stale tab, another page on
                // this machine): refuse it and keep waiting for the real one.
                Ok(Arrival::Code { .. }) => answer(
                    &stream,
                    "400 Bad Request",
                    "This answer does not belong to the sign-in the terminal is waiting for.",
                ),
                Ok(Arrival::Error(error)) => {
                    answer(
                        &stream,
                        "401 Unauthorized",
                        "The identity provider did not sign you in; the terminal says why.",
                    );
                    return Err(ClientError::Config(format!(
                        "the identity provider did not sign you in: {error}"
                    )));
                }
                Ok(Arrival::Other) | Err(_) => answer(&stream, "404 Not Found", "Not found."),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_are_long_enough_for_pkce() {
        let value = random_value().unwrap();
        assert_eq!(value.len(), 43);
        assert_ne!(value, random_value().unwrap());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert_eq!(decode_component("a%2Fb+c"), "a/b c");
    }
}
