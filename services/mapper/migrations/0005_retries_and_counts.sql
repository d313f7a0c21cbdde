-- When an operator last retried a rejected order, and how often (`orders retry`, the ops API):
-- the order's timeline (`orders trace`) shows the retry between the rejection and what followed.
ALTER TABLE mapper.rejections
    ADD COLUMN retried_at timestamptz,
    ADD COLUMN retries integer NOT NULL DEFAULT 0;

-- What became of each store's orders, for ingest's view of a store (`integration show`, the ops
-- API's /ops/integrations): the orders that became sales, and those rejected and not resolved.
CREATE VIEW mapper.store_import_counts AS
SELECT store_id, sum(imported)::bigint AS imported, sum(rejected)::bigint AS rejected
FROM (
    SELECT store_id, count(*) AS imported, 0 AS rejected FROM mapper.sales GROUP BY store_id
    UNION ALL
    SELECT store_id, 0, count(*) FROM mapper.rejections WHERE resolved_at IS NULL GROUP BY store_id
) AS counted
GROUP BY store_id;

-- Every rejection and every operator's retry of an order, in order, for `orders trace` (the row of
-- mapper.rejections keeps only the last of each). Rejections are noted just after the batch that
-- made them, retries in the retry's own statement; both are bounded by operators' retries.
CREATE TABLE mapper.rejection_history (
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    what text NOT NULL,                       -- rejected | retried
    detail text NOT NULL
);
CREATE INDEX rejection_history_order ON mapper.rejection_history (store_id, order_id, at);
