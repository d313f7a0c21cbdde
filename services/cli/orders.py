"""``nuvem-ledger orders ...``: the orders that could not become sales, through the mapper's operations.

A retry sends a rejected order to the mapper again and takes its copy out of the parking queue.
"""

from __future__ import annotations

import argparse

from services.cli.base import Subparsers, broker, command, database, emit, emit_rows, group
from services.cli.trace import order_trace, trace_text
from services.mapper import ops as mapper
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    orders = group(sub, "orders", "orders: rejected ones, retries, and any order's timeline")
    rejected = command(orders, "rejected", _rejected)
    rejected.add_argument("--store-id", type=int)
    retry = command(orders, "retry", _retry)
    retry.add_argument("--store-id", type=int, required=True)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--order-id", type=int)
    which.add_argument("--all", action="store_true")
    traced = command(orders, "trace", _trace, help_text="where an order is and why: its timeline")
    traced.add_argument("--store-id", type=int, required=True)
    traced.add_argument("--order-id", type=int, required=True)


async def _rejected(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        rows = await mapper.rejected_orders(pool, args.store_id)
    emit_rows(
        args,
        rows,
        lambda r: f"store {r['store_id']} order {r['order_id']}: {r['reason']}: {r['detail']}",
        "no rejected orders",
    )


async def _retry(args: argparse.Namespace, settings: Settings) -> None:
    order_id = None if args.all else args.order_id
    async with database(settings) as pool, broker(settings) as publisher:
        rows = await mapper.retry_orders(pool, publisher, store_id=args.store_id, order_id=order_id)
    emit(args, rows, lambda rs: f"retried {len(rs)} order(s)")


async def _trace(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        result = await order_trace(pool, args.store_id, args.order_id)
    emit(args, result, trace_text)
