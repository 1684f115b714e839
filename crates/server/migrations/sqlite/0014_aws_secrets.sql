-- Sync targets of type `aws_secret` (an AWS Secrets Manager secret in the format ECS
-- reads). Its settings are JSON like every other type's; only the CHECK on `kind`
-- must admit it. SQLite cannot alter a CHECK, so the table is rebuilt as SQLite's
-- documented procedure does (new table, copy, drop, rename), with the same columns
-- and indexes. Nothing references sync_targets, so no foreign key is disturbed.
-- (Credentials read from Secrets Manager need no schema change: their source is in
-- the JSON `settings` column, and they store no secret.)
CREATE TABLE sync_targets_0014 (
    id                        TEXT PRIMARY KEY,
    credential_id             TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    kind                      TEXT NOT NULL CHECK (kind IN ('file', 'kubernetes', 'webhook', 'aws_secret')),
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
INSERT INTO sync_targets_0014 (
    id, credential_id, kind, settings, secret_ciphertext, secret_wrapped_key,
    secret_key_version, status, failures, last_error, next_attempt_at, last_attempt_at,
    last_synced_at, delivered_revision, delivered_token_issued_at, delivered_key,
    lease_owner, lease_until, created_at, created_by)
SELECT
    id, credential_id, kind, settings, secret_ciphertext, secret_wrapped_key,
    secret_key_version, status, failures, last_error, next_attempt_at, last_attempt_at,
    last_synced_at, delivered_revision, delivered_token_issued_at, delivered_key,
    lease_owner, lease_until, created_at, created_by
FROM sync_targets;
DROP TABLE sync_targets;
ALTER TABLE sync_targets_0014 RENAME TO sync_targets;
CREATE INDEX sync_targets_by_credential ON sync_targets (credential_id);
CREATE INDEX sync_targets_due ON sync_targets (next_attempt_at);
