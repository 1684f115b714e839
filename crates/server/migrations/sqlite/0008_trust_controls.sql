-- Issue 12: cross-workspace grants under the target workspace's control, credential
-- names unique without regard to case, and users that can be disabled.

-- A workload role reaches into another workspace only while that workspace records a
-- grant for it, made by one of its admins (or by the policy's writer while admin
-- there) who still is one. Deleting the role or the workspace deletes the grant; the
-- granting user is kept by id and name only, so a grant outlives its granter's
-- account as a visible, lapsed row rather than silently.
CREATE TABLE role_grants (
    id                 TEXT PRIMARY KEY,
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role_id            TEXT NOT NULL REFERENCES workload_roles (id) ON DELETE CASCADE,
    granted_by_user_id TEXT NOT NULL,
    granted_by         TEXT NOT NULL,
    granted_at         BIGINT NOT NULL,
    UNIQUE (workspace_id, role_id)
);
CREATE INDEX role_grants_by_role ON role_grants (role_id);

-- Existing cross-workspace policies keep working only where the role's creator
-- still administers the workspace its policy names; every other reach stops until an
-- admin there grants it (`regkeeper roles grants add`). Only an Allow statement's
-- resource naming the workspace exactly counts (a Deny reaches nothing, and wildcard
-- workspace patterns are never granted here).
INSERT INTO role_grants (id, workspace_id, role_id, granted_by_user_id, granted_by, granted_at)
    SELECT lower(hex(randomblob(16))), w.id, r.id, u.id, u.name, r.updated_at
    FROM workload_roles r
    JOIN workspaces w ON w.id <> r.workspace_id
        AND EXISTS (
            SELECT 1
            FROM json_each(CASE WHEN json_valid(r.policy) THEN r.policy ELSE '{}' END,
                           '$.statements') statement,
                 json_each(statement.value, '$.resources') resource
            WHERE json_extract(statement.value, '$.effect') = 'Allow'
                AND substr(json_extract(resource.value, '$.pattern'), 1,
                           length('rk:' || w.name || ':credential/'))
                    = 'rk:' || w.name || ':credential/'
        )
    JOIN users u ON u.name = r.created_by
    JOIN memberships m ON m.workspace_id = w.id AND m.user_id = u.id
        AND m.role IN ('owner', 'admin');

-- Credential names are unique in a workspace without regard to case. Names that
-- already differ only by case are all kept: the oldest holds the folded name, the
-- others keep NULL (which a UNIQUE index does not compare), stay reachable by their
-- exact spelling, and can only be renamed to a name no other credential folds to.
ALTER TABLE credentials ADD COLUMN name_folded TEXT;
UPDATE credentials SET name_folded = lower(name)
    WHERE NOT EXISTS (
        SELECT 1 FROM credentials older
        WHERE older.workspace_id = credentials.workspace_id
          AND lower(older.name) = lower(credentials.name)
          AND (older.created_at < credentials.created_at
               OR (older.created_at = credentials.created_at AND older.id < credentials.id)));
CREATE UNIQUE INDEX credentials_by_folded_name ON credentials (workspace_id, name_folded);

-- A disabled user's tokens were revoked when it was disabled; the time also refuses
-- any token of theirs that a concurrent request created.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
