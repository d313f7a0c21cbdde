"""Fixtures shared by the integration suites."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.integration.ledger_helpers import Ledger, start_ledger


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[Ledger]:
    """The ledger alone, on the test's own vhost and database, with a driver for it."""
    system = await start_ledger(settings)
    try:
        yield Ledger(system)
    finally:
        await system.stop()
