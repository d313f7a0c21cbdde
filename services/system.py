"""The three services as one system: their names, factories and migrations.

Services never import each other. The tools that see the whole system do: the ``nuvem-ledger``
command (``run all``, ``migrate``, the operator commands, the demo), the benchmark and the tests.
They find the services here, in one place, instead of each naming them.
"""

from __future__ import annotations

from shared.db import SchemaMigrations
from shared.runtime import ServiceFactory

SERVICES: tuple[str, ...] = ("ingest", "mapper", "ledger")


def factories() -> dict[str, ServiceFactory]:
    """Each service's factory by name (imported here, when asked for, not at import time)."""
    from services.ingest.app import IngestService
    from services.ledger.app import LedgerService
    from services.mapper.app import MapperService

    return {"ingest": IngestService, "mapper": MapperService, "ledger": LedgerService}


def migrations() -> list[SchemaMigrations]:
    """Every service's schema as it registers it; the runner orders them by what reads what."""
    from services.ingest.migrations import MIGRATIONS as INGEST
    from services.ledger.migrations import MIGRATIONS as LEDGER
    from services.mapper.migrations import MIGRATIONS as MAPPER

    return [INGEST, MAPPER, LEDGER]
