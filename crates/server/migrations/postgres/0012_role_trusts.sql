-- Identity federation (issue 13): a workload role trusts OIDC issuers, and an API token
-- issued by an exchange remembers the trust that let it in, so removing the trust ends
-- the sessions it granted (the row goes with it) and expired ones can be pruned.
CREATE TABLE role_trusts (
    id                  TEXT PRIMARY KEY,
    role_id             TEXT NOT NULL REFERENCES workload_roles (id) ON DELETE CASCADE,
    issuer              TEXT NOT NULL,
    audience            TEXT NOT NULL,
    subject             TEXT NOT NULL,
    -- JSON object: claim path (dotted) -> pattern.
    claims              TEXT NOT NULL,
    max_session_seconds BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    created_by          TEXT NOT NULL
);
CREATE INDEX role_trusts_by_role ON role_trusts (role_id);

ALTER TABLE api_tokens ADD COLUMN trust_id TEXT REFERENCES role_trusts (id) ON DELETE CASCADE;
CREATE INDEX api_tokens_by_trust ON api_tokens (trust_id, expires_at);

-- Trusts are read on every exchange; announce changes as migration 0006 does for roles.
CREATE TRIGGER role_trusts_invalidate AFTER INSERT OR UPDATE OR DELETE ON role_trusts
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('identities');
