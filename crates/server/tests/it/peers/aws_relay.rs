//! An HTTP relay in front of moto_server that sees every AWS call: it counts
//! GetAuthorizationToken calls (moto does not), and on demand answers them itself with
//! a `ThrottlingException` or rewrites moto's answer to claim an expiry ten years
//! ahead; it can also throttle the next Secrets Manager writes (PutSecretValue,
//! CreateSecret). For KMS (`TrentService.*`) it counts calls by operation and, on demand, plays
//! the faults moto cannot: KMS down (the connection is closed unanswered), access
//! denied (an `AccessDeniedException` as KMS words it for a key policy that does not
//! allow the caller), or a call held until released (to kill the caller meanwhile).
//! Not a stand-in for AWS: everything else is moto's own answer.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::moto::Moto;

const THROTTLED: &[u8] = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
const KMS_DENIED: &[u8] = br#"{"__type":"AccessDeniedException","message":"User: arn:aws:iam::123456789012:user/regkeeper is not authorized to perform: kms:Decrypt on this resource because no resource-based policy allows the kms:Decrypt action"}"#;

/// What the relay does with KMS calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsMode {
    /// Relayed to moto.
    Up,
    /// The connection is closed without an answer, as an unreachable endpoint.
    Down,
    /// Answered `AccessDeniedException` (HTTP 400).
    Denied,
}

// The relay runs on plain threads, never in async code, and no lock is held across a
// wait: `std::sync::Mutex` is what it needs.
#[allow(clippy::disallowed_types)]
#[derive(Default)]
struct Switches {
    throttle: AtomicBool,
    far_expiry: AtomicBool,
    /// Every GetAuthorizationToken that reached the relay, throttled or not.
    token_calls: AtomicUsize,
    throttled: AtomicUsize,
    /// How many of the next Secrets Manager writes to throttle, and how many were.
    throttle_secret_writes: AtomicUsize,
    secret_writes_throttled: AtomicUsize,
    /// 0 up, 1 down, 2 denied.
    kms_mode: AtomicUsize,
    /// KMS calls that reached the relay, by operation (`Decrypt`, `GenerateDataKey`, …).
    kms_calls: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    /// While set, the `hold_after`-th and later calls of this operation wait.
    hold: std::sync::Mutex<Option<(String, usize)>>,
    held: AtomicUsize,
}

pub struct AwsRelay {
    pub port: u16,
    switches: Arc<Switches>,
}

impl AwsRelay {
    /// Relays to moto at `target` (`HOST:PORT`).
    pub fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let switches = Arc::new(Switches::default());
        let shared = Arc::clone(&switches);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (target, switches) = (target.clone(), Arc::clone(&shared));
                std::thread::spawn(move || relay(client, &target, &switches));
            }
        });
        Self { port, switches }
    }

    /// Relays to the running `moto`, the one target every test gives it.
    pub fn to_moto(moto: &Moto) -> Self {
        Self::start(
            moto.endpoint_url()
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
        )
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// While set, GetAuthorizationToken answers `ThrottlingException` (HTTP 400).
    pub fn set_throttle(&self, on: bool) {
        self.switches.throttle.store(on, Ordering::SeqCst);
    }

    /// While set, moto's GetAuthorizationToken answers claim an expiry ten years ahead.
    pub fn set_far_expiry(&self, on: bool) {
        self.switches.far_expiry.store(on, Ordering::SeqCst);
    }

    /// The next `count` PutSecretValue or CreateSecret calls answer
    /// `ThrottlingException` (HTTP 400), whatever their retries.
    pub fn throttle_secret_writes(&self, count: usize) {
        self.switches
            .throttle_secret_writes
            .store(count, Ordering::SeqCst);
    }

    /// Secrets Manager writes answered with `ThrottlingException` so far.
    pub fn secret_writes_throttled(&self) -> usize {
        self.switches.secret_writes_throttled.load(Ordering::SeqCst)
    }

    pub fn token_calls(&self) -> usize {
        self.switches.token_calls.load(Ordering::SeqCst)
    }

    pub fn throttled(&self) -> usize {
        self.switches.throttled.load(Ordering::SeqCst)
    }

    pub fn set_kms(&self, mode: KmsMode) {
        let value = match mode {
            KmsMode::Up => 0,
            KmsMode::Down => 1,
            KmsMode::Denied => 2,
        };
        self.switches.kms_mode.store(value, Ordering::SeqCst);
    }

    /// KMS calls of `operation` (e.g. `Decrypt`) seen so far.
    pub fn kms_calls(&self, operation: &str) -> usize {
        self.switches
            .kms_calls
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Holds the `nth` (counting every call so far, from 1) and later calls of KMS
    /// `operation` until [`Self::release`]; [`Self::held`] says how many wait.
    pub fn hold_kms(&self, operation: &str, nth: usize) {
        *self.switches.hold.lock().unwrap() = Some((operation.to_owned(), nth));
    }

    pub fn release(&self) {
        *self.switches.hold.lock().unwrap() = None;
    }

    pub fn held(&self) -> usize {
        self.switches.held.load(Ordering::SeqCst)
    }
}

/// The KMS operation of a request head (`X-Amz-Target: TrentService.Decrypt`).
fn kms_operation(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-amz-target")
            .then(|| value.trim().strip_prefix("TrentService."))?
            .map(str::to_owned)
    })
}

/// One HTTP message's head (request or status line and headers) and body.
fn read_message(reader: &mut impl BufRead) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    std::io::Read::read_exact(reader, &mut body).ok()?;
    Some((head, body))
}

/// moto's answer with every `expiresAt` set ten years from now, and its length fixed.
fn with_far_expiry(head: &str, body: &[u8]) -> (String, Vec<u8>) {
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (head.to_owned(), body.to_vec());
    };
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 10.0 * 365.0 * 86_400.0;
    if let Some(data) = answer["authorizationData"].as_array_mut() {
        for entry in data {
            entry["expiresAt"] = serde_json::json!(far);
        }
    }
    let body = answer.to_string().into_bytes();
    let head = head
        .lines()
        .map(|line| match line.split_once(':') {
            Some((name, _)) if name.eq_ignore_ascii_case("content-length") => {
                format!("Content-Length: {}", body.len())
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    (format!("{}\r\n\r\n", head.trim_end()), body)
}

fn relay(client: TcpStream, target: &str, switches: &Switches) {
    let mut from_client = BufReader::new(client.try_clone().unwrap());
    let mut to_client = client;
    while let Some((head, body)) = read_message(&mut from_client) {
        if let Some(operation) = kms_operation(&head) {
            let count = {
                let mut calls = switches.kms_calls.lock().unwrap();
                let count = calls.entry(operation.clone()).or_insert(0);
                *count += 1;
                *count
            };
            let must_hold = |switches: &Switches| matches!(&*switches.hold.lock().unwrap(), Some((held, nth)) if *held == operation && count >= *nth);
            if must_hold(switches) {
                switches.held.fetch_add(1, Ordering::SeqCst);
                while must_hold(switches) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                switches.held.fetch_sub(1, Ordering::SeqCst);
            }
            match switches.kms_mode.load(Ordering::SeqCst) {
                1 => return,
                2 => {
                    let answer = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
                         x-amzn-ErrorType: AccessDeniedException\r\nContent-Length: {}\r\n\r\n",
                        KMS_DENIED.len()
                    );
                    if to_client.write_all(answer.as_bytes()).is_err()
                        || to_client.write_all(KMS_DENIED).is_err()
                    {
                        return;
                    }
                    continue;
                }
                _ => {}
            }
        }
        let token_call = head.to_ascii_lowercase().contains("getauthorizationtoken");
        if token_call {
            switches.token_calls.fetch_add(1, Ordering::SeqCst);
        }
        let lower = head.to_ascii_lowercase();
        let secret_write = lower.contains("secretsmanager.putsecretvalue")
            || lower.contains("secretsmanager.createsecret");
        let throttle_write = secret_write
            && switches
                .throttle_secret_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
        if throttle_write {
            switches
                .secret_writes_throttled
                .fetch_add(1, Ordering::SeqCst);
        }
        if throttle_write || (token_call && switches.throttle.load(Ordering::SeqCst)) {
            if token_call {
                switches.throttled.fetch_add(1, Ordering::SeqCst);
            }
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
                 x-amzn-ErrorType: ThrottlingException\r\nContent-Length: {}\r\n\r\n",
                THROTTLED.len()
            );
            if to_client.write_all(answer.as_bytes()).is_err()
                || to_client.write_all(THROTTLED).is_err()
            {
                return;
            }
            continue;
        }
        // A connection per request, whether or not moto keeps connections alive.
        let Ok(mut writer) = TcpStream::connect(target) else {
            return;
        };
        let mut reader = BufReader::new(writer.try_clone().unwrap());
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
        let Some((mut answer_head, mut answer_body)) = read_message(&mut reader) else {
            return;
        };
        if token_call && switches.far_expiry.load(Ordering::SeqCst) {
            (answer_head, answer_body) = with_far_expiry(&answer_head, &answer_body);
        }
        if to_client.write_all(answer_head.as_bytes()).is_err()
            || to_client.write_all(&answer_body).is_err()
        {
            return;
        }
    }
}
