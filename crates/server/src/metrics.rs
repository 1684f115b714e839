//! Prometheus metrics, kept in one registry that is passed around (no globals) and
//! rendered in the text exposition format at `/metrics`.
//!
//! Labels are route templates and fixed words, never raw paths, so no token or secret
//! ends up in a label; the one exception to "fixed words" is the freshness series
//! (`freshness`), labelled with workspace and credential names (validated names, never
//! secrets) and bounded by `REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT`.
//! `regkeeper_token_refreshes_total` counts every provider call for a shared token, on
//! demand or by the refresher, but not verification's logins, in this process only.

use std::sync::atomic::AtomicI64;

pub mod freshness;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub auth_failures: Counter,
    pub master_key_available: Gauge<i64, AtomicI64>,
    /// 1 while the master key file no longer holds the keys this process loaded.
    pub master_key_file_mismatch: Gauge<i64, AtomicI64>,
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    pub tokens: Family<StatusLabels, Gauge<i64, AtomicI64>>,
    pub sync_pushes: Family<SyncPushLabels, Counter>,
    pub sync_targets: Family<StatusLabels, Gauge<i64, AtomicI64>>,
    pub proxy_requests: Family<ProxyLabels, Counter>,
    pub proxy_bytes: Family<SourceLabels, Counter>,
    pub proxy_upstream_retries: Counter,
    pub proxy_digest_mismatches: Counter,
    /// OIDC token exchanges by outcome: `issued`, `reused`, `rejected`, `failed`.
    pub oidc_exchanges: Family<OutcomeLabels, Counter>,
    pub connections_ended: Family<ConnectionLabels, Counter>,
    /// The freshness series, rebuilt from the database at every scrape.
    pub freshness: freshness::Families,
    /// Held from the freshness update to the rendering, so two scrapes at once do
    /// not clear each other's series half-way.
    pub scrape: tokio::sync::Mutex<()>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `api` or `proxy`.
    pub listener: String,
    /// `refused_per_address`, `refused_full`, `evicted` or `header_timeout`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    /// `manifest`, `blob` or `tags`.
    pub kind: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `upstream` or `cache`.
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncPushLabels {
    /// `file`, `kubernetes` or `webhook`.
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("regkeeper");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests",
            http_duration.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "Requests refused for a missing, invalid, expired or revoked API token",
            auth_failures.clone(),
        );
        let master_key_available = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "master_key_available",
            "1 when the master key is loaded and matches the database, else 0",
            master_key_available.clone(),
        );
        let master_key_file_mismatch = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "master_key_file_mismatch",
            "1 while the master key file differs from the keys this server loaded (replaced, removed or unreadable), else 0",
            master_key_file_mismatch.clone(),
        );
        let token_refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "token_refreshes",
            "Registry token mints and refreshes, by outcome",
            token_refreshes.clone(),
        );
        let tokens = Family::<StatusLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "tokens",
            "Minted registry tokens by status (fresh, stale, expired; pending: none minted yet), as of the scrape",
            tokens.clone(),
        );
        let sync_pushes = Family::<SyncPushLabels, Counter>::default();
        registry.register(
            "sync_pushes",
            "Pushes to sync targets, by target type and outcome",
            sync_pushes.clone(),
        );
        let sync_targets = Family::<StatusLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "sync_targets",
            "Sync targets by status (pending, ok, failing), as of the scrape",
            sync_targets.clone(),
        );
        let proxy_requests = Family::<ProxyLabels, Counter>::default();
        registry.register(
            "proxy_requests",
            "Pull-through proxy requests answered, by kind, method and status",
            proxy_requests.clone(),
        );
        let proxy_bytes = Family::<SourceLabels, Counter>::default();
        registry.register(
            "proxy_blob_bytes",
            "Verified blob bytes the proxy served, by source (upstream or cache)",
            proxy_bytes.clone(),
        );
        let proxy_upstream_retries = Counter::default();
        registry.register(
            "proxy_upstream_retries",
            "Upstream requests retried after the registry refused a login",
            proxy_upstream_retries.clone(),
        );
        let proxy_digest_mismatches = Counter::default();
        registry.register(
            "proxy_digest_mismatches",
            "Upstream or cached bodies cut off because they did not match their digest",
            proxy_digest_mismatches.clone(),
        );
        let connections_ended = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "connections_ended",
            "Client connections refused or closed by a connection bound, by listener and reason",
            connections_ended.clone(),
        );
        let oidc_exchanges = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "oidc_exchanges",
            "OIDC token exchanges, by outcome (issued, reused, rejected, failed)",
            oidc_exchanges.clone(),
        );
        let freshness = freshness::Families::register(&mut registry);
        Self {
            freshness,
            scrape: tokio::sync::Mutex::new(()),
            connections_ended,
            oidc_exchanges,
            proxy_requests,
            proxy_bytes,
            proxy_upstream_retries,
            proxy_digest_mismatches,
            sync_pushes,
            sync_targets,
            tokens,
            token_refreshes,
            registry,
            http_requests,
            http_duration,
            auth_failures,
            master_key_available,
            master_key_file_mismatch,
        }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
