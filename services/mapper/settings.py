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

Here, without I/O: the settings of a store (``StoreSettings``, ``of_row``) and the checks a
value passes before it is kept (``checked_product_match``, ``checked_timezone``: an
``OperatorError`` otherwise); ``adapters/settings.py`` reads and writes ``mapper.store_settings``
through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.mapper import rules
from shared.operations import OperatorError


@dataclass(frozen=True)
class StoreSettings:
    store_id: int
    stock_check: bool
    product_match: str = rules.BY_DESCRIPTION
    timezone: str | None = None  # None: the installation's default (SALE_TIMEZONE)


def checked_product_match(match: str) -> str:
    """``description`` (SPEC §3) or ``sku`` (§8.1); anything else is refused."""
    if match not in rules.PRODUCT_MATCHES:
        raise OperatorError(f"product-match must be one of {', '.join(rules.PRODUCT_MATCHES)}")
    return match


def checked_timezone(name: str) -> str:
    """The store's calendar (SPEC §8.5): an IANA zone name, checked before it is kept."""
    try:
        rules.parse_timezone(name)
    except rules.UnknownTimezoneError as exc:
        raise OperatorError(f"timezone: {exc}") from exc
    return name


def of_row(store_id: int, row: Mapping[str, Any] | None) -> StoreSettings:
    """The store's settings from its row; a store never set follows the defaults."""
    if row is None:
        return StoreSettings(store_id, stock_check=False)
    return StoreSettings(store_id, row["stock_check"], row["product_match"], row["timezone"])
