-- Push targets: where a credential's current login is delivered after every refresh
-- (a docker config.json, Kubernetes Secrets, a signed webhook). Settings are not
-- secret; a webhook's signing key is sealed like a credential secret. delivered_*
-- record what was last pushed, so a target whose credential changed or whose token
-- was re-minted is seen to be behind; the lease lets one replica push it at a time.
CREATE TABLE sync_targets (
    id                        TEXT PRIMARY KEY,
    credential_id             TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    kind                      TEXT NOT NULL CHECK (kind IN ('file', 'kubernetes', 'webhook')),
    settings                  TEXT NOT NULL,
    secret_ciphertext         BLOB,
    secret_wrapped_key        BLOB,
    secret_key_version        BIGINT,
    status                    TEXT NOT NULL CHECK (status IN ('pending', 'ok', 'failing')),
    failures                  BIGINT NOT NULL DEFAULT 0,
    last_error                TEXT,
    next_attempt_at           BIGINT,
    last_attempt_at           BIGINT,
    last_synced_at            BIGINT,
    delivered_revision        BIGINT,
    delivered_token_issued_at BIGINT,
    delivered_key             TEXT,
    lease_owner               TEXT,
    lease_until               BIGINT,
    created_at                BIGINT NOT NULL,
    created_by                TEXT NOT NULL
);
CREATE INDEX sync_targets_by_credential ON sync_targets (credential_id);
CREATE INDEX sync_targets_due ON sync_targets (next_attempt_at);
