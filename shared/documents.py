"""Brazilian taxpayer documents (CPF for people, CNPJ for companies) as pure text rules.

A document arrives from the store in whatever shape the buyer typed it; it is normalised (separators
and whitespace removed, ASCII letters upper-cased, nothing else dropped), then validated by its
length: 11 digits for a CPF, 14 characters for a CNPJ, whose first 12 positions may be letters since
the alphanumeric CNPJ of July 2026 (a character is worth its ASCII code minus 48, so digits keep
their value). Both carry two mod-11 check digits. ``mask_document`` is the only form of a document
that may reach a log or a warning: it never shows more than the last two characters.

Shared because two services apply the same rules: the mapper matches customers by their
normalised document, and the ledger finds the sale announcements of a customer to redact (LGPD)
by the same normal form. How a document takes part in customer matching stays in the mapper's
reading of an order (``services.mapper.orders``).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

DocumentKind = Literal["cpf", "cnpj"]

CPF_LENGTH: Final = 11
CNPJ_LENGTH: Final = 14

_DIGITS: Final = frozenset(string.digits)
_CNPJ_BASE_CHARACTERS: Final = _DIGITS | frozenset(string.ascii_uppercase)
# Only ASCII letters are upper-cased: str.upper() would turn a dotless "ı" into a valid "I" and
# "ß" into two characters, making a mistyped document look like a real one.
_NORMALIZE_TABLE: Final = str.maketrans(string.ascii_lowercase, string.ascii_uppercase, "./-")

_CPF_FIRST_WEIGHTS: Final = tuple(range(10, 1, -1))
_CPF_SECOND_WEIGHTS: Final = tuple(range(11, 1, -1))
_CNPJ_FIRST_WEIGHTS: Final = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_SECOND_WEIGHTS: Final = (6, *_CNPJ_FIRST_WEIGHTS)
_VISIBLE_TAIL: Final = 2


@dataclass(frozen=True, slots=True)
class DocumentCheck:
    """Verdict on one document: the normalised value and its kind when valid, else why not."""

    normalized: str | None
    kind: DocumentKind | None
    reason: str | None

    @property
    def is_valid(self) -> bool:
        """True when the document is a valid CPF or CNPJ."""
        return self.kind is not None


def normalize_document(raw: str) -> str:
    """Remove ``.``, ``/``, ``-`` and all whitespace and upper-case ASCII letters; keep the rest."""
    return "".join(raw.split()).translate(_NORMALIZE_TABLE)


def is_valid_cpf(raw: str) -> bool:
    """True when ``raw`` (formatted or not) is a CPF with correct check digits."""
    return _cpf_problem(normalize_document(raw)) is None


def is_valid_cnpj(raw: str) -> bool:
    """True when ``raw`` (formatted or not) is a numeric or alphanumeric CNPJ with correct check
    digits."""
    return _cnpj_problem(normalize_document(raw)) is None


def classify_document(raw: str | None) -> DocumentCheck:
    """Normalise and validate a document, telling a CPF from a CNPJ by its length."""
    document = normalize_document(raw or "")
    if not document:
        return DocumentCheck(None, None, "no CPF or CNPJ given")
    kind = _kind_by_length(document)
    if kind is None:
        reason = (
            f"{len(document)} characters: neither a CPF ({CPF_LENGTH} digits)"
            f" nor a CNPJ ({CNPJ_LENGTH} characters)"
        )
        return DocumentCheck(None, None, reason)
    problem = _PROBLEM_FINDERS[kind](document)
    if problem is not None:
        return DocumentCheck(None, None, problem)
    return DocumentCheck(document, kind, None)


def mask_document(raw: str) -> str:
    """The document as logs may show it: all hidden but the last two characters.

    CPFs and CNPJs keep their usual punctuation (``***.***.***-00``, ``**.***.***/****-81``) so a
    reader still sees which kind it was; anything else becomes stars plus its last two characters.
    """
    document = normalize_document(raw)
    if len(document) <= 2 * _VISIBLE_TAIL:
        # Showing two of at most four characters would show most of it.
        return "*" * len(document)
    tail = document[-_VISIBLE_TAIL:]
    if len(document) == CPF_LENGTH:
        return f"***.***.***-{tail}"
    if len(document) == CNPJ_LENGTH:
        return f"**.***.***/****-{tail}"
    return "*" * (len(document) - _VISIBLE_TAIL) + tail


def _kind_by_length(document: str) -> DocumentKind | None:
    if len(document) == CPF_LENGTH:
        return "cpf"
    if len(document) == CNPJ_LENGTH:
        return "cnpj"
    return None


def _check_digit(values: Sequence[int], weights: Sequence[int]) -> int:
    remainder = sum(value * weight for value, weight in zip(values, weights, strict=True)) % 11
    return 0 if remainder < 2 else 11 - remainder


def _cpf_problem(document: str) -> str | None:
    if len(document) != CPF_LENGTH:
        return f"a CPF has {CPF_LENGTH} digits, this has {len(document)} characters"
    if not set(document) <= _DIGITS:
        return "a CPF has only digits"
    if len(set(document)) == 1:
        # Eleven equal digits pass the arithmetic but are placeholders, never issued.
        return "a CPF cannot have all digits equal"
    values = [int(character) for character in document]
    expected = [
        _check_digit(values[:9], _CPF_FIRST_WEIGHTS),
        _check_digit(values[:10], _CPF_SECOND_WEIGHTS),
    ]
    if values[9:] != expected:
        return "CPF check digits do not match"
    return None


def _cnpj_problem(document: str) -> str | None:
    if len(document) != CNPJ_LENGTH:
        return f"a CNPJ has {CNPJ_LENGTH} characters, this has {len(document)}"
    if not set(document[:12]) <= _CNPJ_BASE_CHARACTERS:
        return "a CNPJ has only letters A-Z and digits in its first 12 positions"
    if not set(document[12:]) <= _DIGITS:
        return "a CNPJ ends with two numeric check digits"
    if len(set(document)) == 1:
        return "a CNPJ cannot have all characters equal"
    # ASCII code - 48 keeps digits at their face value, so numeric CNPJs validate unchanged.
    values = [ord(character) - ord("0") for character in document]
    expected = [
        _check_digit(values[:12], _CNPJ_FIRST_WEIGHTS),
        _check_digit(values[:13], _CNPJ_SECOND_WEIGHTS),
    ]
    if values[12:] != expected:
        return "CNPJ check digits do not match"
    return None


_PROBLEM_FINDERS: Final[dict[DocumentKind, Callable[[str], str | None]]] = {
    "cpf": _cpf_problem,
    "cnpj": _cnpj_problem,
}
