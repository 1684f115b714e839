//! Three `regkeeper serve` replicas on one PostgreSQL database, one master key file:
//! a revocation, a removed membership or a deleted credential on one replica takes
//! effect on the others as soon as PostgreSQL delivers the NOTIFY its triggers send
//! (well under the caches' 5 s lifetime), the listener survives having its connection
//! killed, the 5 s lifetime still bounds staleness when notifications are lost, and one
//! minted ECR token is shared by all three and keeps being served when any one of
//! them is killed with SIGKILL.

use std::time::{Duration, Instant};

use regkeeper_client::{segment, Client, ClientError};
use regkeeper_wire as wire;

use super::peers::moto::{self, Moto};
use super::support::{eventually, status, PostgresDatabase, ServerOptions, TestServer};

const WORKSPACE: &str = "acme/shared";
/// How soon another replica must notice a change: the notification's bound, a fifth of
/// the caches' 5 s lifetime.
const NOTIFIED_WITHIN: Duration = Duration::from_secs(1);
/// `service::caches::CACHE_TTL`.
const CACHE_TTL: Duration = Duration::from_secs(5);
const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// Replicas sharing one database and one master key file (in `_keys`, which
/// outlives any replica).
struct Replicas {
    database: PostgresDatabase,
    _keys: tempfile::TempDir,
    environment: Vec<(String, String)>,
    servers: Vec<TestServer>,
}

impl Replicas {
    /// `count` replicas, or `None` when PostgreSQL is unreachable outside CI. The first
    /// creates the master key file and the admin; the others start on both.
    fn start(count: usize, environment: &[(&str, &str)]) -> Option<Self> {
        let database = PostgresDatabase::create()?;
        let keys = tempfile::tempdir().unwrap();
        let mut replicas = Self {
            database,
            environment: environment
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .chain([(
                    "REGKEEPER_MASTER_KEY_FILE".to_owned(),
                    keys.path().join("master.key").display().to_string(),
                )])
                .collect(),
            _keys: keys,
            servers: Vec::new(),
        };
        for _ in 0..count {
            let server = replicas.start_one();
            replicas.servers.push(server);
        }
        Some(replicas)
    }

    fn start_one(&self) -> TestServer {
        TestServer::start_with(ServerOptions {
            database_url: Some(self.database.url.clone()),
            data_dir: None,
            environment: self.environment.clone(),
        })
    }

    fn admin(&self, replica: usize) -> Client {
        self.servers[replica].admin()
    }

    fn client(&self, replica: usize, token: &str) -> Client {
        self.servers[replica].client(token)
    }

    /// Runs `statement` on the replicas' database as the test's own connection: the
    /// rows it affected.
    fn execute(&self, statement: &str) -> u64 {
        self.sql(statement, false).0
    }

    /// The first column of every row `query` returns, as integers.
    fn integers(&self, query: &str) -> Vec<i64> {
        self.sql(query, true).1
    }

    fn sql(&self, statement: &str, fetch: bool) -> (u64, Vec<i64>) {
        let url = self.database.url.clone();
        let statement = statement.to_owned();
        // A thread of its own, like `PostgresDatabase`'s, with a runtime of its own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    use sqlx::{Connection, Row};
                    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                    if fetch {
                        let rows = sqlx::query(&statement)
                            .fetch_all(&mut connection)
                            .await
                            .unwrap();
                        (0, rows.iter().map(|row| row.get::<i64, _>(0)).collect())
                    } else {
                        let done = sqlx::query(&statement)
                            .execute(&mut connection)
                            .await
                            .unwrap();
                        (done.rows_affected(), Vec::new())
                    }
                })
        })
        .join()
        .unwrap()
    }
}

fn me(client: &Client) -> u16 {
    status(client.get::<wire::Me>("/api/v1/me"))
}

fn resolve(client: &Client, image: &str) -> Result<wire::Resolved, ClientError> {
    client.post(
        &format!("/api/v1/workspaces/{}/resolve", segment(WORKSPACE)),
        &wire::ResolveInput {
            image: Some(image.to_owned()),
            ..Default::default()
        },
    )
}

fn add_docker_credential(client: &Client, name: &str, host: &str) {
    let _: wire::Credential = client
        .post(
            &format!("/api/v1/workspaces/{}/credentials", segment(WORKSPACE)),
            &wire::CredentialInput {
                name: Some(name.into()),
                registry: Some(host.into()),
                username: Some("robot".into()),
                password: Some(wire::Sensitive::new("replica-secret")),
                verify: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
}

/// Creates a user with `role` in [`WORKSPACE`] (through replica 0) and returns its token.
fn member(replicas: &Replicas, name: &str, role: &str) -> String {
    let admin = replicas.admin(0);
    let created: wire::UserCreated = admin
        .post(
            "/api/v1/users",
            &wire::UserInput {
                name: name.into(),
                admin: false,
            },
        )
        .unwrap();
    admin
        .put(
            &format!("/api/v1/workspaces/{}/members/{name}", segment(WORKSPACE)),
            &wire::MemberInput { role: role.into() },
        )
        .unwrap();
    created.token.expose().to_owned()
}

/// How often a test looks again for what another replica should have seen: often, so
/// the time measured is close to when it happened.
const POLL: Duration = Duration::from_millis(10);

fn shared_workspace(replicas: &Replicas) {
    let _: wire::Workspace = replicas
        .admin(0)
        .post(
            "/api/v1/workspaces",
            &wire::WorkspaceInput {
                name: WORKSPACE.into(),
            },
        )
        .unwrap();
}

#[test]
fn a_change_on_one_replica_reaches_the_others_within_a_second() {
    let Some(replicas) = Replicas::start(3, &[]) else {
        return;
    };
    shared_workspace(&replicas);
    add_docker_credential(&replicas.admin(0), "app", "app.example.com");

    // An API token created on A, first used on B and C just now (so their cached entry
    // has almost all of its 5 s ahead of it), revoked on A.
    let alice = member(&replicas, "alice", "launch");
    let created: wire::ApiTokenCreated = replicas
        .client(0, &alice)
        .post(
            "/api/v1/tokens",
            &wire::ApiTokenInput {
                name: "ci".into(),
                expires_in_seconds: None,
            },
        )
        .unwrap();
    let token = created.secret.expose().to_owned();
    for replica in [1, 2] {
        let client = replicas.client(replica, &token);
        assert_eq!(me(&client), 200);
        resolve(&client, "app.example.com/team/app:1").unwrap();
    }
    let revoked_at = Instant::now();
    replicas
        .client(0, &alice)
        .delete(&format!("/api/v1/tokens/{}", created.token.id))
        .unwrap();
    for replica in [1, 2] {
        let client = replicas.client(replica, &token);
        eventually(NOTIFIED_WITHIN, POLL, "revoked token refused", || {
            me(&client) == 401
        });
    }
    let elapsed = revoked_at.elapsed();
    eprintln!("revocation seen on both other replicas after {elapsed:?}");
    assert!(
        elapsed < NOTIFIED_WITHIN && elapsed < CACHE_TTL / 4,
        "took {elapsed:?}"
    );
    // Alice's other token is untouched.
    assert_eq!(me(&replicas.client(2, &alice)), 200);

    // A membership removed on A: Bob's resolves on B and C stop (a workspace he is
    // not a member of is 404).
    let bob = member(&replicas, "bob", "launch");
    for replica in [1, 2] {
        resolve(
            &replicas.client(replica, &bob),
            "app.example.com/team/app:1",
        )
        .unwrap();
    }
    let removed_at = Instant::now();
    replicas
        .admin(0)
        .delete(&format!(
            "/api/v1/workspaces/{}/members/bob",
            segment(WORKSPACE)
        ))
        .unwrap();
    for replica in [1, 2] {
        let client = replicas.client(replica, &bob);
        eventually(NOTIFIED_WITHIN, POLL, "removed member refused", || {
            status(resolve(&client, "app.example.com/team/app:1")) == 404
        });
    }
    assert!(removed_at.elapsed() < NOTIFIED_WITHIN);

    // A workload role's policy narrowed on A: its token, just used on B and C, is
    // refused there (404: a policy that allows nothing there does not reach the
    // workspace); the role deleted on A: its token is no longer valid (401).
    let roles = format!("/api/v1/workspaces/{}/roles", segment(WORKSPACE));
    let policy = |effect: &str| {
        serde_json::json!({
            "Version": "2026-11-01",
            "Statement": [{
                "Sid": "app",
                "Effect": effect,
                "Action": ["credentials:Resolve"],
                "Resource": [format!("rk:{WORKSPACE}:credential/app")],
            }],
        })
    };
    let _: wire::Role = replicas
        .admin(0)
        .post(
            &roles,
            &wire::RoleInput {
                name: Some("deployer".into()),
                description: None,
                policy: Some(policy("Allow")),
            },
        )
        .unwrap();
    let created: wire::ApiTokenCreated = replicas
        .admin(0)
        .post(
            &format!("{roles}/deployer/tokens"),
            &wire::ApiTokenInput {
                name: "ci".into(),
                expires_in_seconds: None,
            },
        )
        .unwrap();
    let role_token = created.secret.expose().to_owned();
    for replica in [1, 2] {
        resolve(
            &replicas.client(replica, &role_token),
            "app.example.com/team/app:1",
        )
        .unwrap();
    }
    let narrowed_at = Instant::now();
    let _: wire::Role = replicas
        .admin(0)
        .patch(
            &format!("{roles}/deployer"),
            &wire::RoleInput {
                name: None,
                description: None,
                policy: Some(policy("Deny")),
            },
        )
        .unwrap();
    for replica in [1, 2] {
        let client = replicas.client(replica, &role_token);
        eventually(NOTIFIED_WITHIN, POLL, "narrowed policy applied", || {
            status(resolve(&client, "app.example.com/team/app:1")) == 404
        });
    }
    assert!(narrowed_at.elapsed() < NOTIFIED_WITHIN);
    assert_eq!(
        status(resolve(
            &replicas.client(0, &role_token),
            "app.example.com/team/app:1"
        )),
        404,
        "as on A itself"
    );
    let deleted_at = Instant::now();
    replicas
        .admin(0)
        .delete(&format!("{roles}/deployer"))
        .unwrap();
    for replica in [1, 2] {
        let client = replicas.client(replica, &role_token);
        eventually(
            NOTIFIED_WITHIN,
            POLL,
            "deleted role's token refused",
            || me(&client) == 401,
        );
    }
    assert!(deleted_at.elapsed() < NOTIFIED_WITHIN);

    // A credential deleted on A: resolving it on B and C answers 404.
    add_docker_credential(&replicas.admin(0), "doomed", "doomed.example.com");
    for replica in [1, 2] {
        let resolved = resolve(&replicas.admin(replica), "doomed.example.com/app:1").unwrap();
        assert_eq!(resolved.secret.expose(), "replica-secret");
    }
    let deleted_at = Instant::now();
    replicas
        .admin(0)
        .delete(&format!(
            "/api/v1/workspaces/{}/credentials/doomed",
            segment(WORKSPACE)
        ))
        .unwrap();
    for replica in [1, 2] {
        let client = replicas.admin(replica);
        eventually(NOTIFIED_WITHIN, POLL, "deleted credential gone", || {
            status(resolve(&client, "doomed.example.com/app:1")) == 404
        });
    }
    assert!(deleted_at.elapsed() < NOTIFIED_WITHIN);

    // And the other way: B has cached that nothing serves late.example.com; a
    // credential created on A is found there at once.
    assert_eq!(
        status(resolve(&replicas.admin(1), "late.example.com/app:1")),
        404
    );
    let created_at = Instant::now();
    add_docker_credential(&replicas.admin(0), "late", "late.example.com");
    let client = replicas.admin(1);
    eventually(NOTIFIED_WITHIN, POLL, "new credential found", || {
        resolve(&client, "late.example.com/app:1").is_ok()
    });
    assert!(created_at.elapsed() < NOTIFIED_WITHIN);
}

#[test]
fn the_listener_reconnects_after_its_connection_is_killed() {
    let Some(replicas) = Replicas::start(2, &[]) else {
        return;
    };
    shared_workspace(&replicas);
    let alice = member(&replicas, "alice", "launch");
    // Both replicas' listening connections, killed by the database.
    let killed = replicas.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    );
    assert_eq!(killed, 2, "one listening connection per replica");
    for server in &replicas.servers {
        eventually(
            Duration::from_secs(10),
            POLL,
            "listener reconnected",
            || {
                let log = server.log();
                log.contains("cache.listener_lost")
                    && log.matches("cache.listener_connected").count() >= 2
            },
        );
    }
    // Notifications flow again.
    assert_eq!(me(&replicas.client(1, &alice)), 200);
    let revoked_at = Instant::now();
    let tokens: wire::ApiTokenList = replicas.client(0, &alice).get("/api/v1/tokens").unwrap();
    replicas
        .client(0, &alice)
        .delete(&format!("/api/v1/tokens/{}", tokens.tokens[0].id))
        .unwrap();
    let client = replicas.client(1, &alice);
    eventually(NOTIFIED_WITHIN, POLL, "revoked token refused", || {
        me(&client) == 401
    });
    assert!(revoked_at.elapsed() < NOTIFIED_WITHIN);
}

#[test]
fn without_notifications_the_cache_lifetime_bounds_staleness() {
    let Some(replicas) = Replicas::start(2, &[]) else {
        return;
    };
    shared_workspace(&replicas);
    let alice = member(&replicas, "alice", "launch");
    // Revocations are no longer announced.
    replicas.execute("ALTER TABLE api_tokens DISABLE TRIGGER api_tokens_invalidate");
    let client = replicas.client(1, &alice);
    assert_eq!(me(&client), 200);
    let cached_at = Instant::now();
    let tokens: wire::ApiTokenList = replicas.client(0, &alice).get("/api/v1/tokens").unwrap();
    replicas
        .client(0, &alice)
        .delete(&format!("/api/v1/tokens/{}", tokens.tokens[0].id))
        .unwrap();
    // Refused at once where it was revoked; B still has it cached...
    assert_eq!(me(&replicas.client(0, &alice)), 401);
    assert_eq!(me(&client), 200, "B answers from its cache");
    // ...until the entry's 5 s are up.
    eventually(
        CACHE_TTL + Duration::from_secs(2),
        POLL,
        "revoked token refused",
        || me(&client) == 401,
    );
    let stale_for = cached_at.elapsed();
    eprintln!("without notifications, stale for {stale_for:?} after caching");
    assert!(
        stale_for <= CACHE_TTL + Duration::from_secs(1),
        "stale for {stale_for:?}"
    );
}

fn ecr_credential(client: &Client) {
    let _: wire::Credential = client
        .post(
            &format!("/api/v1/workspaces/{}/credentials", segment(WORKSPACE)),
            &wire::CredentialInput {
                name: Some("ecr".into()),
                registry: Some(ECR_HOST.into()),
                username: Some(moto::ACCESS_KEY_ID.into()),
                password: Some(wire::Sensitive::new(moto::SECRET_ACCESS_KEY)),
                verify: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
}

/// (secret, expiry) of the ECR login `replica` hands out.
fn ecr_login(replicas: &Replicas, replica: usize) -> (String, String) {
    let resolved = resolve(&replicas.admin(replica), &format!("{ECR_HOST}/team/app:1")).unwrap();
    (
        resolved.secret.expose().to_owned(),
        resolved.expires_at.expect("an ECR login expires"),
    )
}

#[test]
fn one_ecr_token_for_three_replicas_survives_losing_any_one() {
    let Some(moto) = Moto::start() else { return };
    let Some(mut replicas) = Replicas::start(3, &[("AWS_ENDPOINT_URL", moto.endpoint_url())])
    else {
        return;
    };
    shared_workspace(&replicas);
    ecr_credential(&replicas.admin(0));
    // Minted once, by A; B and C find it sealed in the database. moto's token is
    // always the same string, but regkeeper stamps each mint's expiry from the moment
    // it received it (moto reports 2015), so one expiry means one mint.
    let shared = ecr_login(&replicas, 0);
    for replica in [1, 2] {
        assert_eq!(ecr_login(&replicas, replica), shared, "replica {replica}");
    }
    for victim in 0..3 {
        // SIGKILL (`Child::kill` on drop): no graceful shutdown, nothing given back.
        drop(replicas.servers.remove(victim));
        for survivor in 0..2 {
            assert_eq!(
                ecr_login(&replicas, survivor),
                shared,
                "a survivor after replica {victim} was killed"
            );
        }
        let replacement = replicas.start_one();
        replicas.servers.insert(victim, replacement);
    }
    // The replacements serve it too, without minting again.
    for replica in 0..3 {
        assert_eq!(ecr_login(&replicas, replica), shared, "replica {replica}");
    }
}

/// The database's clock in Unix milliseconds, as SQL.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

#[test]
fn a_dead_replicas_refresh_lease_holds_the_token_up_only_until_it_runs_out() {
    let Some(moto) = Moto::start() else { return };
    let Some(replicas) = Replicas::start(2, &[("AWS_ENDPOINT_URL", moto.endpoint_url())]) else {
        return;
    };
    shared_workspace(&replicas);
    ecr_credential(&replicas.admin(0));
    ecr_login(&replicas, 0);
    let issued = replicas.integers("SELECT issued_at FROM registry_tokens");
    assert_eq!(issued.len(), 1, "one token row");
    // The token falls due while a replica that was then killed holds its lease: what
    // `claim_due_tokens` leaves behind for a replica that dies mid-refresh, with 4 s
    // left of the 60 s instead of the whole minute.
    const LEASE_LEFT: Duration = Duration::from_secs(4);
    let leased_at = Instant::now();
    assert_eq!(
        replicas.execute(&format!(
            "UPDATE registry_tokens SET refresh_at = {NOW_MS}, next_attempt_at = {NOW_MS}, \
             lease_owner = 'replica-killed', lease_until = {NOW_MS} + {}",
            LEASE_LEFT.as_millis()
        )),
        1
    );
    // The survivors' refreshers (every 5 s) leave it alone while the lease lasts, then
    // one of them refreshes it.
    let refreshed = eventually(
        LEASE_LEFT + Duration::from_secs(10),
        POLL,
        "token refreshed",
        || replicas.integers("SELECT issued_at FROM registry_tokens") != issued,
    );
    assert!(
        refreshed >= LEASE_LEFT - Duration::from_millis(200),
        "refreshed after {refreshed:?}, inside the dead replica's lease"
    );
    eprintln!(
        "lease of {LEASE_LEFT:?} left: refreshed by a survivor {:?} after the lease was planted",
        leased_at.elapsed()
    );
    assert_eq!(
        replicas.integers(
            "SELECT count(*) FROM registry_tokens WHERE lease_owner IS NULL AND status = 'fresh'"
        ),
        vec![1],
        "the survivor finished its refresh"
    );
}

/// Issue 12 item 11: the first resolve of a new ECR identity on two replicas at the same
/// moment makes one GetAuthorizationToken call, not two: the first mint takes the
/// token row's lease as a refresh does, and the other replica waits for the row and
/// serves the stored token. Ten trials, each with a new identity, counted by a relay in
/// front of moto.
#[test]
fn two_replicas_resolving_a_new_identity_at_once_mint_once() {
    use std::sync::{Arc, Barrier};

    use super::peers::aws_relay::AwsRelay;

    let Some(moto) = Moto::start() else { return };
    let relay = AwsRelay::to_moto(&moto);
    let endpoint = relay.endpoint_url();
    let Some(replicas) = Replicas::start(2, &[("AWS_ENDPOINT_URL", &endpoint)]) else {
        return;
    };
    shared_workspace(&replicas);
    for trial in 0..10 {
        let host = format!("1000000000{trial:02}.dkr.ecr.us-east-1.amazonaws.com");
        let _: wire::Credential = replicas
            .admin(0)
            .post(
                &format!("/api/v1/workspaces/{}/credentials", segment(WORKSPACE)),
                &wire::CredentialInput {
                    name: Some(format!("first-{trial}")),
                    registry: Some(host.clone()),
                    username: Some(format!("AKIAIOSFODNN7TRIAL{trial:02}")),
                    password: Some(wire::Sensitive::new(moto::SECRET_ACCESS_KEY)),
                    verify: Some(false),
                    ..Default::default()
                },
            )
            .unwrap();
        let before = relay.token_calls();
        let start = Arc::new(Barrier::new(2));
        let resolvers: Vec<_> = (0..2)
            .map(|replica| {
                let client = replicas.admin(replica);
                let (start, image) = (Arc::clone(&start), format!("{host}/team/app:1"));
                std::thread::spawn(move || {
                    start.wait();
                    let resolved = resolve(&client, &image).expect("resolved");
                    (
                        resolved.secret.expose().to_owned(),
                        resolved.expires_at.expect("an ECR login expires"),
                    )
                })
            })
            .collect();
        let logins: Vec<_> = resolvers
            .into_iter()
            .map(|resolver| resolver.join().unwrap())
            .collect();
        assert_eq!(
            relay.token_calls() - before,
            1,
            "trial {trial}: GetAuthorizationToken calls for one new identity on two replicas"
        );
        // moto's token is always the same string; one expiry means one mint.
        assert_eq!(logins[0], logins[1], "trial {trial}");
    }
}

/// Issue 12 items 2 and 17 across replicas: a cross-workspace grant revoked, and a
/// user disabled, on one replica stop the role's resolves and the user's token on the
/// others as soon as the database's notification arrives, well inside the caches'
/// lifetime.
#[test]
fn a_revoked_grant_and_a_disabled_user_stop_on_every_replica_within_a_second() {
    let Some(replicas) = Replicas::start(3, &[]) else {
        return;
    };
    shared_workspace(&replicas);
    add_docker_credential(&replicas.admin(0), "app", "app.example.com");
    let admin = replicas.admin(0);
    let _: wire::Workspace = admin
        .post(
            "/api/v1/workspaces",
            &wire::WorkspaceInput {
                name: "team/tools".into(),
            },
        )
        .unwrap();
    let _: wire::Role = admin
        .post(
            &format!("/api/v1/workspaces/{}/roles", segment("team/tools")),
            &wire::RoleInput {
                name: Some("puller".into()),
                description: None,
                policy: Some(serde_json::json!({"Statement": [{"Effect": "Allow",
                    "Action": "credentials:Resolve", "Resource": format!("rk:{WORKSPACE}:credential/*")}]})),
            },
        )
        .unwrap();
    let created: wire::ApiTokenCreated = admin
        .post(
            &format!(
                "/api/v1/workspaces/{}/roles/puller/tokens",
                segment("team/tools")
            ),
            &wire::ApiTokenInput {
                name: "ci".into(),
                expires_in_seconds: None,
            },
        )
        .unwrap();
    let role_token = created.secret.expose().to_owned();
    let bob = member(&replicas, "bob", "launch");
    // Warm every cache on B and C.
    for replica in [1, 2] {
        resolve(
            &replicas.client(replica, &role_token),
            "app.example.com/app:1",
        )
        .unwrap();
        resolve(&replicas.client(replica, &bob), "app.example.com/app:1").unwrap();
    }

    admin
        .delete(&format!(
            "/api/v1/workspaces/{}/role-grants/{}",
            segment(WORKSPACE),
            segment("rk:team/tools:role/puller")
        ))
        .unwrap();
    let _: wire::UserDisabled = admin
        .post("/api/v1/users/bob/disable", &serde_json::json!({}))
        .unwrap();
    for replica in [1, 2] {
        let role = replicas.client(replica, &role_token);
        eventually(NOTIFIED_WITHIN, POLL, "revoked grant refused", || {
            status(resolve(&role, "app.example.com/app:1")) == 403
        });
        let user = replicas.client(replica, &bob);
        eventually(NOTIFIED_WITHIN, POLL, "disabled user refused", || {
            me(&user) == 401
        });
    }
    // Granted again on C, it works again on A.
    let _: serde_json::Value = replicas
        .admin(2)
        .post(
            &format!("/api/v1/workspaces/{}/role-grants", segment(WORKSPACE)),
            &wire::RoleGrantInput {
                role: "rk:team/tools:role/puller".into(),
            },
        )
        .unwrap();
    let role = replicas.client(0, &role_token);
    eventually(NOTIFIED_WITHIN, POLL, "renewed grant honoured", || {
        resolve(&role, "app.example.com/app:1").is_ok()
    });
}

#[test]
fn a_console_sign_out_ends_the_cookie_on_every_replica() {
    use super::console_http::{pair, request, sign_in};
    let Some(replicas) = Replicas::start(3, &[]) else {
        return;
    };
    // Signed in on A with a pasted API token, which signing out does not revoke: only
    // the recorded sign-out can end the copies.
    let (session, csrf) = sign_in(&replicas.servers[0], super::support::ADMIN_TOKEN, &[]);
    let cookie = vec![pair(&session)];
    let page = |replica: usize| {
        request(
            &replicas.servers[replica],
            "GET",
            "/console/workspaces",
            &cookie,
            &[],
            None,
        )
        .status
    };
    for replica in 0..3 {
        assert_eq!(
            page(replica),
            200,
            "the copied cookie works on replica {replica}"
        );
    }
    let signed_out = request(
        &replicas.servers[1],
        "POST",
        "/console/sign-out",
        &cookie,
        &[],
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(signed_out.status, 303, "{}", signed_out.body);
    assert_eq!(page(1), 303, "refused at once where it was signed out");
    for replica in [0, 2] {
        eventually(NOTIFIED_WITHIN, POLL, "the copy refused", || {
            page(replica) == 303
        });
    }
    assert_eq!(
        replicas.integers("SELECT COUNT(*) FROM console_sign_outs"),
        vec![1],
        "recorded with the session's expiry"
    );
    // A replica started afterwards (nothing to hear) reads it from the database.
    let late = replicas.start_one();
    let status = request(&late, "GET", "/console/workspaces", &cookie, &[], None).status;
    assert_eq!(status, 303);
    // The API token itself still works: only the session ended.
    assert_eq!(me(&replicas.admin(0)), 200);
}
