//! AWS Secrets Manager both ways, against moto_server behind the AWS relay, a real
//! distribution registry with htpasswd, skopeo, and boto3 reading and writing secrets
//! as the ECS agent and an operator would — on SQLite and on PostgreSQL.
//!
//! As a sync target (`sync add CRED --aws-secret … --aws-identity …`): the secret is
//! created and tagged, read back with boto3 as ECS does, and pulled with; an update
//! makes a new version, a repeated push none; a secret regkeeper did not make is
//! refused (`secret_not_managed`) unless `--adopt`; throttled writes are retried.
//!
//! As a source (`credentials add … --aws-secret … --aws-identity …`): verified on add,
//! resolved and pulled with; a new secret version is served within the cache bound
//! (shortened here with `REGKEEPER_TEST_AWS_SECRET_CACHE_MS`); a deleted secret is a
//! 502 naming it, and no secret value reaches a log, listing or the audit.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use regkeeper_wire as wire;

use super::peers::aws_relay::AwsRelay;
use super::peers::moto::{self, Moto};
use super::peers::registry::{Registry, SkopeoAuth};
use super::support::{
    eventually, ok, stderr, PostgresDatabase, ServerOptions, TestServer, ADMIN_TOKEN,
};

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const POLL: Duration = Duration::from_millis(200);
/// The source cache bound these tests run with.
const CACHE_MS: u64 = 1_500;

/// Calls Secrets Manager on moto with boto3, as an operator or the ECS agent would.
/// `read_as_ecs` is GetSecretValue with the value parsed as ECS parses it.
fn boto3(
    moto: &Moto,
    operation: &str,
    arguments: serde_json::Value,
) -> Result<serde_json::Value, String> {
    const SCRIPT: &str = r#"
import json, sys
import boto3
operation, arguments, endpoint = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                      aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
if operation == "read_as_ecs":
    value = client.get_secret_value(SecretId=arguments["SecretId"])
    login = json.loads(value["SecretString"])
    print(json.dumps({"username": login["username"], "password": login["password"],
                      "versionId": value["VersionId"], "arn": value["ARN"]}))
else:
    answer = getattr(client, operation)(**arguments)
    answer.pop("ResponseMetadata", None)
    print(json.dumps(answer, default=str))
"#;
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-test/bin/python");
    let output = Command::new(python)
        .args([
            "-c",
            SCRIPT,
            operation,
            &arguments.to_string(),
            moto.endpoint_url(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("the test venv's python runs");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("boto3 answer is JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn tags(moto: &Moto, secret: &str) -> Vec<(String, String)> {
    let described = boto3(
        moto,
        "describe_secret",
        serde_json::json!({ "SecretId": secret }),
    )
    .unwrap();
    described["Tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|tag| {
                    (
                        tag["Key"].as_str().unwrap().to_owned(),
                        tag["Value"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Peers {
    moto: Moto,
    relay: AwsRelay,
    registry: Registry,
}

/// moto, the relay in front of it, and a registry with two users holding an image.
fn peers() -> Option<Peers> {
    let moto = Moto::start()?;
    let registry = Registry::htpasswd(&[
        ("robot", "canary-sm-first-5d1e"),
        ("robot2", "canary-sm-second-9a7c"),
    ])?;
    registry.push_test_image("team/app", "1", "robot", "canary-sm-first-5d1e");
    let relay = AwsRelay::to_moto(&moto);
    Some(Peers {
        moto,
        relay,
        registry,
    })
}

fn server(peers: &Peers, database_url: Option<String>) -> TestServer {
    TestServer::start_with(ServerOptions {
        database_url,
        environment: vec![
            (
                "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".into(),
                "127.0.0.0/8".into(),
            ),
            (
                "REGKEEPER_OUTBOUND_CA_FILE".into(),
                peers.registry.ca_file().display().to_string(),
            ),
            ("AWS_ENDPOINT_URL".into(), peers.relay.endpoint_url()),
            (
                "REGKEEPER_TEST_AWS_SECRET_CACHE_MS".into(),
                CACHE_MS.to_string(),
            ),
        ],
        ..ServerOptions::default()
    })
}

/// The `ecr` credential `aws` whose AWS identity (moto's keys) reads and writes secrets.
fn add_identity(server: &TestServer) {
    ok(&moto::add_ecr_login(
        server,
        "aws",
        ECR_HOST,
        &["--no-verify"],
    ));
}

#[track_caller]
fn assert_pulls(registry: &Registry, username: &str, password: &str) {
    let pulled = registry.skopeo_pull("team/app:1", &SkopeoAuth::Basic { username, password });
    assert!(
        pulled.status.success(),
        "skopeo pull as {username}: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
}

fn targets(server: &TestServer) -> Vec<wire::SyncTarget> {
    let list: wire::SyncTargetList = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &["sync", "list", "dock", "--output", "json"],
        None,
    )))
    .unwrap();
    list.targets
}

fn sync_target_flow(database_url: Option<String>) {
    let Some(peers) = peers() else { return };
    let server = server(&peers, database_url);
    let (moto, registry) = (&peers.moto, &peers.registry);
    add_identity(&server);
    let host = registry.host_port().to_owned();
    let first = "canary-sm-first-5d1e";
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--name",
            "dock",
            "--registry",
            &host,
            "--username",
            "robot",
            "--password-stdin",
        ],
        Some(first),
    ));

    // Created, tagged, and in exactly the format ECS reads; skopeo pulls with it.
    let created: wire::SyncTargetCreated = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "sync",
            "add",
            "dock",
            "--aws-secret",
            "ecs/dock-login",
            "--aws-identity",
            "aws",
            "--output",
            "json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(
        created.target.status, "ok",
        "{:?}",
        created.target.last_error
    );
    assert_eq!(created.target.kind, "aws_secret");
    assert_eq!(created.target.aws_identity.as_deref(), Some("aws"));
    let ecs = boto3(
        moto,
        "read_as_ecs",
        serde_json::json!({ "SecretId": "ecs/dock-login" }),
    )
    .unwrap();
    assert_eq!(
        (ecs["username"].as_str(), ecs["password"].as_str()),
        (Some("robot"), Some(first))
    );
    assert_pulls(
        registry,
        ecs["username"].as_str().unwrap(),
        ecs["password"].as_str().unwrap(),
    );
    let arn = ecs["arn"].as_str().unwrap().to_owned();
    assert!(
        arn.starts_with("arn:aws:secretsmanager:us-east-1:"),
        "{arn}"
    );
    let tagged = tags(moto, "ecs/dock-login");
    assert!(
        tagged.contains(&("managed-by".into(), "regkeeper".into())),
        "{tagged:?}"
    );
    assert!(
        tagged.contains(&(
            "regkeeper-credential".into(),
            "rk:_admin:credential/dock".into()
        )),
        "{tagged:?}"
    );

    // Another push of the same login adds no version (its ClientRequestToken is the same).
    let id = created.target.id.clone();
    // `sync run` prints the target as JSON, and exits non-zero when the push failed.
    let run = |server: &TestServer| -> wire::SyncTarget {
        let output = server.cli(
            ADMIN_TOKEN,
            &["sync", "run", "dock", &id, "--output", "json"],
            None,
        );
        let ran: wire::SyncTargetList = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("sync run: {}", stderr(&output)));
        ran.targets.into_iter().next().unwrap()
    };
    assert_eq!(run(&server).status, "ok");
    let again = boto3(
        moto,
        "read_as_ecs",
        serde_json::json!({ "SecretId": "ecs/dock-login" }),
    )
    .unwrap();
    assert_eq!(
        again["versionId"], ecs["versionId"],
        "a repeated push made a new version"
    );

    // An update reaches the secret as a new version, through the worker.
    let second = "canary-sm-second-9a7c";
    ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "update",
            "dock",
            "--username",
            "robot2",
            "--password-stdin",
        ],
        Some(second),
    ));
    eventually(
        Duration::from_secs(20),
        POLL,
        "the new login in the secret",
        || {
            boto3(
                moto,
                "read_as_ecs",
                serde_json::json!({ "SecretId": "ecs/dock-login" }),
            )
            .is_ok_and(|value| value["password"] == second)
        },
    );
    let updated = boto3(
        moto,
        "read_as_ecs",
        serde_json::json!({ "SecretId": "ecs/dock-login" }),
    )
    .unwrap();
    assert_ne!(updated["versionId"], ecs["versionId"]);
    assert_eq!(updated["username"], "robot2");
    assert_pulls(registry, "robot2", second);
    let versions = boto3(
        moto,
        "list_secret_version_ids",
        serde_json::json!({ "SecretId": "ecs/dock-login" }),
    )
    .unwrap();
    assert!(
        versions["Versions"].as_array().unwrap().len() >= 2,
        "{versions}"
    );

    // Throttled writes are retried within the push; more than its attempts fail it
    // with backoff, and the worker's retry delivers once AWS answers again.
    peers.relay.throttle_secret_writes(2);
    assert_eq!(run(&server).status, "ok");
    assert_eq!(peers.relay.secret_writes_throttled(), 2);
    peers.relay.throttle_secret_writes(100);
    let failing = run(&server);
    assert_eq!(failing.status, "failing");
    assert!(
        failing
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("throttling"),
        "{:?}",
        failing.last_error
    );
    assert!(failing.next_attempt_at.is_some());
    peers.relay.throttle_secret_writes(0);
    eventually(
        Duration::from_secs(30),
        POLL,
        "the throttled target recovering",
        || {
            targets(&server)
                .iter()
                .any(|target| target.id == id && target.status == "ok")
        },
    );

    // A secret regkeeper did not make is refused before the target is stored …
    boto3(
        moto,
        "create_secret",
        serde_json::json!({
            "Name": "team/foreign-login",
            "SecretString": "{\"username\":\"someone\",\"password\":\"theirs\"}",
        }),
    )
    .unwrap();
    let refused = server.cli(
        ADMIN_TOKEN,
        &[
            "sync",
            "add",
            "dock",
            "--aws-secret",
            "team/foreign-login",
            "--aws-identity",
            "aws",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("secret_not_managed"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("--adopt"), "{}", stderr(&refused));
    assert_eq!(targets(&server).len(), 1, "a refused target is not stored");
    let untouched = boto3(
        moto,
        "read_as_ecs",
        serde_json::json!({ "SecretId": "team/foreign-login" }),
    )
    .unwrap();
    assert_eq!(untouched["password"], "theirs");
    // … and adopted with --adopt: tagged, then written.
    let adopted: wire::SyncTargetCreated = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "sync",
            "add",
            "dock",
            "--aws-secret",
            "team/foreign-login",
            "--aws-identity",
            "aws",
            "--adopt",
            "--output",
            "json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(
        adopted.target.status, "ok",
        "{:?}",
        adopted.target.last_error
    );
    assert!(adopted.target.adopt);
    let taken = boto3(
        moto,
        "read_as_ecs",
        serde_json::json!({ "SecretId": "team/foreign-login" }),
    )
    .unwrap();
    assert_eq!(taken["password"], second);
    assert!(tags(moto, "team/foreign-login").contains(&("managed-by".into(), "regkeeper".into())));

    // An identity that is not an ecr credential is refused by name.
    let wrong = server.cli(
        ADMIN_TOKEN,
        &[
            "sync",
            "add",
            "dock",
            "--aws-secret",
            "ecs/other",
            "--aws-identity",
            "dock",
        ],
        None,
    );
    assert!(
        stderr(&wrong).contains("aws_identity_not_ecr"),
        "{}",
        stderr(&wrong)
    );

    let listed = ok(&server.cli(ADMIN_TOKEN, &["sync", "list", "dock"], None));
    assert!(listed.contains("ecs/dock-login"), "{listed}");
    let audit = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--output", "json"], None));
    assert!(audit.contains("sync_target.push") && audit.contains("aws_secret"));
    for secret in [first, second] {
        for (what, text) in [("list", &listed), ("audit", &audit), ("log", &server.log())] {
            assert!(!text.contains(secret), "{what} shows the secret");
        }
    }
}

fn source_flow(database_url: Option<String>) {
    let Some(peers) = peers() else { return };
    let server = server(&peers, database_url);
    let (moto, registry) = (&peers.moto, &peers.registry);
    add_identity(&server);
    let host = registry.host_port().to_owned();
    let first = "canary-sm-first-5d1e";
    let second = "canary-sm-second-9a7c";
    boto3(moto, "create_secret", serde_json::json!({
        "Name": "team/registry-login",
        "SecretString": serde_json::json!({ "username": "robot", "password": first }).to_string(),
    }))
    .unwrap();

    // A missing secret is refused on add, by name.
    let missing = server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--name",
            "src",
            "--registry",
            &host,
            "--aws-secret",
            "team/nothing-here",
            "--aws-identity",
            "aws",
        ],
        None,
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("aws_secret_not_found")
            && stderr(&missing).contains("team/nothing-here"),
        "{}",
        stderr(&missing)
    );

    // Verified on add (read, then a login at the registry); nothing secret stored.
    let added: wire::Credential = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "add",
            "--name",
            "src",
            "--registry",
            &host,
            "--aws-secret",
            "team/registry-login",
            "--aws-identity",
            "aws",
            "--output",
            "json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(
        (added.kind.as_str(), added.auth_method.as_str()),
        ("docker", "aws_secret")
    );
    assert_eq!(
        added.verification.status, "ok",
        "{:?}",
        added.verification.message
    );
    assert!(!added.has_secret);
    assert_eq!(added.aws_secret.as_deref(), Some("team/registry-login"));
    assert_eq!(added.aws_identity.as_deref(), Some("aws"));

    let image = format!("{host}/team/app:1");
    let resolved = super::support::resolve(&server, &image);
    assert_eq!(
        (resolved.username.as_str(), resolved.secret.expose()),
        ("robot", first)
    );
    registry.assert_pulls_with("team/app:1", &resolved);

    // A new secret version is served within the bound.
    boto3(moto, "put_secret_value", serde_json::json!({
        "SecretId": "team/registry-login",
        "SecretString": serde_json::json!({ "username": "robot2", "password": second }).to_string(),
    }))
    .unwrap();
    let took = eventually(
        Duration::from_secs(10),
        POLL,
        "the new secret version resolved",
        || super::support::resolve(&server, &image).secret.expose() == second,
    );
    assert!(
        took <= Duration::from_millis(CACHE_MS + 3_000),
        "took {took:?}"
    );
    let resolved = super::support::resolve(&server, &image);
    assert_eq!(resolved.username, "robot2");
    registry.assert_pulls_with("team/app:1", &resolved);

    // Other key names with --aws-secret-keys; the default keys name what is missing.
    boto3(
        moto,
        "create_secret",
        serde_json::json!({
            "Name": "team/other-keys",
            "SecretString": serde_json::json!({ "user": "robot", "token": first }).to_string(),
        }),
    )
    .unwrap();
    // The same secret added without, then with, the key names it uses.
    let add_keyed = |extra: &[&str]| {
        let fixed = [
            "credentials",
            "add",
            "--name",
            "keys",
            "--registry",
            &host,
            "--path-prefix",
            "team",
            "--aws-secret",
            "team/other-keys",
            "--aws-identity",
            "aws",
        ];
        server.cli(ADMIN_TOKEN, &[&fixed[..], extra].concat(), None)
    };
    let wrong_keys = add_keyed(&[]);
    assert!(
        stderr(&wrong_keys).contains("no \"username\""),
        "{}",
        stderr(&wrong_keys)
    );
    let keyed: wire::Credential = serde_json::from_str(&ok(&add_keyed(&[
        "--aws-secret-keys",
        "user,token",
        "--output",
        "json",
    ])))
    .unwrap();
    assert_eq!(keyed.aws_secret_keys.as_deref(), Some("user,token"));
    let resolved = super::support::resolve(&server, &image);
    assert_eq!(
        (resolved.username.as_str(), resolved.secret.expose()),
        ("robot", first)
    );

    // Deleted: once the bound has passed, a 502 that names the secret, not its value.
    boto3(
        moto,
        "delete_secret",
        serde_json::json!({
            "SecretId": "team/registry-login",
            "ForceDeleteWithoutRecovery": true,
        }),
    )
    .unwrap();
    ok(&server.cli(ADMIN_TOKEN, &["credentials", "delete", "keys"], None));
    std::thread::sleep(Duration::from_millis(CACHE_MS + 200));
    let request = serde_json::json!({ "image": image }).to_string();
    let (status, body) = super::support::raw(
        &server,
        "POST",
        "/api/v1/resolve",
        Some(ADMIN_TOKEN),
        Some("application/json"),
        Some(request.as_bytes()),
    );
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("aws_secret_not_found") && body.contains("team/registry-login"),
        "{body}"
    );

    let shown = ok(&server.cli(ADMIN_TOKEN, &["credentials", "show", "src"], None));
    assert!(
        shown.contains("read from AWS Secrets Manager secret team/registry-login"),
        "{shown}"
    );
    let audit = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--output", "json"], None));
    for secret in [first, second] {
        for (what, text) in [
            ("show", &shown),
            ("audit", &audit),
            ("resolve error", &body),
            ("log", &server.log()),
        ] {
            assert!(!text.contains(secret), "{what} shows the secret");
        }
    }
}

#[test]
fn aws_secret_target_on_sqlite() {
    sync_target_flow(None);
}

#[test]
fn aws_secret_target_on_postgres() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    sync_target_flow(Some(database.url.clone()));
}

#[test]
fn aws_secret_source_on_sqlite() {
    source_flow(None);
}

#[test]
fn aws_secret_source_on_postgres() {
    let Some(database) = PostgresDatabase::create() else {
        return;
    };
    source_flow(Some(database.url.clone()));
}
