//! Per-credential freshness in `/metrics` (issue 16): when each credential's minted
//! token expires, when it was last minted or refreshed successfully, how many of its
//! mints and refreshes failed, and when each sync target was last pushed.
//!
//! Every value is read from the database at the scrape (`Store::credential_freshness`,
//! `Store::sync_target_freshness`) and the families are rebuilt from it, so whichever
//! replica is scraped answers the same: the token rows and the sync targets are shared,
//! and the failure total is a column (migration 0016) that the lease holder increments
//! with its result. A series goes away with its credential, token row or target, so a
//! counter may restart from 0 when a token row is re-created (e.g. after its secret
//! changed), which Prometheus reads as a counter reset.
//!
//! Credentials with no minted token (stored passwords, or not resolved yet) have no
//! series. A credential whose token was never minted (`pending`) has a failure count
//! only. Tokens shared by several credentials (one cloud identity) show under each.
//!
//! Cardinality: at most `REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT` credentials (default
//! 1000), and apart as many sync targets, get series; failing ones first, then the
//! soonest to expire, then by name. The rest are left out and counted in
//! `regkeeper_freshness_series_omitted{kind="credential"|"sync_target"}`, so an
//! alert on that gauge says the limit is too low. Labels: `workspace`, `credential`,
//! and for targets `target` (its id) and `kind`; never a destination or a secret.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::domain::credential::Timestamp;
use crate::store::{CredentialFreshness, Limited, SyncTargetFreshness};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    pub workspace: String,
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncTargetLabels {
    pub workspace: String,
    pub credential: String,
    pub target: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `credential` or `sync_target`.
    pub kind: String,
}

type TimeGauge = Gauge<f64, AtomicU64>;

pub struct Families {
    pub token_expiry: Family<CredentialLabels, TimeGauge>,
    pub last_refresh_success: Family<CredentialLabels, TimeGauge>,
    pub refresh_failures: Family<CredentialLabels, Counter>,
    pub sync_target_last_success: Family<SyncTargetLabels, TimeGauge>,
    pub omitted: Family<KindLabels, Gauge<i64, AtomicI64>>,
}

impl Families {
    pub fn register(registry: &mut Registry) -> Self {
        let families = Self {
            token_expiry: Family::default(),
            last_refresh_success: Family::default(),
            refresh_failures: Family::default(),
            sync_target_last_success: Family::default(),
            omitted: Family::default(),
        };
        registry.register(
            "credential_token_expiry_timestamp_seconds",
            "When the credential's minted registry token expires (Unix time), as stored in the database",
            families.token_expiry.clone(),
        );
        registry.register(
            "credential_last_refresh_success_timestamp_seconds",
            "When the credential's registry token was last minted or refreshed successfully (Unix time)",
            families.last_refresh_success.clone(),
        );
        // Registered without the suffix: a counter's name gets `_total` when encoded.
        registry.register(
            "credential_refresh_failures",
            "Failed mints and refreshes of the credential's registry token, on every replica, since the token's row was created",
            families.refresh_failures.clone(),
        );
        registry.register(
            "sync_target_last_success_timestamp_seconds",
            "When the sync target was last pushed successfully (Unix time)",
            families.sync_target_last_success.clone(),
        );
        registry.register(
            "freshness_series_omitted",
            "Credentials or sync targets left out of the freshness series by REGKEEPER_METRICS_CREDENTIAL_SERIES_LIMIT",
            families.omitted.clone(),
        );
        families
    }

    /// Replaces every freshness series with the database's current rows.
    pub fn record(
        &self,
        credentials: &Limited<CredentialFreshness>,
        sync_targets: &Limited<SyncTargetFreshness>,
    ) {
        self.token_expiry.clear();
        self.last_refresh_success.clear();
        self.refresh_failures.clear();
        self.sync_target_last_success.clear();
        for row in &credentials.rows {
            let labels = CredentialLabels {
                workspace: row.workspace.clone(),
                credential: row.credential.clone(),
            };
            if let Some(expires_at) = row.expires_at {
                self.token_expiry
                    .get_or_create(&labels)
                    .set(seconds(expires_at));
            }
            if let Some(success) = row.last_success_at {
                self.last_refresh_success
                    .get_or_create(&labels)
                    .set(seconds(success));
            }
            self.refresh_failures
                .get_or_create(&labels)
                .inc_by(u64::try_from(row.refresh_failures_total).unwrap_or(0));
        }
        for row in &sync_targets.rows {
            if let Some(success) = row.last_success_at {
                self.sync_target_last_success
                    .get_or_create(&SyncTargetLabels {
                        workspace: row.workspace.clone(),
                        credential: row.credential.clone(),
                        target: row.target.clone(),
                        kind: row.kind.clone(),
                    })
                    .set(seconds(success));
            }
        }
        for (kind, limited) in [
            ("credential", omitted(credentials)),
            ("sync_target", omitted(sync_targets)),
        ] {
            self.omitted
                .get_or_create(&KindLabels {
                    kind: kind.to_owned(),
                })
                .set(limited);
        }
    }
}

fn omitted<T>(limited: &Limited<T>) -> i64 {
    (limited.total - i64::try_from(limited.rows.len()).unwrap_or(i64::MAX)).max(0)
}

/// A stored millisecond timestamp as Prometheus' Unix seconds (milliseconds since
/// 1970 fit an f64's mantissa exactly).
fn seconds(timestamp: Timestamp) -> f64 {
    timestamp as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::registry_token::RegistryTokenStatus;

    fn credential(name: &str, failures: i64) -> CredentialFreshness {
        CredentialFreshness {
            workspace: "acme/ci".into(),
            credential: name.into(),
            status: RegistryTokenStatus::Fresh,
            last_success_at: Some(1_700_000_000_500),
            expires_at: Some(1_700_043_200_000),
            refresh_failures_total: failures,
        }
    }

    /// A scrape shows exactly the rows it was given: a series whose row went away is
    /// gone, and what the limit left out is counted.
    #[test]
    fn each_scrape_replaces_the_series_and_counts_what_was_left_out() {
        let metrics = crate::metrics::Metrics::new();
        let none = Limited {
            rows: Vec::new(),
            total: 0,
        };
        metrics.freshness.record(
            &Limited {
                rows: vec![credential("gone", 0), credential("ecr", 3)],
                total: 2,
            },
            &none,
        );
        let pending = CredentialFreshness {
            status: RegistryTokenStatus::Pending,
            last_success_at: None,
            expires_at: None,
            ..credential("new", 1)
        };
        metrics.freshness.record(
            &Limited {
                rows: vec![credential("ecr", 4), pending],
                total: 5,
            },
            &Limited {
                rows: vec![SyncTargetFreshness {
                    workspace: "acme/ci".into(),
                    credential: "ecr".into(),
                    target: "7b5c".into(),
                    kind: "file".into(),
                    status: "ok".into(),
                    last_success_at: Some(1_700_000_001_000),
                }],
                total: 1,
            },
        );
        let text = metrics.render();
        for expected in [
            "regkeeper_credential_token_expiry_timestamp_seconds{workspace=\"acme/ci\",credential=\"ecr\"} 1700043200.0",
            "regkeeper_credential_last_refresh_success_timestamp_seconds{workspace=\"acme/ci\",credential=\"ecr\"} 1700000000.5",
            "regkeeper_credential_refresh_failures_total{workspace=\"acme/ci\",credential=\"ecr\"} 4",
            "regkeeper_credential_refresh_failures_total{workspace=\"acme/ci\",credential=\"new\"} 1",
            "regkeeper_sync_target_last_success_timestamp_seconds{workspace=\"acme/ci\",credential=\"ecr\",target=\"7b5c\",kind=\"file\"} 1700000001.0",
            "regkeeper_freshness_series_omitted{kind=\"credential\"} 3",
            "regkeeper_freshness_series_omitted{kind=\"sync_target\"} 0",
            "# TYPE regkeeper_credential_refresh_failures counter",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert!(!text.contains("\"gone\""), "{text}");
        assert!(
            !text.contains(
                "token_expiry_timestamp_seconds{workspace=\"acme/ci\",credential=\"new\"}"
            ),
            "a pending token has no expiry: {text}"
        );
    }
}
