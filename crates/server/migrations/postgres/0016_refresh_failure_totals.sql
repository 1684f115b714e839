-- Freshness metrics (issue 16): how many mints and refreshes of a token have failed
-- since its row was created. `failures` counts only the failures in a row and goes
-- back to 0 on success; this only grows, so `/metrics` can serve it as a counter
-- from whichever replica is scraped.
ALTER TABLE registry_tokens ADD COLUMN refresh_failures_total BIGINT NOT NULL DEFAULT 0;
