-- Sync targets of type `aws_secret` (an AWS Secrets Manager secret in the format ECS
-- reads): its settings are JSON like every other type's; only the CHECK on `kind`
-- must admit it. (Credentials read from Secrets Manager need no schema change: their
-- source is in the JSON `settings` column, and they store no secret.)
ALTER TABLE sync_targets DROP CONSTRAINT sync_targets_kind_check;
ALTER TABLE sync_targets ADD CONSTRAINT sync_targets_kind_check
    CHECK (kind IN ('file', 'kubernetes', 'webhook', 'aws_secret'));
