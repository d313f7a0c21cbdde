-- Store settings belong to the mapper: they say how a store's orders become sales (the stock
-- check of SPEC §4 today; product matching and the store's time zone of SPEC §8 next), and the
-- mapper applies them to every order. Why: services/mapper/settings.py.
CREATE TABLE mapper.store_settings (
    store_id bigint PRIMARY KEY,
    stock_check boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The ledger's schema held them until now: its rows come along, whichever of the two schemas is
-- migrated first (ledger/0002 renames its table to store_settings_retired, keeping the rows).
DO $$
DECLARE
    source regclass := coalesce(
        to_regclass('ledger.store_settings_retired'), to_regclass('ledger.store_settings'));
BEGIN
    IF source IS NOT NULL THEN
        EXECUTE format(
            'INSERT INTO mapper.store_settings (store_id, stock_check, updated_at)'
            ' SELECT store_id, stock_check, updated_at FROM %s'
            ' ON CONFLICT (store_id) DO NOTHING', source);
    END IF;
END
$$;

-- What other services read of the settings: the ledger, the stock check at confirmation.
CREATE VIEW mapper.store_settings_view AS
SELECT store_id, stock_check FROM mapper.store_settings;
