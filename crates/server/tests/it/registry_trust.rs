//! Issue 12 items 7, 8, 9 and 15 (a, b), end to end through the binary: where a
//! registry login may go (no metadata service, no token realm on another host), what
//! counts as a registry's answer, and what verification says about a missing
//! repository and about push rights. Real distribution (htpasswd, token auth,
//! anonymous) and the test token service wherever they can show it; hand-written
//! `fake_*` servers only for what no real registry does (a captive portal, an endless
//! body, a gzip bomb).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regkeeper_wire as wire;

use super::peers::registry::{Registry, RegistryAuth, RegistryOptions, RegistryStorage};
use super::peers::token_issuer::{
    TokenIssuer, TokenIssuerOptions, TokenUser, PULLER, PULLER_PASSWORD, PUSHER, PUSHER_PASSWORD,
};
use super::support::{add, add_login, ok, raw, stderr, ServerOptions, TestServer, ADMIN_TOKEN};

fn server_with(variables: &[(&str, String)]) -> TestServer {
    TestServer::start_with(ServerOptions {
        environment: variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect(),
        ..ServerOptions::default()
    })
}

/// A server that may reach registries on loopback and trusts `registry`'s CA: how
/// every test here reaches the real distribution it started.
fn server_trusting(registry: &Registry) -> TestServer {
    server_with(&[
        ("REGKEEPER_OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8".into()),
        (
            "REGKEEPER_OUTBOUND_CA_FILE",
            registry.ca_file().display().to_string(),
        ),
    ])
}

/// An htpasswd registry holding team/app:1 and a server trusting it with credential
/// `robot` for it (user `robot`); `None` (skip) where no registry can run.
fn registry_with_robot() -> Option<(Registry, TestServer)> {
    let registry = Registry::htpasswd(&[("robot", "robot-password")])?;
    registry.push_test_image("team/app", "1", "robot", "robot-password");
    let server = server_trusting(&registry);
    ok(&add_login(
        &server,
        ["robot", registry.host_port(), "robot"],
        "robot-password",
    ));
    Some((registry, server))
}

fn credential(output: &std::process::Output) -> wire::Credential {
    serde_json::from_str(&ok(output)).expect("a credential as JSON")
}

fn verify(server: &TestServer, args: &[&str]) -> std::process::Output {
    let mut full = vec!["credentials", "verify"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--output", "json"]);
    server.cli(ADMIN_TOKEN, &full, None)
}

/// `credentials verify NAME --repository team/app --check-push`: the credential with
/// its verification, for the push-rights tests.
fn verify_push(server: &TestServer, name: &str) -> wire::Credential {
    credential(&verify(
        server,
        &[name, "--repository", "team/app", "--check-push"],
    ))
}

/// What a push check of `name` on team/app says (empty if it says nothing).
fn push_check_message(server: &TestServer, name: &str) -> String {
    verify_push(server, name)
        .verification
        .message
        .unwrap_or_default()
}

/// Issue 12 item 7: a registry at Azure's wireserver address, or at Google's metadata
/// name, is refused before any connection, even with a broad network around the
/// address allowed and the address listed for plain http.
#[test]
fn registries_at_metadata_addresses_are_refused_before_connecting() {
    let server = server_with(&[
        (
            "REGKEEPER_OUTBOUND_ALLOW_NETWORKS",
            "168.63.0.0/16,169.254.0.0/16,fc00::/7".into(),
        ),
        (
            "REGKEEPER_OUTBOUND_HTTP_REGISTRIES",
            "168.63.129.16:80,metadata.google.internal:80".into(),
        ),
    ]);
    for registry in [
        "168.63.129.16",
        "168.63.129.16:80",
        "169.254.169.254",
        "[fd00:ec2::254]",
        "100.100.100.200",
        "metadata.google.internal",
        "metadata.google.internal:80",
    ] {
        let started = Instant::now();
        let refused = add_login(&server, ["metadata", registry, "robot"], "robot-password");
        let message = stderr(&refused);
        assert!(!refused.status.success(), "{registry}");
        assert!(
            message.contains("destination_forbidden") && message.contains("cloud metadata service"),
            "{registry}: {message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{registry}: refused without trying to connect"
        );
    }
}

/// Issue 12 item 8: a registry whose Bearer realm is on another host (here `localhost`
/// for a registry at `127.0.0.1`; both allowed destinations) does not get the password
/// sent there: the token service records no request, and the error names the realm
/// and the setting; the pull-through proxy, which mints its upstream tokens the same
/// way, refuses likewise. With the operator's `REGKEEPER_OUTBOUND_TOKEN_REALMS` entry the
/// same login works.
#[test]
fn a_token_realm_on_another_host_never_receives_the_password() {
    let issuer = TokenIssuer::start();
    let realm = issuer.realm().replace("127.0.0.1", "localhost");
    let realm_host = realm
        .trim_start_matches("https://")
        .trim_end_matches("/token")
        .to_owned();
    let Some(registry) = Registry::start(RegistryOptions {
        auth: RegistryAuth::Token {
            realm,
            root_cert_bundle: issuer.signing_cert_file().to_owned(),
        },
        storage: RegistryStorage::Filesystem,
        tls: true,
        ca: Some(Arc::clone(issuer.ca())),
    }) else {
        return;
    };
    let host = registry.host_port().to_owned();
    let base = vec![
        (
            "REGKEEPER_OUTBOUND_ALLOW_NETWORKS",
            "127.0.0.0/8".to_owned(),
        ),
        (
            "REGKEEPER_OUTBOUND_CA_FILE",
            registry.ca_file().display().to_string(),
        ),
    ];
    let mut with_proxy = base.clone();
    with_proxy.push(("REGKEEPER_PROXY_LISTEN", "127.0.0.1:0".to_owned()));
    let server = server_with(&with_proxy);
    let args = [
        "--name",
        "elsewhere",
        "--registry",
        &host,
        "--username",
        PULLER,
    ];
    let refused = add(&server, &args, PULLER_PASSWORD);
    let message = stderr(&refused);
    assert!(!refused.status.success());
    assert!(
        message.contains("registry_realm_not_allowed")
            && message.contains(&realm_host)
            && message.contains("REGKEEPER_OUTBOUND_TOKEN_REALMS"),
        "{message}"
    );
    assert!(!message.contains(PULLER_PASSWORD), "{message}");
    assert_eq!(issuer.requests(), Vec::new(), "the realm was never asked");

    // Stored without verification, the login still never reaches the realm through
    // the proxy.
    let mut unverified = args.to_vec();
    unverified.push("--no-verify");
    ok(&add(&server, &unverified, PULLER_PASSWORD));
    let proxy = server.proxy_url.as_deref().expect("the proxy listens");
    let upstream = host.replace(':', "_");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("admin:{ADMIN_TOKEN}"),
    );
    let answer = ureq::get(&format!("{proxy}/v2/{upstream}/team/app/manifests/1"))
        .set("Authorization", &format!("Basic {basic}"))
        .call();
    let (status, body) = super::support::status_and_text(answer, "proxy request");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("REGKEEPER_OUTBOUND_TOKEN_REALMS"), "{body}");
    assert_eq!(
        issuer.requests(),
        Vec::new(),
        "the proxy never asked the realm"
    );

    let mut allowing = base.clone();
    allowing.push((
        "REGKEEPER_OUTBOUND_TOKEN_REALMS",
        format!("{host}={realm_host}"),
    ));
    let server = server_with(&allowing);
    let added = credential(&add(&server, &args, PULLER_PASSWORD));
    assert_eq!(added.verification.status, "ok", "{:?}", added.verification);
    assert!(
        issuer
            .requests()
            .iter()
            .any(|request| request.username == PULLER && request.status == 200),
        "{:?}",
        issuer.requests()
    );
}

/// A hostile `/v2/`: answers every request with `head` and then `body`, counting the
/// bytes it managed to send.
fn fake_v2_server(head: String, body: BodyKind) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let head = head.clone();
            let body = Arc::clone(&body);
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut request = [0_u8; 4096];
                let _ = stream.read(&mut request);
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                match body.as_ref() {
                    BodyKind::Bytes(bytes) => {
                        if stream.write_all(bytes).is_ok() {
                            counter.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                        }
                    }
                    BodyKind::Endless => {
                        let chunk = vec![b'a'; 64 * 1024];
                        // Up to 1 GiB, for as long as the client keeps reading.
                        for _ in 0..(1 << 14) {
                            if stream.write_all(&chunk).is_err() {
                                break;
                            }
                            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    (address, sent)
}

enum BodyKind {
    Bytes(Vec<u8>),
    Endless,
}

/// Issue 12 item 9: a `200` on `/v2/` that is not a registry's — a captive portal's
/// HTML, an endless body, a gzip bomb — fails verification as "not a registry", the
/// body is read only up to a small cap (the endless one sends a bounded number of
/// bytes before regkeeper hangs up), nothing is decompressed, and nothing is stored.
#[test]
fn a_200_on_v2_that_is_not_a_registry_fails_verification() {
    let portal_page =
        b"<html><body><h1>Welcome to Airport Wi-Fi</h1><form>Accept</form></body></html>";
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..256 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    let cases = [
        (
            "portal",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                portal_page.len()
            ),
            BodyKind::Bytes(portal_page.to_vec()),
            "text/html body that is not JSON",
        ),
        (
            "endless",
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                .to_owned(),
            BodyKind::Endless,
            "larger than 65536 bytes",
        ),
        (
            "bomb",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bomb.len()
            ),
            BodyKind::Bytes(bomb),
            "encoded as gzip",
        ),
    ];
    for (name, head, body, reason) in cases {
        let endless = matches!(body, BodyKind::Endless);
        let (address, sent) = fake_v2_server(head, body);
        let server = server_with(&[
            ("REGKEEPER_OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32".into()),
            ("REGKEEPER_OUTBOUND_HTTP_REGISTRIES", address.to_string()),
        ]);
        let refused = add_login(
            &server,
            [name, &address.to_string(), "robot"],
            "robot-password",
        );
        let message = stderr(&refused);
        assert!(!refused.status.success(), "{name}");
        assert!(
            message.contains("registry_not_a_registry") && message.contains(reason),
            "{name}: {message}"
        );
        let listed: wire::CredentialList = serde_json::from_str(&ok(&server.cli(
            ADMIN_TOKEN,
            &["credentials", "list", "--output", "json"],
            None,
        )))
        .unwrap();
        assert!(listed.credentials.is_empty(), "{name}: nothing is stored");
        if endless {
            // Socket buffers hold a few megabytes; the body is a gigabyte.
            let sent = sent.load(Ordering::SeqCst);
            assert!(
                sent < 32 << 20,
                "{name}: the server got to send {sent} bytes"
            );
        }
    }
}

/// Issue 12 item 9: a real registry that asks for no credentials (distribution without
/// auth) cannot verify a login: the credential is stored as `unverifiable`, with the
/// reason, not `ok`; `credentials verify` says so as a warning and succeeds.
#[test]
fn an_anonymous_registry_makes_verification_unverifiable() {
    let Some(registry) = Registry::anonymous() else {
        return;
    };
    registry.push_test_image("team/app", "1", "", "");
    let host = registry.host_port().to_owned();
    let server = server_trusting(&registry);
    let added = credential(&add_login(
        &server,
        ["open", &host, "anyone"],
        "any-password",
    ));
    assert_eq!(added.verification.status, "unverifiable");
    let reason = added.verification.message.unwrap_or_default();
    assert!(reason.contains("asks for no credentials"), "{reason}");

    let verified = verify(&server, &["open", "--repository", "team/app"]);
    let shown = credential(&verified);
    assert_eq!(shown.verification.status, "unverifiable");
    assert!(
        stderr(&verified).starts_with("warning: ") && stderr(&verified).contains("team/app"),
        "{}",
        stderr(&verified)
    );
    let table = ok(&server.cli(ADMIN_TOKEN, &["credentials", "list"], None));
    assert!(table.contains("unverifiable"), "{table}");
}

/// Issue 12 item 15 (a): a repository the registry does not have is reported as such
/// (distribution's 404 `NAME_UNKNOWN`), not as refused pull access.
#[test]
fn a_missing_repository_is_not_called_refused_access() {
    let Some((_registry, server)) = registry_with_robot() else {
        return;
    };
    let missing = verify(&server, &["robot", "--repository", "team/nothing"]);
    let message = stderr(&missing);
    assert!(!missing.status.success());
    assert!(
        message.contains("has no repository team/nothing")
            && message.contains("NAME_UNKNOWN")
            && !message.contains("refused pull access"),
        "{message}"
    );
}

/// Review fix: the repository is normalised (surrounding slashes and spaces dropped)
/// before the registry is asked, as the audit entry records it; the registry used to
/// be asked for `/team/app/` as typed, which no registry has.
#[test]
fn a_repository_is_asked_for_as_normalised() {
    let Some((_registry, server)) = registry_with_robot() else {
        return;
    };
    let verified = verify(&server, &["robot", "--repository", " /team/app/ "]);
    assert!(verified.status.success(), "{}", stderr(&verified));
}

/// The files of open blob uploads in `repository`: an upload's `data` and `startedat`.
/// (Distribution 2.8 writes a hash state once more after removing a cancelled upload;
/// that leftover holds no data and is not counted.)
fn uploads_left(registry: &Registry, repository: &str) -> Vec<String> {
    let uploads = registry
        .directory()
        .join("storage/docker/registry/v2/repositories")
        .join(repository)
        .join("_uploads");
    super::support::files_under(&uploads)
        .into_iter()
        .map(|(path, _)| path.display().to_string())
        .filter(|path| path.ends_with("/data") || path.ends_with("/startedat"))
        .collect()
}

/// Issue 12 item 15 (b): over Basic auth the login cannot tell push rights, and
/// verification says so; `--check-push` opens a blob upload and cancels it, warning
/// when push is granted (htpasswd distribution grants it to every user) and leaving no
/// upload behind. Over token auth a pull-only login is refused the upload and a
/// pushing one is warned about. The REST field needs a repository.
#[test]
fn push_rights_are_checked_on_request_and_otherwise_said_unknown() {
    let Some((registry, server)) = registry_with_robot() else {
        return;
    };
    let plain = credential(&verify(&server, &["robot", "--repository", "team/app"]));
    let message = plain.verification.message.unwrap_or_default();
    assert!(
        message.contains("push rights could not be checked"),
        "{message}"
    );
    assert!(message.contains("--check-push"), "{message}");

    let before = uploads_left(&registry, "team/app");
    let checked = verify_push(&server, "robot");
    assert_eq!(checked.verification.status, "ok");
    let message = checked.verification.message.unwrap_or_default();
    assert!(
        message.contains("warning: the credential may push to team/app")
            && message.contains("opened and cancelled"),
        "{message}"
    );
    assert_eq!(
        uploads_left(&registry, "team/app"),
        before,
        "the upload was cancelled"
    );

    let without_repository = server.cli(
        ADMIN_TOKEN,
        &["credentials", "verify", "robot", "--check-push"],
        None,
    );
    assert!(!without_repository.status.success());
    assert!(
        stderr(&without_repository).contains("--repository"),
        "{}",
        stderr(&without_repository)
    );
    let (status, body) = raw(
        &server,
        "POST",
        "/api/v1/workspaces/~admin/credentials/robot/verify",
        Some(ADMIN_TOKEN),
        Some("application/json"),
        Some(br#"{"checkPush":true}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("check_push_needs_repository"), "{body}");

    let mut options = TokenIssuerOptions::default();
    options.users.push(TokenUser::new(
        "maintainer",
        "maintainer-password",
        &["pull", "push", "delete"],
    ));
    let issuer = TokenIssuer::start_with(options);
    let Some(token_registry) = Registry::token_auth(&issuer) else {
        return;
    };
    token_registry.push_test_image("team/app", "1", PUSHER, PUSHER_PASSWORD);
    let before = uploads_left(&token_registry, "team/app");
    let uploads_left_on_app = || uploads_left(&token_registry, "team/app").len();
    let token_host = token_registry.host_port().to_owned();
    let server = server_trusting(&token_registry);
    for (name, user, password) in [
        ("puller", PULLER, PULLER_PASSWORD),
        ("pusher", PUSHER, PUSHER_PASSWORD),
        ("maintainer", "maintainer", "maintainer-password"),
    ] {
        ok(&add_login(&server, [name, &token_host, user], password));
    }
    let message = push_check_message(&server, "puller");
    assert!(
        message.contains("push to team/app refused") && !message.contains("warning"),
        "{message}"
    );
    let message = push_check_message(&server, "pusher");
    // Distribution wants `delete` to cancel an upload, which the pusher lacks: the
    // warning says the empty upload stays until the registry purges it.
    assert!(
        message.contains("warning: the credential may push to team/app")
            && message.contains("cancelling it was refused (HTTP 401)"),
        "{message}"
    );
    assert_eq!(uploads_left_on_app(), before.len() + 2);
    // With `delete` granted too, the upload is cancelled, and `delete` is warned about.
    let message = push_check_message(&server, "maintainer");
    assert!(
        message.contains("grants push, delete on team/app")
            && message.contains("opened and cancelled"),
        "{message}"
    );
    assert_eq!(uploads_left_on_app(), before.len() + 2);
}
