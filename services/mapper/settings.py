"""Store settings: how a store's orders become sales. The mapper owns them.

Why the mapper: every setting is a rule of the import, which the mapper runs on every order:
the stock check (SPEC §4) today; product matching by SKU and the store's time zone, which
decides a sale's date (SPEC §8), next. Owning them, the mapper reads them on its hot path from
its own table. The ledger needs one of them, the stock check again at confirmation (SPEC §5),
and reads it through the view ``mapper.store_settings_view`` (mapper/0002), as the mapper reads
stock levels through the ledger's ``ledger.stock_on_hand``. Until 0002 the ledger's schema held
the table; its rows moved here.

A change publishes nothing: no service keeps a copy of a setting, each reads the current value
when it applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import Executor


@dataclass(frozen=True)
class StoreSettings:
    store_id: int
    stock_check: bool


async def set_stock_check(db: Executor, store_id: int, *, on: bool) -> StoreSettings:
    await db.execute(
        """
        INSERT INTO mapper.store_settings (store_id, stock_check) VALUES ($1, $2)
        ON CONFLICT (store_id) DO UPDATE SET stock_check = excluded.stock_check, updated_at = now()
        """,
        store_id,
        on,
    )
    return StoreSettings(store_id, on)
