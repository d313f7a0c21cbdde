-- What ingest saw of each order, for `orders trace`: webhooks received, fetches (by webhook, poll
-- or backfill) and skips with their reason. One row per (order, what, detail): a repeat only
-- counts and moves last_at, so a store polled every few minutes adds no rows. Rows are pruned
-- TRACE_RETENTION_DAYS after they were last touched, in small batches like the inbox; the
-- announcements themselves stay in ingest.orders.
CREATE TABLE ingest.order_trace (
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    what text NOT NULL,                       -- webhook | fetched | skipped
    detail text NOT NULL,                     -- the event, the way fetched, the skip reason
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    count integer NOT NULL DEFAULT 1,
    PRIMARY KEY (store_id, order_id, what, detail)
);
CREATE INDEX order_trace_last_at ON ingest.order_trace (last_at);
