-- Workload roles: non-human principals with an IAM-like policy, owned by a workspace.
-- API tokens belong to exactly one user or one role.
CREATE TABLE workload_roles (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    policy       TEXT NOT NULL,
    revision     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    UNIQUE (workspace_id, name)
);

-- SQLite cannot drop NOT NULL from a column, so api_tokens is rebuilt.
CREATE TABLE api_tokens_new (
    id             TEXT PRIMARY KEY,
    user_id        TEXT REFERENCES users (id) ON DELETE CASCADE,
    role_id        TEXT REFERENCES workload_roles (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    revoked_at     BIGINT,
    last_used_at   BIGINT,
    CHECK ((user_id IS NULL) <> (role_id IS NULL))
);
INSERT INTO api_tokens_new (id, user_id, role_id, name, token_hash, display_prefix,
                            created_at, expires_at, revoked_at, last_used_at)
    SELECT id, user_id, NULL, name, token_hash, display_prefix,
           created_at, expires_at, revoked_at, last_used_at
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
CREATE INDEX api_tokens_by_role ON api_tokens (role_id);
