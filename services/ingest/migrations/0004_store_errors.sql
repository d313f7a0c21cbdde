-- Consumed message ids are forgotten after INBOX_RETENTION_DAYS, in small batches by age.
CREATE INDEX IF NOT EXISTS inbox_processed_at ON ingest.inbox (processed_at);

-- What went wrong the last time a store's API answered unexpectedly (403 missing scope, 5xx,
-- invalid JSON...): shown by `integration show`; the store backs off, the others go on.
ALTER TABLE ingest.stores
    ADD COLUMN last_error text,
    ADD COLUMN last_error_at timestamptz,
    ADD COLUMN error_count integer NOT NULL DEFAULT 0;
