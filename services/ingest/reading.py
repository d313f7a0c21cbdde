"""The small readers every part of an API order goes through (pure, no I/O).

The Nuvemshop API is not type-stable: money comes as decimal strings or JSON numbers, ids and
quantities as strings or integers, texts as strings, numbers, blanks or the placeholders the
checkout writes when a buyer left a field out, nested objects as objects, nulls or PHP's empty
array ``[]``. These readers turn each into one Python type or raise ``MalformedOrder`` naming the
field and the value, except values that may be personal data, which are never quoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "MAX_ID",
    "MalformedOrder",
    "decimal_of",
    "first_text",
    "money_of",
    "object_of",
    "place_of",
    "quote",
    "read_id",
    "text_of",
]

# Ids end up in PostgreSQL bigint columns; anything wider is not an id we can keep.
MAX_ID: Final = 2**63 - 1
# Quoted values are cut so that a hostile or broken payload cannot flood a log line.
_QUOTE_LIMIT: Final = 40
# Nineteen digits hold any bigint; longer strings are refused before int() has to parse them.
_DIGITS = re.compile(r"\d{1,19}", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
# What the checkout writes for an address part the buyer did not give (the reference's examples:
# "Não informado" in Brazil, "No informado" elsewhere, zip code "0000").
_PLACEHOLDERS: Final = frozenset({"não informado", "nao informado", "no informado", "0000"})


class MalformedOrder(ValueError):  # noqa: N818 -- the name other services catch
    """An order the API returned that cannot be read; ``detail`` says which field and why."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.detail = f"{field}: {problem}"
        super().__init__(self.detail)


def quote(value: object) -> str:
    """``repr`` of a value, cut to a length fit for a log line."""
    text = repr(value)
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def read_id(value: object) -> int | None:
    """A positive id from an integer or a string of ASCII digits; ``None`` if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, int) and 0 < value <= MAX_ID:
        return value
    return None


# Far past any amount, quantity or weight of an order (money columns hold under 10**12), and
# still exact in cents within Decimal's 28 digits.
_LARGEST = Decimal(10**15)


def decimal_of(value: object, field: str) -> Decimal:
    """A finite number from a Decimal, an int, a float (by its shortest repr) or a numeric string."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, float):
        # A float goes through its shortest repr: 0.1 stays 0.1, never 0.1000000000000000055...
        number = Decimal(repr(value))
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        # The pattern first: Decimal() alone would also take "1_000", "NaN" or non-ASCII digits.
        number = Decimal(value.strip())
    else:
        raise MalformedOrder(field, f"not a number: {quote(value)}")
    if not number.is_finite():
        raise MalformedOrder(field, f"not a finite number: {quote(value)}")
    if abs(number) >= _LARGEST:
        # Found by the order fuzz test: 1e999 or a 30-digit integer read fine, then could not be
        # written in cents (past Decimal's precision) and crashed the consumer at publish time.
        raise MalformedOrder(field, f"too large: {quote(value)}")
    return number


def money_of(value: object, field: str) -> Decimal:
    """An amount that cannot be negative."""
    amount = decimal_of(value, field)
    if amount < 0:
        raise MalformedOrder(field, f"negative amount: {quote(value)}")
    return amount


def text_of(value: object) -> str | None:
    """Free text such as a name or phone: trimmed, blank as missing, numbers as their digits.

    Other shapes count as missing rather than breaking the order, because SPEC §3 imports an
    order even when its customer data is incomplete (the mapper warns about what is missing).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def first_text(*values: object) -> str | None:
    """The first of ``values`` that reads as text."""
    for value in values:
        text = text_of(value)
        if text is not None:
            return text
    return None


def place_of(value: object) -> str | None:
    """An address part: text, with the checkout's "not informed" placeholders as missing."""
    text = text_of(value)
    if text is None or text.casefold() in _PLACEHOLDERS:
        return None
    return text


def object_of(value: object, field: str) -> Mapping[str, Any]:
    """A nested JSON object; absent, null and PHP's empty array ``[]`` all read as empty."""
    if value is None or (isinstance(value, list) and not value):
        return {}
    if not isinstance(value, Mapping):
        # The type only: a misplaced value here could be a customer's document.
        raise MalformedOrder(field, f"not an object but {type(value).__name__}")
    return value
