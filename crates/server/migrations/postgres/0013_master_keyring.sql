-- Where the master keyring lives (issue 15). No row: in the key file the server is
-- configured with (every deployment before this). A row: home 'kms' (the keyring,
-- wrapped by the AWS KMS key kms_key_id, is wrapped_keyring) or 'file' (the key file
-- file_path, after a migration). The server follows this row whatever its settings say.
-- deployment_id is the KMS encryption context; generation grows with every write, so
-- replicas see a rotation by reading one row.
CREATE TABLE master_keyring (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    deployment_id   TEXT NOT NULL,
    home            TEXT NOT NULL CHECK (home IN ('file', 'kms')),
    kms_key_id      TEXT,
    file_path       TEXT,
    wrapped_keyring BYTEA,
    current_version BIGINT NOT NULL,
    generation      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- A move of the keyring between homes under way ('staged': the new home holds the
-- keyring with new_version and is verified, the row above still names the old one;
-- 'switched': the row above names the new home, data keys are being re-wrapped under
-- new_version). Deleted when done. staged_keyring: the wrapped keyring, for 'kms'.
CREATE TABLE master_key_migrations (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    home           TEXT NOT NULL CHECK (home IN ('file', 'kms')),
    kms_key_id     TEXT,
    file_path      TEXT,
    from_version   BIGINT NOT NULL,
    new_version    BIGINT NOT NULL,
    stage          TEXT NOT NULL CHECK (stage IN ('staged', 'switched')),
    staged_keyring BYTEA,
    started_at     BIGINT NOT NULL
);
