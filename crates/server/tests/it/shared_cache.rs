//! The proxy's blob cache on S3 (moto's real S3), shared by replicas on one PostgreSQL:
//! a layer pulled through one replica is fetched from the upstream once for all three
//! (counted in distribution's own access log), the grant confirmed on one serves on
//! the others, a workspace that may not pull gets 403 and no bytes on every replica; an
//! S3 outage passes pulls through; a rotten object is cut off, deleted and fetched
//! again; the leased sweep evicts least recently used blobs down to the cap. Also one
//! replica on SQLite with the shared cache.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::peers::cut_relay::CutRelay;
use super::peers::moto::{self, Moto};
use super::peers::registry::Registry;
use super::peers::token_issuer::{PULLER, PULLER_PASSWORD};
use super::proxy::{
    add_an_outsider, call, metric, proxy_host, sha256, skopeo_pull, store_login,
    upstream_with_an_outsider,
};
use super::support::{
    eventually, stderr, PostgresDatabase, ServerOptions, TestServer, ADMIN_TOKEN,
};

const BUCKET: &str = "regkeeper-cache";
const PREFIX: &str = "proxy";
const CACHE_BYTES: &str = "regkeeper_proxy_blob_bytes_total{source=\"cache\"}";

/// Where the shared cache keeps a blob.
fn object_key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    format!("{PREFIX}/blobs/sha256/{}/{hex}", &hex[..2])
}

/// A proxy's environment with the shared cache on the S3 at `endpoint`.
fn environment(
    ca_file: Option<&Path>,
    endpoint: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut environment = vec![
        ("REGKEEPER_PROXY_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "REGKEEPER_OUTBOUND_ALLOW_NETWORKS",
            "127.0.0.0/8".to_owned(),
        ),
        (
            "REGKEEPER_PROXY_CACHE_S3_URL",
            format!("s3://{BUCKET}/{PREFIX}/"),
        ),
        ("AWS_ENDPOINT_URL_S3", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.to_owned()),
        ("AWS_REGION", moto::REGION.to_owned()),
    ];
    if let Some(ca_file) = ca_file {
        environment.push(("REGKEEPER_OUTBOUND_CA_FILE", ca_file.display().to_string()));
    }
    environment.extend(extra.iter().cloned());
    environment
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Replicas on one fresh PostgreSQL database sharing one master key file; `None` when
/// PostgreSQL is unreachable outside CI.
fn replicas(
    count: usize,
    environment: Vec<(String, String)>,
) -> Option<(Vec<TestServer>, PostgresDatabase, tempfile::TempDir)> {
    let database = PostgresDatabase::create()?;
    let keys = tempfile::tempdir().unwrap();
    let mut environment = environment;
    environment.push((
        "REGKEEPER_MASTER_KEY_FILE".to_owned(),
        keys.path().join("master.key").display().to_string(),
    ));
    let servers = (0..count)
        .map(|_| {
            let server = TestServer::start_with(ServerOptions {
                database_url: Some(database.url.clone()),
                data_dir: None,
                environment: environment.clone(),
            });
            assert!(server.proxy_url.is_some(), "{}", server.stdout);
            server
        })
        .collect();
    Some((servers, database, keys))
}

/// Successful upstream requests for a blob (`GET` or `HEAD`), from distribution's log.
fn upstream_requests(registry: &Registry, method: &str, digest: &str) -> usize {
    let method = format!("http.request.method={method}");
    let path = format!("/blobs/{digest}");
    registry
        .log()
        .lines()
        .filter(|line| {
            line.contains("response completed")
                && line.contains(&method)
                && line.contains(&path)
                && line.contains("http.response.status=200")
        })
        .count()
}

fn pull(server: &TestServer, image: &str) {
    let (output, _layout) = skopeo_pull(&proxy_host(server), image, "any", ADMIN_TOKEN, None);
    assert!(
        output.status.success(),
        "skopeo: {}\nserver log:\n{}",
        stderr(&output),
        server.log()
    );
}

fn blob_url(server: &TestServer, alias: &str, repository: &str, digest: &str) -> String {
    format!(
        "http://{}/v2/{alias}/{repository}/blobs/{digest}",
        proxy_host(server)
    )
}

#[test]
fn three_replicas_fetch_a_layer_from_the_upstream_once_and_keep_workspaces_apart() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket(BUCKET);
    let Some((_issuer, registry, digests)) = upstream_with_an_outsider() else {
        return;
    };
    let upstream = registry.host_port().to_owned();
    let alias = upstream.replace(':', "_");
    let Some((replicas, _database, _keys)) = replicas(
        3,
        environment(Some(registry.ca_file()), moto.endpoint_url(), &[]),
    ) else {
        return;
    };
    store_login(&replicas[0], "puller", &upstream, PULLER, PULLER_PASSWORD);
    let image = format!("{alias}/team/app:1");

    pull(&replicas[0], &image);
    let (status, stored) = moto.get_object(BUCKET, &object_key(&digests.layer));
    assert_eq!(
        status, 200,
        "the verified layer is in S3 once the pull is done"
    );
    assert_eq!(sha256(&stored), digests.layer);
    assert_eq!(upstream_requests(&registry, "GET", &digests.layer), 1);
    for replica in &replicas[1..] {
        pull(replica, &image);
        assert!(metric(replica, CACHE_BYTES) > 0.0, "{}", replica.log());
    }
    for digest in [&digests.layer, &digests.config] {
        assert_eq!(
            upstream_requests(&registry, "GET", digest),
            1,
            "{digest} fetched from the upstream once for three replicas:\n{}",
            registry.log()
        );
    }
    assert_eq!(
        upstream_requests(&registry, "HEAD", &digests.layer),
        0,
        "the grant confirmed through the first replica served the others"
    );

    // Bob works in another workspace whose credential logs in but may not pull: no
    // replica serves him the cached layer, nor even says how large it is.
    let bob = add_an_outsider(&replicas[1], &upstream);
    for replica in &replicas {
        let url = blob_url(replica, &alias, "team/app", &digests.layer);
        let denied = call("GET", &url, Some(("acme/other", &bob)), &[]);
        assert_eq!(
            (denied.status, denied.error_code().as_str()),
            (403, "DENIED"),
            "{}",
            replica.log()
        );
        assert!(!denied
            .bytes()
            .windows(16)
            .any(|window| window == &stored[..16]));
        let head = call("HEAD", &url, Some(("acme/other", &bob)), &[]);
        assert_eq!(head.status, 403);
        assert!(head.header("content-length") != Some(&stored.len().to_string()));
        // The admin's callers get it whole, and a part of it, from the cache.
        let served = call("GET", &url, Some(("any", ADMIN_TOKEN)), &[]);
        assert_eq!(sha256(served.bytes()), digests.layer);
        let part = call(
            "GET",
            &url,
            Some(("any", ADMIN_TOKEN)),
            &[("Range", "bytes=2-9")],
        );
        assert_eq!(part.status, 206);
        assert_eq!(part.bytes(), &stored[2..10]);
    }
    assert_eq!(upstream_requests(&registry, "GET", &digests.layer), 1);
}

#[test]
fn one_replica_on_sqlite_passes_through_an_s3_outage_and_drops_a_rotten_object() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket(BUCKET);
    let relay = CutRelay::start(moto.endpoint_url().trim_start_matches("http://"));
    let Some(registry) = Registry::htpasswd(&[("robot", "robot-password")]) else {
        return;
    };
    let app = registry.push_test_image("team/app", "1", "robot", "robot-password");
    let other = registry.push_test_image("team/other", "1", "robot", "robot-password");
    let upstream = registry.host_port().to_owned();
    let alias = upstream.replace(':', "_");
    let server = TestServer::start_with(ServerOptions {
        environment: environment(Some(registry.ca_file()), &relay.endpoint_url(), &[]),
        ..ServerOptions::default()
    });
    store_login(&server, "robot", &upstream, "robot", "robot-password");
    pull(&server, &format!("{alias}/team/app:1"));
    let key = object_key(&app.layer);
    let (status, original) = moto.get_object(BUCKET, &key);
    assert_eq!(status, 200, "{}", server.log());
    let url = blob_url(&server, &alias, "team/app", &app.layer);
    let admin = Some(("any", ADMIN_TOKEN));

    // A rotten object (same length, every byte flipped) is cut off, never ending
    // cleanly, and deleted; the next pull fetches the layer again and stores it anew.
    let flipped: Vec<u8> = original.iter().map(|byte| !byte).collect();
    moto.put_object(BUCKET, &key, &flipped);
    let fetched = upstream_requests(&registry, "GET", &app.layer);
    let rotten = call("GET", &url, admin, &[]);
    assert!(
        rotten.body.is_err(),
        "a corrupted cached blob never arrives whole"
    );
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "the rotten object is deleted",
        || moto.get_object(BUCKET, &key).0 == 404,
    );
    let again = call("GET", &url, admin, &[]);
    assert_eq!(sha256(again.bytes()), app.layer);
    assert_eq!(upstream_requests(&registry, "GET", &app.layer), fetched + 1);
    assert_eq!(moto.get_object(BUCKET, &key), (200, original.clone()));
    assert!(
        server.log().contains("proxy.shared_cache_corrupted"),
        "{}",
        server.log()
    );

    // S3 out of reach: what is cached, and what is not, passes through from the
    // upstream, and nothing fails.
    relay.set_cut(true);
    let during = call("GET", &url, admin, &[]);
    assert_eq!(during.status, 200, "{}", server.log());
    assert_eq!(sha256(during.bytes()), app.layer);
    assert_eq!(upstream_requests(&registry, "GET", &app.layer), fetched + 2);
    pull(&server, &format!("{alias}/team/other:1"));
    let other_key = object_key(&other.layer);
    assert_eq!(moto.get_object(BUCKET, &other_key).0, 404);
    assert!(server.log().contains("proxy.shared_cache_unavailable"));

    // Once S3 is back (and the pause after a failure is over), caching resumes.
    relay.set_cut(false);
    let other_url = blob_url(&server, &alias, "team/other", &other.layer);
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(500),
        "the cache is used again after the outage",
        || {
            let served = call("GET", &other_url, admin, &[]);
            assert_eq!(sha256(served.bytes()), other.layer);
            moto.get_object(BUCKET, &other_key).0 == 200
        },
    );
}

/// Pseudo-random bytes (incompressible, distinct for each seed).
fn noise(seed: &str, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size + 32);
    let mut block = Sha256::digest(seed.as_bytes());
    while bytes.len() < size {
        bytes.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    bytes.truncate(size);
    bytes
}

/// Uploads a blob to a plain-HTTP anonymous registry; its digest.
fn push_blob(registry: &Registry, repository: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let base = registry.url();
    let started = ureq::post(&format!("{base}/v2/{repository}/blobs/uploads/"))
        .send_bytes(b"")
        .expect("start a blob upload");
    assert_eq!(started.status(), 202);
    let location = started.header("location").expect("upload location");
    let location = if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let done = ureq::put(&format!("{location}{separator}digest={digest}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(bytes)
        .expect("finish the blob upload");
    assert_eq!(done.status(), 201);
    digest
}

#[test]
fn the_leased_sweep_evicts_least_recently_used_blobs_down_to_the_cap() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket(BUCKET);
    let Some(registry) = Registry::plain_http() else {
        return;
    };
    let upstream = registry.host_port().to_owned();
    let alias = upstream.replace(':', "_");
    let seed = uuid::Uuid::new_v4().to_string();
    // Three blobs of 400 KiB under a 1 MiB cap: any two fit, three do not.
    let blobs: Vec<(String, Vec<u8>)> = (0..3)
        .map(|index| {
            let bytes = noise(&format!("{seed}/{index}"), 400 * 1024);
            (push_blob(&registry, "team/blobs", &bytes), bytes)
        })
        .collect();
    let Some((replicas, _database, _keys)) = replicas(
        2,
        environment(
            None,
            moto.endpoint_url(),
            &[
                ("REGKEEPER_PROXY_CACHE_MAX_BYTES", "1MiB".to_owned()),
                ("REGKEEPER_OUTBOUND_HTTP_REGISTRIES", upstream.clone()),
            ],
        ),
    ) else {
        return;
    };
    store_login(&replicas[0], "anyone", &upstream, "anyone", "any-password");
    let admin = Some(("any", ADMIN_TOKEN));
    let get = |replica: &TestServer, index: usize| {
        let (digest, bytes) = &blobs[index];
        let served = call(
            "GET",
            &blob_url(replica, &alias, "team/blobs", digest),
            admin,
            &[],
        );
        assert_eq!(served.status, 200, "{}", replica.log());
        assert_eq!(served.bytes(), &bytes[..]);
    };
    let stored = |index: usize| moto.get_object(BUCKET, &object_key(&blobs[index].0)).0 == 200;
    // Through alternate replicas, oldest first.
    for index in 0..3 {
        get(&replicas[index % 2], index);
        assert!(stored(index), "blob {index} stored");
    }
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "the least recently used blob is evicted",
        || !stored(0),
    );
    assert!(stored(1) && stored(2), "the two newest fit under the cap");
    // The evicted one is fetched again, and now the next oldest goes.
    get(&replicas[1], 0);
    assert_eq!(upstream_requests(&registry, "GET", &blobs[0].0), 2);
    assert!(stored(0));
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "the next least recently used blob is evicted",
        || !stored(1),
    );
    assert!(stored(0) && stored(2));
    let evictions: usize = replicas
        .iter()
        .map(|replica| replica.log().matches("proxy.shared_cache_evicted").count())
        .sum();
    assert!(evictions >= 2, "{evictions} sweeps evicted");
}
