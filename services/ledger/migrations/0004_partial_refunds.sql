-- SPEC §8.6: an imported order partly refunded is noted on its sale (nothing is reversed).
ALTER TABLE ledger.sales ADD COLUMN partially_refunded_at timestamptz;

-- Partial refunds that arrived before their sale (order.partially_refunded goes straight to the
-- ledger, the sale through the mapper): noted when the sale is announced.
CREATE TABLE ledger.early_partial_refunds (
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    noted_at timestamptz NOT NULL,
    PRIMARY KEY (store_id, order_id)
);
