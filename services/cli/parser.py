"""The ``nuvem-ledger`` parser and entry point: each area module adds its commands and handlers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from services.cli import (
    bench,
    catalog,
    dead,
    demo,
    integration,
    orders,
    privacy,
    run,
    sales,
    settings,
    simulate,
)
from services.cli.base import Handler, Parser, Subparsers
from shared.launch import load_settings

# In the order ``--help`` lists them.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    run.register,
    integration.register,
    catalog.register,
    settings.register,
    orders.register,
    dead.register,
    sales.register,
    privacy.register,
    integration.register_backfill,
    demo.register,
    bench.register,
    simulate.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nuvem-ledger", description="Nuvemshop paid orders into the ERP, exactly once."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        # The simulator has its own options; argparse would try to read them here.
        return simulate.simulate(argv[1:])
    args = build_parser().parse_args(argv)
    loaded = load_settings()
    if loaded is None:
        return 2
    handler: Handler = args.handler
    return handler(args, loaded)
