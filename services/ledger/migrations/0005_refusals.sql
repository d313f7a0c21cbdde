-- The ERP messages the ledger refused about a known sale (sale.confirmation_refused), for
-- `orders trace`: one row per (order, reason); a repeat counts and keeps the last detail and time.
-- Refusals of unknown sales name no order and are not kept (the ERP got its answer).
CREATE TABLE ledger.refusals (
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    first_at timestamptz NOT NULL DEFAULT now(),
    last_at timestamptz NOT NULL DEFAULT now(),
    count integer NOT NULL DEFAULT 1,
    PRIMARY KEY (store_id, order_id, reason)
);
