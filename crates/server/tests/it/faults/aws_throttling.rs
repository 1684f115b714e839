//! AWS throttling GetAuthorizationToken: a relay in front of moto_server answers
//! `ThrottlingException` (HTTP 400, AWS JSON error) while told to. On a paused clock,
//! the refresher backs off (failures and the wait before the next attempt grow, the
//! failure metric counts), the last good token is served until it really expires and
//! never after, and a refresh succeeds soon after the throttling ends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::config_from;
use regkeeper::clock::{Clock, ManualClock};
use regkeeper::service::{credentials, identity, resolve, tokens};
use regkeeper_wire as wire;

use crate::peers::moto::{self, Moto};
use crate::support::ADMIN_TOKEN;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const THROTTLED: &[u8] = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;

/// Relays HTTP/1.1 requests to moto one by one; while `throttle` is set, answers
/// GetAuthorizationToken itself with a `ThrottlingException` and counts it.
struct ThrottlingRelay {
    port: u16,
    throttle: Arc<AtomicBool>,
    throttled: Arc<AtomicUsize>,
}

impl ThrottlingRelay {
    fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let throttle = Arc::new(AtomicBool::new(false));
        let throttled = Arc::new(AtomicUsize::new(0));
        let (flag, counter) = (Arc::clone(&throttle), Arc::clone(&throttled));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (target, flag, counter) =
                    (target.clone(), Arc::clone(&flag), Arc::clone(&counter));
                std::thread::spawn(move || relay(client, &target, &flag, &counter));
            }
        });
        Self {
            port,
            throttle,
            throttled,
        }
    }
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
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn relay(client: TcpStream, target: &str, throttle: &AtomicBool, throttled: &AtomicUsize) {
    let mut from_client = BufReader::new(client.try_clone().unwrap());
    let mut to_client = client;
    while let Some((head, body)) = read_message(&mut from_client) {
        if throttle.load(Ordering::SeqCst)
            && head.to_ascii_lowercase().contains("getauthorizationtoken")
        {
            throttled.fetch_add(1, Ordering::SeqCst);
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
        let Some((answer_head, answer_body)) = read_message(&mut reader) else {
            return;
        };
        if to_client.write_all(answer_head.as_bytes()).is_err()
            || to_client.write_all(&answer_body).is_err()
        {
            return;
        }
    }
}

fn failure_count(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with("regkeeper_token_refreshes_total{outcome=\"failure\"}"))
        .and_then(|line| line.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

/// `failures` and `next_attempt_at - updated_at` of the one stored token.
fn backoff_state(database: &std::path::Path, runtime: &tokio::runtime::Runtime) -> (i64, i64) {
    runtime.block_on(async {
        use sqlx::Connection;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(database)
            .read_only(true);
        let mut connection = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query_as("SELECT failures, next_attempt_at - updated_at FROM registry_tokens")
            .fetch_one(&mut connection)
            .await
            .unwrap()
    })
}

#[test]
fn throttled_refreshes_back_off_and_the_last_good_token_is_served_until_it_expires() {
    let Some(moto) = Moto::start() else { return };
    let target = moto
        .endpoint_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let relay = ThrottlingRelay::start(target);
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let variables: HashMap<&str, String> = HashMap::from([
        ("REGKEEPER_DATA_DIR", data.display().to_string()),
        ("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN.to_owned()),
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", relay.port),
        ),
    ]);
    let config = config_from(&variables);
    let start = 1_800_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime
        .block_on(regkeeper::serve::build_app(config, clock.clone()))
        .unwrap();
    let admin = runtime.block_on(async {
        identity::bootstrap(&app).await.unwrap();
        identity::authenticate(&app, ADMIN_TOKEN).await.unwrap()
    });
    let input = wire::CredentialInput {
        name: Some("throttled".into()),
        registry: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com".into()),
        username: Some(moto::ACCESS_KEY_ID.into()),
        password: Some(wire::Sensitive::new(moto::SECRET_ACCESS_KEY)),
        verify: Some(false),
        ..Default::default()
    };
    runtime
        .block_on(credentials::create(&app, &admin, None, input))
        .unwrap();
    let resolve_now = || {
        runtime.block_on(resolve::resolve(
            &app,
            &admin,
            None,
            resolve::Request {
                image: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1"),
                ..Default::default()
            },
        ))
    };
    let first = resolve_now().expect("the first token is minted").login;
    let expires_at = first.expires_at.expect("ECR tokens expire");

    relay.throttle.store(true, Ordering::SeqCst);
    let database = data.join("regkeeper.db");
    let mut attempts_at = Vec::new();
    let mut waits = Vec::new();
    let mut served_after_throttling = 0;
    // Minute by minute, from the start to two hours past the token's expiry.
    while clock.now() < expires_at + 2 * HOUR {
        let before = relay.throttled.load(Ordering::SeqCst);
        runtime
            .block_on(tokens::refresh_cycle(&app, "replica-under-test"))
            .unwrap();
        if relay.throttled.load(Ordering::SeqCst) > before {
            attempts_at.push(clock.now());
            waits.push(backoff_state(&database, &runtime));
        }
        match resolve_now() {
            Ok(resolution) => {
                assert!(
                    clock.now() < expires_at,
                    "a token was served {} min after it expired",
                    (clock.now() - expires_at) / MINUTE
                );
                assert_eq!(resolution.login.issued_at, first.issued_at);
                if !attempts_at.is_empty() {
                    served_after_throttling += 1;
                }
            }
            Err(error) => assert!(
                clock.now() >= expires_at,
                "refused {} min before the token expired: {error}",
                (expires_at - clock.now()) / MINUTE
            ),
        }
        clock.advance(MINUTE);
    }
    let metrics = app.metrics.render();
    eprintln!(
        "{} throttled attempts; (failures, wait ms) after each: {waits:?}",
        attempts_at.len()
    );
    assert!(attempts_at.len() >= 5, "{attempts_at:?}");
    assert!(served_after_throttling > 60, "{served_after_throttling}");
    // Backoff: failures count up, and the wait before the next attempt never shrinks
    // and reaches the 15-minute cap, so six hours of throttling cost few calls.
    for (index, pair) in waits.windows(2).enumerate() {
        assert!(
            pair[1].0 > pair[0].0,
            "failures at attempt {index}: {waits:?}"
        );
        assert!(pair[1].1 >= pair[0].1, "the wait shrank: {waits:?}");
    }
    assert_eq!(waits.last().unwrap().1, regkeeper::tokens::BACKOFF_CAP_MS);
    // Without backoff, one attempt a minute: 360.
    assert!(attempts_at.len() < 60, "{} attempts", attempts_at.len());
    assert!(
        failure_count(&metrics) >= attempts_at.len() as f64,
        "{metrics}"
    );

    // Throttling ends: the next attempt (within the 15-minute cap) mints a new token.
    relay.throttle.store(false, Ordering::SeqCst);
    let resumed = clock.now();
    let renewed = loop {
        runtime
            .block_on(tokens::refresh_cycle(&app, "replica-under-test"))
            .unwrap();
        if let Ok(resolution) = resolve_now() {
            break resolution.login;
        }
        assert!(clock.now() - resumed <= 16 * MINUTE, "no recovery");
        clock.advance(MINUTE);
    };
    assert!(renewed.issued_at >= resumed);
    assert!(renewed.expires_at.unwrap() > clock.now());
}
