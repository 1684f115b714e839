//! Forty-eight hours of token refreshes on a paused clock, against moto_server behind a
//! switchable TCP relay that injects outages: no expired token is ever served, refreshes
//! happen at about two thirds of the lifetime, stale tokens carry service through short
//! outages, and service resumes soon after a long one.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::{in_process_app, InProcessApp};
use regkeeper::clock::{Clock, ManualClock};
use regkeeper::domain::registry_token::RegistryTokenStatus;
use regkeeper::service::{credentials, registry_tokens, resolve};
use regkeeper_wire as wire;

use super::peers::moto::{self, Moto};
use super::support::ADMIN_TOKEN;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Forwards connections to `target` while `up`; while down, accepts and drops them,
/// which the AWS SDK sees as a network failure.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { port, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read) = from.read(&mut buffer) {
            if read == 0 || to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn ecr_input(name: &str, prefix: &str, key_id: &str) -> wire::CredentialInput {
    wire::CredentialInput {
        name: Some(name.into()),
        registry: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com".into()),
        path_prefix: Some(prefix.into()),
        username: Some(key_id.into()),
        password: Some(wire::Sensitive::new(moto::SECRET_ACCESS_KEY)),
        verify: Some(false),
        ..Default::default()
    }
}

#[test]
fn forty_eight_hours_with_outages() {
    let Some(moto) = Moto::start() else { return };
    let target = moto
        .endpoint_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let relay = Relay::start(target);
    let directory = tempfile::tempdir().unwrap();
    let variables: HashMap<&str, String> = HashMap::from([
        (
            "REGKEEPER_DATA_DIR",
            directory.path().join("data").display().to_string(),
        ),
        ("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN.to_owned()),
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", relay.port),
        ),
    ]);
    let start = 1_800_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let InProcessApp {
        runtime,
        app,
        admin,
    } = in_process_app(&variables, clock.clone());
    runtime.block_on(async {
        // Two credentials share one AWS identity; a third has its own.
        for (name, prefix, key_id) in [
            ("shared-a", "team-a", moto::ACCESS_KEY_ID),
            ("shared-b", "team-b", moto::ACCESS_KEY_ID),
            ("other", "team-c", "AKIAIOSFODNN7OTHER01"),
        ] {
            credentials::create(&app, &admin, None, ecr_input(name, prefix, key_id))
                .await
                .unwrap();
        }
        let images = [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-a/app:1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-b/app:1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-c/app:1",
        ];
        let owner = "replica-under-test";
        let mut issued_at: HashMap<String, Vec<i64>> = HashMap::new();
        let mut served = 0;
        let mut refused = 0;
        let mut stale_seen = false;
        let mut recovered_at = None;
        for minute in 0..(48 * 60) {
            let now = clock.now();
            let elapsed = now - start;
            relay.set_up(
                !((7 * HOUR..9 * HOUR).contains(&elapsed)
                    || (20 * HOUR..34 * HOUR).contains(&elapsed)),
            );
            registry_tokens::refresh_cycle(&app, owner).await.unwrap();
            if minute % 10 == 0 {
                for image in images {
                    match resolve::resolve(
                        &app,
                        &admin,
                        None,
                        resolve::Request {
                            image: Some(image),
                            ..Default::default()
                        },
                    )
                    .await
                    {
                        Ok(resolution) => {
                            let expires_at =
                                resolution.login.expires_at.expect("ECR logins expire");
                            assert!(
                                expires_at > now,
                                "an expired token was served at +{}m",
                                elapsed / MINUTE
                            );
                            let times = issued_at
                                .entry(resolution.credential.name.clone())
                                .or_default();
                            if times.last() != Some(&resolution.login.issued_at) {
                                times.push(resolution.login.issued_at);
                            }
                            served += 1;
                            if elapsed >= 34 * HOUR && recovered_at.is_none() {
                                recovered_at = Some(elapsed);
                            }
                        }
                        Err(error) => {
                            // Only a long outage that outlives the last token may refuse.
                            assert!(
                                (20 * HOUR..34 * HOUR + 16 * MINUTE).contains(&elapsed),
                                "refused at +{}m: {error}",
                                elapsed / MINUTE
                            );
                            refused += 1;
                        }
                    }
                }
                if (8 * HOUR + 40 * MINUTE..9 * HOUR).contains(&elapsed) {
                    let shown = credentials::show(&app, &admin, None, "shared-a")
                        .await
                        .unwrap();
                    stale_seen |= shown
                        .token
                        .as_ref()
                        .is_some_and(|token| token.status == RegistryTokenStatus::Stale);
                }
            }
            clock.advance(MINUTE);
        }
        assert!(served > 700, "served {served}");
        assert!(
            refused > 0,
            "the long outage outlived the token and was noticed"
        );
        assert!(stale_seen, "the short outage showed the token as stale");
        let recovered_at = recovered_at.expect("service resumed after the outage");
        assert!(
            recovered_at <= 34 * HOUR + 20 * MINUTE,
            "recovered only at +{}m",
            recovered_at / MINUTE
        );
        // Refreshes at about two thirds of the 12-hour lifetime (8 h ± 5 % jitter), the
        // one due during the short outage as soon as it ended.
        let shared = &issued_at["shared-a"];
        let first_refresh = shared[1] - shared[0];
        assert!(
            (7 * HOUR + 23 * MINUTE..=8 * HOUR + 37 * MINUTE).contains(&first_refresh)
                || (9 * HOUR..=9 * HOUR + 16 * MINUTE).contains(&first_refresh),
            "first refresh after {}m",
            first_refresh / MINUTE
        );
        for pair in shared.windows(2) {
            assert!(
                pair[1] - pair[0] <= 12 * HOUR + 20 * MINUTE || pair[0] - start < 34 * HOUR,
                "gap {}m",
                (pair[1] - pair[0]) / MINUTE
            );
        }
        let hours: Vec<String> = shared
            .iter()
            .map(|at| format!("{:.2}h", (at - start) as f64 / HOUR as f64))
            .collect();
        eprintln!(
            "served {served}, refused {refused}, recovered at +{}m, tokens issued at {hours:?}",
            recovered_at / MINUTE
        );
        assert!(
            shared.len() >= 5,
            "tokens were refreshed throughout: {hours:?}"
        );
        // Credentials sharing an identity share tokens.
        assert_eq!(issued_at["shared-a"], issued_at["shared-b"]);
    });
}
