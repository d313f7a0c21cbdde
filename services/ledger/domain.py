"""The ledger's pure rules: sale status changes, installment plans, stock movements and reversals.

Nothing here touches the database or the broker: the ledger's handlers load a sale, ask these
functions what should happen, and store the answer in one transaction. A confirmation or a
cancellation that must not happen is refused with a ``Refusal`` carrying a short ``code`` (the
``reason`` of ``sale.confirmation_refused``) and a ``detail`` an operator can act on. Money is
``Decimal`` throughout and installment sums are checked in exact whole cents, never in floats and
never in a decimal context that could round a large total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final, Literal, Protocol

from shared.contracts import ConfirmPayment, SaleConfirm

__all__ = [
    "CANCELLED",
    "CONFIRMED",
    "DEFAULT_METHOD",
    "PENDING_REVIEW",
    "Action",
    "InstallmentTerms",
    "InvalidTransition",
    "MovementRecord",
    "PlannedInstallment",
    "PlannedMovement",
    "PlannedReturn",
    "ReceivableRecord",
    "Refusal",
    "ReversalPlan",
    "SaleLine",
    "SaleStatus",
    "Shortage",
    "plan_installments",
    "plan_reversal",
    "plan_stock_out",
    "same_terms",
    "stock_shortages",
    "transition",
]

SaleStatus = Literal["pending_review", "confirmed", "cancelled"]
Action = Literal["confirm", "cancel"]
Direction = Literal["in", "out"]

PENDING_REVIEW: Final[SaleStatus] = "pending_review"
CONFIRMED: Final[SaleStatus] = "confirmed"
CANCELLED: Final[SaleStatus] = "cancelled"
DEFAULT_METHOD: Final = "cash"

# Integer digits an amount may have: with its two decimals it then fits the 28 digits of the
# default decimal context, which the wire format (``format_money``) quantizes in. Anything wider is
# not money but a broken or hostile message, and the bound keeps the cent arithmetic small.
_MAX_INTEGER_DIGITS: Final = 26


class Refusal(Exception):  # noqa: N818 -- a refusal is an expected answer, not an error
    """Why the ledger will not do what a message asks: ``code`` for machines, ``detail`` for people."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class InvalidTransition(Refusal):
    """A status change the sale's current status does not allow."""


# --- status ----------------------------------------------------------------------------------

_TRANSITIONS: Final[Mapping[tuple[str, str], SaleStatus]] = {
    (PENDING_REVIEW, "confirm"): CONFIRMED,
    (PENDING_REVIEW, "cancel"): CANCELLED,
    (CONFIRMED, "cancel"): CANCELLED,
}
_REFUSED: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
    (CONFIRMED, "confirm"): ("already_confirmed", "the sale is already confirmed"),
    (CANCELLED, "confirm"): ("sale_cancelled", "the sale is cancelled and cannot be confirmed"),
    (CANCELLED, "cancel"): ("sale_cancelled", "the sale is already cancelled"),
}


def transition(current: SaleStatus, action: Action) -> SaleStatus:
    """The status a sale takes when ``action`` is applied, or ``InvalidTransition`` saying why not."""
    key = (current, action)
    if key in _TRANSITIONS:
        return _TRANSITIONS[key]
    if key in _REFUSED:
        code, detail = _REFUSED[key]
        raise InvalidTransition(code, detail)
    # Only reachable with values read from outside the type checker (a database row, say).
    raise InvalidTransition("invalid_transition", f"cannot {action!r} a sale in status {current!r}")


# --- installments ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedInstallment:
    """One receivable to create: its number (from 1), amount, due date and payment method."""

    number: int
    amount: Decimal
    due_date: date
    method: str


class InstallmentTerms(Protocol):
    """What ``same_terms`` compares of an installment (a planned one or a stored receivable)."""

    @property
    def amount(self) -> Decimal: ...
    @property
    def due_date(self) -> date: ...
    @property
    def method(self) -> str: ...


def _amount_problem(amount: Decimal) -> str | None:
    """Why an amount is not a whole number of cents the wire can carry, or ``None``."""
    if not amount.is_finite():
        return "is not a finite amount"
    if not amount.is_zero() and amount.adjusted() >= _MAX_INTEGER_DIGITS:
        return f"has more than {_MAX_INTEGER_DIGITS} digits before the decimal point"
    if _cents(amount) is None:
        return "has more than 2 decimal places"
    return None


def _cents(amount: Decimal) -> int | None:
    """A finite, bounded amount as an exact number of cents, or ``None`` when not whole cents."""
    if amount.is_zero():
        return 0
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or amount.adjusted() >= _MAX_INTEGER_DIGITS:
        return None
    # Work on the digit string itself, so that no decimal context can round anything.
    shift = exponent + 2
    if shift >= 0:
        scale: int = 10**shift
        magnitude = int("".join(map(str, digits))) * scale
    else:
        kept, dropped = digits[:shift], digits[shift:]
        if any(dropped):
            return None
        magnitude = int("".join(map(str, kept)) or "0")
    return -magnitude if sign else magnitude


def _from_cents(cents: int) -> Decimal:
    # Built from text, which is exact; Decimal arithmetic would round past 28 digits.
    return Decimal(f"{cents}E-2")


def _show_cents(cents: int) -> str:
    return format(_from_cents(cents), "f")


def _checked_total(total: Decimal) -> int:
    problem = _amount_problem(total)
    cents = _cents(total) if problem is None else None
    if cents is None or cents < 0:
        raise Refusal("invalid_total", f"the sale total {total} {problem or 'is negative'}")
    return cents


def _installment_cents(number: int, amount: Decimal) -> int:
    problem = _amount_problem(amount)
    cents = _cents(amount) if problem is None else None
    if cents is None:
        raise Refusal("invalid_installment", f"installment {number}: amount {amount} {problem}")
    if cents <= 0:
        raise Refusal(
            "invalid_installment", f"installment {number}: amount {amount} is not positive"
        )
    return cents


def plan_installments(
    total: Decimal,
    sale_date: date,
    payment: ConfirmPayment | None,
    default_method: str = DEFAULT_METHOD,
) -> list[PlannedInstallment]:
    """The receivables of a confirmed sale.

    Without a payment: one installment of the whole total, due on the sale date, in
    ``default_method``. With one: its installments in order, each positive, in whole cents, due on
    or after the sale date, adding up exactly to the total; otherwise ``Refusal``
    (``invalid_total``, ``invalid_payment``, ``invalid_installment``, ``installments_mismatch``).
    """
    total_cents = _checked_total(total)
    if payment is None:
        # SPEC §3: a sale is imported as cash in one installment, due on the sale date.
        return [PlannedInstallment(1, _from_cents(total_cents), sale_date, default_method)]
    method = payment.method.strip()
    if not method:
        raise Refusal("invalid_payment", "the payment method is blank")
    if not payment.installments:
        raise Refusal("invalid_payment", "the payment has no installments")
    planned: list[PlannedInstallment] = []
    sum_cents = 0
    for number, installment in enumerate(payment.installments, start=1):
        cents = _installment_cents(number, installment.amount)
        if installment.due_date < sale_date:
            raise Refusal(
                "invalid_installment",
                f"installment {number}: due {installment.due_date.isoformat()} is before "
                f"the sale date {sale_date.isoformat()}",
            )
        sum_cents += cents
        planned.append(PlannedInstallment(number, _from_cents(cents), installment.due_date, method))
    _check_sum(sum_cents, total_cents)
    return planned


def _check_sum(sum_cents: int, total_cents: int) -> None:
    if sum_cents != total_cents:
        raise Refusal(
            "installments_mismatch",
            f"the installments add up to {_show_cents(sum_cents)} "
            f"but the sale total is {_show_cents(total_cents)}",
        )


def same_terms(
    existing_seller: str | None,
    existing_installments: Sequence[InstallmentTerms],
    requested: SaleConfirm,
) -> bool:
    """Whether a confirmation of an already confirmed sale repeats it harmlessly.

    True when it names no seller or the same one, and no payment or the same installments (same
    method, amounts by value, due dates, in order). False means a conflicting confirmation, which
    is refused as ``already_confirmed``.
    """
    if requested.seller_id is not None and requested.seller_id != existing_seller:
        return False
    if requested.payment is None:
        return True
    wanted = requested.payment.installments
    if len(wanted) != len(existing_installments):
        return False
    method = requested.payment.method.strip()
    return all(
        have.method.strip() == method
        and have.amount == want.amount
        and have.due_date == want.due_date
        for have, want in zip(existing_installments, wanted, strict=True)
    )


# --- stock -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleLine:
    """One line of a sale as the ledger stores it."""

    number: int
    product_id: str
    quantity: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class PlannedMovement:
    """A stock movement to create for one sale line."""

    line_number: int
    product_id: str
    quantity: int
    direction: Direction = "out"


@dataclass(frozen=True, slots=True)
class Shortage:
    """A product the sale needs more of than there is (the ``items`` of a stock refusal)."""

    product_id: str
    description: str
    requested: int
    available: int


def _checked_line(line: SaleLine) -> SaleLine:
    if not line.product_id.strip():
        raise Refusal("malformed_sale", f"line {line.number}: no product")
    if line.quantity <= 0:
        raise Refusal(
            "malformed_sale", f"line {line.number}: quantity {line.quantity} is not positive"
        )
    return line


def plan_stock_out(lines: Iterable[SaleLine]) -> list[PlannedMovement]:
    """One movement out per sale line (same product and quantity); ``Refusal`` if a line is unusable."""
    movements = [
        PlannedMovement(line.number, line.product_id, line.quantity, "out")
        for line in map(_checked_line, lines)
    ]
    if not movements:
        raise Refusal("malformed_sale", "the sale has no lines")
    return movements


def stock_shortages(lines: Iterable[SaleLine], on_hand: Mapping[str, int]) -> list[Shortage]:
    """Products whose total requested quantity (over all lines) exceeds the stock on hand.

    A product missing from ``on_hand`` has none. Shortages come in the order products first appear.
    """
    requested: dict[str, int] = {}
    descriptions: dict[str, str] = {}
    for line in lines:
        # Two lines of the same product draw on the same stock: compare their sum, not each line.
        requested[line.product_id] = requested.get(line.product_id, 0) + line.quantity
        descriptions.setdefault(line.product_id, line.description)
    return [
        Shortage(product_id, descriptions[product_id], quantity, on_hand.get(product_id, 0))
        for product_id, quantity in requested.items()
        if quantity > on_hand.get(product_id, 0)
    ]


# --- reversal --------------------------------------------------------------------------------


class ReceivableRecord(Protocol):
    """What a reversal needs of a stored receivable."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...


class MovementRecord(Protocol):
    """What a reversal needs of a stored stock movement."""

    @property
    def id(self) -> str: ...
    @property
    def product_id(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def direction(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PlannedReturn:
    """A movement in that gives back what the movement ``reverses`` took out."""

    reverses: str
    product_id: str
    quantity: int
    direction: Direction = "in"


@dataclass(frozen=True, slots=True)
class ReversalPlan:
    """What cancelling a confirmed sale undoes: receivables to cancel and stock to return."""

    receivables_to_cancel: tuple[str, ...]
    movements_in: tuple[PlannedReturn, ...]


def plan_reversal(
    receivables: Iterable[ReceivableRecord], movements: Iterable[MovementRecord]
) -> ReversalPlan:
    """Cancel the open receivables and return each movement out with a movement in.

    Paid or already cancelled receivables are left alone (money received is not un-received by a
    status change). Existing movements in are ignored: the status change confirmed → cancelled,
    which happens once, is what keeps the reversal from being applied twice.
    """
    return ReversalPlan(
        receivables_to_cancel=tuple(r.id for r in receivables if r.status == "open"),
        movements_in=tuple(
            PlannedReturn(m.id, m.product_id, m.quantity) for m in movements if m.direction == "out"
        ),
    )
