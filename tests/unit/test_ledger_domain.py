"""Unit tests of the ledger's pure rules: transitions, installments, stock and reversals."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.ledger.domain import (
    CANCELLED,
    CONFIRMED,
    PENDING_REVIEW,
    Action,
    InvalidTransition,
    PlannedInstallment,
    PlannedMovement,
    PlannedReturn,
    Refusal,
    ReversalPlan,
    SaleLine,
    SaleStatus,
    Shortage,
    plan_installments,
    plan_reversal,
    plan_stock_out,
    same_terms,
    stock_shortages,
    transition,
)
from shared.contracts import (
    ConfirmPayment,
    PaymentInstallment,
    Receivable,
    SaleConfirm,
    StockMovement,
)
from shared.wire import format_money

SALE_DATE = date(2024, 5, 10)
# Timing checks off: these run beside other suites on shared machines, and speed is not the point.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def payment(*amounts: str, method: str = "pix", due: date = SALE_DATE) -> ConfirmPayment:
    return ConfirmPayment(
        method=method,
        installments=[
            PaymentInstallment(amount=Decimal(amount), due_date=due + timedelta(days=30 * index))
            for index, amount in enumerate(amounts)
        ],
    )


def refusal(total: str, pay: ConfirmPayment | None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        plan_installments(Decimal(total), SALE_DATE, pay)
    return caught.value


def from_cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


# --- transitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [
        (PENDING_REVIEW, "confirm", CONFIRMED),
        (PENDING_REVIEW, "cancel", CANCELLED),
        (CONFIRMED, "cancel", CANCELLED),
    ],
)
def test_allowed_transitions(current: SaleStatus, action: Action, expected: SaleStatus) -> None:
    assert transition(current, action) == expected


@pytest.mark.parametrize(
    ("current", "action", "code"),
    [
        (CONFIRMED, "confirm", "already_confirmed"),
        (CANCELLED, "confirm", "sale_cancelled"),
        (CANCELLED, "cancel", "sale_cancelled"),
    ],
)
def test_refused_transitions(current: SaleStatus, action: Action, code: str) -> None:
    with pytest.raises(InvalidTransition) as caught:
        transition(current, action)

    assert caught.value.code == code
    assert caught.value.detail
    assert isinstance(caught.value, Refusal)


def test_unknown_status_from_outside_is_refused() -> None:
    with pytest.raises(InvalidTransition) as caught:
        transition("archived", "confirm")  # type: ignore[arg-type]

    assert caught.value.code == "invalid_transition"


# --- installments: defaults and explicit edge cases ------------------------------------------


def test_no_payment_is_one_cash_installment_of_the_total_on_the_sale_date() -> None:
    assert plan_installments(Decimal("5400.00"), SALE_DATE, None) == [
        PlannedInstallment(1, Decimal("5400.00"), SALE_DATE, "cash")
    ]


def test_no_payment_uses_the_given_default_method() -> None:
    planned = plan_installments(Decimal("10"), SALE_DATE, None, default_method="boleto")

    assert planned == [PlannedInstallment(1, Decimal("10.00"), SALE_DATE, "boleto")]


def test_explicit_payment_is_numbered_in_order() -> None:
    planned = plan_installments(Decimal("100.00"), SALE_DATE, payment("33.33", "33.33", "33.34"))

    assert planned == [
        PlannedInstallment(1, Decimal("33.33"), SALE_DATE, "pix"),
        PlannedInstallment(2, Decimal("33.33"), SALE_DATE + timedelta(days=30), "pix"),
        PlannedInstallment(3, Decimal("33.34"), SALE_DATE + timedelta(days=60), "pix"),
    ]


def test_one_cent_splits() -> None:
    planned = plan_installments(Decimal("0.03"), SALE_DATE, payment("0.01", "0.01", "0.01"))

    assert [p.amount for p in planned] == [Decimal("0.01")] * 3


def test_trailing_zeros_are_not_extra_decimal_places() -> None:
    planned = plan_installments(Decimal("10.1"), SALE_DATE, payment("5.100", "5"))

    assert [p.amount for p in planned] == [Decimal("5.10"), Decimal("5.00")]
    assert [str(p.amount) for p in planned] == ["5.10", "5.00"]


def test_large_totals_are_summed_exactly() -> None:
    # 28 significant digits, the most the wire format carries; the parts' exact sum is checked
    # in a wider context than the default one.
    total = Decimal("12345678901234567890123456.89")
    parts = ("12345678901234567890123456.00", "0.88", "0.01")

    planned = plan_installments(total, SALE_DATE, payment(*parts))
    with localcontext(prec=60):
        assert sum(p.amount for p in planned) == total
    assert planned[0].amount == Decimal(parts[0])
    assert format_money(planned[0].amount) == parts[0]

    mismatch = refusal(str(total), payment(parts[0], "0.88", "0.02"))
    assert mismatch.code == "installments_mismatch"
    assert "12345678901234567890123456.90" in mismatch.detail


def test_amounts_wider_than_the_wire_format_are_refused() -> None:
    too_wide = refusal("123456789012345678901234567.00", None)
    assert too_wide.code == "invalid_total"
    assert "more than 26 digits" in too_wide.detail
    assert refusal("1E+40", payment("1E+40")).code == "invalid_total"
    installment = refusal("10.00", payment("1E+40", "-1E+40"))
    assert installment.code == "invalid_installment"
    assert "installment 1: amount 1E+40 has more than 26 digits" in installment.detail


@pytest.mark.parametrize("amount", ["0.005", "3.333", "0.001", "1.0001"])
def test_more_than_two_decimal_places_is_refused(amount: str) -> None:
    # The amount is refused for itself, before any sum is compared with the total.
    problem = refusal("10.00", payment(amount, "1.00"))

    assert problem.code == "invalid_installment"
    assert "installment 1" in problem.detail
    assert amount in problem.detail


@pytest.mark.parametrize("amount", ["0", "0.00", "-5.00"])
def test_installments_must_be_positive(amount: str) -> None:
    problem = refusal("10.00", payment("10.00", amount))

    assert problem.code == "invalid_installment"
    assert "installment 2" in problem.detail
    assert "not positive" in problem.detail


def test_mismatch_detail_shows_sum_and_total() -> None:
    problem = refusal("100.00", payment("50.00", "49.99"))

    assert problem.code == "installments_mismatch"
    assert "99.99" in problem.detail
    assert "100.00" in problem.detail


@pytest.mark.parametrize(
    ("pay", "fragment"),
    [
        (payment("10.00", method=" "), "method"),
        (payment("10.00", method=""), "method"),
        (ConfirmPayment(method="pix", installments=[]), "no installments"),
    ],
)
def test_invalid_payment(pay: ConfirmPayment, fragment: str) -> None:
    problem = refusal("10.00", pay)

    assert problem.code == "invalid_payment"
    assert fragment in problem.detail


def test_method_is_trimmed() -> None:
    planned = plan_installments(Decimal("10"), SALE_DATE, payment("10", method=" credit_card "))

    assert planned[0].method == "credit_card"


def test_due_date_on_the_sale_date_is_accepted_and_before_is_refused() -> None:
    assert plan_installments(Decimal("1"), SALE_DATE, payment("1", due=SALE_DATE))
    problem = refusal("1", payment("1", due=SALE_DATE - timedelta(days=1)))

    assert problem.code == "invalid_installment"
    assert "2024-05-09" in problem.detail
    assert "2024-05-10" in problem.detail


@pytest.mark.parametrize(
    ("total", "why"),
    [
        ("-1.00", "is negative"),
        ("10.005", "more than 2 decimal places"),
        ("NaN", "not a finite amount"),
        ("Infinity", "not a finite amount"),
    ],
)
def test_invalid_total_is_refused(total: str, why: str) -> None:
    assert refusal(total, None).code == "invalid_total"
    problem = refusal(total, payment("10.00"))
    assert problem.code == "invalid_total"
    assert why in problem.detail


def test_zero_written_oddly_is_still_zero() -> None:
    assert plan_installments(Decimal("0E+100"), SALE_DATE, None)[0].amount == Decimal("0.00")


def test_zero_total_without_payment_is_one_zero_installment() -> None:
    # A fully discounted order still becomes a sale; its single receivable is of nothing.
    assert plan_installments(Decimal("0.00"), SALE_DATE, None) == [
        PlannedInstallment(1, Decimal("0.00"), SALE_DATE, "cash")
    ]


# --- installments: properties ----------------------------------------------------------------

cents_splits = st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=24)


@RELAXED
@given(splits=cents_splits, offsets=st.lists(st.integers(0, 3650), min_size=24, max_size=24))
def test_any_split_into_positive_cents_summing_to_the_total_is_accepted(
    splits: list[int], offsets: list[int]
) -> None:
    total = from_cents(sum(splits))
    pay = ConfirmPayment(
        method="boleto",
        installments=[
            PaymentInstallment(amount=from_cents(c), due_date=SALE_DATE + timedelta(days=d))
            for c, d in zip(splits, offsets, strict=False)
        ],
    )

    planned = plan_installments(total, SALE_DATE, pay)

    assert [p.number for p in planned] == list(range(1, len(splits) + 1))
    assert [p.amount for p in planned] == [from_cents(c) for c in splits]
    assert sum(p.amount for p in planned) == total
    assert all(p.amount.as_tuple().exponent == -2 for p in planned)
    assert all(p.due_date >= SALE_DATE and p.method == "boleto" for p in planned)


@RELAXED
@given(splits=cents_splits, delta=st.integers(min_value=-(10**6), max_value=10**6))
def test_any_split_whose_sum_differs_by_a_cent_or_more_is_refused(
    splits: list[int], delta: int
) -> None:
    assume(delta != 0 and sum(splits) + delta >= 0)
    total = from_cents(sum(splits) + delta)
    pay = ConfirmPayment(
        method="pix",
        installments=[PaymentInstallment(amount=from_cents(c), due_date=SALE_DATE) for c in splits],
    )

    with pytest.raises(Refusal) as caught:
        plan_installments(total, SALE_DATE, pay)

    assert caught.value.code == "installments_mismatch"
    assert format(from_cents(sum(splits)), "f") in caught.value.detail
    assert format(total, "f") in caught.value.detail


@RELAXED
@given(
    splits=cents_splits,
    days_early=st.integers(min_value=1, max_value=3650),
    position=st.integers(min_value=0),
    sale_date=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
)
def test_any_due_date_before_the_sale_date_is_refused(
    splits: list[int], days_early: int, position: int, sale_date: date
) -> None:
    early = position % len(splits)
    pay = ConfirmPayment(
        method="pix",
        installments=[
            PaymentInstallment(
                amount=from_cents(c),
                due_date=sale_date - timedelta(days=days_early) if i == early else sale_date,
            )
            for i, c in enumerate(splits)
        ],
    )

    with pytest.raises(Refusal) as caught:
        plan_installments(from_cents(sum(splits)), sale_date, pay)

    assert caught.value.code == "invalid_installment"
    assert f"installment {early + 1}:" in caught.value.detail


# --- stock -----------------------------------------------------------------------------------

LINES = [
    SaleLine(1, "p-mesa", 1, "Mesa de Roble"),
    SaleLine(2, "p-silla", 4, "Silla"),
    SaleLine(3, "p-mesa", 2, "Mesa de Roble"),
]


def test_one_movement_out_per_line() -> None:
    assert plan_stock_out(LINES) == [
        PlannedMovement(1, "p-mesa", 1, "out"),
        PlannedMovement(2, "p-silla", 4, "out"),
        PlannedMovement(3, "p-mesa", 2, "out"),
    ]


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ([], "no lines"),
        ([SaleLine(1, "p", 0)], "line 1: quantity 0"),
        ([SaleLine(1, "p", 1), SaleLine(2, "p", -3)], "line 2: quantity -3"),
        ([SaleLine(1, " ", 1)], "line 1: no product"),
    ],
)
def test_unusable_lines_are_refused(lines: list[SaleLine], fragment: str) -> None:
    with pytest.raises(Refusal) as caught:
        plan_stock_out(lines)

    assert caught.value.code == "malformed_sale"
    assert fragment in caught.value.detail


def test_shortages_aggregate_lines_of_the_same_product() -> None:
    # Each mesa line alone fits in 2 on hand; together they need 3.
    assert stock_shortages(LINES, {"p-mesa": 2, "p-silla": 10}) == [
        Shortage("p-mesa", "Mesa de Roble", 3, 2)
    ]


def test_exact_stock_is_enough_and_missing_product_has_none() -> None:
    assert stock_shortages(LINES, {"p-mesa": 3, "p-silla": 4}) == []
    assert stock_shortages(LINES, {"p-mesa": 3}) == [Shortage("p-silla", "Silla", 4, 0)]


def test_shortages_come_in_first_appearance_order() -> None:
    assert stock_shortages(LINES, {"p-mesa": -1}) == [
        Shortage("p-mesa", "Mesa de Roble", 3, -1),
        Shortage("p-silla", "Silla", 4, 0),
    ]


@RELAXED
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 50)), min_size=1, max_size=20
    ),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 200)),
)
def test_shortages_match_totals_per_product(
    requests: list[tuple[str, int]], on_hand: dict[str, int]
) -> None:
    lines = [SaleLine(n, product, q) for n, (product, q) in enumerate(requests, start=1)]
    totals = {p: sum(q for product, q in requests if product == p) for p, _ in requests}

    short = {s.product_id: (s.requested, s.available) for s in stock_shortages(lines, on_hand)}

    assert short == {
        p: (need, on_hand.get(p, 0)) for p, need in totals.items() if need > on_hand.get(p, 0)
    }


# --- reversal --------------------------------------------------------------------------------


def receivable(rid: str, status: str) -> Receivable:
    return Receivable.model_validate(
        {
            "id": rid,
            "number": 1,
            "amount": "10.00",
            "due_date": "2024-05-10",
            "method": "cash",
            "status": status,
        }
    )


def movement(mid: str, product_id: str, quantity: int, direction: str) -> StockMovement:
    return StockMovement.model_validate(
        {"id": mid, "product_id": product_id, "quantity": quantity, "direction": direction}
    )


def test_reversal_cancels_open_receivables_and_returns_each_movement_out() -> None:
    plan = plan_reversal(
        [receivable("r1", "open"), receivable("r2", "paid"), receivable("r3", "open")],
        [movement("m1", "p-mesa", 1, "out"), movement("m2", "p-silla", 4, "out")],
    )

    assert plan == ReversalPlan(
        receivables_to_cancel=("r1", "r3"),
        movements_in=(
            PlannedReturn("m1", "p-mesa", 1, "in"),
            PlannedReturn("m2", "p-silla", 4, "in"),
        ),
    )


def test_reversal_ignores_cancelled_receivables_and_movements_in() -> None:
    plan = plan_reversal(
        [receivable("r1", "cancelled")],
        [movement("m1", "p", 2, "out"), movement("m9", "p", 2, "in")],
    )

    assert plan.receivables_to_cancel == ()
    assert plan.movements_in == (PlannedReturn("m1", "p", 2),)


def test_reversal_of_nothing_is_empty() -> None:
    assert plan_reversal([], []) == ReversalPlan((), ())


# --- repeated confirmations ------------------------------------------------------------------

EXISTING = [
    PlannedInstallment(1, Decimal("50.00"), SALE_DATE, "pix"),
    PlannedInstallment(2, Decimal("50.00"), SALE_DATE + timedelta(days=30), "pix"),
]


def confirm(seller_id: str | None = None, pay: ConfirmPayment | None = None) -> SaleConfirm:
    return SaleConfirm(sale_id="s-1", confirmed_by="erp-user", seller_id=seller_id, payment=pay)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (confirm(), True),
        (confirm(seller_id="seller-1"), True),
        (confirm(seller_id="seller-2"), False),
        (confirm(pay=payment("50.00", "50.00")), True),
        (confirm(pay=payment("50", "50.0", method=" pix ")), True),
        (confirm(seller_id="seller-1", pay=payment("50.00", "50.00")), True),
        (confirm(pay=payment("50.00", "50.00", method="boleto")), False),
        (confirm(pay=payment("60.00", "40.00")), False),
        (confirm(pay=payment("100.00")), False),
        (confirm(pay=payment("50.00", "50.00", due=SALE_DATE + timedelta(days=1))), False),
        (confirm(seller_id="seller-2", pay=payment("50.00", "50.00")), False),
    ],
)
def test_same_terms(request_: SaleConfirm, expected: bool) -> None:
    assert same_terms("seller-1", EXISTING, request_) is expected


def test_same_terms_against_stored_receivables() -> None:
    stored = [receivable("r1", "open")]

    assert same_terms(None, stored, confirm(pay=payment("10.00", method="cash")))
    assert not same_terms(None, stored, confirm(seller_id="anyone"))


def test_default_terms_repeated_explicitly_are_the_same() -> None:
    defaults = plan_installments(Decimal("100.00"), SALE_DATE, None)

    assert same_terms("seller-1", defaults, confirm(pay=payment("100.00", method="cash")))
