"""``nuvem-ledger run`` and ``migrate``: the services as processes, and the schema of all of them."""

from __future__ import annotations

import argparse

from services import system
from services.cli.base import Subparsers, command, emit
from shared.db import migrate
from shared.launch import run_services
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="run one service, or all three in one process")
    run.add_argument("service", choices=[*system.SERVICES, "all"])
    run.set_defaults(handler=_run)
    command(
        sub, "migrate", _migrate, help_text="create the database if missing and apply the schema"
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # The services' structured logs are this command's output: they go to stdout.
    factories = system.factories()
    names = list(system.SERVICES) if args.service == "all" else [args.service]
    return run_services({name: factories[name] for name in names}, settings)


async def _migrate(args: argparse.Namespace, settings: Settings) -> None:
    applied = await migrate(settings.database_url, system.migrations())
    emit(args, {"applied": applied}, lambda r: f"migrations applied: {r['applied']}")
