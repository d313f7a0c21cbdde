"""The mapper's use cases on its in-memory unit of work: no broker, no database, fast.

The same declarations and handlers the consumer runs (``services/mapper/handlers.py``: inbox,
dispatch by type, outbox), over ``services/mapper/adapters/memory.py``: what a paid order
becomes (a new or reused customer, catalogued or created products, or one of the rejections with
its parked copy), repeats, switching a store off and on, and the one fallback (an order whose
data the store refuses). The real-database tests (tests/integration/test_mapper*) cover the SQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from services.mapper import rules
from services.mapper.adapters.memory import MemoryMapper, Rejection, begin
from services.mapper.handlers import INTEGRATIONS, MAPPER, ORDERS
from services.mapper.ports import UnstorableError
from shared.contracts import (
    IntegrationDisabled,
    IntegrationEnabled,
    Message,
    OrderInvalid,
    OrderPaid,
    PrivacyRequest,
)
from shared.messaging import Envelope
from shared.subscribers import Received
from shared.unitofwork import UnitOfWorkHandler
from tests.unit.test_mapper_domain import item, order_body

IDS = iter(range(10**9))


def paid(order_id: int = 1, store_id: int = 7, **overrides: Any) -> Received[Message]:
    order = OrderPaid.model_validate(order_body(store_id=store_id, order_id=order_id, **overrides))
    return Received.message_of(order, f"order.paid:{store_id}:{order_id}:{next(IDS)}")


def invalid(order_id: int, store_id: int = 7) -> Received[Message]:
    message = OrderInvalid(store_id=store_id, order_id=order_id, detail="unreadable")
    return Received.message_of(message, f"order.invalid:{store_id}:{order_id}:{next(IDS)}")


def run(uow: MemoryMapper, *messages: Received[Any], queue: str = ORDERS) -> list[Envelope]:
    """One batch through the consumer's unit of work; what it staged."""
    handler = UnitOfWorkHandler(MAPPER.on(queue), begin(uow))
    return [s.envelope for s in asyncio.run(handler.run(list(messages)))]


def mapper(
    settings: dict[int, rules.StoreRules] | None = None, disabled: dict[int, str] | None = None
) -> MemoryMapper:
    uow = MemoryMapper()
    uow.tables.settings |= settings or {}
    uow.tables.disabled |= disabled or {}
    return uow


def bodies(envs: list[Envelope], routing_key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        orjson.loads(e.body) for e in envs if e.routing_key == routing_key
    ]
    return found


def one_sale(envs: list[Envelope]) -> dict[str, Any]:
    (sale,) = bodies(envs, "sale.pending_review")
    return sale


def one_rejection(envs: list[Envelope]) -> dict[str, Any]:
    assert [e.routing_key for e in envs] == ["sale.rejected", "mapper.orders.parked"]
    (rejected,) = bodies(envs, "sale.rejected")
    return rejected


# --- what a paid order becomes --------------------------------------------------------------------


def test_a_new_customer_and_new_products_are_created() -> None:
    uow = mapper()
    sale = one_sale(run(uow, paid(1)))
    assert sale["customer"]["created"] is True
    assert sale["customer"]["name"] == "Maria da Silva"
    assert [(i["description"], i["product"]["created"]) for i in sale["items"]] == [
        ("Camiseta", True),
        ("Caneca", True),
    ]
    assert sale["total"] == "135.50"
    assert len(uow.tables.customers_by_key) == 1
    assert set(uow.tables.products_by_key) == {(7, "Camiseta"), (7, "Caneca")}
    assert uow.tables.products_by_key[(7, "Camiseta")].sku == "CAM-1"  # the line's SKU is kept


def test_the_same_name_and_document_reuse_the_customer() -> None:
    uow = mapper()
    first = one_sale(run(uow, paid(1)))
    again = one_sale(run(uow, paid(2)))
    assert again["customer"]["id"] == first["customer"]["id"]
    assert again["customer"]["created"] is False
    assert [i["product"]["created"] for i in again["items"]] == [False, False]
    # In one batch: the first sale created the customer, the second reused it.
    batch = bodies(run(uow := mapper(), paid(1), paid(2)), "sale.pending_review")
    assert [s["customer"]["created"] for s in batch] == [True, False]
    assert len({s["customer"]["id"] for s in batch}) == 1
    assert len(uow.tables.customers_by_key) == 1


def test_another_document_is_another_customer() -> None:
    uow = mapper()
    customer = {**order_body()["customer"], "document": "529.982.247-25"}
    sales = bodies(run(uow, paid(1), paid(2, customer=customer)), "sale.pending_review")
    assert [s["customer"]["created"] for s in sales] == [True, True]
    assert len(uow.tables.customers_by_key) == 2


def test_a_catalogued_product_is_taken_and_the_rest_created() -> None:
    uow = mapper()
    caneca = uow.tables.add_product(7, "Caneca")
    sale = one_sale(run(uow, paid(1)))
    products = {i["description"]: i["product"] for i in sale["items"]}
    assert products["Caneca"] == {"id": caneca, "description": "Caneca", "created": False}
    assert products["Camiseta"]["created"] is True


def test_matching_by_sku_takes_the_product_with_the_lines_sku() -> None:
    uow = mapper(settings={7: rules.StoreRules(product_match=rules.BY_SKU)})
    shirt = uow.tables.add_product(7, "Camiseta azul P", sku="CAM-1")
    sale = one_sale(run(uow, paid(1)))
    assert sale["items"][0]["product"] == {
        "id": shirt,
        "description": "Camiseta azul P",
        "created": False,
    }


# --- rejections ------------------------------------------------------------------------------------


def test_an_invalid_order_is_rejected_and_parked_and_creates_nothing() -> None:
    uow = mapper()
    message = paid(1, items=[item("Caneca", quantity=0)])
    envs = run(uow, message)
    rejected = one_rejection(envs)
    assert rejected["reason"] == "invalid_order"
    assert "quantity 0" in rejected["detail"]
    parked = envs[1]
    assert parked.body == message.body
    assert parked.message_id == f"{message.message_id}:parked:1"
    assert parked.headers["x-error-reason"] == "invalid_order"
    assert parked.headers["x-original-routing-key"] == "order.paid"
    assert (uow.tables.customers_by_key, uow.tables.products_by_key, uow.tables.sales) == (
        {},
        {},
        {},
    )
    assert uow.tables.open_rejections()[(7, 1)].attempts == 1
    assert envs[0].message_id == "sale.rejected:7:1:1"
    # Retried (a new message id) and rejected again: a second attempt, a new announcement and
    # a new parked copy. The same message redelivered changes nothing.
    retried = paid(1, items=[item("Caneca", quantity=0)])
    again = run(uow, retried)
    assert [e.message_id for e in again] == [
        "sale.rejected:7:1:2",
        f"{retried.message_id}:parked:2",
    ]
    assert run(uow, retried) == []


def test_order_invalid_is_rejected_unless_the_order_was_imported() -> None:
    uow = mapper()
    assert one_rejection(run(uow, invalid(1)))["reason"] == "invalid_order"
    one_sale(run(uow, paid(1)))  # the corrected order: imported, the rejection resolved
    assert uow.tables.open_rejections() == {}
    assert run(uow, invalid(1)) == []


def test_a_switched_off_store_rejects_before_anything_else() -> None:
    uow = mapper(disabled={7: "switched_off"})
    rejected = one_rejection(run(uow, paid(1, currency="USD")))
    assert rejected["reason"] == "store_disabled"
    assert "switched off (switched_off)" in rejected["detail"]


def test_an_order_not_in_reais_is_rejected() -> None:
    uow = mapper()
    envs = run(uow, paid(1, currency="USD"), paid(2))
    assert bodies(envs, "sale.rejected")[0]["reason"] == "unsupported_currency"
    assert [s["order_id"] for s in bodies(envs, "sale.pending_review")] == [2]


def test_the_stock_check_rejects_what_lacks_stock_and_creates_nothing() -> None:
    uow = mapper(settings={7: rules.StoreRules(stock_check=True)})
    shirt = uow.tables.add_product(7, "Camiseta")
    uow.tables.stock[(7, shirt)] = 1
    rejected = one_rejection(run(uow, paid(1)))
    assert rejected["reason"] == "insufficient_stock"
    assert rejected["items"] == [
        {"description": "Camiseta", "product_id": shirt, "requested": 2, "available": 1},
        # Caneca would be created: no id to show, no stock.
        {"description": "Caneca", "product_id": None, "requested": 1, "available": 0},
    ]
    assert (uow.tables.customers_by_key, uow.tables.sales) == ({}, {})
    assert set(uow.tables.products_by_key) == {(7, "Camiseta")}
    mug = uow.tables.add_product(7, "Caneca")
    uow.tables.stock |= {(7, shirt): 2, (7, mug): 1}
    one_sale(run(uow, paid(1)))  # enough now: imported, the rejection resolved
    assert uow.tables.open_rejections() == {}


# --- repeats ---------------------------------------------------------------------------------------


def test_an_order_already_imported_publishes_nothing_and_resolves_its_rejection() -> None:
    uow = mapper()
    one_sale(run(uow, paid(1)))
    # Rejected meanwhile on a retry (the sale existed already): the next copy resolves it.
    uow.tables.rejections[(7, 1)] = Rejection("insufficient_stock", "a retry", None, "retry-1")
    assert run(uow, paid(1)) == []
    assert uow.tables.open_rejections() == {}


def test_copies_of_one_order_in_a_batch_make_one_sale() -> None:
    uow = mapper()
    copies = [paid(1) for _ in range(3)]  # webhook, poll, backfill: other message ids
    envs = run(uow, *copies)
    assert [e.routing_key for e in envs] == ["sale.pending_review"]


def test_a_rejected_order_then_its_correction_in_one_batch() -> None:
    uow = mapper()
    envs = run(uow, invalid(1), paid(1), invalid(1))
    assert [e.routing_key for e in envs] == [
        "sale.rejected",
        "mapper.orders.parked",
        "sale.pending_review",
    ]
    assert uow.tables.open_rejections() == {}


def test_a_redelivered_message_changes_nothing() -> None:
    uow = mapper()
    message = paid(1)
    one_sale(run(uow, message))
    assert run(uow, message) == []
    assert run(uow, invalid(2)) != []
    assert len(uow.tables.rejections) == 1


def test_runs_of_each_type_go_in_arrival_order() -> None:
    uow = mapper()
    request = Received.message_of(
        PrivacyRequest(request_id="r1", kind="store_redact", store_id=7),
        "privacy-1",
    )
    envs = run(uow, paid(1), paid(2), request, invalid(3), paid(3))
    assert [(e.routing_key, orjson.loads(e.body).get("order_id")) for e in envs] == [
        ("sale.pending_review", 1),
        ("sale.pending_review", 2),
        ("sale.rejected", 3),
        ("mapper.orders.parked", 3),
        ("sale.pending_review", 3),
    ]
    assert [r.kind for r in uow.privacy_requests] == ["store_redact"]


# --- stores switched off and on (mapper.integrations) --------------------------------------------


def test_a_store_switched_off_rejects_its_orders_until_switched_on() -> None:
    uow = mapper()
    off = IntegrationDisabled(store_id=7, reason="credentials_revoked")
    assert run(uow, Received.message_of(off, "off-1"), queue=INTEGRATIONS) == []
    rejected = one_rejection(run(uow, paid(1)))
    assert rejected["reason"] == "store_disabled"
    assert "(credentials_revoked)" in rejected["detail"]
    on = IntegrationEnabled(store_id=7)
    assert run(uow, Received.message_of(on, "on-1"), queue=INTEGRATIONS) == []
    one_sale(run(uow, paid(1)))


# --- the one fallback: an order whose data the store refuses -------------------------------------


def test_an_order_the_store_refuses_alone_is_rejected() -> None:
    uow = mapper()
    rejected = one_rejection(run(uow, paid(1, items=[item("Caneca\x00", 1, "50.00")])))
    assert rejected["reason"] == "invalid_order"
    assert rejected["detail"].startswith("the order's data cannot be stored: invalid byte")
    assert (uow.tables.customers_by_key, uow.tables.products_by_key) == ({}, {})


def test_in_a_batch_it_fails_the_batch_whole_and_alone_only_itself() -> None:
    uow = mapper()
    bad = paid(2, items=[item("Caneca\x00", 1, "50.00")])
    batch = [paid(1), bad, paid(3)]
    with pytest.raises(UnstorableError):
        run(uow, *batch)
    assert (uow.tables.sales, uow.outbox, uow.inbox) == ({}, {}, set())  # undone whole
    # What the consumer does next (shared/retrying.py): each message in a batch of its own.
    envs = [e for message in batch for e in run(uow, message)]
    assert [e.routing_key for e in envs] == [
        "sale.pending_review",
        "sale.rejected",
        "mapper.orders.parked",
        "sale.pending_review",
    ]
