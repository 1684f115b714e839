//! Registry logins end to end with real peers: distribution with htpasswd over TLS,
//! distribution with token auth, and ECR through moto_server standing in for AWS, each
//! verified on add and resolved into credentials that skopeo then pulls with.

use base64::Engine;
use regkeeper_wire as wire;

use super::peers::moto::{self, Moto};
use super::peers::registry::Registry;
use super::peers::token_issuer::{TokenIssuer, PULLER, PULLER_PASSWORD, PUSHER, PUSHER_PASSWORD};
use super::support::{
    add, add_login, kind_method_and_status, ok, resolve, server_for, stderr, ServerOptions,
    TestServer, ADMIN_TOKEN,
};

/// A server allowed to reach the loopback registry and trusting its test CA.
/// The user name and password in moto's ECR token, for a registry to accept.
pub(super) fn moto_ecr_login(moto: &Moto) -> (String, String) {
    let (status, body) = moto.call_json_api(
        "ecr",
        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        &serde_json::json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let encoded = body["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let (user, token) = std::str::from_utf8(&decoded)
        .unwrap()
        .split_once(':')
        .unwrap();
    (user.to_owned(), token.to_owned())
}

#[test]
fn htpasswd_registry_verify_resolve_and_pull() {
    let Some(registry) = Registry::htpasswd(&[("robot", "robot-password")]) else {
        return;
    };
    registry.push_test_image("team/app", "1", "robot", "robot-password");
    let host = registry.host_port().to_owned();

    // Without the operator's allowance, loopback is refused before any connection.
    let guarded = TestServer::start();
    let refused = add_login(&guarded, ["local", &host, "robot"], "robot-password");
    assert!(
        stderr(&refused).contains("destination_forbidden"),
        "{}",
        stderr(&refused)
    );

    let server = server_for(&registry, &[]);
    let wrong = add_login(&server, ["local", &host, "robot"], "not-the-password");
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("rejected the user name or password"),
        "{}",
        stderr(&wrong)
    );
    let listed: wire::CredentialList = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &["credentials", "list", "--output", "json"],
        None,
    )))
    .unwrap();
    assert!(
        listed.credentials.is_empty(),
        "a credential that failed verification is not stored"
    );

    let added: wire::Credential = serde_json::from_str(&ok(&add_login(
        &server,
        ["local", &format!("https://{host}"), "robot"],
        "robot-password",
    )))
    .unwrap();
    assert_eq!(added.verification.status, "ok");
    assert!(added
        .verification
        .message
        .as_deref()
        .unwrap()
        .contains("basic"));
    ok(&server.cli(
        ADMIN_TOKEN,
        &["credentials", "verify", "local", "--repository", "team/app"],
        None,
    ));
    let missing = server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "verify",
            "local",
            "--repository",
            "team/nothing",
        ],
        None,
    );
    assert!(
        stderr(&missing).contains("has no repository team/nothing"),
        "{}",
        stderr(&missing)
    );

    let resolved = resolve(&server, &format!("{host}/team/app:1"));
    assert_eq!(
        (
            resolved.username.as_str(),
            resolved.secret.expose(),
            resolved.expires_at.as_deref()
        ),
        ("robot", "robot-password", None)
    );
    registry.assert_pulls_with(&registry.image("team/app:1"), &resolved);
    let audit = ok(&server.cli(ADMIN_TOKEN, &["audit", "list", "--limit", "100"], None));
    assert!(
        audit.contains("credential.resolve") && audit.contains("credential.verify"),
        "{audit}"
    );
}

#[test]
fn token_registry_bearer_login_and_push_warning() {
    let issuer = TokenIssuer::start();
    let Some(registry) = Registry::token_auth(&issuer) else {
        return;
    };
    registry.push_test_image("team/app", "1", PUSHER, PUSHER_PASSWORD);
    let host = registry.host_port().to_owned();
    let server = server_for(&registry, &[]);
    let puller: wire::Credential = serde_json::from_str(&ok(&add_login(
        &server,
        ["puller", &host, PULLER],
        PULLER_PASSWORD,
    )))
    .unwrap();
    assert!(
        puller
            .verification
            .message
            .as_deref()
            .unwrap()
            .contains("bearer"),
        "{:?}",
        puller.verification
    );
    let verified: wire::Credential = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "verify",
            "puller",
            "--repository",
            "team/app",
            "--output",
            "json",
        ],
        None,
    )))
    .unwrap();
    assert!(!verified.verification.message.unwrap().contains("warning"));

    ok(&add(
        &server,
        &[
            "--name",
            "pusher",
            "--registry",
            &host,
            "--username",
            PUSHER,
            "--path-prefix",
            "team",
        ],
        PUSHER_PASSWORD,
    ));
    let verified: wire::Credential = serde_json::from_str(&ok(&server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "verify",
            "pusher",
            "--repository",
            "team/app",
            "--output",
            "json",
        ],
        None,
    )))
    .unwrap();
    let message = verified.verification.message.unwrap();
    assert!(
        message.contains("warning") && message.contains("push"),
        "{message}"
    );

    // The longest path prefix wins: team/app goes to the pusher credential.
    assert_eq!(
        resolve(&server, &format!("{host}/team/app:1")).username,
        PUSHER
    );
    assert_eq!(
        resolve(&server, &format!("{host}/other/app:1")).username,
        PULLER
    );
    let wrong = add_login(&server, ["bad", &host, PULLER], "wrong");
    assert!(
        stderr(&wrong).contains("rejected the user name or password"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn ecr_through_moto_keys_and_role() {
    let Some(moto) = Moto::start() else { return };
    // moto's ECR token stands in for the registry password, so the whole path is real.
    let (user, token) = moto_ecr_login(&moto);
    let (user, token) = (user.as_str(), token.as_str());
    let Some(registry) = Registry::htpasswd(&[(user, token)]) else {
        return;
    };
    registry.push_test_image("team/app", "1", user, token);
    let host = registry.host_port().to_owned();
    let server = server_for(&registry, &[("AWS_ENDPOINT_URL", moto.endpoint_url())]);

    let added: wire::Credential = serde_json::from_str(&ok(&moto::add_ecr_login(
        &server,
        "ecr",
        &host,
        &["--output", "json"],
    )))
    .unwrap();
    assert_eq!(kind_method_and_status(&added), ("ecr", "aws_keys", "ok"));

    let resolved = resolve(&server, &format!("{host}/team/app:1"));
    assert_eq!(
        (resolved.username.as_str(), resolved.secret.expose()),
        (user, token)
    );
    // moto reports an expiry in 2015; it is replaced by the documented 12 hours.
    let expires_at = resolved.expires_at.clone().expect("ECR logins expire");
    assert!(expires_at.as_str() > "2026-01-01", "{expires_at}");
    assert!(server.log().contains("token.expiry_unusable"));
    registry.assert_pulls_with(&registry.image("team/app:1"), &resolved);

    // The same through an assumed role with an external id.
    let role: wire::Credential = serde_json::from_str(&ok(&moto::add_ecr_login(
        &server,
        "ecr-role",
        &host,
        &[
            "--path-prefix",
            "team",
            "--role-arn",
            "arn:aws:iam::123456789012:role/regkeeper-pull",
            "--external-id",
            "ext-42",
            "--output",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(
        (role.auth_method.as_str(), role.verification.status.as_str()),
        ("aws_role", "ok")
    );
    let resolved = resolve(&server, &format!("{host}/team/app:1"));
    assert_eq!(resolved.secret.expose(), token);
}

#[test]
fn ambient_aws_identity_only_when_the_operator_allows_it() {
    let Some(moto) = Moto::start() else { return };
    let (user, token) = moto_ecr_login(&moto);
    let (user, token) = (user.as_str(), token.as_str());
    let Some(registry) = Registry::htpasswd(&[(user, token)]) else {
        return;
    };
    let host = registry.host_port().to_owned();
    // The server's own identity, as an instance role would provide it.
    let identity = [
        ("AWS_ENDPOINT_URL", moto.endpoint_url()),
        ("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY),
    ];
    let args = [
        "credentials",
        "add",
        "--name",
        "ambient",
        "--type",
        "ecr",
        "--registry",
        &host,
        "--aws-region",
        moto::REGION,
        "--ambient",
        "--output",
        "json",
    ];
    let refusing = server_for(&registry, &identity);
    let refused = refusing.cli(ADMIN_TOKEN, &args, None);
    assert!(
        stderr(&refused).contains("ambient_credentials_disabled"),
        "{}",
        stderr(&refused)
    );

    let mut allowing_environment = identity.to_vec();
    allowing_environment.push(("REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS", "true"));
    let allowing = server_for(&registry, &allowing_environment);
    let added: wire::Credential =
        serde_json::from_str(&ok(&allowing.cli(ADMIN_TOKEN, &args, None))).unwrap();
    assert_eq!(
        (
            added.auth_method.as_str(),
            added.has_secret,
            added.verification.status.as_str()
        ),
        ("aws_ambient", false, "ok")
    );
    assert_eq!(
        resolve(&allowing, &format!("{host}/team/app:1"))
            .secret
            .expose(),
        token
    );
}

/// A registry that is allowed but announces a token realm on a forbidden address: the
/// credentials are never sent there, and no connection is made.
#[test]
fn a_token_realm_on_a_forbidden_address_is_refused() {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let trap = TcpListener::bind("127.0.0.2:0").unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    std::thread::spawn(move || {
        for _ in trap.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let registry_host = listener.local_addr().unwrap().to_string();
    let challenge = format!("Bearer realm=\"http://127.0.0.2:{trap_port}/token\",service=\"trap\"");
    let app = axum::Router::new().route(
        "/v2/",
        axum::routing::get(move || {
            let challenge = challenge.clone();
            async move {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [("www-authenticate", challenge)],
                    "",
                )
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    let server = TestServer::start_with(ServerOptions {
        environment: vec![
            (
                "REGKEEPER_OUTBOUND_ALLOW_NETWORKS".into(),
                "127.0.0.1/32".into(),
            ),
            (
                "REGKEEPER_OUTBOUND_HTTP_REGISTRIES".into(),
                format!("{registry_host},127.0.0.2:{trap_port}"),
            ),
        ],
        ..ServerOptions::default()
    });
    let refused = add_login(&server, ["trap", &registry_host, "robot"], "robot-password");
    assert!(
        stderr(&refused).contains("destination_forbidden"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection reached the realm"
    );
}

/// Issue 12 item 22: ambient AWS credentials reach only the accounts the operator
/// lists in `REGKEEPER_AMBIENT_AWS_ACCOUNTS` — by default the server's own (moto's
/// 123456789012, from STS GetCallerIdentity). Another account's registry is refused at
/// add and update (verified or not) with a message naming the setting, and a stored
/// credential whose account the operator later removed is refused at its next resolve.
#[test]
fn ambient_aws_identity_reaches_only_the_listed_accounts() {
    let Some(moto) = Moto::start() else { return };
    let identity = |accounts: Option<&str>| {
        let mut environment = vec![
            ("AWS_ENDPOINT_URL", moto.endpoint_url().to_owned()),
            ("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.to_owned()),
            ("REGKEEPER_ALLOW_AMBIENT_AWS_CREDENTIALS", "true".to_owned()),
        ];
        if let Some(accounts) = accounts {
            environment.push(("REGKEEPER_AMBIENT_AWS_ACCOUNTS", accounts.to_owned()));
        }
        environment
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect::<Vec<_>>()
    };
    let own = format!("{}.dkr.ecr.us-east-1.amazonaws.com", moto::ACCOUNT_ID);
    let other = "210987654321.dkr.ecr.us-east-1.amazonaws.com";
    let ambient_add = |server: &TestServer, name: &str, host: &str| {
        let args = [
            "credentials",
            "add",
            "--name",
            name,
            "--registry",
            host,
            "--aws-region",
            moto::REGION,
            "--ambient",
            "--no-verify",
            "--output",
            "json",
        ];
        server.cli(ADMIN_TOKEN, &args, None)
    };
    let refused_by_setting = |output: &std::process::Output, account: &str| {
        let message = stderr(output);
        assert!(!output.status.success(), "accepted: {}", ok(output));
        assert!(message.contains("ambient_account_not_allowed"), "{message}");
        assert!(
            message.contains("REGKEEPER_AMBIENT_AWS_ACCOUNTS"),
            "{message}"
        );
        assert!(message.contains(account), "{message}");
    };

    let server = TestServer::start_with(ServerOptions {
        environment: identity(None),
        ..ServerOptions::default()
    });
    refused_by_setting(&ambient_add(&server, "elsewhere", other), "210987654321");
    ok(&ambient_add(&server, "home", &own));
    let minted = resolve(&server, &format!("{own}/team/app:1"));
    assert!(minted.expires_at.is_some(), "minted through moto");
    // Updating the registry to another account is refused the same way.
    let moved = server.cli(
        ADMIN_TOKEN,
        &[
            "credentials",
            "update",
            "home",
            "--registry",
            other,
            "--no-verify",
        ],
        None,
    );
    refused_by_setting(&moved, "210987654321");
    let kept = server.stop();

    // The operator now lists only the other account: the stored credential is refused
    // at its next mint, and the other account's registry may be added.
    let server = TestServer::start_with(ServerOptions {
        environment: identity(Some("210987654321")),
        data_dir: Some(kept.path.clone()),
        ..ServerOptions::default()
    });
    let refused = server.cli(
        ADMIN_TOKEN,
        &["resolve", &format!("{own}/team/app:1")],
        None,
    );
    refused_by_setting(&refused, moto::ACCOUNT_ID);
    ok(&ambient_add(&server, "elsewhere", other));
    let minted = resolve(&server, &format!("{other}/team/app:1"));
    assert!(minted.expires_at.is_some());
}
