-- When each store is next due for a poll. Connecting or enabling a store sets it to now(), so the
-- poller (in whichever ingest replica) catches up at once instead of waiting a whole interval.
ALTER TABLE ingest.stores ADD COLUMN next_poll_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX stores_due ON ingest.stores (next_poll_at) WHERE enabled;
