"""Store settings: how a store's orders become sales. The mapper owns them.

Why the mapper: every setting is a rule of the import, which the mapper runs on every order:
the stock check (SPEC §4), product matching by SKU and the store's time zone, which decides
a sale's date (SPEC §8). Owning them, the mapper reads them on its hot path from
its own table. The ledger needs one of them, the stock check again at confirmation (SPEC §5),
and reads it through the view ``mapper.store_settings_view`` (mapper/0002), as the mapper reads
stock levels through the ledger's ``ledger.stock_on_hand``. Until 0002 the ledger's schema held
the table; its rows moved here.

A change publishes nothing: no service keeps a copy of a setting, each reads the current value
when it applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.mapper import rules
from shared.db import Executor
from shared.operations import OperatorError


@dataclass(frozen=True)
class StoreSettings:
    store_id: int
    stock_check: bool
    product_match: str = rules.BY_DESCRIPTION
    timezone: str | None = None  # None: the installation's default (SALE_TIMEZONE)


_UPSERT = """
    INSERT INTO mapper.store_settings (store_id, {column}) VALUES ($1, $2)
    ON CONFLICT (store_id) DO UPDATE SET {column} = excluded.{column}, updated_at = now()
"""


async def set_stock_check(db: Executor, store_id: int, *, on: bool) -> StoreSettings:
    await db.execute(_UPSERT.format(column="stock_check"), store_id, on)
    return await read(db, store_id)


async def set_product_match(db: Executor, store_id: int, match: str) -> StoreSettings:
    """``description`` (SPEC §3) or ``sku`` (§8.1); anything else is refused."""
    if match not in rules.PRODUCT_MATCHES:
        raise OperatorError(f"product-match must be one of {', '.join(rules.PRODUCT_MATCHES)}")
    await db.execute(_UPSERT.format(column="product_match"), store_id, match)
    return await read(db, store_id)


async def set_timezone(db: Executor, store_id: int, name: str) -> StoreSettings:
    """The store's calendar (SPEC §8.5): an IANA zone name, checked before it is kept."""
    try:
        rules.parse_timezone(name)
    except rules.UnknownTimezoneError as exc:
        raise OperatorError(f"timezone: {exc}") from exc
    await db.execute(_UPSERT.format(column="timezone"), store_id, name)
    return await read(db, store_id)


async def read(db: Executor, store_id: int) -> StoreSettings:
    """The store's settings; a store never set follows the defaults."""
    row = await db.fetchrow(
        "SELECT stock_check, product_match, timezone FROM mapper.store_settings"
        " WHERE store_id = $1",
        store_id,
    )
    if row is None:
        return StoreSettings(store_id, stock_check=False)
    return StoreSettings(store_id, row["stock_check"], row["product_match"], row["timezone"])
