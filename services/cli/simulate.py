"""``nuvem-ledger simulate ...``: the Nuvemshop simulator, with its own options."""

from __future__ import annotations

import argparse

from services.cli.base import Subparsers


def register(sub: Subparsers) -> None:
    # For the help text only: ``main`` hands what follows ``simulate`` to the simulator unparsed.
    sim = sub.add_parser("simulate", help="run the Nuvemshop simulator", add_help=False)
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)


def simulate(argv: list[str]) -> int:
    from services.simulator.__main__ import main

    return main(argv)
