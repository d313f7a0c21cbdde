"""What every ``nuvem-ledger`` command shares: output (text or ``--json``), errors, database, broker.

Commands print their result on stdout (JSON with ``--json``), keep logs on stderr, and fail with
one line and a non-zero exit code on bad input: they raise ``CommandError`` (or the owning
service refuses with ``shared.operations.OperatorError``) and ``operator`` prints it.

Each command is a handler ``(args, settings) -> exit code`` that its area module sets on its
parser (``set_defaults(handler=...)``); ``operator`` makes one from an async function, and
``command`` adds an operator command's parser with its handler and ``--json`` in one call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from typing import Any, NoReturn

import asyncpg

from services import system
from shared.db import create_pool, migrate
from shared.logging import configure_logging
from shared.messaging import Broker
from shared.operations import OperatorError, json_default
from shared.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Subparsers = Any  # argparse's _SubParsersAction, which typeshed keeps private


class CommandError(OperatorError):
    """Bad input or an impossible request: printed as one line, exit code 1."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2 for bad usage."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def group(sub: Subparsers, name: str, help_text: str) -> Subparsers:
    """A command with actions of its own (``integration show``, ``dead list`` ...)."""
    return sub.add_parser(name, help=help_text).add_subparsers(
        dest="action", required=True, parser_class=Parser
    )


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def operator(
    work: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, None]],
) -> Handler:
    """An operator command: logs on stderr, a refusal as one line and exit code 1."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        fmt = "console" if settings.log_format == "console" else "json"
        configure_logging(settings.log_level, fmt, sys.stderr)
        try:
            asyncio.run(work(args, settings))
        except OperatorError as exc:
            sys.stderr.write(f"nuvem-ledger: error: {exc}\n")
            return 1
        except KeyboardInterrupt:
            return 130
        return 0

    return handler


def command(
    parent: Subparsers,
    name: str,
    work: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, None]],
    help_text: str | None = None,
) -> argparse.ArgumentParser:
    """The operator command ``name`` under ``parent``, run by ``work`` (see ``operator``), with
    ``--json``; its own arguments go on the parser this returns."""
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
    parser.set_defaults(handler=operator(work))
    json_flag(parser)
    return parser


def emit(args: argparse.Namespace, result: Any, text: Callable[[Any], str]) -> None:
    """Print ``result`` as JSON (``--json``) or as the text ``text`` renders from it."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(result, default=json_default, ensure_ascii=False) + "\n")
    else:
        rendered = text(result)
        if rendered:
            sys.stdout.write(rendered.rstrip("\n") + "\n")


def emit_rows(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    empty: str,
) -> None:
    """Print ``rows`` as JSON (``--json``), or one line each as ``render`` writes it (``empty``
    when there are none)."""
    emit(args, rows, lambda rs: "\n".join(render(r) for r in rs) if rs else empty)


def parse_when(value: str) -> dt.datetime:
    """An ISO 8601 date or datetime from the command line; naive values are UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or datetime: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def money(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise argparse.ArgumentTypeError(f"not a valid amount: {value!r}")
    return amount


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on a migrated database, or a one-line error when PostgreSQL is unreachable."""
    try:
        await migrate(settings.database_url, system.migrations())
        pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    except (OSError, asyncpg.PostgresError) as exc:
        raise CommandError(f"database unreachable at DATABASE_URL: {exc}") from exc
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def broker(settings: Settings) -> AsyncIterator[Broker]:
    """A connected publisher, or a one-line error when RabbitMQ is unreachable."""
    connected = Broker(settings.amqp_url, app_id="nuvem-ledger-cli")
    try:
        await connected.connect(deadline=10)
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise CommandError(f"broker unreachable at AMQP_URL: {exc}") from exc
    try:
        yield connected
    finally:
        await connected.close()
