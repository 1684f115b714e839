-- Scale-out (issue 17): what several replicas must share about the proxy's blob cache on
-- S3 and the console's sign-outs.

-- When the upstream last confirmed that a credential (at a secret version) may read a
-- digest in a repository. `grant_key` is the SHA-256 (hex) of those five values, so
-- the row holds no name of anything; `confirmed_at` in Unix milliseconds.
CREATE TABLE proxy_grants (
    grant_key    TEXT PRIMARY KEY,
    confirmed_at BIGINT NOT NULL
);
CREATE INDEX proxy_grants_by_time ON proxy_grants (confirmed_at);

-- The blobs stored in the shared cache (S3 objects PREFIX/blobs/ALGORITHM/XX/HEX), with
-- their size and last use, for the cap and least-recently-used eviction.
CREATE TABLE proxy_cache_blobs (
    digest       TEXT PRIMARY KEY,
    size         BIGINT NOT NULL,
    stored_at    BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL
);
CREATE INDEX proxy_cache_blobs_by_use ON proxy_cache_blobs (last_used_at);

-- Leases of jobs that one replica at a time does (the cache's eviction sweep).
CREATE TABLE job_leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);

-- Console sessions signed out before they expired: the session id (hex of the random
-- id sealed inside the cookie, useless without the master key) until `expires_at`.
CREATE TABLE console_sign_outs (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sign_outs_by_expiry ON console_sign_outs (expires_at);

-- Every replica hears of a sign-out at once (payload `sign_outs:console_sign_outs/ID`),
-- as migration 0006 announces changes to the cached tables.
CREATE TRIGGER console_sign_outs_announce AFTER INSERT ON console_sign_outs
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('sign_outs');
