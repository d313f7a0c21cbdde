"""``nuvem-ledger bench``: measure every path on this machine (``services.bench``)."""

from __future__ import annotations

import argparse
import sys

from services.cli.base import Subparsers, json_flag
from shared.logging import configure_logging
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    bench = sub.add_parser(
        "bench", help="measure every path on this machine (see docs/performance.md)"
    )
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    bench.add_argument(
        "--ledger-replicas",
        type=int,
        default=2,
        help="ledger processes to run (they share the sales shards); default 2",
    )
    bench.set_defaults(handler=_bench)
    json_flag(bench)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from services.bench.run import run_bench

    configure_logging("WARNING", "console", sys.stderr)
    # The load generator gets the same event loop as the services it measures.
    return uvloop.run(
        run_bench(
            settings, quick=args.quick, as_json=args.json, ledger_replicas=args.ledger_replicas
        )
    )
