-- Who created a credential: `user` (the CLI, the API, the console) or `helper` (the
-- docker credential helper's `store`, i.e. a `docker login` / `podman login`). The
-- helper's `store` and `erase` only ever change or delete credentials it created, so a
-- login on a laptop never overwrites nor a logout deletes a credential a person curated.
-- Every existing credential was made by a person as far as anyone can tell: `user`.
ALTER TABLE credentials ADD COLUMN origin TEXT NOT NULL DEFAULT 'user'
    CHECK (origin IN ('user', 'helper'));
