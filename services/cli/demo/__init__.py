"""``nuvem-ledger demo``: the whole system against the simulator, shown working (``flow``)."""

from __future__ import annotations

import argparse
import asyncio

from services.cli.base import Subparsers, json_flag
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    demo = sub.add_parser("demo", help="run the whole system against the simulator and show it")
    demo.add_argument("--orders", type=int, default=60, help="paid orders to send (default 60)")
    demo.add_argument("--stores", type=int, default=2, help="simulated stores (default 2)")
    demo.set_defaults(handler=_demo)
    json_flag(demo)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from services.cli.demo.flow import run_demo

    return asyncio.run(
        run_demo(settings, orders=args.orders, stores=args.stores, as_json=args.json)
    )
