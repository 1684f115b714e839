-- Replicas cache tokens, workspaces, memberships and credentials for up to 5 s. Every
-- committed change to what those caches hold is announced on the channel
-- `regkeeper_invalidate` as `KIND:TABLE/ID` (KIND `identities` or `credentials`), so
-- each replica's listener clears the affected cache at once. NOTIFY inside the
-- writing transaction is delivered only if and when it commits, whichever process or
-- statement made the change.

CREATE FUNCTION regkeeper_notify_invalidate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_id TEXT;
BEGIN
    IF TG_TABLE_NAME = 'memberships' THEN
        IF TG_OP = 'DELETE' THEN
            row_id := OLD.workspace_id || '/' || OLD.user_id;
        ELSE
            row_id := NEW.workspace_id || '/' || NEW.user_id;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        row_id := OLD.id;
    ELSE
        row_id := NEW.id;
    END IF;
    PERFORM pg_notify('regkeeper_invalidate', TG_ARGV[0] || ':' || TG_TABLE_NAME || '/' || row_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_invalidate AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('identities');
CREATE TRIGGER workspaces_invalidate AFTER INSERT OR UPDATE OR DELETE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('identities');
CREATE TRIGGER memberships_invalidate AFTER INSERT OR UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('identities');
CREATE TRIGGER workload_roles_invalidate AFTER INSERT OR UPDATE OR DELETE ON workload_roles
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('identities');
-- Not on `last_used_at`, which every authenticated request may touch.
CREATE TRIGGER api_tokens_invalidate
    AFTER INSERT OR DELETE OR UPDATE OF user_id, role_id, name, token_hash, expires_at, revoked_at
    ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('identities');
CREATE TRIGGER credentials_invalidate AFTER INSERT OR UPDATE OR DELETE ON credentials
    FOR EACH ROW EXECUTE FUNCTION regkeeper_notify_invalidate('credentials');
