-- SPEC §8: the order facts a merchant expects in the ERP, and the store settings that decide them.
-- The billing address of a customer an order creates; a reused customer keeps the one it has.
ALTER TABLE mapper.customers ADD COLUMN address jsonb;

-- What the buyer paid the store with (information, not the sale's payment), the order's billing
-- address and where it is delivered; NULL when the order did not say.
ALTER TABLE mapper.sales
    ADD COLUMN store_payment jsonb,
    ADD COLUMN customer_address jsonb,
    ADD COLUMN shipping_address jsonb;

-- product-match: 'description' (SPEC §3) or 'sku' (§8.1); timezone: the store's calendar (§8.5),
-- NULL for the installation's default (SALE_TIMEZONE).
ALTER TABLE mapper.store_settings
    ADD COLUMN product_match text NOT NULL DEFAULT 'description'
        CHECK (product_match IN ('description', 'sku')),
    ADD COLUMN timezone text;

-- Matching by SKU reads products by (store, sku); several products may share a SKU (the oldest wins).
CREATE INDEX IF NOT EXISTS products_sku ON mapper.products (store_id, sku, created_at)
    WHERE sku IS NOT NULL;

-- Stores switched off (SPEC §4), as ingest announces them (integration.disabled / .enabled):
-- their orders still in flight are rejected with store_disabled instead of imported.
CREATE TABLE mapper.store_status (
    store_id bigint PRIMARY KEY,
    enabled boolean NOT NULL,
    reason text,
    changed_at timestamptz NOT NULL DEFAULT now()
);
