//! Starting the server: configuration, logging, store, keyring, bootstrap, listener,
//! and graceful shutdown on SIGINT/SIGTERM.
//!
//! In order: the data directory (created 0700), [`build_app`] (store opened and
//! migrated, keyring loaded, outbound client — start fails if its CA file is unusable
//! —, providers, caches), the change watcher on PostgreSQL, the API listener bound,
//! the first admin bootstrapped (a generated token printed once on stdout, next to the
//! `export REGKEEPER_URL=` line that matches the bound address), the proxy's listener
//! if configured (its `regkeeper proxy listening on` line first), then the API's lines
//! and the background tasks: the key reload every 10 s (sooner while sealed by KMS),
//! the token refresher and the sync pusher every 5 s (each with an owner id
//! `replica-<random UUID>` for its leases; a slow cycle delays the next tick rather
//! than overlapping it), and pruning expired exchanged tokens every minute. Both
//! listeners are served by `connections::serve`, never `axum::serve`. [`init_logging`]
//! runs before the runtime starts and hands back the trace exporter (`telemetry`),
//! which `cli` shuts down, flushing its last spans, after the runtime has stopped. Under
//! systemd (`Type=notify`) the manager hears `READY=1` right after the listening line
//! and `STOPPING=1` on the shutdown signal (`crate::systemd`).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConnectionLimits, Database, LogFormat};
use crate::http::{router, ApiState, AuthLimiter};
use crate::login_cache::LoginCache;
use crate::metrics::Metrics;
use crate::outbound::OutboundClient;
use crate::providers::acr::AcrProvider;
use crate::providers::ecr::EcrProvider;
use crate::providers::gcr::GcrProvider;
use crate::providers::Providers;
use crate::service::lease_worker;
use crate::service::registry_tokens::Refresher;
use crate::service::sync_targets::Pusher;
use crate::service::{identity, keys, App};

/// Installs the log output (stderr, `REGKEEPER_LOG`'s filter) and, when the `OTEL_*`
/// variables ask for it, the trace exporter (`telemetry`), which the caller shuts down
/// after the server stops so the last spans are sent.
pub fn init_logging(format: LogFormat) -> anyhow::Result<crate::telemetry::Telemetry> {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = match std::env::var("REGKEEPER_LOG") {
        Ok(directives) if !directives.is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&directives)
                .map_err(|error| anyhow::anyhow!("REGKEEPER_LOG: {error}"))?
        }
        _ => tracing_subscriber::EnvFilter::new("info"),
    };
    // Client libraries log request and response bodies at debug and trace, and an
    // ECR or registry token is such a body: they stay at info whatever is asked for.
    let filter = [
        "aws_smithy_runtime=info",
        "aws_smithy_runtime_api=info",
        "aws_sdk_ecr=info",
        "aws_sdk_sts=info",
        "aws_sdk_ecrpublic=info",
        // GenerateDataKey and Decrypt answers hold a plaintext data key.
        "aws_sdk_kms=info",
        "aws_config=info",
        "hyper=info",
        "hyper_util=info",
        "reqwest=info",
        "h2=info",
        "rustls=info",
        "sqlx=warn",
        // kube-client logs an unparsable response body (a Secret) at warn.
        "kube_client=error",
    ]
    .into_iter()
    .fold(filter, |filter, directive| {
        filter.add_directive(directive.parse().expect("static directive"))
    });
    let telemetry =
        crate::telemetry::Telemetry::from_environment(&|name| std::env::var(name).ok())?;
    // The log shows events only, as before traces: spans are for the trace exporter,
    // so a log line has the same shape with traces on or off.
    let events = tracing_subscriber::filter::filter_fn(|metadata| metadata.is_event());
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Json => output.json().boxed(),
        LogFormat::Text => output.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter.and(events)))
        .with(telemetry.layer())
        .try_init();
    Ok(telemetry)
}

/// The data directory holds the database and the master key: only its owner may
/// enter it.
fn prepare_data_dir(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| {
                format!(
                    "creating data directory {} (REGKEEPER_DATA_DIR)",
                    path.display()
                )
            })?;
    } else if std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.permissions().mode() & 0o077 != 0)
    {
        tracing::warn!(path = %path.display(), "data_dir.permissions_too_open");
    }
    Ok(())
}

/// The refresher's ceiling per cloud provider and replica: half the AWS
/// GetAuthorizationToken quota (20 per second per account and region), so two
/// replicas refreshing the same account at full speed still stay within it.
const PROVIDER_CALLS_PER_SECOND: f64 = 10.0;
const PROVIDER_CALL_BURST: f64 = 50.0;

/// Builds the application on `config`: opens and migrates the store, loads the keyring
/// and creates the first user if the database is empty.
pub async fn build_app(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<App>> {
    prepare_data_dir(&config.data_dir)?;
    let store = match &config.database {
        Database::Sqlite(path) => crate::store::connect(&format!("sqlite://{}", path.display()))
            .await
            .with_context(|| format!("opening SQLite database {}", path.display()))?,
        Database::Url(url) => crate::store::connect(url.expose_secret())
            .await
            .context("connecting to PostgreSQL (REGKEEPER_DATABASE_URL)")?,
    };
    let (keyring, key_home) = keys::load_keyring(store.as_ref(), &config, clock.now()).await;
    let metrics = Arc::new(Metrics::new());
    metrics
        .master_key_available
        .set(i64::from(keyring.status().is_ok()));
    let outbound =
        OutboundClient::new(&config.outbound).context("setting up the outbound HTTP client")?;
    let providers = Providers {
        ecr: EcrProvider::new(
            config.allow_ambient_aws_credentials,
            config.ambient_aws_accounts.clone(),
            config.aws_endpoint_url.clone(),
        ),
        acr: AcrProvider::new(
            config.azure_authority_url.clone(),
            outbound.clone(),
            config.outbound.http_registries.clone(),
        )
        .context("setting up the Azure AD client")?,
        gcr: GcrProvider::new(config.google_token_url.clone())
            .context("setting up the Google OAuth client")?,
    };
    let tokens = LoginCache::new(Arc::clone(&clock));
    let sync = crate::push::Pushers::new(config.sync.clone(), outbound.clone()).await?;
    let audit_writer = crate::service::audit_writer::AuditWriter::start(Arc::clone(&store));
    Ok(Arc::new(App {
        sync,
        provider_rate_limit: crate::login_cache::ProviderRateLimit::new(
            PROVIDER_CALLS_PER_SECOND,
            PROVIDER_CALL_BURST,
        ),
        outbound,
        providers,
        tokens,
        config: Arc::new(config),
        store,
        keyring,
        key_home,
        clock,
        metrics,
        rotation: tokio::sync::Mutex::new(()),
        seal_gate: tokio::sync::RwLock::new(()),
        caches: crate::service::caches::Caches::default(),
        audit_writer,
        oidc_keys: crate::service::oidc::KeyCache::default(),
        aws_secrets: crate::service::aws_secrets::SourceCache::default(),
        sign_outs: crate::service::sign_outs::SignOuts::default(),
    }))
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    tracing::info!(database = ?config.database, data_dir = %config.data_dir.display(), "server.starting");
    let app = build_app(config, Arc::new(SystemClock)).await?;
    let _change_watcher = watch_changes(&app).await;
    reload_sign_outs(&app).await;
    // Bound before the first admin is made, so its banner can say where to reach it.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} (REGKEEPER_LISTEN)"))?;
    let address = listener.local_addr()?;
    let url = client_url(address);
    if let Some((token, generated)) = identity::bootstrap(&app).await? {
        announce_bootstrap(&token, generated, &url);
    }
    let shutdown = shutdown_signal()?;
    let limits = connection_limits(&app.config);
    let proxy = match app.config.proxy_listen {
        Some(proxy_listen) => {
            Some(start_proxy(&app, proxy_listen, limits, shutdown.clone()).await?)
        }
        None => None,
    };
    tracing::info!(listen.address = %address, backend = app.store.backend(), "server.listening");
    // Before the line that says the server is up: whoever waits for that line may stop
    // reading after it.
    println!("Clients reach this server with: export REGKEEPER_URL={url}");
    println!("regkeeper listening on http://{address}");
    std::io::stdout().flush().ok();
    crate::systemd::notify_ready(&url);
    tokio::spawn(reload_keys_periodically(Arc::clone(&app)));
    // The refresher keeps tokens fresh for resolves; the pusher delivers to targets that
    // are behind (a re-minted token, an updated credential, a new target) or due a retry.
    tokio::spawn(lease_worker::run::<Refresher>(Arc::clone(&app)));
    tokio::spawn(lease_worker::run::<Pusher>(Arc::clone(&app)));
    let metrics = Arc::clone(&app.metrics);
    tokio::spawn(prune_exchanged_tokens_periodically(Arc::clone(&app)));
    let state = ApiState {
        app,
        limiter: Arc::new(AuthLimiter::default()),
    };
    crate::connections::serve(
        listener,
        None,
        router(state),
        crate::connections::Connections::new(limits, "api", Some(Arc::clone(&metrics))),
        |peer: SocketAddr| peer,
        shutdown,
    )
    .await;
    if let Some(proxy) = proxy {
        proxy.await.context("the proxy listener task")??;
    }
    tracing::info!("server.stopped");
    Ok(())
}

/// On PostgreSQL, clears this replica's caches whenever any replica commits a change to
/// what they hold (see `service::caches`); nothing on SQLite.
async fn watch_changes(app: &Arc<App>) -> Option<tokio::task::JoinHandle<()>> {
    let Database::Url(url) = &app.config.database else {
        return None;
    };
    // A weak reference, so the listener does not keep the application alive.
    let weak = Arc::downgrade(app);
    crate::store::watch_changes(
        url,
        Arc::new(move |change| {
            let Some(app) = weak.upgrade() else {
                return;
            };
            match change {
                crate::store::Change::SignOut(id) => app.sign_outs.heard(id),
                crate::store::Change::Everything => {
                    app.caches.forget(change);
                    // Sign-outs announced while nobody listened are in the database.
                    tokio::spawn(async move { reload_sign_outs(&app).await });
                }
                other => app.caches.forget(other),
            }
        }),
    )
    .await
}

async fn reload_sign_outs(app: &App) {
    match app.sign_outs.reload(app).await {
        Ok(count) => tracing::debug!(sign_outs = count, "console.sign_outs_loaded"),
        Err(error) => tracing::warn!(error.code = error.code(), "console.sign_outs_load_failed"),
    }
}

/// Binds the pull-through proxy's listener (HTTPS when a certificate is configured),
/// opens its blob cache, and serves it until shutdown. Says where it listens on stdout
/// before the API does, so whoever waits for the API's line has both.
async fn start_proxy(
    app: &Arc<App>,
    listen: SocketAddr,
    limits: ConnectionLimits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let proxy_config = &app.config.proxy;
    let cache = match &proxy_config.cache_dir {
        Some(directory) => {
            let cache =
                crate::proxy::blob_cache::BlobCache::open(directory, proxy_config.cache_max_bytes)
                    .with_context(|| {
                        format!(
                            "opening the proxy blob cache {} (REGKEEPER_PROXY_CACHE_DIR)",
                            directory.display()
                        )
                    })?;
            Some(Arc::new(cache))
        }
        None => None,
    };
    let shared = match &proxy_config.cache_s3 {
        Some(location) => {
            let shared = Arc::new(
                crate::proxy::shared_cache::SharedCache::connect(
                    location,
                    proxy_config.s3_endpoint_url.as_deref(),
                    Arc::clone(&app.store),
                    Arc::clone(&app.clock),
                    proxy_config.cache_max_bytes,
                )
                .await,
            );
            tokio::spawn(crate::proxy::shared_cache::run_sweeper(Arc::clone(&shared)));
            Some(shared)
        }
        None => None,
    };
    let tls = proxy_config
        .tls
        .as_ref()
        .map(|(cert, key)| crate::proxy::listener::acceptor(cert, key))
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} (REGKEEPER_PROXY_LISTEN)"))?;
    let address = listener.local_addr()?;
    let service = crate::proxy::router(crate::proxy::ProxyState::new(
        Arc::clone(app),
        cache,
        shared,
    ));
    let metrics = Arc::clone(&app.metrics);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        listen.address = %address,
        tls = tls.is_some(),
        cache = proxy_config.cache_dir.is_some(),
        cache.s3_bucket = proxy_config.cache_s3.as_ref().map(|location| location.bucket.as_str()),
        "proxy.listening"
    );
    println!("regkeeper proxy listening on {scheme}://{address}");
    Ok(tokio::spawn(async move {
        crate::connections::serve(
            listener,
            tls,
            service,
            crate::connections::Connections::new(limits, "proxy", Some(metrics)),
            crate::proxy::listener::ClientAddress,
            shutdown,
        )
        .await;
        Ok(())
    }))
}

/// File descriptors kept for everything but client connections: the database pool,
/// outbound requests, the blob cache, log and key files.
const RESERVED_FILE_DESCRIPTORS: u64 = 512;

/// The configured connection limits, lowered if the process may not open that many
/// files: a listener that runs out of descriptors cannot accept even a health check.
/// Raises the soft open-file limit to the hard one first, as Go servers do.
fn connection_limits(config: &Config) -> ConnectionLimits {
    let mut limits = config.connections;
    let listeners = if config.proxy_listen.is_some() { 2 } else { 1 };
    let available = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(error = %error, "connections.file_limit_unknown");
            return limits;
        }
    };
    let room = available.saturating_sub(RESERVED_FILE_DESCRIPTORS) / listeners;
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(16);
    if limits.max_connections > room {
        tracing::warn!(
            configured = limits.max_connections,
            used = room,
            open_file_limit = available,
            "connections.limit_lowered_to_fit_open_file_limit"
        );
        limits.max_connections = room;
        limits.max_connections_per_address = limits
            .max_connections_per_address
            .map(|limit| limit.min(room));
    }
    limits
}

/// The URL a client on this machine uses for a server listening on `address`: the API
/// listener speaks plain http, and an unspecified address (`0.0.0.0`, `::`) is reached
/// on the loopback address of its family.
pub fn client_url(address: SocketAddr) -> String {
    let ip = match address.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}

/// The first admin's token is shown on stdout only, once, and only if the server made
/// it up; it never reaches the log. The URL goes with it, so the two lines can be
/// pasted as they are whatever `--listen` was.
fn announce_bootstrap(token: &secrecy::SecretString, generated: bool, url: &str) {
    if generated {
        println!(
            "Created user `admin` (workspace ~admin). Its API token is shown only now:\n\n    export REGKEEPER_URL={url}\n    export REGKEEPER_TOKEN={}\n",
            token.expose_secret()
        );
    } else {
        println!("Created user `admin` (workspace ~admin) with the token from REGKEEPER_BOOTSTRAP_TOKEN.");
    }
    tracing::info!(generated, "bootstrap.admin_created");
}

/// Picks up a master key version another replica rotated to (or a new home a
/// migration switched to), so this one both opens re-wrapped data and seals new data
/// under the newest key: every 10 s. While the keys are unavailable for a reason that
/// waiting may cure (KMS unreachable or refusing), sooner: after 1 s, doubling to 30 s,
/// so a server sealed at start unseals by itself soon after KMS answers.
async fn reload_keys_periodically(app: Arc<App>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
    const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);
    let mut retry = RETRY_FIRST;
    loop {
        let delay = if keys::retrying(&app) {
            let delay = retry;
            retry = (retry * 2).min(RETRY_MAX);
            delay
        } else {
            retry = RETRY_FIRST;
            EVERY
        };
        tokio::time::sleep(delay).await;
        keys::reload_if_changed(&app).await;
    }
}

/// Exchanges run on every CI job and pod start: the tokens they issued are deleted once
/// expired, a bounded batch a minute, so the table holds about one session's worth.
async fn prune_exchanged_tokens_periodically(app: Arc<App>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(60));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match app.store.prune_exchanged_tokens(app.now(), 10_000).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "oidc.tokens_pruned"),
            Err(error) => tracing::warn!(error.code = error.code(), "oidc.prune_failed"),
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now, so a signal that arrives as soon as the
/// server says it is listening already shuts it down gracefully, and returns a receiver
/// that turns true on either (one for each listener that must stop).
fn shutdown_signal() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (sender, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("server.shutting_down");
        crate::systemd::notify_stopping();
        let _ = sender.send(true);
    });
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 item 15: the banner's `REGKEEPER_URL` matches the listen address.
    #[test]
    fn the_client_url_follows_the_listen_address() {
        for (listen, url) in [
            ("127.0.0.1:7070", "http://127.0.0.1:7070"),
            ("127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("0.0.0.0:8080", "http://127.0.0.1:8080"),
            ("10.1.2.3:7070", "http://10.1.2.3:7070"),
            ("[::]:7070", "http://[::1]:7070"),
            ("[fd00::5]:7443", "http://[fd00::5]:7443"),
        ] {
            assert_eq!(client_url(listen.parse().unwrap()), url, "{listen}");
        }
    }
}
