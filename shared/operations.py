"""What the services' operator functions (``services/<svc>/ops.py``) share.

Each service exposes the operator actions on its own data as plain async functions that return
JSON-ready rows: the ``nuvem-ledger`` command prints them (``--json`` as they are), and a service's
own HTTP operator API can serve the same bodies. A request the service cannot do (an unknown
store, bad input) raises ``OperatorError`` with a one-line reason an operator understands.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any


class OperatorError(Exception):
    """An operator's request the owning service refuses: one line, said as it is."""


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def json_default(value: Any) -> Any:
    """How operator results that JSON cannot hold are written: amounts as decimal strings,
    dates and datetimes in ISO 8601 (``json.dumps(..., default=json_default)``)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
