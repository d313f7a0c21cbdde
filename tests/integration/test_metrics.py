"""Every metric docs/metrics.md promises is served at ``/metrics`` by the service it names.

After a small flow (one order imported and confirmed, one rejected, one confirmation refused),
each service's ``/metrics`` is parsed with prometheus_client's own parser: every documented
metric of that service is there with its documented type (histograms with their buckets), and
the flow's counts show in the metrics that count it.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.mapper import ops as mapper_ops
from shared.contracts import SaleConfirm
from tests.harness import System
from tests.integration.helpers import unique_store_id
from tests.integration.ingest_helpers import first_poll_done

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_ROW = re.compile(
    r"^\| `(nuvem_ledger_[a-z0-9_]+)` \| (counter|gauge|histogram) \|[^|]*\| (\w+) \|"
)


def documented() -> dict[str, list[tuple[str, str]]]:
    """Service -> [(metric, type)] from the tables of docs/metrics.md ("all": every service)."""
    found: dict[str, list[tuple[str, str]]] = {"ingest": [], "mapper": [], "ledger": []}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            name, kind, service = match.groups()
            for owner in found if service == "all" else [service]:
                found[owner].append((name, kind))
    return found


async def _scrape(system: System, service: str) -> tuple[dict[str, str], list[Sample]]:
    async with system.http.get(f"{system.url_of(service)}/metrics") as reply:
        assert reply.status == 200
        text = await reply.text()
    families = list(text_string_to_metric_families(text))
    return {f.name: f.type for f in families}, [s for f in families for s in f.samples]


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_every_documented_metric_is_served(system: System) -> None:
    store = unique_store_id()
    await system.connect_store(store)
    await first_poll_done(system, store)
    sim = system.simulator.state
    pool = system.services["mapper"].ctx.pool
    imported = int(sim.add_order(store, paid=True)["id"])
    pending = await system.observer.wait_for("sale.pending_review", order_id=imported)
    sale_id = pending[0].body["sale_id"]
    await system.erp_publish(SaleConfirm(sale_id=sale_id, confirmed_by="erp-1"), f"c-{sale_id}")
    await system.erp_publish(SaleConfirm(sale_id="no-such-sale", confirmed_by="erp-1"), "c-none")
    await system.observer.wait_for("sale.confirmed", sale_id=sale_id)
    await mapper_ops.set_stock_check(pool, store, on=True)
    rejected = int(sim.add_order(store, paid=True)["id"])
    await system.observer.wait_for("sale.rejected", order_id=rejected)
    await system.observer.wait_for("sale.confirmation_refused", sale_id="no-such-sale")

    promised = documented()
    assert len(promised["ingest"]) > 15, "docs/metrics.md tables not read"
    scraped = {s: await _scrape(system, s) for s in ("ingest", "mapper", "ledger")}
    for service, metrics in promised.items():
        families, _ = scraped[service]
        for name, kind in metrics:
            family = name.removesuffix("_total") if kind == "counter" else name
            assert families.get(family) == kind, f"{service} does not serve {name} ({kind})"

    _, ingest = scraped["ingest"]
    assert _value(ingest, "nuvem_ledger_webhooks_received_total", event="order/paid") >= 2
    assert _value(ingest, "nuvem_ledger_orders_fetched_total", via="webhook") >= 2
    assert _value(ingest, "nuvem_ledger_orders_announced_total") >= 2
    assert _value(ingest, "nuvem_ledger_nuvemshop_requests_total", status="200") >= 2
    by_store = {"store_id": str(store), "status_class": "2xx"}
    assert _value(ingest, "nuvem_ledger_nuvemshop_store_requests_total", **by_store) >= 2
    assert _value(ingest, "nuvem_ledger_stores", state="enabled") == 1
    assert _value(ingest, "nuvem_ledger_poll_interval_seconds") == 300
    assert 0 < _value(ingest, "nuvem_ledger_poll_lag_seconds", quantile="1") < 300
    assert _value(ingest, "nuvem_ledger_inbox_rows", schema="ingest") >= 0
    _, mapper = scraped["mapper"]
    assert _value(mapper, "nuvem_ledger_orders_imported_total") == 1
    assert _value(mapper, "nuvem_ledger_orders_rejected_total", reason="insufficient_stock") == 1
    assert _value(mapper, "nuvem_ledger_webhook_to_pending_seconds_count") == 1
    assert _value(mapper, "nuvem_ledger_batch_size_count", queue="mapper.orders") >= 1
    assert _value(mapper, "nuvem_ledger_outbox_backlog_rows", schema="mapper") >= 0
    assert _value(mapper, "nuvem_ledger_inbox_rows", schema="mapper") == 2
    _, ledger = scraped["ledger"]
    assert _value(ledger, "nuvem_ledger_sales_confirmed_total") == 1
    assert _value(ledger, "nuvem_ledger_confirmations_refused_total", reason="unknown_sale") == 1
    assert _value(ledger, "nuvem_ledger_ready") in (0, 1)
