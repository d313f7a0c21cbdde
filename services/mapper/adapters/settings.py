"""Store settings in PostgreSQL: ``mapper.store_settings`` upserted one setting at a time and read
back, each value checked by ``services/mapper/settings.py`` (which says why the mapper owns them)
before it is kept.
"""

from __future__ import annotations

from services.mapper import settings
from services.mapper.settings import StoreSettings
from shared.db import Executor

_UPSERT = """
    INSERT INTO mapper.store_settings (store_id, {column}) VALUES ($1, $2)
    ON CONFLICT (store_id) DO UPDATE SET {column} = excluded.{column}, updated_at = now()
"""


async def set_stock_check(db: Executor, store_id: int, *, on: bool) -> StoreSettings:
    await db.execute(_UPSERT.format(column="stock_check"), store_id, on)
    return await read(db, store_id)


async def set_product_match(db: Executor, store_id: int, match: str) -> StoreSettings:
    """``description`` (SPEC §3) or ``sku`` (§8.1); anything else is refused."""
    match = settings.checked_product_match(match)
    await db.execute(_UPSERT.format(column="product_match"), store_id, match)
    return await read(db, store_id)


async def set_timezone(db: Executor, store_id: int, name: str) -> StoreSettings:
    """The store's calendar (SPEC §8.5): an IANA zone name, checked before it is kept."""
    name = settings.checked_timezone(name)
    await db.execute(_UPSERT.format(column="timezone"), store_id, name)
    return await read(db, store_id)


async def read(db: Executor, store_id: int) -> StoreSettings:
    """The store's settings; a store never set follows the defaults."""
    row = await db.fetchrow(
        "SELECT stock_check, product_match, timezone FROM mapper.store_settings"
        " WHERE store_id = $1",
        store_id,
    )
    return settings.of_row(store_id, dict(row) if row is not None else None)
