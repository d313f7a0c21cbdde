"""What every ``nuvem-ledger`` command shares: output (text or ``--json``), errors, the database.

Commands print their result on stdout (JSON with ``--json``), keep logs on stderr, and fail with
one line and a non-zero exit code on bad input: they raise ``CommandError`` and ``main`` prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any, NoReturn

import asyncpg

from services import system
from shared.db import create_pool, migrate
from shared.settings import Settings


class CommandError(Exception):
    """Bad input or an impossible request: printed as one line, exit code 1."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2 for bad usage."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit(args: argparse.Namespace, result: Any, text: Callable[[Any], str]) -> None:
    """Print ``result`` as JSON (``--json``) or as the text ``text`` renders from it."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(result, default=_default, ensure_ascii=False) + "\n")
    else:
        rendered = text(result)
        if rendered:
            sys.stdout.write(rendered.rstrip("\n") + "\n")


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_when(value: str) -> dt.datetime:
    """An ISO 8601 date or datetime from the command line; naive values are UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or datetime: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


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
