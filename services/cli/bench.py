"""``nuvem-ledger bench``: measure every path on this machine (``services.bench``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    bench.add_argument(
        "--phases",
        default="",
        help="comma-separated phases to run, e.g. a,b,c,d',e (default: all; see docs/performance.md)",
    )
    bench.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="py-spy each service during (a), (b), (c), (d'); summaries and CPU per message in DIR",
    )
    bench.set_defaults(handler=_bench)
    json_flag(bench)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from services.bench.run import ALL_PHASES, run_bench

    only = frozenset(p.strip() for p in args.phases.split(",") if p.strip()) or ALL_PHASES
    if only - ALL_PHASES:
        sys.stderr.write(f"unknown phases: {sorted(only - ALL_PHASES)}\n")
        return 2

    configure_logging("WARNING", "console", sys.stderr)
    # The load generator gets the same event loop as the services it measures.
    return uvloop.run(
        run_bench(
            settings,
            quick=args.quick,
            as_json=args.json,
            ledger_replicas=args.ledger_replicas,
            only=only,
            profile=args.profile,
        )
    )
