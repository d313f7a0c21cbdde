"""``nuvem-ledger settings set|show``: store settings, which the mapper owns (``services/mapper/settings.py``)."""

from __future__ import annotations

import argparse
from typing import Any

from services.cli.base import Subparsers, command, database, emit, group
from services.mapper import ops as mapper
from services.mapper import rules
from shared.settings import Settings

NAMES = ["stock-check", "product-match", "timezone"]
CHOICES = {"stock-check": ("on", "off"), "product-match": rules.PRODUCT_MATCHES}


class _Value(argparse.Action):
    """The setting's value, checked against its name: a bad one is bad usage (exit 2)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,  # noqa: ARG002 - argparse's signature
    ) -> None:
        name, value = namespace.name, str(values)
        if name == "timezone":
            try:
                rules.parse_timezone(value)
            except rules.UnknownTimezoneError as exc:
                parser.error(f"timezone: {exc}")
        elif value not in CHOICES[name]:
            parser.error(f"{name} must be one of: {', '.join(CHOICES[name])} (got {value!r})")
        setattr(namespace, self.dest, value)


def register(sub: Subparsers) -> None:
    settings = group(sub, "settings", "store settings")
    setter = command(settings, "set", _set)
    setter.add_argument("--store-id", type=int, required=True)
    setter.add_argument("name", choices=NAMES)
    setter.add_argument("value", action=_Value, help="on|off, description|sku, or an IANA zone")
    show = command(settings, "show", _show)
    show.add_argument("--store-id", type=int, required=True)


def _text(r: dict[str, Any]) -> str:
    zone = r["timezone"] + (" (default)" if r["timezone_is_default"] else "")
    return (
        f"store {r['store_id']}: stock-check {'on' if r['stock_check'] else 'off'}, "
        f"product-match {r['product_match']}, timezone {zone}"
    )


async def _set(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        row = await mapper.set_setting(
            pool, args.store_id, args.name, args.value, default_timezone=settings.sale_timezone
        )
    emit(args, row, _text)


async def _show(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        row = await mapper.show_settings(
            pool, args.store_id, default_timezone=settings.sale_timezone
        )
    emit(args, row, _text)
