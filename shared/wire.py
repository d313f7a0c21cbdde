"""The wire's types, under every message of ``shared.contracts``: money, timestamps, days, and
the two base models (``Message`` and its nested ``Part``).

Money is ``Decimal`` inside and a decimal string (``"10.50"``) on the wire; a float is read
through its shortest repr, never its binary value, and a boolean or a non-finite amount is
refused. Timestamps are timezone-aware and travel as ISO 8601 with an offset; days as
``YYYY-MM-DD``. Models ignore unknown fields (the contract lets every producer add freely) but
reject missing or mistyped ones, and are frozen.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, PlainSerializer

CENT = Decimal("0.01")


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error.
        msg = "money must be a decimal string, not a boolean"
        raise ValueError(msg)  # noqa: TRY004 - see above
    if isinstance(value, float):
        # Floats are accepted only through their shortest repr, never their binary value.
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        msg = f"not a decimal amount: {value!r}"
        raise ValueError(msg) from exc
    if not result.is_finite():
        msg = f"not a finite amount: {value!r}"
        raise ValueError(msg)
    return result


def format_money(value: Decimal) -> str:
    """Render an amount as the wire's decimal string, two places (``10.5`` → ``"10.50"``)."""
    return format(value.quantize(CENT), "f")


Money = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    PlainSerializer(format_money, return_type=str, when_used="always"),
]
Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(lambda v: v.isoformat(), return_type=str, when_used="always"),
]
Day = Annotated[
    dt.date,
    PlainSerializer(lambda v: v.isoformat(), return_type=str, when_used="always"),
]


class Message(BaseModel):
    """Base of every message: frozen, tolerant of added fields, strict on the named ones."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    exchange: ClassVar[str]
    routing_key: ClassVar[str]

    @classmethod
    def message_type(cls) -> str:
        """The AMQP ``type`` property: ``<routing key>.v1``."""
        return f"{cls.routing_key}.v1"


class Part(BaseModel):
    """Base of nested parts of a message."""

    model_config = ConfigDict(frozen=True, extra="ignore")
