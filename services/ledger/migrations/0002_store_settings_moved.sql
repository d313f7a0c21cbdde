-- Store settings moved to the mapper (mapper/0002), which applies them to every order; the ledger
-- reads the stock check through mapper.store_settings_view, and exposes stock levels to the
-- mapper through ledger.stock_on_hand (0001). The table is renamed, not dropped, so that its
-- rows reach the mapper whichever schema is migrated first; a later release drops it.
ALTER TABLE ledger.store_settings RENAME TO store_settings_retired;
