"""``nuvem-ledger privacy requests|export``: the LGPD requests received, and a data request's export.

Each service owns its part: ingest the request record (``ingest.privacy_requests``) and what it
knows of the named orders, the mapper the customer records, sales and rejections, the ledger the
sales as it keeps them with their receivables (``services/<svc>/adapters/privacy.py``, by the
rules of ``services/<svc>/privacy.py``). The export is their parts side by side; a service that
has not filed its part yet shows ``null`` and the export says ``complete: false``.
"""

from __future__ import annotations

import argparse
from typing import Any

from services.cli.base import CommandError, Subparsers, command, database, emit, emit_rows, group
from services.ingest.adapters import privacy as ingest
from services.ledger.adapters import privacy as ledger
from services.mapper.adapters import privacy as mapper
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    privacy = group(sub, "privacy", "LGPD requests and data-request exports")
    requests = command(privacy, "requests", _requests)
    requests.add_argument("--store-id", type=int)
    export = command(privacy, "export", _export)
    export.add_argument("--request-id", required=True)


async def _requests(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        rows = await ingest.list_requests(pool, args.store_id)
    emit_rows(
        args,
        rows,
        lambda r: (
            f"{r['request_id']}  store {r['store_id']} {r['kind']} at {r['received_at']}"
            + (f" customer {r['customer_id']}" if r["customer_id"] else "")
            + (f" orders {r['order_ids']}" if r["order_ids"] else "")
        ),
        "no privacy requests",
    )


async def export(pool: Any, request_id: str) -> dict[str, Any]:
    """The assembled export of a data request (``CommandError`` for anything else)."""
    record = await ingest.request_record(pool, request_id)
    if record is None:
        raise CommandError(f"no privacy request {request_id!r}")
    if record["kind"] != "data_request":
        raise CommandError(f"request {request_id} is a {record['kind']}, not a data request")
    record["mapper"] = await mapper.export_part(pool, request_id)
    record["ledger"] = await ledger.export_part(pool, request_id)
    record["complete"] = record["mapper"] is not None and record["ledger"] is not None
    return record


async def _export(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        result = await export(pool, args.request_id)
    emit(args, result, _text)


def _text(r: dict[str, Any]) -> str:
    mapper_part = r["mapper"] or {}
    ledger_part = r["ledger"] or {}
    lines = [
        f"data request {r['request_id']} (Nuvemshop {r['data_request_id']}) store {r['store_id']}"
        f" customer {r['customer_id']}, received {r['received_at']}"
        + ("" if r["complete"] else " (incomplete: a service has not answered yet)"),
        f"customer records: {len(mapper_part.get('customers', []))}",
        f"sales (mapper): {len(mapper_part.get('sales', []))}, "
        f"rejections: {len(mapper_part.get('rejections', []))}",
        f"sales (ledger): {len(ledger_part.get('sales', []))}",
        f"orders known to ingest: {len((r['ingest'] or {}).get('orders', []))}",
        "print it with --json for the data itself",
    ]
    return "\n".join(lines)
