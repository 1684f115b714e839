-- Minted registry tokens, sealed like secrets, shared by every replica. One row per
-- shared cloud identity; credentials point at theirs through token_identity.
CREATE TABLE registry_tokens (
    identity           TEXT PRIMARY KEY,
    username           TEXT NOT NULL,
    token_ciphertext   BYTEA NOT NULL,
    token_wrapped_key  BYTEA NOT NULL,
    token_key_version  BIGINT NOT NULL,
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT,
    refresh_at         BIGINT NOT NULL,
    status             TEXT NOT NULL,
    failures           BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT,
    next_attempt_at    BIGINT NOT NULL,
    lease_owner        TEXT,
    lease_until        BIGINT,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX registry_tokens_due ON registry_tokens (next_attempt_at);

ALTER TABLE credentials ADD COLUMN token_identity TEXT;
CREATE INDEX credentials_by_token_identity ON credentials (token_identity);
