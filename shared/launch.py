"""A process that runs services: ``nuvem-ledger run`` and ``python -m services.<name>``.

Reads the configuration (one line and exit code 2 when it is wrong), lets each service refuse a
configuration it cannot start with (``check_settings`` on its class: one line, exit code 1)
before waiting for anything, and runs the services until SIGTERM (``shared.runtime``). Knows no
service: the caller hands it the factories, so ``python -m services.ingest`` loads ingest only.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping

from pydantic import ValidationError

from shared.logging import configure_logging
from shared.runtime import ServiceFactory, run_until_signalled
from shared.settings import Settings


def load_settings() -> Settings | None:
    """The settings from the environment, or None after one line on stderr saying what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        sys.stderr.write(f"nuvem-ledger: error: bad configuration: {problems}\n")
        return None


def run_services(factories: Mapping[str, ServiceFactory], settings: Settings) -> int:
    """Run the given services in this process until SIGTERM/SIGINT; the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    for factory in factories.values():
        check = getattr(factory, "check_settings", None)
        if check is None:
            continue
        try:
            check(settings)
        except (ValueError, RuntimeError) as exc:
            sys.stderr.write(f"nuvem-ledger: error: {exc}\n")
            return 1
    running = run_until_signalled(list(factories), dict(factories), settings)
    if settings.event_loop == "uvloop":
        # Measured with `nuvem-ledger bench` (docs/performance.md): the services spend much of
        # their time in the event loop and in socket writes, which uvloop does in C.
        import uvloop

        return uvloop.run(running)
    return asyncio.run(running)


def service_main(name: str, factory: ServiceFactory) -> int:
    """``python -m services.<name>``: this one service, configured from the environment."""
    settings = load_settings()
    if settings is None:
        return 2
    return run_services({name: factory}, settings)
