//! AWS throttling GetAuthorizationToken: a relay in front of moto_server answers
//! `ThrottlingException` (HTTP 400, AWS JSON error) while told to. On a paused clock,
//! the refresher backs off (failures and the wait before the next attempt grow, the
//! failure metric counts), the last good token is served until it really expires and
//! never after, and a refresh succeeds soon after the throttling ends. Resolves during
//! throttling leave the provider to the refresher (issue 12 item 20), and an answer
//! claiming a ten-year expiry is trusted for 12 hours (item 12). The relay is
//! `peers/aws_relay.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::{in_process_app, InProcessApp};
use regkeeper::clock::{Clock, ManualClock};
use regkeeper::service::{credentials, registry_tokens, resolve, App};
use regkeeper_wire as wire;

use crate::peers::aws_relay::AwsRelay;
use crate::peers::moto::{self, Moto};
use crate::support::ADMIN_TOKEN;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

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
    let relay = AwsRelay::to_moto(&moto);
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let variables: HashMap<&str, String> = HashMap::from([
        ("REGKEEPER_DATA_DIR", data.display().to_string()),
        ("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN.to_owned()),
        ("AWS_ENDPOINT_URL", relay.endpoint_url()),
    ]);
    let start = 1_800_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let InProcessApp {
        runtime,
        app,
        admin,
    } = in_process_app(&variables, clock.clone());
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

    relay.set_throttle(true);
    let database = data.join("regkeeper.db");
    let mut attempts_at = Vec::new();
    let mut waits = Vec::new();
    let mut served_after_throttling = 0;
    // Minute by minute, from the start to two hours past the token's expiry.
    while clock.now() < expires_at + 2 * HOUR {
        let before = relay.throttled();
        runtime
            .block_on(registry_tokens::refresh_cycle(&app, "replica-under-test"))
            .unwrap();
        if relay.throttled() > before {
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
    assert_eq!(
        waits.last().unwrap().1,
        regkeeper::login_cache::BACKOFF_CAP_MS
    );
    // Without backoff, one attempt a minute: 360.
    assert!(attempts_at.len() < 60, "{} attempts", attempts_at.len());
    assert!(
        failure_count(&metrics) >= attempts_at.len() as f64,
        "{metrics}"
    );

    // Throttling ends: the next attempt (within the 15-minute cap) mints a new token.
    relay.set_throttle(false);
    let resumed = clock.now();
    let renewed = loop {
        runtime
            .block_on(registry_tokens::refresh_cycle(&app, "replica-under-test"))
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

/// An in-process server on a paused clock whose AWS is `relay`: its data directory,
/// clock, runtime, app and admin.
struct InProcess {
    _directory: Option<tempfile::TempDir>,
    data: std::path::PathBuf,
    clock: Arc<ManualClock>,
    runtime: tokio::runtime::Runtime,
    app: Arc<App>,
    admin: regkeeper::domain::identity::Principal,
}

impl InProcess {
    fn start(relay: &AwsRelay) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let data = directory.path().join("data");
        Self::start_on(relay, Some(directory), data, 1_800_000_000_000)
    }

    /// Another replica of `self`: the same database and key file, its own memory, and
    /// a clock of its own set to the same time.
    fn replica(&self, relay: &AwsRelay) -> Self {
        Self::start_on(relay, None, self.data.clone(), self.clock.now())
    }

    fn start_on(
        relay: &AwsRelay,
        directory: Option<tempfile::TempDir>,
        data: std::path::PathBuf,
        now: i64,
    ) -> Self {
        let variables: HashMap<&str, String> = HashMap::from([
            ("REGKEEPER_DATA_DIR", data.display().to_string()),
            ("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN.to_owned()),
            ("AWS_ENDPOINT_URL", relay.endpoint_url()),
        ]);
        let clock = Arc::new(ManualClock::new(now));
        let InProcessApp {
            runtime,
            app,
            admin,
        } = in_process_app(&variables, clock.clone());
        Self {
            _directory: directory,
            data,
            clock,
            runtime,
            app,
            admin,
        }
    }

    /// Adds an ECR credential for `host` with its own access key (its own identity).
    fn add_ecr(&self, name: &str, host: &str, access_key_id: &str) {
        let input = wire::CredentialInput {
            name: Some(name.into()),
            registry: Some(host.into()),
            username: Some(access_key_id.into()),
            password: Some(wire::Sensitive::new(moto::SECRET_ACCESS_KEY)),
            verify: Some(false),
            ..Default::default()
        };
        self.runtime
            .block_on(credentials::create(&self.app, &self.admin, None, input))
            .unwrap();
    }

    /// `count` resolves of `image` at once: each one's issue time, or error code.
    fn burst(&self, image: &str, count: usize) -> Vec<Result<i64, &'static str>> {
        self.runtime.block_on(async {
            let resolves = (0..count).map(|_| {
                resolve::resolve(
                    &self.app,
                    &self.admin,
                    None,
                    resolve::Request {
                        image: Some(image),
                        ..Default::default()
                    },
                )
            });
            futures_util::future::join_all(resolves)
                .await
                .into_iter()
                .map(|result| {
                    result
                        .map(|resolution| resolution.login.issued_at)
                        .map_err(|error| error.code())
                })
                .collect()
        })
    }
}

/// While AWS throttles and `image`'s identity has no usable token: a burst of 20
/// concurrent resolves makes one GetAuthorizationToken call and all fail; inside the
/// 5 s backoff that follows, every resolve gets the last error at once, with no call.
fn one_call_then_backing_off(server: &InProcess, relay: &AwsRelay, image: &str) {
    let before = relay.token_calls();
    let answers = server.burst(image, 20);
    assert_eq!(
        relay.token_calls() - before,
        1,
        "20 concurrent resolves: one call"
    );
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, Err("aws_throttled" | "token_mint_backing_off"))),
        "{answers:?}"
    );
    for _ in 0..4 {
        server.clock.advance(1_000);
        let answers = server.burst(image, 20);
        assert!(
            answers
                .iter()
                .all(|answer| *answer == Err("token_mint_backing_off")),
            "{answers:?}"
        );
    }
    assert_eq!(
        relay.token_calls() - before,
        1,
        "no call inside the backoff"
    );
}

/// Issue 12 item 20: during a provider outage resolves do not call the provider. With a
/// valid token past its refresh point, 20 resolves a second for 30 s while AWS throttles
/// make no GetAuthorizationToken call (the refresher makes its own, backing off); with no
/// token, concurrent resolves make one call, and until its backoff runs out every
/// resolve gets that failure at once (503) without calling AWS.
#[test]
fn resolves_during_throttling_leave_the_provider_alone() {
    let Some(moto) = Moto::start() else { return };
    let relay = AwsRelay::to_moto(&moto);
    let server = InProcess::start(&relay);
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1";
    server.add_ecr(
        "steady",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        moto::ACCESS_KEY_ID,
    );
    let first = server.burst(image, 1)[0].expect("the first token is minted");
    assert_eq!(relay.token_calls(), 1);

    // Past the refresh point (about 8 h of 12 h), AWS throttling.
    server.clock.advance(9 * HOUR);
    relay.set_throttle(true);
    for second in 0..30 {
        let answers = server.burst(image, 20);
        assert!(
            answers.iter().all(|answer| *answer == Ok(first)),
            "second {second}: {answers:?}"
        );
        if second % 10 == 0 {
            // The refresher tries, fails and backs off.
            server
                .runtime
                .block_on(registry_tokens::refresh_cycle(
                    &server.app,
                    "replica-under-test",
                ))
                .unwrap();
        }
        server.clock.advance(1_000);
    }
    let by_refresher = relay.token_calls() - 1;
    assert!(
        (1..=3).contains(&by_refresher),
        "600 resolves and 3 refresher cycles made {by_refresher} GetAuthorizationToken calls"
    );

    // A new identity with no token at all, still throttled.
    server.add_ecr(
        "newcomer",
        "210987654321.dkr.ecr.us-east-1.amazonaws.com",
        "AKIAIOSFODNN7NEWCOMR",
    );
    let newcomer = "210987654321.dkr.ecr.us-east-1.amazonaws.com/team/app:1";
    let before = relay.token_calls();
    one_call_then_backing_off(&server, &relay, newcomer);
    let error = server.runtime.block_on(resolve::resolve(
        &server.app,
        &server.admin,
        None,
        resolve::Request {
            image: Some(newcomer),
            ..Default::default()
        },
    ));
    let error = error.err().expect("still backing off");
    assert!(error.retryable(), "{error}");
    assert!(error.to_string().contains("throttling"), "{error}");
    // The 503's Retry-After is what is left of the 5 s backoff, 4 s in: 1 s.
    assert!(
        matches!(
            error,
            regkeeper::domain::Error::Unavailable {
                retry_after_seconds: Some(1),
                ..
            }
        ),
        "{error:?}"
    );
    // After it: one more call for the whole burst.
    server.clock.advance(1_500);
    server.burst(newcomer, 20);
    assert_eq!(
        relay.token_calls() - before,
        2,
        "one call after the backoff"
    );
    // Throttling ends; after the (now 10 s) backoff one call mints for everyone.
    relay.set_throttle(false);
    server.clock.advance(10_500);
    let answers = server.burst(newcomer, 20);
    assert_eq!(relay.token_calls() - before, 3);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}

/// Issue 12 item 20, a token this replica cannot open (sealed under a key version it
/// lacks, or damaged; here one flipped byte): it is re-minted like a missing one —
/// under the row's lease, so a burst makes one call, and a failure's backoff holds, so
/// while AWS throttles further resolves answer at once without calling it. It used to
/// call the provider on every resolve.
#[test]
fn an_unreadable_stored_token_is_reminted_under_the_lease_and_backoff() {
    let Some(moto) = Moto::start() else { return };
    let relay = AwsRelay::to_moto(&moto);
    let first_replica = InProcess::start(&relay);
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1";
    first_replica.add_ecr(
        "sealed",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        moto::ACCESS_KEY_ID,
    );
    let first = first_replica.burst(image, 1)[0].expect("the first token is minted");
    assert_eq!(relay.token_calls(), 1);
    first_replica.runtime.block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            first_replica.data.join("regkeeper.db").display()
        ))
        .await
        .unwrap();
        // One byte changed to a value it did not hold, whatever it was.
        sqlx::query(
            "UPDATE registry_tokens SET token_ciphertext = \
             substr(token_ciphertext, 1, 8) || CASE WHEN substr(token_ciphertext, 9, 1) = X'FF' THEN X'00' ELSE X'FF' END || substr(token_ciphertext, 10)",
        )
        .execute(&mut connection)
        .await
        .unwrap();
    });
    // A replica with nothing in memory finds only the unreadable row.
    let server = first_replica.replica(&relay);
    relay.set_throttle(true);
    one_call_then_backing_off(&server, &relay, image);
    assert_eq!(relay.token_calls(), 2);
    // Throttling over and the backoff run out: one call mints a readable token.
    relay.set_throttle(false);
    server.clock.advance(1_500);
    let answers = server.burst(image, 20);
    assert_eq!(relay.token_calls(), 3);
    let renewed = answers[0].expect("re-minted");
    assert!(renewed > first);
    assert!(
        answers.iter().all(|answer| *answer == Ok(renewed)),
        "{answers:?}"
    );
}

/// Issue 12 item 12: an ECR answer claiming an expiry ten years ahead is trusted for
/// ECR's documented 12 hours from receipt, no more; the refresh point follows.
#[test]
fn an_expiry_ten_years_ahead_is_capped_at_twelve_hours() {
    let Some(moto) = Moto::start() else { return };
    let relay = AwsRelay::to_moto(&moto);
    relay.set_far_expiry(true);
    let server = InProcess::start(&relay);
    server.add_ecr(
        "far",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        moto::ACCESS_KEY_ID,
    );
    let now = server.clock.now();
    let resolution = server
        .runtime
        .block_on(resolve::resolve(
            &server.app,
            &server.admin,
            None,
            resolve::Request {
                image: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1"),
                ..Default::default()
            },
        ))
        .expect("minted");
    assert_eq!(relay.token_calls(), 1);
    assert_eq!(resolution.login.issued_at, now);
    assert_eq!(resolution.login.expires_at, Some(now + 12 * HOUR));
    let listed = server
        .runtime
        .block_on(credentials::list(&server.app, &server.admin, None))
        .unwrap();
    let token = listed[0].token.as_ref().expect("linked to its token");
    assert!(token.refresh_at <= now + 9 * HOUR, "{:?}", token.refresh_at);
    assert_eq!(token.expires_at, Some(now + 12 * HOUR));
}

/// Issue 12 item 12, with a real server: the capped expiry is what `resolve` prints,
/// and the cap is logged (`token.expiry_capped`).
#[test]
fn a_real_server_logs_the_capped_expiry() {
    use crate::support::{add, ok, ServerOptions, TestServer};

    let Some(moto) = Moto::start() else { return };
    let relay = AwsRelay::to_moto(&moto);
    relay.set_far_expiry(true);
    let server = TestServer::start_with(ServerOptions {
        environment: vec![("AWS_ENDPOINT_URL".to_owned(), relay.endpoint_url())],
        ..ServerOptions::default()
    });
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    ok(&add(
        &server,
        &[
            "--name",
            "far",
            "--registry",
            host,
            "--username",
            moto::ACCESS_KEY_ID,
            "--no-verify",
        ],
        moto::SECRET_ACCESS_KEY,
    ));
    let before = std::time::SystemTime::now();
    let resolved = crate::support::resolve(&server, &format!("{host}/team/app:1"));
    let expires_at = time::OffsetDateTime::parse(
        resolved.expires_at.as_deref().expect("ECR logins expire"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires_at - time::OffsetDateTime::from(before);
    assert!(
        left <= time::Duration::hours(12) + time::Duration::seconds(5),
        "trusted for {left}"
    );
    assert!(left >= time::Duration::hours(12) - time::Duration::minutes(1));
    let log = server.log();
    assert!(log.contains("token.expiry_capped"), "{log}");
}
