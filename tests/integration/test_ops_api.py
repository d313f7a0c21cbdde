"""The operator HTTP API (``/ops``) of each service, against the running system.

Off (404) without ``OPS_API_TOKEN``; 401 with a missing or wrong token; with it, the bodies the
CLI prints with ``--json`` (the same functions answer). Each service's ``/ops/openapi.json`` is a
valid OpenAPI document, and schemathesis (its command, in a subprocess, so the services keep
running in this test's event loop) calls every operation with generated valid and invalid input
and checks every answer against the document.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import SecretStr

from services.ingest import ops as ingest_ops
from services.ledger import ops as ledger_ops
from services.mapper import ops as mapper_ops
from shared.contracts import SaleConfirm
from shared.operations import json_default
from shared.settings import Settings
from tests.harness import System, start_system
from tests.integration.helpers import unique_store_id
from tests.integration.ingest_helpers import first_poll_done

TOKEN = "ops-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SERVICES = ("ingest", "mapper", "ledger")


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    running = await start_system(
        settings,
        configure=lambda s: s.model_copy(update={"ops_api_token": SecretStr(TOKEN)}),
    )
    yield running
    await running.stop()


def _plain(value: Any) -> Any:
    """What a body looks like once it went through JSON."""
    return json.loads(json.dumps(value, default=json_default))


async def _get(system: System, service: str, path: str, **headers: str) -> tuple[int, Any]:
    async with system.http.get(f"{system.url_of(service)}{path}", headers=headers) as reply:
        return reply.status, await reply.json(content_type=None)


async def test_off_without_a_token(settings: Settings) -> None:
    running = await start_system(settings, services=("ingest",))
    try:
        for path in ("/ops/integrations", "/ops/openapi.json", "/ops/anything"):
            async with running.http.get(f"{running.url_of('ingest')}{path}", headers=AUTH) as r:
                assert r.status == 404, path
    finally:
        await running.stop()


async def test_token_required_and_bodies_as_the_cli(system: System) -> None:
    paths = {
        "ingest": "/ops/integrations",
        "mapper": "/ops/rejected",
        "ledger": "/ops/sales/1/1",
    }
    for service, path in paths.items():
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            status, body = await _get(system, service, path, **headers)
            assert status == 401, (service, headers)
            assert body == {"error": "missing or wrong bearer token"}

    store = unique_store_id()
    await system.connect_store(store)
    await first_poll_done(system, store)
    pool = system.services["ingest"].ctx.pool
    await mapper_ops.set_stock_check(pool, store, on=True)
    sim = system.simulator.state
    rejected = int(sim.add_order(store, paid=True)["id"])  # unknown products: no stock
    await system.observer.wait_for("sale.rejected", store_id=store, order_id=rejected)
    await mapper_ops.set_stock_check(pool, store, on=False)
    imported = int(sim.add_order(store, paid=True)["id"])
    pending = await system.observer.wait_for("sale.pending_review", order_id=imported)
    sale_id = pending[0].body["sale_id"]
    await system.erp_publish(SaleConfirm(sale_id=sale_id, confirmed_by="erp-1"), f"c-{sale_id}")
    await system.observer.wait_for("sale.confirmed", sale_id=sale_id)

    status, body = await _get(system, "ingest", f"/ops/integrations/{store}", **AUTH)
    assert status == 200
    assert body == _plain(await ingest_ops.integration(pool, store))
    assert (body["imported"], body["rejected"]) == (1, 1)
    status, listing = await _get(system, "ingest", "/ops/integrations", **AUTH)
    assert listing == _plain(await ingest_ops.integration_rows(pool))
    status, body = await _get(system, "mapper", f"/ops/rejected?store_id={store}", **AUTH)
    assert body == _plain(await mapper_ops.rejected_orders(pool, store))
    assert [r["order_id"] for r in body] == [rejected]
    status, body = await _get(system, "ledger", f"/ops/sales/{store}/{imported}", **AUTH)
    assert body == _plain(await ledger_ops.sale(pool, store, imported))
    assert body["status"] == "confirmed"

    status, body = await _get(system, "ingest", "/ops/integrations/1", **AUTH)
    assert (status, body) == (404, {"error": "store 1 is not connected"})
    status, body = await _get(system, "ledger", "/ops/sales/0/1", **AUTH)
    assert status == 400

    url = f"{system.url_of('mapper')}/ops/rejected/{store}/{rejected}/retry"
    async with system.http.post(url, headers=AUTH) as reply:
        assert reply.status == 200
        assert [r["order_id"] for r in await reply.json()] == [rejected]
    retried = await system.observer.wait_for("sale.pending_review", order_id=rejected)
    assert retried


async def _schemathesis(system: System, service: str, workdir: Path) -> tuple[int, str]:
    status, document = await _get(system, service, "/ops/openapi.json", **AUTH)
    assert status == 200
    validate(document)
    schema = workdir / f"{service}.json"
    schema.write_text(json.dumps(document))
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        str(schema),
        "--url",
        system.url_of(service),
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        "all",
        "--max-examples",
        "10",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "14",
        "--generation-database",
        "none",
        "--no-color",
        "--request-timeout",
        "5",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(errors="replace")


async def test_schemathesis_finds_nothing(system: System, tmp_path: Path) -> None:
    store = unique_store_id()
    await system.connect_store(store)
    runs = await asyncio.gather(*(_schemathesis(system, s, tmp_path) for s in SERVICES))
    for service, (code, output) in zip(SERVICES, runs, strict=True):
        assert code == 0, f"{service}:\n{output}"
    async with system.http.get(f"{system.url_of('ingest')}/healthz") as reply:
        assert reply.status == 200  # the generated input did not hurt the service
