-- Who created a workload role's API token (a user id), so disabling or deleting that
-- user revokes the role tokens they made in any workspace, as it revokes their own.
-- NULL for a user's own token (its owner is the user), for a token a role made, and
-- for every role token created before this migration: nobody recorded who made those,
-- so an administrator finds them with `regkeeper roles tokens list` in each workspace.
-- Revocation, the only change to these tokens that caches must hear of, already
-- notifies through `api_tokens_invalidate` (0006), so no new trigger is needed.
ALTER TABLE api_tokens ADD COLUMN created_by TEXT REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX api_tokens_by_creator ON api_tokens (created_by);
