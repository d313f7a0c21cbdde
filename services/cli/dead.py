"""``nuvem-ledger dead list|replay <queue>``: dead-lettered and parked messages (``deadletters``)."""

from __future__ import annotations

import argparse

from services.cli import deadletters
from services.cli.base import Subparsers, command, emit, emit_rows, group
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    dead = group(sub, "dead", "dead-lettered and parked messages")
    listing = command(dead, "list", _list)
    listing.add_argument("queue", help="e.g. mapper.orders.dead or mapper.orders.parked")
    replay = command(dead, "replay", _replay)
    replay.add_argument("queue")
    pick = replay.add_mutually_exclusive_group(required=True)
    pick.add_argument("--all", action="store_true")
    pick.add_argument("--message-id")


async def _list(args: argparse.Namespace, settings: Settings) -> None:
    rows = await deadletters.list_messages(settings.amqp_url, args.queue)
    emit_rows(
        args,
        rows,
        lambda r: (
            f"{r['message_id']}  {r['reason']}: {r['detail']}"
            + (f"  (retry of {r['retry_of']})" if r.get("retry_of") else "")
        ),
        f"{args.queue}: empty",
    )


async def _replay(args: argparse.Namespace, settings: Settings) -> None:
    rows = await deadletters.replay(
        settings.amqp_url, args.queue, message_id=args.message_id, replay_all=args.all
    )
    emit(args, rows, lambda rs: f"replayed {len(rs)} message(s) from {args.queue}")
