"""``nuvem-ledger settings set``: store settings, which the mapper owns (``services/mapper/settings.py``)."""

from __future__ import annotations

import argparse

from services.cli.base import Subparsers, database, emit, group, json_flag, operator
from services.mapper import ops as mapper
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    settings = group(sub, "settings", "store settings")
    setter = settings.add_parser("set")
    setter.add_argument("--store-id", type=int, required=True)
    setter.add_argument("name", choices=["stock-check"])
    setter.add_argument("value", choices=["on", "off"])
    setter.set_defaults(handler=operator(_set))
    json_flag(setter)


async def _set(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        row = await mapper.set_stock_check(pool, args.store_id, on=args.value == "on")
    emit(
        args,
        row,
        lambda r: f"store {r['store_id']}: stock-check {'on' if r['stock_check'] else 'off'}",
    )
