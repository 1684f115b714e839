//! Issue 16 part 4: per-credential freshness in `/metrics`, on SQLite and PostgreSQL,
//! with ECR tokens minted by moto_server behind the relay that throttles on demand, on
//! a manual clock: the expiry and last success follow the stored token, a failed
//! refresh is counted, the series limit leaves the rest out and counts them, a sync
//! target's last push shows, and on PostgreSQL a second replica that minted nothing
//! scrapes the same values.

use std::collections::HashMap;
use std::sync::Arc;

use regkeeper::clock::{Clock, ManualClock};
use regkeeper::http::{router, ApiState, AuthLimiter};
use regkeeper::service::{credentials, registry_tokens, resolve, sync_targets, App};
use regkeeper_wire as wire;
use tower::ServiceExt as _;

use super::peers::aws_relay::AwsRelay;
use super::peers::moto::{self, Moto};
use super::support::{in_process_app, InProcessApp, PostgresDatabase, ADMIN_TOKEN};

const HOUR: i64 = 3_600_000;
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn ecr_input(name: &str, prefix: &str, key_id: &str) -> wire::CredentialInput {
    wire::CredentialInput {
        name: Some(name.into()),
        registry: Some(HOST.into()),
        path_prefix: Some(prefix.into()),
        username: Some(key_id.into()),
        password: Some(wire::Sensitive::new(moto::SECRET_ACCESS_KEY)),
        verify: Some(false),
        ..Default::default()
    }
}

/// `/metrics` as a scraper reads it, through the router.
async fn scrape(app: &Arc<App>) -> String {
    let state = ApiState {
        app: Arc::clone(app),
        limiter: Arc::new(AuthLimiter::default()),
    };
    let response = router(state)
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the series named `metric` whose labels are `labels`, if present.
fn value(text: &str, metric: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.parse().unwrap())
}

fn seconds(milliseconds: i64) -> f64 {
    milliseconds as f64 / 1000.0
}

/// The stored token's expiry, in milliseconds, as `credentials show` reports it.
async fn stored_expiry(app: &App, admin: &regkeeper::domain::identity::Principal) -> i64 {
    let shown = credentials::show(app, admin, None, "ci").await.unwrap();
    shown
        .token
        .and_then(|token| token.expires_at)
        .expect("a minted ECR token expires")
}

fn scenario(database: Option<&PostgresDatabase>) {
    let Some(moto) = Moto::start() else { return };
    let relay = AwsRelay::to_moto(&moto);
    let directory = tempfile::tempdir().unwrap();
    let sync_root = directory.path().join("sync");
    std::fs::create_dir_all(&sync_root).unwrap();
    let mut variables: HashMap<&str, String> = HashMap::from([
        (
            "REGKEEPER_DATA_DIR",
            directory.path().join("data").display().to_string(),
        ),
        ("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN.to_owned()),
        ("AWS_ENDPOINT_URL", relay.endpoint_url()),
        ("REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT", "1".to_owned()),
        ("REGKEEPER_SYNC_FILE_ROOT", sync_root.display().to_string()),
    ]);
    if let Some(database) = database {
        variables.insert("REGKEEPER_DATABASE_URL", database.url.clone());
    }
    let start = 1_800_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let InProcessApp {
        runtime,
        app,
        admin,
    } = in_process_app(&variables, clock.clone());
    runtime.block_on(async {
        let labels = "workspace=\"~admin\",credential=\"ci\"";
        let expiry = "regkeeper_credential_token_expiry_timestamp_seconds";
        let success = "regkeeper_credential_last_refresh_success_timestamp_seconds";
        let failures = "regkeeper_credential_refresh_failures_total";
        let omitted = "regkeeper_freshness_series_omitted";
        for (name, prefix, key_id) in [
            ("ci", "team-a", moto::ACCESS_KEY_ID),
            ("other", "team-b", "AKIAIOSFODNN7OTHER01"),
        ] {
            credentials::create(&app, &admin, None, ecr_input(name, prefix, key_id))
                .await
                .unwrap();
        }
        let text = scrape(&app).await;
        assert_eq!(value(&text, failures, labels), None, "nothing minted yet");
        assert_eq!(value(&text, omitted, "kind=\"credential\""), Some(0.0));

        // A resolve mints "ci"'s token (through moto) at `start`.
        let image = format!("{HOST}/team-a/app:1");
        resolve::resolve(
            &app,
            &admin,
            None,
            resolve::Request {
                image: Some(&image),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let minted_expiry = stored_expiry(&app, &admin).await;
        let text = scrape(&app).await;
        assert_eq!(value(&text, expiry, labels), Some(seconds(minted_expiry)));
        assert_eq!(value(&text, success, labels), Some(seconds(start)));
        assert_eq!(value(&text, failures, labels), Some(0.0));

        // Past the refresh point AWS throttles: the refresh fails and is counted, and
        // the last success and the expiry stay those of the token still served.
        relay.set_throttle(true);
        clock.advance(9 * HOUR);
        let report = registry_tokens::refresh_cycle(&app, "replica-a")
            .await
            .unwrap();
        assert_eq!(report.failed, 1, "the refresh failed");
        assert!(relay.throttled() >= 1);
        let text = scrape(&app).await;
        assert_eq!(value(&text, failures, labels), Some(1.0), "{text}");
        assert_eq!(value(&text, success, labels), Some(seconds(start)));
        assert_eq!(value(&text, expiry, labels), Some(seconds(minted_expiry)));

        // After the backoff the refresh succeeds; the failure stays counted.
        relay.set_throttle(false);
        clock.advance(10_000);
        let refreshed_at = clock.now();
        let report = registry_tokens::refresh_cycle(&app, "replica-a")
            .await
            .unwrap();
        assert_eq!(report.refreshed, 1);
        let text = scrape(&app).await;
        assert_eq!(value(&text, failures, labels), Some(1.0));
        assert_eq!(value(&text, success, labels), Some(seconds(refreshed_at)));
        assert_eq!(
            value(&text, expiry, labels),
            Some(seconds(stored_expiry(&app, &admin).await))
        );

        // A second credential with a token of its own: over the limit of one series,
        // so the one that expires later is left out and counted.
        resolve::resolve(
            &app,
            &admin,
            None,
            resolve::Request {
                image: Some(&format!("{HOST}/team-b/app:1")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let text = scrape(&app).await;
        assert_eq!(value(&text, omitted, "kind=\"credential\""), Some(1.0));
        assert!(value(&text, failures, labels).is_some(), "{text}");
        assert!(!text.contains("credential=\"other\""), "{text}");

        // A file sync target's first push shows as its last success.
        let created = sync_targets::create(
            &app,
            &admin,
            None,
            "ci",
            wire::SyncTargetInput {
                kind: "file".into(),
                path: Some("ci/config.json".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let target = created.target.id.clone();
        let text = scrape(&app).await;
        assert_eq!(
            value(
                &text,
                "regkeeper_sync_target_last_success_timestamp_seconds",
                &format!("{labels},target=\"{target}\",kind=\"file\"")
            ),
            Some(seconds(clock.now())),
            "{text}"
        );

        // Another replica on the same database, which minted and pushed nothing,
        // scrapes the same freshness.
        if database.is_some() {
            let config = super::support::config_from(&variables);
            let other = regkeeper::serve::build_app(config, clock.clone())
                .await
                .unwrap();
            let theirs = scrape(&other).await;
            for (metric, labels) in [
                (expiry, labels.to_owned()),
                (success, labels.to_owned()),
                (failures, labels.to_owned()),
                (omitted, "kind=\"credential\"".to_owned()),
                (
                    "regkeeper_sync_target_last_success_timestamp_seconds",
                    format!("{labels},target=\"{target}\",kind=\"file\""),
                ),
            ] {
                let ours = value(&scrape(&app).await, metric, &labels);
                assert!(ours.is_some(), "{metric}{{{labels}}}");
                assert_eq!(
                    value(&theirs, metric, &labels),
                    ours,
                    "{metric}{{{labels}}}"
                );
            }
        }
        // The canary: no token or secret in the scrape.
        let text = scrape(&app).await;
        assert!(!text.contains(moto::SECRET_ACCESS_KEY));
    });
}

#[test]
fn freshness_metrics_on_sqlite() {
    scenario(None);
}

#[test]
fn freshness_metrics_on_postgres() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    scenario(Some(&database));
}
