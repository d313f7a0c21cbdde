"""The LGPD webhooks as the reference describes them (resources/webhook, "Required Webhooks"):
their URLs are set in the app's partner panel, one per event, not registered through the API,
and their bodies carry no `event`:

- `store/redact`: `{"store_id"}`, after the app was uninstalled;
- `customers/redact`: `{"store_id", "customer": {id, email, phone, identification},
  "orders_to_redact": [...]}`;
- `customers/data_request`: the same customer, `"orders_requested"`, `"checkouts_requested"`,
  `"drafts_orders_requested"` and `"data_request": {"id"}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from services.simulator.model import Store

LGPD_EVENTS: Final = ("store/redact", "customers/redact", "customers/data_request")


class UnknownCustomerError(LookupError):
    """No such buyer in that store."""


def _customer(store: Store, customer_id: int) -> dict[str, Any]:
    for known in store.customers:
        if int(known["id"]) == customer_id:
            return {
                "id": customer_id,
                "email": known["email"],
                "phone": known["phone"],
                "identification": known["identification"],
            }
    raise UnknownCustomerError(f"no customer {customer_id} in store {store.store_id}")


def _orders_of(store: Store, customer_id: int) -> list[int]:
    return [
        record.id
        for record in store.sorted_orders()
        if isinstance(record.body.get("customer"), dict)
        and record.body["customer"].get("id") == customer_id
    ]


def lgpd_body(
    store: Store,
    event: str,
    *,
    customer_id: int | None = None,
    orders: Sequence[int] | None = None,
    data_request_id: int = 1,
) -> dict[str, Any]:
    """The body of one LGPD webhook; the customer's orders default to all of theirs."""
    if event == "store/redact":
        return {"store_id": store.store_id}
    if event not in LGPD_EVENTS or customer_id is None:
        raise ValueError(f"{event}: an LGPD event about a customer needs customer_id")
    customer = _customer(store, customer_id)
    listed = list(orders) if orders is not None else _orders_of(store, customer_id)
    if event == "customers/redact":
        return {"store_id": store.store_id, "customer": customer, "orders_to_redact": listed}
    return {
        "store_id": store.store_id,
        "customer": customer,
        "orders_requested": listed,
        "checkouts_requested": [],
        "drafts_orders_requested": [],
        "data_request": {"id": data_request_id},
    }
