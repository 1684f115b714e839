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

ALTER TABLE api_tokens ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE api_tokens ADD COLUMN role_id TEXT REFERENCES workload_roles (id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_one_owner CHECK ((user_id IS NULL) <> (role_id IS NULL));
CREATE INDEX api_tokens_by_role ON api_tokens (role_id);
