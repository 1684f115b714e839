//! Real peers for the integration tests — a TLS CA, distribution with htpasswd or token
//! auth (and S3 blob storage it redirects to), a Docker token service, moto — and tests
//! proving each one really works, so a failure elsewhere points at regkeeper rather
//! than at its test set-up.
#![allow(
    dead_code,
    reason = "the peers serve tests written elsewhere; not every helper is used by every build of them"
)]

pub mod aws_relay;
pub mod blob_store;
pub mod cut_relay;
pub mod faulty_upstream;
pub mod http_server;
pub mod identity_provider;
pub mod image;
pub mod moto;
pub mod otlp;
pub mod process;
pub mod registry;
pub mod tls;
pub mod token_issuer;

mod tests {
    use super::blob_store::BlobStore;
    use super::moto::Moto;
    use super::registry::{Registry, SkopeoAuth};
    use super::tls::TestCa;
    use super::token_issuer::{
        TokenIssuer, TokenIssuerOptions, TokenUser, ISSUER, PULLER, PULLER_PASSWORD, PUSHER,
        PUSHER_PASSWORD, SERVICE,
    };

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(future)
    }

    #[track_caller]
    fn assert_success(output: &std::process::Output, what: &str, registry: &Registry) {
        assert!(
            output.status.success(),
            "{what} failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            registry.log()
        );
    }

    #[track_caller]
    fn assert_failure(output: &std::process::Output, what: &str) -> String {
        assert!(!output.status.success(), "{what} unexpectedly succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn get_json(
        client: &reqwest::Client,
        url: &str,
        basic: Option<(&str, &str)>,
    ) -> (u16, serde_json::Value) {
        block_on(async {
            let mut request = client.get(url);
            if let Some((username, password)) = basic {
                request = request.basic_auth(username, Some(password));
            }
            let response = request.send().await.expect("GET");
            let status = response.status().as_u16();
            (status, response.json().await.expect("JSON body"))
        })
    }

    fn post_form(
        client: &reqwest::Client,
        url: &str,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        block_on(async {
            let response = client.post(url).form(form).send().await.expect("POST");
            let status = response.status().as_u16();
            (status, response.json().await.expect("JSON body"))
        })
    }

    #[test]
    fn test_ca_writes_pem_files_for_loopback() {
        let ca = TestCa::generate();
        for (path, pem) in [
            (ca.ca_file(), &ca.ca_pem),
            (ca.server_cert_file(), &ca.server_pem),
            (ca.server_key_file(), &ca.server_key_pem),
        ] {
            assert_eq!(&std::fs::read_to_string(path).expect("PEM file"), pem);
        }
        assert!(ca.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.server_key_pem.contains("PRIVATE KEY"));
        assert!(ca.cert_dir().join("ca.crt").is_file());
    }

    #[test]
    fn htpasswd_registry_over_tls_pushes_and_pulls_with_skopeo() {
        let Some(registry) =
            Registry::htpasswd(&[("alice", "alice-secret"), ("bob", "bob-secret")])
        else {
            return;
        };
        assert!(registry.url().starts_with("https://127.0.0.1:"));
        let digests = registry.push_test_image("team/app", "v1", "alice", "alice-secret");
        assert!(digests.manifest.starts_with("sha256:"), "{digests:?}");

        let bob = SkopeoAuth::Basic {
            username: "bob",
            password: "bob-secret",
        };
        assert_success(
            &registry.skopeo_pull("team/app:v1", &bob),
            "pull by tag",
            &registry,
        );
        let by_digest = format!("team/app@{}", digests.manifest);
        assert_success(
            &registry.skopeo_pull(&by_digest, &bob),
            "pull by digest",
            &registry,
        );

        let raw = registry.skopeo_inspect_raw("team/app:v1", &bob);
        assert_success(&raw, "inspect --raw", &registry);
        let served = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw.stdout))
        );
        assert_eq!(
            served, digests.manifest,
            "the registry serves the manifest pushed"
        );

        let wrong = SkopeoAuth::Basic {
            username: "bob",
            password: "not-bob-secret",
        };
        let stderr = assert_failure(
            &registry.skopeo_pull("team/app:v1", &wrong),
            "pull with a wrong password",
        );
        assert!(
            stderr.contains("unauthorized") || stderr.contains("401"),
            "{stderr}"
        );
        assert_failure(
            &registry.skopeo_pull("team/app:v1", &SkopeoAuth::Anonymous),
            "anonymous pull",
        );
    }

    #[test]
    fn plain_http_registry_pushes_and_pulls_without_tls() {
        let Some(registry) = Registry::plain_http() else {
            return;
        };
        assert!(registry.url().starts_with("http://127.0.0.1:"));
        registry.push_test_image("plain", "latest", "", "");
        assert_success(
            &registry.skopeo_pull("plain:latest", &SkopeoAuth::Anonymous),
            "plain http pull",
            &registry,
        );
    }

    #[test]
    fn token_registry_accepts_the_issuers_tokens_with_the_configured_access() {
        let issuer = TokenIssuer::start();
        let Some(registry) = Registry::token_auth(&issuer) else {
            return;
        };

        // The puller's token carries pull only, so distribution refuses the push.
        let (denied, _) = registry.try_push_test_image(
            "team/app",
            "v1",
            &SkopeoAuth::Basic {
                username: PULLER,
                password: PULLER_PASSWORD,
            },
        );
        let stderr = assert_failure(&denied, "push as puller");
        assert!(
            stderr.contains("requested access to the resource is denied"),
            "{stderr}"
        );

        let digests = registry.push_test_image("team/app", "v1", PUSHER, PUSHER_PASSWORD);
        let puller = SkopeoAuth::Basic {
            username: PULLER,
            password: PULLER_PASSWORD,
        };
        assert_success(
            &registry.skopeo_pull("team/app:v1", &puller),
            "pull as puller",
            &registry,
        );
        assert_success(
            &registry.skopeo_pull(&format!("team/app@{}", digests.manifest), &puller),
            "pull by digest as puller",
            &registry,
        );
        let stranger = SkopeoAuth::Basic {
            username: PULLER,
            password: "wrong",
        };
        assert_failure(
            &registry.skopeo_pull("team/app:v1", &stranger),
            "pull with a wrong password",
        );

        // skopeo did the token dance itself, through the GET protocol.
        let requests = issuer.requests();
        assert!(requests.iter().any(|request| request.username == PUSHER
            && request.service == SERVICE
            && request
                .scopes
                .iter()
                .any(|scope| scope.contains("team/app") && scope.contains("push"))));
        assert!(requests.iter().any(|request| request.status == 401));
        let issued = issuer.tokens_issued();
        assert!(
            issued >= 3,
            "{issued} tokens for a failed push, a push and two pulls"
        );

        // The token itself, as a client sees it: the puller asked for push and got pull.
        let client = issuer.ca().http_client();
        let url = format!(
            "{}?service={SERVICE}&scope=repository:team/app:pull,push&scope=repository:other:pull",
            issuer.realm()
        );
        let (status, body) = get_json(&client, &url, Some((PULLER, PULLER_PASSWORD)));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token"], body["access_token"]);
        assert_eq!(body["expires_in"], 300);
        assert!(
            body["issued_at"]
                .as_str()
                .is_some_and(|at| at.ends_with('Z')),
            "{body}"
        );
        let token = body["token"].as_str().expect("token");
        let header = TokenIssuer::header(token);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1));
        let claims = TokenIssuer::claims(token);
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], PULLER);
        assert_eq!(claims["aud"], SERVICE);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            300
        );
        assert_eq!(
            claims["access"],
            serde_json::json!([
                {"type": "repository", "name": "team/app", "actions": ["pull"]},
                {"type": "repository", "name": "other", "actions": ["pull"]},
            ])
        );
        assert_eq!(issuer.tokens_issued(), issued + 1);

        let (status, _) = get_json(&client, &url, Some((PULLER, "wrong")));
        assert_eq!(status, 401);
        assert_eq!(issuer.tokens_issued(), issued + 1, "refusals issue nothing");
    }

    #[test]
    fn token_issuer_speaks_oauth2_password_and_refresh_grants_over_plain_http() {
        let issuer = TokenIssuer::start_with(TokenIssuerOptions {
            users: vec![TokenUser::new("robot", "robot-secret", &["*"])],
            expires_in: 60,
            tls: false,
            ca: None,
        });
        assert!(issuer.url().starts_with("http://127.0.0.1:"));
        let client = reqwest::Client::new();
        let realm = issuer.realm();
        let scope = "repository:team/app:pull,push";

        let (status, body) = post_form(
            &client,
            &realm,
            &[
                ("grant_type", "password"),
                ("username", "robot"),
                ("password", "robot-secret"),
                ("service", SERVICE),
                ("scope", scope),
                ("client_id", "regkeeper"),
                ("access_type", "offline"),
            ],
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], 60);
        assert_eq!(body["scope"], scope);
        let refresh_token = body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned();
        let claims = TokenIssuer::claims(body["access_token"].as_str().expect("access token"));
        assert_eq!(
            claims["access"][0]["actions"],
            serde_json::json!(["pull", "push"])
        );

        issuer.set_expires_in(5);
        let (status, body) = post_form(
            &client,
            &realm,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("service", SERVICE),
                ("scope", "repository:team/app:pull"),
                ("client_id", "regkeeper"),
            ],
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], 5);
        assert!(
            body.get("refresh_token").is_none(),
            "only offline requests get one"
        );
        let claims = TokenIssuer::claims(body["access_token"].as_str().expect("access token"));
        assert_eq!(claims["sub"], "robot");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            5
        );

        let (status, _) = post_form(
            &client,
            &realm,
            &[("grant_type", "refresh_token"), ("refresh_token", "forged")],
        );
        assert_eq!(status, 401);
        let (status, _) = post_form(
            &client,
            &realm,
            &[
                ("grant_type", "password"),
                ("username", "robot"),
                ("password", "wrong"),
            ],
        );
        assert_eq!(status, 401);
        assert_eq!(issuer.tokens_issued(), 2);

        // Anonymous GETs get a token, but one granting nothing.
        let (status, body) = get_json(
            &client,
            &format!("{realm}?service={SERVICE}&scope={scope}"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let claims = TokenIssuer::claims(body["token"].as_str().expect("token"));
        assert_eq!(claims["access"][0]["actions"], serde_json::json!([]));

        issuer.set_unavailable(true);
        let (status, _) = get_json(&client, &format!("{realm}?service={SERVICE}"), None);
        assert_eq!(status, 503);
        assert_eq!(
            issuer.requests().last().map(|request| request.status),
            Some(503)
        );
    }

    #[test]
    fn s3_registry_redirects_blob_gets_to_the_blob_store_which_sees_no_credentials() {
        let Some(blob_store) = BlobStore::start() else {
            return;
        };
        let Some(registry) = Registry::htpasswd_with_storage(
            &[("robot", "robot-secret")],
            blob_store.registry_storage(),
        ) else {
            return;
        };
        let digests = registry.push_test_image("team/app", "v1", "robot", "robot-secret");
        // Distribution wrote the image into the bucket through the forwarder, signing
        // its own requests.
        let pushed = blob_store.requests();
        assert!(
            pushed.iter().any(
                |request| request.path() == blob_store.blob_path(&digests.layer)
                    && request
                        .authorization
                        .as_deref()
                        .is_some_and(|value| value.starts_with("AWS4-HMAC-SHA256 "))
            ),
            "{pushed:#?}"
        );
        blob_store.clear_requests();

        let blob_url = format!("{}/v2/team/app/blobs/{}", registry.url(), digests.layer);
        let not_following = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(registry.ca().ca_pem.as_bytes())
                    .expect("CA certificate"),
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        let (status, location) = block_on(async {
            let response = not_following
                .get(&blob_url)
                .basic_auth("robot", Some("robot-secret"))
                .send()
                .await
                .expect("GET blob");
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|value| value.to_str().expect("ASCII Location").to_owned());
            (response.status().as_u16(), location)
        });
        assert_eq!(status, 307, "{}", registry.log());
        let location = location.expect("a Location header");
        let redirect = url::Url::parse(&location).expect("absolute Location");
        assert_eq!(redirect.scheme(), "http");
        assert_eq!(
            format!(
                "{}:{}",
                redirect.host_str().unwrap_or_default(),
                redirect.port().unwrap_or_default()
            ),
            blob_store.host_port(),
            "the redirect leaves the registry ({}) for blob storage",
            registry.host_port()
        );
        assert_ne!(blob_store.host_port(), registry.host_port());
        assert_eq!(redirect.path(), blob_store.blob_path(&digests.layer));
        assert!(
            redirect
                .query_pairs()
                .any(|(name, _)| name == "X-Amz-Signature"),
            "{location}"
        );

        let (status, bytes) = block_on(async {
            let response = reqwest::get(&location).await.expect("GET presigned URL");
            let status = response.status().as_u16();
            (status, response.bytes().await.expect("blob bytes"))
        });
        assert_eq!(status, 200, "{}", blob_store.log());
        assert_eq!(
            format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
            ),
            digests.layer,
            "blob storage serves the pushed layer"
        );
        let gets = blob_store.presigned_gets();
        assert_eq!(gets.len(), 1, "{gets:#?}");
        assert_eq!(gets[0].path(), blob_store.blob_path(&digests.layer));
        assert_eq!(gets[0].status, 200);
        assert!(gets[0].has_header("host"), "{gets:#?}");
        assert_eq!(gets[0].authorization, None);
        blob_store.clear_requests();

        // A real client pulls through the redirects.
        let robot = SkopeoAuth::Basic {
            username: "robot",
            password: "robot-secret",
        };
        assert_success(
            &registry.skopeo_pull("team/app:v1", &robot),
            "pull through blob redirects",
            &registry,
        );
        let gets = blob_store.presigned_gets();
        for digest in [&digests.config, &digests.layer] {
            assert!(
                gets.iter()
                    .any(|request| request.path() == blob_store.blob_path(digest)
                        && request.status == 200),
                "skopeo fetched {digest} from blob storage: {gets:#?}"
            );
        }
        assert!(
            gets.iter().all(|request| request.authorization.is_none()),
            "no credentials reach blob storage: {gets:#?}"
        );
    }

    #[test]
    fn moto_answers_ecr_sts_and_secrets_manager() {
        let Some(moto) = Moto::start() else {
            return;
        };
        assert!(moto.endpoint_url().starts_with("http://127.0.0.1:"));
        let (status, _) = moto.get("/moto-api/");
        assert_eq!(status, 200);

        let (status, body) = moto.call_json_api(
            "ecr",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            &serde_json::json!({}),
        );
        assert_eq!(status, 200, "{body}");
        let data = &body["authorizationData"][0];
        assert!(
            data["authorizationToken"]
                .as_str()
                .is_some_and(|token| !token.is_empty()),
            "{body}"
        );
        assert!(
            data["proxyEndpoint"]
                .as_str()
                .is_some_and(|endpoint| endpoint.contains(".dkr.ecr.")),
            "{body}"
        );

        let (status, body) = moto.call_json_api(
            "secretsmanager",
            "secretsmanager.CreateSecret",
            &serde_json::json!({"Name": "registry/ecr", "SecretString": "{\"username\":\"u\"}"}),
        );
        assert_eq!(status, 200, "{body}");
        let secrets = || {
            let (_, listed) = moto.call_json_api(
                "secretsmanager",
                "secretsmanager.ListSecrets",
                &serde_json::json!({}),
            );
            let count = listed["SecretList"].as_array().map(Vec::len);
            (count, listed)
        };
        let (count, listed) = secrets();
        assert_eq!(count, Some(1), "{listed}");
        moto.reset();
        let (count, listed) = secrets();
        assert_eq!(count, Some(0), "reset forgets: {listed}");

        let (status, body) = moto.call_query_api(
            "sts",
            &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
        );
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("<Account>{}</Account>", super::moto::ACCOUNT_ID)),
            "{body}"
        );
        let (status, body) = moto.call_query_api(
            "sts",
            &[
                ("Action", "AssumeRole"),
                ("Version", "2011-06-15"),
                ("RoleArn", "arn:aws:iam::123456789012:role/puller"),
                ("RoleSessionName", "regkeeper"),
                ("ExternalId", "external"),
            ],
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<SessionToken>"), "{body}");
    }
}
