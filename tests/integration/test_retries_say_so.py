"""An operator's retry is a new attempt of an old fact and says so (CONTRACT, ``x-retry-of``).

``orders retry`` publishes the rejected order again under a new ``message_id`` with
``x-retry-of: <original message_id>``; a retry of a retry still names the first attempt. The
replay side (``dead replay``, ``dead list``) is in ``test_dead_letters.py``.
"""

from __future__ import annotations

from services.mapper import ops
from services.simulator.listing import MISSING
from shared.messaging import Broker
from tests.harness import System
from tests.integration.ingest_helpers import first_poll_done

STORE = 735_001


async def test_orders_retry_publishes_a_new_id_naming_the_original(system: System) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    order = sim.add_order(STORE, notify=False)
    order_id = int(order["id"])
    sim.stores[STORE].hostile[order_id] = {"products": MISSING}  # an order without items
    sim.mark_paid(STORE, order_id)
    await system.observer.wait_for("sale.rejected", store_id=STORE, order_id=order_id)
    # Ingest announces an order without items as order.invalid; the mapper rejects it.
    [first] = system.observer.of("order.invalid", store_id=STORE, order_id=order_id)
    assert first.message_id is not None
    assert "x-retry-of" not in first.headers

    pool = system.services["mapper"].ctx.pool
    broker = Broker(system.settings.amqp_url, app_id="test-operator")
    await broker.connect(deadline=10)
    try:
        for attempt in (2, 3):
            retried = await ops.retry_orders(pool, broker, store_id=STORE, order_id=order_id)
            assert [r["order_id"] for r in retried] == [order_id]
            seen = await system.observer.wait_for(
                "order.invalid", count=attempt, store_id=STORE, order_id=order_id
            )
            await system.observer.wait_for(
                "sale.rejected", count=attempt, store_id=STORE, order_id=order_id
            )
            latest = seen[-1]
            assert latest.headers["x-retry-of"] == first.message_id
            assert latest.message_id not in {s.message_id for s in seen[:-1]}
            assert latest.body == first.body
    finally:
        await broker.close()
