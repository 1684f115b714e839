-- Resolve looks credentials up by workspace, host and the few path prefixes that could
-- cover an image's repository; this index answers that without scanning the host.
CREATE INDEX credentials_by_prefix ON credentials (workspace_id, registry_host, path_prefix);
